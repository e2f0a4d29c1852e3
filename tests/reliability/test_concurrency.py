"""Concurrent runs and readers, with real processes on the same database.

- Two ``customer-ratings run`` started together on the same data: both finish (no deadlock), every agency holds
  exactly one complete load, and the history shows what each did (one load and one ``unchanged``; with
  ``--force``, two loads, the later one current).
- Two runs together on different data: every agency ends with one whole file, never a mix.
- Several runs together on a database that does not exist yet: all succeed.
- Reports taken over and over while a load runs: each agency's row is its old row or its new row, never a
  partial one.
- A REPEATABLE READ reader whose snapshot predates a load sees old or new rows, never an empty agency.
"""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from customer_ratings import Settings, open_database
from customer_ratings.report import report_rows

from ..conftest import SEED_SAMPLE
from . import _db, _fault
from ._agency import BASELINE_ROWS, Agency
from ._bigdata import AGENCIES, Version
from ._cli import Run, assert_no_traceback, cli_env, finish_cli, run_cli, start_cli


def _args(version: Version, out: Path, *extra: str) -> list[str]:
    return ["run", "--data-dir", str(version.data), "--output-dir", str(out), "--date", "2025-05-13", "--quiet",
            *extra]


def _together(argvs: list[list[str]], env: dict[str, str], logs: Path, timeout: float = 300) -> list[Run]:
    procs = [start_cli(a, env, logs, f"p{i}") for i, a in enumerate(argvs)]
    return [finish_cli(proc, logs, f"p{i}", timeout) for i, proc in enumerate(procs)]


def _report(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))[1:]


def _new_history(url: str, after: int) -> list[tuple[Any, ...]]:
    with _db.connect(url) as conn:
        return conn.execute("SELECT source, status, load_id FROM load_history WHERE load_id > %s ORDER BY load_id",
                            (after,)).fetchall()


def _max_load(url: str) -> int:
    with _db.connect(url) as conn:
        (n,) = conn.execute("SELECT coalesce(max(load_id), 0) FROM load_history").fetchone()  # type: ignore[misc]
    return int(n)


@pytest.mark.parametrize("force", [False, True], ids=["unchanged", "force"])
def test_two_runs_started_together_on_the_same_data(database_url: str, tmp_path: Path,
                                                     big_versions: dict[str, Version], force: bool) -> None:
    v1, v2 = big_versions["v1"], big_versions["v2"]
    env = cli_env(database_url, tmp_path / "home")
    assert run_cli(_args(v1, tmp_path / "out0"), env, timeout=300).returncode == 0
    before = _max_load(database_url)
    extra = ("--force",) if force else ()
    runs = _together([_args(v2, tmp_path / "out1", *extra), _args(v2, tmp_path / "out2", *extra)], env,
                     tmp_path / "logs")
    for run in runs:
        assert_no_traceback(run)
        assert run.returncode == 0, str(run)
    _fault.check_consistent(database_url, {a: [v2.expect[a]] for a in AGENCIES})
    history = _new_history(database_url, before)
    for agency in AGENCIES:
        statuses = sorted(s for src, s, _ in history if src == agency)
        assert statuses == (["loaded", "loaded"] if force else ["loaded", "unchanged"]), (agency, history)
        loaded = [i for src, s, i in history if src == agency and s == "loaded"]
        with _db.connect(database_url) as conn:
            assert _db.current_load(conn, agency) == max(loaded)
    for out in ("out1", "out2"):
        assert _report(tmp_path / out / "Customer_Rating_Aggregate_Report_20250513.csv") == v2.report()


def test_two_runs_together_on_different_data_never_mix(database_url: str, tmp_path: Path,
                                                       big_versions: dict[str, Version]) -> None:
    v1, v2 = big_versions["v1"], big_versions["v2"]
    env = cli_env(database_url, tmp_path / "home")
    assert run_cli(_args(v1, tmp_path / "out0"), env, timeout=300).returncode == 0
    before = _max_load(database_url)
    runs = _together([_args(v2, tmp_path / "out1"), _args(v1, tmp_path / "out2", "--force")], env,
                     tmp_path / "logs")
    for run in runs:
        assert_no_traceback(run)
        assert run.returncode == 0, str(run)
    state = _fault.check_consistent(database_url, {a: [v1.expect[a], v2.expect[a]] for a in AGENCIES})
    history = _new_history(database_url, before)
    with _db.connect(database_url) as conn:
        for agency in AGENCIES:
            rows = [(s, i) for src, s, i in history if src == agency]
            assert len(rows) == 2 and all(s in ("loaded", "unchanged") for s, _ in rows), (agency, rows)
            last_loaded = max(i for s, i in rows if s == "loaded")
            assert _db.current_load(conn, agency) == last_loaded
            uri = _db.history(conn, last_loaded)["file_uri"]
            version = v2 if "/v2/" in uri else v1
            assert state[agency] == version.expect[agency], f"{agency}: data is not the file of its last load"


@pytest.mark.parametrize("attempt", range(4))
def test_runs_together_on_a_database_that_does_not_exist_yet(server_url: str, tmp_path: Path,
                                                             attempt: int) -> None:
    name = f"crrel_fresh_{uuid.uuid4().hex[:10]}"
    url = _db.url_for(server_url, name)
    env = cli_env(url, tmp_path / "home")
    argv = ["run", "--data-dir", str(SEED_SAMPLE), "--output-dir", str(tmp_path / "out"), "--date", "2025-05-13",
            "--quiet"]
    try:
        runs = _together([argv] * 3, env, tmp_path / "logs", timeout=120)
        for run in runs:
            assert_no_traceback(run)
            assert run.returncode == 0 and run.error_lines == [], str(run)
        expected = _report(SEED_SAMPLE / "Customer_Rating_Aggregate_Report_20250513.csv")
        assert _report(tmp_path / "out" / "Customer_Rating_Aggregate_Report_20250513.csv") == expected
    finally:
        with psycopg.connect(_db.url_for(server_url, "postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_reports_during_a_load_see_each_agency_old_or_new(database_url: str, tmp_path: Path,
                                                          big_versions: dict[str, Version]) -> None:
    v1, v2 = big_versions["v1"], big_versions["v2"]
    env = cli_env(database_url, tmp_path / "home")
    assert run_cli(_args(v1, tmp_path / "out0"), env, timeout=300).returncode == 0
    allowed = {a: ({tuple(v1.expect[a].report_row(a)), tuple(v2.expect[a].report_row(a))}) for a in AGENCIES}
    seen: list[tuple[tuple[str, ...], ...]] = []
    cli_reports: list[list[list[str]]] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def library_reports() -> None:
        try:
            with open_database(Settings(database_url=database_url)) as db:
                while not stop.is_set():
                    rows = report_rows(db)
                    seen.append(tuple(tuple(str(v) for v in r) for r in rows))
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    proc = start_cli(_args(v2, tmp_path / "out1"), env, tmp_path / "logs")
    reader = threading.Thread(target=library_reports)
    reader.start()
    try:
        i = 0
        while proc.poll() is None:
            out = tmp_path / f"report{i}"
            run = run_cli(["report", "--output-dir", str(out), "--date", "2025-05-13"], env, timeout=120)
            assert run.returncode == 0, str(run)
            cli_reports.append(_report(out / "Customer_Rating_Aggregate_Report_20250513.csv"))
            i += 1
    finally:
        proc.wait(timeout=300)
        stop.set()
        reader.join()
    assert not errors, errors
    assert proc.returncode == 0
    for rows in [*seen, *(tuple(tuple(r) for r in rep) for rep in cli_reports)]:
        assert [r[0] for r in rows] == list(AGENCIES), rows
        for r in rows:
            assert tuple(r) in allowed[r[0]], f"partial agency row in a report taken during the load: {r}"
    assert len(set(seen)) >= 2, "no report was taken while the load was changing the data"


@pytest.mark.parametrize("rows", [1, 300_000], ids=["small-file", "parallel-streams"])
def test_repeatable_read_snapshot_sees_old_or_new_rows_never_an_empty_agency(database_url: str, tmp_path: Path,
                                                                            rows: int) -> None:
    """A reader in one REPEATABLE READ transaction (a BI tool, a pg_dump-like export) whose snapshot was taken
    before a load commits must see, in the agency table and in customer_rating, the old rows or the new rows:
    never an empty agency. (TRUNCATE is not MVCC-safe; the rows are written frozen, so the snapshot sees the
    new ones.) The 300,000-row file is above PARALLEL_MIN_BYTES: its slice comes from the second connection."""
    agency = Agency(database_url, tmp_path)
    agency.load_baseline()
    body = b"".join(b"%d,7,7,high-value\n" % n for n in range(rows))
    agency.day_file.write_bytes(b"customer_number,customer_rating,customer_rating_limit,customer_status\n" + body)
    new_rows = Counter((n, 7, 7, "high-value") for n in range(rows))
    with _db.connect(database_url) as reader:
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT count(*) FROM load_history").fetchone()  # the snapshot is taken here
        run = agency.run(timeout=120)
        assert run.returncode == 0, str(run)
        in_table = _db.agency_rows(reader, "customer_rating_agency_a")
        in_consolidated, _ = _db.consolidated_rows(reader, "agency_a")
        reader.execute("COMMIT")
    assert in_table in (BASELINE_ROWS, new_rows), f"the snapshot saw {len(in_table)} distinct rows in the table"
    assert in_consolidated in (BASELINE_ROWS, new_rows), \
        f"the snapshot saw {len(in_consolidated)} distinct rows in customer_rating"
