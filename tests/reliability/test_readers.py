"""Readers are never blocked by a load beyond its final swap (SPEC.md "Loads are atomic", issue 14).

While a real ``customer-ratings load`` replaces agency A's 1.5 M rows with 1.2 M others (the parallel path),
a reader with ``statement_timeout = 500ms`` asks, in one statement (one snapshot), for the count of A's table
and of A's rows in ``customer_rating``, as often as it can. Every answer must come within the timeout and be
the old pair or the new pair: never an error, never a mix, never an empty agency.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg

from . import _db
from ._cli import assert_no_traceback, finish_cli, start_cli
from ._two import BOUND, Setup

READ = """SELECT (SELECT count(*) FROM customer_rating_agency_a),
                 (SELECT count(*) FROM customer_rating WHERE customer = 'agency_a')"""


def test_readers_answer_within_500ms_throughout_a_load(database_url: str, tmp_path: Path) -> None:
    setup = Setup(database_url, tmp_path, 1_200_000, a_rows_v1=1_500_000)
    old = setup.expect["v1"]["agency_a"].rows
    new = setup.expect["v2"]["agency_a"].rows
    answers: list[tuple[float, tuple[int, int]]] = []
    errors: list[str] = []
    stop = threading.Event()

    def read() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SET statement_timeout = '500ms'")
            while not stop.is_set():
                started = time.monotonic()
                try:
                    row = conn.execute(READ).fetchone()
                except psycopg.Error as exc:
                    errors.append(f"{type(exc).__name__}: {str(exc).strip()}")
                    continue
                assert row is not None
                answers.append((time.monotonic() - started, (int(row[0]), int(row[1]))))
                time.sleep(0.01)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.2)
    proc = start_cli(setup.args(setup.v2), setup.env, tmp_path / "logs")
    try:
        run = finish_cli(proc, tmp_path / "logs", timeout=BOUND)
    finally:
        time.sleep(0.2)
        stop.set()
        reader.join(BOUND)
    assert_no_traceback(run)
    assert run.returncode == 0, str(run)
    assert errors == [], f"{len(errors)} reads failed during the load, e.g. {errors[:3]}"
    pairs = [pair for _, pair in answers]
    assert set(pairs) <= {(old, old), (new, new)}, f"a mix or an empty agency: {set(pairs)}"
    assert pairs[0] == (old, old) and pairs[-1] == (new, new)
    assert sum(1 for p in pairs if p == (old, old)) >= 5, "the reader must have read during the load"
    slowest = max(seconds for seconds, _ in answers)
    assert slowest < 0.5, f"a read took {slowest:.3f} s"
    with _db.connect(database_url) as conn:
        assert _db.fingerprint(conn, "customer_rating_agency_a") == setup.expect["v2"]["agency_a"].fingerprint
