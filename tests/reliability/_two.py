"""Two agencies (A then B) loaded by the real CLI, with a first load (v1) in place and new files (v2) ready."""

from __future__ import annotations

from pathlib import Path

from . import _db
from ._bigdata import Expect, write_agency_file
from ._cli import Run, assert_no_traceback, cli_env, run_cli

BOUND = 120  # seconds: a load that takes longer has hung
SMALL_ROWS = 2_000
LARGE_ROWS = 300_000  # ~10.5 MiB: the parallel path
UNDO = "DROP EVENT TRIGGER IF EXISTS arm"  # the fault triggers of test_server_errors (on each new child)
CONFIG = """
[[sources]]
name = "agency_a"
table = "customer_rating_agency_a"
file_pattern = "Customer Rating Agency A Inc*.csv"

[[sources]]
name = "agency_b"
table = "customer_rating_agency_b"
file_pattern = "Customer Rating Agency B Inc*.csv"
"""


class Setup:
    """A database where A and B hold a first load (v1); ``v2`` holds new files for both."""

    def __init__(self, url: str, tmp: Path, a_rows: int, a_rows_v1: int | None = None) -> None:
        self.url, self.tmp = url, tmp
        self.config = tmp / "sources.toml"
        self.config.write_text(CONFIG)
        self.env = cli_env(url, tmp / "home")
        self.v1, self.v2 = tmp / "v1", tmp / "v2"
        self.expect: dict[str, dict[str, Expect]] = {}
        for version, seed, rows in ((self.v1, 1, a_rows_v1 or a_rows), (self.v2, 2, a_rows)):
            version.mkdir()
            self.expect[version.name] = {
                "agency_a": write_agency_file(version / "Customer Rating Agency A Inc.csv", rows, seed),
                "agency_b": write_agency_file(version / "Customer Rating Agency B Inc.csv", 500, seed + 10),
            }
        first = self.load(self.v1)
        assert first.returncode == 0, str(first)

    def load(self, data: Path, env: dict[str, str] | None = None) -> Run:
        return run_cli(self.args(data), env or self.env, timeout=BOUND)

    def args(self, data: Path) -> list[str]:
        return ["load", "--data-dir", str(data), "--config", str(self.config), "--date", "2025-05-13", "--quiet"]

    def sql(self, statement: str) -> None:
        with _db.connect(self.url) as conn:
            conn.execute(statement)

    def check_failed_cleanly(self, run: Run, what: str, b_status: str = "loaded") -> None:
        assert_no_traceback(run)
        assert run.returncode == 1, str(run)
        a_errors = [e for e in run.error_lines if "agency_a" in e]
        assert len(a_errors) == 1, f"one error line for agency_a:\n{run}"
        assert what in a_errors[0], str(run)
        assert "nothing of it was committed" in a_errors[0] or "nothing was loaded" in a_errors[0], str(run)
        with _db.connect(self.url) as conn:
            assert _db.fingerprint(conn, "customer_rating_agency_a") == self.expect["v1"]["agency_a"].fingerprint
            assert _db.partition_fingerprint(conn, "agency_a") == self.expect["v1"]["agency_a"].fingerprint
            b = self.expect["v2" if b_status == "loaded" else "v1"]["agency_b"]
            assert _db.fingerprint(conn, "customer_rating_agency_b") == b.fingerprint
            last = dict(conn.execute(
                """SELECT DISTINCT ON (source) source, status FROM load_history
                   ORDER BY source, load_id DESC""").fetchall())
            assert last == {"agency_a": "failed", "agency_b": b_status}, last
            assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)
            every, attached = _db.stage_tables(conn)
            assert every == attached, f"tables of the failed load left behind: {every - attached}"

    def next_load_succeeds(self) -> None:
        self.sql(UNDO)
        again = self.load(self.v2)
        assert again.returncode == 0, str(again)
        with _db.connect(self.url) as conn:
            assert _db.fingerprint(conn, "customer_rating_agency_a") == self.expect["v2"]["agency_a"].fingerprint
