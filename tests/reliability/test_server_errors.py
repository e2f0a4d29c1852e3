"""Server errors during a COPY end the load cleanly instead of hanging it (issue 9).

Each fault hits agency A's COPY in a real ``customer-ratings load`` of two agencies (A first, then B), once with
a small file (one connection) and once with a large one (>= 8 MiB: two helper connections stream in parallel):

- a trigger on A's table that raises at the end of the COPY;
- ``statement_timeout`` set in the URL's options (a large generated file; for the small file a trigger makes
  the COPY outlast a 1 s timeout);
- ``pg_cancel_backend`` from another connection while the COPY runs;
- a full disk: A's table lives in a tablespace on a small tmpfs (the WAL does not, so the server does not PANIC).

Each time, within a hard bound (the CLI is killed after 120 s and the test fails): exit 1, no traceback, one
error line for A, A's previous data intact and its history row ``failed``, B loaded, no advisory lock left
behind, and the next load of A (fault removed) succeeds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import conninfo as pg_conninfo

from customer_ratings import Settings, load_source, open_database
from customer_ratings.config import Source
from customer_ratings.errors import CustomerRatingsError

from . import _db, _fault
from ._cli import finish_cli, start_cli
from ._two import BOUND, LARGE_ROWS, SMALL_ROWS, Setup

# Each row is stored once, in a child table the load creates (docs/adr/0005-single-write.md): the faults are
# triggers that an event trigger puts on every new child, and that act only in the COPY of agency A's rows (its
# statement names the agency table in a comment).
_ARM = """CREATE FUNCTION arm() RETURNS event_trigger LANGUAGE plpgsql AS $$DECLARE obj record; BEGIN
              FOR obj IN SELECT * FROM pg_event_trigger_ddl_commands()
                         WHERE object_type = 'table' AND object_identity LIKE '%customer\\_rating\\_\\_%' LOOP
                  EXECUTE format('CREATE TRIGGER t {when} INSERT ON %s FOR EACH STATEMENT EXECUTE FUNCTION {fn}()',
                                 obj.object_identity);
              END LOOP; END$$;
          CREATE EVENT TRIGGER arm ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION arm();"""
_OF_A = """current_query() LIKE '%rows of "customer_rating_agency_a"%'"""
BOOM = ("""CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
               IF """ + _OF_A + """ THEN RAISE EXCEPTION 'x'; END IF; RETURN NULL; END$$;"""
        + _ARM.format(when="AFTER", fn="boom"))
SLOW = ("""CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
               IF """ + _OF_A + """ THEN PERFORM pg_sleep(30); END IF; RETURN NULL; END$$;"""
        + _ARM.format(when="BEFORE", fn="slow"))


@pytest.fixture(params=[SMALL_ROWS, LARGE_ROWS], ids=["small", "large"])
def setup(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Setup:
    s = Setup(database_url, tmp_path, request.param)
    size = (s.v2 / "Customer Rating Agency A Inc.csv").stat().st_size
    assert (size >= 8 << 20) == (request.param == LARGE_ROWS)
    return s


def test_a_trigger_that_raises(setup: Setup) -> None:
    setup.sql(BOOM)
    run = setup.load(setup.v2)
    setup.check_failed_cleanly(run, "x")
    setup.next_load_succeeds()


def test_a_cancel_from_another_connection(setup: Setup) -> None:
    setup.sql(SLOW)  # holds the COPY at its start, so the cancel surely lands in it
    proc = start_cli(setup.args(setup.v2), setup.env, setup.tmp / "logs")
    try:
        with _db.connect(setup.url) as conn:
            found = _fault.wait_for_query(conn, _fault.copy_into("customer_rating_agency_a"), proc, timeout=BOUND)
            assert found is not None, "the load ended before its COPY"
            assert conn.execute("SELECT pg_cancel_backend(%s)", (found[0],)).fetchone() == (True,)
    finally:
        run = finish_cli(proc, setup.tmp / "logs", timeout=BOUND)
    setup.check_failed_cleanly(run, "canceling statement due to user request")
    setup.next_load_succeeds()


def test_a_cancel_mid_copy_of_a_large_file(database_url: str, tmp_path: Path) -> None:
    """No trigger: the cancel lands while the data streams (a 1.2 M-row file streams for seconds)."""
    setup = Setup(database_url, tmp_path, 1_200_000)
    proc = start_cli(setup.args(setup.v2), setup.env, setup.tmp / "logs")
    try:
        with _db.connect(setup.url) as conn:
            found = _fault.wait_for_query(conn, _fault.copy_into("customer_rating_agency_a"), proc, timeout=BOUND)
            assert found is not None, "the load ended before its COPY"
            time.sleep(0.3)
            assert conn.execute("SELECT pg_cancel_backend(%s)", (found[0],)).fetchone() == (True,)
    finally:
        run = finish_cli(proc, setup.tmp / "logs", timeout=BOUND)
    setup.check_failed_cleanly(run, "canceling statement due to user request")
    setup.next_load_succeeds()


def _with_options(url: str, options: str) -> str:
    params = pg_conninfo.conninfo_to_dict(url)
    params["options"] = options
    return pg_conninfo.make_conninfo("", **params)


def test_statement_timeout_small_file(database_url: str, tmp_path: Path) -> None:
    setup = Setup(database_url, tmp_path, SMALL_ROWS)
    setup.sql(SLOW)
    env = {**setup.env, "CUSTOMER_RATINGS_DATABASE_URL": _with_options(database_url, "-cstatement_timeout=1000")}
    run = setup.load(setup.v2, env)
    setup.check_failed_cleanly(run, "canceling statement due to statement timeout")
    setup.next_load_succeeds()


def test_statement_timeout_large_file(database_url: str, tmp_path: Path) -> None:
    """The DBA's ``?options=-cstatement_timeout%3D300`` on a 3 M-row load (~105 MB)."""
    setup = Setup(database_url, tmp_path, 3_000_000)
    env = {**setup.env, "CUSTOMER_RATINGS_DATABASE_URL": _with_options(database_url, "-cstatement_timeout=300")}
    run = setup.load(setup.v2, env)
    setup.check_failed_cleanly(run, "canceling statement due to statement timeout")


@pytest.fixture
def small_disk(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A tablespace on an 8 MiB tmpfs (the server's WAL stays on its own disk); yields its name."""
    base = Path(tempfile.mkdtemp(prefix="customer-ratings-tmpfs-"))
    base.chmod(0o755)  # the server's user must reach the mount point
    mount = base / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, f"cannot mount a tmpfs (this test needs root): {done.stderr}"
    name = f"small_{uuid.uuid4().hex[:8]}"
    try:
        with _db.connect(database_url) as conn:
            (data_dir,) = conn.execute("SHOW data_directory").fetchone()  # type: ignore[misc]
            owner = os.stat(data_dir)
            os.chown(mount, owner.st_uid, owner.st_gid)
            conn.execute(f"CREATE TABLESPACE {name} LOCATION '{mount}'")
        try:
            yield name
        finally:
            with _db.connect(database_url) as conn:
                conn.execute("ALTER TABLE IF EXISTS customer_rating_agency_a SET TABLESPACE pg_default")
                conn.execute(f"DROP TABLESPACE IF EXISTS {name}")
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("rows", [220_000, LARGE_ROWS * 2], ids=["small", "large"])
def test_disk_full(database_url: str, tmp_path: Path, small_disk: str, rows: int) -> None:
    """A's v1 (2,000 rows) fits the 8 MiB disk; its v2 (~14 MB or ~40 MB of table) does not."""
    setup = Setup(database_url, tmp_path, rows, a_rows_v1=SMALL_ROWS)
    assert ((setup.v2 / "Customer Rating Agency A Inc.csv").stat().st_size >= 8 << 20) == (rows > LARGE_ROWS)
    setup.sql(f"ALTER TABLE customer_rating_agency_a SET TABLESPACE {small_disk}")
    run = setup.load(setup.v2)
    setup.check_failed_cleanly(run, "No space left on device")
    setup.sql("ALTER TABLE customer_rating_agency_a SET TABLESPACE pg_default")
    setup.next_load_succeeds()


def test_library_call_releases_everything(database_url: str, tmp_path: Path) -> None:
    """In-process: the failed load leaves its connection usable, holds no lock and no open transaction."""
    setup = Setup(database_url, tmp_path, SMALL_ROWS)
    setup.sql(BOOM)
    source = Source(name="agency_a", table="customer_rating_agency_a", file_pattern="*.csv")
    outcome: list[Any] = []

    def work() -> None:
        with open_database(Settings(database_url=database_url)) as db:
            try:
                load_source(db, source, setup.v2 / "Customer Rating Agency A Inc.csv")
            except CustomerRatingsError as exc:
                outcome.append(exc)
            with _db.connect(database_url) as other:
                outcome.append(other.execute(
                    """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                       AND state LIKE 'idle in transaction%'""").fetchone())
                outcome.append(other.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone())

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), f"load_source hung for {BOUND} s"
    assert len(outcome) == 3, outcome
    assert "nothing of it was committed" in str(outcome[0])
    assert outcome[1:] == [(0,), (0,)]
