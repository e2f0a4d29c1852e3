"""A real S3-protocol server for tests: moto's standalone server as a subprocess on 127.0.0.1.

Importable by any test package (``from tests.s3server import MotoServer``); ``tests/conftest.py`` wraps it in
session fixtures (``s3_server``, ``s3_auth_server``, ``s3_env``, ``bucket``, ``s3``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

REGION = "us-east-1"
ACCESS_KEY = "AKIATESTTESTTEST0001"
SECRET_KEY = "s3cr3t-Test-Key-Never-Printed-0123456789"
READY_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MotoServer:
    """A running moto server; ``env`` is the standard AWS environment pointing at it."""

    process: subprocess.Popen[bytes]
    port: int
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    log_path: str | None = None
    """The server's stdout and stderr: one access-log line per request (``"GET /bucket/key HTTP/1.1" 200``)."""

    def requests(self) -> list[str]:
        """The request lines the server has logged so far (``GET /bucket/key?query HTTP/1.1``), oldest first."""
        if self.log_path is None:
            return []
        with open(self.log_path, "rb") as fh:
            text = re.sub(r"\x1b\[[0-9;]*m", "", fh.read().decode("utf-8", "replace"))  # werkzeug's colours
        return re.findall(r'"((?:GET|PUT|HEAD|POST|DELETE) \S+ HTTP/[0-9.]+)"', text)

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def env(self, access_key: str | None = None, secret_key: str | None = None) -> dict[str, str]:
        """``AWS_*`` variables for a client of this server (these keys unless others are given)."""
        return {
            "AWS_ACCESS_KEY_ID": access_key or self.access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key or self.secret_key,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        """A boto3 S3 client of the server, for setting up and inspecting buckets (not the code under test)."""
        import boto3  # type: ignore[import-untyped]

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key)


def _ready(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/moto-api/data.json")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


@contextlib.contextmanager
def moto_server(*, initial_no_auth_actions: int | None = None) -> Iterator[MotoServer]:
    """Start ``python -m moto.server`` on a free port, wait (bounded) until it answers, always kill it after.

    With ``initial_no_auth_actions`` moto checks signatures and IAM policies after that many requests (the
    first ones create the IAM users and keys).
    """
    port = free_port()
    env = dict(os.environ)
    for name in [n for n in env if n.startswith("AWS_")]:
        del env[name]
    if initial_no_auth_actions is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(initial_no_auth_actions)
    with tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not _ready(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"moto server did not start on port {port}: {log.read()[-2000:]!r}")
                time.sleep(0.1)
            yield MotoServer(process, port, log_path=log.name)
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@dataclass(frozen=True)
class AuthUsers:
    """IAM users of an auth-checking server: one that may do anything in S3, one that may do nothing."""

    allowed: tuple[str, str]
    denied: tuple[str, str]


def create_users(server: MotoServer) -> AuthUsers:
    """Five IAM calls (within the server's no-auth allowance): two users with keys, one with an S3 policy."""
    import boto3

    iam = boto3.client("iam", endpoint_url=server.endpoint, region_name=REGION,
                       aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    keys = []
    for user in ("loader", "nobody"):
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys.append((key["AccessKeyId"], key["SecretAccessKey"]))
    iam.put_user_policy(UserName="loader", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    return AuthUsers(allowed=keys[0], denied=keys[1])


@dataclass
class AuthServer:
    """A server that checks signatures and IAM policies, its users, and a bucket made by the allowed one."""

    server: MotoServer
    users: AuthUsers
    bucket: str
