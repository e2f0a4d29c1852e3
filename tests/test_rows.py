"""Row-level rules of SPEC.md: each one against a fixture file named after it, through a real load."""

from __future__ import annotations

from customer_ratings import Database

from .conftest import AGENCY, codes, invalid_rows, load_fixture, table_rows

VALID = [(1001, 10, 100, "high-value"), (1002, 20, 200, "low-value"), (1003, 30, 300, "low-value")]


def test_valid_crlf_file_loads_every_row(db: Database) -> None:
    result = load_fixture(db, "valid_crlf")
    assert (result.status, result.rows_read, result.rows_loaded, result.rows_invalid) == ("loaded", 3, 3, 0)
    assert table_rows(db, AGENCY.table) == VALID


def test_lf_bom_and_missing_final_newline_load_the_same(db: Database) -> None:
    for name in ("valid_lf", "bom", "no_final_newline"):
        result = load_fixture(db, name, force=True)
        assert result.rows_loaded == 3, name
        assert table_rows(db, AGENCY.table) == VALID, name


def test_header_in_any_order_and_case_with_spaces(db: Database) -> None:
    load_fixture(db, "header_reordered_mixed_case")
    assert table_rows(db, AGENCY.table) == VALID


def test_blank_lines_are_skipped_and_not_counted(db: Database) -> None:
    result = load_fixture(db, "blank_lines")
    assert (result.rows_read, result.rows_loaded) == (3, 3)
    assert table_rows(db, AGENCY.table) == VALID


def test_quoted_fields_with_commas_quotes_and_newlines(db: Database) -> None:
    result = load_fixture(db, "quoted_fields")
    assert (result.rows_read, result.rows_loaded, result.rows_invalid) == (4, 4, 0)
    assert table_rows(db, AGENCY.table) == [
        (1001, 10, 100, "high-value"),
        (1002, 20, 200, 'low, but "quoted"'),
        (1003, 30, 300, "multi\nline"),
        (1004, 40, 400, "low-value"),
    ]


def test_values_are_trimmed_signed_and_zero_padded_integers(db: Database) -> None:
    load_fixture(db, "spaces_signs_zeros")
    assert table_rows(db, AGENCY.table) == [
        (0, -2147483648, 2147483647, "low-value"),
        (1001, 10, 100, "high-value"),
    ]


def test_not_an_integer(db: Database) -> None:
    result = load_fixture(db, "not_an_integer")
    assert (result.rows_loaded, result.rows_invalid) == (1, 5)
    rows = invalid_rows(db, result.load_id)
    assert [r[0] for r in rows] == [3, 4, 5, 6, 7]
    assert [codes(r[4]) for r in rows] == [
        [("customer_number", "not_an_integer")],
        [("customer_rating", "not_an_integer")],
        [("customer_rating_limit", "not_an_integer")],
        [("customer_rating_limit", "not_an_integer")],
        [("customer_rating", "not_an_integer")],
    ]
    assert rows[0][2] == "z1001,10,100,low-value"
    assert rows[0][3] == {"customer_number": "z1001", "customer_rating": "10",
                          "customer_rating_limit": "100", "customer_status": "low-value"}


def test_out_of_range(db: Database) -> None:
    result = load_fixture(db, "out_of_range")
    rows = invalid_rows(db, result.load_id)
    assert [codes(r[4]) for r in rows] == [
        [("customer_number", "out_of_range")],
        [("customer_rating", "out_of_range")],
        [("customer_rating_limit", "out_of_range")],
    ]


def test_missing_value(db: Database) -> None:
    result = load_fixture(db, "missing_value")
    assert (result.rows_loaded, result.rows_invalid) == (1, 5)
    assert [codes(r[4]) for r in invalid_rows(db, result.load_id)] == [
        [("customer_number", "missing_value")],
        [("customer_rating", "missing_value")],
        [("customer_rating_limit", "missing_value")],
        [("customer_status", "missing_value")],
        [("customer_status", "missing_value")],
    ]


def test_too_long_counts_characters_not_bytes(db: Database) -> None:
    result = load_fixture(db, "too_long")
    assert (result.rows_loaded, result.rows_invalid) == (2, 1)
    assert [codes(r[4]) for r in invalid_rows(db, result.load_id)] == [[("customer_status", "too_long")]]
    assert (1003, 30, 300, "é" * 25) in table_rows(db, AGENCY.table)


def test_not_allowed_only_when_the_source_sets_allowed_status(db: Database) -> None:
    strict = load_fixture(db, "not_allowed", allowed_status=("high-value", "low-value"))
    assert (strict.rows_loaded, strict.rows_invalid) == (2, 2)
    assert [codes(r[4]) for r in invalid_rows(db, strict.load_id)] == [[("customer_status", "not_allowed")]] * 2
    lenient = load_fixture(db, "not_allowed", force=True)
    assert (lenient.rows_loaded, lenient.rows_invalid) == (4, 0)


def test_wrong_field_count(db: Database) -> None:
    result = load_fixture(db, "wrong_field_count")
    rows = invalid_rows(db, result.load_id)
    assert [(r[0], r[1]) for r in rows] == [(3, 2), (4, 3), (5, 4)]
    assert all(codes(r[4]) == [(None, "wrong_field_count")] for r in rows)
    assert rows[1][3]["_extra_fields"] == ["extra"]


def test_every_failing_column_is_listed(db: Database) -> None:
    result = load_fixture(db, "every_failing_column")
    [row] = invalid_rows(db, result.load_id)
    assert codes(row[4]) == [
        ("customer_number", "not_an_integer"),
        ("customer_rating", "out_of_range"),
        ("customer_rating_limit", "missing_value"),
        ("customer_status", "too_long"),
    ]
    assert row[5].count(";") == 3, "the one-line error names every failing column"


def test_bad_utf8_invalidates_only_its_row_and_is_shown_as_hex(db: Database) -> None:
    result = load_fixture(db, "invalid_utf8_row")
    assert (result.status, result.rows_loaded, result.rows_invalid) == ("loaded", 2, 1)
    [row] = invalid_rows(db, result.load_id)
    assert row[0] == 3
    assert row[2] == "1002,20,200,caf\\xe9"
    assert codes(row[4]) == [("customer_status", "invalid_encoding")]


def test_a_source_encoding_decodes_the_file(db: Database) -> None:
    result = load_fixture(db, "latin1_encoded", encoding="latin-1")
    assert (result.rows_loaded, result.rows_invalid) == (2, 0)
    assert (1001, 10, 100, "café") in table_rows(db, AGENCY.table)


def test_nul_byte_invalidates_its_row(db: Database) -> None:
    result = load_fixture(db, "nul_bytes")
    assert (result.rows_loaded, result.rows_invalid) == (1, 1)
    [row] = invalid_rows(db, result.load_id)
    assert codes(row[4]) == [("customer_status", "invalid_character")]
    assert row[2] == "1001,10,100,low\\x00value"


def test_unterminated_quote_at_eof_is_one_invalid_record(db: Database) -> None:
    result = load_fixture(db, "unterminated_quote")
    assert (result.rows_loaded, result.rows_invalid) == (2, 1)
    [row] = invalid_rows(db, result.load_id)
    assert (row[0], row[1]) == (4, 3)
    assert codes(row[4]) == [(None, "malformed_csv")]
    assert row[2] == '1003,30,300,"never closed\n1004,40,400,low-value'


def test_statuses_that_look_like_copy_escapes_load_as_written(db: Database) -> None:
    """The data streams use COPY's text format: backslashes, delimiters and line breaks in a status must
    arrive as the file has them (and \\N must not become NULL)."""
    result = load_fixture(db, "status_copy_escapes")
    assert (result.rows_read, result.rows_loaded, result.rows_invalid) == (7, 7, 0)
    assert [r[3] for r in table_rows(db, AGENCY.table)] == [
        "back\\slash", "\\N", "\\.", "comma, inside", "cr\rinside", "tab\there", "\\x41\\t"]
    consolidated = db.connection().execute(
        "SELECT customer_status FROM customer_rating WHERE customer = %s ORDER BY customer_number",
        (AGENCY.name,)).fetchall()
    assert [r[0] for r in consolidated] == [r[3] for r in table_rows(db, AGENCY.table)]


def test_allowed_statuses_with_quotes_and_backslashes_are_listed_in_the_message(db: Database) -> None:
    """The column-wise path writes the allowed list into its JSON as literal text; a status with `"` or `\\`
    must still give a valid errors document and the row path's message."""
    allowed = ('a"b', "c\\d")
    result = load_fixture(db, "not_allowed", allowed_status=allowed)
    assert (result.rows_loaded, result.rows_invalid) == (0, 4)
    rows = invalid_rows(db, result.load_id)
    assert [codes(r[4]) for r in rows] == [[("customer_status", "not_allowed")]] * 4
    assert all(r[4][0]["message"].endswith('is not one of a"b, c\\d') for r in rows), rows[0][4]
