"""The library calls the CLI and the Airflow DAGs share: init, and load every source of a data folder."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .config import Config, Settings, Source
from .days import local_today
from .db.migrate import ensure_agency_tables
from .db.server import Database, open_database
from .discovery import Discovery, discover
from .errors import CustomerRatingsError, LoadStatus
from .inputs import Entry, LocalFolder, open_location
from .load import LoadResult, ProgressFn, load_source, record_missing

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """Every agency's outcome of one load run, plus what the data folder held besides."""

    results: list[LoadResult] = field(default_factory=list)
    unmatched: list[Entry] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Configured sources with no file in the data folder."""

    as_of: date | None = None
    """The day the run loaded files for."""

    @property
    def exit_code(self) -> int:
        """0 when every file loaded (or was unchanged), 1 when one was rejected, missing or failed."""
        return 1 if self.missing or any(r.status in ("rejected", "failed") for r in self.results) else 0


def init_database(settings: Settings, config: Config) -> None:
    """Create the database, apply the migrations and create every configured agency's table."""
    with open_database(settings) as db:
        ensure_agency_tables(db.connection(), config)


def load_sources(db: Database, config: Config, data_dir: Path | str, *, force: bool = False,
                 progress: Callable[[Source, Path], ProgressFn | None] | None = None,
                 discovery: Discovery | None = None, as_of: date | None = None,
                 streams: int | None = None) -> RunSummary:
    """Load the file of every configured source found in ``data_dir`` (a local folder or an object-store URL)
    for the day ``as_of`` (default today), one after the other.

    A rejected or failed file does not stop the others; its agency keeps its previous data. A source with no
    file is recorded as ``missing`` (and keeps its data too). ``streams``: parallel COPY streams of a large
    file (default: ``load.default_streams()``).
    """
    day = as_of or local_today()
    found = discovery or discover(config, data_dir, day=day)
    location = found.location or open_location(data_dir)
    searched = location.folder.absolute().as_uri() if isinstance(location, LocalFolder) else location.uri
    summary = RunSummary(unmatched=found.unmatched, as_of=day)
    for src in config.sources:
        entry = found.selected.get(src.name)
        if entry is None:
            summary.missing.append(src.name)
            record_missing(db, src, searched, day)
            continue
        # the progress callback takes a Path: an object's is its URI as a (non-existing) path, so no total
        callback = progress(src, entry.path or Path(entry.uri)) if progress else None
        try:
            result = load_source(db, src, entry, location=location, force=force, progress=callback, as_of=day,
                                 streams=streams)
        except CustomerRatingsError as exc:
            log.debug("%s", exc)  # the caller reports it (the CLI: one error: line)
            result = LoadResult(src.name, entry.path or entry, LoadStatus.FAILED, error=str(exc))
        summary.results.append(result)
    return summary
