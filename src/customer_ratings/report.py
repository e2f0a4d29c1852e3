"""The aggregate report: report.sql -> ``Customer_Rating_Aggregate_Report_YYYYMMDD.csv``, written atomically
to a local folder (an anonymous file renamed over the target) or to object storage (one PUT, see
:mod:`customer_ratings.outputs`)."""

from __future__ import annotations

import csv
import ctypes
import io
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .days import local_today
from .db.server import Database
from .errors import ConfigError, OutputWriteFailed
from .inputs import is_url
from .outputs import write_atomic

REPORT_COLUMNS = (
    "customer",
    "count_customer_number",
    "sum_customer_rating",
    "high_value_count",
    "invalid_customer_number_count",
    "invalid_customer_number_percent",
)


def report_name(report_date: date) -> str:
    """The report's file name for ``report_date``."""
    return f"Customer_Rating_Aggregate_Report_{report_date:%Y%m%d}.csv"


def _write_atomically(folder: Path, target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that no reader and no crash ever sees it half-written.

    On Linux the data goes to an anonymous file in ``folder`` (O_TMPFILE), which gets a name only once it is
    complete and on disk, just before it is renamed over the target: a kill -9 mid-write leaves nothing.
    Elsewhere a named temporary file is used, which the next report removes if its writer died.
    """
    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    anonymous = _LINKAT is not None and hasattr(os, "O_TMPFILE")
    try:
        fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o644) if anonymous else -1
    except OSError:  # a file system without O_TMPFILE support
        anonymous = False
    if not anonymous:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked (a disk filling up): go on until ENOSPC
                view = view[os.write(fd, view):]
            os.fsync(fd)
            if anonymous:
                _link_fd(fd, tmp)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load_linkat() -> Any:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.linkat
    except (OSError, AttributeError):
        return None


_LINKAT = _load_linkat()
_AT_FDCWD, _AT_SYMLINK_FOLLOW = -100, 0x400


def _link_fd(fd: int, path: Path) -> None:
    """Give the anonymous file ``fd`` the name ``path`` (os.link cannot: it does not follow /proc links)."""
    source = f"/proc/self/fd/{fd}".encode()
    if _LINKAT(_AT_FDCWD, source, _AT_FDCWD, os.fsencode(path), _AT_SYMLINK_FOLLOW) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))


def _remove_stale_temporaries(output_dir: Path) -> None:
    """Delete temporary report files whose writer died (killed mid-write); a live writer's file stays."""
    for tmp in output_dir.glob(".Customer_Rating_Aggregate_Report_*.csv.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _query(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_text("utf-8").encode()


def _sources(db: Database, sources: Sequence[str] | None) -> list[str]:
    if sources is not None:
        return list(sources)
    return [r[0] for r in db.connection().execute("SELECT DISTINCT source FROM load_history")]


@dataclass(frozen=True)
class ReportRow:
    """One agency's line of the report, with the as-of date and load it comes from."""

    values: tuple[object, ...]
    as_of: date
    load_id: int

    def __iter__(self) -> Iterator[object]:
        """The report's six values, as written to the CSV."""
        return iter(self.values)

    @property
    def customer(self) -> str:
        """The agency."""
        return str(self.values[0])

    @property
    def complete(self) -> bool:
        """False for a load older than as-of dates whose numbers were not recorded."""
        return all(v is not None for v in self.values)


def report_rows(db: Database, report_date: date | None = None,
                sources: Sequence[str] | None = None) -> list[ReportRow]:
    """The report's rows for ``report_date`` (default today) over ``sources`` (default: every agency in the
    history), from each agency's load current as of that date (report.sql, one statement)."""
    params = {"day": report_date or local_today(), "sources": _sources(db, sources)}
    return [ReportRow(tuple(r[:6]), r[6], r[7]) for r in db.connection().execute(_query("report.sql"), params)]


def report_notes(db: Database, report_date: date, sources: Sequence[str] | None = None,
                 rows: Sequence[ReportRow] | None = None) -> list[str]:
    """What a reader of the report for ``report_date`` should know that its fixed columns cannot say: agencies
    whose row is from an older day (their file for the day was rejected, missing or not loaded yet), agencies
    with no load at all as of the day, and rows whose numbers predate as-of dates."""
    names = _sources(db, sources)
    rows = list(rows) if rows is not None else report_rows(db, report_date, names)
    day = {r[0]: r[1:] for r in db.connection().execute(_query("report_day.sql"),
                                                        {"day": report_date, "sources": names})}
    by_source = {r.customer: r for r in rows}
    notes = []
    for name in sorted(names):
        row = by_source.get(name)
        status, code, _error = day.get(name, (None, None, None))
        what = {None: "no load for that day", "missing": "its file for that day is missing",
                "rejected": f"its file for that day was rejected ({code})",
                "failed": "its load for that day failed"}.get(status)
        if row is None:
            notes.append(f"{name}: not in the report: no loaded file as of {report_date}"
                         + (f"; {what}" if status else ""))
        elif not row.complete:
            notes.append(f"{name}: not in the report: its load {row.load_id} of {row.as_of} predates as-of "
                         "dates, and its numbers were not recorded")
        elif row.as_of < report_date and what is not None:
            notes.append(f"{name}: {what}; its row is from {row.as_of} (load {row.load_id})")
    return notes


def write_report(db: Database, output_dir: Path | str, report_date: date,
                 sources: Sequence[str] | None = None) -> Path | str:
    """Write the report for ``report_date`` into ``output_dir`` atomically and return its path (a local
    folder) or its URI (``s3://bucket/prefix/``, ``gs://``, ``az://``: one PUT, which the store makes atomic).

    One row per agency of ``sources`` (default: every agency in the history) with a load as of that date.

    Locally the CSV is written completely and flushed to disk before it is renamed over the target (see
    ``_write_atomically``), so neither a reader nor a crash ever sees a half-written report. Raises
    :class:`~customer_ratings.errors.OutputError` when an object store refuses the PUT.
    """
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    writer.writerows(r.values for r in report_rows(db, report_date, sources) if r.complete)
    if isinstance(output_dir, str) and is_url(output_dir) and not output_dir.startswith("file://"):
        return write_atomic(output_dir, report_name(report_date), text.getvalue().encode("utf-8"))
    # Not outputs.write_atomic: its named temporary file would survive a kill -9 mid-write; the anonymous
    # file here (O_TMPFILE) gets a name only just before the rename.
    if isinstance(output_dir, str) and output_dir.startswith("file://"):
        output_dir = unquote(urlsplit(output_dir).path)
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output folder {output_dir} cannot be created: {exc.strerror}") from None
    target = output_dir / report_name(report_date)
    try:
        _remove_stale_temporaries(output_dir)
        _write_atomically(output_dir, target, text.getvalue().encode("utf-8"))
    except OSError as exc:
        previous = "the previous report is intact" if target.exists() else "no report was written"
        raise OutputWriteFailed(f"cannot write the report to {output_dir}: {exc.strerror or exc}; {previous}") from None
    try:
        dir_fd = os.open(output_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise OutputWriteFailed(f"the report {target} was written but the folder {output_dir} could not be synced to "
                          f"disk: {exc.strerror or exc}; check the disk") from None
    return target
