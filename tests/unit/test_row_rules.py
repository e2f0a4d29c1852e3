"""Row rules without a database: the high-level error names columns and codes, not values (both paths), and
undecodable bytes make a row invalid in an ignored extra column too."""

from __future__ import annotations

import json

from customer_ratings.config import Source
from customer_ratings.parse import Header
from customer_ratings.validate import BlockValidator, plan_layout

HEADER = ["customer_number", "customer_rating", "customer_rating_limit", "customer_status"]


def _summaries(data: bytes, *, vectorized: bool, header: list[str] = HEADER, **source: object) -> list[str]:
    src = Source("s", "t", "*", **source)  # type: ignore[arg-type]
    layout = plan_layout(Header(header, 1), src)
    validator = BlockValidator(layout, src, b"\n", copy_prefix="1\ts\tt\tf" if vectorized else None)
    result = validator.process(data, 2, eof=True)
    found = [(r.line_number, r.summary) for r in result.invalid]
    for text in result.invalid_copy:
        for line in text.decode().splitlines():
            cols = line.split("\t")
            found.append((int(cols[4]), cols[9]))
    return [summary for _, summary in sorted(found)]


ROWS = (b"x,1,1,low-value\n"
        b"1,abc,1," + b"s" * 30 + b"\n"
        b"1,2,3\n"
        b"1,2,99999999999,\n"
        b"1,2,3,medium\n")
EXPECTED = [
    "customer_number: not_an_integer",
    "customer_rating: not_an_integer; customer_status: too_long",
    "wrong_field_count",
    "customer_rating_limit: out_of_range; customer_status: missing_value",
    "customer_status: not_allowed",
]


def test_high_level_error_names_columns_and_codes_row_by_row() -> None:
    assert _summaries(ROWS, vectorized=False, allowed_status=("high-value", "low-value")) == EXPECTED


def test_high_level_error_names_columns_and_codes_vectorized() -> None:
    assert _summaries(ROWS, vectorized=True, allowed_status=("high-value", "low-value")) == EXPECTED


def test_the_same_kind_of_problem_gives_the_same_high_level_error() -> None:
    data = b"x,1,1,low-value\nabc,1,1,low-value\n" + b'"zz",1,1,low-value\n'
    assert set(_summaries(data, vectorized=True)) == {"customer_number: not_an_integer"}


def test_undecodable_bytes_in_an_ignored_column_make_the_row_invalid() -> None:
    header = ["region", *HEADER, "notes"]
    src = Source("s", "t", "*", extra_columns="ignore")
    layout = plan_layout(Header(header, 1), src)
    for prefix in (None, "1\ts\tt\tf"):
        validator = BlockValidator(layout, src, b"\n", copy_prefix=prefix)
        result = validator.process(b"west,15005,1,1,low-value,\xff\neast,15006,2,2,high-value,ok\n", 2, eof=True)
        assert result.valid_rows == 1 and result.vector_invalid == 0
        (row,) = result.invalid
        assert (row.line_number, row.record_number) == (2, 1)
        assert [e.as_json() for e in row.errors] == [
            {"column": "notes", "code": "invalid_encoding", "message": "notes: bytes that are not valid utf-8"}]
        assert row.summary == "notes: invalid_encoding"
        assert row.raw == "west,15005,1,1,low-value,\\xff"
        assert json.dumps(row.fields)  # storable as JSONB


def test_a_header_is_quoted_only_by_its_unknown_names_cut_and_escaped() -> None:
    from customer_ratings.errors import FileRejected

    names = [*HEADER, "root:*:19000:0:99999:7:::" + "s" * 60, "a\nb\x1b[31m", "x3", "x4", "x5", "x6"]
    try:
        plan_layout(Header(names, 1), Source("s", "t", "*"))
    except FileRejected as exc:
        message = str(exc)
    else:
        raise AssertionError("an unknown column rejects the file")
    assert "s" * 41 not in message and "\n" not in message and "\x1b" not in message
    assert "'a\\nb\\x1b[31m'" in message and "x6" not in message and "6 unknown column(s)" in message
