"""Running the real ``customer-ratings`` command in a subprocess, as a user (or cron, or Airflow) would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_SCRIPT = Path(sys.executable).parent / "customer-ratings"
CLI: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "customer_ratings"]
_MAXRSS = Path(__file__).with_name("_maxrss.py")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    maxrss_mib: float | None = None
    timed_out: bool = False

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.lower().startswith("error:")]

    def __str__(self) -> str:
        return (f"exit {self.returncode} after {self.seconds:.1f} s (timed out: {self.timed_out}, peak RSS "
                f"{self.maxrss_mib} MiB)\n--- stdout:\n{self.stdout[-3000:]}\n--- stderr:\n{self.stderr[-3000:]}")


def cli_env(database_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOMER_RATINGS_")}
    env.update(CUSTOMER_RATINGS_DATABASE_URL=database_url, CUSTOMER_RATINGS_HOME=str(home), COLUMNS="200",
               PYTHONUNBUFFERED="1")
    return env


def run_cli(args: list[str], env: dict[str, str], *, timeout: float = 120, measure: bool = False,
            workdir: Path | None = None) -> Run:
    """Run the command to its end (killed after ``timeout``); with ``measure``, also its peak RSS."""
    argv = [*CLI, *args]
    started = time.monotonic()
    if not measure:
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                                  errors="backslashreplace")
        except subprocess.TimeoutExpired as exc:
            return Run(-9, _text(exc.stdout), _text(exc.stderr), time.monotonic() - started, timed_out=True)
        return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - started)
    folder = workdir or Path(env["CUSTOMER_RATINGS_HOME"])
    folder.mkdir(parents=True, exist_ok=True)
    out, err = folder / "cli.stdout", folder / "cli.stderr"
    request = {"argv": argv, "env": env, "stdout": str(out), "stderr": str(err), "timeout": timeout}
    done = subprocess.run([sys.executable, "-I", "-S", str(_MAXRSS), json.dumps(request)], capture_output=True,
                          text=True, timeout=timeout + 30, check=True)
    reply = json.loads(done.stdout)
    return Run(reply["returncode"], out.read_text(errors="backslashreplace"),
               err.read_text(errors="backslashreplace"), reply["seconds"], reply["maxrss_kib"] / 1024,
               reply["timed_out"])


def start_cli(args: list[str], env: dict[str, str], log_dir: Path, name: str = "cli") -> subprocess.Popen[bytes]:
    """Start the command in the background (its output goes to files in ``log_dir``)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.stdout", "wb") as out, open(log_dir / f"{name}.stderr", "wb") as err:
        return subprocess.Popen([*CLI, *args], env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)


def finish_cli(proc: subprocess.Popen[bytes], log_dir: Path, name: str = "cli", timeout: float = 300) -> Run:
    """Wait for a command started with start_cli (killing it after ``timeout``) and collect its output."""
    started = time.monotonic()
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Run(proc.returncode, (log_dir / f"{name}.stdout").read_text(errors="replace"),
               (log_dir / f"{name}.stderr").read_text(errors="replace"), time.monotonic() - started)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="backslashreplace")


def assert_no_traceback(run: Run) -> None:
    for marker in ("Traceback", "╭─", 'File "', "Exception"):
        assert marker not in run.stderr, f"a traceback instead of a clear error:\n{run}"
    assert not run.timed_out, f"the command hung:\n{run}"
