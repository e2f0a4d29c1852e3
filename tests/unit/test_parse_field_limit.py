"""parse.py raises csv.field_size_limit only while it parses, then puts it back (issue 10)."""

from __future__ import annotations

import csv
import subprocess
import sys

from customer_ratings.parse import parse_record


def test_importing_the_package_leaves_the_csv_field_limit_alone() -> None:
    code = ("import csv; before = csv.field_size_limit(); import customer_ratings, customer_ratings.parse, "
            "customer_ratings.load; print(before == csv.field_size_limit())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "True"


def test_a_field_over_the_default_limit_parses_and_the_limit_is_restored() -> None:
    before = csv.field_size_limit()
    big = "x" * (before + 10)
    fields, lines, error = parse_record(iter([f'1,"{big}",3\n']))
    assert error is None and fields == ["1", big, "3"] and lines == 1
    assert csv.field_size_limit() == before


def test_the_limit_is_restored_after_a_parse_error() -> None:
    before = csv.field_size_limit()
    fields, _, error = parse_record(iter(['1,"a"b,3\n']))
    assert fields is None and error is not None and error.startswith("malformed CSV")
    assert csv.field_size_limit() == before
