"""The sources file: typed, validated at start-up, every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from customer_ratings import ConfigError, Settings, load_config
from customer_ratings.config import parse_config


def test_default_config_lists_agencies_a_to_d() -> None:
    config = load_config(None)
    assert [(s.name, s.table, s.file_pattern) for s in config.sources] == [
        (f"agency_{x}", f"customer_rating_agency_{x}", f"Customer Rating Agency {x.upper()} Inc*.csv")
        for x in "abcd"
    ]


def test_every_problem_is_reported_at_once() -> None:
    text = """
[[sources]]
name = "a"
table = "x; DROP TABLE customer_rating; --"
file_pattern = "a*.csv"
colour = "red"

[[sources]]
name = "a"
table = "load_history"
file_pattern = "b*.csv"
extra_columns = "maybe"
max_invalid_percent = 101
encoding = "klingon"
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, Path("sources.toml"))
    problems = "\n".join(err.value.problems)
    assert "unknown key 'colour'" in problems
    assert "is not a valid table name" in problems
    assert "reserved" in problems
    assert 'extra_columns must be "reject" or "ignore"' in problems
    assert "max_invalid_percent" in problems
    assert "encoding 'klingon'" in problems
    assert err.value.exit_code == 2


def test_duplicate_names_and_tables() -> None:
    text = "\n".join(
        f'[[sources]]\nname = "{n}"\ntable = "{t}"\nfile_pattern = "{p}"'
        for n, t, p in [("a", "t1", "a*"), ("a", "t2", "b*"), ("b", "t1", "c*")]
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, None)
    assert err.value.problems == [
        "built-in config: name 'a' is used by both 'a' and 'a'",
        "built-in config: table 't1' is used by both 'a' and 'b'",
    ]


def test_missing_file_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[sources]\nname=")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_settings_from_environment(tmp_path: Path) -> None:
    env = {"CUSTOMER_RATINGS_DATABASE_URL": "postgresql://h/db", "CUSTOMER_RATINGS_HOME": str(tmp_path)}
    settings = Settings.from_env(environ=env)
    assert settings.database_url == "postgresql://h/db"
    assert settings.home == tmp_path
    assert Settings.from_env(environ={}).database_url is None
