"""Airflow DAGs for customer-ratings: one mapped load task per agency, then the aggregate report.

Point ``AIRFLOW__CORE__DAGS_FOLDER`` at this folder (or copy this file into your DAGs folder) on every
Airflow component, and install ``customer-ratings[airflow]`` where tasks run. See docs/airflow.md.

This file holds DAG definitions only. The DAG processor parses it every few seconds, so it does no I/O and
imports nothing of the library at import time: it reads a few environment variables (schedule, pool, retry
delay) and builds the DAG objects. Everything else (Airflow Variables, the Connection, the sources file, the
data folder, the database) is read inside the tasks, at run time, on a worker, through
``customer_ratings.airflow_glue`` and the same library functions the ``customer-ratings`` CLI calls.

``customer_ratings_load`` (default ``@daily``; the run for the data interval [D, D+1) starts at D+1 00:00, its
logical date and the files' as-of date are D)::

    find_files -> load (mapped: one task per agency) -+-> publish     (emits customer_rating)
                                                      +-> all_loaded  (fails the run if a load failed)

``customer_ratings_report`` (scheduled on ``customer_rating``)::

    report  (writes Customer_Rating_Aggregate_Report_YYYYMMDD.csv for every as-of date of the triggering load
             runs, and for each recent date with loads but no report yet)
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any, cast

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Asset, AssetAlias, TriggerRule, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

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

TAGS = ["customer-ratings"]

def _parse_time_setting(key: str, default: str) -> str:
    """A setting needed to build the DAG: AIRFLOW_VAR_<KEY>, else <KEY>, else default. Environment only:
    reading a Variable from the metadata database here would be I/O on every parse of this file."""
    name = key.upper()
    return (os.environ.get(f"AIRFLOW_VAR_{name}") or os.environ.get(name) or default).strip()


#: Parallel COPY streams of one load of a large file (8 MiB or more), each on a connection of its own
#: (customer_ratings.load): fixed here rather than one per core, because the workers' cores are not the
#: database's.
LOAD_STREAMS = max(1, min(16, int(_parse_time_setting("customer_ratings_load_streams", "2"))))

#: Pool slots one load task takes: the database connections a load can hold at once
#: (customer_ratings.load.connections_used): its own, one per COPY stream, and one for the invalid rows. Size
#: the pool in connections: a pool of N slots never lets the loads open more than N connections. The pool
#: needs at least this many slots.
LOAD_POOL_SLOTS = 1 + LOAD_STREAMS + 1


def _schedule() -> CronDataIntervalTimetable | None:
    """The load DAG's schedule: a cron expression or preset over data intervals, in Airflow's default timezone.

    A data-interval timetable (not Airflow 3's default CronTriggerTimetable) so that a run's logical date is the
    start of its interval: the @daily run that starts at D+1 00:00 has logical date D, the day its files are for.
    """
    value = _parse_time_setting("customer_ratings_schedule", "@daily")
    if value.lower() in ("", "none", "manual"):
        return None
    from airflow.settings import TIMEZONE

    return CronDataIntervalTimetable(value, timezone=TIMEZONE)


def alert_on_failure(context: Any) -> None:
    """on_failure_callback of every task: see customer_ratings.airflow_glue.on_failure (runs on the worker)."""
    from customer_ratings.airflow_glue import on_failure

    on_failure(context)


SCHEDULE = _schedule()

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "customer-ratings",
    # Retried: TransientDatabaseError, a data location this worker cannot see (DataLocationUnavailable), no
    # file at all for any agency, and unexpected errors (a retry is safe: each agency's replacement is one
    # transaction, and a file already loaded comes back "unchanged"). Never retried: a rejected or missing
    # file, a config error, a database that refuses us for good (AirflowFailException).
    "retries": int(_parse_time_setting("customer_ratings_retries", "3")),
    "retry_delay": timedelta(seconds=float(_parse_time_setting("customer_ratings_retry_delay", "120"))),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "pool": _parse_time_setting("customer_ratings_pool", "default_pool"),
    "on_failure_callback": alert_on_failure,
}


# ----------------------------------------------------------------------------------------------------------
# The DAGs


@dag(
    dag_id="customer_ratings_load",
    description="Load each agency's file of the day into PostgreSQL: one mapped task per agency",
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1),  # noqa: DTZ001 - naive: Airflow's default timezone, as the schedule
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=TAGS,
    doc_md=__doc__,
)
def customer_ratings_load() -> None:
    """find_files -> load (one mapped task per agency) -> publish the event the report DAG is scheduled on."""
    @task
    def find_files(**context: Any) -> list[dict[str, str]]:
        """Prepare the database (migrations, agency tables) and list every configured agency with its file of
        the day (the last by name matching its pattern; empty when it has none)."""
        from customer_ratings import discover, init_database
        from customer_ratings.airflow_glue import (
            DataLocationUnavailable,
            check_data_dir,
            library_errors,
            required_dir,
            run_date,
            settings,
            sources_config,
        )

        day = run_date(context)
        data_dir = required_dir("customer_ratings_data_dir", day)
        with library_errors("cannot start the load: "):
            config = sources_config()
        check_data_dir(data_dir)  # a folder this worker cannot see: retried
        with library_errors("cannot start the load: "):
            found = discover(config, data_dir, day=day)  # a {date:...} pattern takes the run's own file
            init_database(settings(), config)
        if not found.selected:
            raise DataLocationUnavailable(
                f"no file for any of the {len(config.sources)} configured agencies in {data_dir} for {day}: "
                "is the right folder mounted, have the agencies dropped their files? Retrying")
        for path in found.unmatched:
            log.warning("no source matches %s: left alone", path)
        files = []
        for source in sorted(config.sources, key=lambda s: s.name):
            selected = found.selected.get(source.name)
            if selected is None:
                log.warning("%s: no file matches %r in %s", source.name, source.file_pattern, data_dir)
            files.append({"source": source.name, "path": str(selected or ""), "data_dir": str(data_dir)})
        log.info("%d file(s) to load for %s: %s", len(found.selected), day, ", ".join(sorted(found.selected)))
        return files

    @task(outlets=[AGENCY_TABLES], map_index_template="{{ agency }}", pool_slots=LOAD_POOL_SLOTS)
    def load(file: dict[str, str], **context: Any) -> dict[str, Any]:
        """Load one agency's file: one atomic replacement of its data; a retry of a loaded file changes
        nothing. A rejected or missing file fails this task only, without retries; invalid rows do not fail
        it. A file this worker cannot see is retried."""
        from pathlib import Path

        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from customer_ratings import load_source, open_database
        from customer_ratings.airflow_glue import (
            check_data_file,
            library_errors,
            run_date,
            settings,
            sources_config,
        )
        from customer_ratings.errors import LoadStatus, RejectReason
        from customer_ratings.load import record_missing

        name, day = file["source"], run_date(context)
        cast(dict[str, Any], get_current_context())["agency"] = name  # the map index's label in the UI
        with library_errors(f"{name}: "):
            source = sources_config().source(name)
        if not file["path"]:
            data_dir = Path(file["data_dir"])
            with library_errors(f"{name}: "), open_database(settings()) as db:
                record_missing(db, source, data_dir.absolute().as_uri(), day)
            raise AirflowFailException(f"{name}: file missing for {day}: no file matches {source.file_pattern!r} "
                                       f"in {data_dir}; the agency keeps its previous data")
        path = Path(file["path"])
        log.info("%s: loading %s for %s (try %s)", name, path, day, context["ti"].try_number)
        check_data_file(path)  # listed by find_files but not visible here: retried
        with library_errors(f"{name}: "), open_database(settings()) as db:
            result = load_source(db, source, path, force=False, as_of=day, streams=LOAD_STREAMS)
        summary = {
            "source": name,
            "file": str(path),
            "status": result.status,
            "rows_read": result.rows_read,
            "rows_loaded": result.rows_loaded,
            "rows_invalid": result.rows_invalid,
            "load_id": result.load_id,
            "as_of": day.isoformat(),
        }
        log.info("%s: %s", name, summary)
        if result.status == LoadStatus.REJECTED:
            if result.retryable:  # still being written: a retry may help
                raise RuntimeError(f"{name}: {result.error}")
            if result.reason == RejectReason.UNREADABLE:
                check_data_file(path)  # vanished while loading: the location, not the file, is at fault
            log.error("%s: rejected: %s", name, result.error)  # result.error starts with the file's name
            raise AirflowFailException(
                f"{name}: file rejected, the agency keeps its previous data: {result.error}")
        if result.status not in (LoadStatus.LOADED, LoadStatus.UNCHANGED):
            raise RuntimeError(f"{name}: load {result.status}: {result.error}")
        if result.rows_invalid:
            log.warning("%s: %d invalid row(s) diverted to file_invalid_rows", name, result.rows_invalid)
        if result.status == LoadStatus.LOADED:
            table = Asset(name=f"customer_ratings.{source.table}", uri=f"customer_ratings://{source.table}")
            context["outlet_events"][AGENCY_TABLES].add(table, extra=summary)
        return summary

    @task(outlets=[CUSTOMER_RATING], trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
    def publish(**context: Any) -> str:
        """Every load of this run is done and one at least succeeded: announce customer_rating, which
        triggers customer_ratings_report for this run's date."""
        from customer_ratings.airflow_glue import run_date

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
    start_date=datetime(2025, 1, 1),  # noqa: DTZ001 - naive: Airflow's default timezone, as the schedule
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=TAGS,
    doc_md=__doc__,
)
def customer_ratings_report() -> None:
    """Write the report (and its companion files) of every as-of date that has loads but no report yet."""
    @task
    def report(**context: Any) -> list[str]:
        """Write, atomically, the report of every as-of date of the load runs that triggered this run (or of
        the logical date of a manual run), and of each date of the last customer_ratings_catchup_days days
        that has loads but no report file yet (reports lost while this DAG was paused)."""
        from customer_ratings import open_database
        from customer_ratings.airflow_glue import (
            catchup_days,
            library_errors,
            missing_report_dates,
            report_dates,
            required_dir,
            settings,
            sources_config,
            write_reports,
        )

        dates = report_dates(context)
        output_dir = required_dir("customer_ratings_output_dir")
        with library_errors("cannot write the report: "), open_database(settings()) as db:
            sources = [s.name for s in sources_config().sources]
            lost = missing_report_dates(db, output_dir, max(dates), catchup_days())
            if lost:
                log.warning("catching up reports lost or never written: %s", ", ".join(map(str, lost)))
            paths = write_reports(db, output_dir, sorted({*dates, *lost}), sources)
        return [str(p) for p in paths]

    report()


customer_ratings_load()
customer_ratings_report()
