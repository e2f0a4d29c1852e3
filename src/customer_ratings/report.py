"""The aggregate report: report.sql -> ``Customer_Rating_Aggregate_Report_YYYYMMDD.csv``, written atomically."""

from __future__ import annotations

import csv
import os
import tempfile
from datetime import date
from importlib import resources
from pathlib import Path

from .db.server import Database
from .errors import ConfigError

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


def report_rows(db: Database) -> list[tuple[object, ...]]:
    """The report's rows, computed by report.sql in one statement (one consistent snapshot)."""
    query = resources.files(__package__).joinpath("report.sql").read_text("utf-8")
    return db.connection().execute(query.encode()).fetchall()


def write_report(db: Database, output_dir: Path | str, report_date: date) -> Path:
    """Write the report for ``report_date`` into ``output_dir`` atomically and return its path.

    The CSV is written to a temporary file in the same folder, flushed to disk and renamed over the
    target, so a reader (or a crash) never sees a half-written report.
    """
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output folder {output_dir} cannot be created: {exc.strerror}") from None
    rows = report_rows(db)
    target = output_dir / report_name(report_date)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=output_dir)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(REPORT_COLUMNS)
            writer.writerows(rows)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(output_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target
