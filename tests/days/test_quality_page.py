"""Issue 16: the quality page's content, escaping, self-containment and size (the browser test opens it)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from markupsafe import escape

from customer_ratings import Database, load_sources
from customer_ratings.quality import build_quality_page, database_display, quality_page_name, write_quality_page
from tests.days.quality_fixture import HOSTILE, load_hostile_week
from tests.days.week import DAYS, week_config, write_week


def test_the_page_is_written_atomically_beside_the_report(db: Database, tmp_path: Path) -> None:
    _week, config = load_hostile_week(db, tmp_path / "week")
    out = tmp_path / "out"
    path = write_quality_page(db, out, DAYS[-1], [s.name for s in config.sources], days=30,
                              config_path="sources.toml", database="the test database")
    assert path == out / quality_page_name(DAYS[-1]) == out / "Customer_Rating_Quality_Report_20250518.html"
    assert sorted(p.name for p in out.iterdir()) == [path.name]  # no temporary file left
    text = path.read_text("utf-8")
    assert "the test database" in text and "sources.toml" in text
    # the rejected agency of the day, with its reason and the day its data is from
    assert "rejected: bad_header" in text and "stale since 2025-05-17" in text


def test_untrusted_text_is_escaped(db: Database, tmp_path: Path) -> None:
    _week, config = load_hostile_week(db, tmp_path / "week")
    text = build_quality_page(db, DAYS[-1], [s.name for s in config.sources])
    assert "<script" not in text.lower()
    for name in HOSTILE:
        assert str(escape(name)) in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_the_page_needs_no_network(db: Database, tmp_path: Path) -> None:
    _week, config = load_hostile_week(db, tmp_path / "week")
    text = build_quality_page(db, DAYS[-1], [s.name for s in config.sources])
    # nothing to fetch: no external reference outside the SVG namespace and the hostile agency's own (escaped) text
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", text)
    assert refs == []
    assert "url(" not in text and "@import" not in text
    assert "default-src 'none'" in text


def test_no_password_in_the_database_line() -> None:
    shown = database_display("postgresql://alice:s3cret@db.example:6543/CustomerRatingData?sslmode=require")
    assert "s3cret" not in shown
    assert shown == "PostgreSQL alice@db.example:6543 database CustomerRatingData"
    assert "pw" not in database_display("host=/run/pg user=bob password=pw dbname=x")


SYNTHETIC_HISTORY = """
INSERT INTO load_history (source, table_name, file_uri, file_size, sha256, status, rows_read, rows_loaded,
                          rows_invalid, forced, started_at, finished_at, as_of_date, data_load_id,
                          sum_customer_rating, high_value_count, error_code, error)
SELECT 'agency_' || lpad(a::text, 2, '0'), 'customer_rating_agency_' || a,
       'file:///data/Customer%%20Rating%%20Agency%%20' || a || '_' || to_char(d, 'YYYYMMDD') || '.csv',
       1000000, md5(a::text || d::text), CASE WHEN (a + extract(day FROM d)::int) %% 11 = 0 THEN 'rejected'
                                               ELSE 'loaded' END,
       100000 + a, 99000 + a, 1000, false, now(), now(), d, NULL, 123456789, 4321,
       CASE WHEN (a + extract(day FROM d)::int) %% 11 = 0 THEN 'bad_header' END,
       CASE WHEN (a + extract(day FROM d)::int) %% 11 = 0 THEN 'header: missing column customer_status' END
FROM generate_series(1, 50) a, generate_series(%(start)s::date, %(day)s::date, interval '1 day') d
"""
SYNTHETIC_INVALID = """
INSERT INTO file_invalid_rows (load_id, source, table_name, file_uri, line_number, record_number, raw_line,
                               fields, errors, error)
SELECT h.load_id, h.source, h.table_name, h.file_uri, n + 1, n, repeat('x', 60) || ',1,2,' || repeat('y', 30),
       NULL, jsonb_build_array(jsonb_build_object('column', c, 'code', k, 'message', 'm')), c || ': ' || k
FROM load_history h, generate_series(1, 8) n,
     LATERAL (VALUES ('customer_rating', 'not_an_integer'), ('customer_status', 'too_long'),
                     ('customer_number', 'missing_value')) v(c, k)
WHERE (n + h.load_id) % 3 = (CASE c WHEN 'customer_rating' THEN 0 WHEN 'customer_status' THEN 1 ELSE 2 END)
"""


def test_thirty_days_of_fifty_agencies_is_under_one_megabyte(db: Database, tmp_path: Path) -> None:
    day = date(2025, 5, 31)
    conn = db.connection()
    conn.execute(SYNTHETIC_HISTORY, {"start": day - timedelta(days=29), "day": day})
    conn.execute("UPDATE load_history SET data_load_id = load_id WHERE status = 'loaded'")
    conn.execute(SYNTHETIC_INVALID)
    names = [f"agency_{a:02d}" for a in range(1, 51)]
    # every agency, every day: rejected days, three error codes on three columns, five sample rows
    path = write_quality_page(db, tmp_path, day, names, days=30,
                              generated_at=datetime(2025, 6, 1, tzinfo=UTC))
    text = path.read_text("utf-8")
    assert text.count('data-chart="codes" data-series="3"') == 50
    assert text.count('class="raw"') == 5 * 50
    size = path.stat().st_size
    print(f"quality page for 30 days x 50 agencies: {size} bytes")
    assert size < 1_000_000, size


class _Summary(HTMLParser):
    """The summary table's rows as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_table = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._in_table = ("id", "summary") in attrs
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data + " ")


def summary_of(text: str) -> dict[str, list[str]]:
    parser = _Summary()
    parser.feed(text)
    return {row[0]: row[1:] for row in parser.rows if row}


def test_the_summary_says_each_day_s_status(db: Database, tmp_path: Path) -> None:
    load_hostile_week(db, tmp_path / "week")
    names = ["agency_a", "agency_b", "agency_c"]
    first = summary_of(build_quality_page(db, DAYS[0], names))
    assert first["agency_a"][0] == "loaded" and first["agency_a"][-1] == "first load"
    assert first["agency_c"][0].startswith("missing") and first["agency_c"][1:6] == [""] * 5
    third = summary_of(build_quality_page(db, DAYS[2], names))
    assert third["agency_b"][0] == ("missing no file matching 'Customer Rating Agency B Inc*.csv'; "
                                    "stale since 2025-05-13")
    assert third["agency_b"][1] == "2025-05-13"
    fourth = summary_of(build_quality_page(db, DAYS[3], names))
    assert fourth["agency_a"][0] == "unchanged"
    assert fourth["agency_a"][-1] == "+0 rows, +0.00 pts invalid (vs 2025-05-14)"
    after = summary_of(build_quality_page(db, DAYS[-1] + timedelta(days=2), names))
    assert after["agency_a"][0] == "stale since 2025-05-18 no file seen for this day"
    assert after["agency_c"][0] == "stale since 2025-05-17 no file seen for this day"


def test_the_page_for_a_day_is_the_same_when_built_again_after_later_days(db: Database, tmp_path: Path) -> None:
    week = write_week(tmp_path / "week")
    config = week_config()
    names = [s.name for s in config.sources]
    at = datetime(2025, 5, 20, 6, 0, tzinfo=UTC)
    for day in DAYS[:4]:
        load_sources(db, config, week.folder(day), as_of=day)
    that_day = build_quality_page(db, DAYS[3], names, generated_at=at)
    for day in DAYS[4:]:
        load_sources(db, config, week.folder(day), as_of=day)
    assert build_quality_page(db, DAYS[3], names, generated_at=at) == that_day


def test_the_page_goes_to_object_storage_in_one_put(db: Database, bucket: str, s3: Any) -> None:
    uri = write_quality_page(db, f"s3://{bucket}/reports/", DAYS[0], ["agency_a"])
    assert uri == f"s3://{bucket}/reports/{quality_page_name(DAYS[0])}"
    body = s3.get_object(Bucket=bucket, Key=f"reports/{quality_page_name(DAYS[0])}")["Body"].read()
    assert body.startswith(b"<!DOCTYPE html>") or b"<html" in body[:200]
