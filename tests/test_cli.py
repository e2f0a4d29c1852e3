"""The command line as users and the acceptance tests call it: help, exit codes, one-line errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, SEED_SAMPLE, copy_fixture

GOLDEN = Path(__file__).parent / "golden"
COMMANDS = ("init", "load", "report", "run", "status", "history", "invalid", "psql")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed command line in a real subprocess."""
    full_env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", **(env or {})}
    return subprocess.run([sys.executable, "-m", "customer_ratings", *args], capture_output=True, text=True,
                          env=full_env, timeout=300, check=False)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_matches_golden_file(command: str | None) -> None:
    args = [command, "--help"] if command else ["--help"]
    out = cli(*args)
    assert out.returncode == 0
    golden = GOLDEN / f"help_{command or 'main'}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(out.stdout)
    assert out.stdout == golden.read_text(), f"update with UPDATE_GOLDEN=1 if the change is intended: {golden}"


def test_every_command_and_option_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for command in COMMANDS:
        assert f"customer-ratings {command}" in readme, command
        options = set(re.findall(r"--[a-z-]+", (GOLDEN / f"help_{command}.txt").read_text())) - {"--help"}
        for option in sorted(options):
            assert option in readme, f"{command} {option}"


def test_bad_usage_and_bad_config_exit_2_with_one_line(tmp_path: Path) -> None:
    missing = cli("load")
    assert missing.returncode == 2 and "Missing option '--data-dir'" in missing.stderr
    no_dir = cli("load", "--data-dir", str(tmp_path / "nope"))
    assert no_dir.returncode == 2
    assert no_dir.stderr.strip().splitlines() == [
        f"error: data folder {tmp_path / 'nope'} does not exist or is not a folder: check --data-dir"]
    bad_date = cli("report", "--output-dir", str(tmp_path), "--date", "13/05/2025")
    assert bad_date.returncode == 2 and "Traceback" not in bad_date.stderr
    config = tmp_path / "sources.toml"
    config.write_text('[[sources]]\nname = "a"\ntable = "a; drop table x"\nfile_pattern = "*.csv"\n')
    bad_config = cli("load", "--data-dir", str(tmp_path), "--config", str(config))
    assert bad_config.returncode == 2
    assert "is not a valid table name" in bad_config.stderr and "Traceback" not in bad_config.stderr


def test_run_end_to_end_exit_codes(cli_env: str, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    copy_fixture("valid_crlf", data, "Customer Rating Agency A Inc.csv")
    copy_fixture("not_an_integer", data, "Customer Rating Agency B Inc.csv")
    (data / "readme.txt").write_text("not a data file")
    # Only agencies A and B: a configured agency without a file is `missing` (exit 1).
    config = tmp_path / "sources.toml"
    config.write_text("".join(
        f'[[sources]]\nname = "agency_{x}"\ntable = "customer_rating_agency_{x}"\n'
        f'file_pattern = "Customer Rating Agency {x.upper()} Inc*.csv"\n' for x in "ab"))
    cfg = ("--config", str(config))
    ok = cli("run", "--data-dir", str(data), "--output-dir", str(out), "--date", "2025-05-13", "--quiet", *cfg)
    assert ok.returncode == 0, ok.stderr
    assert "unmatched files (left alone, 1): readme.txt" in ok.stdout
    assert "unchanged" not in ok.stdout
    report = (out / "Customer_Rating_Aggregate_Report_20250513.csv").read_text().splitlines()
    assert report[1:] == ["agency_a,3,60,1,0,0.00", "agency_b,1,10,1,5,83.33"]
    again = cli("load", "--data-dir", str(data), "--quiet", "--date", "2025-05-13", *cfg)
    assert again.returncode == 0 and again.stdout.count("unchanged") == 2
    copy_fixture("missing_column", data, "Customer Rating Agency A Inc_2.csv")
    rejected = cli("run", "--data-dir", str(data), "--output-dir", str(out), "--date", "2025-05-14", *cfg)
    assert rejected.returncode == 1
    errors = [line for line in rejected.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: agency_a: Customer Rating Agency A Inc_2.csv (line 1): header missing column(s) "
        "customer_rating_limit; expected customer_number, customer_rating, customer_rating_limit, customer_status"
    ]
    # the report still comes out, from the data agency_a kept
    report = (out / "Customer_Rating_Aggregate_Report_20250514.csv").read_text().splitlines()
    assert report[1] == "agency_a,3,60,1,0,0.00"


def test_init_creates_agency_tables_and_report_needs_no_config(cli_env: str, tmp_path: Path) -> None:
    assert cli("init").returncode == 0
    import psycopg

    with psycopg.connect(cli_env) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}
        columns = conn.execute(
            """SELECT column_name, data_type, character_maximum_length FROM information_schema.columns
               WHERE table_name = 'customer_rating_agency_a' ORDER BY ordinal_position""").fetchall()
    assert {f"customer_rating_agency_{x}" for x in "abcd"} <= tables
    assert {"customer_rating", "file_invalid_rows", "load_history"} <= tables
    assert columns == [("customer_number", "integer", None), ("customer_rating", "integer", None),
                       ("customer_rating_limit", "integer", None),
                       ("customer_status", "character varying", 25)]
    out = cli("report", "--output-dir", str(tmp_path))
    assert out.returncode == 0
    assert len(list(tmp_path.glob("Customer_Rating_Aggregate_Report_*.csv"))) == 1


def test_embedded_server_is_default_and_stops_afterwards(tmp_path: Path) -> None:
    env = {"CUSTOMER_RATINGS_HOME": str(tmp_path / "home"), "CUSTOMER_RATINGS_DATABASE_URL": ""}
    data = tmp_path / "data"
    data.mkdir()
    for f in SEED_SAMPLE.glob("Customer Rating Agency *.csv"):
        shutil.copy(f, data / f.name)
    out = cli("run", "--data-dir", str(data), "--output-dir", str(tmp_path / "out"), "--date", "2025-05-13",
              "--quiet", env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out" / "Customer_Rating_Aggregate_Report_20250513.csv").read_bytes() == (
        SEED_SAMPLE / "Customer_Rating_Aggregate_Report_20250513.csv").read_bytes()
    assert not (tmp_path / "home" / "pgdata" / "postmaster.pid").exists(), "the server is stopped at exit"


@pytest.mark.parametrize("preset", [None, "4"])
def test_importing_the_package_leaves_the_blas_setting_as_it_was(preset: str | None) -> None:
    """numpy is imported with a single OpenBLAS thread (no spinning workers), and the environment is restored."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    code = "import os, customer_ratings; print(os.environ.get('OPENBLAS_NUM_THREADS'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(preset)
