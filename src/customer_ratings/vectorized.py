"""Vectorized diagnosis of invalid lines: the same rules and messages as ``validate.BlockValidator.check``,
computed column-wise with pyarrow for a whole block at once, straight into ``file_invalid_rows`` COPY text.

Only plain lines come here: printable ASCII without quotes or tabs, one record per line. A line this finds
no error in (a valid row in an unusual spelling such as `` 007``) and every other line go to the per-row
path, which has the last word. ``tests/test_vectorized.py`` checks that both paths agree, row for row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import STATUS_MAX_CHARS
from .errors import ErrorCode

ELIGIBLE = r"^[ !#-~]*(?:\r?\n)?$"
SHOWN_CHARS = 40
INT_MAX_DIGITS = "2147483647"
INT_MIN_DIGITS = "2147483648"


@dataclass(frozen=True)
class Diagnosis:
    """COPY text for the rows found invalid, and which of the given lines those were."""

    copy_text: bytes
    invalid: np.ndarray


@lru_cache(maxsize=256)
def _s(value: object) -> pa.Scalar:
    """A cached Arrow scalar. Passing Python literals to pyarrow.compute costs ~150 us per call (it tries an
    optional import each time), which dominated blocks with many invalid rows."""
    if value is None:
        return pa.scalar(None, pa.string())
    return pa.scalar(value)


def _lit(part: pa.Array | str | None) -> pa.Array | pa.Scalar:
    return _s(part) if isinstance(part, str) or part is None else part


def _join(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    """Element-wise concatenation; null if any part is null."""
    return pc.binary_join_element_wise(*map(_lit, parts), _s(sep))


def _join_present(parts: list[pa.Array], sep: str) -> pa.Array:
    """Element-wise join of the non-null parts ('' when none). Written out because pyarrow 26's
    ``null_handling="skip"`` drops the rows where every part is null."""
    acc = parts[0]
    for part in parts[1:]:
        acc = pc.if_else(pc.is_null(acc), part, pc.if_else(pc.is_null(part), acc, _join(acc, sep, part)))
    return acc.fill_null("")


def _json_string(values: pa.Array) -> pa.Array:
    """JSON string literals of ASCII values without quotes or control characters (only ``\\`` to escape)."""
    return _join('"', pc.replace_substring(values, "\\", "\\\\"), '"')


def _copy_escape(values: pa.Array) -> pa.Array:
    return pc.replace_substring(values, "\\", "\\\\")


def _shown(values: pa.Array) -> pa.Array:
    """The value as messages show it: quoted, cut at 40 characters."""
    cut = pc.if_else(pc.greater(pc.utf8_length(values), _s(SHOWN_CHARS)),
                     _join(pc.utf8_slice_codeunits(values, 0, SHOWN_CHARS), "..."), values)
    return _join("'", cut, "'")


def _error_json(column: str | None, code: pa.Array, message: pa.Array) -> pa.Array:
    head = '{"column": ' + (json.dumps(column) if column else "null") + ', "code": "'
    return _join(head, code, '", "message": ', _json_string(message), "}")


def diagnose(lines: pa.Array, line_numbers: np.ndarray, record_numbers: np.ndarray,
             file_columns: tuple[str | None, ...], header_names: tuple[str, ...],
             allowed: frozenset[str] | None, copy_prefix: str) -> Diagnosis:
    """Check ``lines`` (binary, each one whole line with its line end) column by column."""
    ncols = len(file_columns)
    raw = pc.replace_substring_regex(lines.cast(pa.string()), r"\r?\n$", "")
    nfields = pc.add(pc.count_substring(raw, ","), _s(1))
    wrong = pc.not_equal(nfields, _s(ncols))
    parts = pc.split_pattern(_join(raw, "," * ncols), ",")
    messages: list[pa.Array] = []
    errors_json: list[pa.Array] = []
    fields_json: list[pa.Array] = []
    for j, (column, name) in enumerate(zip(file_columns, header_names, strict=True)):
        value = pc.list_element(parts, j)
        present = pc.less(_s(j), nfields.cast(pa.int64()))
        fields_json.append(pc.if_else(present, _join(json.dumps(name) + ": ", _json_string(value)), _s(None)))
        if column is None:
            continue
        trimmed = pc.utf8_trim(value, " ")
        code, message = _check_status(trimmed, allowed) if column == "customer_status" else _check_int(trimmed)
        code = pc.if_else(wrong, _s(None), code)
        messages.append(pc.if_else(pc.is_null(code), _s(None), _join(f"{column}: ", message)))
        errors_json.append(_error_json(column, code, messages[-1]))
    extras = pc.replace_substring_regex(raw, f"^(?:[^,]*,){{{ncols}}}", "")
    extras_json = _join('"_extra_fields": ["',
                        pc.replace_substring(pc.replace_substring(extras, "\\", "\\\\"), ",", '", "'), '"]')
    fields_json.append(pc.if_else(pc.greater(nfields, _s(ncols)), extras_json, _s(None)))
    wrong_message = _join(nfields.cast(pa.string()), f" field(s) where the header has {ncols}")
    summary = pc.if_else(wrong, wrong_message, _join_present(messages, "; "))
    errors = pc.if_else(
        wrong,
        _error_json(None, _s(ErrorCode.WRONG_FIELD_COUNT.value), wrong_message),
        _join("[", _join_present(errors_json, ", "), "]"),
    )
    errors = pc.if_else(wrong, _join("[", errors, "]"), errors)
    invalid = pc.not_equal(summary, _s(""))
    copy_lines = _join(
        copy_prefix,
        pa.array(line_numbers).cast(pa.string()),
        pa.array(record_numbers).cast(pa.string()),
        _copy_escape(raw),
        _copy_escape(_join("{", _join_present(fields_json, ", "), "}")),
        _copy_escape(errors),
        _join(_copy_escape(summary), "\n"),
        sep="\t",
    ).filter(invalid)
    mask = invalid.to_numpy(zero_copy_only=False)
    if len(copy_lines) == 0:
        return Diagnosis(b"", mask)
    offsets = np.frombuffer(copy_lines.buffers()[1], dtype=np.int32)
    start, stop = offsets[copy_lines.offset], offsets[copy_lines.offset + len(copy_lines)]
    return Diagnosis(memoryview(copy_lines.buffers()[2])[start:stop].tobytes(), mask)


def _check_int(value: pa.Array) -> tuple[pa.Array, pa.Array]:
    empty = pc.equal(value, _s(""))
    is_int = pc.match_substring_regex(value, r"^[+-]?[0-9]+$")
    digits = pc.replace_substring_regex(value, r"^[+-]?0*", "")
    ndigits = pc.utf8_length(digits)
    bound = pc.if_else(pc.starts_with(value, "-"), _s(INT_MIN_DIGITS), _s(INT_MAX_DIGITS))
    in_range = pc.or_(pc.less(ndigits, _s(10)), pc.and_(pc.equal(ndigits, _s(10)), pc.less_equal(digits, bound)))
    shown = _shown(value)
    code = pc.case_when(
        pc.make_struct(empty, pc.invert(is_int), pc.invert(in_range)),
        _s(ErrorCode.MISSING_VALUE.value), _s(ErrorCode.NOT_AN_INTEGER.value), _s(ErrorCode.OUT_OF_RANGE.value),
    )
    message = pc.case_when(
        pc.make_struct(empty, pc.invert(is_int)),
        _s("missing value"),
        _join(shown, " is not an integer"),
        _join(shown, " is outside the INTEGER range -2147483648..2147483647"),
    )
    return code, message


def _check_status(value: pa.Array, allowed: frozenset[str] | None) -> tuple[pa.Array, pa.Array]:
    empty = pc.equal(value, _s(""))
    length = pc.utf8_length(value)
    too_long = pc.greater(length, _s(STATUS_MAX_CHARS))
    if allowed is None:
        not_allowed = pa.array(np.zeros(len(value), dtype=bool))
    else:
        not_allowed = pc.invert(pc.is_in(value, value_set=pa.array(sorted(allowed))))
    shown = _shown(value)
    code = pc.case_when(
        pc.make_struct(empty, too_long, not_allowed),
        _s(ErrorCode.MISSING_VALUE.value), _s(ErrorCode.TOO_LONG.value), _s(ErrorCode.NOT_ALLOWED.value),
    )
    message = pc.case_when(
        pc.make_struct(empty, too_long),
        _s("missing value"),
        _join(shown, " is ", length.cast(pa.string()), f" characters, over {STATUS_MAX_CHARS}"),
        _join(shown, " is not one of " + ", ".join(sorted(allowed or ()))),
    )
    return code, message
