"""The command line: parses arguments, shows progress and the summary, maps errors to exit codes.

Exit codes: 0 every file loaded (invalid rows are not a failure), 1 a file was rejected or a load failed,
2 bad usage or bad config. Errors are one line on stderr; no tracebacks for bad input.
"""

from __future__ import annotations

import gc
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from .config import Config, Settings, Source, load_config
from .db.migrate import ensure_agency_tables
from .db.server import Database, open_database
from .discovery import discover
from .errors import ConfigError, CustomerRatingsError
from .load import ProgressFn
from .outputs import check_writable
from .pipeline import RunSummary, init_database, load_sources
from .report import report_notes, write_report

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Load rating agencies' daily CSV files into PostgreSQL and write the aggregate report.",
)
# No emoji codes (":x:") or highlighting: file names and messages are data and must print as they are.
stdout = Console(emoji=False, highlight=False)
stderr = Console(stderr=True, soft_wrap=True, emoji=False, highlight=False)
log = logging.getLogger("customer_ratings")

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
    help="Folder the report is written into, or s3://BUCKET/PREFIX/ (gs://, az://).")]
DateOpt = Annotated[
    str | None,
    typer.Option("--date", help="The as-of date the files are for, YYYY-MM-DD. Default: today (local time).",
                 metavar="YYYY-MM-DD"),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Load files even when unchanged since the last load.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]


@app.command()
def init(config: ConfigOpt = None) -> None:
    """Create the database, its tables and every configured agency's table (applies migrations)."""
    with _errors():
        cfg = load_config(config)
        init_database(Settings.from_env(), cfg)
    stderr.print(f"database ready with {len(cfg.sources)} source(s)")


@app.command()
def load(data_dir: DataDirOpt, date_: DateOpt = None, config: ConfigOpt = None, force: ForceOpt = False,
         quiet: QuietOpt = False) -> None:
    """Load each agency's file for the date from DATA_DIR, replacing that agency's older data."""
    with _errors():
        summary = _load(data_dir, config, force, quiet, _parse_date(date_))
    raise typer.Exit(summary.exit_code)


@app.command()
def report(output_dir: OutputDirOpt, date_: DateOpt = None, config: ConfigOpt = None) -> None:
    """Write Customer_Rating_Aggregate_Report_YYYYMMDD.csv from each agency's load current as of the date."""
    with _errors():
        day = _parse_date(date_)
        cfg = load_config(config)
        with open_database(Settings.from_env()) as db:
            _write_report(db, cfg, output_dir, day)


@app.command()
def run(data_dir: DataDirOpt, output_dir: OutputDirOpt, date_: DateOpt = None, config: ConfigOpt = None,
        force: ForceOpt = False, quiet: QuietOpt = False) -> None:
    """Load every agency (as `load`), then write the report (as `report`)."""
    with _errors():
        day = _parse_date(date_)
        summary = _load(data_dir, config, force, quiet, day, report_to=output_dir)
    raise typer.Exit(summary.exit_code)


def _write_report(db: Database, cfg: Config, output_dir: str, day: date) -> None:
    names = [src.name for src in cfg.sources]
    path = write_report(db, output_dir, day, names)
    for note in report_notes(db, day, names):
        stderr.print(f"note: {note}", markup=False, highlight=False)
    stderr.print(f"report written: {path}", markup=False, highlight=False)


def _load(data_dir: str, config_path: Path | None, force: bool, quiet: bool, day: date,
          report_to: str | None = None) -> RunSummary:
    cfg = load_config(config_path)
    found = discover(cfg, data_dir, day=day)  # config and folder problems stop us before the database starts
    if report_to is not None:
        check_writable(report_to)  # run: the output is writable before anything is loaded (OutputError: exit 2)
    with open_database(Settings.from_env()) as db:
        ensure_agency_tables(db.connection(), cfg)
        with _progress(quiet) as on_file:
            summary = load_sources(db, cfg, data_dir, force=force, progress=on_file, discovery=found, as_of=day)
        _print_summary(summary, cfg)
        if report_to is not None:
            _write_report(db, cfg, report_to, day)
    for result in summary.results:
        if result.status in ("rejected", "failed"):
            stderr.print(f"error: {result.source}: {result.error}", markup=False, highlight=False)
    for name in summary.missing:
        pattern = next(src.file_pattern for src in cfg.sources if src.name == name)
        stderr.print(f"error: {name}: no file for {day} matching {pattern!r} in {data_dir}; it keeps its data",
                     markup=False, highlight=False)
    return summary


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[Source, Path], ProgressFn | None] | None]:
    if quiet or not stderr.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TextColumn("{task.fields[rows]:,} rows"), TimeElapsedColumn(), console=stderr, transient=False,
    )

    def on_file(source: Source, path: Path) -> ProgressFn:
        total = path.stat().st_size if path.is_file() else None
        task = bar.add_task(escape(source.name), total=total, rows=0)

        def advance(nbytes: int, nrows: int) -> None:
            bar.update(task, advance=nbytes, rows=bar.tasks[task].fields["rows"] + nrows)

        return advance

    with bar:
        yield on_file


def _print_summary(summary: RunSummary, cfg: Config) -> None:
    table = Table(title="customer-ratings load", title_justify="left")
    for column in ("agency", "file", "status", "read", "loaded", "invalid"):
        table.add_column(column, justify="right" if column in ("read", "loaded", "invalid") else "left")
    styles = {"loaded": "green", "unchanged": "cyan", "rejected": "red", "failed": "red"}
    for r in summary.results:
        status = f"[{styles[r.status]}]{r.status}[/]"
        if r.backfill:
            status += f" (backfill: current data is from {r.current_as_of})"
        table.add_row(escape(r.source), escape(r.path.name), status, f"{r.rows_read:,}",
                      f"{r.rows_loaded:,}", f"{r.rows_invalid:,}")
    for name in summary.missing:
        table.add_row(escape(name), "-", "[red]missing[/]", "", "", "")
    stdout.print(table)
    if summary.unmatched:
        names = ", ".join(p.name for p in summary.unmatched)
        stdout.print(f"unmatched files (left alone): {names}", markup=False, highlight=False)


def _parse_date(value: str | None) -> date:
    if value is None:
        return date.today()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):  # fromisoformat also takes 20251130 and 2025W011
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--date {value!r} is not a date: use YYYY-MM-DD, e.g. 2025-05-13") from None


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the package's errors into one line on stderr and the exit code SPEC.md gives."""
    try:
        yield
    except ConfigError as exc:
        for problem in exc.problems:
            stderr.print(f"error: {problem}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except CustomerRatingsError as exc:
        stderr.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        stderr.print(f"error: database: {first}", markup=False, highlight=False)
        raise typer.Exit(1) from None


def main() -> None:
    """Entry point of the ``customer-ratings`` command."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The imports made a few hundred thousand long-lived objects; keep the cyclic GC from walking them again
    # and again during a load (measured: about 1% of the machine's CPU).
    gc.freeze()
    app(prog_name="customer-ratings")
