"""Bounded lock waits: a load never waits longer than CUSTOMER_RATINGS_LOCK_WAIT for a reader, and says who."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import UTC
from typing import Any

import psycopg
from psycopg import sql

from ..db.server import Connection
from ..errors import (
    ConfigError,
    LockWaitTimeout,
)

log = logging.getLogger(__name__)


# How long a load waits for the locks of its swap that a reader holds (the replaced children, which every reader
# of the agency table or of customer_rating locks), in tries of at most LOCK_TRY_MAX_S each: no wait outlives
# its statement, and readers queued behind a waiting swap are let through between tries, so none of them waits
# longer than one try.
LOCK_WAIT_ENV = "CUSTOMER_RATINGS_LOCK_WAIT"


LOCK_WAIT_DEFAULT_S = 60.0


LOCK_TRY_MAX_S = 1.0


LOCK_PAUSE_S = 0.2


LOCK_WARN_EVERY = 10


def lock_wait_seconds(environ: Mapping[str, str] | None = None) -> float:
    """CUSTOMER_RATINGS_LOCK_WAIT: seconds a load waits for a table lock before it fails (default 60)."""
    value = (os.environ if environ is None else environ).get(LOCK_WAIT_ENV, "").strip()
    if not value:
        return LOCK_WAIT_DEFAULT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not (0 < seconds <= 86_400):  # also refuses nan and inf
        raise ConfigError(f"{LOCK_WAIT_ENV}={value!r} is not a number of seconds between 0 and 86400 "
                          f"(default {LOCK_WAIT_DEFAULT_S:g})")
    return seconds


def with_lock_wait(conn: Connection, relations: list[str], budget: float, step: Callable[[], None]) -> None:
    """Run ``step`` (statements that take strong locks on ``relations``) with a bounded lock wait.

    Each try runs in a savepoint with its own short ``lock_timeout`` (so a wait never outlives its statement,
    and a killed client's session does not stay queued ahead of readers); between tries the queue is left, so
    readers queued behind the load get through. After ``budget`` seconds: LockWaitTimeout naming the holder.
    """
    started = time.monotonic()
    deadline = started + budget
    holders: list[tuple[Any, ...]] = []
    tries = 0
    while True:
        tries += 1
        timeout = max(0.01, min(LOCK_TRY_MAX_S, deadline - time.monotonic()))
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{timeout * 1000:.0f}ms")))
                step()
                conn.execute("SET LOCAL lock_timeout TO DEFAULT")
            return
        except psycopg.errors.LockNotAvailable:
            holders = _lock_holders(conn, relations)
            if tries % LOCK_WARN_EVERY == 1:
                log.warning("waiting for a lock on %s (try %d, %.0f s of %g so far): %s", ", ".join(relations[:3]),
                            tries, time.monotonic() - started, budget, _describe_holders(holders))
        if deadline - time.monotonic() < 0.05:
            break
        time.sleep(min(LOCK_PAUSE_S, max(0.0, deadline - time.monotonic() - 0.05)))
    waited = time.monotonic() - started
    raise LockWaitTimeout(
        f"{_describe_holders(holders)}; retried {tries} times over {waited:.0f} s "
        f"({LOCK_WAIT_ENV} = {budget:g}); nothing was loaded: run again once the reader has finished")


def _lock_holders(conn: Connection, relations: list[str]) -> list[tuple[Any, ...]]:
    """(relation, pid, application_name, state, xact_start) of other sessions holding locks on ``relations``."""
    return conn.execute(
        """SELECT DISTINCT c.relname, a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
                  a.xact_start
           FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.granted AND l.pid <> pg_backend_pid() AND l.database = (
                 SELECT oid FROM pg_database WHERE datname = current_database())
             AND c.relname = ANY(%s)
           ORDER BY a.xact_start NULLS LAST, a.pid""",
        (relations,),
    ).fetchall()


def _describe_holders(holders: list[tuple[Any, ...]]) -> str:
    if not holders:
        return "another session held the lock (it has let go since)"
    parts = []
    for relname, pid, app, state, since in holders[:3]:
        when = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if since is not None else "?"
        parts.append(f"a reader holds {relname} since {when} (pid {pid}, application {app or '(none)'!s}, {state})")
    more = f" and {len(holders) - 3} more" if len(holders) > 3 else ""
    return "; ".join(parts) + more


def watch_client(conn: Connection) -> None:
    """Have the server check that this client is still there while a statement runs (PostgreSQL 14+), so a
    killed client's session ends within a second instead of going on waiting (for a lock, say)."""
    with suppress(psycopg.errors.UndefinedObject, psycopg.errors.InvalidParameterValue):
        conn.execute("SET client_connection_check_interval = '1s'")
