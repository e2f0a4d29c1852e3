"""The as-of date a command defaults to."""

from __future__ import annotations

from datetime import date


def local_today() -> date:
    """Today in the local time zone (``TZ``): the default as-of date of ``load``, ``run``, ``report`` and
    ``status`` (SPEC.md "Days"). Deliberately the local day, not UTC: a team in Kiritimati loads the files of
    its own day (tests/days)."""
    return date.today()  # noqa: DTZ011 - the local day is the contract
