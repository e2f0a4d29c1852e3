"""Fixtures for the days tests: the generated week, and fresh databases on the session's server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from customer_ratings import Database, Settings, open_database
from tests.conftest import _url_for
from tests.days.week import Week, write_week


@pytest.fixture
def week(tmp_path: Path) -> Week:
    """The week's files under a fresh folder."""
    return write_week(tmp_path / "week")


@pytest.fixture
def fresh_db(server_url: str) -> Iterator[Callable[[], Database]]:
    """A factory of brand-new migrated databases (one per load order), all dropped after the test."""
    admin = _url_for(server_url, "postgres")
    names: list[str] = []
    with ExitStack() as stack:

        def make() -> Database:
            name = f"crdays_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            names.append(name)
            return stack.enter_context(open_database(Settings(database_url=_url_for(server_url, name))))

        yield make
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
