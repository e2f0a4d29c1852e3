"""Header rejections say what to do: no misleading hint for a renamed column, a clear word for CR-only files."""

from __future__ import annotations

import io

import pytest

from customer_ratings import FileRejected
from customer_ratings.config import Source
from customer_ratings.parse import BlockReader, read_header
from customer_ratings.validate import plan_layout

SOURCE = Source("agency_t", "t", "*.csv")


def _reject(data: bytes, source: Source = SOURCE) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        header, _ = read_header(BlockReader(io.BytesIO(data), "utf-8"))
        plan_layout(header, source)
    return caught.value


def test_a_renamed_required_column_gets_no_extra_columns_hint() -> None:
    message = str(_reject(b"customer_number,customer_score,customer_rating_limit,customer_status\n1,2,3,x\n"))
    assert "missing column(s) customer_rating" in message
    assert "renamed?" in message and "extra_columns" not in message


def test_an_extra_column_alone_gets_the_extra_columns_hint() -> None:
    message = str(_reject(b"customer_number,customer_rating,customer_rating_limit,customer_status,notes\n"))
    assert 'set extra_columns = "ignore" to allow' in message


@pytest.mark.parametrize("rows", [3, 200_000])  # small, and past the 4 MiB header limit
def test_cr_only_line_ends_say_how_to_fix_the_file(rows: int) -> None:
    data = b"customer_number,customer_rating,customer_rating_limit,customer_status\r" + b"1,2,3,high-value\r" * rows
    rejected = _reject(data)
    assert rejected.reason.value == "bad_header" and rejected.line == 1
    assert "lone CR" in str(rejected) and "LF or CRLF" in str(rejected)
