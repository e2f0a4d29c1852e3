"""Connections and least privilege, on a real PostgreSQL with real roles (the machine's, at 127.0.0.1:5432, or
CUSTOMER_RATINGS_TEST_ADMIN_URL): what README's "Database privileges" says a DBA grants is enough, and what
a retry cannot fix ends at once with exit 2 and the statement to run."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import SEED_SAMPLE

from ._helpers import clean_env, cli, said

ADMIN_URL = os.environ.get("CUSTOMER_RATINGS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SAMPLE = SEED_SAMPLE
REPORT = "Customer_Rating_Aggregate_Report_20250513.csv"


@dataclass(frozen=True)
class Setup:
    role: str
    database: str

    def admin(self, dbname: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(ADMIN_URL, dbname=dbname or "postgres", autocommit=True, connect_timeout=10)

    def url(self, dbname: str | None = None) -> str:
        host = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
        return (f"postgresql://{self.role}@{host.get('host', '127.0.0.1')}:{host.get('port', 5432)}/"
                f"{dbname or self.database}")


@pytest.fixture
def setup() -> Iterator[Setup]:
    """A login role with no privileges and a database PUBLIC cannot connect to (both dropped afterwards)."""
    tag = uuid.uuid4().hex[:10]
    s = Setup(f"crloader_{tag}", f"crpriv_{tag}")
    with s.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(s.role)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(s.database)))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(s.database)))
    with s.admin(s.database) as conn:
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    try:
        yield s
    finally:
        with s.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(s.database)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(s.role)))


def test_the_documented_privileges_are_enough(setup: Setup, tmp_path: Path) -> None:
    """README: CONNECT on the database, USAGE and CREATE on the schema; the loader runs init and owns the tables."""
    with setup.admin() as conn:
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(setup.database), sql.Identifier(setup.role)))
    with setup.admin(setup.database) as conn:
        conn.execute("CREATE SCHEMA ratings")
        conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA ratings TO {}").format(sql.Identifier(setup.role)))
    env = clean_env(tmp_path, CUSTOMER_RATINGS_DATABASE_URL=setup.url(), CUSTOMER_RATINGS_SCHEMA="ratings")
    for args in (["init"], ["load", "--data-dir", str(SAMPLE), "--date", "2025-05-13", "--quiet"],
                 ["load", "--data-dir", str(SAMPLE), "--date", "2025-05-13", "--quiet", "--force"],
                 ["report", "--output-dir", str(tmp_path / "out"), "--date", "2025-05-13"]):
        done = cli(args, env)
        assert done.returncode == 0, f"{args}: {said(done)}"
    assert (tmp_path / "out" / REPORT).read_bytes() == (SAMPLE / REPORT).read_bytes()
    with setup.admin(setup.database) as conn:
        owners = conn.execute("""SELECT DISTINCT n.nspname, pg_get_userbyid(c.relowner) FROM pg_class c
                                 JOIN pg_namespace n ON n.oid = c.relnamespace
                                 WHERE c.relkind IN ('r', 'v', 'p') AND n.nspname NOT IN ('pg_catalog',
                                 'information_schema', 'pg_toast')""").fetchall()
    assert owners == [("ratings", setup.role)], owners


def test_no_connect_privilege_is_exit_2_with_the_grant_to_run(setup: Setup, tmp_path: Path) -> None:
    env = clean_env(tmp_path, CUSTOMER_RATINGS_DATABASE_URL=setup.url(), CUSTOMER_RATINGS_CONNECT_TIMEOUT="60")
    started = time.monotonic()
    done = cli(["init"], env, timeout=50)
    assert done.returncode == 2, said(done)
    assert time.monotonic() - started < 30, "not retried"
    assert f'GRANT CONNECT ON DATABASE "{setup.database}" TO {setup.role}' in done.stderr, said(done)
    assert "retrying" not in done.stderr, said(done)


def test_missing_schema_the_role_may_not_create_is_exit_2(setup: Setup, tmp_path: Path) -> None:
    with setup.admin() as conn:
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(setup.database), sql.Identifier(setup.role)))
    env = clean_env(tmp_path, CUSTOMER_RATINGS_DATABASE_URL=setup.url(), CUSTOMER_RATINGS_SCHEMA="ratings")
    done = cli(["init"], env)
    assert done.returncode == 2, said(done)
    assert f"CREATE SCHEMA ratings AUTHORIZATION {setup.role}" in done.stderr, said(done)
    with setup.admin(setup.database) as conn:
        conn.execute("CREATE SCHEMA ratings")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA ratings TO {}").format(sql.Identifier(setup.role)))
    done = cli(["init"], env)
    assert done.returncode == 2, said(done)
    assert f"GRANT USAGE, CREATE ON SCHEMA ratings TO {setup.role}" in done.stderr, said(done)


def test_a_missing_database_and_schema_are_created(setup: Setup, tmp_path: Path) -> None:
    """With a role that may (the admin): the database from a maintenance database, then the schema."""
    name = setup.database + "_new"
    admin = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    url = psycopg.conninfo.make_conninfo("", **{**admin, "dbname": name})
    env = clean_env(tmp_path, CUSTOMER_RATINGS_DATABASE_URL=url, CUSTOMER_RATINGS_SCHEMA="other_schema")
    try:
        done = cli(["init"], env)
        assert done.returncode == 0, said(done)
        with setup.admin(name) as conn:
            tables = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'other_schema'").fetchall()}
        assert {"customer_rating", "load_history", "customer_rating_agency_a"} <= tables, tables
    finally:
        with setup.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
