"""A rejected file keeps what reading found (SPEC "Nothing is lost", new): its history row says rows read and
rows invalid as far as reading got, nothing loaded, and its invalid rows are in file_invalid_rows under the
rejected load's id, committed with that history row; the agency's data stays as it was. One fixture per case:

- too many invalid rows (rejected_two_of_ten.csv: read 10, loaded 0, invalid 2; max_invalid_percent = 10);
- too few rows (rejected_too_few_rows.csv: read 3, invalid 1; min_rows = 5);
- a file that changed while it was read (grown by the progress callback);
- a large file (parallel path) with too many invalid rows, and one rejected mid-stream (a record too large).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from customer_ratings import Database, LoadResult, load_source
from customer_ratings.load import PARALLEL_MIN_BYTES
from customer_ratings.parse import MAX_RECORD_BYTES
from tests.conftest import AGENCY, fixture_path, invalid_rows, table_rows

HEADER = b"customer_number,customer_rating,customer_rating_limit,customer_status\n"


def _state(db: Database) -> tuple[Any, ...]:
    conn = db.connection()
    return (table_rows(db, AGENCY.table),
            conn.execute("""SELECT customer_number, customer_rating, customer_rating_limit, customer_status, load_id
                            FROM customer_rating ORDER BY 1, 2, 3, 4""").fetchall(),
            conn.execute("SELECT * FROM source_current").fetchall())


def _check_rejected(db: Database, result: LoadResult, before: tuple[Any, ...], reason: str,
                    read: int, invalid: int) -> list[tuple[Any, ...]]:
    assert (result.status, result.reason) == ("rejected", reason), result
    assert (result.rows_read, result.rows_loaded, result.rows_invalid) == (read, 0, invalid)
    conn = db.connection()
    hist = conn.execute("""SELECT status, error_code, rows_read, rows_loaded, rows_invalid FROM load_history
                           WHERE load_id = %s""", (result.load_id,)).fetchone()
    assert hist == ("rejected", reason, read, 0, invalid)
    (kept,) = conn.execute("SELECT count(*) FROM file_invalid_rows WHERE load_id = %s",  # type: ignore[misc]
                           (result.load_id,)).fetchone()
    assert kept == invalid, "the invalid rows found are kept under the rejected load's id"
    assert _state(db) == before, "the agency's data is untouched"
    # the history's CHECK (status <> 'loaded' OR rows_read = rows_loaded + rows_invalid) is in place and holds
    assert conn.execute("""SELECT count(*) FROM pg_constraint WHERE conrelid = 'load_history'::regclass
                           AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%rows_read = (rows_loaded%'"""
                        ).fetchone() == (1,)
    assert conn.execute("""SELECT count(*) FROM load_history
                           WHERE status = 'loaded' AND rows_read <> rows_loaded + rows_invalid""").fetchone() == (0,)
    # nothing of the load is left but its invalid rows: no stray slice of customer_rating
    stray = conn.execute("""SELECT relname FROM pg_class WHERE relname = %s""",
                         (f"customer_rating__{result.load_id}",)).fetchall()
    assert stray == []
    return invalid_rows(db, result.load_id)


def test_too_many_invalid_rows(db: Database) -> None:
    load_source(db, AGENCY, fixture_path("valid_lf"))
    before = _state(db)
    result = load_source(db, replace(AGENCY, max_invalid_percent=10), fixture_path("rejected_two_of_ten"))
    rows = _check_rejected(db, result, before, "too_many_invalid", 10, 2)
    assert [(r[0], r[1], r[2]) for r in rows] == [(4, 3, "three,30,300,low-value"), (9, 8, "8,,800,low-value")]
    assert [[(e["column"], e["code"]) for e in r[4]] for r in rows] == [[("customer_number", "not_an_integer")],
                                                                      [("customer_rating", "missing_value")]]


def test_too_few_rows(db: Database) -> None:
    load_source(db, AGENCY, fixture_path("valid_lf"))
    before = _state(db)
    result = load_source(db, replace(AGENCY, min_rows=5), fixture_path("rejected_too_few_rows"))
    rows = _check_rejected(db, result, before, "too_few_rows", 3, 1)
    assert [(r[0], r[1]) for r in rows] == [(3, 2)]


def test_a_file_that_changed_while_read(db: Database, tmp_path: Path) -> None:
    load_source(db, AGENCY, fixture_path("valid_lf"))
    before = _state(db)
    path = tmp_path / "growing.csv"
    path.write_bytes(fixture_path("rejected_two_of_ten").read_bytes())

    def grow(_bytes: int, _rows: int) -> None:
        with path.open("ab") as fh:
            fh.write(b"11,110,1100,low-value\n")

    result = load_source(db, AGENCY, path, progress=grow)
    _check_rejected(db, result, before, "file_changed", 10, 2)


def _large(path: Path, tail: bytes = b"") -> int:
    """A file over PARALLEL_MIN_BYTES, one row in 8 invalid; returns the number of invalid rows."""
    rows = PARALLEL_MIN_BYTES // 20 + 1
    with path.open("wb") as fh:
        fh.write(HEADER)
        fh.write(b"".join(b"x%d,1,1,low-value\n" % i if i % 8 == 0 else b"%d,1,1,low-value\n" % i
                          for i in range(rows)))
        fh.write(tail)
    return (rows + 7) // 8


def test_a_large_file_with_too_many_invalid_rows(db: Database, tmp_path: Path) -> None:
    load_source(db, AGENCY, fixture_path("valid_lf"))
    before = _state(db)
    path = tmp_path / "large.csv"
    invalid = _large(path)
    assert path.stat().st_size >= PARALLEL_MIN_BYTES
    rows = PARALLEL_MIN_BYTES // 20 + 1
    result = load_source(db, replace(AGENCY, max_invalid_percent=5), path)
    _check_rejected(db, result, before, "too_many_invalid", rows, invalid)


def test_a_large_file_rejected_mid_stream(db: Database, tmp_path: Path) -> None:
    """A quote never closed after ~8 MiB of rows (its record runs over the limit): the invalid rows found
    before it are kept."""
    load_source(db, AGENCY, fixture_path("valid_lf"))
    before = _state(db)
    path = tmp_path / "large_then_huge.csv"
    _large(path, b'1,1,1,"' + (b"a" * 1000 + b"\n") * (MAX_RECORD_BYTES // 1000 + 10))
    result = load_source(db, AGENCY, path)
    assert result.status == "rejected" and result.reason == "record_too_large", result
    assert 0 < result.rows_invalid < result.rows_read
    _check_rejected(db, result, before, "record_too_large", result.rows_read, result.rows_invalid)
