"""Issue 16: the quality page of the multi-day fixture, opened in headless Chromium."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException

from customer_ratings import Database
from customer_ratings.quality import write_quality_page
from customer_ratings.report import report_rows
from tests.conftest import REPO
from tests.days.quality_fixture import HOSTILE, load_hostile_week
from tests.days.week import DAYS

DAY = DAYS[-1]
WINDOW = 30
SCREENSHOT = REPO / "out" / "quality-page.png"

READ_PAGE = """
const text = (el) => el ? el.textContent.trim() : null;
return {
  summary: [...document.querySelectorAll('#summary tbody tr')].map(tr => [...tr.cells].map(td => td.innerText.trim())),
  sections: [...document.querySelectorAll('section.agency')].map(s => ({
    agency: text(s.querySelector('h3')),
    rows: s.querySelectorAll('figure[data-chart=rows] svg circle.dot').length,
    invalid: s.querySelectorAll('figure[data-chart=invalid] svg circle.dot').length,
    bars: s.querySelectorAll('figure[data-chart=codes] svg rect.rect').length,
    legend: [...s.querySelectorAll('figure[data-chart=codes] svg .legend text')].map(t => t.textContent),
    samples: [...s.querySelectorAll('table.samples tbody tr')].map(tr => [...tr.cells].map(td => td.textContent)),
    svgs: s.querySelectorAll('svg').length,
  })),
  scripts: document.scripts.length,
  resources: performance.getEntriesByType('resource').map(e => e.name),
  navigation: performance.getEntriesByType('navigation').map(e => e.name),
  bodyText: document.body.innerText,
};
"""


def _expected_points(db: Database) -> dict[str, int]:
    rows = db.connection().execute(
        """SELECT source, count(DISTINCT as_of_date) FROM load_history
           WHERE status IN ('loaded', 'unchanged') AND as_of_date BETWEEN %s AND %s GROUP BY source""",
        (DAY - timedelta(days=WINDOW - 1), DAY)).fetchall()
    return dict(rows)


def _expected_series(db: Database) -> dict[str, int]:
    rows = db.connection().execute(
        """SELECT i.source, count(DISTINCT (e ->> 'code', coalesce(e ->> 'column', '')))
           FROM file_invalid_rows i JOIN load_history h USING (load_id)
           CROSS JOIN LATERAL jsonb_array_elements(i.errors) e
           WHERE h.as_of_date BETWEEN %s AND %s GROUP BY i.source""",
        (DAY - timedelta(days=WINDOW - 1), DAY)).fetchall()
    return dict(rows)


def _requests(driver: webdriver.Chrome) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):  # type: ignore[no-untyped-call]
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_the_quality_page_in_a_browser(db: Database, chrome: webdriver.Chrome, tmp_path: Path) -> None:
    _week, config = load_hostile_week(db, tmp_path / "week")
    names = [s.name for s in config.sources]
    page = write_quality_page(db, tmp_path / "out", DAY, names, days=WINDOW, config_path="sources.toml",
                              database="embedded PostgreSQL (test)")
    chrome.get(page.as_uri())
    got: dict[str, Any] = chrome.execute_script(READ_PAGE)  # type: ignore[no-untyped-call]

    # no script ran: no alert, no script element, and the names are visible as text
    try:
        alert = chrome.switch_to.alert
        raise AssertionError(f"the page opened an alert: {alert.text}")
    except NoAlertPresentException:
        pass
    assert got["scripts"] == 0
    for name in HOSTILE:
        assert name in got["bodyText"]

    # nothing but the page itself was requested
    assert got["resources"] == []
    assert got["navigation"] == [page.as_uri()]
    assert _requests(chrome) == [page.as_uri()]

    # the summary: one row per configured agency, its cells as the database says
    current = {r.customer: r for r in report_rows(db, DAY, names)}
    day_status = dict(db.connection().execute(
        """SELECT DISTINCT ON (source) source, status FROM load_history WHERE as_of_date = %s
           ORDER BY source, load_id DESC""", (DAY,)).fetchall())
    summary = {cells[0]: cells for cells in got["summary"]}
    assert sorted(summary) == sorted(names)
    for name in names:
        _agency, status, as_of, load_id, loaded, invalid, pct, _change = summary[name]
        row = current[name]
        assert status.split("\n")[0].split(":")[0] == day_status[name]
        assert (as_of, load_id) == (row.as_of.isoformat(), str(row.load_id))
        assert (loaded, invalid, pct) == (str(row.values[1]), str(row.values[4]), str(row.values[5]))
    assert "stale since 2025-05-17" in summary["agency_c"][1]  # its file of the day was rejected
    assert summary["agency_c"][1].startswith("rejected: bad_header")

    # every chart, with one point per day with numbers and one bar per day and series
    points = _expected_points(db)
    series = _expected_series(db)
    assert sorted(s["agency"] for s in got["sections"]) == sorted(names)
    for section in got["sections"]:
        name = section["agency"]
        assert section["rows"] == section["invalid"] == points[name], name
        assert section["bars"] == WINDOW * series.get(name, 0), name
        assert len(section["legend"]) == series.get(name, 0), name
        assert section["svgs"] == (3 if series.get(name) else 2), name
    # the day's first invalid rows, with their raw lines as in the file
    a = next(s for s in got["sections"] if s["agency"] == "agency_a")
    first = db.connection().execute(
        """SELECT line_number::text, error, raw_line FROM file_invalid_rows
           WHERE load_id = %s ORDER BY line_number LIMIT 5""", (current["agency_a"].load_id,)).fetchall()
    assert [tuple(r) for r in a["samples"]] == first

    # printed: the print styles apply (agencies one below the other) and the page prints
    chrome.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    assert chrome.execute_script(  # type: ignore[no-untyped-call]
        "return getComputedStyle(document.querySelector('.agencies')).display") == "block"
    chrome.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    pdf = base64.b64decode(chrome.execute_cdp_cmd("Page.printToPDF", {})["data"])
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shot = chrome.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    assert SCREENSHOT.stat().st_size > 10_000
