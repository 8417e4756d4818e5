"""Write a synthetic census file of N rows, resampled (with replacement) from the input.

python -m benchmarks.synthetic 1000000 data/census_1m.csv
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from warehouse.config import DEFAULT_SOURCE


def write_synthetic(rows: int, target: Path, source: Path = DEFAULT_SOURCE, seed: int = 1994) -> Path:
    """Resampling keeps every column's distribution and every quirk of the input
    (missing values, both income spellings), so loads and queries work as on real data."""
    with open(source, encoding="utf-8") as stream:
        header = stream.readline()
        lines = stream.readlines()
    sampler = random.Random(seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8") as out:
        out.write(header)
        for start in range(0, rows, 100_000):
            out.writelines(sampler.choices(lines, k=min(100_000, rows - start)))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    write_synthetic(args.rows, args.target)
    print(f"wrote {args.rows:,} rows to {args.target}")


if __name__ == "__main__":
    main()
