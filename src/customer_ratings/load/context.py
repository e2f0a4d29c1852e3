"""What the stages of a load share: its counts, the per-agency lock, table comments and stream settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from ..config import Source
from ..db.server import Database
from ..errors import (
    ConfigError,
)
from ..inputs import Entry

# Per-agency advisory locks live in this namespace (first key of the two-key form).
AGENCY_LOCK_NAMESPACE = 7_041_002


# From this size on, the valid rows are split across parallel COPY streams on helper connections (and the invalid
# rows get one of their own); below it, one stream on the load's own connection is cheaper than opening more.
PARALLEL_MIN_BYTES = 8 << 20


# Parallel COPY streams for a large file: CUSTOMER_RATINGS_STREAMS, default one per core (docs/adr/0005).
STREAMS_ENV = "CUSTOMER_RATINGS_STREAMS"


MAX_STREAMS = 16


CHILD_COMMENT = "customer_ratings child for source "


INVALID_COMMENT = "customer_ratings invalid rows for source "


ProgressFn = Callable[[int, int], None]
"""Called after each block with (bytes read, rows read) since the previous call."""


@dataclass
class Counts:
    """Rows read, loaded and invalid so far, and the report's numbers of the loaded rows once known."""

    read: int = 0
    loaded: int = 0
    invalid: int = 0
    rating_sum: int | None = None
    high_value: int | None = None


def default_streams() -> int:
    """CUSTOMER_RATINGS_STREAMS, else one COPY stream per core (at least 1, at most MAX_STREAMS)."""
    value = os.environ.get(STREAMS_ENV, "").strip()
    if value:
        if not value.isdigit() or not 1 <= int(value) <= MAX_STREAMS:
            raise ConfigError(f"{STREAMS_ENV}={value!r} is not a whole number of COPY streams from 1 to {MAX_STREAMS}")
        return int(value)
    return max(1, min(MAX_STREAMS, os.cpu_count() or 1))


def connections_used(streams: int) -> int:
    """The database connections one load of a large file holds at once (for pools sized in connections)."""
    return 1 + streams + 1  # its own, one per COPY stream, one for the invalid rows


@dataclass
class LoadContext:
    """One load of one agency's file: what its stages share (instead of a dozen parameters each)."""

    db: Database
    source: Source
    entry: Entry
    day: date
    """The as-of date the file is for."""
    started: datetime
    lock_wait: float
    """Seconds the swap may wait for a reader's lock (CUSTOMER_RATINGS_LOCK_WAIT)."""
    streams: int
    """Parallel COPY streams for a large file."""
    force: bool = False
    progress: ProgressFn | None = None
    counts: Counts = field(default_factory=Counts)
    size: int = 0
    load_id: int = 0

    @property
    def uri(self) -> str:
        """The file's URI as the tables record it (``file://...`` or ``s3://bucket/key``)."""
        return str(self.entry.uri)

    @property
    def path(self) -> Path | Entry:
        """The local file, or the object's listing entry."""
        return self.entry.path if self.entry.path is not None else self.entry
