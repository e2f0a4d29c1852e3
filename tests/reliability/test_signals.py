"""SIGTERM / SIGINT of a real ``customer-ratings load`` on the embedded server, and kill -9's stale handle.

A signal ends the command cleanly: exit 143 / 130, one ``interrupted by ...`` line, no traceback, the agency's
previous data intact, and the embedded server stopped (no postgres process left for that home). After a
``kill -9`` the server keeps running (the dead command never left); the next command drops the dead
command's handle and stops the server when it ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from customer_ratings import Settings, open_database
from tests.conftest import SEED_SAMPLE

from . import _db
from ._bigdata import Expect, write_agency_file
from ._cli import assert_no_traceback, finish_cli, run_cli, start_cli

BIG_ROWS = 1_500_000  # ~50 MB: several seconds of loading on this machine kind


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Expect, Path]:
    """A small and a big version of agency A's file, each in its own folder."""
    root = tmp_path_factory.mktemp("signal-data")
    (root / "small").mkdir()
    (root / "big").mkdir()
    small = write_agency_file(root / "small" / "Customer Rating Agency A Inc.csv", 2_000, 1)
    write_agency_file(root / "big" / "Customer Rating Agency A Inc.csv", BIG_ROWS, 2)
    # The other configured agencies' files too, so that a completed load exits 0 (a missing file is exit 1).
    for other in SEED_SAMPLE.glob("Customer Rating Agency [BCD] Inc.csv"):
        for folder in ("small", "big"):
            shutil.copy(other, root / folder / other.name)
    return root / "small", small, root / "big"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOMER_RATINGS_")}
    env.update(CUSTOMER_RATINGS_HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "xdg"),
               COLUMNS="200", PYTHONUNBUFFERED="1")
    return env


def _postgres_processes(pgdata: Path) -> list[int]:
    """Pids of postgres processes working in ``pgdata`` (their cwd: run as root, -D is /proc/self/cwd)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if argv and argv[0].endswith(b"postgres") and (cwd == str(pgdata) or str(pgdata).encode() in argv):
                found.append(int(entry.name))
    return found


def _server_url(pgdata: Path) -> str:
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    return f"host={lines[4]} port={lines[3]} user=postgres dbname=CustomerRatingData"


def _wait_for_copy(pgdata: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Wait (bounded) until the command streams its COPY into the embedded server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with psycopg.connect(_server_url(pgdata), autocommit=True, connect_timeout=5) as conn:
                row = conn.execute("""SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query ~ '^COPY'
                                      AND pid <> pg_backend_pid()""").fetchone()
                if row is not None:
                    time.sleep(0.3)  # well into it
                    return
        except (OSError, psycopg.Error, IndexError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the load never reached its COPY within {timeout} s (exit {proc.poll()})")


def _hold_agency_a(pgdata: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> psycopg.Connection[Any]:
    """As soon as the command's embedded server answers: a connection in a transaction that has read A's table."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            conn = psycopg.connect(_server_url(pgdata), autocommit=True, connect_timeout=5)
        except (OSError, psycopg.Error, IndexError, ValueError):
            time.sleep(0.02)
            continue
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM customer_rating_agency_a")
        return conn
    raise AssertionError(f"the command's server never answered within {timeout} s (exit {proc.poll()})")


def _assert_stopped(pgdata: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _postgres_processes(pgdata) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _postgres_processes(pgdata) == [], "the embedded server is still running"
    assert not (pgdata / "postmaster.pid").exists()


def _agency_a(home: Path) -> tuple[int, ...]:
    with open_database(Settings(home=home)) as db:
        return _db.fingerprint(db.connection(), "customer_rating_agency_a")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_rolls_the_load_back_and_stops_the_embedded_server(
        tmp_path: Path, files: tuple[Path, Expect, Path], signum: int, code: int) -> None:
    small, expect, big = files
    env = _env(tmp_path)
    home = tmp_path / "home"
    first = run_cli(["load", "--data-dir", str(small), "--quiet"], env, timeout=180)
    assert first.returncode == 0, str(first)
    _assert_stopped(home / "pgdata")

    proc = start_cli(["load", "--data-dir", str(big), "--quiet"], env, tmp_path / "logs")
    try:
        _wait_for_copy(home / "pgdata", proc)
        proc.send_signal(signum)
    finally:
        run = finish_cli(proc, tmp_path / "logs", timeout=120)
    assert run.returncode == code, str(run)
    assert_no_traceback(run)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("interrupted by ")]
    assert said == [line for line in lines if not line.startswith("database: ")], str(run)
    assert len(said) == 1 and signal.Signals(signum).name in said[0] and "rolled back" in said[0], str(run)
    _assert_stopped(home / "pgdata")
    assert _agency_a(home) == expect.fingerprint, "the previous data is intact"
    _assert_stopped(home / "pgdata")


def test_kill_9_leaves_a_handle_the_next_command_cleans_up(tmp_path: Path, files: tuple[Path, Expect, Path]) -> None:
    small, expect, big = files
    env = _env(tmp_path)
    pgdata = tmp_path / "home" / "pgdata"
    assert run_cli(["load", "--data-dir", str(small), "--quiet"], env, timeout=180).returncode == 0
    proc = start_cli(["load", "--data-dir", str(big), "--quiet"], env, tmp_path / "logs")
    try:
        _wait_for_copy(pgdata, proc)
        proc.kill()
    finally:
        finish_cli(proc, tmp_path / "logs", timeout=60)
    assert _postgres_processes(pgdata), "after kill -9 nobody stopped the server (nobody could)"
    assert str(proc.pid) in (tmp_path / "home" / ".server-users.json").read_text()

    after = run_cli(["init"], env, timeout=180)
    assert after.returncode == 0, str(after)
    _assert_stopped(pgdata)
    assert (tmp_path / "home" / ".server-users.json").read_text() == "[]"
    assert _agency_a(tmp_path / "home") == expect.fingerprint


def test_sigterm_with_an_external_server(database_url: str, tmp_path: Path,
                                         files: tuple[Path, Expect, Path]) -> None:
    small, expect, big = files
    env = _env(tmp_path)
    env["CUSTOMER_RATINGS_DATABASE_URL"] = database_url
    assert run_cli(["load", "--data-dir", str(small), "--quiet"], env, timeout=180).returncode == 0
    proc = start_cli(["load", "--data-dir", str(big), "--quiet"], env, tmp_path / "logs")
    try:
        with _db.connect(database_url) as conn:
            from ._fault import wait_for_query

            assert wait_for_query(conn, "^COPY", proc) is not None
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
    finally:
        run = finish_cli(proc, tmp_path / "logs", timeout=120)
    assert run.returncode == 143, str(run)
    assert_no_traceback(run)
    assert [line for line in run.stderr.splitlines() if line.startswith("interrupted by SIGTERM")], str(run)
    with _db.connect(database_url) as conn:
        assert _db.fingerprint(conn, "customer_rating_agency_a") == expect.fingerprint


def test_a_signal_leaves_the_server_to_a_command_still_using_it(tmp_path: Path,
                                                                files: tuple[Path, Expect, Path]) -> None:
    small, expect, big = files
    env = _env(tmp_path)
    home = tmp_path / "home"
    assert run_cli(["load", "--data-dir", str(small), "--quiet"], env, timeout=180).returncode == 0
    first = start_cli(["load", "--data-dir", str(big), "--quiet"], env, tmp_path / "logs", "first")
    second: subprocess.Popen[bytes] | None = None
    reader: psycopg.Connection[Any] | None = None
    try:
        # A reader of A's current rows holds the first command at its swap (a load is too quick to catch
        # otherwise): it stays in its load, with the agency's lock, until the signal.
        reader = _hold_agency_a(home / "pgdata", first)
        _wait_for_copy(home / "pgdata", first)
        # The second command joins the server, then waits for the agency's lock held by the first.
        second = start_cli(["load", "--data-dir", str(small), "--quiet", "--force"], env, tmp_path / "logs", "second")
        deadline = time.monotonic() + 60
        while f"[{second.pid}," not in (home / ".server-users.json").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"[{second.pid}," in (home / ".server-users.json").read_text(), "the second command never joined"
        first.send_signal(signal.SIGTERM)
    finally:
        interrupted = finish_cli(first, tmp_path / "logs", "first", timeout=120)
        if reader is not None:
            reader.close()
        if second is not None:
            finished = finish_cli(second, tmp_path / "logs", "second", timeout=180)
    assert interrupted.returncode == 143, str(interrupted)
    assert finished.returncode == 0, f"the server was stopped under the second command:\n{finished}"
    _assert_stopped(home / "pgdata")
    assert _agency_a(home) == expect.fingerprint
