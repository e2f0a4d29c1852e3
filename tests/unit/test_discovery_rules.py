"""Discovery without a database: matching at scale (one pass over the names), date patterns, and the
agreement of the indexed matcher with fnmatch."""

from __future__ import annotations

import fnmatch
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from customer_ratings import ConfigError
from customer_ratings.config import Config, Source, parse_config
from customer_ratings.discovery import discover, match_names, names_summary


def _paths(value: Any) -> Any:
    """Discovery's entries as their local paths (dicts and lists kept), to compare with expected paths."""
    if isinstance(value, dict):
        return {k: _paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_paths(v) for v in value]
    return value.path


DATA = Path("/data")
DAY = date(2025, 5, 13)


def _config(*patterns: str) -> Config:
    return Config(tuple(Source(f"s{i}", f"t{i}", p) for i, p in enumerate(patterns)))


# -- at scale ---------------------------------------------------------------------------------------------

def _scale_case() -> tuple[Config, list[str], dict[str, str], dict[str, list[str]], dict[str, list[str]], set[str]]:
    """2,000 sources of four kinds x 11 names each (10 matching + 1 noise) = 22,000 names."""
    sources, names = [], []
    selected: dict[str, str] = {}
    superseded: dict[str, list[str]] = {}
    other_days: dict[str, list[str]] = {}
    missing: set[str] = set()
    for i in range(2000):
        name = f"agency_{i:04d}"
        kind = i % 4
        if kind == 0:
            pattern = f"Customer Rating Agency {i:04d} Inc*.csv"
            files = [f"Customer Rating Agency {i:04d} Inc_202505{d:02d}.csv" for d in range(1, 11)]
        elif kind == 1:
            pattern = f"Customer Rating Agency {i:04d} Inc_{{date:%Y%m%d}}.csv"
            files = [f"Customer Rating Agency {i:04d} Inc_{(DAY - timedelta(days=k)):%Y%m%d}.csv" for k in range(10)]
        elif kind == 2:
            pattern = f"rating_[0-9]_{i:04d}_?.txt"
            files = [f"rating_{k}_{i:04d}_x.txt" for k in range(10)]
        else:
            pattern = f"*_{i:04d}.dat"
            files = [f"file{k:02d}_{i:04d}.dat" for k in range(10)]
        sources.append(Source(name, f"t_{i:04d}", pattern))
        if i % 100 == 99:  # no file for these: 11 noise names instead
            names += [f"noise_{i}_{k}.bin" for k in range(11)]
            missing.add(name)
            continue
        if kind == 1:
            names += files
            selected[name] = files[0]
            other_days[name] = sorted(files[1:])
        else:
            names += files
            selected[name] = max(files)
            superseded[name] = sorted(files)[:-1]
        # case-sensitive: the lowercase twin is noise
        names.append({0: files[0].lower(), 1: files[0].lower(), 2: f"Rating_0_{i:04d}_x.txt",
                      3: f"file00_{i:04d}.DAT"}[kind])
    random.Random(1).shuffle(names)
    return Config(tuple(sources)), names, selected, superseded, other_days, missing


def test_2000_sources_and_22000_names_in_one_pass() -> None:
    config, names, selected, superseded, other_days, missing = _scale_case()
    assert len(names) == 22_000
    found = match_names(config, names, DATA, DAY)
    assert _paths(found.selected) == {s: DATA / f for s, f in selected.items()}
    assert _paths(found.superseded) == {s: [DATA / f for f in fs] for s, fs in superseded.items()}
    assert _paths(found.other_days) == {s: [DATA / f for f in fs] for s, fs in other_days.items()}
    assert set(found.missing) == missing
    claimed = {f for f in selected.values()} | {f for fs in superseded.values() for f in fs} | {
        f for fs in other_days.values() for f in fs}
    assert _paths(found.unmatched) == [DATA / n for n in sorted(set(names) - claimed)]
    assert len(found.unmatched) == 22_000 - len(claimed)


def _random_pattern(rng: random.Random) -> str:
    pieces = ["a", "b", "ab", "x_", ".csv", "*", "?", "[ab]", "[!a]", "[0-9]", "A", "-"]
    return "".join(rng.choice(pieces) for _ in range(rng.randint(1, 5)))


def test_the_indexed_matcher_agrees_with_fnmatch() -> None:
    rng = random.Random(7)
    for attempt in range(40):
        # many patterns share a prefix and a suffix: their groups are looked up by fixed places or alternation
        count = rng.randint(1, 12) if attempt % 2 else rng.randint(20, 60)
        patterns = list(dict.fromkeys(_random_pattern(rng) for _ in range(count)))
        config = _config(*patterns)
        names = list({"".join(rng.choice("abAx_.csv-019") for _ in range(rng.randint(1, 8))) for _ in range(300)}
                     - {".", ".."})
        owners = {n: [f"s{i}" for i, p in enumerate(patterns) if fnmatch.fnmatchcase(n, p)] for n in names}
        if any(len(o) > 1 for o in owners.values()):
            with pytest.raises(ConfigError, match="matches sources"):
                match_names(config, names, DATA)
            names = [n for n in names if len(owners[n]) <= 1]
        found = match_names(config, names, DATA)
        for i in range(len(patterns)):
            mine = sorted(n for n in names if owners[n] == [f"s{i}"])
            got = ([found.selected[f"s{i}"].name] if f"s{i}" in found.selected else []) + [
                p.name for p in found.superseded.get(f"s{i}", [])]
            assert sorted(got) == mine, patterns[i]
        assert [p.name for p in found.unmatched] == sorted(n for n in names if not owners[n])


def test_unmatched_summary_is_a_count_and_the_first_names_escaped() -> None:
    assert names_summary([f"f{i}" for i in range(2000)]) == "2,000 file(s): f0, f1, f2, f3, f4 (and 1,995 more)"
    assert names_summary(["a\nb\x1b[2J.csv"]) == "1 file(s): a\\nb\\x1b[2J.csv"
    found = match_names(_config("x*"), ["x1", "n\n1", "n2"], DATA)
    assert found.unmatched_summary(1) == "2 file(s): n\\n1 (and 1 more)"


# -- date patterns --------------------------------------------------------------------------------------------

def test_a_dated_pattern_takes_only_the_file_of_the_day() -> None:
    config = _config("Customer Rating Agency A Inc_{date:%Y%m%d}.csv", "B_*.csv")
    names = ["Customer Rating Agency A Inc_20250512.csv", "Customer Rating Agency A Inc_20250513.csv",
             "Customer Rating Agency A Inc_20250514.csv", "Customer Rating Agency A Inc_notes.csv", "B_1.csv"]
    found = match_names(config, names, DATA, DAY)
    assert _paths(found.selected) == {"s0": DATA / names[1], "s1": DATA / "B_1.csv"}
    assert _paths(found.superseded) == {}
    assert _paths(found.other_days) == {"s0": [DATA / names[0], DATA / names[2]]}
    # a name that only looks like the pattern is not a day's file: it is unmatched
    assert _paths(found.unmatched) == [DATA / "Customer Rating Agency A Inc_notes.csv"]
    assert found.missing == [] and found.day == DAY


def test_a_dated_source_without_the_days_file_is_missing() -> None:
    found = match_names(_config("A_{date:%Y-%m-%d}.csv"), ["A_2025-05-12.csv"], DATA, DAY)
    assert _paths(found.selected) == {} and found.missing == ["s0"]
    assert _paths(found.other_days) == {"s0": [DATA / "A_2025-05-12.csv"]} and _paths(found.unmatched) == []


def test_several_files_of_the_day_the_last_by_name_wins() -> None:
    found = match_names(_config("A_{date:%Y%m%d}*.csv"), ["A_20250513.csv", "A_20250513_v2.csv"], DATA, DAY)
    assert _paths(found.selected) == {"s0": DATA / "A_20250513_v2.csv"}
    assert _paths(found.superseded) == {"s0": [DATA / "A_20250513.csv"]}


def test_the_formatted_date_is_glob_escaped_and_braces_can_be_literal() -> None:
    found = match_names(_config("A{{x}}_{date:[%Y]}.csv"), ["A{x}_[2025].csv", "A{x}_2.csv"], DATA, DAY)
    assert _paths(found.selected) == {"s0": DATA / "A{x}_[2025].csv"}
    assert _paths(found.unmatched) == [DATA / "A{x}_2.csv"]


def test_no_day_means_today(tmp_path: Path) -> None:
    today = date.today()
    (tmp_path / f"A_{today:%Y%m%d}.csv").write_text("x")
    (tmp_path / "A_19990101.csv").write_text("x")
    found = discover(_config("A_{date:%Y%m%d}.csv"), tmp_path)
    assert _paths(found.selected) == {"s0": tmp_path / f"A_{today:%Y%m%d}.csv"} and found.day == today
    assert discover(_config("A_*.csv"), tmp_path).day is None


def test_a_dated_pattern_matching_another_source_on_the_day_is_a_conflict() -> None:
    with pytest.raises(ConfigError, match="matches sources s0, s1"):
        match_names(_config("A_{date:%Y%m%d}.csv", "A_*.csv"), ["A_20250513.csv"], DATA, DAY)


@pytest.mark.parametrize(("pattern", "words"), [
    ("A_{dat:%Y}.csv", "unknown placeholder {dat:%Y}"),
    ("A_{}.csv", "unknown placeholder {}"),
    ("A_{date:%Y.csv", "unbalanced '{'"),
    ("A_%Y}.csv", "unbalanced '}'"),
    ("A_{date:%Q}.csv", "unknown strftime directive '%Q'"),
    ("A_{date:Y}.csv", "without a strftime directive"),
    ("A_{date:{%Y}}.csv", "unbalanced '{'"),
])
def test_bad_date_patterns_are_config_errors_naming_the_source_and_the_key(pattern: str, words: str) -> None:
    text = f'[[sources]]\nname = "agency_a"\ntable = "t_a"\nfile_pattern = "{pattern}"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, None)
    (problem,) = info.value.problems
    assert "(agency_a)" in problem and "file_pattern" in problem and words in problem, problem


def test_follow_symlinks_is_validated() -> None:
    base = '[[sources]]\nname = "a"\ntable = "t_a"\nfile_pattern = "*"\n'
    assert parse_config(base, None).sources[0].follow_symlinks is False
    assert parse_config(base + "follow_symlinks = true\n", None).sources[0].follow_symlinks is True
    with pytest.raises(ConfigError, match="follow_symlinks must be true or false"):
        parse_config(base + 'follow_symlinks = "yes"\n', None)


def test_many_patterns_with_the_same_prefix_and_suffix_agree_with_fnmatch() -> None:
    """Patterns that differ only after a '*' are tried as one alternation; overlaps are still conflicts."""
    patterns = [f"A*_k{i}_*.csv" for i in range(20)]
    names = [f"A{j}_k{i}_{j}.csv" for i in range(20) for j in range(3)] + ["A_k3_.csv", "A_k99_.csv", "B_k1_.csv"]
    found = match_names(_config(*patterns), names, DATA)
    for i, pattern in enumerate(patterns):
        mine = sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))
        got = sorted([found.selected[f"s{i}"].name, *[p.name for p in found.superseded.get(f"s{i}", [])]])
        assert got == mine
    assert [p.name for p in found.unmatched] == ["A_k99_.csv", "B_k1_.csv"]
    with pytest.raises(ConfigError, match=r"'A_k1_k12_\.csv' .* matches sources s1, s12"):
        match_names(_config(*patterns), ["A_k1_k12_.csv"], DATA)
