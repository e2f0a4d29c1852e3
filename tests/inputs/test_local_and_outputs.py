"""The local folder location, and write_atomic / check_writable to a folder and to S3 (moto)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from customer_ratings.errors import FileRejected, LocationError, OutputError, RejectReason
from customer_ratings.inputs import LocalFolder, ObjectStoreLocation, open_location
from customer_ratings.outputs import check_writable, write_atomic
from tests.s3server import MotoServer


def test_local_listing_is_one_level_and_marks_folders_links_and_fifos(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_bytes(b"12345")
    (tmp_path / "a.csv").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deeper.csv").write_bytes(b"x")
    (tmp_path / "link.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "broken.csv").symlink_to(tmp_path / "nowhere.csv")
    os.mkfifo(tmp_path / "pipe.csv")

    location = open_location(str(tmp_path))
    entries = {e.name: e for e in location.list()}

    assert list(entries) == ["a.csv", "b.csv", "broken.csv", "link.csv", "pipe.csv", "sub"]
    assert entries["b.csv"].size == 5 and entries["b.csv"].uri == (tmp_path / "b.csv").as_uri()
    assert entries["b.csv"].etag is None and entries["b.csv"].modified is not None
    assert entries["sub"].is_dir and not entries["b.csv"].is_dir
    assert entries["link.csv"].is_symlink and entries["link.csv"].size == 5
    assert entries["broken.csv"].size == 0 and not entries["broken.csv"].is_dir
    with location.open(entries["link.csv"]) as stream:
        assert stream.read(3) == b"123" and stream.read(10) == b"45" and stream.read(10) == b""
    for name, message in [("pipe.csv", "not a regular file"), ("sub", "is a directory"),
                          ("broken.csv", "cannot be opened")]:
        with pytest.raises(FileRejected, match=message) as info:  # the FIFO is refused without blocking
            location.open(entries[name])
        assert info.value.reason is RejectReason.UNREADABLE


def test_local_missing_folder_and_file_url(tmp_path: Path) -> None:
    with pytest.raises(LocationError, match="does not exist or is not a folder"):
        open_location(str(tmp_path / "nope")).list()
    (tmp_path / "x.csv").write_bytes(b"x")
    location = open_location(tmp_path.as_uri())
    assert isinstance(location, LocalFolder) and [e.name for e in location.list()] == ["x.csv"]


def test_write_atomic_local_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "daily"
    assert write_atomic(str(out), "report.csv", b"first\n") == str(out / "report.csv")
    assert write_atomic(out, "report.csv", b"second\n") == str(out / "report.csv")
    assert (out / "report.csv").read_bytes() == b"second\n"
    old_mask = os.umask(0o022)
    try:
        write_atomic(out, "report.csv", b"third\n")
    finally:
        os.umask(old_mask)
    assert (out / "report.csv").stat().st_mode & 0o777 == 0o644
    assert os.listdir(out) == ["report.csv"]
    check_writable(str(tmp_path / "new" / "folder"))
    assert os.listdir(tmp_path / "new" / "folder") == []


def test_check_writable_local_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OutputError, match="is not a folder"):
        check_writable(str(tmp_path / "file"))
    with pytest.raises(OutputError, match="cannot be created"):
        write_atomic(str(tmp_path / "file" / "below"), "r.csv", b"x")


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root and permission to mount; skipped otherwise)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", str(mount_point)], check=False)


def test_write_atomic_full_disk_keeps_previous_file(tiny_tmpfs: Path) -> None:
    write_atomic(str(tiny_tmpfs), "report.csv", b"previous\n")
    with pytest.raises(OutputError) as info:
        write_atomic(str(tiny_tmpfs), "report.csv", b"x" * (1 << 20))
    assert "the disk is full" in str(info.value) and "\n" not in str(info.value)
    assert (tiny_tmpfs / "report.csv").read_bytes() == b"previous\n"
    assert os.listdir(tiny_tmpfs) == ["report.csv"]  # the temporary file was removed


def test_write_atomic_s3_is_one_put(bucket: str, s3: Any) -> None:
    uri = write_atomic(f"s3://{bucket}/reports/2025-05-13/", "report.csv", b"a,b\n1,2\n")
    assert uri == f"s3://{bucket}/reports/2025-05-13/report.csv"
    body = s3.get_object(Bucket=bucket, Key="reports/2025-05-13/report.csv")["Body"].read()
    assert body == b"a,b\n1,2\n"
    write_atomic(f"s3://{bucket}/reports/2025-05-13", "report.csv", b"new\n")
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["reports/2025-05-13/report.csv"]
    [entry] = ObjectStoreLocation(f"s3://{bucket}/reports/2025-05-13/").list()
    assert entry.size == 4


def test_check_writable_s3(bucket: str, s3: Any, s3_env: MotoServer) -> None:
    check_writable(f"s3://{bucket}/out/")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # the marker was deleted
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(OutputError) as info:
        check_writable(f"s3://{missing}/out/")
    assert "does not exist" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(OutputError, match="does not exist"):
        write_atomic(f"s3://{missing}/out/", "r.csv", b"x")
