"""The quality page (issue 16): ``Customer_Rating_Quality_Report_YYYYMMDD.html``, one self-contained file built
from the load history and the invalid rows as of a date.

Everything on it comes from the history (``history.sql``), the report's own rows (``report.report_rows``) and
``file_invalid_rows`` (``invalid_by_code.sql``, ``invalid_samples.sql``); nothing is computed from the data
tables, so the page for a past day reads the same whenever it is built (but for its "generated at").
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from importlib import metadata, resources
from pathlib import Path

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup
from psycopg import conninfo as pg_conninfo

from ..db.server import Database
from ..errors import ConfigError
from ..inputs import is_url
from ..outputs import write_atomic
from ..report import ReportRow, _write_atomically, report_rows
from . import charts

SAMPLE_ROWS = 5
"""Invalid rows of the day shown per agency."""
SAMPLE_CHARS = 500
"""Characters of a sample's raw line shown on the page (the reconciliation file has whole lines)."""


def quality_page_name(day: date) -> str:
    """The page's file name for ``day``."""
    return f"Customer_Rating_Quality_Report_{day:%Y%m%d}.html"


def database_display(conninfo: str) -> str:
    """A display string for a connection string or URL: user, host, port and database, never a password."""
    try:
        params = pg_conninfo.conninfo_to_dict(conninfo)
    except Exception:  # noqa: BLE001 - a malformed string: say nothing rather than risk a secret
        return "PostgreSQL"
    host = str(params.get("host") or "localhost")
    where = host if host.startswith("/") else f"{host}:{params.get('port') or 5432}"
    user = f"{params['user']}@" if params.get("user") else ""
    return f"PostgreSQL {user}{where} database {params.get('dbname') or '?'}"


@dataclass(frozen=True)
class HistoryRow:
    """One load_history row of the window (history.sql)."""

    source: str
    as_of: date
    load_id: int
    status: str
    error_code: str | None
    error: str | None
    data_load_id: int | None
    rows_read: int
    rows_loaded: int
    rows_invalid: int
    file_uri: str

    @property
    def invalid_load(self) -> int | None:
        """The load whose invalid rows are this file's: itself, or the load an unchanged file stands for."""
        if self.status == "unchanged":
            return self.data_load_id
        return self.load_id if self.status in ("loaded", "rejected") else None


@dataclass
class SummaryRow:
    """One agency's line of the summary table."""

    agency: str
    status: str
    status_class: str
    detail: str
    data_as_of: date | None
    load_id: int | None
    rows_loaded: int | None
    invalid: int | None
    invalid_percent: str | None
    change: str


@dataclass
class AgencySection:
    """One agency's charts and sample of invalid rows."""

    index: int
    agency: str
    days_with_numbers: int
    rows_chart: charts.Chart
    invalid_chart: charts.Chart
    codes_chart: charts.Chart | None
    code_series: int
    samples: list[tuple[int, str, str]] = field(default_factory=list)
    sample_total: int = 0


def percent(invalid: int, loaded: int) -> Decimal:
    """The report's invalid percent: 100 * invalid / (loaded + invalid), half away from zero, 2 decimals."""
    if invalid + loaded == 0:
        return Decimal("0.00")
    return (Decimal(100 * invalid) / Decimal(invalid + loaded)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def _query(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_text("utf-8").encode()


def _sources(db: Database, sources: Sequence[str] | None) -> list[str]:
    if sources is not None:
        return list(sources)
    return sorted(r[0] for r in db.connection().execute("SELECT DISTINCT source FROM load_history"))


def _status(row: HistoryRow | None, current: ReportRow | None, day: date) -> tuple[str, str, str]:
    """The day's status, a CSS class, and a detail line."""
    stale = current is not None and current.as_of < day
    since = f"stale since {current.as_of}" if current is not None and stale else ""
    if row is None:
        return (since or "no data", "stale" if stale else "nodata",
                "no file seen for this day" if current is not None else "no load as of this day")
    if row.status in ("loaded", "unchanged"):
        return row.status, row.status, ""
    text = f"{row.status}: {row.error_code}" if row.error_code else row.status
    detail = "; ".join(t for t in (row.error or "", since) if t)
    return text, row.status, detail


def _change(current: ReportRow | None, previous: ReportRow | None) -> str:
    if current is None or not current.complete:
        return ""
    if previous is None or not previous.complete:
        return "first load"
    rows = int(str(current.values[1])) - int(str(previous.values[1]))
    points = Decimal(str(current.values[5])) - Decimal(str(previous.values[5]))
    return f"{rows:+d} rows, {points:+.2f} pts invalid (vs {previous.as_of})"


def build_quality_page(db: Database, day: date, sources: Sequence[str] | None = None, days: int = 30,
                       config_path: Path | str | None = None, *, database: str | None = None,
                       generated_at: datetime | None = None) -> str:
    """The quality page for ``day`` over the last ``days`` days, as HTML text."""
    if days < 1:
        raise ConfigError(f"--days {days}: give at least 1 day")
    names = _sources(db, sources)
    start = day - timedelta(days=days - 1)
    window = [start + timedelta(days=i) for i in range(days)]
    conn = db.connection()

    history: dict[str, dict[date, list[HistoryRow]]] = defaultdict(lambda: defaultdict(list))
    for r in conn.execute(_query("history.sql"), {"sources": names, "start": start, "day": day}):
        row = HistoryRow(*r)
        history[row.source][row.as_of].append(row)

    current = {r.customer: r for r in report_rows(db, day, names)}
    previous: dict[str, ReportRow] = {}
    by_day: dict[date, list[str]] = defaultdict(list)
    for name, report_row in current.items():
        by_day[report_row.as_of - timedelta(days=1)].append(name)
    for before, group in by_day.items():
        previous.update({r.customer: r for r in report_rows(db, before, group)})

    # per agency and day: the day's last row, its last row with numbers, and the load of its invalid rows
    last: dict[str, dict[date, HistoryRow]] = defaultdict(dict)
    numbers: dict[str, dict[date, HistoryRow]] = defaultdict(dict)
    invalid_load: dict[str, dict[date, int]] = defaultdict(dict)
    for name in names:
        for d, rows in history.get(name, {}).items():
            last[name][d] = rows[-1]
            with_numbers = [r for r in rows if r.status in ("loaded", "unchanged")]
            if with_numbers:
                numbers[name][d] = with_numbers[-1]
            with_file = [r for r in rows if r.invalid_load is not None]
            if with_file and with_file[-1].invalid_load is not None:
                invalid_load[name][d] = with_file[-1].invalid_load
    loads = sorted({load for per_day in invalid_load.values() for load in per_day.values()})
    by_code: dict[int, dict[str, int]] = defaultdict(dict)
    for load_id, code, column, n in conn.execute(_query("invalid_by_code.sql"), {"loads": loads}):
        by_code[load_id][f"{code} · {column}" if column else code] = n
    today_loads = sorted({per_day[day] for per_day in invalid_load.values() if day in per_day})
    samples: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    invalid_rows: dict[int, int] = {}
    for load_id, line, error, raw, total in conn.execute(_query("invalid_samples.sql"),
                                                         {"loads": today_loads, "limit": SAMPLE_ROWS,
                                                          "shown": SAMPLE_CHARS}):
        samples[load_id].append((line, error, raw))
        invalid_rows[load_id] = total

    summary: list[SummaryRow] = []
    sections: list[AgencySection] = []
    for index, name in enumerate(sorted(names)):
        cur = current.get(name)
        status, css_class, detail = _status(last[name].get(day), cur, day)
        complete = cur is not None and cur.complete
        summary.append(SummaryRow(
            agency=name, status=status, status_class=css_class, detail=detail,
            data_as_of=cur.as_of if cur else None, load_id=cur.load_id if cur else None,
            rows_loaded=int(str(cur.values[1])) if cur and complete else None,
            invalid=int(str(cur.values[4])) if cur and complete else None,
            invalid_percent=f"{cur.values[5]}" if cur and complete else None,
            change=_change(cur, previous.get(name))))
        loaded = [numbers[name][d].rows_loaded if d in numbers[name] else None for d in window]
        invalid_pct = [float(percent(numbers[name][d].rows_invalid, numbers[name][d].rows_loaded))
                       if d in numbers[name] else None for d in window]
        keys = sorted({k for d in window if d in invalid_load[name] for k in by_code.get(invalid_load[name][d], {})})
        series = {k: [by_code.get(invalid_load[name][d], {}).get(k, 0) if d in invalid_load[name] else 0
                      for d in window] for k in keys}
        today = invalid_load[name].get(day)
        sections.append(AgencySection(
            index=index, agency=name, days_with_numbers=sum(v is not None for v in loaded),
            rows_chart=charts.line("rows loaded", loaded),
            invalid_chart=charts.line("invalid %", invalid_pct, percent=True),
            codes_chart=charts.stacked_bars(series) if series else None, code_series=len(series),
            samples=samples.get(today, []) if today is not None else [],
            sample_total=invalid_rows.get(today, 0) if today is not None else 0))

    css: list[str] = []
    for section in sections:
        for chart in (section.rows_chart, section.invalid_chart, section.codes_chart):
            if chart is not None and chart.css not in css:
                css.append(chart.css)
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(resources.files(__package__).joinpath("page.html.j2").read_text("utf-8"))
    return template.render(
        day=day, start=start, days=days, summary=summary, sections=sections,
        chart_css=Markup("\n".join(css)),  # pygal's own stylesheet (no data in it)
        svg=lambda chart: Markup(chart.svg),  # pygal's XML serializer escaped every text in it
        database=database if database is not None else database_display(db.conninfo),
        config=str(config_path) if config_path is not None else "built-in default sources",
        version=metadata.version("customer-ratings"),
        generated_at=(generated_at or datetime.now(UTC)).isoformat(timespec="seconds"),
        sample_rows=SAMPLE_ROWS,
    )


def write_quality_page(db: Database, output_dir: Path | str, day: date, sources: Sequence[str] | None = None,
                       days: int = 30, config_path: Path | str | None = None, *, database: str | None = None,
                       generated_at: datetime | None = None) -> Path | str:
    """Write ``Customer_Rating_Quality_Report_YYYYMMDD.html`` for ``day`` into ``output_dir`` (a local folder
    or an object-storage prefix, beside the CSV report) atomically and return its path (or URI).

    ``database`` is what the page says about the database (default: user, host, port and name from the
    connection, never a password); ``config_path`` the config file shown (None: the built-in sources).
    """
    if is_url(str(output_dir)):  # one PUT: atomic there (the page is small: < 1 MB for 50 agencies)
        text = build_quality_page(db, day, sources, days, config_path, database=database,
                                  generated_at=generated_at)
        return write_atomic(str(output_dir), quality_page_name(day), text.encode("utf-8"))
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output folder {output_dir} cannot be created: {exc.strerror}") from None
    text = build_quality_page(db, day, sources, days, config_path, database=database, generated_at=generated_at)
    target = output_dir / quality_page_name(day)
    _write_atomically(output_dir, target, text.encode("utf-8"))
    dir_fd = os.open(output_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target
