"""A deterministic week of agency files for the days tests (issue 12) and the quality page (issue 16).

Three agencies over seven days, one data folder per day (``<root>/YYYYMMDD/``), so that a load for a day takes
that folder's files:

- ``agency_a`` has a file every day; its day-3 file is byte-identical to its day-2 file (``unchanged`` when the
  week is loaded in order).
- ``agency_b`` has no file on days 2 and 5 (``missing``) and a file missing a column on day 4 (``rejected``).
- ``agency_c`` starts on day 1, has no file on day 3 and a rejected file on day 6 (the last day).

Every file has a few invalid rows of known codes. The helper knows each file's valid rows and numbers, so tests
can compare the database against what the files hold.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from customer_ratings import Config, Source

FIRST_DAY = date(2025, 5, 12)
DAYS = tuple(FIRST_DAY + timedelta(days=i) for i in range(7))
HEADER = "customer_number,customer_rating,customer_rating_limit,customer_status"

AGENCIES = ("agency_a", "agency_b", "agency_c")
MISSING = {"agency_b": {2, 5}, "agency_c": {0, 3}}
REJECTED = {"agency_b": {4}, "agency_c": {6}}
SAME_AS_PREVIOUS = {"agency_a": {3}}


def file_name(agency: str, day: date) -> str:
    """The agency's file name for ``day`` (date-stamped, as the agencies drop them)."""
    letter = agency[-1].upper()
    return f"Customer Rating Agency {letter} Inc_{day:%Y%m%d}.csv"


def week_sources(extra: tuple[str, ...] = ()) -> tuple[Source, ...]:
    """The week's agencies (and ``extra`` names, e.g. hostile ones, each with a pattern of its own)."""
    sources = [Source(name=a, table=f"customer_rating_{a}",
                      file_pattern=f"Customer Rating Agency {a[-1].upper()} Inc*.csv") for a in AGENCIES]
    sources += [Source(name=name, table=f"customer_rating_extra_{i}", file_pattern=f"Extra {i}_*.csv")
                for i, name in enumerate(extra)]
    return tuple(sources)


def week_config(extra: tuple[str, ...] = ()) -> Config:
    """A Config with the week's agencies."""
    return Config(sources=week_sources(extra))


@dataclass
class DayFile:
    """One file of the week and what it holds."""

    agency: str
    day: date
    path: Path
    rejected: bool
    valid: list[tuple[int, int, int, str]] = field(default_factory=list)
    invalid_lines: list[int] = field(default_factory=list)

    @property
    def numbers(self) -> tuple[int, int, int, int]:
        """count, sum of ratings, high-value count, invalid count: the report's numbers of this file."""
        return (len(self.valid), sum(r[1] for r in self.valid),
                sum(1 for r in self.valid if r[3] == "high-value"), len(self.invalid_lines))


@dataclass
class Week:
    """The generated week: its folders and files."""

    root: Path
    files: dict[tuple[str, date], DayFile]

    def folder(self, day: date) -> Path:
        """The data folder of ``day``."""
        return self.root / f"{day:%Y%m%d}"

    def file(self, agency: str, day: date) -> DayFile | None:
        """The agency's file of ``day`` (None when it has none that day)."""
        return self.files.get((agency, day))

    def newest_loaded(self, agency: str) -> DayFile:
        """The agency's newest file that loads (not rejected)."""
        return max((f for f in self.files.values() if f.agency == agency and not f.rejected), key=lambda f: f.day)

    def loaded_as_of(self, agency: str, day: date) -> DayFile | None:
        """The agency's newest loading file with a date on or before ``day``."""
        candidates = [f for f in self.files.values() if f.agency == agency and not f.rejected and f.day <= day]
        return max(candidates, key=lambda f: f.day) if candidates else None


def _rows(agency: str, index: int) -> tuple[list[str], list[tuple[int, int, int, str]], list[int]]:
    """Deterministic lines for an agency's file of day ``index``: data lines, valid rows, invalid line numbers."""
    rng = random.Random(f"{agency}-{index}")
    lines: list[str] = []
    valid: list[tuple[int, int, int, str]] = []
    invalid: list[int] = []
    count = 20 + 3 * index + AGENCIES.index(agency) if agency in AGENCIES else 6
    for n in range(count):
        number = 1_110_000_000 + rng.randrange(10_000_000)
        rating = rng.randrange(1_000, 500_000)
        limit = rating + rng.randrange(200_000)
        status = rng.choice(("high-value", "low-value", "low-value"))
        kind = n % 7 if n % 7 in (3, 5) and (n + index) % 2 == 0 else 0
        if kind == 3:
            lines.append(f"{number},{rating}x,{limit},{status}")  # customer_rating: not_an_integer
            invalid.append(len(lines) + 1)
        elif kind == 5:
            lines.append(f"{number},{rating},,{'very-' * 6}high-value")  # missing_value + too_long
            invalid.append(len(lines) + 1)
        else:
            lines.append(f"{number},{rating},{limit},{status}")
            valid.append((number, rating, limit, status))
    return lines, valid, invalid


def write_week(root: Path, extra: tuple[str, ...] = ()) -> Week:
    """Write the week's folders under ``root``; ``extra`` agencies (see ``week_sources``) get a file on the last
    day only."""
    files: dict[tuple[str, date], DayFile] = {}
    for index, day in enumerate(DAYS):
        folder = root / f"{day:%Y%m%d}"
        folder.mkdir(parents=True, exist_ok=True)
        for agency in AGENCIES:
            if index in MISSING.get(agency, set()):
                continue
            source_index = index - 1 if index in SAME_AS_PREVIOUS.get(agency, set()) else index
            lines, valid, invalid = _rows(agency, source_index)
            rejected = index in REJECTED.get(agency, set())
            header = HEADER.rsplit(",", 1)[0] if rejected else HEADER  # a file missing a column
            path = folder / file_name(agency, day)
            path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
            files[(agency, day)] = DayFile(agency, day, path, rejected, [] if rejected else valid,
                                           [] if rejected else invalid)
        if index == len(DAYS) - 1:
            for i, name in enumerate(extra):
                lines, valid, invalid = _rows(name, index)
                path = folder / f"Extra {i}_{day:%Y%m%d}.csv"
                path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
                files[(name, day)] = DayFile(name, day, path, False, valid, invalid)
    return Week(root, files)
