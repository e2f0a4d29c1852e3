"""A reader's open transaction makes a load wait for its locks a bounded time, then fail cleanly (issue 9).

- A reader holds ``customer_rating_agency_a`` (TRUNCATE waits) or ``customer_rating`` (the swap waits) in an
  open transaction: with CUSTOMER_RATINGS_LOCK_WAIT=3 the load of A fails within the bound, stderr names the
  holder's pid, nothing of A's load is committed and its history row is ``failed`` (``lock_timeout``); B
  loads when only A's table is held (a reader of customer_rating holds every agency's swap, so B fails the same
  way); once the reader commits, the next load succeeds.
- kill -9 of the CLI while it waits for a lock: no backend of customer-ratings stays queued for that lock.
- A bad CUSTOMER_RATINGS_LOCK_WAIT is a config error naming the variable.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from customer_ratings.errors import ConfigError
from customer_ratings.load import lock_wait_seconds

from . import _db
from ._cli import assert_no_traceback, finish_cli, start_cli
from ._two import BOUND, SMALL_ROWS, Setup


def _holder(url: str, query: str) -> tuple[Any, int]:
    conn = _db.connect(url)
    conn.execute("SET application_name = 'reader-under-test'")
    conn.execute("BEGIN")
    conn.execute(query)
    (pid,) = conn.execute("SELECT pg_backend_pid()").fetchone()  # type: ignore[misc]
    return conn, int(pid)


@pytest.mark.parametrize(("query", "blocks_b"), [
    ("SELECT count(*) FROM customer_rating_agency_a", False),
    ("SELECT count(*) FROM customer_rating", True),
], ids=["agency_table", "customer_rating"])
def test_a_reader_holding_a_table(database_url: str, tmp_path: Path, query: str, blocks_b: bool) -> None:
    setup = Setup(database_url, tmp_path, SMALL_ROWS)
    reader, pid = _holder(database_url, query)
    try:
        env = {**setup.env, "CUSTOMER_RATINGS_LOCK_WAIT": "3"}
        started = time.monotonic()
        run = setup.load(setup.v2, env)
        took = time.monotonic() - started
        assert_no_traceback(run)
        assert took < 60, f"the lock wait of 3 s per agency took {took:.0f} s:\n{run}"
        a_errors = [e for e in run.error_lines if "agency_a" in e]
        assert len(a_errors) == 1, str(run)
        assert re.search(rf"a reader holds customer_rating\S* since .* \(pid {pid}, application reader-under-test",
                         a_errors[0]), str(run)
        assert "retried 3 times over 3 s" in a_errors[0] and "nothing was loaded" in a_errors[0], str(run)
        warnings = [line for line in run.stderr.splitlines() if "waiting for a lock" in line]
        assert 1 <= len(warnings) <= (6 if blocks_b else 3) and all(f"pid {pid}" in w for w in warnings), str(run)
        setup.check_failed_cleanly(run, "a reader holds", b_status="failed" if blocks_b else "loaded")
        with _db.connect(database_url) as conn:
            assert conn.execute("""SELECT error_code FROM load_history WHERE source = 'agency_a'
                                   ORDER BY load_id DESC LIMIT 1""").fetchone() == ("lock_timeout",)
        # The reader still sees the old rows, whole.
        assert reader.execute("SELECT count(*) FROM customer_rating_agency_a").fetchone() == (
            setup.expect["v1"]["agency_a"].rows,)
    finally:
        reader.execute("COMMIT")
        reader.close()
    setup.next_load_succeeds()


def test_kill_9_while_waiting_for_a_lock(database_url: str, tmp_path: Path) -> None:
    setup = Setup(database_url, tmp_path, SMALL_ROWS)
    reader, _pid = _holder(database_url, "SELECT count(*) FROM customer_rating_agency_a")
    waiting = """SELECT pid FROM pg_stat_activity WHERE application_name = 'customer-ratings'
                 AND wait_event_type = 'Lock'"""
    try:
        proc = start_cli(setup.args(setup.v2), setup.env, tmp_path / "logs")  # default LOCK_WAIT: 60 s
        try:
            with _db.connect(database_url) as conn:
                deadline = time.monotonic() + BOUND
                while not conn.execute(waiting).fetchall():
                    assert proc.poll() is None, "the load ended instead of waiting for the lock"
                    assert time.monotonic() < deadline, "the load never waited for the lock"
                    time.sleep(0.05)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                deadline = time.monotonic() + 10
                while left := conn.execute(waiting).fetchall():
                    assert time.monotonic() < deadline, f"backends still queued for the lock 10 s after kill -9: {left}"
                    time.sleep(0.1)
                # and the reader was never blocked by it: it can still take a stronger lock itself
                assert reader.execute("SELECT count(*) FROM customer_rating_agency_a").fetchone() is not None
        finally:
            finish_cli(proc, tmp_path / "logs", timeout=30)
    finally:
        reader.execute("COMMIT")
        reader.close()
    with _db.connect(database_url) as conn:
        assert _db.fingerprint(conn, "customer_rating_agency_a") == setup.expect["v1"]["agency_a"].fingerprint


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_lock_wait_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="CUSTOMER_RATINGS_LOCK_WAIT"):
        lock_wait_seconds({"CUSTOMER_RATINGS_LOCK_WAIT": value})
    assert lock_wait_seconds({}) == 60
    assert lock_wait_seconds({"CUSTOMER_RATINGS_LOCK_WAIT": " 2.5 "}) == 2.5
