"""File-level rules: a rejected file changes no data; the history says why."""

from __future__ import annotations

import pytest

from customer_ratings import Database

from .conftest import AGENCY, load_fixture, table_rows


@pytest.mark.parametrize(
    ("fixture", "reason", "words"),
    [
        ("empty", "empty_file", "empty"),
        ("only_blank_lines", "no_header", "no header"),
        ("missing_column", "bad_header", "missing column(s) customer_rating_limit"),
        ("duplicate_column", "bad_header", "duplicated column(s) customer_rating"),
        ("unknown_column", "bad_header", "unknown column(s) 'region'"),
        ("utf16", "bad_header", "UTF-16"),
    ],
)
def test_rejected_file_keeps_previous_data(db: Database, fixture: str, reason: str, words: str) -> None:
    before = load_fixture(db, "valid_crlf")
    rows_before = table_rows(db, AGENCY.table)
    result = load_fixture(db, fixture)
    assert result.status == "rejected"
    assert words in (result.error or "")
    assert table_rows(db, AGENCY.table) == rows_before
    assert len(rows_before) == 3
    current = db.connection().execute("SELECT load_id FROM source_current").fetchone()
    assert current == (before.load_id,)
    code = db.connection().execute(
        "SELECT error_code FROM load_history WHERE load_id = %s", (result.load_id,)).fetchone()
    assert code == (reason,)


def test_header_only_file_is_a_valid_empty_snapshot(db: Database) -> None:
    load_fixture(db, "valid_crlf")
    result = load_fixture(db, "header_only")
    assert (result.status, result.rows_read) == ("loaded", 0)
    assert table_rows(db, AGENCY.table) == []


def test_min_rows_refuses_a_short_file(db: Database) -> None:
    result = load_fixture(db, "header_only", min_rows=1)
    assert result.status == "rejected"
    assert "fewer than min_rows = 1" in (result.error or "")


def test_max_invalid_percent_rejects_the_whole_file(db: Database) -> None:
    load_fixture(db, "valid_crlf")
    result = load_fixture(db, "mostly_invalid", max_invalid_percent=50)
    assert result.status == "rejected"
    assert "3 of 4 rows are invalid (75.00%)" in (result.error or "")
    assert len(table_rows(db, AGENCY.table)) == 3
    (n,) = db.connection().execute(  # type: ignore[misc]
        "SELECT count(*) FROM file_invalid_rows WHERE load_id = %s", (result.load_id,)).fetchone()
    assert n == result.rows_invalid == 3, "a rejected file keeps the invalid rows found, under its load id"


def test_extra_columns_ignore_loads_the_known_columns(db: Database) -> None:
    result = load_fixture(db, "unknown_column", extra_columns="ignore")
    assert (result.status, result.rows_loaded) == ("loaded", 2)
    assert table_rows(db, AGENCY.table) == [(1001, 10, 100, "high-value"), (1002, 20, 200, "low-value")]


def test_unchanged_file_is_skipped_unless_forced(db: Database) -> None:
    first = load_fixture(db, "valid_crlf")
    again = load_fixture(db, "valid_crlf")
    assert again.status == "unchanged"
    assert again.sha256 == first.sha256
    current = db.connection().execute("SELECT load_id FROM source_current").fetchone()
    assert current == (first.load_id,)
    forced = load_fixture(db, "valid_crlf", force=True)
    assert forced.status == "loaded" and forced.load_id != first.load_id
    assert db.connection().execute("SELECT load_id FROM source_current").fetchone() == (forced.load_id,)


def test_directory_is_rejected_with_a_clear_error(db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from customer_ratings import load_source

    folder = tmp_path / "Customer Rating Agency A Inc.csv"
    folder.mkdir()
    result = load_source(db, AGENCY, folder)
    assert result.status == "rejected"
    assert "is a directory" in (result.error or "")
