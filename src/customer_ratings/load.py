"""One agency's file into PostgreSQL: lock -> stream into new child tables -> atomic swap -> history row.

Each row is stored once, in a child table of the load that inherits from both the agency's table and
``customer_rating`` (docs/adr/0005-single-write.md). The children are filled unattached, invisible to readers;
the swap (detach the old children, attach the new, the invalid rows, the history row and ``source_current``)
commits in one short transaction, so readers see the old data or the new and are never blocked longer than the
swap, and a crash at any point leaves the old data in place (docs/adr/0001-atomic-replace.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from queue import Queue
from types import TracebackType
from typing import IO, Any, BinaryIO

import psycopg
from psycopg import sql

from .config import Source
from .db.migrate import AGENCY_TABLE_DDL, MIGRATION_LOCK_KEY
from .db.server import Connection, Database
from .display import safe
from .errors import (
    ConfigError,
    DatabaseError,
    FileRejected,
    LockWaitTimeout,
    RejectReason,
    TransientDatabaseError,
)
from .inputs import Entry, Location, Stream
from .parse import BlockReader, read_header
from .validate import BlockValidator, InvalidRow, copy_text, detect_eol, plan_layout

log = logging.getLogger(__name__)

# Per-agency advisory locks live in this namespace (first key of the two-key form).
AGENCY_LOCK_NAMESPACE = 7_041_002
# From this size on, the valid rows are split across parallel COPY streams on helper connections (and the invalid
# rows get one of their own); below it, one stream on the load's own connection is cheaper than opening more.
PARALLEL_MIN_BYTES = 8 << 20
# Parallel COPY streams for a large file: CUSTOMER_RATINGS_STREAMS, default one per core (docs/adr/0005).
STREAMS_ENV = "CUSTOMER_RATINGS_STREAMS"
MAX_STREAMS = 16
# Blocks queued per COPY stream: enough to ride out uneven server progress, few enough to keep memory flat.
QUEUE_DEPTH = 4
# The valid lines go to COPY in its text format with ',' as the delimiter: for the lines the fast pattern
# passes (no quotes, no backslashes) that is the file's own bytes, and the server parses it ~12% faster than
# CSV. Rows that needed the full parse are written escaped (validate.copy_text).
DATA_FORMAT = "FORMAT text, DELIMITER ','"
CHILD_COMMENT = "customer_ratings child for source "
INVALID_COMMENT = "customer_ratings invalid rows for source "
LOAD_COLUMNS = ("load_id", "source", "table_name", "file_uri")
ROW_COLUMNS = ("line_number", "record_number", "raw_line", "fields", "errors", "error")
INVALID_COLUMNS = (*LOAD_COLUMNS, *ROW_COLUMNS)

# How long a load waits for the locks of its swap that a reader holds (the replaced children, which every reader
# of the agency table or of customer_rating locks), in tries of at most LOCK_TRY_MAX_S each: no wait outlives
# its statement, and readers queued behind a waiting swap are let through between tries, so none of them waits
# longer than one try.
LOCK_WAIT_ENV = "CUSTOMER_RATINGS_LOCK_WAIT"
LOCK_WAIT_DEFAULT_S = 60.0
LOCK_TRY_MAX_S = 1.0
LOCK_PAUSE_S = 0.2
LOCK_WARN_EVERY = 10
# A leftover table still read by an old transaction is left for a later load rather than waited for.
ORPHAN_LOCK_WAIT = "200ms"

ProgressFn = Callable[[int, int], None]
"""Called after each block with (bytes read, rows read) since the previous call."""


@dataclass(frozen=True)
class LoadResult:
    """What happened to one agency's file."""

    source: str
    path: Path | Entry
    """The local file, or the object's listing entry (``str()`` of it is its ``s3://bucket/key``)."""
    status: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_invalid: int = 0
    error: str | None = None
    load_id: int | None = None
    file_size: int | None = None
    sha256: str | None = None
    seconds: float = 0.0
    reason: str | None = None
    """For a rejected file, the RejectReason value (e.g. ``file_changed``: worth retrying later)."""
    as_of: date | None = None
    """The day the file is for."""
    current_as_of: date | None = None
    """For a backfill (``as_of`` older than the agency's current data): the as-of date of the data that stays."""
    data_load_id: int | None = None
    """The load whose rows stand for this one: itself when loaded, the current load when unchanged."""

    @property
    def backfill(self) -> bool:
        """Loaded for an older day than the agency's current data, which it therefore did not replace."""
        return self.current_as_of is not None


@dataclass
class _Counts:
    read: int = 0
    loaded: int = 0
    invalid: int = 0
    rating_sum: int | None = None
    high_value: int | None = None


@dataclass(frozen=True)
class _Current:
    """The agency's current data when the load starts (under its lock)."""

    load_id: int | None
    as_of: date | None


def load_source(db: Database, source: Source, path: Path | Entry, *, location: Location | None = None,
                force: bool = False, progress: ProgressFn | None = None, as_of: date | None = None,
                streams: int | None = None) -> LoadResult:
    """Load ``path`` as the snapshot of ``source`` for the day ``as_of`` (default: today, local time).

    ``path`` is a local file, or an :class:`~customer_ratings.inputs.Entry` of ``location``'s listing (a
    local folder's entry is opened by its path; an object's through ``location``, pinned to its listed ETag).

    The agency's tables take the new rows unless the agency already holds data of a later day (a backfill:
    recorded in full in the history, with its numbers and invalid rows, but the newer data stays).

    Returns a LoadResult whose status is ``loaded``, ``unchanged`` or ``rejected`` (a rejected file changed no
    data; the reason is in the result and the history). Raises TransientDatabaseError when the database fails
    underneath the load, DatabaseError when it refuses it; nothing of the load is committed then.

    ``streams``: parallel COPY streams for a large file (default ``default_streams()``).
    """
    lock_wait = lock_wait_seconds()
    streams = streams or default_streams()
    started = datetime.now(UTC)
    day = as_of or date.today()
    clock = time.perf_counter()
    counts = _Counts()
    size: int | None = None
    entry = path if isinstance(path, Entry) else Entry(path.name, path.absolute().as_uri(), 0, None, path=path)
    path = entry.path if entry.path is not None else entry
    uri = entry.uri
    try:
        with _open_entry(entry, location, source.follow_symlinks) as fh:
            size = os.fstat(fh.fileno()).st_size if isinstance(fh, io.IOBase) else entry.size
            result = _load_open_file(db, source, entry, fh, size, force, started, counts, progress, day,
                                     lock_wait, streams)
    except FileRejected as exc:
        # Rejected before its load began (unreadable): a rejection found while reading is recorded, with
        # its invalid rows, by _load_open_file in the load's own transaction.
        found = _Counts(read=counts.read)
        load_id = _record(db, source, uri, size, None, "rejected", found, started, str(exc), exc.reason.value,
                          day)
        _cleanup(db, source)
        rejected = _rejected(source, path, exc, found, load_id, size, day)
        return LoadResult(**{**rejected.__dict__, "seconds": time.perf_counter() - clock})
    except LockWaitTimeout as exc:
        message = f"{safe(path.name)}: {exc}"
        _record(db, source, uri, size, None, "failed", counts, started, str(exc), "lock_timeout", day)
        _cleanup(db, source)
        raise LockWaitTimeout(message) from None
    except psycopg.Error as exc:
        db.discard_connection()
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _record(db, source, uri, size, None, "failed", counts, started, detail, None, day)
        _cleanup(db, source)
        message = (f"{safe(path.name)}: the database failed during the load ({detail}); nothing of it was committed "
                   "and the previous data is intact")
        if isinstance(exc, psycopg.OperationalError):
            raise TransientDatabaseError(message + ": run again") from exc
        raise DatabaseError(message + ": please report this with the file") from exc
    return LoadResult(**{**result.__dict__, "seconds": time.perf_counter() - clock})


def record_missing(db: Database, source: Source, searched: str, as_of: date | None = None) -> int | None:
    """Record that ``source`` had no file for the day ``as_of`` in ``searched`` (status ``missing``); the agency
    keeps its data. Returns the history row's load id (None if even that could not be written)."""
    return _record(db, source, searched, None, None, "missing", _Counts(), datetime.now(UTC),
                   f"no file matching {source.file_pattern!r}", None, as_of or date.today())


def _open_entry(entry: Entry, location: Location | None, follow_symlinks: bool) -> Stream:
    """A local entry's file (checked by ``_open_regular``), or an object opened at its first read."""
    if entry.path is not None:
        return _open_regular(entry.path, follow_symlinks)
    if location is None:
        raise ValueError(f"load_source of {entry.uri} needs the location it was listed in")
    where = location
    return _Deferred(lambda: where.open(entry))


class _Deferred:
    """An object opened (its first GET made) at the first read: an unchanged object, known by its listed size
    and ETag, is never fetched."""

    def __init__(self, open_stream: Callable[[], Stream]) -> None:
        self._open = open_stream
        self._stream: Stream | None = None

    def read(self, n: int = -1, /) -> bytes:
        if self._stream is None:
            self._stream = self._open()
        return self._stream.read(n)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def __enter__(self) -> _Deferred:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _open_regular(path: Path, follow_symlinks: bool = False) -> BinaryIO:
    try:
        # stat first: opening a FIFO named like a data file would block until someone writes to it
        if not stat.S_ISREG(os.stat(path).st_mode):
            if path.is_dir():
                raise FileRejected(RejectReason.UNREADABLE, "is a directory, not a file")
            raise FileRejected(RejectReason.UNREADABLE, "is not a regular file (a pipe or device?)")
        fh = open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block
    except IsADirectoryError:
        raise FileRejected(RejectReason.UNREADABLE, "is a directory, not a file") from None
    except OSError as exc:
        raise FileRejected(RejectReason.UNREADABLE, f"cannot be opened: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise FileRejected(RejectReason.UNREADABLE, "is not a regular file (a pipe or device?)")
    if not follow_symlinks and not _inside(_opened_path(fh, path), os.path.realpath(path.parent)):
        fh.close()
        raise FileRejected(RejectReason.UNREADABLE,
                           "is a symlink to outside the data folder; set follow_symlinks = true to allow it")
    return fh


def _opened_path(fh: BinaryIO, path: Path) -> str:
    """The real path of the file ``fh`` opened (checked after the open, so a link swapped in between cannot
    slip through); without /proc, the resolved ``path``."""
    try:
        real = os.readlink(f"/proc/self/fd/{fh.fileno()}")
    except OSError:
        return os.path.realpath(path)
    return real.removesuffix(" (deleted)")


def _inside(real: str, folder: str) -> bool:
    return os.path.commonpath([real, folder]) == folder


def _load_open_file(db: Database, source: Source, entry: Entry, fh: Stream, size: int, force: bool,
                    started: datetime, counts: _Counts, progress: ProgressFn | None, day: date,
                    lock_wait: float, streams: int) -> LoadResult:
    conn = db.connection()
    uri = entry.uri
    path = entry.path if entry.path is not None else entry
    _watch_client(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (AGENCY_LOCK_NAMESPACE, source.name))
        current = _current(conn, source)
        if not force:
            unchanged = _unchanged(conn, source, fh, size, entry.etag)
            if unchanged is not None:
                same = _counts_of(conn, current.load_id)
                load_id = _insert_history(conn, source, uri, size, unchanged, "unchanged", same, started,
                                          None, None, force, as_of=day, data_load_id=current.load_id,
                                          etag=entry.etag)
                return LoadResult(source.name, path, "unchanged", same.read, same.loaded, same.invalid,
                                  load_id=load_id, file_size=size, sha256=unchanged, as_of=day,
                                  data_load_id=current.load_id)
        # A file for an older day than the agency's current data: recorded in full, replaces nothing.
        backfill = current.as_of is not None and day < current.as_of
        _drop_orphan_stages(conn, source)
        _ensure_table(conn, source)
        load_id = _next_load_id(conn)
        stage = f"customer_rating__{load_id}"
        reader = BlockReader(fh, source.encoding)
        with tempfile.TemporaryFile(prefix="customer-ratings-invalid-") as spool:
            try:
                # A savepoint: a rejected file rolls back to here (the agency's data untouched), and its
                # rejection is recorded below with the invalid rows found, in this same transaction.
                with conn.transaction():
                    t0 = time.perf_counter()
                    stages, invalid_child = _stream(db, conn, source, reader, stage, load_id, uri, size, spool,
                                                    counts, progress, streams)
                    t1 = time.perf_counter()
                    sha = reader.sha256.hexdigest()
                    # A local file's size now (an object's reader checks the object's ETag itself, part by part).
                    if reader.bytes_read != size or (isinstance(fh, io.IOBase)
                                                     and os.fstat(fh.fileno()).st_size != size):
                        raise FileRejected(
                            RejectReason.FILE_CHANGED,
                            f"the file changed while it was read ({size} bytes at the start, {reader.bytes_read} "
                            "read): the agency may still be writing it; run again once it is complete",
                        )
                    _check_file_rules(source, counts)
                    _copy_invalid(conn, spool)
                    t2 = time.perf_counter()
                    replaced = _replace(conn, source, stages, invalid_child, backfill, lock_wait, counts)
                    _insert_history(conn, source, uri, size, sha, "loaded", counts, started, None, None, force,
                                    load_id=load_id, as_of=day, data_load_id=load_id, etag=entry.etag)
                    if not backfill:
                        _set_current(conn, source, load_id, stages, day)
            except FileRejected as exc:
                _keep_rejected(conn, source, spool, load_id, lock_wait)
                _insert_history(conn, source, uri, size, None, "rejected", counts, started, str(exc),
                                exc.reason.value, force, load_id=load_id, as_of=day, etag=entry.etag)
                return _rejected(source, path, exc, counts, load_id, size, day)
    t3 = time.perf_counter()
    _drop_replaced(db, replaced)
    log.info("%s: stream+copy %.3f s, invalid rows %.3f s, swap+commit %.3f s, old children dropped %.3f s",
             source.name, t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)
    return LoadResult(source.name, path, "loaded", counts.read, counts.loaded, counts.invalid, None, load_id,
                      size, sha, as_of=day, current_as_of=current.as_of if backfill else None,
                      data_load_id=load_id)


def _replace(conn: Connection, source: Source, stages: list[str], invalid_child: str | None, backfill: bool,
             lock_wait: float, counts: _Counts) -> list[str]:
    """The report's numbers of the new rows, then the swap (for a backfill, only its invalid rows attached);
    returns the tables to drop after the commit."""
    if not backfill:
        return _swap(conn, source, stages, invalid_child, lock_wait)
    if invalid_child is not None:
        child = invalid_child
        _with_lock_wait(conn, ["file_invalid_rows"], lock_wait, lambda: _attach_invalid(conn, child))
    return stages  # their numbers are kept in the history; their rows are not current


def _set_current(conn: Connection, source: Source, load_id: int, stages: list[str], day: date) -> None:
    conn.execute(
        """INSERT INTO source_current (source, table_name, load_id, child_table, as_of_date)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (source) DO UPDATE
           SET table_name = EXCLUDED.table_name, load_id = EXCLUDED.load_id,
               child_table = EXCLUDED.child_table, as_of_date = EXCLUDED.as_of_date""",
        (source.name, source.table, load_id, ", ".join(stages), day),
    )


def _keep_rejected(conn: Connection, source: Source, spool: IO[bytes], load_id: int, lock_wait: float) -> None:
    """Keep the invalid rows a rejected file's reading found, under its load id: a small file's from the
    spool, a large file's table (committed by its helper connection) attached to file_invalid_rows. The
    rest of what the load made (its slice of customer_rating) is dropped."""
    _copy_invalid(conn, spool)
    child = f"file_invalid_rows__{load_id}"
    if conn.execute("SELECT to_regclass(%s)", (sql.Identifier(child).as_string(conn),)).fetchone() != (None,):
        _with_lock_wait(conn, ["file_invalid_rows"], lock_wait, lambda: _attach_invalid(conn, child))
    _drop_orphan_stages(conn, source)


def _rejected(source: Source, path: Path | Entry, exc: FileRejected, counts: _Counts, load_id: int | None,
              size: int | None, day: date) -> LoadResult:
    where = f" (line {exc.line})" if exc.line else ""
    return LoadResult(source.name, path, "rejected", counts.read, 0, counts.invalid, f"{safe(path.name)}{where}: {exc}",
                      load_id, size, reason=exc.reason.value, as_of=day)


def _watch_client(conn: Connection) -> None:
    """Have the server check that this client is still there while a statement runs (PostgreSQL 14+), so a
    killed client's session ends within a second instead of going on waiting (for a lock, say)."""
    with suppress(psycopg.errors.UndefinedObject, psycopg.errors.InvalidParameterValue):
        conn.execute("SET client_connection_check_interval = '1s'")


def _current(conn: Connection, source: Source) -> _Current:
    # The current data stands for the newest day it was loaded or found unchanged for: after day 3's file was
    # day 2's (unchanged), a corrected file for day 2 is a backfill, not a replacement of day 3's snapshot.
    row = conn.execute(
        """SELECT c.load_id, greatest(c.as_of_date, (SELECT max(h.as_of_date) FROM load_history h
                                                     WHERE h.source = c.source AND h.status = 'unchanged'
                                                       AND h.data_load_id = c.load_id))
           FROM source_current c WHERE c.source = %s""",
        (source.name,)).fetchone()
    return _Current(None, None) if row is None else _Current(row[0], row[1])


def _counts_of(conn: Connection, load_id: int | None) -> _Counts:
    """The counts and numbers of a committed load (for an unchanged file: the load that stays current)."""
    row = conn.execute(
        """SELECT rows_read, rows_loaded, rows_invalid, sum_customer_rating, high_value_count
           FROM load_history WHERE load_id = %s""", (load_id,)).fetchone()
    return _Counts() if row is None else _Counts(*row)


def _unchanged(conn: Connection, source: Source, fh: Stream, size: int, etag: str | None = None) -> str | None:
    """The file's sha256 when it equals the agency's current load; hashed only when the sizes agree.

    An object (``etag`` from its listing) is the current load's when its size and ETag are: nothing is read.
    """
    row = conn.execute(
        """SELECT h.sha256, h.file_size, h.etag FROM source_current c JOIN load_history h USING (load_id)
           WHERE c.source = %s""",
        (source.name,),
    ).fetchone()
    if row is None or row[1] != size:
        return None
    if etag is not None or not isinstance(fh, io.IOBase):  # multipart ETags are no digests: equality only
        return str(row[0]) if etag is not None and row[2] == etag and row[0] is not None else None
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
    fh.seek(0)
    return digest.hexdigest() if digest.hexdigest() == row[0] else None


def _ensure_table(conn: Connection, source: Source) -> None:
    """Create the agency's table if `init` or the start of the run did not (e.g. a library caller)."""
    if conn.execute("SELECT to_regclass(%s)", (sql.Identifier(source.table).as_string(conn),)).fetchone() != (None,):
        return
    # The lock `init` takes too (session-level, so that it is not held for the whole load).
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(AGENCY_TABLE_DDL.format(sql.Identifier(source.table)))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def _next_load_id(conn: Connection) -> int:
    row = conn.execute("SELECT nextval(pg_get_serial_sequence('load_history', 'load_id'))").fetchone()
    assert row is not None
    return int(row[0])


def _tables_of(conn: Connection, source: Source, comments: tuple[str, ...], *, attached: bool) -> list[str]:
    """This agency's tables carrying one of ``comments`` (+ source name), attached by inheritance or not."""
    return [r[0] for r in conn.execute(
        sql.SQL(
            """SELECT c.relname FROM pg_class c
               JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
               WHERE c.relkind = 'r' AND d.description = ANY(%s) AND c.relnamespace = current_schema()::regnamespace
                 AND {} EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = c.oid)"""
        ).format(sql.SQL("" if attached else "NOT")),
        ([comment + source.name for comment in comments],),
    )]


def _drop_orphan_stages(conn: Connection, source: Source) -> None:
    """Drop the tables a killed or rejected load of this agency left behind (never attached, never visible).

    A replaced slice a reader still holds (its transaction began before the swap) is left for a later load:
    each drop waits at most ORPHAN_LOCK_WAIT for its lock.
    """
    for name in _tables_of(conn, source, (CHILD_COMMENT, INVALID_COMMENT), attached=False):
        _drop_orphan(conn, name)


def _drop_orphan(conn: Connection, name: str) -> None:
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(ORPHAN_LOCK_WAIT)))
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute("SET LOCAL lock_timeout TO DEFAULT")
    except psycopg.errors.LockNotAvailable:
        log.info("%s is still read by an older transaction; a later load drops it", name)


def _comment(conn: Connection, table: str, text: str) -> None:
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier(table), sql.Literal(text)))


def _add_constants(conn: Connection, table: str, columns: list[tuple[str, str, object]]) -> None:
    """Add NOT NULL columns with constant defaults: kept once in the catalog, not in the rows (no rewrite)."""
    conn.execute(sql.SQL("ALTER TABLE {} {}").format(sql.Identifier(table), sql.SQL(", ").join(
        sql.SQL("ADD COLUMN {} {} NOT NULL DEFAULT {}").format(sql.Identifier(name), sql.SQL(kind), sql.Literal(v))
        for name, kind, v in columns)))


def _create_stage(conn: Connection, source: Source, stage: str) -> None:
    """A new child of the agency, in the agency table's shape and tablespace (``_finish_stage`` completes it)."""
    conn.execute(AGENCY_TABLE_DDL.format(sql.Identifier(stage)) + _tablespace_of(conn, source.table))
    _comment(conn, stage, CHILD_COMMENT + source.name)


def _tablespace_of(conn: Connection, table: str) -> sql.Composable:
    """`` TABLESPACE x`` when a DBA moved the agency table out of the default tablespace: its rows go there."""
    row = conn.execute(
        """SELECT t.spcname FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace
           WHERE c.oid = to_regclass(%s)""", (sql.Identifier(table).as_string(conn),)).fetchone()
    return sql.SQL("") if row is None else sql.SQL(" TABLESPACE {}").format(sql.Identifier(row[0]))


def _finish_stage(conn: Connection, source: Source, stage: str, load_id: int) -> tuple[int, int]:
    """customer_rating's own columns as constants, and statistics for the planner (the parents' estimates
    include their children's). Returns the report's numbers of its rows (sum of customer_rating, high-value
    count), computed once by the server and kept in the history row."""
    _add_constants(conn, stage, [("customer", "TEXT", source.name), ("load_id", "BIGINT", load_id)])
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(stage)))
    row = conn.execute(sql.SQL(
        """SELECT coalesce(sum(customer_rating), 0), count(*) FILTER (WHERE customer_status = 'high-value')
           FROM {}""").format(sql.Identifier(stage))).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _in_parallel(calls: list[Callable[[], tuple[int, int] | None]]) -> list[tuple[int, int] | None]:
    """Run ``calls`` (each on its own connection) at once; their results, or the first error raised."""
    results: list[tuple[int, int] | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), name="finish-child", daemon=True)
               for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # bounded by the server, like a COPY's end (see _CopyStream)
    if errors:
        raise errors[0]
    return results


def _copy_statement(table: str, columns: tuple[str, ...], options: str, agency: str | None = None) -> sql.Composed:
    # FREEZE: the table is new in this transaction, so the rows can be written frozen and all-visible (no
    # hint-bit rewrite of every page on first read, nothing for vacuum to do). Frozen rows are visible to
    # snapshots older than the swap, so a REPEATABLE READ reader that meets the new child sees its rows.
    # The comment names the agency table the rows are for, for whoever reads pg_stat_activity (table names
    # are checked by the config: letters, digits and '_' only).
    note = sql.SQL(" /* rows of {} */").format(sql.Identifier(agency)) if agency else sql.SQL("")
    return sql.SQL("COPY {} ({}) FROM STDIN ({}, FREEZE){}").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(options), note)


def default_streams() -> int:
    """CUSTOMER_RATINGS_STREAMS, else one COPY stream per core (at least 1, at most MAX_STREAMS)."""
    value = os.environ.get(STREAMS_ENV, "").strip()
    if value:
        if not value.isdigit() or not 1 <= int(value) <= MAX_STREAMS:
            raise ConfigError(f"{STREAMS_ENV}={value!r} is not a whole number of COPY streams from 1 to {MAX_STREAMS}")
        return int(value)
    return max(1, min(MAX_STREAMS, os.cpu_count() or 1))


def connections_used(streams: int) -> int:
    """The database connections one load of a large file holds at once (for pools sized in connections)."""
    return 1 + streams + 1  # its own, one per COPY stream, one for the invalid rows


def _stream(db: Database, conn: Connection, source: Source, reader: BlockReader, stage: str, load_id: int,
            uri: str, size: int, spool: IO[bytes], counts: _Counts, progress: ProgressFn | None,
            streams: int = 1) -> tuple[list[str], str | None]:
    """Validate the file block by block while COPY streams the valid lines, each row once, into the load's
    new child table(s), which the swap then attaches to both parents (the agency table and customer_rating).

    A large file is split across ``streams`` children, one connection each, blocks dealt round-robin, so that
    the server's work runs on several backends; one more connection fills the load's own child table of
    file_invalid_rows. Each helper commits its table unattached (invisible to readers; an orphan if the load
    dies, dropped by the next one). A small file's single child is filled on this connection, in the load's
    transaction, and its invalid rows are spooled for ``_copy_invalid``.

    Returns the children and the invalid rows' table (None for a small file).
    """
    header, header_lines = read_header(reader)
    layout = plan_layout(header, source)
    parallel = size >= PARALLEL_MIN_BYTES
    stages = [stage] + ([f"{stage}_{k}" for k in range(1, streams)] if parallel else [])
    helpers: list[Connection] = []
    invalid_child = f"file_invalid_rows__{load_id}"
    streams_open: list[_CopyStream] = []
    invalid_sink: IO[bytes] | _CopyStream = spool
    try:
        # The load's columns lead each invalid row, except in the large load's own table (constants there).
        prefix = "" if parallel else "\t".join(copy_text(str(v)) for v in (load_id, source.name, source.table, uri))
        if parallel:
            helpers = [db.connect() for _ in range(len(stages) + 1)]
            for helper in helpers:
                helper.execute("BEGIN")
            for helper, name in zip(helpers, stages, strict=False):
                _create_stage(helper, source, name)
            _create_invalid_child(helpers[-1], source, invalid_child)
            data_sinks = [_CopyStream(h, _copy_statement(n, layout.copy_columns, DATA_FORMAT, source.table))
                          for h, n in zip(helpers, stages, strict=False)]
            invalid_sink = _CopyStream(helpers[-1], _copy_statement(invalid_child, ROW_COLUMNS, "FORMAT text"))
            streams_open += [*data_sinks, invalid_sink]
        else:
            _create_stage(conn, source, stage)
            data_sinks = [_CopyStream(conn, _copy_statement(stage, layout.copy_columns, DATA_FORMAT,
                                                         source.table))]
            streams_open += data_sinks
        _feed(reader, header_lines, layout, source, data_sinks, invalid_sink, prefix, counts, progress)
        for stream in streams_open:
            stream.close()
        if parallel:
            # Each helper completes and commits its own table at once: the children's sums, ANALYZE and
            # commits run on as many backends as there are streams.
            def finish(helper: Connection, name: str) -> tuple[int, int]:
                numbers = _finish_stage(helper, source, name, load_id)
                helper.execute("COMMIT")
                return numbers

            def finish_invalid() -> None:
                _finish_invalid_child(helpers[-1], source, invalid_child, load_id, uri)
                helpers[-1].execute("COMMIT")

            numbers = _in_parallel([*(partial(finish, h, n) for h, n in zip(helpers, stages, strict=False)),
                                    finish_invalid])[:-1]
        else:
            numbers = [_finish_stage(conn, source, stage, load_id)]
        counts.rating_sum = sum(n[0] for n in numbers if n is not None)
        counts.high_value = sum(n[1] for n in numbers if n is not None)
    except FileRejected:
        if isinstance(invalid_sink, _CopyStream):  # keep the invalid rows found so far (_keep_rejected)
            _keep_invalid_child(helpers[-1], invalid_sink, source, invalid_child, load_id, uri)
        for stream in streams_open:
            stream.abort()
        raise
    except BaseException:
        for stream in streams_open:
            stream.abort()
        raise
    finally:
        for helper in helpers:
            helper.close()
    return stages, invalid_child if parallel else None


def _keep_invalid_child(conn: Connection, stream: _CopyStream, source: Source, child: str, load_id: int,
                        uri: str) -> None:
    """A large file was rejected while it was read: commit its invalid rows so far, for the rejection."""
    try:
        stream.close()
        _finish_invalid_child(conn, source, child, load_id, uri)
        conn.execute("COMMIT")
    except psycopg.Error as exc:
        log.warning("%s: the invalid rows found before the file was rejected could not be kept: %s",
                    source.name, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


def _create_invalid_child(conn: Connection, source: Source, child: str) -> None:
    """A large load's own table of invalid rows; ``_finish_invalid_child`` makes it file_invalid_rows' shape."""
    conn.execute(sql.SQL(
        """CREATE TABLE {} (line_number BIGINT NOT NULL, record_number BIGINT NOT NULL, raw_line TEXT NOT NULL,
                            fields JSONB, errors JSONB NOT NULL, error TEXT NOT NULL)"""
    ).format(sql.Identifier(child)))
    _comment(conn, child, INVALID_COMMENT + source.name)


def _finish_invalid_child(conn: Connection, source: Source, child: str, load_id: int, uri: str) -> None:
    """The load's columns as constants, and a CHECK on load_id so that queries for other loads skip it."""
    _add_constants(conn, child, [("load_id", "BIGINT", load_id), ("source", "TEXT", source.name),
                                 ("table_name", "TEXT", source.table), ("file_uri", "TEXT", uri)])
    conn.execute(sql.SQL("ALTER TABLE {} ADD CHECK (load_id = {})").format(
        sql.Identifier(child), sql.Literal(load_id)))


def _feed(reader: BlockReader, header_lines: int, layout: Any, source: Source, stages: list[_CopyStream],
          invalid: IO[bytes] | _CopyStream, prefix: str, counts: _Counts, progress: ProgressFn | None) -> None:
    validator: BlockValidator | None = None
    line = header_lines + 1
    last_bytes = reader.bytes_read
    reader.count_lines = False  # the validator finds every line end anyway; the reader is told the count
    reader.lines_returned = header_lines
    turn = 0
    while not reader.at_eof:
        data, eof = reader.next_block()
        if validator is None:
            validator = BlockValidator(layout, source, detect_eol(data), copy_prefix=prefix)
        result = validator.process(data, line, eof)
        line += result.lines
        reader.lines_returned = line - 1
        if result.consumed < len(data):
            reader.push_back(data[result.consumed:], unfinished=True)
        if result.valid:
            # Whole blocks, dealt round-robin: every stream gets about the same share of the rows.
            stages[turn % len(stages)].write(b"".join(result.valid))
            turn += 1
        if result.invalid:
            invalid.write(_invalidcopy_text(result.invalid, prefix))
        for text in result.invalid_copy:
            invalid.write(text)
        counts.loaded += result.valid_rows
        counts.invalid += len(result.invalid) + result.vector_invalid
        counts.read = counts.loaded + counts.invalid
        if progress is not None:
            progress(reader.bytes_read - last_bytes, result.valid_rows + len(result.invalid))
            last_bytes = reader.bytes_read


def _check_file_rules(source: Source, counts: _Counts) -> None:
    if counts.read < source.min_rows:
        raise FileRejected(RejectReason.TOO_FEW_ROWS,
                           f"{counts.read} data row(s), fewer than min_rows = {source.min_rows}")
    if counts.read and 100.0 * counts.invalid / counts.read > source.max_invalid_percent:
        raise FileRejected(
            RejectReason.TOO_MANY_INVALID,
            f"{counts.invalid} of {counts.read} rows are invalid ({100.0 * counts.invalid / counts.read:.2f}%), "
            f"over max_invalid_percent = {source.max_invalid_percent:g}",
        )


_JSON = json.JSONEncoder(ensure_ascii=False)


def _invalidcopy_text(rows: list[InvalidRow], prefix: str) -> bytes:
    """COPY text lines of file_invalid_rows for ``rows`` (``prefix``: the load's columns, if the table has them)."""
    out = []
    encode = _JSON.encode
    lead = prefix + "\t" if prefix else ""
    for row in rows:
        fields = encode(row.fields) if row.fields is not None else None
        errors = encode([e.as_json() for e in row.errors])
        out.append(lead + "\t".join((str(row.line_number), str(row.record_number), copy_text(row.raw),
                                      copy_text(fields), copy_text(errors), copy_text(row.summary))))
    return ("\n".join(out) + "\n").encode("utf-8")


def _copy_invalid(conn: Connection, spool: IO[bytes]) -> None:
    if not spool.tell():
        return
    spool.seek(0)
    statement = sql.SQL("COPY file_invalid_rows ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, INVALID_COLUMNS)))
    with conn.cursor().copy(statement) as copy:
        while chunk := spool.read(1 << 20):
            copy.write(chunk)


def _swap(conn: Connection, source: Source, stages: list[str], invalid_child: str | None,
          lock_wait: float = LOCK_WAIT_DEFAULT_S) -> list[str]:
    """Replace the agency's rows: detach its current children from both parents, attach the new ones to both.

    Catalog work only, milliseconds, in the load's transaction: readers see the old children or the new ones.
    The only locks a reader can hold against it are on the replaced children (every reader of the agency
    table or of customer_rating takes them); the parents are taken in SHARE UPDATE EXCLUSIVE mode, which
    readers never wait for, and always customer_rating first, so that two swaps queue instead of deadlocking.
    Returns the replaced children; they are dropped after the commit (``_drop_replaced``).
    """
    old = _tables_of(conn, source, (CHILD_COMMENT,), attached=True)
    parents = ["customer_rating", source.table]

    def swap() -> None:
        for name in old:
            for parent in _parents_of(conn, name):
                conn.execute(sql.SQL("ALTER TABLE {} NO INHERIT {}").format(sql.Identifier(name),
                                                                            sql.Identifier(parent)))
        for name in stages:
            for parent in parents:
                conn.execute(sql.SQL("ALTER TABLE {} INHERIT {}").format(sql.Identifier(name),
                                                                         sql.Identifier(parent)))
        if invalid_child is not None:
            _attach_invalid(conn, invalid_child)

    _with_lock_wait(conn, [*parents, "file_invalid_rows", *old], lock_wait, swap)
    return old


def _parents_of(conn: Connection, table: str) -> list[str]:
    """The tables ``table`` inherits from, customer_rating first (the order every swap locks them in)."""
    return [r[0] for r in conn.execute(
        """SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
           WHERE i.inhrelid = %s::regclass ORDER BY p.relname <> 'customer_rating', p.relname""",
        (sql.Identifier(table).as_string(conn),))]


def _attach_invalid(conn: Connection, invalid_child: str) -> None:
    conn.execute(sql.SQL("ALTER TABLE {} INHERIT file_invalid_rows").format(sql.Identifier(invalid_child)))


def _drop_replaced(db: Database, names: list[str]) -> None:
    """Drop the slices a committed load replaced. Best effort: a slice left behind (the connection was lost,
    the process killed, a reader whose transaction predates the swap still holds it) is a detached orphan,
    dropped by the agency's next load."""
    try:
        conn = db.connection()
        for name in names:
            _drop_orphan(conn, name)
    except psycopg.Error as exc:
        log.warning("could not drop the replaced tables %s (the next load will): %s", names, exc)
        db.discard_connection()


def _insert_history(conn: Connection, source: Source, uri: str, size: int | None, sha: str | None,
                    status: str, counts: _Counts, started: datetime, error: str | None,
                    error_code: str | None, forced: bool = False, load_id: int | None = None,
                    as_of: date | None = None, data_load_id: int | None = None, etag: str | None = None) -> int:
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


def _record(db: Database, source: Source, uri: str, size: int | None, sha: str | None, status: str,
            counts: _Counts, started: datetime, error: str, error_code: str | None,
            as_of: date | None = None) -> int | None:
    """Best effort: record a rejected or failed file in the history, in a transaction of its own."""
    try:
        conn = db.connection()
        with conn.transaction():
            return _insert_history(conn, source, uri, size, sha, status, counts, started, error, error_code,
                                   as_of=as_of)
    except psycopg.Error as exc:
        log.warning("could not record the %s load of %s in load_history: %s", status, source.name, exc)
        db.discard_connection()
        return None


def _cleanup(db: Database, source: Source) -> None:
    """Best effort, after a rejected or failed load: drop the tables its helper connections committed. Skipped
    if another run is loading this agency (its tables look the same; the next load cleans up either way)."""
    try:
        conn = db.connection()
        with conn.transaction():
            row = conn.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))",
                               (AGENCY_LOCK_NAMESPACE, source.name)).fetchone()
            if row is not None and row[0]:
                _drop_orphan_stages(conn, source)
    except psycopg.Error as exc:
        log.warning("could not drop the unused tables of %s's load: %s", source.name, exc)
        db.discard_connection()


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


def _with_lock_wait(conn: Connection, relations: list[str], budget: float, step: Callable[[], None]) -> None:
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


class _CopyStream:
    """One COPY FROM STDIN fed from a bounded queue by its own thread, so the server parses one block
    while the client validates the next. The bound keeps memory flat when the server is the slower side.

    The protocol: the producer puts blocks, then exactly one end marker (``None``: ``close``, or ``_ABORT``
    then ``None``: ``abort``). The thread takes items until it has taken the end marker, whatever happens
    to the COPY, so the producer never blocks on a full queue and ``close`` never waits on a thread that waits
    for a marker it already took (an error at the end of the COPY: a trigger, a statement timeout, a cancel,
    a full disk). Once the thread has its marker it only waits for the server's answer (the COPY's result or
    its error; a lost connection fails the read), so joining it is bounded by the server, not by the queue.
    """

    _ABORT = object()

    def __init__(self, conn: Connection, statement: sql.Composed, depth: int = QUEUE_DEPTH) -> None:
        self._queue: Queue[object] = Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._ended = False  # the thread has taken the end marker (None)
        self._cursor = conn.cursor()
        self._statement = statement
        self._thread = threading.Thread(target=self._run, name="copy-writer", daemon=True)
        self._thread.start()

    def _take(self) -> object:
        item = self._queue.get()
        if item is None:
            self._ended = True
        return item

    def _run(self) -> None:
        try:
            with self._cursor.copy(self._statement) as copy:
                while (item := self._take()) is not None:
                    if item is self._ABORT:
                        raise _Aborted
                    assert isinstance(item, bytes)
                    copy.write(item)
        except BaseException as exc:  # re-raised in the caller's thread
            self._error = exc
            while not self._ended:  # keep draining so the producer never blocks forever
                self._take()

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the server; raises the writer's error if the COPY already failed."""
        if self._error is not None:
            self._raise()
        self._queue.put(data)

    def close(self) -> None:
        """Finish the COPY and wait for the server to confirm it (or raise its error)."""
        self._queue.put(None)
        self._join()
        if self._error is not None:
            self._raise()

    def abort(self) -> None:
        """Cancel the COPY (the transaction will be rolled back by the caller)."""
        if self._thread.is_alive() and not self._ended:
            self._queue.put(self._ABORT)
            self._queue.put(None)
        self._join()

    def _join(self) -> None:
        # Bounded by the server: once the thread has its end marker it waits only for the server's answer to
        # the end of the COPY (its result or its error), and a lost connection fails that read.
        self._thread.join()

    def _raise(self) -> None:
        assert self._error is not None
        raise self._error


class _Aborted(Exception):
    pass
