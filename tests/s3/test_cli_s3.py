"""``customer-ratings run --data-dir s3://... --output-dir s3://...`` as a subprocess with the AWS_* environment,
against a real S3-protocol server (moto on 127.0.0.1), and its one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import SEED_SAMPLE
from tests.reliability._cli import Run, cli_env, run_cli
from tests.s3server import SECRET_KEY, AuthServer, MotoServer, free_port

SEED_REPORT = "Customer_Rating_Aggregate_Report_20250513.csv"


def _env(database_url: str, tmp_path: Path, aws: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in cli_env(database_url, tmp_path / "home").items() if not k.startswith("AWS_")}
    return {**env, **aws}


def _run(env: dict[str, str], data: str, out: str, *extra: str) -> Run:
    return run_cli(["run", "--data-dir", data, "--output-dir", out, "--date", "2025-05-13", "--quiet", *extra],
                   env, timeout=180)


def _one_error_line(done: Run, *secrets: str) -> str:
    assert "Traceback" not in done.stderr, str(done)
    for secret in (SECRET_KEY, *secrets):
        assert secret not in done.stderr and secret not in done.stdout, str(done)
    assert len(done.error_lines) == 1, str(done)
    return done.error_lines[0]


def _history(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        try:
            return conn.execute("SELECT source, status, file_uri, etag FROM load_history ORDER BY load_id").fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def test_run_from_a_bucket_to_a_bucket(database_url: str, tmp_path: Path, bucket: str, s3: Any,
                                       s3_server: MotoServer) -> None:
    for f in sorted(SEED_SAMPLE.glob("Customer Rating Agency *.csv")):
        s3.put_object(Bucket=bucket, Key=f"in/{f.name}", Body=f.read_bytes())
    env = _env(database_url, tmp_path, s3_server.env())
    done = _run(env, f"s3://{bucket}/in/", f"s3://{bucket}/out/")
    assert done.returncode == 0, str(done)
    assert f"report written: s3://{bucket}/out/{SEED_REPORT}" in done.stderr
    body = s3.get_object(Bucket=bucket, Key=f"out/{SEED_REPORT}")["Body"].read()
    assert body == (SEED_SAMPLE / SEED_REPORT).read_bytes()
    invalid = [f"out/Customer_Rating_Invalid_Rows_agency_{x}_20250513.csv" for x in "bd"]
    assert sorted(k["Key"] for k in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]) == sorted(
        [f"out/{SEED_REPORT}", "out/Customer_Rating_Quality_Report_20250513.html", *invalid]
    ), "the report, its companions, and no write-check marker"
    assert s3.get_object(Bucket=bucket, Key=invalid[0])["Body"].read().count(b"\n") == 4  # header + 3 rows
    history = _history(database_url)
    assert [(r[1], r[2]) for r in history] == [
        ("loaded", f"s3://{bucket}/in/Customer Rating Agency {x} Inc.csv") for x in "ABCD"]
    assert all(r[3] for r in history), "each load keeps its object's ETag"
    again = _run(env, f"s3://{bucket}/in/", f"s3://{bucket}/out/")
    assert again.returncode == 0, str(again)
    assert [r[1] for r in _history(database_url)[4:]] == ["unchanged"] * 4


def test_missing_bucket_exits_2_with_one_line(database_url: str, tmp_path: Path, bucket: str,
                                              s3_server: MotoServer) -> None:
    env = _env(database_url, tmp_path, s3_server.env())
    done = _run(env, "s3://no-such-bucket-here/in/", f"s3://{bucket}/out/")
    assert done.returncode == 2, str(done)
    line = _one_error_line(done)
    assert "s3://no-such-bucket-here/in/" in line and "the bucket does not exist" in line
    out = _run(env, f"s3://{bucket}/in/", "s3://no-such-bucket-here/out/")
    assert out.returncode == 2, str(out)
    assert "the bucket does not exist" in _one_error_line(out)
    assert _history(database_url) == [], "nothing was loaded before the output was found unusable"


def test_unreachable_endpoint_exits_1_with_one_line(database_url: str, tmp_path: Path,
                                                    s3_server: MotoServer) -> None:
    aws = {**s3_server.env(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    done = _run(_env(database_url, tmp_path, aws), "s3://bucket/in/", str(tmp_path / "out"))
    assert done.returncode == 1, str(done)
    assert "cannot be reached" in _one_error_line(done)
    assert done.seconds < 60


def test_bad_credentials_exit_2_and_the_secret_is_never_printed(database_url: str, tmp_path: Path,
                                                                s3_auth_server: AuthServer) -> None:
    server = s3_auth_server.server
    allowed_key, allowed_secret = s3_auth_server.users.allowed
    wrong = "Wr0ng-Secret-Value-Never-Printed-000000"
    for key, secret in ((allowed_key, wrong), ("AKIAUNKNOWNKEY000000", wrong)):
        env = _env(database_url, tmp_path, server.env(key, secret))
        done = _run(env, f"s3://{s3_auth_server.bucket}/in/", str(tmp_path / "out"))
        assert done.returncode == 2, str(done)
        line = _one_error_line(done, wrong, allowed_secret)
        assert "credentials were refused" in line, line
    denied_key, denied_secret = s3_auth_server.users.denied
    done = _run(_env(database_url, tmp_path, server.env(denied_key, denied_secret)),
                str(tmp_path), f"s3://{s3_auth_server.bucket}/out/")
    assert done.returncode == 2, str(done)
    assert "not writable" in _one_error_line(done, denied_secret, allowed_secret)
