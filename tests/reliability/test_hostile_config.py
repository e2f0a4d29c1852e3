"""Hostile sources files: every one must stop the command with exit 2 and an ``error:`` line naming the problem,
before anything touches the database (the database named in the URL is not even created)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from . import _db
from ._agency import BASELINE_ROWS, Agency
from ._cli import assert_no_traceback, cli_env, run_cli

GOOD = '[[sources]]\nname = "agency_a"\ntable = "customer_rating_agency_a"\nfile_pattern = "A*.csv"\n'


def _src(name: str = "agency_a", table: str = "customer_rating_agency_a", pattern: str = "A*.csv",
         extra: str = "") -> str:
    return f'[[sources]]\nname = "{name}"\ntable = "{table}"\nfile_pattern = "{pattern}"\n{extra}\n'


CASES: list[tuple[str, str, list[str]]] = [
    ("table_sql_injection", _src(table="x; DROP TABLE customer_rating; --"), ["not a valid table name"]),
    ("table_quote_injection", '[[sources]]\nname = "agency_a"\ntable = \'a"; DROP TABLE load_history; --\'\n'
                              'file_pattern = "A*.csv"\n', ["not a valid table name"]),
    ("table_schema_qualified", _src(table="pg_catalog.pg_class"), ["not a valid table name"]),
    ("table_uppercase", _src(table="Customer_Rating_A"), ["not a valid table name"]),
    ("table_too_long", _src(table="t" * 64), ["not a valid table name"]),
    ("table_reserved", _src(table="load_history"), ["reserved"]),
    ("table_consolidated", _src(table="customer_rating"), ["reserved"]),
    ("table_partition_name", _src(table="customer_rating__7"), ["reserved"]),
    ("name_sql_injection", '[[sources]]\nname = "a\'); DROP TABLE load_history; --"\ntable = "t_a"\n'
                           'file_pattern = "A*.csv"\n', ["name"]),
    ("duplicate_names", _src() + _src(table="customer_rating_agency_b", pattern="B*.csv"),
     ["name 'agency_a' is used by both"]),
    ("duplicate_tables", _src() + _src(name="agency_b", pattern="B*.csv"),
     ["table 'customer_rating_agency_a' is used by both"]),
    ("invalid_toml", GOOD + "[[sources]\nname = \n", ["invalid TOML"]),
    ("not_utf8", GOOD.replace("agency_a", "agenc\xe9_a"), ["cannot be read"]),
    ("empty", "", ["no [[sources]]"]),
    ("sources_not_a_list", "sources = 5\n", ["no [[sources]]"]),
    ("every_field_wrong", _src(extra='encoding = "klingon"\nmin_rows = "5"\nmax_invalid_percent = 200\n'
                                     'allowed_status = []\nextra_columns = "maybe"\ntabel = "x"'),
     ["encoding 'klingon'", "min_rows", "max_invalid_percent", "allowed_status", "extra_columns", "'tabel'"]),
    ("pattern_with_path", _src(pattern="../*.csv"), ["must match file names"]),
    ("missing_required_keys", "[[sources]]\nname = \"agency_a\"\n", ["table is required", "file_pattern is required"]),
]


@pytest.fixture
def absent_url(server_url: str) -> Iterator[str]:
    """A database URL whose database does not exist; fails the test if something created it."""
    name = f"crrel_absent_{uuid.uuid4().hex[:10]}"
    yield _db.url_for(server_url, name)
    with psycopg.connect(_db.url_for(server_url, "postgres"), autocommit=True) as conn:
        created = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    assert created is None, "a config error must stop the command before it touches the database"


def _run(args: list[str], url: str, tmp_path: Path) -> tuple[list[str], object]:
    run = run_cli(args, cli_env(url, tmp_path / "home"), timeout=60)
    assert_no_traceback(run)
    assert run.returncode == 2, str(run)
    assert run.error_lines, str(run)
    return run.error_lines, run


# Every case through `run`; a few through `load` and `init` too (they share the config validation).
PARAMS = [("run", *c) for c in CASES] + [
    (command, *c) for command in ("load", "init") for c in CASES
    if c[0] in ("table_sql_injection", "duplicate_names", "invalid_toml")]


@pytest.mark.parametrize(("command", "case", "text", "words"), PARAMS, ids=[f"{p[0]}-{p[1]}" for p in PARAMS])
def test_hostile_config_exits_2_naming_the_problem(absent_url: str, tmp_path: Path, case: str, text: str,
                                                   words: list[str], command: str) -> None:
    config = tmp_path / "sources.toml"
    config.write_bytes(text.encode("latin-1") if case == "not_utf8" else text.encode())
    data = tmp_path / "data"
    data.mkdir()
    (data / "A1.csv").write_text("customer_number,customer_rating,customer_rating_limit,customer_status\n")
    args = {"run": ["run", "--data-dir", str(data), "--output-dir", str(tmp_path / "out")],
            "load": ["load", "--data-dir", str(data)], "init": ["init"]}[command]
    errors, run = _run([*args, "--config", str(config), "--quiet"] if command != "init"
                       else [*args, "--config", str(config)], absent_url, tmp_path)
    text_out = "\n".join(errors)
    for word in words:
        assert word in text_out, f"the error must say {word!r}:\n{run}"
    assert all(str(config) in e for e in errors), f"every error line names the config file:\n{run}"
    assert not (tmp_path / "out").exists()


def test_missing_config_file(absent_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    missing = tmp_path / "nope.toml"
    errors, run = _run(["run", "--data-dir", str(data), "--output-dir", str(tmp_path / "out"), "--config",
                        str(missing)], absent_url, tmp_path)
    assert len(errors) == 1 and str(missing) in errors[0] and "does not exist" in errors[0], str(run)


def test_config_that_is_a_directory(absent_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    errors, run = _run(["load", "--data-dir", str(data), "--config", str(data)], absent_url, tmp_path)
    assert len(errors) == 1 and str(data) in errors[0], str(run)


def test_two_sources_matching_one_file(absent_url: str, tmp_path: Path) -> None:
    config = tmp_path / "sources.toml"
    config.write_text(_src() + _src(name="agency_b", table="customer_rating_agency_b", pattern="*.csv"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "A1.csv").write_text("customer_number,customer_rating,customer_rating_limit,customer_status\n")
    (data / "B1.csv").write_text("customer_number,customer_rating,customer_rating_limit,customer_status\n")
    errors, run = _run(["run", "--data-dir", str(data), "--output-dir", str(tmp_path / "out"), "--config",
                        str(config)], absent_url, tmp_path)
    assert len(errors) == 1 and "'A1.csv'" in errors[0] and "agency_a, agency_b" in errors[0], str(run)


@pytest.mark.parametrize("args", [["--date", "2025-13-45"], ["--date", "yesterday"]])
def test_bad_date_is_a_usage_error(absent_url: str, tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    errors, run = _run(["run", "--data-dir", str(data), "--output-dir", str(tmp_path / "out"), *args],
                       absent_url, tmp_path)
    assert len(errors) == 1 and args[1] in errors[0], str(run)


def test_missing_data_dir_is_a_usage_error(absent_url: str, tmp_path: Path) -> None:
    errors, run = _run(["load", "--data-dir", str(tmp_path / "nowhere")], absent_url, tmp_path)
    assert len(errors) == 1 and "nowhere" in errors[0], str(run)


def test_injection_attempt_leaves_an_existing_database_intact(database_url: str, tmp_path: Path) -> None:
    agency = Agency(database_url, tmp_path / "a")
    agency.load_baseline()
    config = tmp_path / "evil.toml"
    config.write_text(_src(table="x; DROP TABLE customer_rating; --") + _src(name="b", table="t_b",
                                                                           pattern="B*.csv"))
    _run(["run", "--data-dir", str(agency.data), "--output-dir", str(tmp_path / "out"), "--config", str(config)],
         database_url, tmp_path)
    assert agency.rows() == BASELINE_ROWS
    assert agency.consolidated() == (BASELINE_ROWS, {agency.baseline_id})
    with _db.connect(database_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert "t_b" not in tables, "nothing of a bad config is applied, not even its valid sources"
