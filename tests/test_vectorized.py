"""The column-wise diagnosis and the row-by-row checks must agree exactly, row for row."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customer_ratings.config import Source
from customer_ratings.parse import Header
from customer_ratings.validate import BlockValidator, plan_layout

HEADER = ["customer_number", "customer_rating", "customer_rating_limit", "customer_status"]

int_field = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(str),
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(["", " ", "+5", "007", " 12 ", "-0", "1.5", "1e3", "z1", "2147483648", "-2147483649",
                     "0002147483647", "-02147483648", "\\", "99999999999999999999"]),
)
status_field = st.one_of(
    st.sampled_from(["low-value", "high-value", "", " ", "medium", "x" * 26, "a\\b", " low-value ", "it's"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='",'), max_size=45),
)
row = st.one_of(
    st.tuples(int_field, int_field, int_field, status_field).map(list),
    st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"'), max_size=12),
             min_size=1, max_size=6),
)


def _rows_from_copy(text: bytes) -> list[tuple[Any, ...]]:
    out = []
    for line in text.decode().splitlines():
        cols = [c.replace("\\\\", "\\") for c in line.split("\t")]
        out.append((int(cols[4]), int(cols[5]), cols[6], json.loads(cols[7]), json.loads(cols[8]), cols[9]))
    return out


def _run(data: bytes, vectorized: bool, allowed: tuple[str, ...] | None) -> tuple[list[Any], list[bytes]]:
    source = Source("s", "t", "*", allowed_status=allowed)
    layout = plan_layout(Header(HEADER, 1), source)
    validator = BlockValidator(layout, source, b"\n", copy_prefix="1\ts\tt\tf" if vectorized else None)
    result = validator.process(data, 2, eof=True)
    rows = [(r.line_number, r.record_number, r.raw, r.fields, [e.as_json() for e in r.errors], r.summary)
            for r in result.invalid]
    for text in result.invalid_copy:
        rows += _rows_from_copy(text)
    valid = sorted(b"".join(bytes(v) for v in result.valid).splitlines())
    return sorted(rows), valid


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row, min_size=1, max_size=40), blank_every=st.integers(0, 5),
       allowed=st.sampled_from([None, ("high-value", "low-value")]))
def test_vectorized_and_row_by_row_agree(rows: list[list[str]], blank_every: int,
                                         allowed: tuple[str, ...] | None) -> None:
    lines = []
    for i, fields in enumerate(rows):
        if blank_every and i % blank_every == 0:
            lines.append("")
        lines.append(",".join(fields))
    data = ("\n".join(lines) + "\n").encode()
    fast = _run(data, vectorized=True, allowed=allowed)
    slow = _run(data, vectorized=False, allowed=allowed)
    assert fast == slow
