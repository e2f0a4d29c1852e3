"""Bytes -> the header and line-aligned blocks of UTF-8 bytes, plus the CSV parse of single records.

The file is never held whole: :class:`BlockReader` hands out blocks of about ``BLOCK_SIZE`` bytes that end at
a line end, so a record's lines are together unless a quoted field spans the block edge (the validator then
hands the unfinished tail back with :meth:`BlockReader.push_back`). Files in another encoding than UTF-8 are
transcoded on the fly; bytes that do not decode are kept (surrogateescape) so that only their row fails.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import FileRejected, RejectReason
from .inputs.base import Stream

BLOCK_SIZE = 1 << 20
MAX_HEADER_BYTES = 4 << 20
MAX_RECORD_BYTES = 16 << 20
UTF8_BOM = codecs.BOM_UTF8
# A field may be as long as a record may be (Python's default limit is 128 KiB). The limit is process-wide
# state of the csv module: it is raised only while this module parses (see _field_limit), then put back.
FIELD_LIMIT = MAX_RECORD_BYTES + 1
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


_limit_lock = threading.Lock()
_limit_users = 0
_limit_saved = 0


@contextmanager
def _field_limit() -> Iterator[None]:
    """csv.field_size_limit raised to FIELD_LIMIT for the duration, then restored to what it was.

    Counted, so that parses in several threads at once keep it raised until the last one ends."""
    global _limit_users, _limit_saved
    with _limit_lock:
        if _limit_users == 0:
            _limit_saved = csv.field_size_limit(FIELD_LIMIT)
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                csv.field_size_limit(_limit_saved)


@dataclass(frozen=True)
class Header:
    """The header record: names as written (trimmed), and the physical line it ends on."""

    names: list[str]
    line_number: int


class BlockReader:
    """Reads a file as UTF-8 blocks that end on a line end, hashing the original bytes as it goes."""

    def __init__(self, raw: Stream, encoding: str = "utf-8", block_size: int = BLOCK_SIZE) -> None:
        self._raw = raw
        self._block_size = block_size
        self._encoding = encoding
        self._decoder = None if encoding == "utf-8" else codecs.getincrementaldecoder(encoding)("surrogateescape")
        self.lines_returned = 0
        """Line ends handed out so far (minus those pushed back): where the next block starts, in lines."""
        self.count_lines = True
        """When False the reader does not count line ends (a pass over every byte): its consumer keeps
        ``lines_returned`` equal to the lines it has consumed, for the line numbers of the reader's errors."""
        self._pending = b""
        self._eof = False
        self._first = True
        self._grow = False
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def _read_raw(self) -> bytes:
        chunk = self._raw.read(self._block_size)
        if not chunk:
            self._eof = True
            if self._decoder is not None:
                return self._decoder.decode(b"", final=True).encode("utf-8", "surrogateescape")
            return b""
        self.bytes_read += len(chunk)
        self.sha256.update(chunk)
        if self._first:
            self._first = False
            if chunk.startswith(_UTF16_BOMS) and self._decoder is None:
                raise FileRejected(
                    RejectReason.BAD_HEADER,
                    "the file is UTF-16 (it starts with a UTF-16 byte order mark): "
                    "set encoding = \"utf-16\" for this source or have the agency send UTF-8",
                    line=1,
                )
        if self._decoder is not None:
            try:
                return self._decoder.decode(chunk).encode("utf-8", "surrogateescape")
            except UnicodeError as exc:  # e.g. utf-16 without a byte order mark
                raise FileRejected(
                    RejectReason.BAD_HEADER if self.lines_returned == 0 else RejectReason.UNREADABLE,
                    f"cannot be read as {self._encoding}: {exc}; set the source's encoding to match the file "
                    "(e.g. utf-16-le or utf-16-be for UTF-16 without a byte order mark)",
                    line=self.lines_returned + 1,
                ) from None
        return chunk

    def push_back(self, data: bytes, *, unfinished: bool = False) -> None:
        """Return unconsumed bytes so the next block starts with them.

        ``unfinished`` marks a record that needs more lines: the next block then reads further before it
        returns, and a record that grows past ``MAX_RECORD_BYTES`` rejects the file.
        """
        newlines = data.count(b"\n") if self.count_lines else 0
        if unfinished and len(data) > MAX_RECORD_BYTES:
            raise FileRejected(
                RejectReason.RECORD_TOO_LARGE,
                f"the quoted record starting here runs over {MAX_RECORD_BYTES >> 20} MiB; "
                "is a closing quote missing?",
                line=self.lines_returned - newlines + 1,
            )
        self._pending = data + self._pending
        self._grow = unfinished
        self.lines_returned -= newlines

    @property
    def at_eof(self) -> bool:
        """True once the file is exhausted and nothing is pending."""
        return self._eof and not self._pending

    def next_block(self, limit: int = MAX_RECORD_BYTES) -> tuple[bytes, bool]:
        """The next block ending on a line end, and whether it is the last one.

        A line longer than ``limit`` rejects the file: it is not a CSV this tool can hold in bounded memory.
        """
        parts = [self._pending] if self._pending else []
        size = len(self._pending)
        has_newline = b"\n" in self._pending and not self._grow
        self._pending = b""
        self._grow = False
        while not self._eof and not (has_newline and size >= self._block_size):
            chunk = self._read_raw()
            parts.append(chunk)
            size += len(chunk)
            has_newline = has_newline or b"\n" in chunk
            if size > limit and not has_newline:
                if b"\r" in chunk:
                    raise _cr_only(self.lines_returned + 1)
                raise FileRejected(
                    RejectReason.RECORD_TOO_LARGE,
                    f"the line is longer than {limit >> 20} MiB; is this really a CSV file?",
                    line=self.lines_returned + 1,
                )
        data = b"".join(parts)
        if not self._eof:
            cut = data.rfind(b"\n") + 1
            self._pending = data[cut:]
            data = data[:cut]
        if self.count_lines:
            self.lines_returned += data.count(b"\n")
        return data, self._eof


def _cr_only(line: int) -> FileRejected:
    return FileRejected(RejectReason.BAD_HEADER, "the header's line ends with a lone CR (old Mac line ends): "
                        "convert the file to LF or CRLF line ends and drop it again", line)


def read_header(reader: BlockReader) -> tuple[Header, int]:
    """Read the header (the first non-empty line) and push the rest back.

    Returns the header and the number of physical lines it used up (blank lines before it included).
    """
    data = b""
    first = True
    while True:
        block, last = reader.next_block(limit=MAX_HEADER_BYTES)
        data += block
        if first:
            first = False
            if not data and last:
                raise FileRejected(RejectReason.EMPTY_FILE, "the file is empty (0 bytes): nothing to load", 1)
            if data.startswith(UTF8_BOM):
                data = data[len(UTF8_BOM):]
        stripped = data.lstrip(b"\r\n")
        if b"\n" in stripped or last:
            break
        if len(data) > MAX_HEADER_BYTES:
            raise FileRejected(RejectReason.BAD_HEADER, "the header line is longer than 4 MiB", 1)
    skipped = data[: len(data) - len(stripped)].count(b"\n")
    end = stripped.find(b"\n")
    line, rest = (stripped, b"") if end < 0 else (stripped[:end], stripped[end + 1:])
    if not line.strip(b"\r"):
        raise FileRejected(RejectReason.NO_HEADER, "the file has no header line (only blank lines)", 1)
    line_number = skipped + 1
    # NUL before the line-end checks: UTF-16 text read as bytes has NULs beside its CRs, and the NULs say
    # more about what is wrong.
    if b"\x00" in line:
        raise FileRejected(RejectReason.BAD_HEADER, "the header contains NUL bytes: this is not a text CSV file "
                           "(UTF-16? then set `encoding` for this source)", line_number)
    if b"\r" in line.rstrip(b"\r"):
        raise _cr_only(line_number)
    reader.push_back(rest)
    try:
        text = line.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        raise FileRejected(
            RejectReason.BAD_HEADER,
            "the header is not valid UTF-8: set `encoding` for this source to the file's encoding",
            line_number,
        ) from None
    try:
        with _field_limit():
            names = next(csv.reader([text], strict=True))
    except (csv.Error, StopIteration) as exc:
        raise FileRejected(RejectReason.BAD_HEADER, f"the header is not valid CSV: {exc}", line_number) from None
    return Header(names=[n.strip(" \t") for n in names], line_number=line_number), line_number


def parse_record(lines: Iterator[str]) -> tuple[list[str] | None, int, str | None]:
    """Parse one CSV record (RFC 4180, fields may span lines) from decoded lines.

    Returns (fields or None, lines consumed, error message or None). Running out of lines inside a quoted
    field is reported as an error with the lines consumed; the caller decides whether more lines may follow.
    """
    reader = csv.reader(lines, strict=True)
    try:
        with _field_limit():
            row = next(reader)
    except csv.Error as exc:
        return None, max(reader.line_num, 1), f"malformed CSV: {exc}"
    except StopIteration:
        return None, reader.line_num, "malformed CSV: unexpected end of data"
    return row, reader.line_num, None
