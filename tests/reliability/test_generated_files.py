"""Property-based: random agency files (valid rows mixed with every invalid kind of SPEC.md, random quoting,
CRLF/LF/mixed line ends, BOM, blank lines, reordered and re-cased headers, extra columns, huge fields, three
encodings) are loaded, and after each load the database must hold exactly what SPEC.md says:

- rows read = rows loaded + rows invalid, in the result and in load_history;
- the agency table, and the agency's slice of customer_rating, equal the file's valid rows as a multiset;
- every invalid row is in file_invalid_rows with its line number, record number, raw text, parsed fields
  and every failing column with an allowed code; nothing else is there;
- a file that SPEC.md rejects as a whole leaves the previous data, partition and current load untouched.

CI runs a fixed, derandomized set of RELIABILITY_EXAMPLES (default 40) files, without shrinking. To soak:
``RELIABILITY_EXAMPLES=2000 RELIABILITY_SEED=7 .venv/bin/pytest tests/reliability/test_generated_files.py``;
``RELIABILITY_SHRINK=1`` shrinks a failing file to a minimal one, ``RELIABILITY_SAVE_DIR=DIR`` keeps it (and
its sources file) in DIR.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, seed, settings

from customer_ratings import Database, load_source
from customer_ratings.config import parse_config

from . import _db
from ._gen import Expected, GenFile, expected, gen_files

EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "40"))
SEED = os.environ.get("RELIABILITY_SEED")
SHRINK = os.environ.get("RELIABILITY_SHRINK") == "1"
BASELINE = b"customer_number,customer_rating,customer_rating_limit,customer_status\n" \
           b"1,10,100,low-value\n2,20,200,high-value\n3,30,300,low-value\n"
BASELINE_ROWS = Counter([(1, 10, 100, "low-value"), (2, 20, 200, "high-value"), (3, 30, 300, "low-value")])

GENERATED = {"files": 0, "rejected": 0, "rows": 0, "invalid": 0}


def _source_toml(gen: GenFile) -> str:
    src = gen.source
    lines = ['[[sources]]', 'name = "agency_h"', 'table = "customer_rating_agency_h"',
             'file_pattern = "*.csv"', f'encoding = "{src.encoding}"', f'extra_columns = "{src.extra_columns}"',
             f"max_invalid_percent = {src.max_invalid_percent}", f"min_rows = {src.min_rows}"]
    if src.allowed_status is not None:
        lines.append("allowed_status = [" + ", ".join(f'"{s}"' for s in src.allowed_status) + "]")
    return "\n".join(lines) + "\n"


def _settings(f: Any) -> Any:
    # Shrinking files with megabyte fields can take many minutes: CI reports the failing file as generated
    # (its bytes are in the notes); RELIABILITY_SHRINK=1 shrinks it to a minimal one.
    phases = list(Phase) if SHRINK else [p for p in Phase if p != Phase.shrink]
    f = settings(max_examples=EXAMPLES, deadline=None, derandomize=SEED is None, database=None, phases=phases,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                        HealthCheck.data_too_large, HealthCheck.large_base_example])(f)
    return seed(int(SEED))(f) if SEED is not None else f


@_settings
@given(gen=gen_files())
def test_generated_file_loads_exactly_as_spec_says(db: Database, tmp_path: Path, gen: GenFile) -> None:
    source = parse_config(_source_toml(gen), None).sources[0]
    exp = expected(gen)
    data = gen.to_bytes()
    note(f"source: {source}")
    note(f"file bytes ({len(data)}): {data[:3000]!r}{' ...' if len(data) > 3000 else ''}")
    note(f"expected: rejected={exp.rejected} valid={len(exp.valid)} invalid={len(exp.invalid)}")
    GENERATED["files"] += 1

    base_path = tmp_path / "baseline.csv"
    base_path.write_bytes(BASELINE)
    base = load_source(db, source, base_path, force=True)
    assert base.status == "loaded", base.error
    path = tmp_path / "generated.csv"
    path.write_bytes(data)
    result = load_source(db, source, path, force=True)
    note(f"result: {result}")
    conn = db.connection()
    try:
        _check(conn, result, exp, base.load_id, path)
    except AssertionError:
        keep = os.environ.get("RELIABILITY_SAVE_DIR")
        if keep:  # keep the failing file and its config for a reproduction outside hypothesis
            Path(keep).mkdir(parents=True, exist_ok=True)
            name = f"failing_{GENERATED['files']:05d}"
            (Path(keep) / f"{name}.csv").write_bytes(data)
            (Path(keep) / f"{name}.toml").write_text(_source_toml(gen))
        raise


def _check(conn: Any, result: Any, exp: Expected, base_id: int | None, path: Path) -> None:
    if exp.rejected is not None:
        GENERATED["rejected"] += 1
        _check_rejected(conn, result, exp, base_id)
    else:
        GENERATED["rows"] += exp.rows_read
        GENERATED["invalid"] += len(exp.invalid)
        _check_loaded(conn, result, exp, path)


def _check_rejected(conn: Any, result: Any, exp: Expected, base_id: int | None) -> None:
    assert result.status == "rejected", f"SPEC rejects this file ({exp.rejected}); the loader said {result}"
    assert result.error and "\n" not in result.error
    assert result.load_id is not None
    hist = _db.history(conn, result.load_id)
    assert (hist["status"], hist["error_code"]) == ("rejected", exp.rejected)
    assert hist["rows_loaded"] == 0
    assert _db.agency_rows(conn, "customer_rating_agency_h") == BASELINE_ROWS, "previous data must stay"
    rows, loads = _db.consolidated_rows(conn, "agency_h")
    assert (rows, loads) == (BASELINE_ROWS, {base_id})
    assert _db.current_load(conn, "agency_h") == base_id
    # SPEC: the invalid rows found are kept under the rejected load's id, and the history counts them
    assert len(_db.invalid_rows(conn, result.load_id)) == hist["rows_invalid"] == result.rows_invalid


def _check_loaded(conn: Any, result: Any, exp: Expected, path: Path) -> None:
    assert result.status == "loaded", f"SPEC loads this file; the loader said {result.status}: {result.error}"
    counts = (result.rows_read, result.rows_loaded, result.rows_invalid)
    assert counts == (exp.rows_read, len(exp.valid), len(exp.invalid))
    assert result.rows_read == result.rows_loaded + result.rows_invalid
    hist = _db.history(conn, result.load_id)
    assert (hist["status"], hist["rows_read"], hist["rows_loaded"], hist["rows_invalid"]) == ("loaded", *counts)
    want = Counter(exp.valid)
    assert _db.agency_rows(conn, "customer_rating_agency_h") == want
    rows, loads = _db.consolidated_rows(conn, "agency_h")
    assert rows == want
    assert loads <= {result.load_id}
    assert _db.current_load(conn, "agency_h") == result.load_id
    got = _db.invalid_rows(conn, result.load_id)
    assert len(got) == len(exp.invalid)
    for have, inv in zip(got, exp.invalid, strict=True):
        where = f"record {inv.record_number} (line {inv.line_number})"
        assert (have["line_number"], have["record_number"]) == (inv.line_number, inv.record_number), where
        assert have["raw_line"] == inv.raw, where
        assert (have["source"], have["table_name"]) == ("agency_h", "customer_rating_agency_h")
        assert have["file_uri"] == path.absolute().as_uri()
        failing = {e["column"]: e["code"] for e in have["errors"]}
        assert len(failing) == len(have["errors"]), f"{where}: one error per failing column"
        assert set(failing) == set(inv.failing), f"{where}: failing columns {have['errors']}"
        for column, code in failing.items():
            assert code in inv.failing[column], f"{where}: {column} has {code}, SPEC allows {inv.failing[column]}"
        assert all(isinstance(e["message"], str) and e["message"] for e in have["errors"])
        if inv.fields is not None:
            assert have["fields"] == inv.fields, where
        assert have["error"] and "\n" not in have["error"], f"{where}: the triage error is one line"


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Any:
    yield
    if GENERATED["files"]:
        print(f"\n[reliability] generated files: {GENERATED}")
