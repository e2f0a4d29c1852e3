"""The operating commands and fixes of issue 11: psql on both kinds of server, the reconciliation files,
run's output check before loading, --version, -v, the summary's wording, the progress bar's last frame and
the report on an empty database."""

from __future__ import annotations

import csv
import io
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from rich.console import Console

from customer_ratings import Source
from customer_ratings import cli as cli_module
from customer_ratings.reconcile import file_name, safe_name

from ..conftest import REPO, SHARED
from ..test_cli import cli
from .conftest import DAY, SAMPLE, sample_data

EXTERNAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def count_loads(url: str) -> int:
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('load_history') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute("SELECT count(*) FROM load_history").fetchone()
        return int(row[0]) if row else 0


# --- psql ---

def test_psql_runs_a_query_on_the_test_database(seeded: Path) -> None:
    done = cli("psql", "--", "-At", "-c", "SELECT count(*) FROM customer_rating")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "72"


@pytest.fixture
def external_database() -> Iterator[str]:
    """A fresh database on the PostgreSQL at 127.0.0.1:5432 (the 'external server'), dropped afterwards."""
    name = f"crpsql_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(EXTERNAL, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"postgresql://postgres:not-a-real-secret@127.0.0.1:5432/{name}"
    with psycopg.connect(EXTERNAL, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_psql_against_the_external_server_never_shows_the_password(external_database: str,
                                                                    tmp_path: Path) -> None:
    env = {"CUSTOMER_RATINGS_DATABASE_URL": external_database}
    data = sample_data(tmp_path / "data")
    loaded = cli("load", "--data-dir", str(data), "--date", DAY, "-q", env=env)
    assert loaded.returncode == 0, loaded.stderr
    done = cli("psql", "--", "-At", "-c", "SELECT count(*) FROM customer_rating",
               "-c", "SELECT current_setting('port')", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["72", "5432"]
    assert "not-a-real-secret" not in done.stdout + done.stderr
    failing = cli("psql", "--", "-c", "SELECT nope", env=env)
    assert failing.returncode != 0 and "nope" in failing.stderr  # psql's own exit code and message


def test_psql_starts_and_stops_the_embedded_server(tmp_path: Path) -> None:
    # Not under tmp_path: the embedded server runs as another user when we are root, and pytest's
    # folders are private to us.
    base = Path(tempfile.mkdtemp(prefix="customer-ratings-psql-"))
    base.chmod(0o755)
    try:
        env = {"CUSTOMER_RATINGS_HOME": str(base / "home"), "CUSTOMER_RATINGS_DATABASE_URL": ""}
        data = sample_data(tmp_path / "data")
        assert cli("load", "--data-dir", str(data), "--date", DAY, "-q", env=env).returncode == 0
        done = cli("psql", "--", "-At", "-c", "SELECT count(*) FROM customer_rating",
                   "-c", "SELECT current_database()", env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["72", "CustomerRatingData"]
        assert not (base / "home" / "pgdata" / "postmaster.pid").exists(), "the server is stopped afterwards"
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- reconciliation files ---

def test_run_writes_the_invalid_rows_of_each_agency_beside_the_report(seeded: Path) -> None:
    files = sorted(p.name for p in seeded.iterdir())
    assert files == ["Customer_Rating_Aggregate_Report_20250513.csv",
                     "Customer_Rating_Invalid_Rows_agency_b_20250513.csv",
                     "Customer_Rating_Invalid_Rows_agency_d_20250513.csv",
                     "Customer_Rating_Quality_Report_20250513.html"]
    assert (seeded / files[0]).read_bytes() == (SAMPLE / files[0]).read_bytes()
    rows = list(csv.reader(io.StringIO((seeded / files[1]).read_text())))
    assert rows[0] == ["line_number", "record_number", "error", "errors", "raw_line"]
    assert [r[:2] for r in rows[1:]] == [["3", "2"], ["9", "8"], ["19", "18"]]
    assert rows[1][3] == "customer_number: not_an_integer ('z1111753583' is not an integer)"
    assert rows[1][4] == "z1111753583,93557,456816,low-value"


def test_report_rewrites_them_and_no_invalid_files_turns_them_off(seeded: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    done = cli("report", "--output-dir", str(again), "--date", DAY)
    assert done.returncode == 0, done.stderr
    assert "invalid rows written: " in done.stderr
    for name in ("Customer_Rating_Invalid_Rows_agency_b_20250513.csv",
                 "Customer_Rating_Invalid_Rows_agency_d_20250513.csv"):
        assert (again / name).read_bytes() == (seeded / name).read_bytes()
    off = tmp_path / "off"
    assert cli("report", "--output-dir", str(off), "--date", DAY, "--no-invalid-files",
               "--no-html").returncode == 0
    assert [p.name for p in off.iterdir()] == ["Customer_Rating_Aggregate_Report_20250513.csv"]
    assert not list(again.glob(".*.tmp")), "no temporary file is left behind"


def test_agency_names_are_safe_in_file_names() -> None:
    assert safe_name("agency_b") == "agency_b"
    assert safe_name("../a b/c:d") == "_a_b_c_d"
    assert safe_name("..") == "_"
    assert file_name("Agence Noté", date(2025, 5, 13)) == "Customer_Rating_Invalid_Rows_Agence_Not__20250513.csv"


# --- run checks its output folder first ---

def test_run_refuses_an_unwritable_output_folder_before_loading(cli_env: str, tmp_path: Path) -> None:
    data = sample_data(tmp_path / "data")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = cli("run", "--data-dir", str(data), "--output-dir", str(blocker / "out"), "--date", DAY, "-q")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: output folder {blocker / 'out'} is not writable")
    assert count_loads(cli_env) == 0, "nothing was loaded"
    created = tmp_path / "new" / "nested"
    ok = cli("run", "--data-dir", str(data), "--output-dir", str(created), "--date", DAY, "-q")
    assert ok.returncode == 0 and (created / "Customer_Rating_Aggregate_Report_20250513.csv").is_file()
    assert not list(created.glob(".customer-ratings-write-check-*"))


def test_report_on_a_database_without_loads_asks_whether_it_is_the_right_one(cli_env: str,
                                                                              tmp_path: Path) -> None:
    done = cli("report", "--output-dir", str(tmp_path), "--date", DAY)
    assert done.returncode == 0
    assert re.search(r"no agency has a loaded file as of 2025-05-13 in this database \(database: "
                     r"\S*crtest_\w+[^)]*\): is this the right database\?", done.stderr), done.stderr


# --- summary, verbose, version ---

def test_summary_shows_load_ids_unchanged_backfill_superseded_and_unmatched(cli_env: str, tmp_path: Path) -> None:
    data = sample_data(tmp_path / "data")
    shutil.copy(data / "Customer Rating Agency A Inc.csv", data / "Customer Rating Agency A Inc 0.csv")
    for i in range(7):
        (data / f"extra_{i}.txt").write_text("")
    first = cli("load", "--data-dir", str(data), "--date", DAY, "-q")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].split("\t") == ["agency", "file", "status", "load", "read", "loaded", "invalid", "seconds"]
    assert lines[2].split("\t")[:7] == ["agency_b", "Customer Rating Agency B Inc.csv", "loaded", "2",
                                        "19", "16", "3"]
    assert "superseded (older matches of agency_a, not loaded): Customer Rating Agency A Inc 0.csv" in lines
    assert ("unmatched files (left alone, 7): extra_0.txt, extra_1.txt, extra_2.txt, extra_3.txt, extra_4.txt, "
            "and 2 more (-v lists them all)") in lines
    again = cli("load", "--data-dir", str(data), "--date", DAY, "-q", "-v")
    assert again.stdout.splitlines()[2].split("\t")[:7] == [
        "agency_b", "Customer Rating Agency B Inc.csv", "unchanged (load 2 stays current)", "6", "19", "16", "3"]
    assert "unmatched files (left alone, 7): " + ", ".join(f"extra_{i}.txt" for i in range(7)) in again.stdout
    assert re.search(r"INFO customer_ratings\S*: agency_b: unchanged in \d+\.\d{3} s", again.stderr), again.stderr
    older = cli("load", "--data-dir", str(data), "--date", "2025-05-12", "-q", "--force")
    assert older.returncode == 0
    assert "loaded (backfill: current data is from 2025-05-13)" in older.stdout


def test_version() -> None:
    from importlib import metadata

    done = cli("--version")
    assert done.returncode == 0 and done.stdout == f"customer-ratings {metadata.version('customer-ratings')}\n"


def test_progress_bar_ends_at_100_percent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(cli_module, "stderr", Console(file=out, force_terminal=True, width=200))
    f = tmp_path / "file.csv"
    f.write_bytes(b"x" * 1000)
    with cli_module._progress(quiet=False) as on_file:
        assert on_file is not None
        advance = on_file(Source("agency_t", "t", "*.csv"), f)
        assert advance is not None
        advance(400, 3)  # the load reports less than the whole file (e.g. the last block)
    assert "100%" in out.getvalue()


# --- every command and option of SPEC.md is in --help and in the README ---

def spec_command_lines() -> list[str]:
    """The command-line block of SPEC.md (../shared/SPEC.md beside the repo), else its copy in docs/."""
    spec = SHARED / "SPEC.md"
    summary = (REPO / "docs" / "spec-summary.md").read_text()
    block = _block(summary)
    if spec.is_file():
        assert _block(spec.read_text()) == block, "docs/spec-summary.md's command line is SPEC.md's"
    return block


def _block(text: str) -> list[str]:
    section = text.split("## Command line", 1)[1]
    body = section.split("```", 2)[1]
    return [line for line in body.splitlines() if line.startswith("customer-ratings")]


def test_every_command_and_option_of_the_spec_is_in_help_and_readme() -> None:
    readme = (REPO / "README.md").read_text()
    lines = spec_command_lines()
    assert len(lines) == 9
    for line in lines:
        words = line.split()
        command = words[1] if not words[1].startswith("--") else None
        options = set(re.findall(r"--[a-z][a-z-]*", line))
        help_text = cli(*([command] if command else []), "--help").stdout
        for option in sorted(options):
            assert option in help_text, f"{command} {option} in --help"
            assert option in readme, f"{command} {option} in README.md"
        if command:
            assert f"customer-ratings {command}" in readme, command
    assert "../shared/SPEC.md" not in readme, "the README's links work in a plain clone"
    assert "docs/spec-summary.md" in readme


def test_the_example_sources_file_shows_every_key_and_loads() -> None:
    from customer_ratings.config import _SOURCE_KEYS, load_config

    text = (REPO / "examples" / "sources.toml").read_text()
    for key in sorted(_SOURCE_KEYS | {"follow_symlinks"}):
        assert re.search(rf"^#?\s*{key} = ", text, re.MULTILINE) or f"#   {key} " in text, key
    assert "{date:%Y%m%d}" in text
    assert [s.name for s in load_config(REPO / "examples" / "sources.toml").sources] == [
        "agency_a", "agency_b", "agency_c", "agency_d"]


def test_json_mode_keeps_stdout_to_one_document_and_errors_on_stderr(cli_env: str, tmp_path: Path) -> None:
    import json

    data = sample_data(tmp_path / "data")
    (data / "Customer Rating Agency A Inc.csv").write_text("customer_number,customer_rating\n1,2\n")
    done = cli("run", "--data-dir", str(data), "--output-dir", str(tmp_path / "out"), "--date", DAY,
               "--format", "json", "-q")
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document["exit_code"] == 1 and document["report"].endswith("Customer_Rating_Aggregate_Report_20250513.csv")
    rejected = document["results"][0]
    assert (rejected["source"], rejected["status"], rejected["rows_loaded"]) == ("agency_a", "rejected", 0)
    assert "header missing column(s)" in rejected["error"]
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        f"error: agency_a: {rejected['error']}"]
    status = json.loads(cli("status", "--date", DAY, "--format", "json").stdout)
    assert status[0]["stale"] is True and status[0]["stale_reason"].startswith("file for 2025-05-13 rejected (")


# --- parallel streams ---

def test_a_bad_streams_setting_is_a_usage_error_before_anything_is_touched(cli_env: str, tmp_path: Path) -> None:
    data = sample_data(tmp_path / "data")
    env = {"CUSTOMER_RATINGS_STREAMS": "many"}
    done = cli("load", "--data-dir", str(data), "--date", DAY, "-q", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "CUSTOMER_RATINGS_STREAMS='many'" in done.stderr
    assert count_loads(cli_env) == 0, "nothing was loaded"
    zero = cli("load", "--data-dir", str(data), "--date", DAY, "-q", "--streams", "0")
    assert zero.returncode == 2 and "--streams" in zero.stderr
    ok = cli("load", "--data-dir", str(data), "--date", DAY, "-q", "--streams", "3")
    assert ok.returncode == 0, ok.stderr
