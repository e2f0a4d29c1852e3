"""Vectorized diagnosis of invalid lines: the same rules and messages as :meth:`.rules.RowRules.check`,
computed column-wise with pyarrow for a whole block at once, straight into ``file_invalid_rows`` COPY text.

Only plain lines come here: printable ASCII without quotes or tabs, one record per line. The checks are
boolean masks turned into one small error code per column; rows are then grouped by their combination of
codes (their "signature": a block has a handful), and each group's COPY lines are built by one string
concatenation over the group's rows with a template for that signature. A line with no error (a valid row
in an unusual spelling such as `` 007``) goes back to the per-row path, which has the last word.
``tests/test_vectorized.py`` checks that both paths agree, row for row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ErrorCode
from ..schema import INT_MAX_DIGITS, INT_MIN_DIGITS, INT_PATTERN, SHOWN_CHARS, STATUS_MAX_CHARS, is_status
from .rules import message_parts, summary, wrong_field_count_message

# The lines this module can diagnose: printable ASCII without '"' (nor tabs or other controls).
ELIGIBLE = r"^[ !#-~]*(?:\r?\n)?$"
# The text comparison with the bounds in _int_column needs both to have the same number of digits.
assert len(INT_MAX_DIGITS) == len(INT_MIN_DIGITS)

# Per-column codes, small ints so that a row's signature is one number.
OK, MISSING, NOT_INT, OUT_OF_RANGE, TOO_LONG, NOT_ALLOWED = range(6)
_CODES = {MISSING: ErrorCode.MISSING_VALUE, NOT_INT: ErrorCode.NOT_AN_INTEGER,
          OUT_OF_RANGE: ErrorCode.OUT_OF_RANGE, TOO_LONG: ErrorCode.TOO_LONG, NOT_ALLOWED: ErrorCode.NOT_ALLOWED}


@dataclass(frozen=True)
class Diagnosis:
    """COPY text for the rows found invalid, and which of the given lines those were."""

    copy_text: bytes
    invalid: np.ndarray


@lru_cache(maxsize=1024)
def _s(value: str) -> pa.Scalar:
    """A cached Arrow string scalar. Python literals passed to pyarrow.compute cost ~150 us per call (an
    optional import is tried each time), which dominated blocks with many invalid rows."""
    return pa.scalar(value, pa.string())


def _concat(parts: list[pa.Array | str]) -> pa.Array:
    """Element-wise concatenation of arrays and literal strings."""
    merged: list[pa.Array | pa.Scalar] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], pa.Scalar):
            merged[-1] = _s(merged[-1].as_py() + part)
        else:
            merged.append(_s(part) if isinstance(part, str) else part)
    if len(merged) == 1:
        merged.append(_s(""))
    return pc.binary_join_element_wise(*merged, _s(""))


def _escaped(values: pa.Array, times: int, backslashes: bool = True) -> pa.Array:
    """Backslashes doubled ``times`` times (once for JSON and/or once for COPY text)."""
    if times and backslashes and (pc.max(pc.count_substring(values, "\\")).as_py() or 0) > 0:
        return pc.replace_substring(values, "\\", "\\" * (2**times))
    return values


@dataclass
class _Column:
    name: str
    header: str
    value: pa.Array
    code: np.ndarray
    length: pa.Array | None = None
    allowed: tuple[str, ...] = ()

    def shown(self, times: int, backslashes: bool) -> pa.Array:
        """The trimmed value as messages show it, quoted and cut at 40 characters, escaped."""
        value = self.value
        if (pc.max(pc.utf8_length(value)).as_py() or 0) > SHOWN_CHARS:
            long = pc.greater(pc.utf8_length(value), pa.scalar(SHOWN_CHARS, pa.int32()))
            value = pc.if_else(long, pc.binary_join_element_wise(
                pc.utf8_slice_codeunits(value, 0, SHOWN_CHARS), _s("..."), _s("")), value)
        return _escaped(value, times, backslashes)


def diagnose(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, line_numbers: np.ndarray,
             record_numbers: np.ndarray, file_columns: tuple[str | None, ...], header_names: tuple[str, ...],
             allowed: frozenset[str] | None, copy_prefix: str) -> Diagnosis:
    """Check the lines ``buf[starts[i]:ends[i]]`` (line ends excluded) column by column."""
    ncols = len(file_columns)
    commas = np.flatnonzero(buf == 44)
    first = np.searchsorted(commas, starts)
    nfields = np.searchsorted(commas, ends) - first + 1
    wrong = nfields != ncols
    raw = _gather(buf, starts, ends)
    untrimmed = [_gather(buf, *_field_bounds(commas, first, nfields, starts, ends, j)) for j in range(ncols)]
    columns: list[_Column] = []
    for name, header, value in zip(file_columns, header_names, untrimmed, strict=True):
        if name is None:
            continue
        trimmed = pc.utf8_trim(value, " ")
        if is_status(name):
            column = _status_column(name, header, trimmed, allowed)
        else:
            column = _int_column(name, header, trimmed)
        column.code[wrong] = OK
        columns.append(column)
    signature = np.zeros(len(starts), dtype=np.int64)
    for column in columns:
        signature = signature * 8 + column.code
    # Wrong field counts: grouped by their field count, since their fields JSON depends on it.
    signature = np.where(wrong, -nfields, signature)
    invalid = signature != 0
    extras = _gather(buf, np.where(nfields > ncols, commas[np.minimum(first + ncols - 1, len(commas) - 1)] + 1, ends)
                     if len(commas) else ends, ends)
    backslashes = bool((buf == 92).any())
    context = _Context(copy_prefix, raw, untrimmed, extras, header_names, line_numbers, record_numbers, ncols,
                       backslashes)
    out = [_group_lines(context, columns, int(sig), np.flatnonzero(signature == sig))
           for sig in np.unique(signature[invalid])]
    return Diagnosis(b"".join(out), invalid)


def _field_bounds(commas: np.ndarray, first: np.ndarray, nfields: np.ndarray, starts: np.ndarray,
                  ends: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of field ``j`` of every line (empty where a line has fewer fields)."""
    if len(commas) == 0:
        present = np.zeros(len(starts), dtype=bool) if j else np.ones(len(starts), dtype=bool)
        return np.where(present, starts, 0), np.where(present, ends, 0)
    last = len(commas) - 1
    lo = starts if j == 0 else commas[np.minimum(first + j - 1, last)] + 1
    hi = np.where(j < nfields - 1, commas[np.minimum(first + j, last)], ends)
    present = j < nfields
    return np.where(present, lo, 0), np.where(present, hi, 0)


_GATHER_INDEXED_MAX = 1 << 20


def gather(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bytes ``buf[starts[i]:ends[i]]`` one after the other, and their offsets (numpy, no per-row Python)."""
    lengths = (ends - starts).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    if total > _GATHER_INDEXED_MAX:
        # Long values (a 10 MB field): per-byte index arrays would cost 8 bytes per byte; slice instead.
        view = memoryview(buf.data)
        joined = b"".join([view[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)])
        return np.frombuffer(joined, dtype=np.uint8), offsets
    if total:
        index = np.arange(total, dtype=np.int32) - np.repeat((offsets[:-1] - starts).astype(np.int32), lengths)
        data = buf[index]
    else:
        data = np.zeros(0, dtype=np.uint8)
    return data, offsets


def _gather(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """A string array of ``buf[starts[i]:ends[i]]``."""
    data, offsets = gather(buf, starts, ends)
    return pa.Array.from_buffers(pa.string(), len(starts),
                                 [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)])


class PendingLines:
    """Plain invalid-looking lines collected across blocks, to be diagnosed in one batch."""

    # Big enough to amortize the per-call cost of pyarrow kernels, small enough to keep memory flat.
    MAX_LINES = 4096
    MAX_BYTES = 1 << 20

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._data: list[np.ndarray] = []
        self._lengths: list[np.ndarray] = []
        self._lines: list[np.ndarray] = []
        self._records: list[np.ndarray] = []
        self._count = 0
        self._bytes = 0

    def add(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, line_numbers: np.ndarray,
            record_numbers: np.ndarray) -> None:
        """Keep copies of ``buf[starts[i]:ends[i]]`` with their line and record numbers."""
        data, offsets = gather(buf, starts, ends)
        self._data.append(data)
        self._lengths.append(np.diff(offsets))
        self._lines.append(np.asarray(line_numbers))
        self._records.append(np.asarray(record_numbers))
        self._count += len(starts)
        self._bytes += len(data)

    @property
    def full(self) -> bool:
        """Whether it is time to diagnose the batch."""
        return self._count >= self.MAX_LINES or self._bytes >= self.MAX_BYTES

    def take(self) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(bytes, starts, ends, line numbers, record numbers) of the batch, and start a new one."""
        if not self._count:
            return None
        lengths = np.concatenate(self._lengths)
        ends = np.cumsum(lengths)
        batch = (np.concatenate(self._data).tobytes(), ends - lengths, ends, np.concatenate(self._lines),
                 np.concatenate(self._records))
        self._reset()
        return batch


def _int_column(name: str, header: str, value: pa.Array) -> _Column:
    empty = pc.equal(value, _s("")).to_numpy(zero_copy_only=False)
    is_int = pc.match_substring_regex(value, f"^{INT_PATTERN}$").to_numpy(zero_copy_only=False)
    digits = pc.utf8_ltrim(pc.utf8_ltrim(value, "+-"), "0")
    ndigits = pc.utf8_length(digits).to_numpy(zero_copy_only=False)
    negative = pc.starts_with(value, "-").to_numpy(zero_copy_only=False)
    width = len(INT_MAX_DIGITS)
    # As many digits as the bounds: compare as text with the bound (same length, so text order is number order).
    over_max = pc.greater(digits, _s(INT_MAX_DIGITS)).to_numpy(zero_copy_only=False)
    over_min = pc.greater(digits, _s(INT_MIN_DIGITS)).to_numpy(zero_copy_only=False)
    out_of_range = (ndigits > width) | ((ndigits == width) & np.where(negative, over_min, over_max))
    code = np.select([empty, ~is_int, out_of_range], [MISSING, NOT_INT, OUT_OF_RANGE], OK).astype(np.int64)
    return _Column(name, header, value, code)


def _status_column(name: str, header: str, value: pa.Array, allowed: frozenset[str] | None) -> _Column:
    length = pc.utf8_length(value)
    n = length.to_numpy(zero_copy_only=False)
    conditions = [n == 0, n > STATUS_MAX_CHARS]
    if allowed is not None:
        conditions.append(~pc.is_in(value, value_set=pa.array(sorted(allowed))).to_numpy(zero_copy_only=False))
    code = np.select(conditions, [MISSING, TOO_LONG, NOT_ALLOWED][: len(conditions)], OK).astype(np.int64)
    return _Column(name, header, value, code, length=length.cast(pa.string()), allowed=tuple(sorted(allowed or ())))


@dataclass(frozen=True)
class _Context:
    copy_prefix: str
    raw: pa.Array
    untrimmed: list[pa.Array]
    extras: pa.Array
    header_names: tuple[str, ...]
    line_numbers: np.ndarray
    record_numbers: np.ndarray
    ncols: int
    backslashes: bool


def _group_lines(ctx: _Context, columns: list[_Column], signature: int, rows: np.ndarray) -> bytes:
    """The COPY text of every row in ``rows``, which share ``signature``."""
    take = pa.array(rows)
    parts: list[object] = [
        ctx.copy_prefix + "\t" if ctx.copy_prefix else "", pa.array(ctx.line_numbers[rows]).cast(pa.string()), "\t",
        pa.array(ctx.record_numbers[rows]).cast(pa.string()), "\t",
        _escaped(ctx.raw.take(take), 1, ctx.backslashes), "\t{",
    ]
    nfields = -signature if signature < 0 else ctx.ncols
    for j, header in enumerate(ctx.header_names[: min(nfields, ctx.ncols)]):
        value = _escaped(ctx.untrimmed[j].take(take), 2, ctx.backslashes)
        parts += [", " if j else "", json.dumps(header) + ': "', value, '"']
    if nfields > ctx.ncols:
        extras = _escaped(ctx.extras.take(take), 2, ctx.backslashes)
        parts += [', "_extra_fields": ["', pc.replace_substring(extras, ",", '", "'), '"]']
    parts.append("}\t[")
    if signature < 0:
        message = wrong_field_count_message(nfields, ctx.ncols)
        parts += ['{"column": null, "code": "wrong_field_count", "message": "', message, '"}]\t',
                  ErrorCode.WRONG_FIELD_COUNT.value, "\n"]
        return _bytes(_concat([_resolve(p, {}, ctx.backslashes) for p in parts]))
    failing = [(c, int(c.code[rows[0]])) for c in columns if c.code[rows[0]] != OK]
    for k, (column, code) in enumerate(failing):
        parts += [", " if k else "", f'{{"column": {json.dumps(column.name)}, "code": "{_CODES[code].value}", '
                  f'"message": "', *_message(column, code, 2), '"}']
    parts.append("]\t")
    parts.append(summary((column.name, _CODES[code]) for column, code in failing))
    parts.append("\n")
    taken = [_Column(c.name, c.header, c.value.take(take), c.code[rows],
                     c.length.take(take) if c.length is not None else None, c.allowed) for c in columns]
    by_name = {c.name: c for c in taken}
    return _bytes(_concat([_resolve(p, by_name, ctx.backslashes) for p in parts]))


class _Shown:
    """Placeholder in a template for a column's shown value, filled in once the group's rows are taken."""

    def __init__(self, column: str, times: int, length: bool = False) -> None:
        self.column, self.times, self.length = column, times, length


def _message(column: _Column, code: int, times: int) -> list[object]:
    """The rules' message for ``code``, with placeholders for the shown values (escaped ``times`` times)."""
    return list(message_parts(column.name, _CODES[code], _Shown(column.name, times),
                              _Shown(column.name, 0, length=True), column.allowed))


def _resolve(part: object, columns: dict[str, _Column], backslashes: bool) -> pa.Array | str:
    if isinstance(part, _Shown):
        column = columns[part.column]
        if part.length:
            assert column.length is not None
            return column.length
        return column.shown(part.times, backslashes)
    assert isinstance(part, pa.Array | str)
    return part


def _bytes(text: pa.Array) -> bytes:
    """The concatenated values of a freshly built string array (its data buffer, between its offsets)."""
    if len(text) == 0:
        return b""
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)
    start, stop = offsets[text.offset], offsets[text.offset + len(text)]
    return memoryview(text.buffers()[2])[start:stop].tobytes()
