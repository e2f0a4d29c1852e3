"""One agency in a data folder, driven through the real command line, with its database state at hand."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from customer_ratings import Settings, load_config, load_source, open_database

from . import _db
from ._cli import Run, assert_no_traceback, cli_env, run_cli

BASELINE = (b"customer_number,customer_rating,customer_rating_limit,customer_status\n"
            b"101,1000,5000,low-value\n102,2000,5000,high-value\n103,3000,5000,low-value\n")
BASELINE_ROWS = Counter([(101, 1000, 5000, "low-value"), (102, 2000, 5000, "high-value"),
                         (103, 3000, 5000, "low-value")])
BASELINE_REPORT = ["agency_a", "3", "6000", "1", "0", "0.00"]
DAY_FILE = "Customer Rating Agency A Inc 20250102.csv"


class Agency:
    """agency_a with a baseline load (3 rows) and, as the day's file, whatever the test puts there."""

    def __init__(self, database_url: str, root: Path, config_lines: str = "") -> None:
        self.url = database_url
        self.root = root
        self.data = root / "data"
        self.out = root / "out"
        self.data.mkdir(parents=True, exist_ok=True)
        self.config = root / "sources.toml"
        self.config.write_text(
            '[[sources]]\nname = "agency_a"\ntable = "customer_rating_agency_a"\n'
            f'file_pattern = "Customer Rating Agency A Inc*.csv"\n{config_lines}\n')
        self.source = load_config(self.config).sources[0]
        self.env = cli_env(database_url, root / "home")
        self.day_file = self.data / DAY_FILE
        self.baseline_id: int | None = None

    def load_baseline(self) -> None:
        path = self.root / "baseline" / "Customer Rating Agency A Inc 20250101.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(BASELINE.decode().encode(self.source.encoding))
        with open_database(Settings(database_url=self.url)) as db:
            result = load_source(db, self.source, path, force=True, as_of=date(2025, 1, 1))
        assert result.status == "loaded", result
        self.baseline_id = result.load_id

    def run(self, *, timeout: float = 120, measure: bool = False, extra: tuple[str, ...] = ()) -> Run:
        return run_cli(["run", "--data-dir", str(self.data), "--output-dir", str(self.out), "--date", "2025-01-02",
                        "--config", str(self.config), "--quiet", *extra], self.env, timeout=timeout,
                       measure=measure, workdir=self.root / "run")

    def report(self) -> list[list[str]]:
        path = self.out / "Customer_Rating_Aggregate_Report_20250102.csv"
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.reader(fh))

    # -- database state ------------------------------------------------------------------------------------
    def last_history(self) -> dict[str, Any]:
        with _db.connect(self.url) as conn:
            row = conn.execute("SELECT max(load_id) FROM load_history WHERE source = 'agency_a'").fetchone()
            assert row is not None and row[0] is not None
            return _db.history(conn, int(row[0]))

    def rows(self) -> Counter[_db.Row]:
        with _db.connect(self.url) as conn:
            return _db.agency_rows(conn, "customer_rating_agency_a")

    def current(self) -> int | None:
        with _db.connect(self.url) as conn:
            return _db.current_load(conn, "agency_a")

    def invalid(self, load_id: int) -> list[dict[str, Any]]:
        with _db.connect(self.url) as conn:
            return _db.invalid_rows(conn, load_id)

    def consolidated(self) -> tuple[Counter[_db.Row], set[int]]:
        with _db.connect(self.url) as conn:
            return _db.consolidated_rows(conn, "agency_a")

    # -- the two outcomes a hostile file may have ----------------------------------------------------------
    def assert_rejected(self, run: Run, reason: str, words: str = "") -> None:
        """Exit 1 with one clear error line naming the file; the previous data, report row and current load
        stay as they were; the history says why."""
        assert_no_traceback(run)
        assert run.returncode == 1, str(run)
        errors = run.error_lines
        assert len(errors) == 1, f"expected one error line:\n{run}"
        assert DAY_FILE in errors[0], f"the error must name the file:\n{run}"
        assert words.lower() in errors[0].lower(), f"the error must say {words!r}:\n{run}"
        hist = self.last_history()
        assert (hist["status"], hist["error_code"]) == ("rejected", reason), hist
        assert self.rows() == BASELINE_ROWS, "a rejected file must leave the previous data"
        assert self.consolidated() == (BASELINE_ROWS, {self.baseline_id})
        assert self.current() == self.baseline_id
        assert self.invalid(hist["load_id"]) == []
        assert self.report()[1:] == [BASELINE_REPORT]

    def assert_loaded(self, run: Run, valid: list[_db.Row], invalid: dict[int, dict[str | None, str]],
                      raw: dict[int, str] | None = None) -> list[dict[str, Any]]:
        """Exit 0, the day's file is the agency's current load with exactly these valid rows, and exactly
        these invalid rows (line number -> {failing column: code})."""
        assert_no_traceback(run)
        assert run.returncode == 0, str(run)
        assert run.error_lines == [], str(run)
        hist = self.last_history()
        assert hist["status"] == "loaded", hist
        assert self.current() == hist["load_id"]
        assert hist["file_uri"] == self.day_file.absolute().as_uri()
        assert (hist["rows_read"], hist["rows_loaded"], hist["rows_invalid"]) == (
            len(valid) + len(invalid), len(valid), len(invalid))
        assert self.rows() == Counter(valid)
        rows, loads = self.consolidated()
        assert rows == Counter(valid) and loads <= {hist["load_id"]}
        got = self.invalid(hist["load_id"])
        assert {r["line_number"]: {e["column"]: e["code"] for e in r["errors"]} for r in got} == invalid
        for r in got:
            assert r["error"] and "\n" not in r["error"], f"triage error not one line: {r['error']!r}"
            if raw and r["line_number"] in raw:
                assert r["raw_line"] == raw[r["line_number"]]
        report = self.report()
        assert len(report) == 2 and report[1][0] == "agency_a", report
        assert report[1][1] == str(len(valid)) and report[1][4] == str(len(invalid)), report
        return got
