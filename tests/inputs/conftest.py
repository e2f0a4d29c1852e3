"""Session fixtures: a moto S3 server (no auth checks) and one that checks signatures and IAM policies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.s3server import AuthUsers, MotoServer, create_users, moto_server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """A moto server for the whole session, any credentials accepted."""
    with moto_server() as server:
        yield server


@dataclass
class AuthServer:
    server: MotoServer
    users: AuthUsers
    bucket: str


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
