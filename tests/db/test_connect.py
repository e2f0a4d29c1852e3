"""Settings from the environment, and the bounded, announced-once retry of a first connection."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from customer_ratings import Settings
from customer_ratings.errors import ConfigError

from ._helpers import clean_env, cli, said


def test_settings_defaults_and_environment(tmp_path: Path) -> None:
    s = Settings.from_env(environ={"HOME": str(tmp_path)})
    assert (s.home, s.connect_timeout, s.schema, s.database_url) == (
        tmp_path / ".local/share/customer-ratings", 30.0, "public", None)
    s = Settings.from_env(environ={"HOME": str(tmp_path), "XDG_DATA_HOME": "/data/x", "CUSTOMER_RATINGS_SCHEMA":
                                   "ratings", "CUSTOMER_RATINGS_CONNECT_TIMEOUT": "2.5"})
    assert (s.home, s.connect_timeout, s.schema) == (Path("/data/x/customer-ratings"), 2.5, "ratings")
    relative = Settings.from_env(environ={"HOME": str(tmp_path), "XDG_DATA_HOME": "relative/dir"})
    assert relative.home == tmp_path / ".local/share/customer-ratings", "a relative XDG_DATA_HOME is ignored"
    with pytest.raises(ConfigError) as bad:
        Settings.from_env(environ={"CUSTOMER_RATINGS_CONNECT_TIMEOUT": "soon", "CUSTOMER_RATINGS_SCHEMA": "a;b"})
    assert len(bad.value.problems) == 2
    hidden = Settings(database_url="postgresql://u:Very-Secret@h/d")
    assert "Very-Secret" not in repr(hidden) and "Very-Secret" not in str(hidden)


def test_an_unreachable_server_is_retried_until_the_timeout_with_one_warning(tmp_path: Path) -> None:
    env = clean_env(tmp_path, CUSTOMER_RATINGS_DATABASE_URL="postgresql://nobody@127.0.0.1:1/",
                    CUSTOMER_RATINGS_CONNECT_TIMEOUT="4")
    started = time.monotonic()
    done = cli(["init"], env, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 1, said(done)
    warnings = [line for line in done.stderr.splitlines() if "retrying until" in line]
    assert len(warnings) == 1 and "CUSTOMER_RATINGS_CONNECT_TIMEOUT=4" in warnings[0], said(done)
    assert 4 <= took < 30, took
    assert next(line for line in done.stderr.splitlines() if line.startswith("error: ")).startswith(
        "error: cannot connect to the database postgresql://nobody@127.0.0.1:1/CustomerRatingData after 4 s")


def test_a_bad_setting_is_exit_2_before_any_connection(tmp_path: Path) -> None:
    env = clean_env(tmp_path, CUSTOMER_RATINGS_CONNECT_TIMEOUT="-1")
    done = cli(["init"], env, timeout=60)
    assert done.returncode == 2 and "CUSTOMER_RATINGS_CONNECT_TIMEOUT" in done.stderr, said(done)
    assert not (tmp_path / "home").exists(), "nothing was touched"


def test_a_home_that_cannot_be_created_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    env = clean_env(tmp_path, CUSTOMER_RATINGS_HOME=str(tmp_path / "a-file" / "home"))
    done = cli(["init"], env, timeout=60)
    assert done.returncode == 2 and "CUSTOMER_RATINGS_HOME" in done.stderr, said(done)
    assert "Traceback" not in done.stderr, said(done)
