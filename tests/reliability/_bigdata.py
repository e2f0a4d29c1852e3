"""Large agency files for the fault tests, written fast, with the fingerprint a correct load must give."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = b"customer_number,customer_rating,customer_rating_limit,customer_status"
AGENCIES = ("agency_a", "agency_b", "agency_c", "agency_d")
# Two agencies over 8 MiB (the loader's parallel two-connection path) and two under it (the single-connection
# path); LF and CRLF. About 1.5 M rows, 52 MB per version.
BIG_ROWS = {"agency_a": 600_000, "agency_b": 600_000, "agency_c": 150_000, "agency_d": 150_000}


@dataclass(frozen=True)
class Expect:
    """What a complete load of one file gives: the agency table's fingerprint and the invalid row count."""

    rows: int
    sum_number: int
    sum_rating: int
    sum_limit: int
    high_value: int
    invalid: int

    @property
    def fingerprint(self) -> tuple[int, int, int, int, int]:
        return (self.rows, self.sum_number, self.sum_rating, self.sum_limit, self.high_value)

    def report_row(self, name: str) -> list[str]:
        total = self.rows + self.invalid
        pct = "0.00" if total == 0 else f"{100 * self.invalid / total:.2f}"
        return [name, str(self.rows), str(self.sum_rating), str(self.high_value), str(self.invalid), pct]


def write_agency_file(path: Path, rows: int, seed: int, *, crlf: bool = False, invalid_every: int = 197) -> Expect:
    """``rows`` data rows; every ``invalid_every``-th has a non-numeric customer number (not_an_integer)."""
    rng = np.random.default_rng(seed)
    number = rng.integers(1_000_000_000, 2_000_000_000, rows)
    rating = rng.integers(0, 500_000, rows)
    limit = rng.integers(0, 1_000_000, rows)
    high = rng.random(rows) < 0.25
    bad = np.zeros(rows, dtype=bool)
    bad[seed % invalid_every::invalid_every] = True
    eol = "\r\n" if crlf else "\n"
    with path.open("wb") as fh:
        fh.write(HEADER + eol.encode())
        step = 100_000
        for start in range(0, rows, step):
            sl = slice(start, start + step)
            lines = [
                f"{'z' if b else ''}{n},{r},{lim},{'high-value' if h else 'low-value'}"
                for n, r, lim, h, b in zip(number[sl].tolist(), rating[sl].tolist(), limit[sl].tolist(),
                                           high[sl].tolist(), bad[sl].tolist(), strict=True)
            ]
            fh.write((eol.join(lines) + eol).encode())
    ok = ~bad
    return Expect(int(ok.sum()), int(number[ok].sum()), int(rating[ok].sum()), int(limit[ok].sum()),
                  int((high & ok).sum()), int(bad.sum()))


@dataclass(frozen=True)
class Version:
    """One day's data folder for the four built-in agencies, and what loading each file must give."""

    name: str
    data: Path
    expect: dict[str, Expect]

    def report(self) -> list[list[str]]:
        return [self.expect[a].report_row(a) for a in AGENCIES]
