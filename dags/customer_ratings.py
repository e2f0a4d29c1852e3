"""Airflow DAGs for customer-ratings: one mapped load task per agency, then the aggregate report.

Point ``AIRFLOW__CORE__DAGS_FOLDER`` at this folder (or copy this file into your DAGs folder) on every
Airflow component, and install ``customer-ratings[airflow]`` where tasks run. See docs/airflow.md.

The DAG processor parses this file every few seconds, so it holds no logic and does no I/O at import time: it
reads two environment variables (schedule, pool) and builds the DAG objects. Everything else (Airflow
Variables, the Connection, the sources file, the data folder, the database) is read inside the tasks, at run
time, on a worker, and the work is done by the same library functions the ``customer-ratings`` CLI calls.

``customer_ratings_load`` (cron, default ``@daily``)::

    find_files -> load (mapped: one task per agency) -+-> publish     (emits customer_rating)
                                                      +-> all_loaded  (fails the run if a load failed)

``customer_ratings_report`` (scheduled on ``customer_rating``)::

    report  (writes Customer_Rating_Aggregate_Report_YYYYMMDD.csv for the load run's logical date)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Asset, AssetAlias, TriggerRule, dag, task

log = logging.getLogger("customer_ratings.airflow")

# ----------------------------------------------------------------------------------------------------------
# Names other DAGs (and the tests) rely on.

#: The consolidated table the report reads. ``publish`` emits one event on it per load run, once every
#: agency's load of that run is done (loaded, unchanged or failed) and at least one of them succeeded.
#: ``customer_ratings_report`` is scheduled on it.
CUSTOMER_RATING = Asset(name="customer_ratings.customer_rating", uri="customer_ratings://customer_rating")

#: Each mapped load emits, through this alias, one event on ``customer_ratings://<agency table>`` when it
#: replaced that agency's data (not when its file was unchanged or rejected). The per-agency assets come
#: into being as agencies load, so adding an agency to the sources file needs no change here.
AGENCY_TABLES = AssetAlias(name="customer_ratings.agency_tables")

DEFAULT_CONN_ID = "customer_ratings_db"
TAGS = ["customer-ratings"]

#: Run-time settings: Airflow Variable key -> the plain environment variable used when the Variable is unset.
#: (A Variable can also be given as an environment variable: AIRFLOW_VAR_CUSTOMER_RATINGS_DATA_DIR=...)
VARIABLES = {
    "customer_ratings_data_dir": "CUSTOMER_RATINGS_DATA_DIR",
    "customer_ratings_output_dir": "CUSTOMER_RATINGS_OUTPUT_DIR",
    "customer_ratings_config": "CUSTOMER_RATINGS_CONFIG",
    "customer_ratings_conn_id": "CUSTOMER_RATINGS_CONN_ID",
}


def _parse_time_setting(key: str, default: str) -> str:
    """A setting needed to build the DAG: AIRFLOW_VAR_<KEY>, else <KEY>, else default. Environment only:
    reading a Variable from the metadata database here would be I/O on every parse of this file."""
    name = key.upper()
    return (os.environ.get(f"AIRFLOW_VAR_{name}") or os.environ.get(name) or default).strip()


def _schedule() -> str | None:
    value = _parse_time_setting("customer_ratings_schedule", "@daily")
    return None if value.lower() in ("", "none", "manual") else value


SCHEDULE = _schedule()

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "customer-ratings",
    # Retried: TransientDatabaseError and unexpected errors (a retry is safe: each agency's replacement is
    # one transaction, and a file already loaded comes back "unchanged"). Never retried: a rejected file,
    # a config error, a database that refuses us for good (AirflowFailException, see library_errors()).
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "pool": _parse_time_setting("customer_ratings_pool", "default_pool"),
}


# ----------------------------------------------------------------------------------------------------------
# Run-time helpers, called inside tasks only: settings resolution and error mapping, no business logic.


def setting(key: str, default: str | None = None) -> str | None:
    """Airflow Variable ``key`` (metastore, secrets backend or AIRFLOW_VAR_<KEY>), else the env var
    ``VARIABLES[key]``, else ``default``."""
    from airflow.sdk import Variable

    value = Variable.get(key, default=None)
    if value is None or not str(value).strip():
        value = os.environ.get(VARIABLES[key]) or default
    return str(value).strip() if value is not None else None


def connection_url(conn: Any) -> str:
    """An Airflow Connection (``postgres://`` or ``postgresql://`` URI, or fields) as a postgresql:// URL.

    ``schema`` is the database name (empty: the library's default, CustomerRatingData). Extras that are libpq
    parameters (``sslmode``, ``connect_timeout``, ``host`` for a socket directory, ...) are passed on; other
    extras (the Postgres provider's ``cursor``, ``iam``, ...) mean nothing to libpq and are left out.
    """
    from psycopg import pq

    conn_type = (conn.conn_type or "postgres").lower()
    if conn_type not in ("postgres", "postgresql"):
        raise ValueError(f"Airflow connection {conn.conn_id!r} has type {conn_type!r}: it must be postgres")
    url = "postgresql://"
    if conn.login:
        url += quote(conn.login, safe="")
        if conn.password:
            url += ":" + quote(conn.password, safe="")
        url += "@"
    if conn.host:
        url += f"[{conn.host}]" if ":" in conn.host else quote(conn.host, safe="")
    if conn.port:
        url += f":{int(conn.port)}"
    if conn.schema:
        url += "/" + quote(conn.schema, safe="")
    libpq = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
    params, ignored = {}, []
    for key, value in conn.extra_dejson.items():
        if key in libpq and isinstance(value, str | int | float | bool):
            params[key] = str(value).lower() if isinstance(value, bool) else value
        else:
            ignored.append(key)
    if ignored:
        log.info("connection %r: extras that are not libpq parameters ignored: %s", conn.conn_id, ignored)
    if params:
        url += "?" + urlencode(params)
    return url


def settings() -> Any:
    """The library's Settings: the Airflow Connection when it is defined, else the CLI's defaults
    (CUSTOMER_RATINGS_DATABASE_URL, else the embedded server under CUSTOMER_RATINGS_HOME)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

    from customer_ratings import Settings

    conn_id = setting("customer_ratings_conn_id", DEFAULT_CONN_ID) or DEFAULT_CONN_ID
    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        log.warning(
            "Airflow connection %r is not defined: using the CLI's default database "
            "(CUSTOMER_RATINGS_DATABASE_URL, else the embedded server under CUSTOMER_RATINGS_HOME, "
            "which is local to this worker)",
            conn_id,
        )
        return Settings.from_env()
    log.info("database: Airflow connection %r", conn_id)
    try:
        return Settings.from_env(database_url=connection_url(conn))
    except ValueError as exc:  # a connection of the wrong type: retrying cannot fix it
        raise AirflowFailException(str(exc)) from exc


def sources_config() -> Any:
    """The sources file: Variable customer_ratings_config / CUSTOMER_RATINGS_CONFIG, else the built-in one."""
    from customer_ratings import load_config

    return load_config(setting("customer_ratings_config") or None)


def required_dir(key: str) -> Any:
    """A folder setting the CLI takes as a required option (--data-dir, --output-dir)."""
    from pathlib import Path

    from airflow.sdk.exceptions import AirflowFailException

    value = setting(key)
    if not value:
        raise AirflowFailException(
            f"set the Airflow Variable {key} (or the environment variable {VARIABLES[key]}): "
            "it has no default, like the CLI option it stands for"
        )
    return Path(value)


@contextmanager
def library_errors(prefix: str = "") -> Iterator[None]:
    """Errors retrying cannot fix fail the task at once, with the library's one-line message in the log.

    TransientDatabaseError, and anything unexpected, propagate: Airflow retries them.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from customer_ratings import CustomerRatingsError, TransientDatabaseError

    try:
        yield
    except TransientDatabaseError:
        raise
    except CustomerRatingsError as exc:
        raise AirflowFailException(f"{prefix}{exc}") from exc


def run_date(context: Any) -> date:
    """The date a run stands for: its logical date (for a run without one, when it was due), in the DAG's
    timezone."""
    when = context.get("logical_date") or context["dag_run"].run_after
    return _local_date(when, context)


def report_date(context: Any) -> date:
    """The report's date: the run's logical date (manual run, dag.test). A run triggered by an asset has no
    logical date in Airflow 3: then the latest date of the load runs whose events triggered it."""
    if context.get("logical_date") is not None:
        return _local_date(context["logical_date"], context)
    dates = [
        date.fromisoformat(str(event.extra["run_date"]))
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
        if (event.extra or {}).get("run_date")
    ]
    return max(dates) if dates else run_date(context)


def _local_date(when: datetime, context: Any) -> date:
    import pendulum

    return pendulum.instance(when).in_timezone(context["dag"].timezone).date()


# ----------------------------------------------------------------------------------------------------------
# The DAGs


@dag(
    dag_id="customer_ratings_load",
    description="Load each agency's file of the day into PostgreSQL: one mapped task per agency",
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=TAGS,
    doc_md=__doc__,
)
def customer_ratings_load() -> None:
    @task
    def find_files() -> list[dict[str, str]]:
        """Prepare the database (migrations, agency tables) and list each configured agency's file of the day
        (the last by name matching its pattern)."""
        from customer_ratings import discover, init_database

        data_dir = required_dir("customer_ratings_data_dir")
        with library_errors("cannot start the load: "):
            config = sources_config()
            found = discover(config, data_dir)
            init_database(settings(), config)
        for source in config.sources:
            if source.name not in found.selected:
                log.warning("%s: no file matches %r in %s", source.name, source.file_pattern, data_dir)
        for path in found.unmatched:
            log.warning("no source matches %s: left alone", path)
        files = [{"source": name, "path": str(path)} for name, path in sorted(found.selected.items())]
        log.info("%d file(s) to load: %s", len(files), ", ".join(f["source"] for f in files) or "none")
        return files

    @task(outlets=[AGENCY_TABLES], map_index_template="{{ agency }}")
    def load(file: dict[str, str], **context: Any) -> dict[str, Any]:
        """Load one agency's file: one atomic replacement of its data; a retry of a loaded file changes
        nothing. A rejected file fails this task only, without retries; invalid rows do not fail it."""
        from pathlib import Path

        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from customer_ratings import load_source, open_database

        name, path = file["source"], Path(file["path"])
        get_current_context()["agency"] = name  # the map index's label in the UI
        log.info("%s: loading %s (try %s)", name, path, context["ti"].try_number)
        with library_errors(f"{name}: "):
            source = sources_config().source(name)
            with open_database(settings()) as db:
                result = load_source(db, source, path, force=False, as_of=run_date(context))
        summary = {
            "source": name,
            "file": str(path),
            "status": result.status,
            "rows_read": result.rows_read,
            "rows_loaded": result.rows_loaded,
            "rows_invalid": result.rows_invalid,
            "load_id": result.load_id,
        }
        log.info("%s: %s", name, summary)
        if result.status == "rejected":
            if str(getattr(result, "reason", "")) == "file_changed":  # still being written: a retry may help
                raise RuntimeError(f"{name}: {result.error}")
            log.error("%s: %s rejected: %s", name, path.name, result.error)
            raise AirflowFailException(
                f"{name}: file rejected, the agency keeps its previous data: {result.error}")
        if result.status not in ("loaded", "unchanged"):
            raise RuntimeError(f"{name}: load {result.status}: {result.error}")
        if result.rows_invalid:
            log.warning("%s: %d invalid row(s) diverted to file_invalid_rows", name, result.rows_invalid)
        if result.status == "loaded":
            table = Asset(name=f"customer_ratings.{source.table}", uri=f"customer_ratings://{source.table}")
            context["outlet_events"][AGENCY_TABLES].add(table, extra=summary)
        return summary

    @task(outlets=[CUSTOMER_RATING], trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
    def publish(**context: Any) -> str:
        """Every load of this run is done and one at least succeeded: announce customer_rating, which
        triggers customer_ratings_report for this run's date."""
        day = run_date(context).isoformat()
        context["outlet_events"][CUSTOMER_RATING].extra = {"run_date": day, "run_id": context["run_id"]}
        log.info("customer_rating is current for %s", day)
        return day

    loaded = load.expand(file=find_files())
    loaded >> publish()
    # publish runs whatever the loads' outcome, so it cannot carry the run's state: this leaf does. It is
    # upstream_failed, and so the run failed, when any agency's load failed.
    loaded >> EmptyOperator(task_id="all_loaded")


@dag(
    dag_id="customer_ratings_report",
    description="Write Customer_Rating_Aggregate_Report_YYYYMMDD.csv once a load run is done",
    schedule=[CUSTOMER_RATING],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=TAGS,
    doc_md=__doc__,
)
def customer_ratings_report() -> None:
    @task
    def report(**context: Any) -> str:
        """Write the aggregate report for the run's date, atomically, from each agency's current load."""
        from customer_ratings import open_database, write_report

        day = report_date(context)
        output_dir = required_dir("customer_ratings_output_dir")
        with library_errors("cannot write the report: "), open_database(settings()) as db:
            path = write_report(db, output_dir, day, [s.name for s in sources_config().sources])
        log.info("report for %s written: %s", day, path)
        return str(path)

    report()


customer_ratings_load()
customer_ratings_report()
