"""Fixtures of the command-line tests: the seed sample loaded through the CLI into the test's database."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ..test_cli import cli

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "seed-sample"
DAY = "2025-05-13"


def sample_data(folder: Path) -> Path:
    """The four seed-sample agency files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in SAMPLE.glob("Customer Rating Agency *.csv"):
        shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture
def seeded(cli_env: str, tmp_path: Path) -> Path:
    """The seed sample run (loaded and reported) for 2025-05-13; returns the output folder."""
    data, out = sample_data(tmp_path / "data"), tmp_path / "out"
    done = cli("run", "--data-dir", str(data), "--output-dir", str(out), "--date", DAY, "--quiet")
    assert done.returncode == 0, done.stderr
    return out
