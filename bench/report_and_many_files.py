"""1,000 agencies: `customer-ratings load` of one folder of small files, then `customer-ratings report`.

    python bench/report_and_many_files.py                      # 1,000 agencies x 10,000 rows, 1% invalid
    python bench/report_and_many_files.py --agencies 100 --rows-per-agency 1000 --runs 2

Targets (issue 4): the load of the folder in under 60 s, the report over the 10M consolidated rows in
under 2 s.

What one run does:

1. Generates ``--agencies`` files ``agency_NNNN_20250513.csv`` of ``--rows-per-agency`` rows each
   (bench/gen.py, seed = --seed + agency number, ``--invalid-percent`` invalid rows of every kind) and a
   sources config with one entry per agency (``name = "agency_NNNN"``, ``table =
   "customer_rating_agency_NNNN"``, ``file_pattern = "agency_NNNN_*.csv"``).
2. Starts an embedded server (or uses ``--database-url``), runs ``customer-ratings init`` (timed: it
   creates the 1,000 tables).
3. Times ``customer-ratings load --data-dir DIR --config FILE --quiet --date 2025-05-13``: the first load into empty
   tables, then ``--runs`` loads with ``--force`` (replacing every agency), then one without
   ``--force`` (every file ``unchanged``). After every load the database is checked against the
   generator's expected counts and sums, agency by agency.
4. Times ``customer-ratings report --output-dir DIR --date 2025-05-13 --config FILE --no-html --no-invalid-files``
   (the CSV report alone) ``--runs`` times and checks the
   report's every row against the expected values; also times the report query alone, in this process
   with psycopg, when src/customer_ratings/report.sql exists.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_WORK_DIR,
    REPO_DIR,
    ProcResult,
    RunFailed,
    Tee,
    code_version,
    find_cli,
    load_average,
    loader_env,
    machine_description,
    markdown_table,
    median,
    open_server,
    run_timed,
    server_settings,
    wait_for_idle,
)
from gen import Meta, generate
from load_vs_copy import RESULTS_DIR, VerificationError, write_config

REPORT_DATE = "2025-05-13"
LOAD_TARGET_S = 60.0
REPORT_TARGET_S = 2.0


def agency(i: int) -> tuple[str, str, str]:
    name = f"agency_{i:04d}"
    return name, f"customer_rating_{name}", f"{name}_*.csv"


def generate_all(a: argparse.Namespace, data_dir: Path, meta_dir: Path) -> dict[str, Meta]:
    metas = {}
    for i in range(1, a.agencies + 1):
        name, _, _ = agency(i)
        metas[name] = generate(
            data_dir / f"{name}_{REPORT_DATE.replace('-', '')}.csv",
            a.rows_per_agency,
            a.seed + i,
            a.invalid_percent,
            meta_dir=meta_dir,
        )
    return metas


def verify_all(conninfo: str, metas: dict[str, Meta], expect_status: str = "loaded") -> str:
    """Every agency: its table, its consolidated rows, its latest history row and its invalid rows."""
    problems: list[str] = []
    with psycopg.connect(conninfo) as conn:
        cons = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT customer, count(*), sum(customer_rating), "
                "count(*) FILTER (WHERE customer_status = 'high-value'), min(load_id), max(load_id) "
                "FROM customer_rating GROUP BY customer"
            )
        }
        hist = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT DISTINCT ON (source) source, load_id, status, rows_read, rows_loaded, rows_invalid "
                "FROM load_history ORDER BY source, load_id DESC"
            )
        }
        current = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT DISTINCT ON (source) source, load_id FROM load_history WHERE status = 'loaded' "
                "ORDER BY source, load_id DESC"
            )
        }
        inv = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "SELECT load_id, count(*), sum(line_number) FROM file_invalid_rows "
                "WHERE load_id = ANY(%s) GROUP BY load_id",
                (list(current.values()),),
            )
        }
        for name, m in metas.items():
            _, table, _ = agency(int(name.split("_")[1]))
            t = conn.execute(
                sql.SQL(
                    "SELECT count(*), coalesce(sum(customer_rating), 0), "
                    "count(*) FILTER (WHERE customer_status = 'high-value') FROM {}"
                ).format(sql.Identifier(table))
            ).fetchone()
            want = (m.valid, m.sum_customer_rating, m.high_value_count)
            if tuple(int(x) for x in t) != want:
                problems.append(f"{table}: (count, sum, high) = {tuple(t)}, expected {want}")
            c = cons.get(name)
            load_id = current.get(name)
            if c is None or (int(c[0]), int(c[1]), int(c[2])) != want or c[3] != c[4] or c[3] != load_id:
                problems.append(f"customer_rating[{name}] = {c}, expected {want} from load {load_id}")
            h = hist.get(name)
            if h is None or h[1] != expect_status:
                problems.append(f"load_history[{name}] latest = {h}, expected status {expect_status}")
            elif expect_status == "loaded" and (h[2], h[3], h[4]) != (m.rows, m.valid, m.invalid):
                problems.append(f"load_history[{name}] rows = {h[2:]}, expected {(m.rows, m.valid, m.invalid)}")
            i = inv.get(load_id, (0, 0))
            if (int(i[0]), int(i[1] or 0)) != (m.invalid, m.invalid_line_number_sum):
                problems.append(f"file_invalid_rows[{name}, load {load_id}] = {i}")
            if len(problems) > 10:
                break
    if problems:
        raise VerificationError("; ".join(problems[:10]))
    return f"{len(metas):,} agencies ok"


def max_load_id(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        return int(conn.execute("SELECT coalesce(max(load_id), 0) FROM load_history").fetchone()[0])


def per_agency_seconds(conninfo: str, after_load_id: int) -> dict[str, float]:
    """Each agency's load time as the loader recorded it (finished_at - started_at), in load order.

    A time per agency that grows from the first agencies to the last shows a per-run cost that grows with
    the number of agencies already replaced (catalog or partition-descriptor work, for instance).
    """
    with psycopg.connect(conninfo) as conn:
        ms = [
            float(r[0])
            for r in conn.execute(
                "SELECT 1000 * extract(epoch FROM finished_at - started_at) FROM load_history "
                "WHERE load_id > %s ORDER BY load_id",
                (after_load_id,),
            )
        ]
    if not ms:
        return dict(count=0, median_ms=float("nan"), first100_ms=float("nan"), last100_ms=float("nan"))
    return dict(
        count=len(ms),
        median_ms=median(ms),
        first100_ms=sum(ms[:100]) / len(ms[:100]),
        last100_ms=sum(ms[-100:]) / len(ms[-100:]),
        total_s=sum(ms) / 1000,
    )


def _pct(invalid: int, loaded: int) -> str:
    total = invalid + loaded
    if total == 0:
        return "0.00"
    q = (Decimal(100) * invalid / total).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{q:.2f}"


def verify_report(path: Path, metas: dict[str, Meta]) -> str:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    want_header = [
        "customer",
        "count_customer_number",
        "sum_customer_rating",
        "high_value_count",
        "invalid_customer_number_count",
        "invalid_customer_number_percent",
    ]
    if header != want_header:
        raise VerificationError(f"report header {header}")
    expected = [
        [
            n,
            str(m.valid),
            str(m.sum_customer_rating),
            str(m.high_value_count),
            str(m.invalid),
            _pct(m.invalid, m.valid),
        ]
        for n, m in sorted(metas.items())
    ]
    # On a shared --database-url the report may also hold agencies this benchmark did not load.
    ours = [r for r in body if r and r[0] in metas]
    others = len(body) - len(ours)
    if ours != expected:
        bad = [(g, w) for g, w in zip(ours, expected, strict=False) if g != w][:3]
        raise VerificationError(f"report: {len(ours)} rows (expected {len(expected)}); first differences {bad}")
    if others:
        return f"{len(ours):,} rows ok ({others} rows of other agencies ignored)"
    return f"{len(ours):,} rows ok"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agencies", type=int, default=1000)
    ap.add_argument("--rows-per-agency", type=int, default=10_000)
    ap.add_argument("--invalid-percent", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3, help="forced loads and report runs (default 3)")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--database-url")
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    ap.add_argument("--keep-files", action="store_true")
    ap.add_argument("--cli")
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each timed command, wait up to SECONDS for the machine to be idle (shared machines)",
    )
    a = ap.parse_args(argv)

    out = Tee()
    cli = find_cli(a.cli)
    if cli is None:
        raise SystemExit("customer-ratings not found: pip install -e . in the venv, or pass --cli")
    work = a.work_dir.resolve()
    base = work / f"many-{a.agencies}x{a.rows_per_agency}-inv{a.invalid_percent:g}"
    data_dir, meta_dir, report_dir, run_dir = base / "data", base / "meta", base / "report", base / "runs"
    started = datetime.now()
    command = "python bench/report_and_many_files.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out(
        f"# report_and_many_files: {a.agencies:,} agencies x {a.rows_per_agency:,} rows, {a.invalid_percent:g}% invalid"
    )
    out(f"command: {command}")
    out(f"date: {started:%Y-%m-%d %H:%M}; machine: {machine_description()}; code: {code_version()}")
    out(f"load average at start (1/5/15 min): {load_average()}")

    t0 = time.perf_counter()
    metas = generate_all(a, data_dir, meta_dir)
    total_rows = sum(m.rows for m in metas.values())
    total_bytes = sum(m.size_bytes for m in metas.values())
    n_invalid = sum(m.invalid for m in metas.values())
    out(
        f"files: {len(metas):,} x {a.rows_per_agency:,} rows = {total_rows:,} rows, "
        f"{total_bytes / 1e6:.0f} MB, {n_invalid:,} invalid; "
        f"generated/reused in {time.perf_counter() - t0:.1f} s"
    )
    config = base / "sources.toml"
    write_config(config, [agency(i) for i in range(1, a.agencies + 1)])

    results: dict[str, Any] = dict(
        command=command,
        started=started.isoformat(timespec="seconds"),
        code=code_version(),
        machine=machine_description(),
        agencies=a.agencies,
        rows_per_agency=a.rows_per_agency,
        invalid_percent=a.invalid_percent,
        total_rows=total_rows,
        total_bytes=total_bytes,
        loads=[],
        reports=[],
        report_sql=[],
    )
    status = 0
    try:
        with open_server(a.database_url, base, keep=a.keep_files) as server:
            settings = server_settings(server.conninfo)
            results["server"] = dict(description=server.description, settings=settings)
            out(f"server: {server.description}")
            env = loader_env(server, base / "home")

            def timed(argv: list[str], what: str, tag: str) -> ProcResult:
                if a.wait_idle > 0:
                    busy = wait_for_idle(a.wait_idle)
                    out(f"  (machine CPU use before {tag}: {busy:.0%})")
                return run_timed(
                    argv,
                    env=env,
                    log_dir=run_dir / tag,
                    postmaster_pid=server.postmaster_pid,
                    conninfo_for_wal=server.conninfo,
                ).check(what)

            p = timed([cli, "init", "--config", str(config)], "customer-ratings init", "init")
            results["init"] = dict(seconds=p.seconds, max_rss_mib=p.max_rss_mib)
            out(f"init ({a.agencies:,} tables): {p.seconds:.2f} s, peak RSS {p.max_rss_mib:.0f} MiB")

            load_rows = []
            # The loads are for the report's date: the report for D reads the loads current as of D (SPEC "Days").
            load_argv = [cli, "load", "--data-dir", str(data_dir), "--config", str(config), "--quiet",
                         "--date", REPORT_DATE]
            plan = [("first", load_argv)] + [(f"forced {k}", [*load_argv, "--force"]) for k in range(1, a.runs + 1)]
            plan.append(("unchanged", load_argv))
            for label, argv_ in plan:
                last_id = max_load_id(server.conninfo)
                p = timed(argv_, f"customer-ratings load ({label})", f"load-{label.replace(' ', '-')}")
                verified = verify_all(server.conninfo, metas, "unchanged" if label == "unchanged" else "loaded")
                per = per_agency_seconds(server.conninfo, last_id)
                rec = dict(
                    label=label,
                    seconds=p.seconds,
                    rows_per_s=total_rows / p.seconds,
                    max_rss_mib=p.max_rss_mib,
                    cpu_s=p.cpu_s,
                    server_cpu_s=p.server_cpu_s,
                    other_cpu_s=p.other_cpu_s,
                    wal_mib=p.wal_bytes / 2**20 if p.wal_bytes is not None else None,
                    verified=verified,
                    per_agency=per,
                )
                results["loads"].append(rec)
                load_rows.append(
                    [
                        label,
                        f"{p.seconds:.2f}",
                        f"{rec['rows_per_s']:,.0f}",
                        f"{p.max_rss_mib:.0f}",
                        f"{p.cpu_s:.2f}",
                        "-" if p.server_cpu_s is None else f"{p.server_cpu_s:.2f}",
                        "-" if rec["wal_mib"] is None else f"{rec['wal_mib']:.0f}",
                        "-" if p.other_cpu_s is None else f"{p.other_cpu_s:.2f}",
                        verified,
                    ]
                )
                out(
                    f"  load ({label}): {p.seconds:.2f} s, peak RSS {p.max_rss_mib:.0f} MiB; {verified}; "
                    f"per agency (load_history): median {per['median_ms']:.1f} ms, "
                    f"first 100 {per['first100_ms']:.1f} ms, last 100 {per['last100_ms']:.1f} ms (mean)"
                )

            report_rows = []
            report_file = report_dir / f"Customer_Rating_Aggregate_Report_{REPORT_DATE.replace('-', '')}.csv"
            for k in range(1, a.runs + 1):
                if report_file.exists():
                    report_file.unlink()
                p = timed(
                    [cli, "report", "--output-dir", str(report_dir), "--date", REPORT_DATE, "--config", str(config),
                     "--no-html", "--no-invalid-files"],
                    "customer-ratings report",
                    f"report-{k}",
                )
                if not report_file.exists():
                    raise VerificationError(f"report not written: {report_file}; files: {list(report_dir.iterdir())}")
                verified = verify_report(report_file, metas)
                results["reports"].append(
                    dict(
                        seconds=p.seconds,
                        max_rss_mib=p.max_rss_mib,
                        cpu_s=p.cpu_s,
                        server_cpu_s=p.server_cpu_s,
                        other_cpu_s=p.other_cpu_s,
                        verified=verified,
                    )
                )
                report_rows.append(
                    [
                        k,
                        f"{p.seconds:.3f}",
                        f"{p.max_rss_mib:.0f}",
                        f"{p.cpu_s:.2f}",
                        "-" if p.server_cpu_s is None else f"{p.server_cpu_s:.2f}",
                        "-" if p.other_cpu_s is None else f"{p.other_cpu_s:.2f}",
                        verified,
                    ]
                )
                out(f"  report {k}: {p.seconds:.3f} s; {verified}")

            report_sql = REPO_DIR / "src" / "customer_ratings" / "report.sql"
            if report_sql.exists():
                query = report_sql.read_text()
                params = {"day": REPORT_DATE, "sources": [agency(i)[0] for i in range(1, a.agencies + 1)]}
                with psycopg.connect(server.conninfo) as conn:
                    for k in range(0, a.runs + 1):  # 0 = warm-up
                        t = time.perf_counter()
                        rows = conn.execute(query.encode(), params).fetchall()
                        n = len(rows)
                        dt = time.perf_counter() - t
                        conn.rollback()
                        if k:
                            results["report_sql"].append(dict(seconds=dt, rows=n))
                    # The stored numbers never drift from the data: the same numbers over customer_rating itself.
                    scanned = {r[0]: tuple(int(v) for v in r[1:]) for r in conn.execute(
                        """SELECT customer, count(*), coalesce(sum(customer_rating), 0),
                                  count(*) FILTER (WHERE customer_status = 'high-value')
                           FROM customer_rating GROUP BY customer""")}
                    stored = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}
                    if stored != scanned:
                        raise VerificationError("the report's stored numbers differ from a scan of customer_rating")
                    out(f"  report numbers = a scan of customer_rating for all {len(scanned):,} agencies")
                out(
                    f"  report.sql alone (psycopg, in-process, median of {a.runs}): "
                    f"{median([r['seconds'] for r in results['report_sql']]):.3f} s, {n:,} rows"
                )
            else:
                out("  (src/customer_ratings/report.sql not found: query-alone timing skipped)")
    except (RunFailed, VerificationError, psycopg.Error) as e:
        out(f"FAILED: {e}")
        results["failure"] = str(e)
        status = 1

    if results["loads"]:
        out("")
        out("## Loads of the folder")
        out(
            markdown_table(
                [
                    "load",
                    "seconds",
                    "rows/s",
                    "peak RSS MiB",
                    "client CPU s",
                    "server CPU s",
                    "WAL MiB",
                    "other CPU s",
                    "verified",
                ],
                load_rows,
            )
        )
    if results["reports"]:
        out("")
        out("## Report")
        out(
            markdown_table(
                ["run", "seconds", "peak RSS MiB", "client CPU s", "server CPU s", "other CPU s", "verified"],
                report_rows,
            )
        )
    if status == 0:
        forced = [r["seconds"] for r in results["loads"] if r["label"].startswith("forced")]
        rep = median([r["seconds"] for r in results["reports"]])
        summary = dict(
            first_load_s=results["loads"][0]["seconds"],
            forced_load_median_s=median(forced),
            unchanged_load_s=results["loads"][-1]["seconds"],
            report_median_s=rep,
            report_sql_median_s=median([r["seconds"] for r in results["report_sql"]])
            if results["report_sql"]
            else None,
            load_peak_rss_mib=max(r["max_rss_mib"] for r in results["loads"]),
        )
        results["summary"] = summary
        worst_load = max(summary["first_load_s"], summary["forced_load_median_s"])
        out("")
        out(
            f"load of {a.agencies:,} files: first {summary['first_load_s']:.2f} s, "
            f"forced (median of {len(forced)}) "
            f"{summary['forced_load_median_s']:.2f} s, unchanged {summary['unchanged_load_s']:.2f} s "
            f"(target < {LOAD_TARGET_S:.0f} s): " + ("PASS" if worst_load < LOAD_TARGET_S else "FAIL")
        )
        out(
            f"report (median of {len(results['reports'])}): {rep:.3f} s (target < {REPORT_TARGET_S:.0f} s): "
            + ("PASS" if rep < REPORT_TARGET_S else "FAIL")
            + (
                f"; report.sql alone {summary['report_sql_median_s']:.3f} s"
                if summary["report_sql_median_s"] is not None
                else ""
            )
        )
        out(f"loader peak RSS over the folder loads: {summary['load_peak_rss_mib']:.0f} MiB")

    a.results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"many_files-{a.agencies}x{a.rows_per_agency}-inv{a.invalid_percent:g}-{started:%Y%m%d-%H%M%S}"
    (a.results_dir / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (a.results_dir / f"{stem}.md").write_text(out.text())
    print(f"\nresults: {a.results_dir / stem}.json / .md")
    if not a.keep_files:
        shutil.rmtree(base, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
