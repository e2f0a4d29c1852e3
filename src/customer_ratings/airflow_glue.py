"""What the Airflow DAGs (``dags/customer_ratings_dags.py``) need from a worker, kept out of the DAG file.

Settings (Airflow Variables, else environment variables), the Airflow Connection as a database URL, the
as-of date of a run, the report dates of a report run (triggering events and catch-up), the check that the
data location is reachable, and the failure alert. Imported by the tasks at run time only: the DAG processor
never imports this module (it imports Airflow, psycopg and the library).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from .config import Config, Settings
from .days import local_today
from .db.server import Database
from .errors import CustomerRatingsError, TransientDatabaseError
from .report import report_name

log = logging.getLogger("customer_ratings.airflow")

DEFAULT_CONN_ID = "customer_ratings_db"

#: Run-time settings: Airflow Variable key -> the plain environment variable used when the Variable is unset.
#: (A Variable can also be given as an environment variable: AIRFLOW_VAR_CUSTOMER_RATINGS_DATA_DIR=...)
VARIABLES = {
    "customer_ratings_data_dir": "CUSTOMER_RATINGS_DATA_DIR",
    "customer_ratings_output_dir": "CUSTOMER_RATINGS_OUTPUT_DIR",
    "customer_ratings_config": "CUSTOMER_RATINGS_CONFIG",
    "customer_ratings_conn_id": "CUSTOMER_RATINGS_CONN_ID",
    "customer_ratings_catchup_days": "CUSTOMER_RATINGS_CATCHUP_DAYS",
    "customer_ratings_alert_callback": "CUSTOMER_RATINGS_ALERT_CALLBACK",
    "customer_ratings_alert_webhook": "CUSTOMER_RATINGS_ALERT_WEBHOOK",
}

#: How many days back the report task looks for dates with loads but no report file (Variable
#: customer_ratings_catchup_days).
DEFAULT_CATCHUP_DAYS = 31

#: The statuses that make a day worth a report: the day's history has an outcome for an agency.
REPORTED_STATUSES = ("loaded", "unchanged", "rejected", "missing")


class DataLocationUnavailable(Exception):
    """The data folder (or a file in it) cannot be seen from this worker: a mount that is missing, a permission,
    a network share that is down. An infrastructure error, not a verdict on a file: deliberately not a
    CustomerRatingsError, so Airflow retries the task with backoff."""


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
    params: dict[str, Any] = {}
    ignored = []
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


def settings() -> Settings:
    """The library's Settings: the Airflow Connection when it is defined, else the CLI's defaults
    (CUSTOMER_RATINGS_DATABASE_URL, else the embedded server under CUSTOMER_RATINGS_HOME)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

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


def sources_config() -> Config:
    """The sources file: Variable customer_ratings_config / CUSTOMER_RATINGS_CONFIG, else the built-in one."""
    from . import load_config

    return load_config(setting("customer_ratings_config") or None)


def required_dir(key: str, day: date | None = None) -> Path:
    """A folder setting the CLI takes as a required option (--data-dir, --output-dir).

    ``{date:FORMAT}`` in the value (any strftime format) is replaced by ``day``, so a data folder per day
    (``/data/ratings/{date:%Y-%m-%d}``) works.
    """
    from airflow.sdk.exceptions import AirflowFailException

    value = setting(key)
    if not value:
        raise AirflowFailException(
            f"set the Airflow Variable {key} (or the environment variable {VARIABLES[key]}): "
            "it has no default, like the CLI option it stands for"
        )
    if "{" in value:
        try:
            value = value.format(date=day or local_today())
        except (KeyError, IndexError, ValueError) as exc:
            raise AirflowFailException(f"Airflow Variable {key} = {value!r}: only {{date:FORMAT}} may be "
                                       f"used in it ({exc})") from None
    return Path(value)


def check_data_dir(data_dir: Path) -> None:
    """Raise DataLocationUnavailable unless ``data_dir`` is a folder this worker can list."""
    try:
        with os.scandir(data_dir) as entries:
            next(entries, None)
    except NotADirectoryError:
        raise DataLocationUnavailable(f"data folder {data_dir} is not a folder on this worker") from None
    except OSError as exc:
        raise DataLocationUnavailable(
            f"data folder {data_dir} cannot be read on this worker ({exc.strerror}): is the share mounted? "
            "Retrying") from None


def check_data_file(path: Path) -> None:
    """Raise DataLocationUnavailable when ``path`` (found by find_files) cannot be seen or read from this
    worker; a file that is there but is not a regular file is for the load to reject."""
    check_data_dir(path.parent)
    try:
        os.stat(path)
    except OSError as exc:
        raise DataLocationUnavailable(
            f"{path} cannot be seen on this worker ({exc.strerror}), though it was listed: "
            "is the share mounted here? Retrying") from None
    if not os.access(path, os.R_OK):
        raise DataLocationUnavailable(f"{path} cannot be read on this worker (permission denied): Retrying")


@contextmanager
def library_errors(prefix: str = "") -> Iterator[None]:
    """Errors retrying cannot fix fail the task at once, with the library's one-line message in the log.

    TransientDatabaseError, and anything unexpected, propagate: Airflow retries them.
    """
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except TransientDatabaseError:
        raise
    except CustomerRatingsError as exc:
        raise AirflowFailException(f"{prefix}{exc}") from exc


# ----------------------------------------------------------------------------------------------------------
# Dates


def local_date(when: datetime, context: Any) -> date:
    """``when`` as a date in the DAG's timezone."""
    import pendulum

    return pendulum.instance(when).in_timezone(context["dag"].timezone).date()


def run_date(context: Any) -> date:
    """The as-of date of a load run: its logical date, in the DAG's timezone.

    The load DAG's schedule is a data-interval timetable: the run for [D, D+1) starts at D+1 00:00 and its
    logical date is D, the day the files are for. A manual run or a backfill for D has logical date D too. A run
    without a logical date (triggered without one) stands for the day it was due.
    """
    when = context.get("logical_date") or context["dag_run"].run_after
    return local_date(when, context)


def event_dates(context: Any) -> list[date]:
    """The as-of dates of the load runs whose events triggered this run, each once, in order."""
    dates = {
        date.fromisoformat(str(event.extra["run_date"]))
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
        if (event.extra or {}).get("run_date")
    }
    return sorted(dates)


def report_dates(context: Any) -> list[date]:
    """The dates a report run must (re)write: its logical date when it has one (a manual run), and the date of
    every load run whose event triggered it (Airflow merges the events that arrive while a report run is
    queued or running into one run). A run with neither stands for the day it was due."""
    dates = set(event_dates(context))
    if context.get("logical_date") is not None:
        dates.add(local_date(context["logical_date"], context))
    return sorted(dates) or [run_date(context)]


def catchup_days() -> int:
    """Variable customer_ratings_catchup_days (default 31; 0 turns the catch-up off)."""
    from airflow.sdk.exceptions import AirflowFailException

    value = setting("customer_ratings_catchup_days") or str(DEFAULT_CATCHUP_DAYS)
    try:
        days = int(value)
    except ValueError:
        raise AirflowFailException(f"customer_ratings_catchup_days = {value!r}: it must be a number of days") from None
    if days < 0:
        raise AirflowFailException(f"customer_ratings_catchup_days = {days}: it must be 0 or more")
    return days


def missing_report_dates(db: Database, output_dir: Path, until: date, days: int) -> list[date]:
    """Dates in the ``days`` days up to ``until`` that have an outcome in the load history but no report file
    in ``output_dir`` (their report run was lost: the report DAG was paused, a run failed for good...)."""
    if days <= 0:
        return []
    rows = db.connection().execute(
        "SELECT DISTINCT as_of_date FROM load_history WHERE status = ANY(%s) AND as_of_date > %s "
        "AND as_of_date <= %s ORDER BY 1",
        (list(REPORTED_STATUSES), until - timedelta(days=days), until),
    ).fetchall()
    return [day for (day,) in rows if not (output_dir / report_name(day)).exists()]


def write_reports(db: Database, output_dir: Path, dates: Sequence[date], sources: Sequence[str]) -> list[Path | str]:
    """Write the report of every date in ``dates`` (reports for past dates are rewritten identically)."""
    from .report import report_notes, write_report

    written: list[Path | str] = []
    for day in sorted(set(dates)):
        written.append(write_report(db, output_dir, day, sources))
        for note in report_notes(db, day, sources):
            log.warning("report for %s: %s", day, note)
        log.info("report for %s written: %s", day, written[-1])
    return written


# ----------------------------------------------------------------------------------------------------------
# Alerts


def alert_line(context: Any) -> str:
    """One line saying what failed: DAG, task (with the agency), the run's date and the error."""
    ti = context.get("ti") or context.get("task_instance")
    task = getattr(ti, "task_id", "?")
    label = context.get("agency") or getattr(ti, "rendered_map_index", None)
    if label:
        task += f"[{label}]"
    dag_id = getattr(context.get("dag"), "dag_id", None) or getattr(ti, "dag_id", "?")
    try:
        day = run_date(context).isoformat()
    except Exception:  # noqa: BLE001 - an alert must go out even when the context is odd
        day = "?"
    error = context.get("exception")
    what = " ".join(str(error).split()) if error is not None else "failed"
    return f"customer-ratings ALERT: {dag_id} {task} failed for {day}: {what}"


def on_failure(context: Any) -> None:
    """The DAGs' ``on_failure_callback``: a task failed for good (a rejected or missing file, retries used up).

    Calls the function named by the Variable customer_ratings_alert_callback (``package.module:function`` or
    ``package.module.function``) with the task's context when it is set; else logs one ``ALERT`` line and,
    when the Variable customer_ratings_alert_webhook holds a URL, posts ``{"text": line}`` to it as JSON
    (Slack, Teams and Mattermost incoming webhooks take that). An alert that cannot be sent is logged: it
    never changes the task's outcome.
    """
    try:
        path = setting("customer_ratings_alert_callback")
        if path:
            _import_callable(path)(context)
            return
        line = alert_line(context)
        log.error("%s", line)
        url = setting("customer_ratings_alert_webhook")
        if url:
            post_webhook(url, {"text": line})
    except Exception as exc:  # noqa: BLE001 - a failed alert never changes the task's outcome
        log.error("customer-ratings: the failure alert could not be sent: %s: %s", type(exc).__name__, exc)


def post_webhook(url: str, payload: dict[str, Any], timeout: float = 10.0) -> None:
    """POST ``payload`` as JSON to ``url``; raises on a non-2xx answer."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("customer_ratings_alert_webhook must be an http:// or https:// URL")
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        answer.read()


def _import_callable(path: str) -> Any:
    module, _, name = path.partition(":") if ":" in path else path.rpartition(".")
    if not module or not name:
        raise ValueError(f"customer_ratings_alert_callback = {path!r}: use package.module:function")
    function = getattr(importlib.import_module(module), name)
    if not callable(function):
        raise ValueError(f"customer_ratings_alert_callback = {path!r} is not callable")
    return function
