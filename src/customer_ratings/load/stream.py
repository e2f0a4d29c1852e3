"""Validate a file block by block while COPY streams its valid rows into the load's children."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from queue import Queue
from typing import IO, Any

import psycopg
from psycopg import sql

from ..config import Source
from ..db.server import Connection
from ..errors import FileRejected
from ..parse import BlockReader, read_header
from ..validate import BlockValidator, copy_text, detect_eol, plan_layout
from .context import PARALLEL_MIN_BYTES, Counts, LoadContext, ProgressFn
from .copytext import ROW_COLUMNS, invalidcopy_text
from .tables import create_child, create_invalid_child, finish_child, finish_invalid_child

log = logging.getLogger(__name__)


# Blocks queued per COPY stream: enough to ride out uneven server progress, few enough to keep memory flat.
QUEUE_DEPTH = 4


# The valid lines go to COPY in its text format with ',' as the delimiter: for the lines the fast pattern
# passes (no quotes, no backslashes) that is the file's own bytes, and the server parses it ~12% faster than
# CSV. Rows that needed the full parse are written escaped (validate.copy_text).
DATA_FORMAT = "FORMAT text, DELIMITER ','"


def _in_parallel(calls: list[Callable[[], tuple[int, int] | None]]) -> list[tuple[int, int] | None]:
    """Run ``calls`` (each on its own connection) at once; their results, or the first error raised."""
    results: list[tuple[int, int] | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
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


def stream_rows(ctx: LoadContext, conn: Connection, reader: BlockReader, child: str,
                spool: IO[bytes]) -> tuple[list[str], str | None]:
    """Validate the file block by block while COPY streams the valid lines, each row once, into the load's
    new child table(s), which the swap then attaches to both parents (the agency table and customer_rating).

    A large file is split across ``ctx.streams`` children, one connection each, blocks dealt round-robin, so that
    the server's work runs on several backends; one more connection fills the load's own child table of
    file_invalid_rows. Each helper commits its table unattached (invisible to readers; an orphan if the load
    dies, dropped by the next one). A small file's single child is filled on this connection, in the load's
    transaction, and its invalid rows are spooled for ``copy_invalid``.

    Returns the children and the invalid rows' table (None for a small file).
    """
    header, header_lines = read_header(reader)
    layout = plan_layout(header, ctx.source)
    parallel = ctx.size >= PARALLEL_MIN_BYTES
    children = [child] + ([f"{child}_{k}" for k in range(1, ctx.streams)] if parallel else [])
    helpers: list[Connection] = []
    invalid_child = f"file_invalid_rows__{ctx.load_id}"
    streams_open: list[_CopyStream] = []
    invalid_sink: IO[bytes] | _CopyStream = spool
    try:
        # The load's columns lead each invalid row, except in the large load's own table (constants there).
        prefix = "" if parallel else "\t".join(
            copy_text(str(v)) for v in (ctx.load_id, ctx.source.name, ctx.source.table, ctx.uri))
        if parallel:
            helpers = [ctx.db.connect() for _ in range(len(children) + 1)]
            for helper in helpers:
                helper.execute("BEGIN")
            for helper, name in zip(helpers, children, strict=False):
                create_child(helper, ctx.source, name)
            create_invalid_child(helpers[-1], ctx.source, invalid_child)
            data_sinks = [_CopyStream(h, _copy_statement(n, layout.copy_columns, DATA_FORMAT, ctx.source.table))
                          for h, n in zip(helpers, children, strict=False)]
            invalid_sink = _CopyStream(helpers[-1], _copy_statement(invalid_child, ROW_COLUMNS, "FORMAT text"))
            streams_open += [*data_sinks, invalid_sink]
        else:
            create_child(conn, ctx.source, child)
            data_sinks = [_CopyStream(conn, _copy_statement(child, layout.copy_columns, DATA_FORMAT,
                                                         ctx.source.table))]
            streams_open += data_sinks
        _feed(reader, header_lines, layout, ctx.source, data_sinks, invalid_sink, prefix, ctx.counts, ctx.progress)
        for stream in streams_open:
            stream.close()
        if parallel:
            numbers = _finish_helpers(ctx, helpers, children, invalid_child)
        else:
            # No ANALYZE for a small file: it would cost more than its COPY (~8 ms for 10,000 rows, seconds over
            # 1,000 agencies); the planner sizes an unanalyzed table by its pages, and autovacuum analyzes it.
            numbers = [finish_child(conn, ctx.source, child, ctx.load_id, analyze=False)]
        ctx.counts.rating_sum = sum(n[0] for n in numbers)
        ctx.counts.high_value = sum(n[1] for n in numbers)
    except FileRejected:
        if isinstance(invalid_sink, _CopyStream):  # keep the invalid rows found so far (keep_rejected)
            _keep_invalid_child(helpers[-1], invalid_sink, ctx.source, invalid_child, ctx.load_id, ctx.uri)
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
    return children, invalid_child if parallel else None


def _finish_helpers(ctx: LoadContext, helpers: list[Connection], children: list[str],
                    invalid_child: str) -> list[tuple[int, int]]:
    """Each helper completes and commits its own table, all at once: the children's sums, ANALYZE and commits
    run on as many backends as there are streams. Returns each child's (sum of rating, high-value count)."""
    def finish(helper: Connection, name: str) -> tuple[int, int]:
        numbers = finish_child(helper, ctx.source, name, ctx.load_id)
        helper.execute("COMMIT")
        return numbers

    def finish_invalid() -> None:
        finish_invalid_child(helpers[-1], ctx.source, invalid_child, ctx.load_id, ctx.uri)
        helpers[-1].execute("COMMIT")

    done = _in_parallel([*(partial(finish, h, n) for h, n in zip(helpers, children, strict=False)), finish_invalid])
    return [n for n in done[:-1] if n is not None]


def _keep_invalid_child(conn: Connection, stream: _CopyStream, source: Source, child: str, load_id: int,
                        uri: str) -> None:
    """A large file was rejected while it was read: commit its invalid rows so far, for the rejection."""
    try:
        stream.close()
        finish_invalid_child(conn, source, child, load_id, uri)
        conn.execute("COMMIT")
    except psycopg.Error as exc:
        log.warning("%s: the invalid rows found before the file was rejected could not be kept: %s",
                    source.name, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


def _feed(reader: BlockReader, header_lines: int, layout: Any, source: Source, children: list[_CopyStream],
          invalid: IO[bytes] | _CopyStream, prefix: str, counts: Counts, progress: ProgressFn | None) -> None:
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
            children[turn % len(children)].write(b"".join(result.valid))
            turn += 1
        if result.invalid:
            invalid.write(invalidcopy_text(result.invalid, prefix))
        for text in result.invalid_copy:
            invalid.write(text)
        counts.loaded += result.valid_rows
        counts.invalid += len(result.invalid) + result.vector_invalid
        counts.read = counts.loaded + counts.invalid
        if progress is not None:
            progress(reader.bytes_read - last_bytes, result.valid_rows + len(result.invalid))
            last_bytes = reader.bytes_read


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
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
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
