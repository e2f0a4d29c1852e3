"""status, history, invalid and load/run --format json on the seed sample, against golden JSON files
(load ids, times, durations and paths normalised), and their table and csv forms."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from ..test_cli import GOLDEN, cli
from .conftest import DAY, sample_data

VOLATILE = {"finished_at", "started_at", "seconds"}


def normalise(value: Any, tmp: Path) -> Any:
    """Times and durations -> "<time>", the test's folder -> "<tmp>" (load ids are stable in a new database)."""
    if isinstance(value, list):
        return [normalise(v, tmp) for v in value]
    if isinstance(value, dict):
        return {k: "<time>" if k in VOLATILE and v is not None else normalise(v, tmp) for k, v in value.items()}
    if isinstance(value, str):
        return value.replace(str(tmp), "<tmp>")
    return value


def check_golden(name: str, document: Any) -> None:
    golden = GOLDEN / f"{name}.json"
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"update with UPDATE_GOLDEN=1 if the change is intended: {golden}"


def json_of(*args: str) -> Any:
    done = cli(*args)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)  # the whole of stdout is one JSON document


def test_every_command_as_json_matches_golden_files(cli_env: str, tmp_path: Path) -> None:
    data, out = sample_data(tmp_path / "data"), tmp_path / "out"
    (data / "notes.txt").write_text("not a data file")
    run = cli("run", "--data-dir", str(data), "--output-dir", str(out), "--date", DAY, "--format", "json")
    assert run.returncode == 0, run.stderr
    check_golden("run", normalise(json.loads(run.stdout), tmp_path))
    check_golden("load_unchanged", normalise(json_of("load", "--data-dir", str(data), "--date", DAY,
                                                     "--format", "json"), tmp_path))
    check_golden("status", normalise(json_of("status", "--date", DAY, "--format", "json"), tmp_path))
    check_golden("status_next_day", normalise(json_of("status", "--date", "2025-05-14", "--format", "json"),
                                              tmp_path))
    check_golden("history", normalise(json_of("history", "--format", "json"), tmp_path))
    check_golden("invalid", normalise(json_of("invalid", "--date", DAY, "--format", "json"), tmp_path))
    assert json_of("history", "--source", "agency_b", "--limit", "1", "--format", "json")[0]["load_id"] == 6
    assert json_of("invalid", "--date", "2025-05-12", "--format", "json") == []


def test_missing_agency_is_in_the_json_results(cli_env: str, tmp_path: Path) -> None:
    data = sample_data(tmp_path / "data")
    (data / "Customer Rating Agency C Inc.csv").unlink()
    done = cli("load", "--data-dir", str(data), "--date", DAY, "--format", "json", "-q")
    assert done.returncode == 1
    results = json.loads(done.stdout)["results"]
    assert [(r["source"], r["status"]) for r in results] == [
        ("agency_a", "loaded"), ("agency_b", "loaded"), ("agency_c", "missing"), ("agency_d", "loaded")]
    assert set(results[0]) >= {"source", "file", "status", "load_id", "rows_read", "rows_loaded",
                               "rows_invalid", "error", "as_of", "seconds"}
    assert "error: agency_c: no file for 2025-05-13" in done.stderr
    status = json_of("status", "--date", DAY, "--format", "json")
    assert [(r["source"], r["stale"]) for r in status] == [
        ("agency_a", False), ("agency_b", False), ("agency_c", True), ("agency_d", False)]
    assert status[2]["stale_reason"] == "no file for 2025-05-13" and status[2]["load_id"] is None


def test_invalid_by_source_and_load_in_csv_and_tab_separated(seeded: Path) -> None:
    done = cli("invalid", "--source", "agency_b", "--format", "csv", "--date", DAY)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["line_number"] for r in rows] == ["3", "9", "19"]
    assert rows[0]["errors"].startswith("customer_number: not_an_integer (")
    assert rows[0]["raw_line"] == "z1111753583,93557,456816,low-value"
    by_load = cli("invalid", "--load", rows[0]["load_id"], "--format", "csv")
    assert by_load.stdout == done.stdout
    # Not a terminal: tab-separated lines, one per row, file names never wrapped (COLUMNS=100 in cli()).
    table = cli("invalid", "--date", DAY)
    lines = table.stdout.splitlines()
    assert lines[0].split("\t") == ["source", "load_id", "file", "line_number", "record_number", "error",
                                    "errors", "raw_line"]
    assert len(lines) == 1 + 4 and all(len(line.split("\t")) == 8 for line in lines)
    assert lines[1].split("\t")[2].endswith("/data/Customer Rating Agency B Inc.csv")
    wrong = cli("invalid", "--load", rows[0]["load_id"], "--source", "agency_a")
    assert wrong.returncode == 2 and "is a load of agency_b" in wrong.stderr
    unknown = cli("invalid", "--load", "999")
    assert unknown.returncode == 2 and "no such load" in unknown.stderr and "Traceback" not in unknown.stderr


def test_history_and_status_tables_when_not_a_terminal(seeded: Path) -> None:
    history = cli("history", "--limit", "2").stdout.splitlines()
    assert history[0].startswith("load_id\tsource\tas_of_date\tstatus\tfile\t")
    assert [line.split("\t")[0] for line in history[1:]] == ["4", "3"]
    status = cli("status", "--date", DAY).stdout.splitlines()
    assert [line.split("\t")[0] for line in status[1:]] == ["agency_a", "agency_b", "agency_c", "agency_d"]
    assert status[2].split("\t")[7] == "15.79"
    as_csv = cli("history", "--format", "csv", "--source", "agency_d").stdout.splitlines()
    assert len(as_csv) == 2 and as_csv[0].startswith("load_id,source,as_of_date,status,file,")
