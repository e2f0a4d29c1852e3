"""One agency's file into PostgreSQL: lock -> stream into new child tables -> atomic swap -> history row.

Each row is stored once, in a child table of the load that inherits from both the agency's table and
``customer_rating`` (docs/adr/0005-single-write.md). The children are filled unattached, invisible to readers;
the swap (detach the old children, attach the new, the invalid rows, the history row and ``source_current``)
commits in one short transaction, so readers see the old data or the new and are never blocked longer than the
swap, and a crash at any point leaves the old data in place (docs/adr/0001-atomic-replace.md).

The stages, one module each: ``files`` (open the entry, the unchanged check), ``stream`` (validate blocks and
COPY them into the children), ``copytext`` (the invalid rows' COPY text), ``tables`` (children, swap, orphans),
``locks`` (bounded lock waits), ``history`` (load_history and source_current); ``context`` holds what they share.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO

import psycopg
from psycopg import sql

from ..config import Source
from ..days import local_today
from ..db.server import Connection, Database
from ..display import safe
from ..errors import DatabaseError, FileRejected, LoadStatus, LockWaitTimeout, RejectReason, TransientDatabaseError
from ..inputs import Entry, Location, Stream
from ..parse import BlockReader
from .context import (
    AGENCY_LOCK_NAMESPACE,
    PARALLEL_MIN_BYTES,
    Counts,
    LoadContext,
    ProgressFn,
    connections_used,
    default_streams,
)
from .copytext import copy_invalid
from .files import open_entry, unchanged_sha
from .history import counts_of, current_of, insert_history, next_load_id, record_outcome, set_current
from .locks import lock_wait_seconds, watch_client, with_lock_wait
from .stream import stream_rows
from .tables import attach_invalid, cleanup, drop_orphans, drop_replaced, ensure_table, swap_children

__all__ = [
    "PARALLEL_MIN_BYTES",
    "LoadResult",
    "ProgressFn",
    "connections_used",
    "default_streams",
    "load_source",
    "lock_wait_seconds",
    "record_missing",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    """What happened to one agency's file."""

    source: str
    path: Path | Entry
    """The local file, or the object's listing entry (``str()`` of it is its ``s3://bucket/key``)."""
    status: LoadStatus
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
    def retryable(self) -> bool:
        """A rejection that loading the same file again later may undo (it was still being written)."""
        return self.reason is not None and RejectReason(self.reason).retryable

    @property
    def backfill(self) -> bool:
        """Loaded for an older day than the agency's current data, which it therefore did not replace."""
        return self.current_as_of is not None


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
    day = as_of or local_today()
    clock = time.perf_counter()
    counts = Counts()
    size: int | None = None
    entry = path if isinstance(path, Entry) else Entry(path.name, path.absolute().as_uri(), 0, None, path=path)
    path = entry.path if entry.path is not None else entry
    uri = entry.uri
    try:
        with open_entry(entry, location, source.follow_symlinks) as fh:
            size = os.fstat(fh.fileno()).st_size if isinstance(fh, io.IOBase) else entry.size
            ctx = LoadContext(db, source, entry, day, started, lock_wait, streams, force, progress, counts, size)
            result = _load_open_file(ctx, fh)
    except FileRejected as exc:
        # Rejected before its load began (unreadable): a rejection found while reading is recorded, with
        # its invalid rows, by _load_open_file in the load's own transaction.
        found = Counts(read=counts.read)
        load_id = record_outcome(db, source, uri, size, None, LoadStatus.REJECTED, found, started, str(exc),
                                 exc.reason.value, day)
        cleanup(db, source)
        rejected = _rejected(source, path, exc, found, load_id, size, day)
        return LoadResult(**{**rejected.__dict__, "seconds": time.perf_counter() - clock})
    except LockWaitTimeout as exc:
        message = f"{safe(path.name)}: {exc}"
        record_outcome(db, source, uri, size, None, LoadStatus.FAILED, counts, started, str(exc), "lock_timeout", day)
        cleanup(db, source)
        raise LockWaitTimeout(message) from None
    except psycopg.Error as exc:
        db.discard_connection()
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        record_outcome(db, source, uri, size, None, LoadStatus.FAILED, counts, started, detail, None, day)
        cleanup(db, source)
        message = (f"{safe(path.name)}: the database failed during the load ({detail}); nothing of it was committed "
                   "and the previous data is intact")
        if isinstance(exc, psycopg.OperationalError):
            raise TransientDatabaseError(message + ": run again") from exc
        raise DatabaseError(message + ": please report this with the file") from exc
    return LoadResult(**{**result.__dict__, "seconds": time.perf_counter() - clock})


def record_missing(db: Database, source: Source, searched: str, as_of: date | None = None) -> int | None:
    """Record that ``source`` had no file for the day ``as_of`` in ``searched`` (status ``missing``); the agency
    keeps its data. Returns the history row's load id (None if even that could not be written)."""
    return record_outcome(db, source, searched, None, None, LoadStatus.MISSING, Counts(), datetime.now(UTC),
                          f"no file matching {source.file_pattern!r}", None, as_of or local_today())


def _load_open_file(ctx: LoadContext, fh: Stream) -> LoadResult:
    conn = ctx.db.connection()
    entry, uri, path = ctx.entry, ctx.uri, ctx.path
    watch_client(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (AGENCY_LOCK_NAMESPACE, ctx.source.name))
        current = current_of(conn, ctx.source)
        if not ctx.force:
            unchanged = unchanged_sha(conn, ctx.source, fh, ctx.size, entry.etag)
            if unchanged is not None:
                same = counts_of(conn, current.load_id)
                load_id = insert_history(conn, ctx.source, uri, ctx.size, unchanged, LoadStatus.UNCHANGED, same,
                                         ctx.started, None, None, ctx.force, as_of=ctx.day,
                                         data_load_id=current.load_id, etag=entry.etag)
                return LoadResult(ctx.source.name, path, LoadStatus.UNCHANGED, same.read, same.loaded, same.invalid,
                                  load_id=load_id, file_size=ctx.size, sha256=unchanged, as_of=ctx.day,
                                  data_load_id=current.load_id)
        # A file for an older day than the agency's current data: recorded in full, replaces nothing.
        backfill = current.as_of is not None and ctx.day < current.as_of
        drop_orphans(conn, ctx.source)
        ensure_table(conn, ctx.source)
        load_id = ctx.load_id = next_load_id(conn)
        child = f"customer_rating__{load_id}"
        reader = BlockReader(fh, ctx.source.encoding)
        with tempfile.TemporaryFile(prefix="customer-ratings-invalid-") as spool:
            try:
                # A savepoint: a rejected file rolls back to here (the agency's data untouched), and its
                # rejection is recorded below with the invalid rows found, in this same transaction.
                with conn.transaction():
                    t0 = time.perf_counter()
                    children, invalid_child = stream_rows(ctx, conn, reader, child, spool)
                    t1 = time.perf_counter()
                    sha = reader.sha256.hexdigest()
                    # A local file's size now (an object's reader checks the object's ETag itself, part by part).
                    if reader.bytes_read != ctx.size or (isinstance(fh, io.IOBase)
                                                     and os.fstat(fh.fileno()).st_size != ctx.size):
                        raise FileRejected(
                            RejectReason.FILE_CHANGED,
                            f"the file changed while it was read ({ctx.size} bytes at the start, {reader.bytes_read} "
                            "read): the agency may still be writing it; run again once it is complete",
                        )
                    _check_file_rules(ctx.source, ctx.counts)
                    copy_invalid(conn, spool)
                    t2 = time.perf_counter()
                    replaced = _replace(conn, ctx.source, children, invalid_child, backfill, ctx.lock_wait, ctx.counts)
                    insert_history(conn, ctx.source, uri, ctx.size, sha, LoadStatus.LOADED, ctx.counts, ctx.started,
                                   None, None, ctx.force, load_id=load_id, as_of=ctx.day, data_load_id=load_id,
                                   etag=entry.etag)
                    if not backfill:
                        set_current(conn, ctx.source, load_id, children, ctx.day)
            except FileRejected as exc:
                keep_rejected(conn, ctx.source, spool, load_id, ctx.lock_wait)
                insert_history(conn, ctx.source, uri, ctx.size, None, LoadStatus.REJECTED, ctx.counts, ctx.started,
                               str(exc), exc.reason.value, ctx.force, load_id=load_id, as_of=ctx.day, etag=entry.etag)
                return _rejected(ctx.source, path, exc, ctx.counts, load_id, ctx.size, ctx.day)
    t3 = time.perf_counter()
    drop_replaced(ctx.db, replaced)
    log.info("%s: stream+copy %.3f s, invalid rows %.3f s, swap+commit %.3f s, old children dropped %.3f s",
             ctx.source.name, t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)
    return LoadResult(ctx.source.name, path, LoadStatus.LOADED, ctx.counts.read, ctx.counts.loaded,
                      ctx.counts.invalid, None, load_id, ctx.size, sha, as_of=ctx.day,
                      current_as_of=current.as_of if backfill else None, data_load_id=load_id)


def _replace(conn: Connection, source: Source, children: list[str], invalid_child: str | None, backfill: bool,
             lock_wait: float, counts: Counts) -> list[str]:
    """The report's numbers of the new rows, then the swap (for a backfill, only its invalid rows attached);
    returns the tables to drop after the commit."""
    if not backfill:
        return swap_children(conn, source, children, invalid_child, lock_wait)
    if invalid_child is not None:
        child = invalid_child
        with_lock_wait(conn, ["file_invalid_rows"], lock_wait, lambda: attach_invalid(conn, child))
    return children  # their numbers are kept in the history; their rows are not current


def keep_rejected(conn: Connection, source: Source, spool: IO[bytes], load_id: int, lock_wait: float) -> None:
    """Keep the invalid rows a rejected file's reading found, under its load id: a small file's from the
    spool, a large file's table (committed by its helper connection) attached to file_invalid_rows. The
    rest of what the load made (its slice of customer_rating) is dropped."""
    copy_invalid(conn, spool)
    child = f"file_invalid_rows__{load_id}"
    if conn.execute("SELECT to_regclass(%s)", (sql.Identifier(child).as_string(conn),)).fetchone() != (None,):
        with_lock_wait(conn, ["file_invalid_rows"], lock_wait, lambda: attach_invalid(conn, child))
    drop_orphans(conn, source)


def _rejected(source: Source, path: Path | Entry, exc: FileRejected, counts: Counts, load_id: int | None,
              size: int | None, day: date) -> LoadResult:
    where = f" (line {exc.line})" if exc.line else ""
    return LoadResult(source.name, path, LoadStatus.REJECTED, counts.read, 0, counts.invalid,
                      f"{safe(path.name)}{where}: {exc}", load_id, size, reason=exc.reason.value, as_of=day)


def _check_file_rules(source: Source, counts: Counts) -> None:
    if counts.read < source.min_rows:
        raise FileRejected(RejectReason.TOO_FEW_ROWS,
                           f"{counts.read} data row(s), fewer than min_rows = {source.min_rows}")
    if counts.read and 100.0 * counts.invalid / counts.read > source.max_invalid_percent:
        raise FileRejected(
            RejectReason.TOO_MANY_INVALID,
            f"{counts.invalid} of {counts.read} rows are invalid ({100.0 * counts.invalid / counts.read:.2f}%), "
            f"over max_invalid_percent = {source.max_invalid_percent:g}",
        )
