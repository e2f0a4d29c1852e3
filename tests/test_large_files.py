"""Files from PARALLEL_MIN_BYTES on take the parallel path: the rows are split across several child tables and
the load's own table of invalid rows, each streamed on a helper connection and attached in the load's
transaction. Whatever the path, the database must end up the same."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from customer_ratings import Database, load_source
from customer_ratings.load import PARALLEL_MIN_BYTES

from .conftest import AGENCY, assert_consistent, fixture_path, invalid_rows, table_rows

# Fixtures with invalid rows of every kind and the standard header; each is loaded as it is (the small-file
# path) and again followed by enough valid lines to cross PARALLEL_MIN_BYTES.
FIXTURES = ["every_failing_column", "not_an_integer", "out_of_range", "too_long", "missing_value",
            "wrong_field_count", "quoted_fields", "status_copy_escapes", "invalid_utf8_row", "nul_bytes",
            "spaces_signs_zeros", "valid_crlf"]


def _padded(fixture: str, folder: Path) -> Path:
    data = fixture_path(fixture).read_bytes()
    eol = b"\r\n" if b"\r\n" in data else b"\n"
    if not data.endswith(eol):
        data += eol
    line = b"7,70,700,low-value" + eol
    path = folder / f"{fixture}_large.csv"
    path.write_bytes(data + line * (PARALLEL_MIN_BYTES // len(line) + 1))
    return path


def _children(db: Database, parent: str) -> list[str]:
    return [r[0] for r in db.connection().execute(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = %s::regclass ORDER BY 1""", (parent,))]


@pytest.mark.parametrize("fixture", FIXTURES)
def test_a_large_file_gives_the_invalid_rows_of_a_small_one(db: Database, tmp_path: Path, fixture: str) -> None:
    small = load_source(db, AGENCY, fixture_path(fixture))
    assert_consistent(db, AGENCY, small)
    large_path = _padded(fixture, tmp_path)
    large = load_source(db, AGENCY, large_path)
    assert large.status == "loaded"
    assert_consistent(db, AGENCY, large)

    assert invalid_rows(db, large.load_id) == invalid_rows(db, small.load_id)
    assert large.rows_invalid == small.rows_invalid
    padding = large.rows_loaded - small.rows_loaded
    assert padding > 0
    assert sorted(table_rows(db, AGENCY.table)).count((7, 70, 700, "low-value")) >= padding
    load_columns = db.connection().execute(
        "SELECT DISTINCT load_id, source, table_name, file_uri FROM file_invalid_rows WHERE load_id = %s",
        (large.load_id,)).fetchall()
    if large.rows_invalid:
        assert load_columns == [(large.load_id, AGENCY.name, AGENCY.table, large_path.absolute().as_uri())]
        assert _children(db, "file_invalid_rows") == [f"file_invalid_rows__{large.load_id}"]
    children = _children(db, "customer_rating")
    assert children and all(c.split("_")[3] == str(large.load_id) for c in children), children
    assert _children(db, AGENCY.table) == children, "each child belongs to both parents"


def test_a_query_for_one_load_skips_the_other_loads_tables(db: Database, tmp_path: Path) -> None:
    first = load_source(db, AGENCY, _padded("every_failing_column", tmp_path))
    second = load_source(db, AGENCY, _padded("not_an_integer", tmp_path))
    plan = "\n".join(r[0] for r in db.connection().execute(
        "EXPLAIN SELECT * FROM file_invalid_rows WHERE load_id = %s", (second.load_id,)))
    assert f"file_invalid_rows__{second.load_id}" in plan
    assert f"file_invalid_rows__{first.load_id}" not in plan


def test_a_rejected_large_file_keeps_only_its_invalid_rows(db: Database, tmp_path: Path) -> None:
    before = load_source(db, AGENCY, fixture_path("valid_lf"))
    path = tmp_path / "mostly_invalid_large.csv"
    path.write_bytes(b"customer_number,customer_rating,customer_rating_limit,customer_status\n"
                     + b"x,1,1,low-value\n" * (PARALLEL_MIN_BYTES // 16 + 1))
    source = replace(AGENCY, max_invalid_percent=10.0)
    result = load_source(db, source, path)
    assert result.status == "rejected" and result.reason == "too_many_invalid"
    tables = [r[0] for r in db.connection().execute(
        """SELECT relname FROM pg_class WHERE relkind = 'r'
           AND (relname LIKE 'customer\\_rating\\_\\_%' OR relname LIKE 'file\\_invalid\\_rows\\_\\_%')""")]
    # its invalid rows are kept (SPEC: under the rejected load's id), nothing else of it
    assert sorted(tables) == [f"customer_rating__{before.load_id}", f"file_invalid_rows__{result.load_id}"]
    assert _children(db, "customer_rating") == [f"customer_rating__{before.load_id}"]
    assert _children(db, AGENCY.table) == [f"customer_rating__{before.load_id}"]
