"""Reconciliation files: for each agency whose load current as of a date has invalid rows,
``Customer_Rating_Invalid_Rows_<name>_YYYYMMDD.csv`` beside the report, so the agency can be told which rows
failed and why. Rows are streamed from the database (server-side cursor) into the file, never held whole in
memory, and the file is written atomically (complete and on disk before it gets its name)."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from pathlib import Path

from . import report
from .db.server import Database
from .errors import ConfigError
from .inputs import is_url
from .inspection import format_errors, invalid_rows, status_rows
from .outputs import write_atomic

COLUMNS = ("line_number", "record_number", "error", "errors", "raw_line")
"""``errors`` is every failing column as ``column: code (message); ...`` (inspection.format_errors)."""
CHUNK_BYTES = 1 << 20


def safe_name(name: str) -> str:
    """``name`` usable in a file name on any system: characters other than letters, digits, ``.``, ``-`` and
    ``_`` become ``_``, and it never starts with a dot."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return cleaned or "_"


def file_name(source: str, day: date) -> str:
    """The reconciliation file's name for ``source`` and the date ``day``."""
    return f"Customer_Rating_Invalid_Rows_{safe_name(source)}_{day:%Y%m%d}.csv"


def write_invalid_files(db: Database, output_dir: Path | str, day: date,
                        sources: Sequence[str]) -> list[Path | str]:
    """Write one reconciliation file per agency of ``sources`` whose load current as of ``day`` has invalid
    rows, and return their paths. An older file of that name for an agency with no invalid rows (any more) is
    removed, so the folder always says what the database says.

    To object storage each file is one PUT (atomic there), built in memory: one load's invalid rows."""
    if is_url(str(output_dir)):
        return [write_atomic(str(output_dir), file_name(row["source"], day),
                             b"".join(_csv_chunks(invalid_rows(db, [row["load_id"]]))))
                for row in status_rows(db, day, sources) if row["load_id"] is not None and row["rows_invalid"]]
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output folder {output_dir} cannot be created: {exc.strerror}") from None
    written: list[Path | str] = []
    for row in status_rows(db, day, sources):
        target = output_dir / file_name(row["source"], day)
        if row["load_id"] is None or not row["rows_invalid"]:
            target.unlink(missing_ok=True)
            continue
        write_streamed(output_dir, target, _csv_chunks(invalid_rows(db, [row["load_id"]])))
        written.append(target)
    if written:
        _fsync_dir(output_dir)
    return written


def _csv_chunks(rows: Iterable[dict[str, object]]) -> Iterator[bytes]:
    sink = _EncodedChunks()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow((row["line_number"], row["record_number"], row["error"],
                         format_errors(row["errors"]),  # type: ignore[arg-type]
                         row["raw_line"]))
        if sink.size >= CHUNK_BYTES:
            yield from sink.take()
    yield from sink.take()


class _EncodedChunks:
    """Where csv.writer writes: each row is encoded at once and kept as bytes until taken, so a row of a
    100 MB raw line costs one encoded copy (a StringIO would hold it as text, then again as its value)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self.chunks.append(data)
        self.size += len(data)
        return len(text)

    def take(self) -> list[bytes]:
        chunks, self.chunks, self.size = self.chunks, [], 0
        return chunks


def write_streamed(folder: Path, target: Path, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to ``target`` atomically, as report._write_atomically does for one bytes object
    (an anonymous O_TMPFILE named only when complete and on disk, else a named temporary file)."""
    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    anonymous = report._LINKAT is not None and hasattr(os, "O_TMPFILE")
    fd = -1
    if anonymous:
        try:
            fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o644)
        except OSError:  # a file system without O_TMPFILE support
            anonymous = False
    if not anonymous:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                for chunk in chunks:
                    out.write(chunk)
            os.fsync(fd)
            if anonymous:
                report._link_fd(fd, tmp)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
