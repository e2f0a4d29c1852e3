"""Applies ``migrations/NNNN_name.sql`` in order, once each, recorded in ``schema_migrations``."""

from __future__ import annotations

import re
from importlib import resources

import psycopg
from psycopg import sql

from ..config import Config
from ..schema import column_definitions

# Any constant works; it only has to differ from the per-agency lock namespace in load.py.
MIGRATION_LOCK_KEY = 7_041_001
_NAME_RE = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")

# The agency table of SPEC.md, ``{}`` for its name (load.py creates its children with it too).
AGENCY_TABLE_DDL = sql.SQL("CREATE TABLE IF NOT EXISTS {} (\n" + column_definitions() + "\n)")


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL text) of every migration shipped with the package, in order."""
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _NAME_RE.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text("utf-8")))
    return sorted(found)


def migrate(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Apply the migrations this database lacks; returns the names applied. Safe to run concurrently."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    INTEGER PRIMARY KEY,
                   name       TEXT NOT NULL,
                   applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, text in migrations():
            if version in done:
                continue
            conn.execute(text.encode())
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            applied_now.append(name)
    return applied_now


def ensure_agency_tables(conn: psycopg.Connection[tuple[object, ...]], config: Config) -> None:
    """Create every configured agency's table (exactly the DDL of SPEC.md) if it does not exist yet."""
    with conn.transaction():
        # Concurrent CREATE TABLE IF NOT EXISTS of one name can still collide in pg_type: serialize.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        for src in config.sources:
            conn.execute(AGENCY_TABLE_DDL.format(sql.Identifier(src.table)))
