"""Reliability suite fixtures. The server and the per-test databases come from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.register_assert_rewrite("tests.reliability._agency", "tests.reliability._db", "tests.reliability._cli",
                               "tests.reliability._gen", "tests.reliability._fault")

from ._bigdata import AGENCIES, BIG_ROWS, Version, write_agency_file  # noqa: E402


@pytest.fixture(scope="session")
def big_versions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Version]]:
    """Two versions (v1, v2) of the four built-in agencies' files; every agency differs between them."""
    root = tmp_path_factory.mktemp("bigdata")
    versions = {}
    for v, seed in (("v1", 100), ("v2", 200)):
        folder = root / v
        folder.mkdir()
        expect = {}
        for i, agency in enumerate(AGENCIES):
            path = folder / f"Customer Rating Agency {agency[-1].upper()} Inc.csv"
            expect[agency] = write_agency_file(path, BIG_ROWS[agency], seed + i, crlf=i % 2 == 1)
        versions[v] = Version(v, folder, expect)
    yield versions
