"""`customer-ratings load` against plain `psql \\copy`, on the same server, in the same run.

    python bench/load_vs_copy.py --rows 10000000            # embedded server, 3 pairs, 1% invalid
    python bench/load_vs_copy.py --rows 1000000 --invalid-percent 50
    python bench/load_vs_copy.py --database-url postgresql://user@host/db --rows 1000000

What one run does:

1. Generates (or reuses, when the seed/size match) two files of N data rows with bench/gen.py: the
   all-valid file for the baseline, and the agency file in which ``--invalid-percent`` of the same rows
   are replaced by invalid rows of every kind.
2. Starts an embedded PostgreSQL (data in ``<work-dir>/pgdata``, deleted at the end unless
   ``--keep-files``) or uses ``--database-url``.
3. Runs ``customer-ratings init`` with a one-source config, then measures once: interpreter start-up
   (``customer-ratings --help``) and the fixed cost of a load (a header-only file).
4. One untimed warm-up pair, then ``--runs`` pairs, each: baseline, then loader, both as subprocesses
   timed on the wall clock, with an untimed CHECKPOINT before each.
   * baseline: ``psql -c BEGIN -c "TRUNCATE bench_baseline" -c "\\copy bench_baseline FROM 'valid.csv'
     (FORMAT csv, HEADER)" -c COMMIT``: an atomic replace of a table with the agency DDL.
   * loader: ``customer-ratings load --data-dir DIR --config bench.toml --force --quiet`` with
     CUSTOMER_RATINGS_DATABASE_URL pointing at the same database.
   Peak RSS and CPU of each child come from os.wait4; server CPU from /proc (embedded server only);
   WAL from pg_current_wal_insert_lsn().
5. After every run the database is checked against the generator's expected counts and sums: the
   baseline table; the agency table, the consolidated ``customer_rating`` rows of the source, the
   load history row and the ``file_invalid_rows`` of that load (count and sum of line numbers).
   A mismatch stops the benchmark with exit code 1.
6. Prints a table per run and the medians; ratio = loader rows/s / baseline rows/s of the same pair,
   rows = input data rows. Writes everything to bench/results/ as JSON and text.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    AGENCY_DDL,
    BENCH_DIR,
    DEFAULT_WORK_DIR,
    ProcResult,
    RunFailed,
    Server,
    Tee,
    checkpoint,
    code_version,
    find_cli,
    fmt_int,
    load_average,
    loader_env,
    machine_description,
    markdown_table,
    median,
    open_server,
    psql_path,
    run_timed,
    server_settings,
    wait_for_idle,
)
from gen import HEADER, Meta, generate

SOURCE = "bench_agency"
TABLE = "customer_rating_bench_agency"
BASELINE_TABLE = "bench_baseline"
RSS_TARGET_MIB = 200.0
RESULTS_DIR = BENCH_DIR / "results"


def ratio_target(invalid_percent: float) -> float:
    """Issue 14: >= 1.1 x baseline with 1% invalid rows (embedded server), >= 0.3 x with 50%."""
    return 1.1 if invalid_percent <= 1.0 else 0.3


@dataclass
class Run:
    pair: int  # 0 = warm-up
    tool: str  # "psql \\copy" | "loader"
    seconds: float
    rows: int
    size_bytes: int
    max_rss_mib: float
    cpu_s: float
    server_cpu_s: float | None
    wal_mib: float | None
    verified: str
    other_cpu_s: float | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.size_bytes / 1e6 / self.seconds


# ------------------------------------------------------------------------------------- verification


class VerificationError(AssertionError):
    pass


def _columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
        "AND table_schema = ANY (current_schemas(false)) ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]


def _pick(cols: list[str], *candidates: str) -> str:
    for c in candidates:
        if c in cols:
            return c
    raise VerificationError(f"none of the columns {candidates} in {cols}")


def table_stats(
    conn: psycopg.Connection[Any],
    table: str,
    where: sql.Composable | None = None,
    params: tuple[Any, ...] = (),
) -> dict[str, int]:
    q = sql.SQL(
        "SELECT count(*), coalesce(sum(customer_number), 0), coalesce(sum(customer_rating), 0), "
        "coalesce(sum(customer_rating_limit), 0), count(*) FILTER (WHERE customer_status = 'high-value') "
        "FROM {}"
    ).format(sql.Identifier(table))
    if where is not None:
        q = q + sql.SQL(" WHERE ") + where
    r = conn.execute(q, params).fetchone()
    assert r is not None
    return dict(
        valid=int(r[0]),
        sum_customer_number=int(r[1]),
        sum_customer_rating=int(r[2]),
        sum_customer_rating_limit=int(r[3]),
        high_value_count=int(r[4]),
    )


def _expect(problems: list[str], what: str, got: dict[str, Any], meta: Meta) -> None:
    for k, v in got.items():
        want = getattr(meta, k)
        if v != want:
            problems.append(f"{what}: {k} = {v}, expected {want}")


def verify_baseline(conninfo: str, meta: Meta) -> str:
    with psycopg.connect(conninfo) as conn:
        got = table_stats(conn, BASELINE_TABLE)
    problems: list[str] = []
    _expect(problems, BASELINE_TABLE, got, meta)
    if problems:
        raise VerificationError("; ".join(problems))
    return f"{got['valid']:,} rows, sum ok"


def verify_load(conninfo: str, meta: Meta, source: str = SOURCE, table: str = TABLE) -> str:
    """Check the DB after a load of the file described by meta; return a short summary or raise."""
    problems: list[str] = []
    with psycopg.connect(conninfo) as conn:
        _expect(problems, table, table_stats(conn, table), meta)

        hcols = _columns(conn, "load_history")
        if not hcols:
            raise VerificationError("table load_history not found")
        src_col = _pick(hcols, "source", "source_name", "agency", "customer")
        id_col = _pick(hcols, "load_id", "id")
        h = conn.execute(
            sql.SQL("SELECT * FROM load_history WHERE {} = %s ORDER BY {} DESC LIMIT 1").format(
                sql.Identifier(src_col), sql.Identifier(id_col)
            ),
            (source,),
        ).fetchone()
        if h is None:
            raise VerificationError(f"no load_history row for {source}")
        hist = dict(zip(hcols, h, strict=True))
        load_id = hist[id_col]
        if hist.get("status") != "loaded":
            problems.append(f"load_history status = {hist.get('status')!r} (error: {hist.get('error')!r})")
        for col, want in (
            ("rows_read", meta.rows),
            ("rows_loaded", meta.valid),
            ("rows_invalid", meta.invalid),
        ):
            if col in hist and hist[col] != want:
                problems.append(f"load_history.{col} = {hist[col]}, expected {want}")

        ccols = _columns(conn, "customer_rating")
        cust_col = _pick(ccols, "customer", "source", "agency")
        cons = table_stats(conn, "customer_rating", sql.SQL("{} = %s").format(sql.Identifier(cust_col)), (source,))
        _expect(problems, "customer_rating", cons, meta)
        if "load_id" in ccols:
            ids = (
                conn.execute(
                    sql.SQL("SELECT array_agg(DISTINCT load_id) FROM customer_rating WHERE {} = %s").format(
                        sql.Identifier(cust_col)
                    ),
                    (source,),
                ).fetchone()[0]
                or []
            )
            if meta.valid and ids != [load_id]:
                problems.append(f"customer_rating load_ids {ids}, expected [{load_id}]")

        icols = _columns(conn, "file_invalid_rows")
        line_col = _pick(icols, "line_number", "line_no", "line")
        inv_load_col = _pick(icols, "load_id")
        r = conn.execute(
            sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM file_invalid_rows WHERE {} = %s").format(
                sql.Identifier(line_col), sql.Identifier(inv_load_col)
            ),
            (load_id,),
        ).fetchone()
        if int(r[0]) != meta.invalid:
            problems.append(f"file_invalid_rows count = {r[0]}, expected {meta.invalid}")
        if int(r[1]) != meta.invalid_line_number_sum:
            problems.append(f"file_invalid_rows sum({line_col}) = {r[1]}, expected {meta.invalid_line_number_sum}")
        # Error codes: each generated invalid row has exactly one failing column with a known code.
        # A difference is reported (not fatal): it is a semantic question, not a lost row.
        note = ""
        if "errors" in icols and meta.invalid:
            codes = dict(
                conn.execute(
                    "SELECT e->>'code', count(DISTINCT f.record_number) FROM file_invalid_rows f, "
                    "jsonb_array_elements(f.errors) e WHERE f.load_id = %s GROUP BY 1",
                    (load_id,),
                ).fetchall()
            )
            if codes != meta.invalid_by_code:
                want = dict(sorted(meta.invalid_by_code.items()))
                note = f"; NOTE error codes {dict(sorted(codes.items()))} != expected {want}"
            else:
                note = ", codes ok"
    if problems:
        raise VerificationError(f"load {load_id}: " + "; ".join(problems))
    return f"load {load_id}: {meta.valid:,} loaded + {meta.invalid:,} invalid, sums and line numbers ok{note}"


# ------------------------------------------------------------------------------------------- readers


class ReaderCheck:
    """While a load runs: a reader with ``statement_timeout = 500ms`` counts the agency table, then the agency's
    rows in ``customer_rating``, again and again (SPEC: readers are never blocked beyond the swap). Every answer
    must come in time and be one of the ``allowed`` counts (the old data or the new). Opt-in: the reader's own
    scans take CPU from the load."""

    def __init__(self, conninfo: str, allowed: set[int]) -> None:
        self.conninfo, self.allowed = conninfo, allowed
        self.latencies: list[float] = []
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReaderCheck:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        queries = [(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TABLE)), ()),
                   (sql.SQL("SELECT count(*) FROM customer_rating WHERE customer = %s"), (SOURCE,))]
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute("SET statement_timeout = '500ms'")
            while not self._stop.is_set():
                for query, params in queries:
                    started = time.perf_counter()
                    try:
                        row = conn.execute(query, params).fetchone()
                    except psycopg.Error as e:
                        self.problems.append(f"{type(e).__name__}: {str(e).strip()}")
                        continue
                    self.latencies.append(time.perf_counter() - started)
                    if row is None or row[0] not in self.allowed:
                        self.problems.append(f"count {row} (allowed: {sorted(self.allowed)})")
                time.sleep(0.02)

    def summary(self) -> str:
        """One line for the run's output; raises VerificationError if any read failed or saw a mix."""
        if self.problems:
            raise VerificationError(f"reader check: {len(self.problems)} problem(s), e.g. {self.problems[:3]}")
        slowest = max(self.latencies, default=0.0) * 1000
        return f"reader: {len(self.latencies)} reads, slowest {slowest:.0f} ms, all old or new"


# ------------------------------------------------------------------------------------------- runs


def baseline_argv(server: Server, valid_csv: Path) -> list[str]:
    path = str(valid_csv.resolve()).replace("'", "''")
    return [
        psql_path(),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        server.conninfo,
        "-c",
        "BEGIN",
        "-c",
        f"TRUNCATE {BASELINE_TABLE}",
        "-c",
        f"\\copy {BASELINE_TABLE} FROM '{path}' (FORMAT csv, HEADER)",
        "-c",
        "COMMIT",
    ]


def to_run(pair: int, tool: str, p: ProcResult, meta: Meta, verified: str) -> Run:
    return Run(
        pair=pair,
        tool=tool,
        seconds=p.seconds,
        rows=meta.rows,
        size_bytes=meta.size_bytes,
        max_rss_mib=p.max_rss_mib,
        cpu_s=p.cpu_s,
        server_cpu_s=p.server_cpu_s,
        wal_mib=(p.wal_bytes / 2**20) if p.wal_bytes is not None else None,
        verified=verified,
        other_cpu_s=p.other_cpu_s,
    )


def _opt(x: float | None, f: str = "{:.2f}") -> str:
    return "-" if x is None else f.format(x)


def run_row(r: Run, ratio: float | None) -> list[object]:
    return [
        r.pair if r.pair else "warm-up",
        r.tool,
        f"{r.seconds:.3f}",
        fmt_int(r.rows_per_s),
        f"{r.mb_per_s:.1f}",
        _opt(ratio, "{:.3f}"),
        f"{r.max_rss_mib:.0f}",
        f"{r.cpu_s:.2f}",
        _opt(r.server_cpu_s),
        _opt(r.wal_mib, "{:.0f}"),
        _opt(r.other_cpu_s),
    ]


RUN_HEADERS = [
    "pair",
    "tool",
    "seconds",
    "rows/s",
    "MB/s",
    "ratio",
    "peak RSS MiB",
    "client CPU s",
    "server CPU s",
    "WAL MiB",
    "other CPU s",
]


def write_config(path: Path, sources: list[tuple[str, str, str]]) -> None:
    lines = []
    for name, table, pattern in sources:
        lines += ["[[sources]]", f'name = "{name}"', f'table = "{table}"', f'file_pattern = "{pattern}"', ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="data rows per file (default 1,000,000)")
    ap.add_argument("--runs", type=int, default=3, help="timed pairs (baseline + loader), default 3")
    ap.add_argument("--invalid-percent", type=float, default=1.0, help="share of invalid rows (default 1)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--database-url", help="use this server instead of an embedded one")
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="generated files and server data")
    ap.add_argument("--keep-files", action="store_true", help="keep generated files and the server's data")
    ap.add_argument("--cli", help="path of the customer-ratings executable (default: next to this python)")
    ap.add_argument("--baseline-only", action="store_true", help="only the psql baseline (no loader)")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each pair, wait up to SECONDS for the machine to be idle (shared machines)",
    )
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    ap.add_argument("--reader-check", action="store_true",
                    help="during each load, a reader with statement_timeout=500ms must always answer old-or-new")
    ap.add_argument("--streams", type=int, help="parallel COPY streams of the loader (CUSTOMER_RATINGS_STREAMS; "
                    "default: the loader's own default, one per core)")
    a = ap.parse_args(argv)

    out = Tee()
    work: Path = a.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    pct = f"{a.invalid_percent:g}"
    gen_dir = work / "gen"
    data_dir = work / f"load-{a.rows}-inv{pct}"
    valid_csv = gen_dir / f"valid-{a.rows}.csv"
    agency_csv = data_dir / f"{SOURCE}_{a.rows}_inv{pct}.csv"
    empty_dir = work / "load-header-only"
    run_dir = work / "runs"
    cli = None if a.baseline_only else find_cli(a.cli)
    if not a.baseline_only and cli is None:
        raise SystemExit("customer-ratings not found: pip install -e . in the venv, or pass --cli / --baseline-only")
    started = datetime.now()
    command = "python bench/load_vs_copy.py " + " ".join(sys.argv[1:] if argv is None else argv)

    t0 = time.perf_counter()
    meta = generate(agency_csv, a.rows, a.seed, a.invalid_percent, valid_path=valid_csv, meta_dir=gen_dir)
    vmeta = Meta.read(gen_dir / (valid_csv.name + ".meta.json"))
    out(f"# load_vs_copy: {a.rows:,} rows, {a.invalid_percent:g}% invalid, {a.runs} pairs")
    out(f"command: {command}")
    out(f"date: {started:%Y-%m-%d %H:%M}; machine: {machine_description()}; code: {code_version()}")
    out(f"load average at start (1/5/15 min): {load_average()}")
    out(
        f"files: {valid_csv.name} {vmeta.size_bytes / 1e6:.1f} MB (all valid); {agency_csv.name} "
        f"{meta.size_bytes / 1e6:.1f} MB ({meta.valid:,} valid + {meta.invalid:,} invalid: "
        + ", ".join(f"{k} {v}" for k, v in meta.invalid_by_kind.items())
        + f"); generated/reused in {time.perf_counter() - t0:.1f} s"
    )

    results: dict[str, Any] = dict(
        command=command,
        started=started.isoformat(timespec="seconds"),
        code=code_version(),
        machine=machine_description(),
        rows=a.rows,
        invalid_percent=a.invalid_percent,
        seed=a.seed,
        meta=asdict(meta),
        runs=[],
    )
    status = 0
    runs: list[Run] = []
    table_rows: list[list[object]] = []
    try:
        with open_server(a.database_url, work, keep=a.keep_files) as server:
            settings = server_settings(server.conninfo)
            results["server"] = dict(description=server.description, settings=settings)
            out(f"server: {server.description}; " + ", ".join(f"{k}={v}" for k, v in settings.items()))
            with psycopg.connect(server.conninfo, autocommit=True) as conn:
                conn.execute(sql.SQL(AGENCY_DDL).format(sql.Identifier(BASELINE_TABLE)))
            env = loader_env(server, work / "home")
            if a.streams:
                env["CUSTOMER_RATINGS_STREAMS"] = str(a.streams)
            config = work / "bench.toml"
            write_config(config, [(SOURCE, TABLE, f"{SOURCE}_*.csv")])

            if cli:
                # Fixed costs, measured once each (3 runs, median): interpreter start-up + imports, and a
                # load of a header-only file (start-up + connect + migrations check + one empty load).
                run_timed([cli, "init", "--config", str(config)], env=env, log_dir=run_dir / "init").check(
                    "customer-ratings init"
                )
                helps = [
                    run_timed([cli, "--help"], env=env, log_dir=run_dir / "help").check("customer-ratings --help")
                    for _ in range(3)
                ]
                empty_dir.mkdir(parents=True, exist_ok=True)
                (empty_dir / f"{SOURCE}_0_header_only.csv").write_bytes(HEADER)
                empties = [
                    run_timed(
                        [
                            cli,
                            "load",
                            "--data-dir",
                            str(empty_dir),
                            "--config",
                            str(config),
                            "--force",
                            "--quiet",
                        ],
                        env=env,
                        log_dir=run_dir / "empty",
                    ).check("customer-ratings load (header-only file)")
                    for _ in range(3)
                ]
                results["startup"] = dict(
                    help_seconds=median([h.seconds for h in helps]),
                    help_max_rss_mib=median([h.max_rss_mib for h in helps]),
                    header_only_load_seconds=median([e.seconds for e in empties]),
                    header_only_load_max_rss_mib=median([e.max_rss_mib for e in empties]),
                )
                st = results["startup"]
                out(
                    f"fixed costs (median of 3): `customer-ratings --help` {st['help_seconds']:.3f} s "
                    f"({st['help_max_rss_mib']:.0f} MiB); load of a header-only file "
                    f"{st['header_only_load_seconds']:.3f} s ({st['header_only_load_max_rss_mib']:.0f} MiB). "
                    "Both are inside every loader time below."
                )

            first = 0 if not a.no_warmup else 1
            for pair in range(first, a.runs + 1):
                if a.wait_idle > 0:
                    busy = wait_for_idle(a.wait_idle)
                    out(f"  (machine CPU use before pair {pair or 'warm-up'}: {busy:.0%})")
                checkpoint(server.conninfo)
                p = run_timed(
                    baseline_argv(server, valid_csv),
                    log_dir=run_dir / f"baseline-{pair}",
                    postmaster_pid=server.postmaster_pid,
                    conninfo_for_wal=server.conninfo,
                ).check("psql \\copy baseline")
                b = to_run(pair, "psql \\copy", p, vmeta, verify_baseline(server.conninfo, vmeta))
                runs.append(b)
                table_rows.append(run_row(b, None))
                label = pair or "warm-up"
                out(f"  pair {label}: psql \\copy {b.seconds:.3f} s, {fmt_int(b.rows_per_s)} rows/s")
                if not cli:
                    continue
                checkpoint(server.conninfo)
                reader = ReaderCheck(server.conninfo, {0, meta.valid}) if a.reader_check else None
                with reader or contextlib.nullcontext():
                    p = run_timed(
                        [cli, "load", "--data-dir", str(data_dir), "--config", str(config), "--force", "--quiet"],
                        env=env,
                        log_dir=run_dir / f"loader-{pair}",
                        postmaster_pid=server.postmaster_pid,
                        conninfo_for_wal=server.conninfo,
                    ).check("customer-ratings load")
                if reader is not None:
                    out(f"  pair {pair or 'warm-up'}: {reader.summary()}")
                lr = to_run(pair, "loader", p, meta, verify_load(server.conninfo, meta))
                runs.append(lr)
                ratio = lr.rows_per_s / b.rows_per_s
                table_rows.append(run_row(lr, ratio))
                out(
                    f"  pair {label}: loader {lr.seconds:.3f} s, {fmt_int(lr.rows_per_s)} rows/s, "
                    f"ratio {ratio:.3f}, peak RSS {lr.max_rss_mib:.0f} MiB; verified: {lr.verified}"
                )
    except (RunFailed, VerificationError) as e:
        out(f"FAILED: {e}")
        results["failure"] = str(e)
        status = 1
    results["runs"] = [dict(asdict(r), rows_per_s=r.rows_per_s, mb_per_s=r.mb_per_s) for r in runs]

    if table_rows:
        out("")
        out("## Runs")
        out(markdown_table(RUN_HEADERS, table_rows))
    if status == 0:
        summarize(out, results, runs, a)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"load_vs_copy-{a.rows}-inv{pct}-{started:%Y%m%d-%H%M%S}"
    a.results_dir.mkdir(parents=True, exist_ok=True)
    (a.results_dir / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (a.results_dir / f"{stem}.md").write_text(out.text())
    print(f"\nresults: {a.results_dir / stem}.json / .md")

    if not a.keep_files:
        for p in (data_dir, gen_dir, empty_dir, run_dir):
            shutil.rmtree(p, ignore_errors=True)
        with contextlib.suppress(OSError):
            (work / "bench.toml").unlink()
    return status


def summarize(out: Tee, results: dict[str, Any], runs: list[Run], a: argparse.Namespace) -> None:
    timed = [r for r in runs if r.pair > 0]
    base = [r for r in timed if r.tool != "loader"]
    load = [r for r in timed if r.tool == "loader"]
    ratios = [lr.rows_per_s / b.rows_per_s for b, lr in zip(base, load, strict=False)]
    summary: dict[str, Any] = {}
    rows = []
    for name, rs in (
        ("psql \\copy (all-valid file)", base),
        (f"loader ({a.invalid_percent:g}% invalid)", load),
    ):
        if not rs:
            continue
        s = dict(
            seconds=median([r.seconds for r in rs]),
            rows_per_s=median([r.rows_per_s for r in rs]),
            mb_per_s=median([r.mb_per_s for r in rs]),
            max_rss_mib=max(r.max_rss_mib for r in rs),
            cpu_s=median([r.cpu_s for r in rs]),
            server_cpu_s=median([r.server_cpu_s for r in rs if r.server_cpu_s is not None])
            if all(r.server_cpu_s is not None for r in rs)
            else None,
            wal_mib=median([r.wal_mib for r in rs if r.wal_mib is not None])
            if all(r.wal_mib is not None for r in rs)
            else None,
            other_cpu_s=median([r.other_cpu_s for r in rs if r.other_cpu_s is not None])
            if all(r.other_cpu_s is not None for r in rs)
            else None,
        )
        summary[name] = s
        rows.append(
            [
                name,
                len(rs),
                f"{s['seconds']:.3f}",
                fmt_int(s["rows_per_s"]),
                f"{s['mb_per_s']:.1f}",
                f"{s['max_rss_mib']:.0f}",
                f"{s['cpu_s']:.2f}",
                _opt(s["server_cpu_s"]),
                _opt(s["wal_mib"], "{:.0f}"),
                _opt(s["other_cpu_s"]),
            ]
        )
    out("")
    out("## Medians (timed pairs only; peak RSS = max over runs)")
    out(
        markdown_table(
            [
                "",
                "runs",
                "seconds",
                "rows/s",
                "MB/s",
                "peak RSS MiB",
                "client CPU s",
                "server CPU s",
                "WAL MiB",
                "other CPU s",
            ],
            rows,
        )
    )
    if ratios:
        med = median(ratios)
        target = ratio_target(a.invalid_percent)
        peak = max(r.max_rss_mib for r in load)
        summary.update(ratios=ratios, median_ratio=med, ratio_target=target, loader_peak_rss_mib=peak)
        out("")
        out(f"ratio per pair (loader rows/s / psql rows/s): {', '.join(f'{x:.3f}' for x in ratios)}")
        out(
            f"median ratio: {med:.3f}  (target >= {target} for {a.invalid_percent:g}% invalid): "
            + ("PASS" if med >= target else "FAIL")
        )
        out(
            f"loader peak RSS: {peak:.0f} MiB  (target <= {RSS_TARGET_MIB:.0f} MiB): "
            + ("PASS" if peak <= RSS_TARGET_MIB else "FAIL")
        )
        others = [r.other_cpu_s / (r.seconds * (os.cpu_count() or 1)) for r in timed if r.other_cpu_s is not None]
        if others:
            share = median(others)
            summary["other_cpu_share"] = share
            out(
                f"other work on the machine during the runs: {share:.0%} of its CPU (median)"
                + ("  WARNING: a busy machine; the numbers are noisy" if share > 0.10 else "")
            )
        ref = _rss_reference(a)
        if ref is not None:
            rows_ref, peak_ref, path = ref
            growth = peak / peak_ref - 1.0
            summary.update(rss_reference=dict(rows=rows_ref, peak_mib=peak_ref, file=str(path), growth=growth))
            out(
                f"RSS flatness vs {rows_ref:,}-row run ({path.name}): {peak_ref:.0f} -> {peak:.0f} MiB "
                f"({growth:+.1%}; target within 10%): " + ("PASS" if abs(growth) <= 0.10 else "FAIL")
            )
        if "startup" in results:
            st = results["startup"]
            share = st["header_only_load_seconds"] / median([r.seconds for r in load])
            out(
                f"fixed cost inside each loader time: {st['header_only_load_seconds']:.3f} s "
                f"({share:.0%} of the median loader time); "
                f"interpreter + imports alone {st['help_seconds']:.3f} s"
            )
    results["summary"] = summary


def _rss_reference(a: argparse.Namespace) -> tuple[int, float, Path] | None:
    """The newest earlier result with 1,000,000 rows and the same invalid share (for the flatness check)."""
    if a.rows == 1_000_000:
        return None
    best = None
    for p in sorted(a.results_dir.glob(f"load_vs_copy-1000000-inv{a.invalid_percent:g}-*.json")):
        try:
            d = json.loads(p.read_text())
            peak = d["summary"]["loader_peak_rss_mib"]
        except (OSError, KeyError, ValueError, TypeError):
            continue
        best = (1_000_000, float(peak), p)
    return best


if __name__ == "__main__":
    sys.exit(main())
