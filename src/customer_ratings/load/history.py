"""load_history and source_current: one history row per file seen, and which load each agency's data is."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

import psycopg

from ..config import Source
from ..db.server import Connection, Database
from .context import Counts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Current:
    """The agency's current data when the load starts (under its lock)."""

    load_id: int | None
    as_of: date | None


def insert_history(conn: Connection, source: Source, uri: str, size: int | None, sha: str | None,
                   status: str, counts: Counts, started: datetime, error: str | None,
                   error_code: str | None, forced: bool = False, load_id: int | None = None,
                   as_of: date | None = None, data_load_id: int | None = None, etag: str | None = None) -> int:
    """One load_history row (a loaded, unchanged, rejected, failed or missing file); returns its load id."""
    # An unchanged file stands for the current load: its row points there (data_load_id) and repeats its
    # numbers, so that a report for its day reads one row. A rejected file's row says what reading found
    # (its invalid rows are kept under its load id); nothing of it is loaded.
    keeps = status in ("loaded", "unchanged")
    row = conn.execute(
        """INSERT INTO load_history (load_id, source, table_name, file_uri, file_size, sha256, status,
                                     rows_read, rows_loaded, rows_invalid, error_code, error, forced, started_at,
                                     as_of_date, data_load_id, sum_customer_rating, high_value_count, etag)
           VALUES (COALESCE(%s, nextval(pg_get_serial_sequence('load_history', 'load_id'))),
                   %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           RETURNING load_id""",
        (load_id, source.name, source.table, uri, size, sha, status, counts.read,
         counts.loaded if keeps else 0, counts.invalid if keeps or status == "rejected" else 0,
         error_code, error, forced, started, as_of, data_load_id,
         counts.rating_sum if keeps else None, counts.high_value if keeps else None, etag),
    ).fetchone()
    assert row is not None
    return int(row[0])


def record_outcome(db: Database, source: Source, uri: str, size: int | None, sha: str | None, status: str,
                   counts: Counts, started: datetime, error: str, error_code: str | None,
                   as_of: date | None = None) -> int | None:
    """Best effort: record a rejected or failed file in the history, in a transaction of its own."""
    try:
        conn = db.connection()
        with conn.transaction():
            return insert_history(conn, source, uri, size, sha, status, counts, started, error, error_code,
                                   as_of=as_of)
    except psycopg.Error as exc:
        log.warning("could not record the %s load of %s in load_history: %s", status, source.name, exc)
        db.discard_connection()
        return None


def current_of(conn: Connection, source: Source) -> _Current:
    """The load whose rows are the agency's data now, and the day that data stands for."""
    # The current data stands for the newest day it was loaded or found unchanged for: after day 3's file was
    # day 2's (unchanged), a corrected file for day 2 is a backfill, not a replacement of day 3's snapshot.
    row = conn.execute(
        """SELECT c.load_id, greatest(c.as_of_date, (SELECT max(h.as_of_date) FROM load_history h
                                                     WHERE h.source = c.source AND h.status = 'unchanged'
                                                       AND h.data_load_id = c.load_id))
           FROM source_current c WHERE c.source = %s""",
        (source.name,)).fetchone()
    return _Current(None, None) if row is None else _Current(row[0], row[1])


def counts_of(conn: Connection, load_id: int | None) -> Counts:
    """The counts and numbers of a committed load (for an unchanged file: the load that stays current)."""
    row = conn.execute(
        """SELECT rows_read, rows_loaded, rows_invalid, sum_customer_rating, high_value_count
           FROM load_history WHERE load_id = %s""", (load_id,)).fetchone()
    return Counts() if row is None else Counts(*row)


def set_current(conn: Connection, source: Source, load_id: int, children: list[str], day: date) -> None:
    """Make ``load_id`` (its child tables ``children``) the agency's current data, for the day ``day``."""
    conn.execute(
        """INSERT INTO source_current (source, table_name, load_id, child_table, as_of_date)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (source) DO UPDATE
           SET table_name = EXCLUDED.table_name, load_id = EXCLUDED.load_id,
               child_table = EXCLUDED.child_table, as_of_date = EXCLUDED.as_of_date""",
        (source.name, source.table, load_id, ", ".join(children), day),
    )


def next_load_id(conn: Connection) -> int:
    """A new load id, taken before the load so that its tables can be named after it."""
    row = conn.execute("SELECT nextval(pg_get_serial_sequence('load_history', 'load_id'))").fetchone()
    assert row is not None
    return int(row[0])
