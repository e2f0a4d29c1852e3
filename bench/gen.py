"""Deterministic generator of agency CSV files for the benchmarks.

Writes, for N data rows and a seed:

* an agency file (CRLF, header) in which ``invalid_percent`` % of the rows are replaced, at random
  positions, by invalid rows of every kind in ``KINDS`` (equal shares, randomly interleaved);
* optionally the all-valid file of the same N rows (the same rows, none replaced), for the
  ``psql \\copy`` baseline;
* a ``<file>.meta.json`` next to each, with the counts and sums that the database must show after
  loading it (rows, valid, invalid, sum of customer_rating over the valid rows, high-value count, ...).

The files are streamed in chunks of ``CHUNK_ROWS`` rows (vectorized with numpy/pyarrow), so memory
does not grow with N.  The output depends only on (rows, seed, invalid_percent), never on timing.

Usage as a script::

    python bench/gen.py --rows 1000000 --invalid-percent 1 --out /tmp/gen
    python bench/gen.py --rows 10000 --seed 7 --file /tmp/agency_0007_20250513.csv   # one agency file

Usage as a module::

    from gen import generate
    meta = generate(Path("data/a.csv"), rows=1_000_000, seed=42, invalid_percent=1.0,
                    valid_path=Path("valid.csv"))
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

GENERATOR_VERSION = 2
HEADER = b"customer_number,customer_rating,customer_rating_limit,customer_status\r\n"
COLUMNS = ("customer_number", "customer_rating", "customer_rating_limit", "customer_status")
CHUNK_ROWS = 500_000
INT32_MAX = 2_147_483_647

# Every kind of invalid row, with the column(s) and error code the SPEC says it must produce.
KINDS: tuple[str, ...] = (
    "not_integer_prefix",  # z1111753583,...            customer_number  not_an_integer
    "not_integer_infix",  # 11118d14971,...            customer_number  not_an_integer
    "customer_number_over_int32",  # 3111673297,...     customer_number  out_of_range
    "rating_out_of_range",  # ...,2147483648,... / -2147483649 (alternating +/-)  out_of_range
    "decimal",  # ...,244586.5,...                      customer_rating  not_an_integer
    "empty_value",  # one empty field, rotating over the 4 columns            missing_value
    "status_too_long",  # status of 35/36 characters  customer_status  too_long
    "three_fields",  # status dropped                                       wrong_field_count
    "five_fields",  # an extra field appended                              wrong_field_count
)
KIND_CODE = {
    "not_integer_prefix": "not_an_integer",
    "not_integer_infix": "not_an_integer",
    "customer_number_over_int32": "out_of_range",
    "rating_out_of_range": "out_of_range",
    "decimal": "not_an_integer",
    "empty_value": "missing_value",
    "status_too_long": "too_long",
    "three_fields": "wrong_field_count",
    "five_fields": "wrong_field_count",
}
_STATUS = pa.array(["low-value\r\n", "high-value\r\n"], pa.string())
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class Meta:
    """What a correct load of ``path`` must produce."""

    path: str
    rows: int  # data rows (header and empty lines not counted)
    valid: int
    invalid: int
    sum_customer_number: int  # over valid rows
    sum_customer_rating: int  # over valid rows
    sum_customer_rating_limit: int  # over valid rows
    high_value_count: int  # valid rows whose status is exactly 'high-value'
    invalid_line_number_sum: int  # sum of the physical line numbers of the invalid rows (header = 1)
    invalid_by_kind: dict[str, int] = field(default_factory=dict)
    invalid_by_code: dict[str, int] = field(default_factory=dict)  # code -> rows having it
    size_bytes: int = 0
    seed: int = 0
    invalid_percent: float = 0.0
    generator_version: int = GENERATOR_VERSION
    seconds: float = 0.0

    def write(self, meta_path: Path) -> None:
        meta_path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, meta_path: Path) -> Meta:
        return cls(**json.loads(meta_path.read_text()))


def meta_path_for(csv_path: Path, meta_dir: Path | None = None) -> Path:
    """``<name>.meta.json`` next to the CSV, or in ``meta_dir`` (keep it out of a loader's data folder)."""
    csv_path = Path(csv_path)
    return (Path(meta_dir) if meta_dir is not None else csv_path.parent) / (csv_path.name + ".meta.json")


def _invalid_line(kind: str, k: int, cn: int, rating: int, limit: int, status: str, rng: np.random.Generator) -> str:
    """One invalid CSV line (without line end) of the given kind; k = its index among rows of that kind."""
    if kind == "not_integer_prefix":
        return f"z{cn},{rating},{limit},{status}"
    if kind == "not_integer_infix":
        s = str(cn)
        pos = int(rng.integers(1, len(s)))
        return f"{s[:pos]}{_LETTERS[int(rng.integers(0, 26))]}{s[pos:]},{rating},{limit},{status}"
    if kind == "customer_number_over_int32":
        return f"{int(rng.integers(INT32_MAX + 1, 9_999_999_999))},{rating},{limit},{status}"
    if kind == "rating_out_of_range":
        big = int(rng.integers(INT32_MAX + 1, 9_999_999_999))
        return f"{cn},{big if k % 2 == 0 else -big},{limit},{status}"
    if kind == "decimal":
        return f"{cn},{rating}.5,{limit},{status}"
    if kind == "empty_value":
        fields = [str(cn), str(rating), str(limit), status]
        fields[k % 4] = ""
        return ",".join(fields)
    if kind == "status_too_long":
        return f"{cn},{rating},{limit},{status}-needs-manual-review-2025"
    if kind == "three_fields":
        return f"{cn},{rating},{limit}"
    if kind == "five_fields":
        return f"{cn},{rating},{limit},{status},extra"
    raise ValueError(kind)


def _write_array(f, arr: pa.Array) -> None:
    """Write the concatenated values of a string array (no separators) without copying to Python str."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    f.write(memoryview(data)[int(offsets[0]) : int(offsets[-1])])


def generate(
    path: Path,
    rows: int,
    seed: int = 42,
    invalid_percent: float = 1.0,
    valid_path: Path | None = None,
    *,
    reuse: bool = True,
    meta_dir: Path | None = None,
) -> Meta:
    """Write the agency file ``path`` (and, if given, the all-valid ``valid_path``); return path's Meta.

    With ``reuse`` an existing file whose meta matches (rows, seed, percent, version, size) is kept.
    """
    path = Path(path)
    if reuse:
        cached = _cached(path, rows, seed, invalid_percent, meta_dir)
        cached_valid = _cached(valid_path, rows, seed, 0.0, meta_dir) if valid_path is not None else True
        if cached is not None and cached_valid is not None:
            return cached

    t0 = time.perf_counter()
    master = np.random.default_rng(seed)
    n_invalid = round(rows * invalid_percent / 100.0)
    positions = np.sort(master.choice(rows, size=n_invalid, replace=False)) if n_invalid else np.zeros(0, np.int64)
    kinds = np.arange(n_invalid) % len(KINDS)
    master.shuffle(kinds)
    kind_seen = [0] * len(KINDS)

    tot = dict(cn=0, rating=0, limit=0, high=0)  # all rows (valid file)
    val = dict(cn=0, rating=0, limit=0, high=0)  # valid rows of the agency file
    by_kind = {k: 0 for k in KINDS}
    by_code: dict[str, int] = {}

    path.parent.mkdir(parents=True, exist_ok=True)
    fv = None
    if valid_path is not None:
        Path(valid_path).parent.mkdir(parents=True, exist_ok=True)
        fv = open(valid_path, "wb")  # noqa: SIM115 (optional second file, closed in finally)
    try:
        with open(path, "wb") as f:
            f.write(HEADER)
            if fv is not None:
                fv.write(HEADER)
            for chunk_no, start in enumerate(range(0, rows, CHUNK_ROWS)):
                end = min(rows, start + CHUNK_ROWS)
                n = end - start
                rng = np.random.default_rng([seed, chunk_no])
                cn = rng.integers(1_111_111_111, 1_112_000_000, n, dtype=np.int64)
                rating = rng.integers(10_000, 500_000, n, dtype=np.int64)
                limit = rng.integers(300_000, 650_000, n, dtype=np.int64)
                high = rng.random(n) < 0.2
                lines = pc.binary_join_element_wise(
                    pc.cast(pa.array(cn), pa.string()),
                    pc.cast(pa.array(rating), pa.string()),
                    pc.cast(pa.array(limit), pa.string()),
                    _STATUS.take(pa.array(high.astype(np.int8))),
                    ",",
                )
                tot["cn"] += int(cn.sum())
                tot["rating"] += int(rating.sum())
                tot["limit"] += int(limit.sum())
                tot["high"] += int(high.sum())
                if fv is not None:
                    _write_array(fv, lines)

                lo, hi = np.searchsorted(positions, [start, end])
                local = positions[lo:hi] - start
                mask = np.zeros(n, dtype=bool)
                mask[local] = True
                if len(local):
                    repl = []
                    for i, kind_idx in zip(local.tolist(), kinds[lo:hi].tolist(), strict=True):
                        kind = KINDS[kind_idx]
                        k = kind_seen[kind_idx]
                        kind_seen[kind_idx] += 1
                        status = "high-value" if high[i] else "low-value"
                        repl.append(
                            _invalid_line(kind, k, int(cn[i]), int(rating[i]), int(limit[i]), status, rng) + "\r\n"
                        )
                        by_kind[kind] += 1
                        code = KIND_CODE[kind]
                        by_code[code] = by_code.get(code, 0) + 1
                    lines = pc.replace_with_mask(lines, pa.array(mask), pa.array(repl, pa.string()))
                keep = ~mask
                val["cn"] += int(cn[keep].sum())
                val["rating"] += int(rating[keep].sum())
                val["limit"] += int(limit[keep].sum())
                val["high"] += int(high[keep].sum())
                _write_array(f, lines)
    finally:
        if fv is not None:
            fv.close()

    seconds = time.perf_counter() - t0
    meta = Meta(
        path=str(path),
        rows=rows,
        valid=rows - n_invalid,
        invalid=n_invalid,
        sum_customer_number=val["cn"],
        sum_customer_rating=val["rating"],
        sum_customer_rating_limit=val["limit"],
        high_value_count=val["high"],
        invalid_line_number_sum=int(positions.sum()) + 2 * n_invalid,
        invalid_by_kind=by_kind,
        invalid_by_code=by_code,
        size_bytes=path.stat().st_size,
        seed=seed,
        invalid_percent=float(invalid_percent),
        seconds=round(seconds, 3),
    )
    if meta_dir is not None:
        Path(meta_dir).mkdir(parents=True, exist_ok=True)
    meta.write(meta_path_for(path, meta_dir))
    if valid_path is not None:
        Meta(
            path=str(valid_path),
            rows=rows,
            valid=rows,
            invalid=0,
            sum_customer_number=tot["cn"],
            sum_customer_rating=tot["rating"],
            sum_customer_rating_limit=tot["limit"],
            high_value_count=tot["high"],
            invalid_line_number_sum=0,
            invalid_by_kind={k: 0 for k in KINDS},
            invalid_by_code={},
            size_bytes=Path(valid_path).stat().st_size,
            seed=seed,
            invalid_percent=0.0,
            seconds=round(seconds, 3),
        ).write(meta_path_for(Path(valid_path), meta_dir))
    return meta


def _cached(path: Path | None, rows: int, seed: int, invalid_percent: float, meta_dir: Path | None) -> Meta | None:
    if path is None:
        return None
    mp = meta_path_for(Path(path), meta_dir)
    if not (Path(path).exists() and mp.exists()):
        return None
    try:
        m = Meta.read(mp)
    except Exception:
        return None
    if (
        m.rows == rows
        and m.seed == seed
        and m.invalid_percent == float(invalid_percent)
        and m.generator_version == GENERATOR_VERSION
        and m.size_bytes == Path(path).stat().st_size
    ):
        return m
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--invalid-percent", type=float, default=1.0)
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--out",
        type=Path,
        help="folder: writes valid-<rows>.csv, data/bench_agency_<rows>_inv<p>.csv, and both .meta.json",
    )
    g.add_argument("--file", type=Path, help="write only this agency file (with invalid rows)")
    p.add_argument("--no-reuse", action="store_true", help="regenerate even if a matching file exists")
    a = p.parse_args(argv)
    if a.file is not None:
        meta = generate(a.file, a.rows, a.seed, a.invalid_percent, reuse=not a.no_reuse)
    else:
        out = a.out or Path("bench/.data/gen")
        pct = f"{a.invalid_percent:g}"
        meta = generate(
            out / "data" / f"bench_agency_{a.rows}_inv{pct}.csv",
            a.rows,
            a.seed,
            a.invalid_percent,
            valid_path=out / f"valid-{a.rows}.csv",
            reuse=not a.no_reuse,
            meta_dir=out,
        )
    print(json.dumps(asdict(meta), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
