"""Issue 12, "Days": a week of files loaded in any order gives the same reports and ends with the newest data."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from customer_ratings import Database, load_source, load_sources, write_report
from customer_ratings.report import report_notes, report_rows
from tests.days.week import AGENCIES, DAYS, MISSING, REJECTED, Week, week_config, week_sources

CONFIG = week_config()
NAMES = [s.name for s in CONFIG.sources]
ORDERS = {
    "in order": list(DAYS),
    "reversed": list(reversed(DAYS)),
    "shuffled": random.Random(20250512).sample(DAYS, len(DAYS)),
}


def load_week(db: Database, week: Week, order: list[date]) -> None:
    """Load each day's folder for its day, in ``order``; check what each day recorded."""
    for day in order:
        summary = load_sources(db, CONFIG, week.folder(day), as_of=day)
        index = DAYS.index(day)
        assert sorted(summary.missing) == sorted(a for a in AGENCIES if index in MISSING.get(a, set()))
        rejected = sorted(r.source for r in summary.results if r.status == "rejected")
        assert rejected == sorted(a for a in AGENCIES if index in REJECTED.get(a, set()))
        assert all(r.status in ("loaded", "unchanged", "rejected") for r in summary.results)


def reports(db: Database, folder: Path) -> dict[date, tuple[bytes, list[str]]]:
    """Every day's report (bytes) and notes."""
    return {day: (write_report(db, folder, day, NAMES).read_bytes(), report_notes(db, day, NAMES)) for day in DAYS}


def expected_report(week: Week, day: date) -> bytes:
    """The report for ``day`` from the files alone: each agency's newest loading file on or before the day."""
    lines = ["customer,count_customer_number,sum_customer_rating,high_value_count,"
             "invalid_customer_number_count,invalid_customer_number_percent"]
    for agency in sorted(AGENCIES):
        f = week.loaded_as_of(agency, day)
        if f is None:
            continue
        count, total, high, invalid = f.numbers
        pct = Decimal(0) if count + invalid == 0 else Decimal(100 * invalid) / Decimal(count + invalid)
        lines.append(f"{agency},{count},{total},{high},{invalid},{pct.quantize(Decimal('0.01'), ROUND_HALF_UP)}")
    return ("\n".join(lines) + "\n").encode()


def assert_newest_data(db: Database, week: Week) -> None:
    """The agency tables and customer_rating hold each agency's newest snapshot by as-of date."""
    conn = db.connection()
    for source in week_sources():
        newest = week.newest_loaded(source.name)
        table = sorted(conn.execute(f"SELECT customer_number, customer_rating, customer_rating_limit, "
                                    f"customer_status FROM {source.table}").fetchall())
        assert table == sorted(newest.valid), source.name
        consolidated = sorted(conn.execute(
            "SELECT customer_number, customer_rating, customer_rating_limit, customer_status FROM customer_rating "
            "WHERE customer = %s", (source.name,)).fetchall())
        assert consolidated == table
        current = conn.execute("SELECT as_of_date FROM source_current WHERE source = %s", (source.name,)).fetchone()
        assert current == (newest.day,)


def test_any_load_order_gives_the_same_reports_and_the_newest_data(
        week: Week, fresh_db: Callable[[], Database], tmp_path: Path) -> None:
    results: dict[str, dict[date, tuple[bytes, list[str]]]] = {}
    for name, order in ORDERS.items():
        db = fresh_db()
        if name == "in order":
            # each day's report as written that day, before any later day was loaded
            that_day = {}
            for day in order:
                load_week(db, week, [day])
                that_day[day] = write_report(db, tmp_path / "that-day", day, NAMES).read_bytes()
        else:
            load_week(db, week, order)
        results[name] = reports(db, tmp_path / name)
        assert_newest_data(db, week)
        # written again later: the same bytes
        assert reports(db, tmp_path / f"{name}-again") == results[name]
    for day in DAYS:
        assert results["in order"][day][0] == that_day[day], day
        assert results["in order"][day][0] == expected_report(week, day), day
        assert results["reversed"][day][0] == results["in order"][day][0], day
        assert results["shuffled"][day][0] == results["in order"][day][0], day
        # the notes say the same, but for the load ids (which follow the load order)
        notes = {name: [re.sub(r" \(load \d+\)", "", n) for n in by_day[day][1]] for name, by_day in results.items()}
        assert notes["reversed"] == notes["shuffled"] == notes["in order"], day


def test_notes_name_the_agency_whose_row_is_older(week: Week, db: Database) -> None:
    load_week(db, week, ORDERS["shuffled"])
    notes = {day: report_notes(db, day, NAMES) for day in DAYS}
    assert notes[DAYS[0]] == ["agency_c: not in the report: no loaded file as of 2025-05-12; "
                              "its file for that day is missing"]
    assert notes[DAYS[1]] == []
    assert notes[DAYS[2]] == ["agency_b: its file for that day is missing; its row is from 2025-05-13 "
                              f"(load {report_rows(db, DAYS[1], ['agency_b'])[0].load_id})"]
    assert [n.split(":")[0] for n in notes[DAYS[3]]] == ["agency_c"]
    assert "missing" in notes[DAYS[3]][0] and "2025-05-14" in notes[DAYS[3]][0]
    assert len(notes[DAYS[4]]) == 1
    assert notes[DAYS[4]][0].startswith("agency_b: its file for that day was rejected (bad_header); "
                                        "its row is from 2025-05-15")
    assert len(notes[DAYS[6]]) == 1
    assert notes[DAYS[6]][0].startswith("agency_c: its file for that day was rejected (bad_header); "
                                        "its row is from 2025-05-17")
    # the agencies whose file of the day loaded (or was unchanged) are not named
    assert not any(n.startswith("agency_a") for day_notes in notes.values() for n in day_notes)


def test_a_backfill_replaces_no_newer_data(week: Week, db: Database) -> None:
    source = CONFIG.source("agency_a")
    newest = week.file("agency_a", DAYS[6])
    older = week.file("agency_a", DAYS[4])
    assert newest is not None and older is not None
    new = load_source(db, source, newest.path, as_of=newest.day)
    back = load_source(db, source, older.path, as_of=older.day)
    assert (new.status, back.status) == ("loaded", "loaded")
    assert back.backfill and back.current_as_of == newest.day
    conn = db.connection()
    assert conn.execute("SELECT load_id, as_of_date FROM source_current WHERE source = 'agency_a'").fetchone() == (
        new.load_id, newest.day)
    rows = sorted(conn.execute("SELECT customer_number, customer_rating, customer_rating_limit, customer_status "
                               "FROM customer_rating_agency_a").fetchall())
    assert rows == sorted(newest.valid)
    # the backfill is recorded in full: history with its numbers, its invalid rows
    history = conn.execute("SELECT status, as_of_date, rows_loaded, sum_customer_rating, high_value_count, "
                           "rows_invalid FROM load_history WHERE load_id = %s", (back.load_id,)).fetchone()
    count, total, high, invalid = older.numbers
    assert history == ("loaded", older.day, count, total, high, invalid)
    lines = [r[0] for r in conn.execute("SELECT line_number FROM file_invalid_rows WHERE load_id = %s "
                                        "ORDER BY line_number", (back.load_id,))]
    assert lines == older.invalid_lines
    # each day's report has its own numbers
    assert [tuple(r)[1:5] for r in report_rows(db, older.day, ["agency_a"])] == [older.numbers]
    assert [tuple(r)[1:5] for r in report_rows(db, newest.day, ["agency_a"])] == [newest.numbers]


CURRENT_NUMBERS = """
SELECT c.source, count(r.customer_number), coalesce(sum(r.customer_rating), 0),
       count(*) FILTER (WHERE r.customer_status = 'high-value'),
       (SELECT count(*) FROM file_invalid_rows i WHERE i.load_id = c.load_id)
FROM source_current c LEFT JOIN customer_rating r ON r.load_id = c.load_id AND r.customer = c.source
GROUP BY c.source, c.load_id ORDER BY c.source
"""


def test_the_stored_numbers_equal_the_current_data(week: Week, db: Database) -> None:
    load_week(db, week, ORDERS["shuffled"])
    computed = db.connection().execute(CURRENT_NUMBERS).fetchall()
    # on the last day every agency's row is its current load (agency_c: day 5, its day-6 file was rejected)
    stored = [(r.customer, *tuple(r)[1:5]) for r in report_rows(db, DAYS[-1], NAMES)]
    assert stored == computed
    assert [r[0] for r in computed] == list(AGENCIES)


@pytest.mark.parametrize("tz", ["Pacific/Kiritimati", "America/Adak"])
def test_the_default_date_is_today_in_the_local_time_zone(
        tz: str, week: Week, database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "sources.toml"
    config.write_text('[[sources]]\nname = "agency_a"\ntable = "customer_rating_agency_a"\n'
                      'file_pattern = "Customer Rating Agency A Inc*.csv"\n')
    env = {**os.environ, "TZ": tz, "CUSTOMER_RATINGS_DATABASE_URL": database_url}
    before = datetime.now(ZoneInfo(tz)).date()
    done = subprocess.run([sys.executable, "-m", "customer_ratings", "load", "--quiet", "--data-dir",
                           str(week.folder(DAYS[0])), "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    after = datetime.now(ZoneInfo(tz)).date()
    assert done.returncode == 0, done.stderr
    with psycopg.connect(database_url) as conn:
        recorded = conn.execute("SELECT as_of_date FROM load_history WHERE source = 'agency_a'").fetchall()
    assert len(recorded) == 1
    assert recorded[0][0] in {before, after}


def test_a_day_whose_file_was_unchanged_is_newer_than_a_correction_of_the_day_before(
        week: Week, db: Database, tmp_path: Path) -> None:
    # day 3's file is day 2's (unchanged); a corrected file for day 2 arriving after it is a backfill
    source = CONFIG.source("agency_a")
    day2, day3 = week.file("agency_a", DAYS[2]), week.file("agency_a", DAYS[3])
    other = week.file("agency_a", DAYS[5])
    assert day2 is not None and day3 is not None and other is not None
    first = load_source(db, source, day2.path, as_of=DAYS[2])
    assert load_source(db, source, day3.path, as_of=DAYS[3]).status == "unchanged"
    correction = tmp_path / "correction.csv"
    correction.write_bytes(other.path.read_bytes())
    fixed = load_source(db, source, correction, as_of=DAYS[2])
    assert fixed.status == "loaded" and fixed.backfill
    conn = db.connection()
    assert conn.execute("SELECT load_id FROM source_current WHERE source = 'agency_a'").fetchone() == (first.load_id,)
    rows = sorted(conn.execute("SELECT customer_number, customer_rating, customer_rating_limit, customer_status "
                               "FROM customer_rating_agency_a").fetchall())
    assert rows == sorted(day3.valid)
    assert [tuple(r)[1:5] for r in report_rows(db, DAYS[3], ["agency_a"])] == [day3.numbers]
    assert [tuple(r)[1:5] for r in report_rows(db, DAYS[2], ["agency_a"])] == [other.numbers]
