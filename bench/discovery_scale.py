"""Discovery at scale (issue 9.10): 2,000 sources x 22,000 file names, in memory.

Times ``discovery.match_names`` (patterns indexed by literal prefix and suffix) against the naive loop it
replaced (every name against every pattern with fnmatch), in the same process, and checks they agree.

    .venv/bin/python bench/discovery_scale.py [--sources 2000] [--files-per-source 11]
"""

from __future__ import annotations

import argparse
import fnmatch
import random
import time
from pathlib import Path

from customer_ratings.config import Config, Source
from customer_ratings.discovery import match_names

DATA = Path("/data")


def build(n_sources: int, per_source: int) -> tuple[Config, list[str]]:
    """Sources of three pattern shapes (prefix*, a class in the middle, a leading *), and their files."""
    sources, names = [], []
    for i in range(n_sources):
        kind = i % 3
        if kind == 0:
            pattern, files = f"Customer Rating Agency {i:04d} Inc*.csv", [
                f"Customer Rating Agency {i:04d} Inc_2025{k:04d}.csv" for k in range(per_source - 1)]
        elif kind == 1:
            pattern, files = f"rating_[0-9]_{i:04d}_?.txt", [f"rating_{k % 10}_{i:04d}_{k}.txt"[:-5] + "x.txt"
                                                              for k in range(per_source - 1)]
        else:
            pattern, files = f"*_{i:04d}.dat", [f"file{k:02d}_{i:04d}.dat" for k in range(per_source - 1)]
        sources.append(Source(f"agency_{i:04d}", f"t_{i:04d}", pattern))
        names += [*files, f"noise_{i}.bin"]
    random.Random(1).shuffle(names)
    return Config(tuple(sources)), names


def naive(config: Config, names: list[str]) -> dict[str, list[str]]:
    """The loop discovery used before: O(names x sources)."""
    matches: dict[str, list[str]] = {src.name: [] for src in config.sources}
    for name in sorted(names):
        owners = [src.name for src in config.sources if fnmatch.fnmatchcase(name, src.file_pattern)]
        if owners:
            matches[owners[0]].append(name)
    return matches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--files-per-source", type=int, default=11)
    args = parser.parse_args()
    config, names = build(args.sources, args.files_per_source)
    t0 = time.perf_counter()
    found = match_names(config, names, DATA)
    indexed = time.perf_counter() - t0
    t0 = time.perf_counter()
    expected = naive(config, names)
    slow = time.perf_counter() - t0
    got = {src.name: sorted([p.name for p in found.superseded.get(src.name, [])]
                            + ([found.selected[src.name].name] if src.name in found.selected else []))
           for src in config.sources}
    assert got == {k: sorted(v) for k, v in expected.items()}, "the indexed matcher and the naive loop disagree"
    print(f"{len(config.sources):,} sources x {len(names):,} names: indexed {indexed:.3f} s, naive {slow:.3f} s "
          f"({slow / indexed:.0f}x); {len(found.selected):,} selected, {len(found.unmatched):,} unmatched")


if __name__ == "__main__":
    main()
