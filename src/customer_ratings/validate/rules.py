"""What makes a row valid, and a file's header usable: the rules, their error codes and their messages.

The columns and their limits come from :mod:`customer_ratings.schema`. Both validation paths use what is here:
the row-by-row check (:class:`RowRules`, the reference) and the column-wise diagnosis (``vectorized``), which
takes its message texts from :func:`message_parts` so that the two cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..config import Source
from ..display import safe
from ..errors import ErrorCode, FileRejected, RejectReason
from ..parse import MAX_RECORD_BYTES, Header
from ..schema import (
    COLUMN_NAMES,
    INT_MAX,
    INT_MAX_DIGITS,
    INT_MIN,
    INT_PATTERN,
    INT_RANGE,
    SHOWN_CHARS,
    STATUS_MAX_CHARS,
    is_status,
)

_INT_RE = re.compile(INT_PATTERN)
# Control characters are shown escaped so that a message stays on one line.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Printable ASCII without '"', ',' and '\\': the same in CSV and in COPY's text format (nothing to quote or
# escape), and in every ASCII-based encoding.
_STATUS_CHAR = r"[!#-+\--\[\]-~]"
STATUS_FAST = rf"{_STATUS_CHAR}(?:[ !#-+\--\[\]-~]{{0,{STATUS_MAX_CHARS - 2}}}{_STATUS_CHAR})?"
# Header names a message quotes, at most.
_SHOWN_NAMES = 5

P = TypeVar("P")


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


# The INTEGER range in the fast pattern: a line it accepts cannot make COPY fail.
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


def summary(errors: Iterable[tuple[str | None, ErrorCode]]) -> str:
    """The one-line, high-level error for triage: columns and codes, no values (``customer_rating:
    not_an_integer; customer_status: too_long``), so that GROUP BY error gives one group per kind of problem."""
    return "; ".join(code.value if column is None else f"{column}: {code.value}" for column, code in errors)


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
        """The high-level error of :func:`summary`."""
        return summary((e.column, e.code) for e in self.errors)


def message_parts(column: str, code: ErrorCode, shown: P, length: P, allowed: Iterable[str] = ()) -> list[str | P]:
    """A column's error message: literal text around stand-ins for the value as shown (see :func:`shown_value`)
    and for its length in characters. The row path passes strings; the vectorized path passes placeholders
    it fills with whole columns. ``allowed`` is listed in the order given (callers sort it)."""
    head = f"{column}: "
    if code is ErrorCode.MISSING_VALUE:
        return [head + "missing value"]
    quoted: list[str | P] = [head + "'", shown, "'"]
    if code is ErrorCode.NOT_AN_INTEGER:
        return [*quoted, " is not an integer"]
    if code is ErrorCode.OUT_OF_RANGE:
        return [*quoted, f" is outside the INTEGER range {INT_RANGE}"]
    if code is ErrorCode.TOO_LONG:
        return [*quoted, " is ", length, f" characters, over {STATUS_MAX_CHARS}"]
    if code is ErrorCode.NOT_ALLOWED:
        return [*quoted, " is not one of " + ", ".join(allowed)]
    if code is ErrorCode.INVALID_CHARACTER:
        return [*quoted, " contains a NUL character"]
    raise ValueError(f"no column message for {code}")


def wrong_field_count_message(found: int, expected: int) -> str:
    """The message of :attr:`ErrorCode.WRONG_FIELD_COUNT`."""
    return f"{found} field(s) where the header has {expected}"


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
    missing = [c for c in COLUMN_NAMES if c not in lowered]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    dups = sorted({n for n in lowered if lowered.count(n) > 1})
    if dups:
        # Only names that are columns: the header's other content is not quoted (it may be anything).
        known = [d for d in dups if d in COLUMN_NAMES]
        others = len(dups) - len(known)
        problems.append("duplicated column(s) " + ", ".join(
            [*known, *([f"{others} unknown column name(s)"] if others else [])]))
    unknown = [n for n in header.names if n.lower() not in COLUMN_NAMES]
    if unknown and source.extra_columns == "reject":
        # With a required column missing, an unknown one is most likely it, renamed: ignoring would not help.
        hint = ("renamed? each expected column must be there" if missing
                else 'set extra_columns = "ignore" to allow')
        problems.append(f"{len(unknown)} unknown column(s) {_names(unknown)} ({hint})")
    if problems:
        raise FileRejected(
            RejectReason.BAD_HEADER,
            "header " + "; ".join(problems) + f"; expected {', '.join(COLUMN_NAMES)}",
            header.line_number,
        )
    return Layout(
        file_columns=tuple(n if n in COLUMN_NAMES else None for n in lowered),
        header_names=tuple(header.names),
    )


def record_too_large(line_number: int) -> FileRejected:
    """The rejection of a file whose quoted record runs past ``MAX_RECORD_BYTES`` from ``line_number`` on."""
    return FileRejected(
        RejectReason.RECORD_TOO_LARGE,
        f"the quoted record starting here runs over {MAX_RECORD_BYTES >> 20} MiB; is a closing quote missing?",
        line_number,
    )


def _names(names: list[str]) -> str:
    """Header names a message may quote: the first 5, each cut at 40 characters, control characters escaped."""
    shown = ", ".join("'" + safe(printable(n), SHOWN_CHARS) + "'" for n in names[:_SHOWN_NAMES])
    return shown + (" ..." if len(names) > _SHOWN_NAMES else "")


def shown_value(value: str) -> str:
    """The value as messages show it (without the quotes around it): cut at 40 characters, controls escaped."""
    value = _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", printable(value))
    return value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "..."


def printable(text: str) -> str:
    r"""Text safe for PostgreSQL: undecodable bytes as \xNN, NUL as \x00."""
    if text.isascii() and "\x00" not in text:
        return text
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\x00", "\\x00")


class RowRules:
    """The rules of one file's rows: its layout, its source's allowed status values and encoding, its line end."""

    def __init__(self, layout: Layout, source: Source, eol: bytes) -> None:
        """``eol`` ends the canonical COPY lines :meth:`check` writes (the file's own line end)."""
        self.layout = layout
        self.source = source
        self.eol = eol
        self._allowed = frozenset(source.allowed_status) if source.allowed_status else None
        self._allowed_listed = sorted(self._allowed or ())  # as messages list them

    def fast_pattern(self) -> str:
        """The RE2 pattern of a line in the plainest spelling of a valid row, which goes to COPY as it is."""
        status = STATUS_FAST
        if self.source.allowed_status:
            fast_safe = [s for s in self.source.allowed_status if re.fullmatch(STATUS_FAST, s)]
            # An allowed value the fast path cannot vouch for still loads, through the slow path.
            # (with none, a position both at and not at a word boundary: RE2 has no "(?!)" to match nothing)
            status = "(?:" + "|".join(re.escape(s) for s in fast_safe) + ")" if fast_safe else r"\b\B"
        parts = [status if is_status(c) else INT_FAST for c in self.layout.file_columns]
        eol = re.escape(self.eol.decode())
        return f"^{','.join(parts)}(?:{eol})?$"

    def check(self, fields: list[str], encoding_ok: bool = True) -> tuple[bytes | None, list[FieldError]]:
        """Check one parsed record: a canonical COPY line when valid, else every failing column."""
        columns = self.layout.file_columns
        if len(fields) != len(columns):
            return None, [FieldError(None, ErrorCode.WRONG_FIELD_COUNT,
                                     wrong_field_count_message(len(fields), len(columns)))]
        errors: list[FieldError] = []
        out: list[str] = []
        for position, (column, value) in enumerate(zip(columns, fields, strict=True)):
            if not encoding_ok and _has_bad_bytes(value):
                # In an ignored extra column too: the row is not what the agency meant to send.
                name = column or safe(self.layout.header_names[position], SHOWN_CHARS)
                errors.append(FieldError(name, ErrorCode.INVALID_ENCODING,
                                         f"{name}: bytes that are not valid {self.source.encoding}"))
                continue
            if column is None:
                continue
            value = value.strip(" \t")
            status = is_status(column)
            code = self._check_status(value) if status else _check_int(value)
            if code is not None:
                message = "".join(message_parts(column, code, shown_value(value), str(len(value)),
                                                self._allowed_listed))
                errors.append(FieldError(column, code, message))
            elif status:
                out.append(copy_text(value, ","))
            else:
                out.append(str(to_int(value)))
        if errors:
            return None, errors
        return (",".join(out).encode() + self.eol), []

    def _check_status(self, value: str) -> ErrorCode | None:
        if not value:
            return ErrorCode.MISSING_VALUE
        if "\x00" in value:
            return ErrorCode.INVALID_CHARACTER
        if len(value) > STATUS_MAX_CHARS:
            return ErrorCode.TOO_LONG
        if self._allowed is not None and value not in self._allowed:
            return ErrorCode.NOT_ALLOWED
        return None

    def fields_json(self, fields: list[str] | None) -> dict[str, Any] | None:
        """The ``file_invalid_rows.fields`` object: the values by header name, any surplus as ``_extra_fields``."""
        if fields is None:
            return None
        names = self.layout.header_names
        shown: dict[str, Any] = {name: printable(v) for name, v in zip(names, fields, strict=False)}
        if len(fields) > len(names):
            shown["_extra_fields"] = [printable(v) for v in fields[len(names):]]
        return shown


def copy_text(value: str | None, delimiter: str = "\t") -> str:
    r"""``value`` as a field of COPY's text format: ``\N`` for None, else backslash, line breaks and the
    delimiter escaped (most values need none: test before replacing)."""
    if value is None:
        return "\\N"
    if "\\" in value or delimiter in value or "\n" in value or "\r" in value:
        return (value.replace("\\", "\\\\").replace(delimiter, "\\" + delimiter)
                .replace("\n", "\\n").replace("\r", "\\r"))
    return value


def to_int(value: str) -> int:
    """The value of ``[+-]?[0-9]+`` with any number of leading zeros (int() refuses over 4,300 digits)."""
    number = int(value.lstrip("+-").lstrip("0") or "0")
    return -number if value.startswith("-") else number


def _check_int(value: str) -> ErrorCode | None:
    if not value:
        return ErrorCode.MISSING_VALUE
    if not _INT_RE.fullmatch(value):
        return ErrorCode.NOT_AN_INTEGER
    # Python refuses int() of over 4,300 digits: anything over 10 significant digits is out of range anyway.
    if len(value.lstrip("+-").lstrip("0")) > len(INT_MAX_DIGITS) or not INT_MIN <= to_int(value) <= INT_MAX:
        return ErrorCode.OUT_OF_RANGE
    return None


def _has_bad_bytes(value: str) -> bool:
    """Whether a decoded value holds undecodable bytes (kept as surrogate escapes)."""
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def detect_eol(data: bytes) -> bytes:
    """The line end the COPY stream will use: the one of the first data line (CRLF or LF)."""
    end = data.find(b"\n")
    return b"\r\n" if end > 0 and data[end - 1] == 13 else b"\n"
