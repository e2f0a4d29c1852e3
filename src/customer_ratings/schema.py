"""The agency table's columns as data: three integers and a status, with their PostgreSQL types and limits.

This is the one place that knows them. The row rules (``validate``), the agency table's DDL (``db.migrate``)
and the configuration checks (``config``) are built from it; only the SQL migrations and the report's SQL,
which are fixed text by nature, spell the columns out again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType


class Kind(Enum):
    """What a column holds, which decides its rules."""

    INTEGER = "integer"
    STATUS = "status"
    """Text, trimmed, at most ``STATUS_MAX_CHARS`` characters, optionally one of a source's allowed values."""


# PostgreSQL's INTEGER; a value outside it would make COPY fail the whole load, so it is a row error instead.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
INT_RANGE = f"{INT_MIN}..{INT_MAX}"
# The digits of the bounds without sign: the vectorized checks compare ten-digit values with them as text.
INT_MAX_DIGITS, INT_MIN_DIGITS = str(INT_MAX), str(-INT_MIN)
# An integer as the files may spell it (before the range check): ASCII digits only, optional sign, any zeros.
INT_PATTERN = r"[+-]?[0-9]+"
STATUS_MAX_CHARS = 25
# How much of a value a message quotes: enough to recognise it, little enough to keep a message one short line.
SHOWN_CHARS = 40


@dataclass(frozen=True)
class Column:
    """One column of an agency table."""

    name: str
    kind: Kind
    pg_type: str
    min_value: int | None = None
    max_value: int | None = None
    max_chars: int | None = None


def _integer(name: str) -> Column:
    return Column(name, Kind.INTEGER, "INTEGER", min_value=INT_MIN, max_value=INT_MAX)


def _status(name: str) -> Column:
    return Column(name, Kind.STATUS, f"VARCHAR({STATUS_MAX_CHARS})", max_chars=STATUS_MAX_CHARS)


AGENCY_COLUMNS: tuple[Column, ...] = (
    _integer("customer_number"),
    _integer("customer_rating"),
    _integer("customer_rating_limit"),
    _status("customer_status"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in AGENCY_COLUMNS)
KIND_OF: Mapping[str, Kind] = MappingProxyType({c.name: c.kind for c in AGENCY_COLUMNS})


def is_status(column: str | None) -> bool:
    """Whether ``column`` (a table column name, or None for an ignored extra column) holds the status."""
    return column is not None and KIND_OF.get(column) is Kind.STATUS


def column_definitions(indent: str = "    ") -> str:
    """The columns of ``CREATE TABLE``, one per line, names padded so that the types line up."""
    width = max(len(c.name) for c in AGENCY_COLUMNS)
    return ",\n".join(f"{indent}{c.name:<{width}} {c.pg_type}" for c in AGENCY_COLUMNS)
