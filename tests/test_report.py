"""The aggregate report: the seed sample byte for byte, rounding, empty loads, atomic write."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

from customer_ratings import Database, load_config, load_sources, write_report
from customer_ratings.config import parse_config

from .conftest import SEED_SAMPLE, assert_consistent

SEED = SEED_SAMPLE
SEED_REPORT = "Customer_Rating_Aggregate_Report_20250513.csv"


def test_seed_sample_gives_the_seed_report_byte_for_byte(db: Database, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for f in SEED.glob("Customer Rating Agency *.csv"):
        shutil.copy(f, data / f.name)
    config = load_config(None)
    summary = load_sources(db, config, data, as_of=date(2025, 5, 13))
    assert summary.exit_code == 0
    for result in summary.results:
        assert_consistent(db, config.source(result.source), result)
    report = write_report(db, tmp_path / "out", date(2025, 5, 13))
    assert report.name == SEED_REPORT
    assert report.read_bytes() == (SEED / SEED_REPORT).read_bytes()


def _write(folder: Path, name: str, valid: int, invalid: int) -> None:
    lines = ["customer_number,customer_rating,customer_rating_limit,customer_status"]
    lines += [f"{i},{i},{i},{'high-value' if i % 2 else 'low-value'}" for i in range(1, valid + 1)]
    lines += ["x,1,1,low-value"] * invalid
    (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")


def test_percent_rounds_half_away_from_zero_and_handles_empty_loads(db: Database, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # 1 of 160 = 0.625 % -> 0.63 (half away from zero; banker's rounding would give 0.62)
    _write(data, "r_half", 159, 1)
    _write(data, "r_third", 2, 1)   # 33.333 -> 33.33
    _write(data, "r_two_thirds", 1, 2)  # 66.667 -> 66.67
    _write(data, "r_empty", 0, 0)   # header only -> 0.00
    _write(data, "r_all_bad", 0, 3)  # 100.00, sum 0
    config = parse_config(
        "\n".join(
            f'[[sources]]\nname = "{n}"\ntable = "t_{n}"\nfile_pattern = "{n}.csv"'
            for n in ("r_half", "r_third", "r_two_thirds", "r_empty", "r_all_bad")
        ),
        None,
    )
    assert load_sources(db, config, data, as_of=date(2026, 1, 2)).exit_code == 0
    report = write_report(db, tmp_path, date(2026, 1, 2))
    assert report.read_text().splitlines() == [
        "customer,count_customer_number,sum_customer_rating,high_value_count,invalid_customer_number_count,"
        "invalid_customer_number_percent",
        "r_all_bad,0,0,0,3,100.00",
        "r_empty,0,0,0,0,0.00",
        f"r_half,159,{sum(range(1, 160))},80,1,0.63",
        "r_third,2,3,1,1,33.33",
        "r_two_thirds,1,1,1,2,66.67",
    ]


def test_report_leaves_no_temporary_file_and_replaces_the_old_report(db: Database, tmp_path: Path) -> None:
    target = tmp_path / "Customer_Rating_Aggregate_Report_20260102.csv"
    target.write_text("old")
    write_report(db, tmp_path, date(2026, 1, 2))
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert target.read_text().startswith("customer,")
