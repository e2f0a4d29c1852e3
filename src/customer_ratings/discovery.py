"""Data folder + sources -> the day's file per agency, the files no source claims, and conflicts.

The data folder is any input location (a local folder or an ``s3://``/``gs://``/``az://`` prefix, see
:mod:`customer_ratings.inputs`), listed one level; what is found are its :class:`~customer_ratings.inputs.Entry`
values (with their size and ETag), matched by ``Entry.name``.

Matching is about O(files), not O(files x sources): each pattern becomes a regular expression filed under its
literal prefix (the text before its first wildcard), so a file name is tried only against the few patterns
whose prefix it starts with (plus those that start with a wildcard).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import quote_from_bytes

from .config import Config, DatePart, Source, split_pattern
from .days import local_today
from .display import safe
from .errors import ConfigError, LocationError
from .inputs import Entry, LocalFolder, Location, open_location

UNMATCHED_SHOWN = 5
"""How many unmatched file names a summary line shows (the rest as a count)."""


@dataclass(frozen=True)
class Discovery:
    """What a data folder holds for the configured sources: entries of its listing (``Entry.path`` is the
    file's path in a local folder; ``str(entry)`` the path or the object's URI)."""

    selected: dict[str, Entry]
    """Source name -> the day's file (the last matching name)."""
    superseded: dict[str, list[Entry]] = field(default_factory=dict)
    """Source name -> older matching files that were not loaded."""
    unmatched: list[Entry] = field(default_factory=list)
    """Files that match no source (all of them, sorted by name); left alone."""
    missing: list[str] = field(default_factory=list)
    """Configured sources with no file for the day, in config order."""
    other_days: dict[str, list[Entry]] = field(default_factory=dict)
    """Dated source (``{date:...}`` in its pattern) -> files of other days than ``day``; neither loaded nor
    unmatched."""
    day: date | None = None
    """The as-of date the dated patterns were resolved for."""
    location: Location | None = field(default=None, compare=False, repr=False)
    """The location that was listed (what opens the entries); None for :func:`match_names` on bare names."""

    def unmatched_summary(self, limit: int = UNMATCHED_SHOWN) -> str:
        """One line for the run's summary: the count and the first ``limit`` names, escaped (see
        :func:`names_summary`)."""
        return names_summary([p.name for p in self.unmatched], limit)


def names_summary(names: Sequence[str], limit: int = UNMATCHED_SHOWN) -> str:
    """``3 file(s): a.csv, b.csv, c.csv`` or ``2,000 file(s): a.csv, ... (and 1,995 more)``; names escaped."""
    shown = ", ".join(safe(n, 80) for n in names[:limit])
    more = f" (and {len(names) - limit:,} more)" if len(names) > limit else ""
    return f"{len(names):,} file(s): {shown}{more}"


def discover(config: Config, data_dir: Path | str, day: date | None = None) -> Discovery:
    """Match the files in ``data_dir`` (not its sub-folders or sub-prefixes) against every source's
    ``file_pattern``. ``data_dir`` is a local folder or an object-store URL (``s3://bucket/prefix/``).

    Patterns are shell-style globs matched case-sensitively. When several files match one source, the last
    by name is the day's file. A file that matches two sources is a ConfigError. A pattern with
    ``{date:<strftime>}`` matches only the file of ``day`` (default: today). A local folder that is missing or
    cannot be listed is a ConfigError; a bucket that cannot be listed a LocationError (LocationUnreachable when
    its endpoint did not answer).
    """
    location = open_location(data_dir)
    if isinstance(location, LocalFolder):
        folder = location.folder
        if not folder.is_dir():
            raise ConfigError(f"data folder {safe(str(folder))} does not exist or is not a folder: check --data-dir")
        try:
            entries = location.list()
        except LocationError as exc:
            raise ConfigError(safe(str(exc))) from None
    else:
        entries = location.list()
    return match_names(config, entries, location.uri, day, location=location)


def match_names(config: Config, entries: Iterable[Entry] | dict[str, bool] | Iterable[str], data_dir: Path | str,
                day: date | None = None, *, location: Location | None = None) -> Discovery:
    """The matching of :func:`discover` on a listing: its entries, or bare names (-> whether the entry is a
    folder), which become local entries under ``data_dir``."""
    listing = _by_name(entries, data_dir)
    if day is None and any(src.dated for src in config.sources):
        day = local_today()
    matcher = _Matcher(config.sources, day)
    matches: dict[str, list[str]] = {src.name: [] for src in config.sources}
    others: dict[str, list[str]] = {}
    unmatched: list[Entry] = []
    conflicts: list[str] = []
    for name in sorted(listing):
        owners, shapes = matcher.match(name)
        if len(owners) > 1:
            conflicts.append(f"file '{safe(name)}' in {safe(str(data_dir))} matches sources {', '.join(owners)}: "
                             "make their file_pattern values exclusive")
        elif owners:
            matches[owners[0]].append(name)
        elif shapes:
            for src in shapes:
                others.setdefault(src, []).append(name)
        elif not listing[name].is_dir:  # a folder that matches no pattern is just a folder
            unmatched.append(listing[name])
    if conflicts:
        raise ConfigError(conflicts)
    return Discovery(
        selected={src: listing[files[-1]] for src, files in matches.items() if files},
        superseded={src: [listing[f] for f in files[:-1]] for src, files in matches.items() if len(files) > 1},
        unmatched=unmatched,
        missing=[src for src, files in matches.items() if not files],
        other_days={src: [listing[f] for f in files] for src, files in others.items()},
        day=day,
        location=location,
    )


def _by_name(entries: Iterable[Entry] | dict[str, bool] | Iterable[str], data_dir: Path | str) -> dict[str, Entry]:
    """Name -> entry; bare names become local entries (path ``data_dir / name``, size unknown: 0)."""
    if isinstance(entries, dict):
        names: Iterable[tuple[str, bool]] = entries.items()
    else:
        items = list(entries)
        if all(isinstance(e, Entry) for e in items):
            return {e.name: e for e in items if isinstance(e, Entry)}
        names = ((str(n), False) for n in items)
    folder = Path(data_dir)
    base = folder.absolute().as_uri().rstrip("/") + "/"
    return {name: Entry(name, base + quote_from_bytes(os.fsencode(name)), 0, None, is_dir=is_dir,
                        path=folder / name) for name, is_dir in names}


class _Entry:
    """One pattern of one source: ``prefix`` + something + ``suffix``, checked by its regular expression
    (compiled on first use) or, for the common ``literal*literal`` and wildcard-free shapes, without one."""

    __slots__ = ("_regex", "exact", "glob", "prefix", "regex_text", "shape", "source", "star", "suffix")

    def __init__(self, source: str, regex_text: str, prefix: str, suffix: str, shape: bool, glob: str | None) -> None:
        self.source, self.regex_text, self.prefix, self.suffix, self.shape = source, regex_text, prefix, suffix, shape
        """``shape``: a dated pattern's any-day form (files of other days)."""
        self._regex: re.Pattern[str] | None = None
        self.glob = glob
        self.exact = glob is not None and _WILDCARDS.search(glob) is None
        self.star = glob is not None and glob.count("*") == 1 and prefix + "*" + suffix == glob

    def matches(self, name: str) -> bool:
        """Whether ``name`` matches (the caller has checked the prefix and the suffix)."""
        if self.exact:
            return len(name) == len(self.prefix)
        if self.star:
            return len(name) >= len(self.prefix) + len(self.suffix)
        if self._regex is None:
            self._regex = re.compile(self.regex_text, re.DOTALL)
        return self._regex.fullmatch(name) is not None


class _Leaf:
    """The patterns that share one literal prefix and one literal suffix.

    Those without ``*`` have a fixed length and literal characters at fixed places: they are filed by (length,
    those places) and looked up by the name's characters there. Many others (they differ only after a
    ``*``) are tried as one alternation, first to last and last to first: when both find the same pattern it
    is the only one that matches, otherwise those in between are tried one by one."""

    ALTERNATION_MIN = 8

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self._fixed: dict[tuple[int, tuple[int, ...]], dict[str, list[_Entry]]] | None = None
        self._others: list[_Entry] = []
        self._forward: re.Pattern[str] | None = None
        self._backward: re.Pattern[str] | None = None

    def _build(self) -> None:
        self._fixed = {}
        for entry in self.entries:
            glob = entry.glob
            shape = _fixed_shape(glob) if glob is not None else None
            if glob is None or shape is None:
                self._others.append(entry)
                continue
            literal = _fixed_literals(glob)
            assert literal is not None
            self._fixed.setdefault(shape, {}).setdefault(literal, []).append(entry)
        if len(self._others) >= self.ALTERNATION_MIN:
            groups = [f"(?P<e{i}>{e.regex_text})" for i, e in enumerate(self._others)]
            self._forward = re.compile("|".join(groups), re.DOTALL)
            self._backward = re.compile("|".join(reversed(groups)), re.DOTALL)

    def matching(self, name: str) -> list[_Entry]:
        if len(self.entries) < self.ALTERNATION_MIN:
            return [e for e in self.entries if e.matches(name)]
        if self._fixed is None:
            self._build()
            assert self._fixed is not None
        found: list[_Entry] = []
        for (length, places), by_literals in self._fixed.items():
            if length == len(name):
                found += [e for e in by_literals.get("".join([name[i] for i in places]), ()) if e.matches(name)]
        if self._forward is None or self._backward is None:
            return found + [e for e in self._others if e.matches(name)]
        first = self._forward.fullmatch(name)
        if first is None:
            return found
        last = self._backward.fullmatch(name)
        assert first.lastgroup is not None and last is not None and last.lastgroup is not None
        k, j = int(first.lastgroup[1:]), int(last.lastgroup[1:])
        if k == j:
            return [*found, self._others[k]]
        return found + [e for e in self._others[k:j + 1] if e.matches(name)]


def _glob_tokens(glob: str) -> list[str | None] | None:
    """A glob without ``*`` as one token per name character: the literal character, or None for ``?`` and a
    class; None for a glob with ``*``."""
    tokens: list[str | None] = []
    i, n = 0, len(glob)
    while i < n:
        ch = glob[i]
        i += 1
        if ch == "*":
            return None
        if ch == "?":
            tokens.append(None)
        elif ch == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                tokens.append("[")
            else:
                tokens.append(None)
                i = j + 1
        else:
            tokens.append(ch)
    return tokens


def _fixed_shape(glob: str) -> tuple[int, tuple[int, ...]] | None:
    """(length, places of the literal characters) of a glob without ``*``."""
    tokens = _glob_tokens(glob)
    if tokens is None:
        return None
    return len(tokens), tuple(i for i, t in enumerate(tokens) if t is not None)


def _fixed_literals(glob: str) -> str | None:
    tokens = _glob_tokens(glob)
    return None if tokens is None else "".join(t for t in tokens if t is not None)


class _Matcher:
    """Every source's pattern filed under its literal prefix, then its literal suffix: a name is tried only
    against the patterns whose prefix and suffix it has, so matching is about O(names), not O(names x
    sources)."""

    def __init__(self, sources: Sequence[Source], day: date | None) -> None:
        self._index: dict[str, dict[str, _Leaf]] = {}
        self._order = {src.name: i for i, src in enumerate(sources)}
        for src in sources:
            parts = split_pattern(src.file_pattern)
            if any(isinstance(p, DatePart) for p in parts):
                assert day is not None
                self._add(src.name, _day_glob(parts, day), shape=False)
                self._add(src.name, None, shape=True, parts=parts)
            else:
                self._add(src.name, "".join(p for p in parts if isinstance(p, str)), shape=False)
        self._prefix_lengths = sorted({len(prefix) for prefix in self._index})
        self._suffix_lengths = {prefix: sorted({len(suffix) for suffix in leaves})
                                for prefix, leaves in self._index.items()}

    def _add(self, source: str, glob: str | None, *, shape: bool, parts: list[str | DatePart] | None = None) -> None:
        if glob is not None:
            prefix, suffix, regex = _literal_prefix(glob), _literal_suffix(glob), _glob_regex(glob)
            if _WILDCARDS.search(glob) is None:
                suffix = ""  # the prefix is the whole name
        else:
            assert parts is not None
            first, last = parts[0], parts[-1]
            prefix = _literal_prefix(first) if isinstance(first, str) else ""
            suffix = _literal_suffix(last) if isinstance(last, str) and len(parts) > 1 else ""
            regex = "".join(_glob_regex(p) if isinstance(p, str) else _strftime_regex(p.format) for p in parts)
        entry = _Entry(source, regex, prefix, suffix, shape, glob)
        self._index.setdefault(prefix, {}).setdefault(suffix, _Leaf()).entries.append(entry)

    def match(self, name: str) -> tuple[list[str], list[str]]:
        """(sources whose pattern matches ``name``, dated sources whose any-day form matches it)."""
        owners: list[str] = []
        shapes: list[str] = []
        size = len(name)
        for plen in self._prefix_lengths:
            if plen > size:
                break
            leaves = self._index.get(name[:plen])
            if leaves is None:
                continue
            for slen in self._suffix_lengths[name[:plen]]:
                if plen + slen > size:
                    break
                leaf = leaves.get(name[size - slen:])
                if leaf is not None:
                    for entry in leaf.matching(name):
                        (shapes if entry.shape else owners).append(entry.source)
        if len(owners) > 1:
            owners.sort(key=self._order.__getitem__)
        if len(shapes) > 1:
            shapes.sort(key=self._order.__getitem__)
        return owners, [s for s in shapes if s not in owners]


_WILDCARDS = re.compile(r"[*?\[]")


def _literal_prefix(glob: str) -> str:
    found = _WILDCARDS.search(glob)
    return glob if found is None else glob[:found.start()]


def _literal_suffix(glob: str) -> str:
    """The text after the last wildcard (after a closing ']' that ends a class, to stay simple: none then)."""
    last = max(glob.rfind("*"), glob.rfind("?"), glob.rfind("["), glob.rfind("]"))
    return glob[last + 1:]


def _day_glob(parts: list[str | DatePart], day: date) -> str:
    """The pattern for ``day``: each placeholder replaced by the formatted date, glob-escaped."""
    return "".join(p if isinstance(p, str) else _glob_escape(day.strftime(p.format)) for p in parts)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _glob_regex(glob: str) -> str:
    """The regular expression of a shell-style glob, as fnmatch.fnmatchcase reads it (no groups, so that the
    pieces of one pattern can be joined)."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        ch = glob[i]
        i += 1
        if ch == "*":
            while i < n and glob[i] == "*":
                i += 1
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append("\\[")
                continue
            out.append(_class_regex(glob[i - 1:j + 1]))
            i = j + 1
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _class_regex(bracket: str) -> str:
    """A ``[...]`` class exactly as fnmatch translates it (a class has no groups: safe to join)."""
    translated = fnmatch.translate(bracket)
    found = re.fullmatch(r"\(\?s:(.*)\)\\[Zz]", translated, re.DOTALL)
    assert found is not None, translated
    return found.group(1)


# What each strftime directive can produce, for the any-day form of a dated pattern.
_STRFTIME = {
    "Y": r"[0-9]{4}", "G": r"[0-9]{4}", "y": r"[0-9]{2}", "m": r"[0-9]{2}", "d": r"[0-9]{2}", "e": r"[ 0-9][0-9]",
    "H": r"[0-9]{2}", "I": r"[0-9]{2}", "M": r"[0-9]{2}", "S": r"[0-9]{2}", "j": r"[0-9]{3}", "U": r"[0-9]{2}",
    "W": r"[0-9]{2}", "V": r"[0-9]{2}", "u": r"[1-7]", "w": r"[0-6]", "z": r"(?:[+-][0-9]{4})?",
    "a": r"[^/]+?", "A": r"[^/]+?", "b": r"[^/]+?", "B": r"[^/]+?", "p": r"[^/]*?",
}


def _strftime_regex(fmt: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            code = fmt[i + 1]
            out.append("%" if code == "%" else _STRFTIME.get(code, ".+?"))
            i += 2
        else:
            out.append(re.escape(fmt[i]))
            i += 1
    return "".join(out)
