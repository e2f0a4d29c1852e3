"""One agency's file into PostgreSQL: lock -> stream into COPY -> atomic replace -> history row.

Everything an agency's replacement changes (its table, its slice of ``customer_rating``, its invalid rows,
its history row and ``source_current``) commits in one transaction, so readers see the old data or the new,
and a crash at any point leaves the old data in place (docs/adr/0001-atomic-replace.md).
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
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
from .errors import DatabaseError, FileRejected, RejectReason, TransientDatabaseError
from .inputs import Entry, Location, Stream
from .parse import BlockReader, read_header
from .validate import BlockValidator, InvalidRow, copy_text, detect_eol, plan_layout

log = logging.getLogger(__name__)

# Per-agency advisory locks live in this namespace (first key of the two-key form).
AGENCY_LOCK_NAMESPACE = 7_041_002
# From this size on, the agency's slice of customer_rating is fed by a second COPY stream on a second connection, in
# parallel; below it, the valid lines are buffered (at most this much) and sent again on the load's connection,
# which is cheaper than a second connection.
PARALLEL_MIN_BYTES = 8 << 20
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
                force: bool = False, progress: ProgressFn | None = None, as_of: date | None = None) -> LoadResult:
    """Load ``path`` as the snapshot of ``source`` for the day ``as_of`` (default: today, local time).

    ``path`` is a local file, or an :class:`~customer_ratings.inputs.Entry` of ``location``'s listing (a
    local folder's entry is opened by its path; an object's through ``location``, pinned to its listed ETag).

    The agency's tables take the new rows unless the agency already holds data of a later day (a backfill:
    recorded in full in the history, with its numbers and invalid rows, but the newer data stays).

    Returns a LoadResult whose status is ``loaded``, ``unchanged`` or ``rejected`` (a rejected file changed no
    data; the reason is in the result and the history). Raises TransientDatabaseError when the database fails
    underneath the load, DatabaseError when it refuses it; nothing of the load is committed then.
    """
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
            result = _load_open_file(db, source, entry, fh, size, force, started, counts, progress, day)
    except FileRejected as exc:
        where = f" (line {exc.line})" if exc.line else ""
        message = f"{safe(path.name)}{where}: {exc}"
        load_id = _record(db, source, uri, size, None, "rejected", counts, started, str(exc), exc.reason.value,
                          day)
        _cleanup(db, source)
        return LoadResult(source.name, path, "rejected", counts.read, 0, 0, message, load_id, size,
                          seconds=time.perf_counter() - clock, reason=exc.reason.value, as_of=day)
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
                    started: datetime, counts: _Counts, progress: ProgressFn | None, day: date) -> LoadResult:
    conn = db.connection()
    uri = entry.uri
    path = entry.path if entry.path is not None else entry
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
            t0 = time.perf_counter()
            invalid_child = _stream(db, conn, source, reader, stage, load_id, uri, size, spool, counts, progress,
                                    backfill)
            t1 = time.perf_counter()
            sha = reader.sha256.hexdigest()
            # A local file's size now (an object's reader checks the object's ETag itself, part by part).
            if reader.bytes_read != size or (isinstance(fh, io.IOBase) and os.fstat(fh.fileno()).st_size != size):
                raise FileRejected(
                    RejectReason.FILE_CHANGED,
                    f"the file changed while it was read ({size} bytes at the start, {reader.bytes_read} read): "
                    "the agency may still be writing it; run again once it is complete",
                )
            _check_file_rules(source, counts)
            _copy_invalid(conn, spool)
            t2 = time.perf_counter()
        _aggregate(conn, stage, counts)
        if backfill:
            replaced = [stage]  # its numbers are kept in the history; its rows are not current
            if invalid_child is not None:
                _attach_invalid(conn, invalid_child)
        else:
            replaced = _swap(conn, source, stage, invalid_child)
        _insert_history(conn, source, uri, size, sha, "loaded", counts, started, None, None, force,
                        load_id=load_id, as_of=day, data_load_id=load_id, etag=entry.etag)
        if not backfill:
            conn.execute(
                """INSERT INTO source_current (source, table_name, load_id, child_table, as_of_date)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (source) DO UPDATE
                   SET table_name = EXCLUDED.table_name, load_id = EXCLUDED.load_id,
                       child_table = EXCLUDED.child_table, as_of_date = EXCLUDED.as_of_date""",
                (source.name, source.table, load_id, stage, day),
            )
    t3 = time.perf_counter()
    _drop_replaced(db, replaced)
    log.info("%s: stream+copy %.3f s, invalid rows %.3f s, swap+commit %.3f s, old slice dropped %.3f s",
             source.name, t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)
    return LoadResult(source.name, path, "loaded", counts.read, counts.loaded, counts.invalid, None, load_id,
                      size, sha, as_of=day, current_as_of=current.as_of if backfill else None,
                      data_load_id=load_id)


def _current(conn: Connection, source: Source) -> _Current:
    row = conn.execute("SELECT load_id, as_of_date FROM source_current WHERE source = %s",
                       (source.name,)).fetchone()
    return _Current(None, None) if row is None else _Current(row[0], row[1])


def _counts_of(conn: Connection, load_id: int | None) -> _Counts:
    """The counts and numbers of a committed load (for an unchanged file: the load that stays current)."""
    row = conn.execute(
        """SELECT rows_read, rows_loaded, rows_invalid, sum_customer_rating, high_value_count
           FROM load_history WHERE load_id = %s""", (load_id,)).fetchone()
    return _Counts() if row is None else _Counts(*row)


def _aggregate(conn: Connection, stage: str, counts: _Counts) -> None:
    """The report's numbers of the new rows, computed once by the server and kept in the history row."""
    row = conn.execute(sql.SQL(
        """SELECT coalesce(sum(customer_rating), 0), count(*) FILTER (WHERE customer_status = 'high-value')
           FROM {}""").format(sql.Identifier(stage))).fetchone()
    assert row is not None
    counts.rating_sum, counts.high_value = int(row[0]), int(row[1])


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
               WHERE c.relkind = 'r' AND d.description = ANY(%s)
                 AND {} EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = c.oid)"""
        ).format(sql.SQL("" if attached else "NOT")),
        ([comment + source.name for comment in comments],),
    )]


def _drop_orphan_stages(conn: Connection, source: Source) -> None:
    """Drop the tables a killed or rejected load of this agency left behind (never attached, never visible)."""
    for name in _tables_of(conn, source, (CHILD_COMMENT, INVALID_COMMENT), attached=False):
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def _comment(conn: Connection, table: str, text: str) -> None:
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier(table), sql.Literal(text)))


def _add_constants(conn: Connection, table: str, columns: list[tuple[str, str, object]]) -> None:
    """Add NOT NULL columns with constant defaults: kept once in the catalog, not in the rows (no rewrite)."""
    conn.execute(sql.SQL("ALTER TABLE {} {}").format(sql.Identifier(table), sql.SQL(", ").join(
        sql.SQL("ADD COLUMN {} {} NOT NULL DEFAULT {}").format(sql.Identifier(name), sql.SQL(kind), sql.Literal(v))
        for name, kind, v in columns)))


def _create_stage(conn: Connection, source: Source, stage: str) -> None:
    """The agency's new slice of customer_rating, in the agency table's shape (``_finish_stage`` completes it)."""
    conn.execute(AGENCY_TABLE_DDL.format(sql.Identifier(stage)))
    _comment(conn, stage, CHILD_COMMENT + source.name)


def _finish_stage(conn: Connection, source: Source, stage: str, load_id: int) -> None:
    _add_constants(conn, stage, [("customer", "TEXT", source.name), ("load_id", "BIGINT", load_id)])


def _copy_statement(table: str, columns: tuple[str, ...], options: str) -> sql.Composed:
    # FREEZE: both tables are new or truncated in this transaction, so the rows can be written frozen and
    # all-visible (no hint-bit rewrite of every page on first read, nothing for vacuum to do).
    return sql.SQL("COPY {} ({}) FROM STDIN ({}, FREEZE)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(options))


def _stream(db: Database, conn: Connection, source: Source, reader: BlockReader, stage: str, load_id: int,
            uri: str, size: int, spool: IO[bytes], counts: _Counts, progress: ProgressFn | None,
            backfill: bool = False) -> str | None:
    """Validate the file block by block while COPY streams the valid lines into the agency table and into
    the agency's new slice of customer_rating.

    A large file gets two more connections, so that everything streams at once: one fills the slice, one
    the load's own child table of file_invalid_rows (returned, to be attached by the swap). A small file's
    slice gets its lines again on this connection, and its invalid rows are spooled for ``_copy_invalid``.
    """
    header, header_lines = read_header(reader)
    layout = plan_layout(header, source)
    if not backfill:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(source.table)))
    stage_copy = _copy_statement(stage, layout.copy_columns, DATA_FORMAT)
    parallel = size >= PARALLEL_MIN_BYTES
    helpers = [db.connect(), db.connect()] if parallel else []
    invalid_child = f"file_invalid_rows__{load_id}"
    buffer = _Buffer()
    streams: list[_CopyStream] = []
    try:
        stage_sink: _CopyStream | _Buffer = buffer
        invalid_sink: IO[bytes] | _CopyStream = spool
        # The load's columns lead each invalid row, except in the large load's own table (constants there).
        prefix = "" if parallel else "\t".join(copy_text(str(v)) for v in (load_id, source.name, source.table, uri))
        if parallel:
            for helper in helpers:
                helper.execute("BEGIN")
            _create_stage(helpers[0], source, stage)
            _create_invalid_child(helpers[1], source, invalid_child)
            stage_sink = _CopyStream(helpers[0], stage_copy)
            invalid_sink = _CopyStream(helpers[1], _copy_statement(invalid_child, ROW_COLUMNS, "FORMAT text"))
            streams += [stage_sink, invalid_sink]
        table_sink: _CopyStream | _Discard = _Discard()
        if not backfill:
            table_sink = _CopyStream(conn, _copy_statement(source.table, layout.copy_columns, DATA_FORMAT))
            streams.append(table_sink)
        _feed(reader, header_lines, layout, source, stage_sink, table_sink, invalid_sink, prefix, counts, progress)
        for stream in streams:
            stream.close()
        if parallel:
            _finish_stage(helpers[0], source, stage, load_id)
            _finish_invalid_child(helpers[1], source, invalid_child, load_id, uri)
            for helper in helpers:
                helper.execute("COMMIT")
    except BaseException:
        for stream in streams:
            stream.abort()
        raise
    finally:
        for helper in helpers:
            helper.close()
    if not parallel:
        _create_stage(conn, source, stage)
        with conn.cursor().copy(stage_copy) as copy:
            for chunk in buffer.chunks:
                copy.write(chunk)
        _finish_stage(conn, source, stage, load_id)
    return invalid_child if parallel else None


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


def _feed(reader: BlockReader, header_lines: int, layout: Any, source: Source, stage: _CopyStream | _Buffer,
          table: _CopyStream | _Discard, invalid: IO[bytes] | _CopyStream, prefix: str, counts: _Counts,
          progress: ProgressFn | None) -> None:
    validator: BlockValidator | None = None
    line = header_lines + 1
    last_bytes = reader.bytes_read
    reader.count_lines = False  # the validator finds every line end anyway; the reader is told the count
    reader.lines_returned = header_lines
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
            payload = b"".join(result.valid)
            stage.write(payload)
            table.write(payload)
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


def _swap(conn: Connection, source: Source, stage: str, invalid_child: str | None) -> list[str]:
    """Replace the agency's slice of customer_rating with the new one: catalog work only, milliseconds.

    Returns the old slice(s), detached; they are dropped after the commit (``_drop_replaced``), because
    freeing their files takes a while and the lock on customer_rating is held until the end of the commit.
    """
    # The strongest lock first, so that two agencies swapping at once queue instead of deadlocking.
    conn.execute("LOCK TABLE customer_rating IN ACCESS EXCLUSIVE MODE")
    old = _tables_of(conn, source, (CHILD_COMMENT,), attached=True)
    for name in old:
        conn.execute(sql.SQL("ALTER TABLE {} NO INHERIT customer_rating").format(sql.Identifier(name)))
    conn.execute(sql.SQL("ALTER TABLE {} INHERIT customer_rating").format(sql.Identifier(stage)))
    if invalid_child is not None:
        _attach_invalid(conn, invalid_child)
    return old


def _attach_invalid(conn: Connection, invalid_child: str) -> None:
    conn.execute(sql.SQL("ALTER TABLE {} INHERIT file_invalid_rows").format(sql.Identifier(invalid_child)))


def _drop_replaced(db: Database, names: list[str]) -> None:
    """Drop the slices a committed load replaced. Best effort: a slice left behind (the connection was lost,
    the process killed) is a detached orphan, dropped by the agency's next load."""
    try:
        conn = db.connection()
        for name in names:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        log.warning("could not drop the replaced tables %s (the next load will): %s", names, exc)
        db.discard_connection()


def _insert_history(conn: Connection, source: Source, uri: str, size: int | None, sha: str | None,
                    status: str, counts: _Counts, started: datetime, error: str | None,
                    error_code: str | None, forced: bool = False, load_id: int | None = None,
                    as_of: date | None = None, data_load_id: int | None = None, etag: str | None = None) -> int:
    # An unchanged file stands for the current load: its row points there (data_load_id) and repeats its
    # numbers, so that a report for its day reads one row.
    keeps = status in ("loaded", "unchanged")
    row = conn.execute(
        """INSERT INTO load_history (load_id, source, table_name, file_uri, file_size, sha256, status,
                                     rows_read, rows_loaded, rows_invalid, error_code, error, forced, started_at,
                                     as_of_date, data_load_id, sum_customer_rating, high_value_count, etag)
           VALUES (COALESCE(%s, nextval(pg_get_serial_sequence('load_history', 'load_id'))),
                   %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           RETURNING load_id""",
        (load_id, source.name, source.table, uri, size, sha, status, counts.read,
         counts.loaded if keeps else 0, counts.invalid if keeps else 0,
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


class _CopyStream:
    """One COPY FROM STDIN fed from a bounded queue by its own thread, so the server parses one block
    while the client validates the next. The bound keeps memory flat when the server is the slower side."""

    _ABORT = object()

    def __init__(self, conn: Connection, statement: sql.Composed, depth: int = QUEUE_DEPTH) -> None:
        self._queue: Queue[object] = Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._cursor = conn.cursor()
        self._statement = statement
        self._thread = threading.Thread(target=self._run, name="copy-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self._cursor.copy(self._statement) as copy:
                while (item := self._queue.get()) is not None:
                    if item is self._ABORT:
                        raise _Aborted
                    assert isinstance(item, bytes)
                    copy.write(item)
        except BaseException as exc:
            self._error = exc
            while self._queue.get() is not None:  # keep draining so the producer never blocks forever
                pass

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the server; raises the writer's error if the COPY already failed."""
        if self._error is not None:
            self._raise()
        self._queue.put(data)

    def close(self) -> None:
        """Finish the COPY and wait for the server to confirm it."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            self._raise()

    def abort(self) -> None:
        """Cancel the COPY (the transaction will be rolled back by the caller)."""
        if self._thread.is_alive():
            self._queue.put(self._ABORT)
            self._queue.put(None)
            self._thread.join()

    def _raise(self) -> None:
        assert self._error is not None
        raise self._error


class _Aborted(Exception):
    pass


class _Discard:
    """Where a backfill's agency-table stream goes: the agency keeps its newer rows."""

    def write(self, data: bytes) -> None:
        """Drop ``data``."""


class _Buffer:
    """The valid lines of a small file (below PARALLEL_MIN_BYTES), kept for the second COPY."""

    # Transcoding can make the lines longer than the file (up to 3x for a one-byte encoding into UTF-8).
    LIMIT = 3 * PARALLEL_MIN_BYTES + (1 << 20)

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.LIMIT:  # only a file that grows while it is read gets here
            raise FileRejected(RejectReason.FILE_CHANGED, "the file grew while it was read: the agency may still "
                               "be writing it; run again once it is complete")
        self.chunks.append(data)
