"""Loading from and reporting to object storage, against a real S3-protocol server (moto on 127.0.0.1).

No mocks of the client: the code under test talks HTTP to moto's standalone server through obstore; boto3
only sets up and inspects buckets.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from customer_ratings import Database, Source, discover, load_config, load_source, load_sources, write_report
from customer_ratings.config import parse_config
from customer_ratings.inputs import ObjectStoreLocation, open_location
from tests.conftest import AGENCY, FIXTURES, SEED_SAMPLE, assert_consistent
from tests.s3server import MotoServer

SEED_REPORT = "Customer_Rating_Aggregate_Report_20250513.csv"
DAY = date(2025, 5, 13)
MiB = 1 << 20


def _put_seed(s3: Any, bucket: str, prefix: str = "in/") -> None:
    for f in sorted(SEED_SAMPLE.glob("Customer Rating Agency *.csv")):
        s3.put_object(Bucket=bucket, Key=prefix + f.name, Body=f.read_bytes())


def test_seed_sample_from_a_bucket_gives_the_seed_report_in_the_bucket(db: Database, bucket: str, s3: Any) -> None:
    _put_seed(s3, bucket)
    config = load_config(None)
    summary = load_sources(db, config, f"s3://{bucket}/in/", as_of=DAY)
    assert summary.exit_code == 0, summary
    assert [r.status for r in summary.results] == ["loaded"] * 4
    for result in summary.results:
        assert_consistent(db, config.source(result.source), result)
        assert str(result.path) == f"s3://{bucket}/in/{result.path.name}"
    written = write_report(db, f"s3://{bucket}/out/", DAY)
    assert written == f"s3://{bucket}/out/{SEED_REPORT}"
    body = s3.get_object(Bucket=bucket, Key=f"out/{SEED_REPORT}")["Body"].read()
    assert body == (SEED_SAMPLE / SEED_REPORT).read_bytes()
    uris = [r[0] for r in db.connection().execute("SELECT file_uri FROM load_history ORDER BY source")]
    assert uris == [f"s3://{bucket}/in/Customer Rating Agency {x} Inc.csv" for x in "ABCD"]


def _rows(db: Database, source: Source, load_id: int | None) -> tuple[list[Any], list[Any]]:
    conn = db.connection()
    table = conn.execute(sql.SQL(
        "SELECT customer_number, customer_rating, customer_rating_limit, customer_status FROM {} ORDER BY 1, 2, 3, 4"
    ).format(sql.Identifier(source.table))).fetchall()
    invalid = conn.execute(
        """SELECT source, table_name, line_number, record_number, raw_line, fields, errors, error
           FROM file_invalid_rows WHERE load_id = %s ORDER BY line_number""", (load_id,)).fetchall()
    return table, [row[2:] for row in invalid]


FIXTURE_FILES = sorted(p.name for p in FIXTURES.glob("*.csv")) + sorted(
    f"hostile/{p.name}" for p in (FIXTURES / "hostile").glob("*.csv"))


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_every_fixture_loads_the_same_from_s3_and_from_disk(db: Database, bucket: str, s3: Any, name: str) -> None:
    path = FIXTURES / name
    s3.put_object(Bucket=bucket, Key=f"in/{path.name}", Body=path.read_bytes())
    local_src = replace(AGENCY, name="agency_local", table="customer_rating_agency_local")
    s3_src = replace(AGENCY, name="agency_s3", table="customer_rating_agency_s3")
    from_disk = load_source(db, local_src, path, as_of=DAY)
    location = open_location(f"s3://{bucket}/in/")
    [entry] = location.list()
    from_s3 = load_source(db, s3_src, entry, location=location, as_of=DAY)

    assert_consistent(db, s3_src, from_s3)
    same = ("status", "rows_read", "rows_loaded", "rows_invalid", "file_size", "sha256", "reason")
    assert {k: getattr(from_s3, k) for k in same} == {k: getattr(from_disk, k) for k in same}
    # the error message names the file the same way (its name), whatever the location
    assert (from_s3.error or "").replace(path.name, "F") == (from_disk.error or "").replace(path.name, "F")
    if from_disk.status == "loaded":
        assert _rows(db, s3_src, from_s3.load_id) == _rows(db, local_src, from_disk.load_id)
    history = db.connection().execute(
        "SELECT file_uri, status, error_code, etag FROM load_history WHERE load_id = %s", (from_s3.load_id,)).fetchone()
    assert history is not None
    assert history[0] == f"s3://{bucket}/in/{path.name}" and history[1] == from_disk.status
    if from_disk.status == "loaded":
        assert history[3] == entry.etag
        uris = {r[0] for r in db.connection().execute(
            "SELECT file_uri FROM file_invalid_rows WHERE load_id = %s", (from_s3.load_id,))}
        assert uris <= {f"s3://{bucket}/in/{path.name}"}


def _gets(server: MotoServer, bucket: str, key: str) -> int:
    return sum(1 for line in server.requests() if line.startswith(f"GET /{bucket}/{key} ")
               or line.startswith(f"GET /{bucket}/{key}?"))


def test_unchanged_by_size_and_etag_without_a_get(db: Database, bucket: str, s3: Any, s3_env: MotoServer) -> None:
    body = (FIXTURES / "valid_crlf.csv").read_bytes()
    s3.put_object(Bucket=bucket, Key="in/a.csv", Body=body)
    url = f"s3://{bucket}/in/"
    first = load_source(db, AGENCY, discover(parse_config('[[sources]]\nname = "agency_t"\ntable = '
                                                         '"customer_rating_agency_t"\nfile_pattern = "*.csv"\n',
                                                         None), url).selected["agency_t"],
                        location=open_location(url), as_of=DAY)
    assert first.status == "loaded"
    assert _gets(s3_env, bucket, "in/a.csv") >= 1, s3_env.requests()[-10:]  # the log sees the GETs

    before = _gets(s3_env, bucket, "in/a.csv")
    location = open_location(url)
    [entry] = location.list()
    again = load_source(db, AGENCY, entry, location=location, as_of=date(2025, 5, 14))
    assert again.status == "unchanged" and again.sha256 == first.sha256
    assert again.data_load_id == first.load_id
    time.sleep(0.3)  # the server logs a request once it has answered it: give a stray GET time to show
    assert _gets(s3_env, bucket, "in/a.csv") == before, "an unchanged object is not fetched"
    row = db.connection().execute("SELECT etag, sha256 FROM load_history WHERE load_id = %s",
                                  (again.load_id,)).fetchone()
    assert row == (s3.head_object(Bucket=bucket, Key="in/a.csv")["ETag"], first.sha256)

    # the same size, other bytes: a new ETag, so it is read and loaded
    s3.put_object(Bucket=bucket, Key="in/a.csv", Body=body.replace(b"1", b"2", 1))
    [entry] = location.list()
    changed = load_source(db, AGENCY, entry, location=location, as_of=date(2025, 5, 15))
    assert changed.status == "loaded" and changed.sha256 != first.sha256
    assert _gets(s3_env, bucket, "in/a.csv") > before
    # --force reads it even when unchanged
    [entry] = location.list()
    forced = load_source(db, AGENCY, entry, location=location, as_of=date(2025, 5, 15), force=True)
    assert forced.status == "loaded"


def _agency_file(rows: int) -> bytes:
    lines = ["customer_number,customer_rating,customer_rating_limit,customer_status"]
    lines += [f"{100000 + i},{i % 90 + 1},{(i % 90 + 1) * 10},{'high-value' if i % 3 else 'standard'}"
              for i in range(rows)]
    return ("\r\n".join(lines) + "\r\n").encode()


def test_object_replaced_while_it_is_read_is_rejected_file_changed(db: Database, bucket: str, s3: Any) -> None:
    body = _agency_file(180_000)  # ~4.5 MiB: several 1 MiB parts
    assert len(body) > 3 * MiB
    s3.put_object(Bucket=bucket, Key="in/a.csv", Body=body)
    location = ObjectStoreLocation(f"s3://{bucket}/in/", part_size=MiB, chunk_size=256 << 10)
    [entry] = location.list()
    replaced = threading.Event()

    def progress(nbytes: int, nrows: int) -> None:
        if not replaced.is_set():  # after the first block: the agency uploads a new version
            s3.put_object(Bucket=bucket, Key="in/a.csv", Body=body.replace(b"standard", b"Standard"))
            replaced.set()

    result = load_source(db, AGENCY, entry, location=location, as_of=DAY, progress=progress)
    assert replaced.is_set()
    assert result.status == "rejected" and result.reason == "file_changed", result
    assert "replaced while it was read" in (result.error or "")
    row = db.connection().execute("SELECT status, error_code, file_uri FROM load_history WHERE load_id = %s",
                                  (result.load_id,)).fetchone()
    assert row == ("rejected", "file_changed", f"s3://{bucket}/in/a.csv")
    assert db.connection().execute("SELECT count(*) FROM customer_rating").fetchone() == (0,)
    # the next run reads the new version whole
    [entry] = location.list()
    assert load_source(db, AGENCY, entry, location=location, as_of=DAY).status == "loaded"


def test_dated_pattern_on_a_bucket(bucket: str, s3: Any) -> None:
    for name in ("A_20250512.csv", "A_20250513.csv", "B_20250513.csv", "notes.txt", "old/A_20250513.csv"):
        s3.put_object(Bucket=bucket, Key=f"in/{name}", Body=b"x")
    config = parse_config('[[sources]]\nname = "a"\ntable = "t_a"\nfile_pattern = "A_{date:%Y%m%d}.csv"\n'
                          '[[sources]]\nname = "b"\ntable = "t_b"\nfile_pattern = "B_{date:%Y%m%d}.csv"\n', None)
    found = discover(config, f"s3://{bucket}/in/", day=DAY)
    assert {k: str(v) for k, v in found.selected.items()} == {
        "a": f"s3://{bucket}/in/A_20250513.csv", "b": f"s3://{bucket}/in/B_20250513.csv"}
    assert found.selected["a"].etag == s3.head_object(Bucket=bucket, Key="in/A_20250513.csv")["ETag"]
    assert {k: [e.name for e in v] for k, v in found.other_days.items()} == {"a": ["A_20250512.csv"]}
    assert [e.name for e in found.unmatched] == ["notes.txt"]  # the sub-prefix old/ is a folder: not listed
    next_day = discover(config, f"s3://{bucket}/in/", day=date(2025, 5, 12))
    assert [str(e) for e in next_day.selected.values()] == [f"s3://{bucket}/in/A_20250512.csv"]
    assert next_day.missing == ["b"]


def test_missing_file_on_a_bucket_is_recorded_with_the_prefix(db: Database, bucket: str, s3: Any) -> None:
    s3.put_object(Bucket=bucket, Key="in/Customer Rating Agency A Inc.csv",
                  Body=(SEED_SAMPLE / "Customer Rating Agency A Inc.csv").read_bytes())
    summary = load_sources(db, load_config(None), f"s3://{bucket}/in/", as_of=DAY)
    assert summary.exit_code == 1 and len(summary.missing) == 3
    uris = {r[0] for r in db.connection().execute("SELECT file_uri FROM load_history WHERE status = 'missing'")}
    assert uris == {f"s3://{bucket}/in/"}


def test_local_folder_given_as_a_string_still_gives_paths(db: Database, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for f in SEED_SAMPLE.glob("Customer Rating Agency *.csv"):
        (data / f.name).write_bytes(f.read_bytes())
    found = discover(load_config(None), str(data))
    assert found.selected["agency_a"].path == data / "Customer Rating Agency A Inc.csv"
    summary = load_sources(db, load_config(None), str(data), as_of=DAY, discovery=found)
    assert all(isinstance(r.path, Path) and r.path.parent == data for r in summary.results)
    report = write_report(db, str(tmp_path / "out"), DAY)
    assert isinstance(report, Path) and report.read_bytes() == (SEED_SAMPLE / SEED_REPORT).read_bytes()
    assert os.listdir(tmp_path / "out") == [SEED_REPORT]
