"""Fault-test helpers: watching a running load through pg_stat_activity, and checking that what the database
holds is, for every agency, exactly one complete load."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from . import _db
from ._bigdata import AGENCIES, Expect


def other_backends(conn: Any) -> list[tuple[int, str, str]]:
    """(pid, state, query) of every other backend connected to this database."""
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        """SELECT pid, coalesce(state, ''), coalesce(query, '') FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'""")]


def copy_into(table: str) -> str:
    """A regex for the COPY of a load's rows for the agency table ``table`` (into one of the load's children)."""
    return rf'^COPY "customer_rating__\d+(_\d+)?" .*/\* rows of "{table}" \*/'


def wait_for_query(conn: Any, regex: str, proc: Any, timeout: float = 120) -> tuple[int, str] | None:
    """Poll until another backend of this database is active in a query matching ``regex``: (pid, query).
    None if ``proc`` ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            """SELECT pid, query FROM pg_stat_activity WHERE datname = current_database()
               AND pid <> pg_backend_pid() AND state = 'active' AND query ~ %s LIMIT 1""", (regex,)).fetchone()
        if row is not None:
            return int(row[0]), str(row[1])
        if proc.poll() is not None:
            return None
        time.sleep(0.002)
    raise AssertionError(f"no backend ran {regex!r} within {timeout} s")


def wait_until_done(conn: Any, pid: int, query: str, proc: Any, timeout: float = 120) -> bool:
    """Poll until backend ``pid`` is no longer active in ``query``; False if ``proc`` ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row is None or row[0] != "active" or row[1] != query:
            return proc.poll() is None
        if proc.poll() is not None:
            return False
        time.sleep(0.001)
    raise AssertionError(f"backend {pid} still in {query[:60]!r} after {timeout} s")


def wait_quiet(url: str, timeout: float = 30) -> None:
    """Wait until no other client backend is connected (a killed client's backend has rolled back)."""
    deadline = time.monotonic() + timeout
    with _db.connect(url) as conn:
        while other_backends(conn):
            if time.monotonic() > deadline:
                raise AssertionError(f"backends still there {timeout} s after the client died: "
                                     f"{other_backends(conn)}")
            time.sleep(0.02)


@dataclass(frozen=True)
class AgencyState:
    fingerprint: tuple[int, ...]
    current: int | None
    history: tuple[Any, ...] | None


def snapshot(url: str) -> tuple[dict[str, AgencyState], list[tuple[Any, ...]]]:
    """Every agency's table fingerprint and current load, and the whole load history."""
    with _db.connect(url) as conn:
        agencies = {}
        for agency in AGENCIES:
            current = _db.current_load(conn, agency)
            agencies[agency] = AgencyState(_db.fingerprint(conn, f"customer_rating_{agency}"), current, None)
        hist = conn.execute("SELECT * FROM load_history ORDER BY load_id").fetchall()
    return agencies, hist


def check_consistent(url: str, allowed: dict[str, list[Expect]]) -> dict[str, Expect]:
    """Each agency holds exactly one complete load among ``allowed``, in its table and in its partition of
    customer_rating alike, from its current load, whose history row counts agree. Returns which one."""
    found = {}
    with _db.connect(url) as conn:
        for agency in AGENCIES:
            fp = _db.fingerprint(conn, f"customer_rating_{agency}")
            matches = [e for e in allowed[agency] if e.fingerprint == fp]
            assert matches, f"{agency}: table holds {fp}, which is no complete load of {allowed[agency]}"
            expect = matches[0]
            assert _db.partition_fingerprint(conn, agency) == fp, f"{agency}: partition differs from its table"
            current = _db.current_load(conn, agency)
            assert current is not None
            ids = {r[0] for r in conn.execute("SELECT DISTINCT load_id FROM customer_rating WHERE customer = %s",
                                               (agency,))}
            assert ids == {current}, f"{agency}: partition rows from loads {ids}, current is {current}"
            hist = _db.history(conn, current)
            assert hist["status"] == "loaded"
            assert (hist["rows_loaded"], hist["rows_invalid"]) == (expect.rows, expect.invalid), hist
            (n_invalid,) = conn.execute("SELECT count(*) FROM file_invalid_rows WHERE load_id = %s",
                                        (current,)).fetchone()  # type: ignore[misc]
            assert n_invalid == expect.invalid, f"{agency}: {n_invalid} invalid rows stored for load {current}"
            found[agency] = expect
    return found
