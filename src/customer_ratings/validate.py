"""What makes a row valid: blocks of lines -> bytes ready for COPY, plus invalid rows with every failing column.

Two paths give the same answer (see docs/adr/0002-validation.md):

- fast: one RE2 pattern per file checks whole lines of a block at once (pyarrow, vectorized). It accepts only
  the plainest spelling of a valid row (no quotes, no spaces, no leading zeros, ASCII status) and encodes the
  INTEGER range in the pattern, so a line it accepts is sent to COPY as its original bytes.
- slow: every other line is parsed as CSV (quotes, multi-line fields) and checked column by column. It may
  still be valid (then it is re-written in canonical form) or it becomes an :class:`InvalidRow`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import STATUS_MAX_CHARS, Source
from .display import safe
from .errors import ErrorCode, FileRejected, RejectReason
from .parse import MAX_RECORD_BYTES, Header, parse_record
from .vectorized import ELIGIBLE, PendingLines, diagnose

INT_COLUMNS = ("customer_number", "customer_rating", "customer_rating_limit")
STATUS_COLUMN = "customer_status"
COLUMNS = (*INT_COLUMNS, STATUS_COLUMN)
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

_INT_RE = re.compile(r"[+-]?[0-9]+")
# Control characters are shown escaped so that a message stays on one line.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Printable ASCII without '"', ',' and '\\': the same in CSV and in COPY's text format (nothing to quote or
# escape), and in every ASCII-based encoding.
_STATUS_CHAR = r"[!#-+\--\[\]-~]"
_STATUS_FAST = rf"{_STATUS_CHAR}(?:[ !#-+\--\[\]-~]{{0,{STATUS_MAX_CHARS - 2}}}{_STATUS_CHAR})?"
_SHOWN_CHARS = 40
_SHOWN_NAMES = 5


def _digits_up_to(bound: str) -> str:
    """RE2 alternation for decimal numbers 0..bound written without leading zeros."""
    n = len(bound)
    alts = ["0", f"[1-9][0-9]{{0,{n - 2}}}"]
    for i, ch in enumerate(bound):
        low = 1 if i == 0 else 0
        if int(ch) > low:
            rest = f"[0-9]{{{n - i - 1}}}" if i < n - 1 else ""
            alts.append(f"{bound[:i]}[{low}-{int(ch) - 1}]{rest}")
    alts.append(bound)
    return "(?:" + "|".join(alts) + ")"


INT_FAST = f"(?:{_digits_up_to(str(INT_MAX))}|-{_digits_up_to(str(-INT_MIN))})"


@dataclass(slots=True)
class FieldError:
    """One failing column of a row (``column`` is None for row-wide problems)."""

    column: str | None
    code: ErrorCode
    message: str

    def as_json(self) -> dict[str, Any]:
        """The JSON object stored in ``file_invalid_rows.errors``."""
        return {"column": self.column, "code": self.code.value, "message": self.message}


@dataclass(slots=True)
class InvalidRow:
    """A data record that goes to ``file_invalid_rows``."""

    line_number: int
    record_number: int
    raw: str
    fields: dict[str, Any] | None
    errors: list[FieldError]

    @property
    def summary(self) -> str:
        """The one-line, high-level error for triage: columns and codes, no values (``customer_rating:
        not_an_integer; customer_status: too_long``), so that GROUP BY error gives one group per kind of problem."""
        return "; ".join(e.code.value if e.column is None else f"{e.column}: {e.code.value}" for e in self.errors)


@dataclass
class BlockResult:
    """What one block gave: COPY-ready bytes, invalid rows, and how far it got."""

    valid: list[bytes | memoryview] = field(default_factory=list)
    valid_rows: int = 0
    invalid: list[InvalidRow] = field(default_factory=list)
    invalid_copy: list[bytes] = field(default_factory=list)
    """``file_invalid_rows`` COPY text of the invalid rows diagnosed column-wise."""
    vector_invalid: int = 0
    lines: int = 0
    consumed: int = 0


@dataclass(frozen=True)
class Layout:
    """How a file's columns map onto the table, decided from its header."""

    file_columns: tuple[str | None, ...]
    """Canonical column per field position; None for an ignored extra column."""
    header_names: tuple[str, ...]

    @property
    def copy_columns(self) -> tuple[str, ...]:
        """The table columns, in the order the COPY stream carries them (the file's order)."""
        return tuple(c for c in self.file_columns if c is not None)

    @property
    def passthrough(self) -> bool:
        """Whether valid lines can go to COPY as they are (no extra columns to drop)."""
        return None not in self.file_columns


def plan_layout(header: Header, source: Source) -> Layout:
    """Match the header against the required columns (trimmed, case-insensitive, any order)."""
    lowered = [n.lower() for n in header.names]
    problems: list[str] = []
    missing = [c for c in COLUMNS if c not in lowered]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    dups = sorted({n for n in lowered if lowered.count(n) > 1})
    if dups:
        # Only names that are columns: the header's other content is not quoted (it may be anything).
        known = [d for d in dups if d in COLUMNS]
        others = len(dups) - len(known)
        problems.append("duplicated column(s) " + ", ".join(
            [*known, *([f"{others} unknown column name(s)"] if others else [])]))
    unknown = [n for n in header.names if n.lower() not in COLUMNS]
    if unknown and source.extra_columns == "reject":
        # With a required column missing, an unknown one is most likely it, renamed: ignoring would not help.
        hint = ("renamed? each expected column must be there" if missing
                else 'set extra_columns = "ignore" to allow')
        problems.append(f"{len(unknown)} unknown column(s) {_names(unknown)} ({hint})")
    if problems:
        raise FileRejected(
            RejectReason.BAD_HEADER,
            "header " + "; ".join(problems) + f"; expected {', '.join(COLUMNS)}",
            header.line_number,
        )
    return Layout(
        file_columns=tuple(n if n in COLUMNS else None for n in lowered),
        header_names=tuple(header.names),
    )


def _names(names: list[str]) -> str:
    """Header names a message may quote: the first 5, each cut at 40 characters, control characters escaped."""
    shown = ", ".join("'" + safe(_printable(n), _SHOWN_CHARS) + "'" for n in names[:_SHOWN_NAMES])
    return shown + (" ..." if len(names) > _SHOWN_NAMES else "")


def _shown(value: str) -> str:
    """The value as messages show it: quoted, cut at 40 characters (as vectorized._shown)."""
    value = _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", _printable(value))
    return "'" + (value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "...") + "'"


def _printable(text: str) -> str:
    """Text safe for PostgreSQL: undecodable bytes as \\xNN, NUL as \\x00."""
    if text.isascii() and "\x00" not in text:
        return text
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\x00", "\\x00")


class BlockValidator:
    """Validates line-aligned blocks of one file against one source's rules."""

    def __init__(self, layout: Layout, source: Source, eol: bytes, copy_prefix: str | None = None) -> None:
        """``copy_prefix`` (the leading COPY text columns of file_invalid_rows) enables column-wise diagnosis."""
        self.layout = layout
        self.copy_prefix = copy_prefix
        self.source = source
        self.eol = eol
        self.records = 0
        self._allowed = frozenset(source.allowed_status) if source.allowed_status else None
        self._pattern = self._fast_pattern() if layout.passthrough else None
        self._pending = PendingLines()

    def _fast_pattern(self) -> str:
        status = _STATUS_FAST
        if self.source.allowed_status:
            fast_safe = [s for s in self.source.allowed_status if re.fullmatch(_STATUS_FAST, s)]
            # An allowed value the fast path cannot vouch for still loads, through the slow path.
            status = "(?:" + "|".join(re.escape(s) for s in fast_safe) + ")" if fast_safe else "(?!)"
        parts = [status if c == STATUS_COLUMN else INT_FAST for c in self.layout.file_columns]
        eol = re.escape(self.eol.decode())
        return f"^{','.join(parts)}(?:{eol})?$"

    def process(self, data: bytes, first_line: int, eof: bool) -> BlockResult:
        """Validate the complete records of ``data``; ``consumed`` says where an unfinished one starts.

        Some invalid rows may be reported with a later block (they are diagnosed in batches); all of them are
        in the result of the last block (``eof``).
        """
        result = self._process(data, first_line, eof)
        if eof:
            self._diagnose_pending(result)
        return result

    def _process(self, data: bytes, first_line: int, eof: bool) -> BlockResult:
        buf = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(buf == 10) + 1
        if eof and data and data[-1] != 10:
            ends = np.append(ends, len(data))
        n = len(ends)
        result = BlockResult()
        if n == 0:
            return result
        offsets = np.zeros(n + 1, dtype=np.int64)
        offsets[1:] = ends
        if self._pattern is None:
            return self._process_rows(data, offsets, list(range(n)), first_line, eof, result)
        lines = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
        ok = pc.match_substring_regex(lines, self._pattern).to_numpy(zero_copy_only=False)
        if ok.all():
            result.valid.append(data[: offsets[n]])
            result.valid_rows = n
            self.records += n
            result.lines, result.consumed = n, int(offsets[n])
            return result
        if b'"' in data:  # records may span lines: go row by row in file order
            return self._process_rows(data, offsets, np.flatnonzero(~ok).tolist(), first_line, eof, result)
        return self._process_plain(data, buf, lines, ok, offsets, first_line, result)

    def _process_plain(self, data: bytes, buf: np.ndarray, lines: pa.Array, ok: np.ndarray, offsets: np.ndarray,
                       first_line: int, result: BlockResult) -> BlockResult:
        """A block without quotes: one record per line, so everything can be done column-wise.

        The lines the pattern accepted go to COPY as one slice of bytes (row order does not matter to a
        table); the others are diagnosed vectorized, and only the few that need it one by one.
        """
        n = len(ok)
        lengths = np.diff(offsets)
        bad = np.flatnonzero(~ok)
        if len(bad) * 16 < n:
            # The runs of good lines between the few bad ones, as slices: one copy of the bytes, nothing more.
            view = memoryview(data)
            run_starts = [0, *offsets[bad + 1].tolist()]
            run_ends = [*offsets[bad].tolist(), int(offsets[n])]
            good = b"".join([view[a:b] for a, b in zip(run_starts, run_ends, strict=True) if b > a])
        else:  # many bad lines: one byte mask is cheaper than thousands of slices
            good = buf[np.repeat(ok, lengths)].tobytes()
        if good and good[-1] != 10:
            good += self.eol  # the file's last line had no line end, and more lines may follow it
        result.valid.append(good)
        result.valid_rows = n - len(bad)
        first = buf[offsets[bad]]
        blank = ((lengths[bad] == 1) & (first == 10)) | (
            (lengths[bad] == 2) & (first == 13) & (buf[np.minimum(offsets[bad] + 1, len(buf) - 1)] == 10))
        is_record = np.ones(n, dtype=np.int64)
        is_record[bad[blank]] = 0
        record_numbers = self.records + np.cumsum(is_record)
        self.records = int(record_numbers[-1])
        one_by_one = bad[~blank]
        if one_by_one.size and self.copy_prefix is not None:
            eligible = pc.match_substring_regex(lines.take(pa.array(one_by_one)), ELIGIBLE).to_numpy(
                zero_copy_only=False)
            plain = one_by_one[eligible]
            if plain.size:
                ends = offsets[plain + 1]
                ends = ends - (buf[ends - 1] == 10)
                ends = ends - ((ends > offsets[plain]) & (buf[np.maximum(ends - 1, 0)] == 13))
                self._pending.add(buf, offsets[plain], ends, first_line + plain, record_numbers[plain])
                one_by_one = one_by_one[~eligible]
                if self._pending.full:
                    self._diagnose_pending(result)
        for i in one_by_one.tolist():
            raw = _strip_eol(data[offsets[i]:offsets[i + 1]])
            text, encoding_ok = _decode(raw)
            self._finish(text.split(","), None, text, encoding_ok, first_line + i, int(record_numbers[i]), result)
        result.lines, result.consumed = n, int(offsets[n])
        return result

    def _diagnose_pending(self, result: BlockResult) -> None:
        """Diagnose the plain invalid-looking lines collected so far, in one batch.

        Batching across blocks matters: with 1% invalid rows a block holds a few hundred, and the per-call
        cost of the column-wise checks would dominate."""
        batch = self._pending.take()
        if batch is None:
            return
        data, starts, ends, line_numbers, record_numbers = batch
        assert self.copy_prefix is not None
        buf = np.frombuffer(data, dtype=np.uint8)
        # A block can bring many more lines than a batch holds (a file of mostly invalid rows); their COPY text
        # is several times their size, so it is made, and handed on, a batch at a time.
        for at in range(0, len(starts), PendingLines.MAX_LINES):
            part = slice(at, at + PendingLines.MAX_LINES)
            found = diagnose(buf, starts[part], ends[part], line_numbers[part], record_numbers[part],
                             self.layout.file_columns, self.layout.header_names, self._allowed, self.copy_prefix)
            result.invalid_copy.append(found.copy_text)
            result.vector_invalid += int(found.invalid.sum())
            for k in (at + np.flatnonzero(~found.invalid)).tolist():
                text = data[starts[k]:ends[k]].decode("ascii")  # the pattern ELIGIBLE admits ASCII only
                self._finish(text.split(","), None, text, True, int(line_numbers[k]), int(record_numbers[k]),
                             result)

    def _process_rows(self, data: bytes, offsets: np.ndarray, bad: list[int], first_line: int, eof: bool,
                      result: BlockResult) -> BlockResult:
        """Row by row, in file order, for blocks with quotes (records may span lines)."""
        n = len(offsets) - 1
        view = memoryview(data)
        starts = offsets.tolist()
        cursor = 0
        for i in bad:
            if i < cursor:
                continue  # a line already taken by a multi-line record
            if i > cursor:
                result.valid.append(view[starts[cursor]:starts[i]])
                result.valid_rows += i - cursor
                self.records += i - cursor
            taken = self._record_at(data, starts, i, n, first_line, eof, result)
            if taken == 0:
                result.lines, result.consumed = i, starts[i]
                return result
            cursor = i + taken
        if cursor < n:
            result.valid.append(view[starts[cursor]:starts[n]])
            result.valid_rows += n - cursor
            self.records += n - cursor
        result.lines, result.consumed = n, starts[n]
        return result

    def _record_at(self, data: bytes, starts: list[int], i: int, n: int, first_line: int, eof: bool,
                   result: BlockResult) -> int:
        """Handle the record starting at line ``i``; return lines taken, 0 when it needs the next block."""
        line = data[starts[i]:starts[i + 1]]
        if line in (b"\n", b"\r\n", b""):
            return 1  # an entirely empty line: skipped, not a record
        if b'"' not in line:
            text, encoding_ok = _decode(_strip_eol(line))
            fields: list[str] | None = text.split(",")
            taken, parse_error = 1, None
        else:
            exhausted = False

            def decoded_lines() -> Iterator[str]:
                nonlocal exhausted
                for j in range(i, n):
                    yield _decode(data[starts[j]:starts[j + 1]])[0]
                exhausted = True

            fields, taken, parse_error = parse_record(decoded_lines())
            if exhausted and not eof:
                return 0
            taken = max(taken, 1)
            if starts[min(i + taken, n)] - starts[i] > MAX_RECORD_BYTES:
                raise FileRejected(
                    RejectReason.RECORD_TOO_LARGE,
                    f"the quoted record starting here runs over {MAX_RECORD_BYTES >> 20} MiB; "
                    "is a closing quote missing?",
                    first_line + i,
                )
            text, encoding_ok = _decode(_strip_eol(data[starts[i]:starts[min(i + taken, n)]]))
        self.records += 1
        self._finish(fields, parse_error, text, encoding_ok, first_line + i, self.records, result)
        return taken

    def _finish(self, fields: list[str] | None, parse_error: str | None, text: str, encoding_ok: bool,
                line_number: int, record_number: int, result: BlockResult) -> None:
        """Check a parsed record and add it to the result as a COPY line or an invalid row."""
        if parse_error is not None or fields is None:
            errors = [FieldError(None, ErrorCode.MALFORMED_CSV, parse_error or "malformed CSV")]
        else:
            line_out, errors = self.check(fields, encoding_ok)
            if line_out is not None:
                result.valid.append(line_out)
                result.valid_rows += 1
                return
        result.invalid.append(InvalidRow(line_number, record_number, _printable(text), self._fields_json(fields),
                                         errors))

    def check(self, fields: list[str], encoding_ok: bool = True) -> tuple[bytes | None, list[FieldError]]:
        """Check one parsed record: a canonical COPY line when valid, else every failing column."""
        columns = self.layout.file_columns
        if len(fields) != len(columns):
            return None, [FieldError(
                None, ErrorCode.WRONG_FIELD_COUNT,
                f"{len(fields)} field(s) where the header has {len(columns)}",
            )]
        errors: list[FieldError] = []
        out: list[str] = []
        for position, (column, value) in enumerate(zip(columns, fields, strict=True)):
            if not encoding_ok and _has_bad_bytes(value):
                # In an ignored extra column too: the row is not what the agency meant to send.
                name = column or safe(self.layout.header_names[position], _SHOWN_CHARS)
                errors.append(FieldError(name, ErrorCode.INVALID_ENCODING,
                                         f"{name}: bytes that are not valid {self.source.encoding}"))
                continue
            if column is None:
                continue
            value = value.strip(" \t")
            error = self._check_status(value) if column == STATUS_COLUMN else _check_int(value)
            if error is not None:
                errors.append(FieldError(column, error[0], f"{column}: {error[1]}"))
            elif column == STATUS_COLUMN:
                out.append(copy_text(value, ","))
            else:
                out.append(str(_to_int(value)))
        if errors:
            return None, errors
        return (",".join(out).encode() + self.eol), []

    def _check_status(self, value: str) -> tuple[ErrorCode, str] | None:
        if not value:
            return ErrorCode.MISSING_VALUE, "missing value"
        if "\x00" in value:
            return ErrorCode.INVALID_CHARACTER, f"{_shown(value)} contains a NUL character"
        if len(value) > STATUS_MAX_CHARS:
            return ErrorCode.TOO_LONG, f"{_shown(value)} is {len(value)} characters, over {STATUS_MAX_CHARS}"
        if self._allowed is not None and value not in self._allowed:
            return ErrorCode.NOT_ALLOWED, f"{_shown(value)} is not one of {', '.join(sorted(self._allowed))}"
        return None

    def _fields_json(self, fields: list[str] | None) -> dict[str, Any] | None:
        if fields is None:
            return None
        names = self.layout.header_names
        shown: dict[str, Any] = {name: _printable(v) for name, v in zip(names, fields, strict=False)}
        if len(fields) > len(names):
            shown["_extra_fields"] = [_printable(v) for v in fields[len(names):]]
        return shown


def copy_text(value: str | None, delimiter: str = "\t") -> str:
    """``value`` as a field of COPY's text format: ``\\N`` for None, else backslash, line breaks and the
    delimiter escaped (most values need none: test before replacing)."""
    if value is None:
        return "\\N"
    if "\\" in value or delimiter in value or "\n" in value or "\r" in value:
        return (value.replace("\\", "\\\\").replace(delimiter, "\\" + delimiter)
                .replace("\n", "\\n").replace("\r", "\\r"))
    return value


def _to_int(value: str) -> int:
    """The value of ``[+-]?[0-9]+`` with any number of leading zeros (int() refuses over 4,300 digits)."""
    number = int(value.lstrip("+-").lstrip("0") or "0")
    return -number if value.startswith("-") else number


def _check_int(value: str) -> tuple[ErrorCode, str] | None:
    if not value:
        return ErrorCode.MISSING_VALUE, "missing value"
    if not _INT_RE.fullmatch(value):
        return ErrorCode.NOT_AN_INTEGER, f"{_shown(value)} is not an integer"
    # Python refuses int() of over 4,300 digits: anything over 10 significant digits is out of range anyway.
    if len(value.lstrip("+-").lstrip("0")) > 10 or not INT_MIN <= _to_int(value) <= INT_MAX:
        return ErrorCode.OUT_OF_RANGE, f"{_shown(value)} is outside the INTEGER range {INT_MIN}..{INT_MAX}"
    return None


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    return line[:-1] if line.endswith(b"\r") else line


def _decode(raw: bytes) -> tuple[str, bool]:
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape"), False


def _has_bad_bytes(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def detect_eol(data: bytes) -> bytes:
    """The line end the COPY stream will use: the one of the first data line (CRLF or LF)."""
    end = data.find(b"\n")
    return b"\r\n" if end > 0 and data[end - 1] == 13 else b"\n"
