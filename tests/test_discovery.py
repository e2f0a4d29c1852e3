"""Patterns -> the day's file per agency, unmatched files, conflicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from customer_ratings import ConfigError, discover, load_config
from customer_ratings.config import parse_config


def _paths(value: Any) -> Any:
    """Discovery's entries as their local paths (dicts and lists kept), to compare with expected paths."""
    if isinstance(value, dict):
        return {k: _paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_paths(v) for v in value]
    return value.path


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_text("x")


def test_last_file_by_name_is_the_days_file_and_others_are_listed(tmp_path: Path) -> None:
    _touch(tmp_path, "Customer Rating Agency A Inc_20250512.csv", "Customer Rating Agency A Inc_20250513.csv",
           "Customer Rating Agency B Inc.csv", "notes.txt", "customer rating agency c inc.csv")
    found = discover(load_config(None), tmp_path)
    assert _paths(found.selected) == {
        "agency_a": tmp_path / "Customer Rating Agency A Inc_20250513.csv",
        "agency_b": tmp_path / "Customer Rating Agency B Inc.csv",
    }
    assert _paths(found.superseded) == {"agency_a": [tmp_path / "Customer Rating Agency A Inc_20250512.csv"]}
    # patterns are case-sensitive: the lowercase file belongs to nobody
    assert _paths(found.unmatched) == [tmp_path / "customer rating agency c inc.csv", tmp_path / "notes.txt"]


def test_a_file_matching_two_sources_is_a_config_error(tmp_path: Path) -> None:
    _touch(tmp_path, "agency.csv")
    config = parse_config(
        '[[sources]]\nname="a"\ntable="ta"\nfile_pattern="agency*"\n'
        '[[sources]]\nname="b"\ntable="tb"\nfile_pattern="*.csv"\n',
        None,
    )
    with pytest.raises(ConfigError, match="matches sources a, b"):
        discover(config, tmp_path)


def test_missing_data_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        discover(load_config(None), tmp_path / "nope")
