"""Data folder + sources -> the day's file per agency, the files no source claims, and conflicts."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .errors import ConfigError


@dataclass(frozen=True)
class Discovery:
    """What a data folder holds for the configured sources."""

    selected: dict[str, Path]
    """Source name -> the day's file (the last matching name)."""
    superseded: dict[str, list[Path]] = field(default_factory=dict)
    """Source name -> older matching files that were not loaded."""
    unmatched: list[Path] = field(default_factory=list)
    """Files that match no source; left alone."""


def discover(config: Config, data_dir: Path | str) -> Discovery:
    """Match the files in ``data_dir`` (not its sub-folders) against every source's ``file_pattern``.

    Patterns are shell-style globs matched case-sensitively. When several files match one source, the last
    by name is the day's file. A file that matches two sources is a ConfigError.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"data folder {data_dir} does not exist or is not a folder: check --data-dir")
    try:
        entries = {entry.name: _is_dir(entry) for entry in os.scandir(data_dir)}
    except OSError as exc:
        raise ConfigError(f"data folder {data_dir} cannot be listed: {exc}") from None
    matches: dict[str, list[str]] = {src.name: [] for src in config.sources}
    unmatched: list[Path] = []
    conflicts: list[str] = []
    for name in sorted(entries):
        owners = [src.name for src in config.sources if fnmatch.fnmatchcase(name, src.file_pattern)]
        if len(owners) > 1:
            conflicts.append(f"file {name!r} in {data_dir} matches sources {', '.join(owners)}: "
                             "make their file_pattern values exclusive")
        elif owners:
            matches[owners[0]].append(name)
        elif not entries[name]:  # a folder that matches no pattern is just a folder
            unmatched.append(data_dir / name)
    if conflicts:
        raise ConfigError(conflicts)
    selected = {src: data_dir / files[-1] for src, files in matches.items() if files}
    superseded = {src: [data_dir / f for f in files[:-1]] for src, files in matches.items() if len(files) > 1}
    return Discovery(selected=selected, superseded=superseded, unmatched=unmatched)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """Whether an entry is a folder; a broken link or a link loop is not (its load will say what it is)."""
    try:
        return entry.is_dir()
    except OSError:
        return False
