"""A corpus of hostile agency files, each with its exact expected outcome, run through the real command line.

Every case ends in one of two ways, never a traceback and never a hang:
- rejected: exit 1, one ``error:`` line naming the file and the problem, the history records why, and the
  agency keeps its previous data (the report still shows it);
- loaded: exit 0 with exactly the expected valid rows and invalid rows (line number and failing columns).

The small files are in tests/fixtures/hostile/ (one per case, named after it). The big ones (a 100 MB line,
10 MB fields, a 10,000-column header, a runaway quote) are generated into tmp_path and run with their peak
memory measured: it must stay under a fixed bound that is below what holding the file would take.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from customer_ratings import Settings, discover, load_config, load_sources, open_database

from . import _db
from ._agency import BASELINE_ROWS, Agency
from ._cli import Run, assert_no_traceback, run_cli, start_cli

HOSTILE = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
H = b"customer_number,customer_rating,customer_rating_limit,customer_status"
ST = "customer_status"
NUM = "customer_number"
# Peak RSS bounds (the command alone is ~100 MiB with numpy, pyarrow and psycopg loaded). A file streams: a
# 100 MB file must not take more than STREAM_RSS_MIB, i.e. less than holding it. A 10 MB record (the loader
# refuses records over 16 MiB) must not take more than MAX_RSS_MIB.
STREAM_RSS_MIB = 200
MAX_RSS_MIB = 350


@dataclass
class Case:
    fixture: str
    config: str = ""
    rejected: str | None = None
    words: str = ""
    valid: list[tuple[int, int, int, str]] = field(default_factory=list)
    invalid: dict[int, dict[str | None, str]] = field(default_factory=dict)
    raw: dict[int, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.fixture + ("[" + self.config.split("=")[1].strip().strip('"') + "]" if self.config else "")


CASES = [
    Case("empty", rejected="empty_file", words="empty"),
    Case("binary_garbage", rejected="bad_header", words="header"),
    Case("all_nul_bytes", rejected="bad_header", words="NUL"),
    Case("nul_in_header", rejected="bad_header", words="NUL"),
    Case("nul_bytes_in_rows", valid=[(1, 2, 3, "low-value"), (10, 11, 12, "high-value")],
         invalid={3: {NUM: "not_an_integer"}, 4: {ST: "invalid_character"}},
         raw={3: "4\\x00,5,6,low-value", 4: "7,8,9,low\\x00value"}),
    Case("unterminated_quote_at_eof", valid=[(1, 2, 3, "low-value")], invalid={3: {None: "malformed_csv"}},
         raw={3: '4,5,6,"high-value'}),
    Case("unterminated_quote_swallows_rest", valid=[(1, 2, 3, "low-value")], invalid={3: {None: "malformed_csv"}},
         raw={3: '4,5,6,"high-value\n7,8,9,low-value\n10,11,12,high-value'}),
    Case("only_bom", rejected="no_header", words="no header"),
    Case("bom_and_blank_lines", rejected="no_header", words="no header"),
    Case("double_bom", rejected="bad_header", words="header"),
    Case("utf16le_bom", rejected="bad_header", words="UTF-16"),
    Case("utf16be_bom", rejected="bad_header", words="UTF-16"),
    Case("utf16le_bom", config='encoding = "utf-16"', valid=[(1, 2, 3, "low-value"), (4, 5, 6, "high-value")]),
    Case("utf16le_no_bom", rejected="bad_header", words="NUL"),
    Case("utf16le_no_bom", config='encoding = "utf-16"', rejected="bad_header", words="UTF-16"),
    Case("utf16le_no_bom", config='encoding = "utf-16-le"',
         valid=[(1, 2, 3, "low-value"), (4, 5, 6, "high-value")]),
    Case("latin1_status", valid=[(4, 5, 6, "low-value")], invalid={2: {ST: "invalid_encoding"}},
         raw={2: "1,2,3,Soci\\xe9t\\xe9"}),
    Case("latin1_status", config='encoding = "latin-1"', valid=[(1, 2, 3, "Société"), (4, 5, 6, "low-value")]),
    Case("latin1_header", rejected="bad_header", words="UTF-8"),
    Case("cp1252_smart_quotes", valid=[(4, 5, 6, "high-value")], invalid={2: {ST: "invalid_encoding"}},
         raw={2: "1,2,3,\\x93high-value\\x94"}),
    Case("cp1252_smart_quotes", config='encoding = "cp1252"',
         valid=[(1, 2, 3, "“high-value”"), (4, 5, 6, "high-value")]),
    Case("cr_only_line_endings", rejected="bad_header", words="header"),
    Case("header_only_no_newline"),
    Case("huge_integer_digits", valid=[(7, 1, 1, "low-value"), (8, 8, 8, "high-value")],
         invalid={2: {NUM: "out_of_range"}, 4: {"customer_rating": "out_of_range"}}),
    Case("unicode_digits", valid=[(1, 2, 3, "low-value")],
         invalid={2: {NUM: "not_an_integer"}, 3: {NUM: "not_an_integer"}, 4: {NUM: "not_an_integer"}}),
    Case("status_multibyte_lengths", valid=[(1, 1, 1, "é" * 25), (3, 3, 3, "😀" * 25), (5, 5, 5, "x" * 25)],
         invalid={3: {ST: "too_long"}, 5: {ST: "too_long"}}),
    Case("copy_end_marker", valid=[(1, 1, 1, "\\."), (2, 2, 2, "a\n\\.\nb"), (3, 3, 3, "high-value")],
         invalid={3: {None: "wrong_field_count"}}, raw={3: "\\."}),
    Case("whitespace_only_lines", valid=[(1, 1, 1, "low-value"), (2, 2, 2, "high-value")],
         invalid={3: {None: "wrong_field_count"}, 4: {None: "wrong_field_count"}}),
    Case("very_many_fields_row", valid=[(1, 1, 1, "low-value"), (2, 2, 2, "high-value")],
         invalid={3: {None: "wrong_field_count"}}),
    Case("invalid_utf8_sequences", valid=[(5, 5, 5, "€-euro")],
         invalid={2: {ST: "invalid_encoding"}, 3: {ST: "invalid_encoding"}, 4: {ST: "invalid_encoding"},
                  5: {ST: "invalid_encoding"}},
         raw={2: "1,1,1,over\\xc0\\xaflong", 3: "2,2,2,surr\\xed\\xa0\\x80ogate"}),
    Case("header_repeated_midfile", valid=[(1, 1, 1, "low-value"), (2, 2, 2, "high-value")],
         invalid={3: {NUM: "not_an_integer", "customer_rating": "not_an_integer",
                      "customer_rating_limit": "not_an_integer"}}),
    Case("trailing_commas", rejected="bad_header", words="unknown column"),
    Case("trailing_commas", config='extra_columns = "ignore"', valid=[(1, 1, 1, "low-value"),
                                                                     (2, 2, 2, "high-value")]),
    Case("emoji_shortcode_header", rejected="bad_header", words="':x:'"),
    Case("sql_in_values", valid=[(1, 1, 1, "x'); DROP TABLE t;--"), (3, 3, 3, 'a";DROP TABLE t;--')],
         invalid={3: {ST: "too_long"}}),
]


def _agency(database_url: str, tmp_path: Path, config: str = "") -> Agency:
    agency = Agency(database_url, tmp_path, config)
    agency.load_baseline()
    return agency


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_file(database_url: str, tmp_path: Path, case: Case) -> None:
    agency = _agency(database_url, tmp_path, case.config)
    agency.day_file.write_bytes((HOSTILE / f"{case.fixture}.csv").read_bytes())
    run = agency.run(timeout=60)
    if case.rejected:
        agency.assert_rejected(run, case.rejected, case.words)
    else:
        agency.assert_loaded(run, case.valid, case.invalid, case.raw)


def test_every_hostile_fixture_has_a_case() -> None:
    files = {p.stem for p in HOSTILE.glob("*.csv")}
    assert files == {c.fixture for c in CASES}


# ---------------------------------------------------------------------------------------------------------
# Large files, generated at test time, with peak memory measured
# ---------------------------------------------------------------------------------------------------------

def _write_big(path: Path, *parts: bytes | tuple[bytes, int]) -> None:
    """Write parts; a (chunk, n) part is the chunk repeated n times, streamed."""
    with path.open("wb") as fh:
        for part in parts:
            if isinstance(part, tuple):
                chunk, n = part
                for _ in range(n):
                    fh.write(chunk)
            else:
                fh.write(part)


def _assert_streamed(run: Run) -> None:
    assert run.maxrss_mib is not None
    assert run.maxrss_mib < STREAM_RSS_MIB, f"peak RSS {run.maxrss_mib:.0f} MiB: the file was not streamed"


def test_100mb_single_line_is_rejected_in_bounded_memory(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path)
    _write_big(agency.day_file, H + b"\n1,2,3,low-value\n", (b"1234567,", 100 * 2**20 // 8), b"\n4,5,6,low-value\n")
    run = agency.run(timeout=120, measure=True)
    agency.assert_rejected(run, "record_too_large", "line 3")
    _assert_streamed(run)


def test_100mb_file_without_a_line_end_is_rejected_in_bounded_memory(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path)
    _write_big(agency.day_file, (b"customer_number,", 100 * 2**20 // 16))
    run = agency.run(timeout=120, measure=True)
    agency.assert_rejected(run, "record_too_large", "longer than")
    _assert_streamed(run)


def test_runaway_quote_in_a_large_file_is_rejected_in_bounded_memory(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path)
    _write_big(agency.day_file, H + b'\n1,2,3,"low-value\n', (b"1111673297,244586,333397,low-value\n", 700_000))
    run = agency.run(timeout=120, measure=True)
    agency.assert_rejected(run, "record_too_large", "quote")
    assert run.maxrss_mib is not None and run.maxrss_mib < MAX_RSS_MIB, f"peak RSS {run.maxrss_mib:.0f} MiB"


@pytest.mark.parametrize("quoted", [False, True], ids=["unquoted", "quoted"])
def test_10mb_status_field_is_one_invalid_row(database_url: str, tmp_path: Path, quoted: bool) -> None:
    agency = _agency(database_url, tmp_path)
    q = b'"' if quoted else b""
    _write_big(agency.day_file, H + b"\n1,2,3,low-value\n4,5,6," + q, (b"x" * 1024, 10 * 1024),
               q + b"\n7,8,9,high-value\n")
    run = agency.run(timeout=120, measure=True)
    got = agency.assert_loaded(run, [(1, 2, 3, "low-value"), (7, 8, 9, "high-value")], {3: {ST: "too_long"}})
    assert len(got[0]["raw_line"]) == 10 * 2**20 + len("4,5,6,") + 2 * len(q), "the raw line is kept whole"
    assert run.maxrss_mib is not None and run.maxrss_mib < MAX_RSS_MIB, f"peak RSS {run.maxrss_mib:.0f} MiB"


def test_10mb_quoted_field_over_many_lines_keeps_line_numbers(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path)
    lines = 10 * 2**20 // 100
    _write_big(agency.day_file, H + b'\n1,2,3,low-value\n4,5,6,"', (b"y" * 99 + b"\n", lines), b'"\n7,8,9,high-value\n')
    run = agency.run(timeout=120, measure=True)
    agency.assert_loaded(run, [(1, 2, 3, "low-value"), (7, 8, 9, "high-value")], {3: {ST: "too_long"}})
    with _db.connect(agency.url) as conn:
        (last_line,) = conn.execute(  # type: ignore[misc]
            "SELECT max(line_number) FROM file_invalid_rows").fetchone()
    assert last_line == 3
    assert run.maxrss_mib is not None and run.maxrss_mib < MAX_RSS_MIB, f"peak RSS {run.maxrss_mib:.0f} MiB"


def test_10mb_padded_integer_field_is_a_valid_row(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path)
    _write_big(agency.day_file, H + b"\n1,2,", (b" " * 1024, 10 * 1024), b"3,low-value\n4,5,6,high-value\n")
    run = agency.run(timeout=120, measure=True)
    agency.assert_loaded(run, [(1, 2, 3, "low-value"), (4, 5, 6, "high-value")], {})
    assert run.maxrss_mib is not None and run.maxrss_mib < MAX_RSS_MIB, f"peak RSS {run.maxrss_mib:.0f} MiB"


def _wide(path: Path, rows: int) -> None:
    names = [f"extra_{i:05d}" for i in range(9996)]
    names[17:17] = ["Customer_Status", "customer_rating_limit", " customer_rating", "CUSTOMER_NUMBER"]
    header = ",".join(names).encode() + b"\r\n"
    row = [b"0"] * 10_000
    with path.open("wb") as fh:
        fh.write(header)
        for i in range(rows):
            row[17:21] = [b"high-value" if i % 2 else b"low-value", b"500", str(i).encode(), str(1000 + i).encode()]
            fh.write(b",".join(row) + b"\r\n")


def test_10000_column_header_is_rejected_with_one_line(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path)
    _wide(agency.day_file, 50)
    run = agency.run(timeout=120, measure=True)
    agency.assert_rejected(run, "bad_header", "9996 unknown column")
    assert len(run.error_lines[0]) < 1000, "the error names a few columns, not 10,000"
    assert run.maxrss_mib is not None and run.maxrss_mib < MAX_RSS_MIB, f"peak RSS {run.maxrss_mib:.0f} MiB"


def test_10000_column_header_loads_with_extra_columns_ignored(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path, 'extra_columns = "ignore"')
    _wide(agency.day_file, 500)
    run = agency.run(timeout=120, measure=True)
    valid = [(1000 + i, i, 500, "high-value" if i % 2 else "low-value") for i in range(500)]
    agency.assert_loaded(run, valid, {})
    assert run.maxrss_mib is not None and run.maxrss_mib < MAX_RSS_MIB, f"peak RSS {run.maxrss_mib:.0f} MiB"


# ---------------------------------------------------------------------------------------------------------
# Things in the data folder that are not regular files
# ---------------------------------------------------------------------------------------------------------

def test_symlink_to_etc_passwd_is_rejected_and_nothing_of_it_is_stored(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path)
    agency.day_file.symlink_to("/etc/passwd")
    run = agency.run(timeout=60)
    agency.assert_rejected(run, "unreadable", "is a symlink to outside the data folder")
    assert "root:x:" not in run.stderr + run.stdout
    with _db.connect(agency.url) as conn:
        (n,) = conn.execute("SELECT count(*) FROM file_invalid_rows").fetchone()  # type: ignore[misc]
    assert n == 0


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_symlink_to_a_device_is_rejected(database_url: str, tmp_path: Path, target: str) -> None:
    agency = _agency(database_url, tmp_path)
    agency.day_file.symlink_to(target)
    run = agency.run(timeout=60)
    agency.assert_rejected(run, "unreadable", "not a regular file")


def test_directory_named_like_the_file_is_rejected(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path)
    agency.day_file.mkdir()
    run = agency.run(timeout=60)
    agency.assert_rejected(run, "unreadable", "directory")


def test_fifo_named_like_the_file_is_rejected_without_hanging(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path)
    os.mkfifo(agency.day_file)
    run = agency.run(timeout=30)
    agency.assert_rejected(run, "unreadable", "not a regular file")


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_broken_symlink_is_rejected(database_url: str, tmp_path: Path, kind: str) -> None:
    agency = _agency(database_url, tmp_path)
    if kind == "dangling":
        agency.day_file.symlink_to(tmp_path / "nowhere.csv")
    else:
        agency.day_file.symlink_to(agency.day_file)
    run = agency.run(timeout=60)
    agency.assert_rejected(run, "unreadable", "cannot be opened")


# ---------------------------------------------------------------------------------------------------------
# Files that change under the loader
# ---------------------------------------------------------------------------------------------------------

def test_file_that_disappears_before_it_is_opened(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path)
    agency.day_file.write_bytes(H + b"\n1,2,3,low-value\n")
    config = load_config(agency.config)
    found = discover(config, agency.data)
    agency.day_file.unlink()
    with open_database(Settings(database_url=database_url)) as db:
        summary = load_sources(db, config, agency.data, discovery=found)
    (result,) = summary.results
    assert (result.status, summary.exit_code) == ("rejected", 1)
    assert result.error and "\n" not in result.error and "No such file" in result.error
    assert agency.rows() == BASELINE_ROWS
    assert agency.current() == agency.baseline_id


def _big_agency_file(path: Path, rows: int) -> None:
    with path.open("wb") as fh:
        fh.write(H + b"\n")
        block = b"".join(b"%d,%d,500000,low-value\n" % (1_000_000 + i, i) for i in range(10_000))
        for _ in range(rows // 10_000):
            fh.write(block)


def _wait_for_copy(url: str, timeout: float = 30) -> None:
    """Wait until a backend of this database is running a COPY into the agency table."""
    deadline = time.monotonic() + timeout
    with _db.connect(url) as conn:
        while time.monotonic() < deadline:
            if conn.execute("""SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                               AND query LIKE 'COPY%%customer_rating_agency_a%%' AND pid <> pg_backend_pid()
                               """).fetchone():
                return
            time.sleep(0.005)
    raise AssertionError("the load never reached its COPY")


def _run_while(agency: Agency, action: str) -> tuple[int, str]:
    """Start a load of a ~40 MB day's file, do ``action`` to the file during its COPY, wait for the end."""
    proc = start_cli(["run", "--data-dir", str(agency.data), "--output-dir", str(agency.out), "--date",
                      "2025-01-02", "--config", str(agency.config), "--quiet"], agency.env, agency.root / "logs")
    try:
        _wait_for_copy(agency.url)
        if action == "unlink":
            agency.day_file.unlink()
        elif action == "append":
            with agency.day_file.open("ab") as fh:
                fh.write(b"9,9,9,high-value\n" * 1000)
        elif action == "truncate":
            os.truncate(agency.day_file, 1000)
        returncode = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = (agency.root / "logs" / "cli.stderr").read_text(errors="backslashreplace")
    return returncode, stderr


def test_file_unlinked_while_read_loads_the_snapshot_it_opened(database_url: str, tmp_path: Path) -> None:
    agency = _agency(database_url, tmp_path)
    _big_agency_file(agency.day_file, 1_500_000)
    returncode, stderr = _run_while(agency, "unlink")
    assert returncode == 0 and "Traceback" not in stderr, stderr
    hist = agency.last_history()
    assert (hist["status"], hist["rows_loaded"], hist["rows_invalid"]) == ("loaded", 1_500_000, 0)
    with _db.connect(agency.url) as conn:
        assert _db.fingerprint(conn, "customer_rating_agency_a")[:3] == (
            1_500_000, 150 * sum(range(1_000_000, 1_010_000)), 150 * sum(range(10_000)))


@pytest.mark.parametrize("action", ["append", "truncate"])
def test_file_that_changes_while_read_is_rejected(database_url: str, tmp_path: Path, action: str) -> None:
    agency = _agency(database_url, tmp_path)
    _big_agency_file(agency.day_file, 1_500_000)
    returncode, stderr = _run_while(agency, action)
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert returncode == 1 and len(errors) == 1 and "changed while it was read" in errors[0], stderr
    hist = agency.last_history()
    assert (hist["status"], hist["error_code"]) == ("rejected", "file_changed")
    assert agency.rows() == BASELINE_ROWS
    assert agency.current() == agency.baseline_id


def test_a_hostile_file_does_not_stop_the_other_agencies(database_url: str, tmp_path: Path) -> None:
    """The default config: agency B's file is garbage, A, C and D load; exit 1; the report has A, C, D."""
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    for letter in "ACD":
        (data / f"Customer Rating Agency {letter} Inc.csv").write_bytes(H + b"\n1,2,3,high-value\n")
    (data / "Customer Rating Agency B Inc.csv").write_bytes((HOSTILE / "binary_garbage.csv").read_bytes())
    agency = Agency(database_url, tmp_path)
    run = run_cli(["run", "--data-dir", str(data), "--output-dir", str(out), "--date", "2025-01-02", "--quiet"],
                  agency.env, timeout=60)
    assert_no_traceback(run)
    assert run.returncode == 1 and len(run.error_lines) == 1 and "agency_b" in run.error_lines[0], str(run)
    report = (out / "Customer_Rating_Aggregate_Report_20250102.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in report[1:]] == ["agency_a", "agency_c", "agency_d"]
