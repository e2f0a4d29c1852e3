"""Streaming one agency file through each object-storage candidate: throughput and peak RSS (ADR 0004).

    python bench/object_storage.py --rows 1000000                  # 3 runs per candidate
    python bench/object_storage.py --rows 10000000 --runs 3

Needs the [dev] and [bench] extras (moto[server]; s3fs and boto3 to compare with obstore).

What one run does:

1. Generates (or reuses) the agency file of N rows with bench/gen.py (1% invalid, seed 42), as
   load_vs_copy.py does.
2. Starts moto's standalone S3 server (``python -m moto.server``) on 127.0.0.1, a free port, and uploads
   the file to ``s3://bench/in/<file>``.
3. For every run, in turn, every candidate reads the whole file once in a fresh child process forked from
   bench/_spawn.py (so ``ru_maxrss`` is the child's own peak): 1 MiB reads, each block hashed with sha256 as
   the loader does, and the digest checked against the file's. Candidates:

   from the moto server (loopback HTTP):
   * ``obstore (seam)``: customer_ratings.inputs.ObjectStoreLocation, the code the loader will use:
     listing, then ranged GETs of 64 MiB with If-Match, streamed in 1 MiB chunks;
   * ``obstore (seam, one part)``: the same with one part as large as the object (moto answers every
     ranged GET by copying the whole object first, so on moto each extra part costs a full read);
   * ``obstore (one GET)``: obstore.get(...).stream(1 MiB), one unconditional GET;
   * ``s3fs``: s3fs.S3FileSystem().open(path, "rb") with its defaults (readahead cache, 50 MiB blocks;
     s3fs sends If-Match with the ETag it saw at open);
   * ``boto3``: get_object(IfMatch=etag)["Body"].read(1 MiB);
   * ``raw GET (http.client)``: an unsigned GET with the standard library: moto's own ceiling.

   from local disk (the page cache, after the first run):
   * ``baseline: import customer_ratings``: the package's imports (numpy, pyarrow, psycopg: what a loader
     process holds anyway, and what ``obstore (seam)`` carries), then open() as below;
   * ``open()``: customer_ratings.inputs.LocalFolder (the builtin file object);
   * ``obstore LocalStore``; ``fsspec local``.
4. Prints the medians (MB/s = 10^6 bytes/s of wall time, start-up and imports included, which is why
   ``child s`` and ``import s`` are shown) and the largest peak RSS; writes bench/results/object_storage-*.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

BLOCK = 1 << 20
BUCKET = "bench"
REGION = "us-east-1"
KEY_ID = "AKIABENCHBENCHBENCH0"
SECRET = "bench-secret-not-a-real-one-0123456789"

S3_CANDIDATES = ["obstore (seam)", "obstore (seam, one part)", "obstore (one GET)", "s3fs", "boto3",
                 "raw GET (http.client)"]
LOCAL_CANDIDATES = ["baseline: import customer_ratings", "open()", "obstore LocalStore", "fsspec local"]


# --------------------------------------------------------------------------------------------- child side
def _drain(read: Callable[[int], bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    total = 0
    while chunk := read(BLOCK):
        digest.update(chunk)
        total += len(chunk)
    return total, digest.hexdigest()


def _iter_drain(chunks: Iterator[Any]) -> tuple[int, str]:
    digest = hashlib.sha256()
    total = 0
    for chunk in chunks:
        digest.update(chunk)
        total += len(chunk)
    return total, digest.hexdigest()


def child(name: str, where: str, key: str) -> dict[str, Any]:
    """Read the object/file once with candidate ``name``; ``where`` is s3 or a local folder."""
    t0 = time.perf_counter()
    if name.startswith("obstore (seam"):
        from customer_ratings.inputs import ObjectStoreLocation

        one_part = {"part_size": 1 << 40} if "one part" in name else {}
        location = ObjectStoreLocation(f"s3://{BUCKET}/{key.rsplit('/', 1)[0]}/", **one_part)
        t1 = time.perf_counter()
        [entry] = [e for e in location.list() if e.name == key.rsplit("/", 1)[-1]]
        with location.open(entry) as stream:
            size, sha = _drain(stream.read)
    elif name == "obstore (one GET)":
        import obstore
        from obstore.store import from_url

        store = from_url(f"s3://{BUCKET}/", client_options={"allow_http": True})
        t1 = time.perf_counter()
        size, sha = _iter_drain(iter(obstore.get(store, key).stream(min_chunk_size=BLOCK)))
    elif name == "s3fs":
        import s3fs

        fs = s3fs.S3FileSystem()
        t1 = time.perf_counter()
        with fs.open(f"{BUCKET}/{key}", "rb") as fh:
            size, sha = _drain(fh.read)
    elif name == "boto3":
        import boto3

        client = boto3.client("s3")
        t1 = time.perf_counter()
        etag = client.head_object(Bucket=BUCKET, Key=key)["ETag"]
        body = client.get_object(Bucket=BUCKET, Key=key, IfMatch=etag)["Body"]
        size, sha = _drain(body.read)
    elif name == "raw GET (http.client)":
        t1 = time.perf_counter()
        endpoint = os.environ["AWS_ENDPOINT_URL"].removeprefix("http://")
        host, port = endpoint.split(":")
        conn = http.client.HTTPConnection(host, int(port))
        # moto (without its auth mode) does not verify signatures, but refuses requests with none
        auth = f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20250101/{REGION}/s3/aws4_request, SignedHeaders=host, " \
               "Signature=0"
        conn.request("GET", f"/{BUCKET}/{key}", headers={"Authorization": auth})
        response = conn.getresponse()
        if response.status != 200:
            raise SystemExit(f"raw GET: HTTP {response.status}")
        size, sha = _drain(response.read)
    elif name == "baseline: import customer_ratings":
        import customer_ratings.inputs  # noqa: F401  (what the loader process holds anyway)

        t1 = time.perf_counter()
        size, sha = _drain(open(os.path.join(where, key), "rb").read)  # noqa: SIM115
    elif name == "open()":
        from customer_ratings.inputs import open_location

        location = open_location(where)
        t1 = time.perf_counter()
        [entry] = [e for e in location.list() if e.name == key]
        with location.open(entry) as stream:
            size, sha = _drain(stream.read)
    elif name == "obstore LocalStore":
        import obstore
        from obstore.store import LocalStore

        store = LocalStore(where)
        t1 = time.perf_counter()
        size, sha = _iter_drain(iter(obstore.get(store, key).stream(min_chunk_size=BLOCK)))
    elif name == "fsspec local":
        import fsspec

        fs = fsspec.filesystem("file")
        t1 = time.perf_counter()
        with fs.open(os.path.join(where, key), "rb") as fh:
            size, sha = _drain(fh.read)
    else:
        raise SystemExit(f"unknown candidate {name!r}")
    return {"bytes": size, "sha256": sha, "import_s": t1 - t0, "read_s": time.perf_counter() - t1}


# --------------------------------------------------------------------------------------------- parent side
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto(port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """moto's standalone server on 127.0.0.1:port, killed at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    conn.request("GET", "/moto-api/data.json")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"moto did not start; see {log_path}")
                time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--candidates", default="", help="comma-separated subset of the candidates' names")
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--keep-files", action="store_true", help="keep the generated file for the next run")
    ap.add_argument("--results-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--where", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.where, a.key)))
        return 0

    from _common import (
        DEFAULT_WORK_DIR,
        Tee,
        code_version,
        load_average,
        machine_description,
        markdown_table,
        median,
        run_timed,
    )
    from gen import generate

    work = a.work_dir or DEFAULT_WORK_DIR
    data_dir = work / f"objstore-{a.rows}"
    name = "agency_bench_20250513.csv"
    path = data_dir / name
    meta = generate(path, a.rows, 42, 1.0, meta_dir=work / "meta")
    expected = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            expected.update(block)
    size = path.stat().st_size
    chosen = [c.strip() for c in a.candidates.split(",") if c.strip()] or S3_CANDIDATES + LOCAL_CANDIDATES
    out = Tee()
    started = datetime.now()
    out(f"# object_storage: {a.rows:,} rows, {size / 1e6:.0f} MB, {a.runs} runs")
    out(f"date: {started:%Y-%m-%d %H:%M}; machine: {machine_description()}; code: {code_version()}; "
        f"load average before: {load_average()}")
    port = _free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION=REGION,
               AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    key = f"in/{name}"
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in chosen}
    with tempfile.TemporaryDirectory() as tmp, moto(port, Path(tmp) / "moto.log") as server:
        import boto3

        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=REGION,
                              aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)
        client.create_bucket(Bucket=BUCKET)
        t = time.perf_counter()
        client.upload_file(str(path), BUCKET, key)
        out(f"uploaded to moto in {time.perf_counter() - t:.1f} s; moto RSS after upload: "
            f"{_rss_mib(server.pid):.0f} MiB")
        for run in range(a.runs):
            for cand in chosen:
                where = str(data_dir) if cand in LOCAL_CANDIDATES else "s3"
                argv_ = [sys.executable, str(Path(__file__).resolve()), "--child", cand, "--where", where,
                         "--key", name if cand in LOCAL_CANDIDATES else key]
                cpu0 = _cpu_seconds(server.pid)
                res = run_timed(argv_, env=env, log_dir=Path(tmp) / "logs")
                moto_cpu = _cpu_seconds(server.pid) - cpu0
                res.check(cand)
                info = json.loads(res.stdout.strip().splitlines()[-1])
                if info["bytes"] != size or info["sha256"] != expected.hexdigest():
                    raise SystemExit(f"{cand}: read {info['bytes']} bytes, sha256 {info['sha256']}: wrong")
                results[cand].append(dict(info, seconds=res.seconds, rss_mib=res.max_rss_mib, cpu_s=res.cpu_s,
                                          moto_cpu_s=moto_cpu if where == "s3" else 0.0, run=run))
                out(f"run {run + 1} {cand:24} {size / 1e6 / res.seconds:7.1f} MB/s wall, "
                    f"{size / 1e6 / info['read_s']:7.1f} MB/s read, RSS {res.max_rss_mib:6.1f} MiB")
    rows = []
    for cand in chosen:
        rs = results[cand]
        rows.append([
            cand, "moto" if cand in S3_CANDIDATES else "local disk",
            f"{size / 1e6 / median([r['seconds'] for r in rs]):.0f}",
            f"{size / 1e6 / median([r['read_s'] for r in rs]):.0f}",
            f"{max(r['rss_mib'] for r in rs):.0f}",
            f"{median([r['seconds'] for r in rs]):.2f}",
            f"{median([r['import_s'] for r in rs]):.2f}",
            f"{median([r['cpu_s'] for r in rs]):.2f}",
            f"{median([r['moto_cpu_s'] for r in rs]):.2f}",
        ])
    out(f"load average after: {load_average()}")
    out("")
    out(markdown_table(["candidate", "from", "MB/s (wall)", "MB/s (read)", "peak RSS MiB", "child s", "import s",
                        "child CPU s", "moto CPU s"], rows))
    a.results_dir.mkdir(parents=True, exist_ok=True)
    stem = a.results_dir / f"object_storage-{a.rows}-{started:%Y%m%d-%H%M%S}"
    stem.with_suffix(".md").write_text(out.text())
    stem.with_suffix(".json").write_text(json.dumps(
        {"rows": a.rows, "bytes": size, "meta_rows": meta.rows, "code": code_version(),
         "machine": machine_description(), "results": results}, indent=1))
    print(f"\nwritten: {stem}.md / .json")
    if not a.keep_files:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    sys.exit(main())
