"""kill -9 of a real ``customer-ratings run`` at many points of a large load (4 agencies, ~1.5 M rows, 52 MB).

Points are drawn by a seeded RNG, in five kinds:
- ``time``: a random fraction of the measured duration of a complete run;
- ``copy``: while a chosen agency's COPY into its new child tables streams (seen in pg_stat_activity), after a
  random delay;
- ``after_copy``: the moment that COPY has ended, i.e. between the children's commit (unattached) and the swap;
- ``report_query``: while the report's query runs;
- ``report_file``: the moment the report's temporary file appears in the output folder.

After each kill (and the database has rolled the dead client's transactions back):
- every agency holds exactly one complete load, the previous one or the new one, identical in its table and
  in customer_rating (the same child tables), matching its current load's history row and invalid rows;
- every history row from before is unchanged, and the only new rows are the loads that are now current;
- the report is the previous one byte for byte, or a complete report of what the database now holds;
- nothing but complete reports is left in the output folder.
Every few points, and at the end, a run is let finish: it must succeed and leave no orphan child table.

``RELIABILITY_KILL_POINTS`` (default 25) and ``RELIABILITY_KILL_SEED`` change the campaign.
"""

from __future__ import annotations

import csv
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from . import _db, _fault
from ._bigdata import AGENCIES, Expect, Version
from ._cli import assert_no_traceback, cli_env, run_cli, start_cli

POINTS = int(os.environ.get("RELIABILITY_KILL_POINTS", "25"))
SEED = int(os.environ.get("RELIABILITY_KILL_SEED", "20250513"))
MODES = ("time", "copy", "after_copy", "report_query", "report_file")
COMPANION = re.compile(r"Customer_Rating_(Invalid_Rows_\w+_\d{8}\.csv|Quality_Report_\d{8}\.html)")
REPORT = "Customer_Rating_Aggregate_Report_20250513.csv"


def _args(version: Version, out: Path) -> list[str]:
    return ["run", "--data-dir", str(version.data), "--output-dir", str(out), "--date", "2025-05-13", "--force",
            "--quiet"]


def _report(out: Path) -> list[list[str]]:
    with (out / REPORT).open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "customer"
    return rows[1:]


def _kill(mode: str, proc: Any, rng: random.Random, full_run: float, url: str, out: Path) -> bool:
    """Kill ``proc`` at a point of kind ``mode``; False when it finished before that point came."""
    with _db.connect(url) as conn:
        if mode == "time":
            try:
                proc.wait(timeout=rng.uniform(0.0, full_run))
                return False
            except subprocess.TimeoutExpired:  # still running: kill it now
                pass
        elif mode in ("copy", "after_copy"):
            agency = rng.choice(AGENCIES)
            seen = _fault.wait_for_query(conn, _fault.copy_into(f"customer_rating_{agency}"), proc)
            if seen is None:
                return False
            if mode == "copy":
                time.sleep(rng.uniform(0.0, 0.2))
            elif not _fault.wait_until_done(conn, seen[0], seen[1], proc):
                return False
        elif mode == "report_query":
            if _fault.wait_for_query(conn, "^-- The aggregate report", proc) is None:
                return False
            time.sleep(rng.uniform(0.0, 0.05))
        else:
            old = set(os.listdir(out))
            while not any(n.endswith(".tmp") and n not in old for n in os.listdir(out)):
                if proc.poll() is not None:
                    return False
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def _campaign(database_url: str, tmp_path: Path, versions: dict[str, Version], points: int, seed: int) -> None:
    out = tmp_path / "out"
    env = cli_env(database_url, tmp_path / "home")
    started = time.monotonic()
    first = run_cli(_args(versions["v1"], out), env, timeout=300)
    full_run = time.monotonic() - started
    assert first.returncode == 0, str(first)
    now = _fault.check_consistent(database_url, {a: [versions["v1"].expect[a]] for a in AGENCIES})
    assert _report(out) == versions["v1"].report()
    rng = random.Random(seed)
    kills: Counter[str] = Counter()
    litter: list[str] = []
    for k in range(points):
        target = versions["v2" if k % 2 == 0 else "v1"]
        mode = MODES[k % len(MODES)] if k < len(MODES) else rng.choice(MODES)
        before_agencies, before_history = _fault.snapshot(database_url)
        before_report = (out / REPORT).read_bytes()
        proc = start_cli(_args(target, out), env, tmp_path / "logs", f"kill{k}")
        try:
            hit = _kill(mode, proc, rng, full_run, database_url, out)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        kills[f"{mode}:{'killed' if hit else 'finished first'}"] += 1
        where = f"kill point {k} ({mode}, {'killed' if hit else 'finished before the kill'})"
        if not hit:
            assert proc.returncode == 0, where
        _fault.wait_quiet(database_url)

        allowed: dict[str, list[Expect]] = {a: [now[a], target.expect[a]] for a in AGENCIES}
        now = _fault.check_consistent(database_url, allowed)
        after_agencies, after_history = _fault.snapshot(database_url)
        assert after_history[: len(before_history)] == before_history, f"{where}: history rewritten"
        new = after_history[len(before_history):]
        changed = {a for a in AGENCIES if after_agencies[a].current != before_agencies[a].current}
        assert sorted(r[1] for r in new) == sorted(changed), f"{where}: new history rows {new}"
        assert all(r[6] == "loaded" for r in new), f"{where}: new history rows {new}"
        for a in AGENCIES:
            if a not in changed:
                assert after_agencies[a].fingerprint == before_agencies[a].fingerprint, f"{where}: {a}"

        # The report's companions (reconciliation files, the quality page) are complete files too.
        leftovers = sorted(n for n in os.listdir(out) if n != REPORT and not COMPANION.fullmatch(n))
        if leftovers:  # checked at the end, so that the other kill points still run independently
            litter.append(f"{where}: the output folder holds {leftovers} besides the report")
            for name in leftovers:
                (out / name).unlink()
        if (out / REPORT).read_bytes() != before_report:
            assert _report(out) == [now[a].report_row(a) for a in AGENCIES], f"{where}: report"

        if k % 5 == 4 or k == points - 1:  # let a run finish: the next run completes normally
            done = run_cli(_args(target, out), env, timeout=300)
            assert_no_traceback(done)
            assert done.returncode == 0, f"after {where}: {done}"
            now = _fault.check_consistent(database_url, {a: [target.expect[a]] for a in AGENCIES})
            assert _report(out) == target.report()
            with _db.connect(database_url) as conn:
                every, attached = _db.stage_tables(conn)
            assert every == attached, f"after {where}: orphan staging tables {every - attached}"
    print(f"\n[reliability] kill points ({points}): {dict(kills)}")
    assert litter == [], "half-written report files are left behind:\n" + "\n".join(litter)


def test_kill_9_at_one_point_of_each_kind(database_url: str, tmp_path: Path,
                                          big_versions: dict[str, Version]) -> None:
    _campaign(database_url, tmp_path, big_versions, len(MODES), SEED)


@pytest.mark.slow
def test_kill_9_at_many_random_points(database_url: str, tmp_path: Path,
                                      big_versions: dict[str, Version]) -> None:
    _campaign(database_url, tmp_path, big_versions, POINTS, SEED + 1)
