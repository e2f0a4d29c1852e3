"""Running the CLI as a subprocess with a clean environment (no CUSTOMER_RATINGS_* of the caller's)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.reliability._cli import CLI


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without CUSTOMER_RATINGS_*, with a temporary home and XDG_DATA_HOME, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOMER_RATINGS_")}
    env.update(CUSTOMER_RATINGS_HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "xdg"), COLUMNS="200",
               TERM="dumb", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def cli(args: list[str], env: dict[str, str], *, timeout: float = 180,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``customer-ratings ARGS`` to its end (killed after ``timeout`` seconds)."""
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          errors="backslashreplace", stdin=subprocess.DEVNULL, check=False)


def said(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout:\n{done.stdout[-3000:]}\n--- stderr:\n{done.stderr[-3000:]}"
