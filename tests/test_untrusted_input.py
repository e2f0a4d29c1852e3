"""Untrusted things in the data folder: symlinks out of it (issue 9.7), control characters in file names (9.8),
undecodable bytes in an ignored column (9.11a), and the high-level error of an invalid row (issue 11)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from customer_ratings import Database, load_source

from .conftest import AGENCY, codes, copy_fixture, invalid_rows, load_fixture, table_rows

HEADER = "customer_number,customer_rating,customer_rating_limit,customer_status\n"
SECRET = "TOPSECRET-4f1c9a:$6$rounds=5000$abcdefgh"


def _run(data: Path, config: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "CUSTOMER_RATINGS_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "customer_ratings", "load", "--data-dir", str(data), "--config",
                           str(config), "--quiet"], capture_output=True, text=True, env=env, timeout=300, check=False)


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(f'[[sources]]\nname = "agency_s"\ntable = "customer_rating_agency_s"\nfile_pattern = "*"\n{extra}')
    return path


def _history(db: Database) -> list[tuple[str, str | None, str | None]]:
    return db.connection().execute(
        "SELECT status, error_code, error FROM load_history ORDER BY load_id").fetchall()


def _secret_outside(tmp_path: Path, text: str) -> Path:
    outside = tmp_path / "private"
    outside.mkdir()
    secret = outside / "shadow"
    secret.write_text(text)
    secret.chmod(0o600)
    return secret


def test_a_symlink_to_a_private_file_outside_is_rejected_and_its_content_never_shown(
        db: Database, database_url: str, tmp_path: Path) -> None:
    secret = _secret_outside(tmp_path, SECRET + "\nsecond:line\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "drop.csv").symlink_to(secret)
    out = _run(data, _config(tmp_path), database_url)
    assert out.returncode == 1, out.stderr
    assert "TOPSECRET" not in out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "drop.csv" in errors[0], out.stderr
    assert "symlink to outside the data folder; set follow_symlinks = true" in errors[0]
    ((status, code, error),) = _history(db)
    assert (status, code) == ("rejected", "unreadable")
    assert error is not None and "TOPSECRET" not in error
    (n,) = db.connection().execute("SELECT count(*) FROM file_invalid_rows").fetchone()  # type: ignore[misc]
    assert n == 0


def test_follow_symlinks_true_loads_a_file_outside_the_data_folder(db: Database, database_url: str,
                                                                   tmp_path: Path) -> None:
    target = _secret_outside(tmp_path, HEADER + "1,2,3,low-value\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "drop.csv").symlink_to(target)
    out = _run(data, _config(tmp_path, "follow_symlinks = true\n"), database_url)
    assert out.returncode == 0, out.stderr
    assert table_rows(db, "customer_rating_agency_s") == [(1, 2, 3, "low-value")]


def test_a_symlink_inside_the_data_folder_is_followed(db: Database, database_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "archive").mkdir(parents=True)
    (data / "archive" / "real.txt").write_text(HEADER + "4,5,6,high-value\n")
    (data / "drop.csv").symlink_to(Path("archive") / "real.txt")
    out = _run(data, _config(tmp_path), database_url)
    assert out.returncode == 0, out.stderr
    assert table_rows(db, "customer_rating_agency_s") == [(4, 5, 6, "high-value")]


def test_a_file_name_with_a_newline_and_an_ansi_escape_stays_one_escaped_line(
        db: Database, database_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    name = "evil\nerror: forged line\x1b[2J.csv"
    (data / name).write_text("no,such,columns\n1,2,3\n")
    out = _run(data, _config(tmp_path), database_url)
    assert out.returncode == 1
    assert "\x1b" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in errors if "evil\\nerror: forged line\\x1b[2J.csv" in line], out.stderr
    assert len(errors) == 1, out.stderr
    ((status, code, error),) = _history(db)
    assert (status, code) == ("rejected", "bad_header") and "\n" not in (error or "")


def test_undecodable_bytes_in_an_ignored_column_make_the_row_invalid(db: Database) -> None:
    result = load_fixture(db, "invalid_encoding_in_ignored_column", extra_columns="ignore")
    assert (result.status, result.rows_read, result.rows_loaded, result.rows_invalid) == ("loaded", 2, 1, 1)
    ((line, record, raw, fields, errors, error),) = invalid_rows(db, result.load_id)
    assert (line, record, raw) == (2, 1, "west,15005,1,1,low-value,\\xff")
    assert codes(errors) == [("notes", "invalid_encoding")] and error == "notes: invalid_encoding"
    assert fields["notes"] == "\\xff"
    assert table_rows(db, "customer_rating_agency_t") == [(15006, 2, 3, "high-value")]


def test_the_high_level_error_groups_by_kind_of_problem(db: Database, tmp_path: Path) -> None:
    path = copy_fixture("header_only", tmp_path, "rows.csv")
    path.write_text(HEADER + "x,1,1,low-value\nyy,2,2,low-value\n1,abc,1," + "s" * 30 + "\n1,2\n")
    result = load_source(db, AGENCY, path)
    groups = db.connection().execute(
        "SELECT error, count(*) FROM file_invalid_rows WHERE load_id = %s GROUP BY error ORDER BY error",
        (result.load_id,)).fetchall()
    assert groups == [("customer_number: not_an_integer", 2),
                      ("customer_rating: not_an_integer; customer_status: too_long", 1),
                      ("wrong_field_count", 1)]
    messages = db.connection().execute(
        "SELECT errors->0->>'message' FROM file_invalid_rows WHERE load_id = %s ORDER BY line_number",
        (result.load_id,)).fetchall()
    assert messages[0] == ("customer_number: 'x' is not an integer",), "the values stay in the messages"
