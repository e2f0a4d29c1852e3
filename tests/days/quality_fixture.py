"""The quality page's fixture: the generated week plus two agencies with hostile names, loaded day by day."""

from __future__ import annotations

from pathlib import Path

from customer_ratings import Config, Database, load_sources
from tests.days.week import DAYS, Week, week_config, write_week

HOSTILE = ("<script>alert(1)</script>", '=HYPERLINK("http://example.com/x","click")')


def load_hostile_week(db: Database, root: Path) -> tuple[Week, Config]:
    """Write and load the week (in order), with the hostile agencies' files on its last day."""
    week = write_week(root, HOSTILE)
    config = week_config(HOSTILE)
    for day in DAYS:
        load_sources(db, config, week.folder(day), as_of=day)
    return week, config
