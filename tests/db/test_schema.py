"""CUSTOMER_RATINGS_SCHEMA: every connection's search_path; two schemas of one database are independent."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.conftest import SEED_SAMPLE

from ._helpers import clean_env, cli, said

SAMPLE = SEED_SAMPLE
REPORT = "Customer_Rating_Aggregate_Report_20250513.csv"


def test_two_schemas_hold_two_independent_copies(database_url: str, tmp_path: Path) -> None:
    for schema in ("first_copy", "second_copy"):
        env = clean_env(tmp_path, CUSTOMER_RATINGS_DATABASE_URL=database_url, CUSTOMER_RATINGS_SCHEMA=schema)
        load = ["load", "--data-dir", str(SAMPLE), "--date", "2025-05-13", "--quiet"]
        report = ["report", "--output-dir", str(tmp_path / schema), "--date", "2025-05-13"]
        for args in (load, [*load, "--force"], report):
            done = cli(args, env)
            assert done.returncode == 0, f"{schema} {args}: {said(done)}"
            assert f"(schema {schema})" in done.stderr, said(done)
        assert (tmp_path / schema / REPORT).read_bytes() == (SAMPLE / REPORT).read_bytes()
    with psycopg.connect(database_url) as conn:
        counts = [conn.execute(f"SELECT (SELECT count(*) FROM {s}.customer_rating), "
                               f"(SELECT count(*) FROM {s}.load_history)").fetchone()
                  for s in ("first_copy", "second_copy")]
        assert counts[0] == counts[1] and counts[0] is not None and counts[0][0] > 0 and counts[0][1] == 8, counts
        assert conn.execute("SELECT to_regclass('public.load_history')").fetchone() == (None,)
