"""The report's folder is on a full disk (a 64 KiB tmpfs, filled): ``customer-ratings report`` says so in one
line and exits 1; the previous report is intact and no temporary file is left (issue 9)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._cli import assert_no_traceback, cli_env, run_cli
from ._two import Setup

REPORT = "Customer_Rating_Aggregate_Report_20250513.csv"


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="customer-ratings-report-tmpfs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(base)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, f"cannot mount a tmpfs (this test needs root): {done.stderr}"
    try:
        yield base
    finally:
        subprocess.run(["umount", "-l", str(base)], capture_output=True, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def _fill(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 512):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_report_on_a_full_disk(database_url: str, tmp_path: Path, tiny_disk: Path) -> None:
    setup = Setup(database_url, tmp_path, 100)
    env = cli_env(database_url, tmp_path / "home")
    args = ["report", "--output-dir", str(tiny_disk), "--date", "2025-05-13", "--config", str(setup.config),
            "--no-invalid-files", "--no-html"]  # the CSV report alone: its companions have their own tests
    first = run_cli(args, env, timeout=120)
    assert first.returncode == 0, str(first)
    previous = (tiny_disk / REPORT).read_bytes()
    assert previous.count(b"\n") == 3
    # the next report differs (B loads new data), so it has to be written
    assert setup.load(setup.v2).returncode == 0
    _fill(tiny_disk)
    run = run_cli(args, env, timeout=120)
    assert_no_traceback(run)
    assert run.returncode == 1, str(run)
    assert run.error_lines == [f"error: cannot write the report to {tiny_disk}: No space left on device; "
                               "the previous report is intact"], str(run)
    assert len(run.stderr.strip().splitlines()) <= 3, f"more than the error and its notes:\n{run}"
    assert (tiny_disk / REPORT).read_bytes() == previous
    assert sorted(p.name for p in tiny_disk.iterdir()) == [REPORT, "filler"], "a temporary file was left"
    # with room again, the report is written
    (tiny_disk / "filler").unlink()
    again = run_cli(args, env, timeout=120)
    assert again.returncode == 0, str(again)
    assert (tiny_disk / REPORT).read_bytes() != previous
