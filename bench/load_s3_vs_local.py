"""`customer-ratings load` of the same agency file from local disk and from an S3 server, in the same run.

    python bench/load_s3_vs_local.py --rows 1000000                # embedded server, moto, 3 runs
    python bench/load_s3_vs_local.py --rows 10000000 --runs 3
    python bench/load_s3_vs_local.py --database-url postgresql://user@host/db --rows 1000000

Needs the [dev] extra (moto[server]) and boto3 (moto's server pulls it in) to upload the file.

What one run does:

1. Generates (or reuses) the agency file of N rows with bench/gen.py (1% invalid, seed 42), as
   load_vs_copy.py does, and a one-source config for it.
2. Starts an embedded PostgreSQL (or uses ``--database-url``) and moto's standalone S3 server on 127.0.0.1
   (bench/object_storage.py's ``moto``), uploads the file to ``s3://bench/in/``.
3. ``customer-ratings init``, then one untimed warm-up of each, then ``--runs`` rounds, each:
   * local: ``customer-ratings load --data-dir DIR --config bench.toml --force --quiet``;
   * s3: the same with ``--data-dir s3://bench/in/`` and the AWS_* variables pointing at moto (the loader
     lists the prefix and streams the object in ranged, If-Match GETs of 64 MiB);
   * raw GET: bench/object_storage.py's ``raw GET (http.client)`` child, one unsigned GET of the whole
     object read in 1 MiB blocks and hashed: what moto itself can serve on this machine.
   Each is a fresh child process (bench/_spawn.py), so its peak RSS (``ru_maxrss``) and CPU are its own;
   moto's and the database server's CPU are read from /proc around it.
4. After every load the history row is checked against the generator's counts (rows read, loaded, invalid)
   and the file URI (``s3://bench/in/<file>`` for the s3 loads). A mismatch stops the benchmark.
5. Prints the medians; writes bench/results/load_s3_vs_local-*.md/.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_WORK_DIR,
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
)
from gen import generate
from load_vs_copy import write_config
from object_storage import BUCKET, KEY_ID, REGION, SECRET, _cpu_seconds, _free_port, moto

SOURCE = "bench_agency"
TABLE = "customer_rating_bench_agency"
MODES = ("local", "s3", "raw GET")


def _check(conninfo: str, meta: Any, uri: str) -> None:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("""SELECT status, rows_read, rows_loaded, rows_invalid, file_uri FROM load_history
                              WHERE source = %s ORDER BY load_id DESC LIMIT 1""", (SOURCE,)).fetchone()
    expected = ("loaded", meta.rows, meta.valid, meta.invalid, uri)
    if tuple(row or ()) != expected:
        raise SystemExit(f"wrong load: {row} instead of {expected}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--cli", default=None, help="the customer-ratings executable (default: the venv's)")
    ap.add_argument("--keep-files", action="store_true", help="keep the generated file for the next run")
    ap.add_argument("--results-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args(argv)
    cli = find_cli(a.cli)
    if cli is None:
        raise SystemExit("customer-ratings not found: pip install -e . (or --cli PATH)")

    work: Path = a.work_dir or DEFAULT_WORK_DIR
    data_dir = work / f"s3-vs-local-{a.rows}"
    name = f"{SOURCE}_20250513.csv"
    path = data_dir / name
    meta = generate(path, a.rows, 42, 1.0, meta_dir=work / "meta")
    size = path.stat().st_size
    digest = hashlib.sha256(path.read_bytes() if size < (256 << 20) else b"").hexdigest()
    out = Tee()
    started = datetime.now()
    out(f"# load_s3_vs_local: {a.rows:,} rows, {size / 1e6:.0f} MB, {a.runs} runs")
    out(f"date: {started:%Y-%m-%d %H:%M}; machine: {machine_description()}; code: {code_version()}; "
        f"load average before: {load_average()}")
    port = _free_port()
    aws = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": REGION,
           "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    key = f"in/{name}"
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp, moto(port, Path(tmp) / "moto.log") as s3server, \
            open_server(a.database_url, work, keep=a.keep_files) as server:
        import boto3  # type: ignore[import-untyped]

        boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name=REGION, aws_access_key_id=KEY_ID,
                     aws_secret_access_key=SECRET).create_bucket(Bucket=BUCKET)
        boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name=REGION, aws_access_key_id=KEY_ID,
                     aws_secret_access_key=SECRET).upload_file(str(path), BUCKET, key)
        out(f"server: {server.description}; moto on 127.0.0.1:{port}")
        env = {**{k: v for k, v in loader_env(server, work / "home").items() if not k.startswith("AWS_")}, **aws}
        config = work / "bench-s3.toml"
        write_config(config, [(SOURCE, TABLE, f"{SOURCE}_*.csv")])
        run_timed([cli, "init", "--config", str(config)], env=env, log_dir=Path(tmp) / "init").check("init")
        argv_for = {
            "local": [cli, "load", "--data-dir", str(data_dir), "--config", str(config), "--force", "--quiet",
                      "--date", "2025-05-13"],
            "s3": [cli, "load", "--data-dir", f"s3://{BUCKET}/in/", "--config", str(config), "--force", "--quiet",
                   "--date", "2025-05-13"],
            "raw GET": [sys.executable, str(Path(__file__).resolve().parent / "object_storage.py"), "--child",
                        "raw GET (http.client)", "--where", "s3", "--key", key],
        }
        uri_for = {"local": path.resolve().as_uri(), "s3": f"s3://{BUCKET}/{key}"}
        for run in range(-1, a.runs):  # run -1: the untimed warm-up
            for mode in MODES:
                moto0 = _cpu_seconds(s3server.pid)
                res = run_timed(argv_for[mode], env=env, log_dir=Path(tmp) / mode.replace(" ", "_"),
                                postmaster_pid=server.postmaster_pid).check(mode)
                moto_cpu = _cpu_seconds(s3server.pid) - moto0
                if mode == "raw GET":
                    info = json.loads(res.stdout.strip().splitlines()[-1])
                    if info["bytes"] != size or (size < (256 << 20) and info["sha256"] != digest):
                        raise SystemExit(f"raw GET read {info['bytes']} bytes, sha256 {info['sha256']}: wrong")
                else:
                    _check(server.conninfo, meta, uri_for[mode])
                if run < 0:
                    continue
                results[mode].append({"seconds": res.seconds, "rss_mib": res.max_rss_mib, "cpu_s": res.cpu_s,
                                      "server_cpu_s": res.server_cpu_s, "moto_cpu_s": moto_cpu, "run": run})
                out(f"run {run + 1} {mode:8} {size / 1e6 / res.seconds:7.1f} MB/s, {a.rows / res.seconds:11,.0f} "
                    f"rows/s, RSS {res.max_rss_mib:6.1f} MiB, CPU {res.cpu_s:5.2f} s, moto CPU {moto_cpu:5.2f} s")
    rows = []
    for mode in MODES:
        rs = results[mode]
        secs = median([r["seconds"] for r in rs])
        server_cpu = [r["server_cpu_s"] for r in rs if r["server_cpu_s"] is not None]
        rows.append([
            mode, f"{secs:.2f}", f"{size / 1e6 / secs:.0f}", f"{a.rows / secs:,.0f}" if mode != "raw GET" else "",
            f"{max(r['rss_mib'] for r in rs):.0f}", f"{median([r['cpu_s'] for r in rs]):.2f}",
            f"{median(server_cpu):.2f}" if server_cpu and mode != "raw GET" else "",
            f"{median([r['moto_cpu_s'] for r in rs]):.2f}",
        ])
    out(f"load average after: {load_average()}")
    out("")
    out(markdown_table(["what", "wall s", "MB/s", "rows/s", "peak RSS MiB", "child CPU s", "server CPU s",
                        "moto CPU s"], rows))
    a.results_dir.mkdir(parents=True, exist_ok=True)
    stem = a.results_dir / f"load_s3_vs_local-{a.rows}-{started:%Y%m%d-%H%M%S}"
    stem.with_suffix(".md").write_text(out.text())
    stem.with_suffix(".json").write_text(json.dumps(
        {"rows": a.rows, "bytes": size, "code": code_version(), "machine": machine_description(),
         "results": results}, indent=1))
    print(f"\nwritten: {stem}.md / .json")
    if not a.keep_files:
        shutil.rmtree(data_dir, ignore_errors=True)
        config.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
