"""The object-store location against a real S3-protocol server (moto on 127.0.0.1): no mocks of the client."""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from customer_ratings.errors import (
    FileRejected,
    LocationError,
    LocationUnreachable,
    ObjectChanged,
    RejectReason,
)
from customer_ratings.inputs import Entry, ObjectStoreLocation, open_location
from tests.s3server import SECRET_KEY, AuthServer, MotoServer, free_port

MiB = 1 << 20


def _one_line_without_secret(exc: BaseException, *secrets: str) -> str:
    text = str(exc)
    assert "\n" not in text, text
    assert "Traceback" not in text
    for secret in (SECRET_KEY, *secrets):
        assert secret not in text
    return text


def test_listing_is_one_level_with_size_and_etag(bucket: str, s3: Any) -> None:
    s3.put_object(Bucket=bucket, Key="in/agency_a_20250513.csv", Body=b"a,b\r\n1,2\r\n")
    s3.put_object(Bucket=bucket, Key="in/agency_b_20250513.csv", Body=b"x" * 100)
    s3.put_object(Bucket=bucket, Key="in/old/agency_a_20250512.csv", Body=b"old")
    s3.put_object(Bucket=bucket, Key="in-other/agency_a_20250513.csv", Body=b"not mine")
    s3.put_object(Bucket=bucket, Key="top.csv", Body=b"top")

    entries = open_location(f"s3://{bucket}/in/").list()

    assert [(e.name, e.is_dir) for e in entries] == [
        ("agency_a_20250513.csv", False), ("agency_b_20250513.csv", False), ("old", True)]
    a = entries[0]
    head = s3.head_object(Bucket=bucket, Key="in/agency_a_20250513.csv")
    assert a.size == 10 and a.etag == head["ETag"]
    assert a.uri == f"s3://{bucket}/in/agency_a_20250513.csv"
    assert a.modified is not None
    # the same prefix without the trailing slash, and the bucket root
    assert [e.name for e in open_location(f"s3://{bucket}/in").list()] == [e.name for e in entries]
    assert [e.name for e in open_location(f"s3://{bucket}").list()] == ["in", "in-other", "top.csv"]


def test_streams_exact_bytes_in_blocks_with_bounded_memory(bucket: str, s3: Any) -> None:
    size = 20 * MiB + 12345
    body = os.urandom(size)
    expected = hashlib.sha256(body).hexdigest()
    s3.put_object(Bucket=bucket, Key="big/file.csv", Body=body)
    del body
    location = ObjectStoreLocation(f"s3://{bucket}/big/", part_size=5 * MiB, chunk_size=MiB)
    [entry] = location.list()
    assert entry.size == size

    digest = hashlib.sha256()
    biggest = total = reads = 0
    tracemalloc.start()
    try:
        with location.open(entry) as stream:
            while chunk := stream.read(MiB):
                digest.update(chunk)
                biggest = max(biggest, len(chunk))
                total += len(chunk)
                reads += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == expected and total == size
    assert biggest <= MiB and reads >= 21
    # Python-side memory stays at a few blocks, not the 20 MiB object (Rust buffers: see bench/object_storage.py)
    assert peak < 6 * MiB, peak


def test_object_replaced_while_read_is_object_changed(bucket: str, s3: Any) -> None:
    s3.put_object(Bucket=bucket, Key="in/a.csv", Body=b"1" * (3 * MiB))
    location = ObjectStoreLocation(f"s3://{bucket}/in/", part_size=MiB, chunk_size=MiB)
    [entry] = location.list()
    with location.open(entry) as stream:
        assert stream.read(MiB) == b"1" * MiB
        s3.put_object(Bucket=bucket, Key="in/a.csv", Body=b"2" * (3 * MiB))
        with pytest.raises(ObjectChanged) as info:
            while stream.read(MiB):
                pass
    assert isinstance(info.value, FileRejected) and info.value.reason is RejectReason.FILE_CHANGED
    assert info.value.retryable
    assert "replaced" in _one_line_without_secret(info.value)


def test_object_replaced_or_deleted_after_listing(bucket: str, s3: Any) -> None:
    s3.put_object(Bucket=bucket, Key="a.csv", Body=b"first")
    s3.put_object(Bucket=bucket, Key="b.csv", Body=b"first")
    location = open_location(f"s3://{bucket}/")
    a, b = location.list()
    s3.put_object(Bucket=bucket, Key="a.csv", Body=b"other")  # same size, new ETag
    s3.delete_object(Bucket=bucket, Key="b.csv")
    with pytest.raises(ObjectChanged, match="replaced"):
        location.open(a)
    with pytest.raises(ObjectChanged, match="deleted"):
        location.open(b)


def test_empty_object_and_prefix_entry(bucket: str, s3: Any) -> None:
    s3.put_object(Bucket=bucket, Key="empty.csv", Body=b"")
    s3.put_object(Bucket=bucket, Key="sub/x.csv", Body=b"x")
    location = open_location(f"s3://{bucket}/")
    empty, sub = location.list()
    with location.open(empty) as stream:
        assert stream.read(MiB) == b""
    with pytest.raises(FileRejected) as info:
        location.open(sub)
    assert info.value.reason is RejectReason.UNREADABLE


def test_missing_bucket_is_one_clear_line(s3_env: MotoServer) -> None:
    with pytest.raises(LocationError) as info:
        open_location("s3://no-such-bucket-here/in/").list()
    text = _one_line_without_secret(info.value)
    assert "s3://no-such-bucket-here/in/" in text and "does not exist" in text
    assert not isinstance(info.value, LocationUnreachable) and info.value.exit_code == 2


def test_unreachable_endpoint_is_retryable_and_quick(s3_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    started = time.monotonic()
    with pytest.raises(LocationUnreachable) as info:
        open_location("s3://some-bucket/in/").list()
    assert time.monotonic() - started < 15
    text = _one_line_without_secret(info.value)
    assert "cannot be reached" in text and info.value.retryable


def test_no_credentials_is_one_clear_line(s3_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    # where obstore looks for instance credentials without keys: a closed port here, not the real 169.254...
    monkeypatch.setenv("AWS_METADATA_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    with pytest.raises(LocationError) as info:
        open_location("s3://some-bucket/in/").list()
    assert "no credentials found" in _one_line_without_secret(info.value)


def test_aws_profile_from_shared_credentials_file(bucket: str, s3: Any, s3_env: MotoServer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    s3.put_object(Bucket=bucket, Key="in/a.csv", Body=b"a")
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[agency]\naws_access_key_id = {s3_env.access_key}\n"
                           f"aws_secret_access_key = {s3_env.secret_key}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "agency")
    assert [e.name for e in open_location(f"s3://{bucket}/in/").list()] == ["a.csv"]
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(LocationError, match="no-such-profile") as info:
        open_location(f"s3://{bucket}/in/").list()
    _one_line_without_secret(info.value)


def test_wrong_secret_and_unknown_key_are_refused(s3_auth_server: AuthServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    server, (key_id, secret) = s3_auth_server.server, s3_auth_server.users.allowed
    for name, value in server.env(key_id, secret).items():
        monkeypatch.setenv(name, value)
    url = f"s3://{s3_auth_server.bucket}/in/"
    assert open_location(url).list() == []  # the right keys work
    wrong = "Wrong-Secret-0123456789-abcdefghijklmnop"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    with pytest.raises(LocationError) as info:
        open_location(url).list()
    assert "credentials were refused" in _one_line_without_secret(info.value, wrong, secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000")
    with pytest.raises(LocationError) as info:
        open_location(url).list()
    assert "credentials were refused" in _one_line_without_secret(info.value, wrong, secret)


def test_access_denied_is_one_clear_line(s3_auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> None:
    key_id, secret = s3_auth_server.users.denied
    for name, value in s3_auth_server.server.env(key_id, secret).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(LocationError) as info:
        open_location(f"s3://{s3_auth_server.bucket}/in/").list()
    assert "access denied" in _one_line_without_secret(info.value, secret)


@pytest.mark.parametrize("url, message", [
    ("s3://AKIAX:topsecret@bucket/in/", "credentials in it"),
    ("ftp://host/in/", "not supported"),
    ("s3:///in/", "names no bucket"),
    ("az://container/in/", "AZURE_STORAGE_ACCOUNT_NAME"),  # no account: refused before any request
])
def test_unusable_urls(url: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("AZURE_")]:
        monkeypatch.delenv(name)
    with pytest.raises(LocationError, match=message) as info:
        open_location(url)
    assert "topsecret" not in str(info.value)


def test_entry_is_frozen() -> None:
    entry = Entry("a.csv", "s3://b/a.csv", 1, None, etag='"x"')
    with pytest.raises(AttributeError):
        entry.size = 2  # type: ignore[misc]


def test_the_loaders_block_reader_streams_an_object(bucket: str, s3: Any) -> None:
    """parse.BlockReader (what load.py reads with) over an ObjectReader: same bytes, same sha256, line ends."""
    from typing import BinaryIO, cast

    from customer_ratings.parse import BlockReader

    lines = b"".join(b"%d,%d,500000,low-value\r\n" % (1111111111 + i, i) for i in range(120_000))
    body = b"customer_number,customer_rating,customer_rating_limit,customer_status\r\n" + lines
    s3.put_object(Bucket=bucket, Key="in/agency_x_20250513.csv", Body=body)
    location = ObjectStoreLocation(f"s3://{bucket}/in/", part_size=MiB + 7, chunk_size=256 << 10)
    [entry] = location.list()
    with location.open(entry) as stream:
        reader = BlockReader(cast(BinaryIO, stream))
        blocks = []
        while not reader.at_eof:
            block, _ = reader.next_block()
            assert not block or block.endswith(b"\n")
            blocks.append(block)
    assert b"".join(blocks) == body
    assert reader.bytes_read == entry.size == len(body)
    assert reader.sha256.hexdigest() == hashlib.sha256(body).hexdigest()
