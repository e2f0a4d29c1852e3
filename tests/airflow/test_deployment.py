"""The DAGs in a real Airflow deployment: api-server, scheduler, dag-processor and triggerer as subprocesses, the
LocalExecutor, a fresh metadata database on the machine's PostgreSQL, the repository's DAGs folder and a data
folder per day. Everything is driven and observed through the api-server's REST API, as an operator would.

Run by .ci/run (marker ``deployment``); it needs a PostgreSQL server that accepts the ``postgres`` user without a
password (CUSTOMER_RATINGS_DEPLOYMENT_PG, default ``postgresql://postgres@127.0.0.1:5432/postgres``) and is
skipped unless CUSTOMER_RATINGS_DEPLOYMENT_TEST=1, so a plain ``pytest`` does not start an Airflow. Every
process it starts is stopped, and both databases it creates are dropped, in the fixture's teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("airflow", reason="Apache Airflow is not installed: the deployment test needs the airflow extra")

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

import customer_ratings

from .conftest import DAGS_FOLDER, SAMPLE

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.skipif(os.environ.get("CUSTOMER_RATINGS_DEPLOYMENT_TEST") != "1",
                       reason="set CUSTOMER_RATINGS_DEPLOYMENT_TEST=1 to start a real Airflow (see .ci/run)"),
]

LOAD, REPORT = "customer_ratings_load", "customer_ratings_report"
ADMIN_URL = os.environ.get("CUSTOMER_RATINGS_DEPLOYMENT_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AIRFLOW = Path(sys.executable).parent / "airflow"
HEADER = "customer_number,customer_rating,customer_rating_limit,customer_status\n"
AGENCY_FILE = "Customer Rating Agency {} Inc.csv"
WAIT = 150.0  # seconds: the bound on any one wait for Airflow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url(name: str, driver: str = "postgresql") -> str:
    params = pg_conninfo.conninfo_to_dict(ADMIN_URL)
    user, host, port = params.get("user", "postgres"), params.get("host", "127.0.0.1"), params.get("port", "5432")
    return f"{driver}://{user}@{host}:{port}/{name}"


class Api:
    """The api-server's REST API, with the simple auth manager's all-admins token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def login(self) -> None:
        self.token = self.call("GET", "/auth/token")["access_token"]

    def unpause(self, dag_id: str, paused: bool = False) -> None:
        self.call("PATCH", f"/api/v2/dags/{dag_id}?update_mask=is_paused", {"is_paused": paused})

    def trigger(self, dag_id: str, run_id: str, logical_date: str) -> None:
        self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": logical_date})

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """task_id or load[agency] -> the task instance."""
        found = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")
        return {(f"{ti['task_id']}[{ti['rendered_map_index']}]" if ti["map_index"] >= 0 else ti["task_id"]): ti
                for ti in found["task_instances"]}


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT, every: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


class Deployment:
    def __init__(self, root: Path, api: Api, logs: Path, data_url: str) -> None:
        self.root, self.api, self.logs, self.data_url = root, api, logs, data_url
        self.data, self.out = root / "data", root / "out"

    def day_folder(self, day: str, files: dict[str, str | Path]) -> Path:
        """The data folder of ``day``: agency letter -> CSV text, or a path to copy, or ("link", target)."""
        folder = self.data / day
        folder.mkdir(parents=True)
        for letter, content in files.items():
            target = folder / AGENCY_FILE.format(letter)
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_text(content)
        return folder

    def report(self, day: str) -> Path:
        return self.out / f"Customer_Rating_Aggregate_Report_{day.replace('-', '')}.csv"

    def wait_run(self, dag_id: str, run_id: str, state: str = "success") -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            run = self.api.run(dag_id, run_id)
            if run["state"] in ("success", "failed") and run["state"] != state:
                raise AssertionError(f"{dag_id} {run_id} ended {run['state']}: "
                                     f"{self.api.task_instances(dag_id, run_id)}\n{self.tail_logs()}")
            return run if run["state"] == state else None

        return dict(wait_for(f"{dag_id} run {run_id} to be {state}", done))

    def tail_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.logs.glob("*.log")))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=5).close()
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL at {ADMIN_URL}: {exc}")
    root = tmp_path_factory.mktemp("deployment")
    home, logs = root / "airflow-home", root / "process-logs"
    home.mkdir()
    logs.mkdir()
    # The built-in agencies, but agency_d's files are links into a share mounted on the workers (the fourth
    # date's scenario): without follow_symlinks a link out of the data folder is refused (issue 9).
    sources = root / "sources.toml"
    sources.write_text(
        (Path(customer_ratings.__file__).parent / "default_sources.toml").read_text()
        + "\nfollow_symlinks = true\n")
    suffix = uuid.uuid4().hex[:10]
    meta_db, data_db = f"cr_airflow_meta_{suffix}", f"cr_airflow_data_{suffix}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CUSTOMER_RATINGS_"))}
    env.update({
        "PATH": f"{AIRFLOW.parent}{os.pathsep}{env.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url(meta_db, "postgresql+psycopg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": database_url(meta_db, "postgresql+psycopg"),
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
        # The DAGs' settings: triggered runs only, quick retries, the ratings database by URL, a folder per day.
        "CUSTOMER_RATINGS_SCHEDULE": "none",
        "CUSTOMER_RATINGS_RETRIES": "3",
        "CUSTOMER_RATINGS_RETRY_DELAY": "3",
        "CUSTOMER_RATINGS_DATABASE_URL": database_url(data_db),
        "AIRFLOW_VAR_CUSTOMER_RATINGS_DATA_DIR": str(root / "data" / "{date:%Y-%m-%d}"),
        "CUSTOMER_RATINGS_OUTPUT_DIR": str(root / "out"),
        "CUSTOMER_RATINGS_CONFIG": str(sources),
    })
    processes: list[subprocess.Popen[bytes]] = []
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for name in (meta_db, data_db):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        migrate = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True,
                                 timeout=300)
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        for component in (["api-server"], ["scheduler"], ["dag-processor"], ["triggerer"]):
            log = open(logs / f"{component[0]}.log", "wb")  # noqa: SIM115 - closed below, the child keeps a copy
            try:
                processes.append(subprocess.Popen([str(AIRFLOW), *component], env=env, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True))
            finally:
                log.close()
        api = Api(f"http://127.0.0.1:{port}")
        deployment = Deployment(root, api, logs, database_url(data_db))

        def started() -> bool:
            for process in processes:
                assert process.poll() is None, f"{process.args} exited {process.returncode}\n{deployment.tail_logs()}"
            api.login()
            return True

        wait_for("the api-server", started)
        yield deployment
    finally:
        stop(processes)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in (meta_db, data_db):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process group this test started (a component and its task processes), a bounded wait for
    all of them, then SIGKILL to whatever of those groups is left."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def sample(letter: str) -> Path:
    return SAMPLE / AGENCY_FILE.format(letter)


def replace_line(report: str, agency: str, line: str) -> str:
    old = next(row for row in report.splitlines() if row.startswith(f"{agency},"))
    return report.replace(old + "\n", line + "\n")


def test_loads_reports_catch_up_and_retries_in_a_running_deployment(deployment: Deployment) -> None:
    api, started = deployment.api, time.monotonic()
    for dag_id in (LOAD, REPORT):
        wait_for(f"{dag_id} parsed by the dag-processor", lambda d=dag_id: api.call("GET", f"/api/v2/dags/{d}"))
        api.unpause(dag_id)

    c2 = HEADER + "1,100,9,high-value\n2,5,9,low-value\n"
    a3 = HEADER + "1,7,9,low-value\n"
    report1 = (SAMPLE / "Customer_Rating_Aggregate_Report_20250513.csv").read_text()
    report2 = replace_line(report1, "agency_c", "agency_c,2,105,1,0,0.00")
    report3 = replace_line(report2, "agency_a", "agency_a,1,7,0,0,0.00")
    deployment.day_folder("2025-05-13", {x: sample(x) for x in "ABCD"})
    deployment.day_folder("2025-05-14", {"A": sample("A"), "B": sample("B"), "C": c2, "D": sample("D")})
    deployment.day_folder("2025-05-15", {"A": a3, "B": sample("B"), "C": c2, "D": sample("D")})

    # Two dates, back to back: each load run's event triggers the report DAG (runs may be merged by Airflow:
    # either way one report per date).
    api.trigger(LOAD, "day1", "2025-05-13T00:00:00Z")
    api.trigger(LOAD, "day2", "2025-05-14T00:00:00Z")
    for run_id in ("day1", "day2"):
        deployment.wait_run(LOAD, run_id)
    expected = {"2025-05-13": report1, "2025-05-14": report2}

    def reports_written() -> bool:
        return all(deployment.report(d).exists() and deployment.report(d).read_text() == text
                   for d, text in expected.items())

    wait_for("both reports, byte for byte", reports_written)
    assert all(run["state"] in ("success", "running", "queued") for run in api.runs(REPORT))
    print(f"two dates loaded and reported after {time.monotonic() - started:.0f} s")

    # The report DAG paused: the third date's load runs, no report is written for it (Airflow drops the event
    # for a paused DAG); a report deleted by hand is lost too, for now.
    api.unpause(REPORT, paused=True)
    report_runs = len(api.runs(REPORT))
    deployment.report("2025-05-13").unlink()
    api.trigger(LOAD, "day3", "2025-05-15T00:00:00Z")
    deployment.wait_run(LOAD, "day3")
    time.sleep(5)
    assert not deployment.report("2025-05-15").exists()
    assert len(api.runs(REPORT)) == report_runs
    api.unpause(REPORT)

    # The fourth date: agency_d's file is listed but lives on a share the worker cannot see yet. Its load is
    # retried (not rejected) and succeeds once the share is there; the report run that follows writes the
    # fourth date and catches up the third date and the deleted first one, identical.
    share = deployment.root / "agency-d-share"
    day4 = deployment.day_folder("2025-05-16", {"A": a3, "B": sample("B"), "C": c2})
    (day4 / AGENCY_FILE.format("D")).symlink_to(share / AGENCY_FILE.format("D"))
    api.trigger(LOAD, "day4", "2025-05-16T00:00:00Z")

    def agency_d() -> dict[str, Any] | None:
        """load[agency_d]: map index 3, find_files lists the agencies by name (a task instance between tries
        has no rendered map index yet)."""
        return next((ti for ti in api.task_instances(LOAD, "day4").values()
                     if ti["task_id"] == "load" and ti["map_index"] == 3), None)

    def agency_d_waits_for_a_retry() -> bool:
        ti = agency_d()
        assert ti is None or ti["state"] not in ("failed", "success"), ti
        return ti is not None and ti["state"] == "up_for_retry"

    wait_for("load[agency_d] up for retry", agency_d_waits_for_a_retry, every=0.5)
    share.mkdir()
    shutil.copyfile(sample("D"), share / AGENCY_FILE.format("D"))
    deployment.wait_run(LOAD, "day4")
    ti = agency_d()
    assert ti is not None and (ti["rendered_map_index"], ti["state"]) == ("agency_d", "success"), ti
    assert ti["try_number"] > 1, ti
    expected = {"2025-05-13": report1, "2025-05-14": report2, "2025-05-15": report3, "2025-05-16": report3}
    wait_for("the fourth report and the caught-up ones", reports_written)
    with psycopg.connect(deployment.data_url) as conn:
        statuses = conn.execute("SELECT as_of_date::text, source, status FROM load_history "
                                "WHERE source = 'agency_d' ORDER BY load_id").fetchall()
    assert [s for _, _, s in statuses] == ["loaded", "unchanged", "unchanged", "unchanged"], statuses
    print(f"deployment scenario done in {time.monotonic() - started:.0f} s")

