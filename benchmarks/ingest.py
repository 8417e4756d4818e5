"""Ingest benchmark: prints the figures the warehouse/loader issue asks for.

    python -m benchmarks.ingest [--runs 5] [--rows 1000000] [--skip-postgres]

1. Whole-process upload of data/Input_Dataset.csv into a new SQLite file, median
   wall time, side by side with a plain pandas read_csv + DataFrame.to_sql of the
   flat file and with Python's csv + sqlite3 flat insert (the practical floor).
2. A synthetic file (resampled from the input) into SQLite and into PostgreSQL:
   rows per second end to end and the upload process's peak memory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.synthetic import write_synthetic
from warehouse.config import DEFAULT_SOURCE, PROJECT_ROOT

PANDAS_FLAT = """
import sys, sqlite3, pandas as pd
frame = pd.read_csv(sys.argv[1])
with sqlite3.connect(sys.argv[2]) as connection:
    frame.to_sql("people", connection, index=False)
"""
PANDAS_FLAT_SQLALCHEMY = """
import sys, pandas as pd, sqlalchemy
frame = pd.read_csv(sys.argv[1])
frame.to_sql("people", sqlalchemy.create_engine("sqlite:///" + sys.argv[2]), index=False)
"""
CSV_FLAT = """
import csv, sys, sqlite3
with open(sys.argv[1], newline="") as stream, sqlite3.connect(sys.argv[2]) as connection:
    rows = csv.reader(stream)
    header = next(rows)
    connection.execute("CREATE TABLE people (%s)" % ", ".join(header))
    connection.executemany("INSERT INTO people VALUES (%s)" % ", ".join("?" * len(header)), rows)
"""


def run_measured(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak resident memory (MiB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return elapsed, usage.ru_maxrss // 1024


def median_time(make_command: callable, runs: int, scratch: Path) -> float:  # type: ignore[valid-type]
    times = []
    for run in range(runs):
        target = scratch / f"bench_{time.monotonic_ns()}_{run}.db"
        times.append(run_measured(make_command(target))[0])
    return statistics.median(times)


def small_file(runs: int, scratch: Path) -> None:
    source = str(DEFAULT_SOURCE)
    python = sys.executable
    ours = median_time(lambda db: [python, "-m", "loaders.upload", source, "--url", f"sqlite:///{db}"], runs, scratch)
    pandas = median_time(lambda db: [python, "-c", PANDAS_FLAT, source, str(db)], runs, scratch)
    pandas_engine = median_time(lambda db: [python, "-c", PANDAS_FLAT_SQLALCHEMY, source, str(db)], runs, scratch)
    floor = median_time(lambda db: [python, "-c", CSV_FLAT, source, str(db)], runs, scratch)
    print(f"== {DEFAULT_SOURCE.name} (48,842 rows) into a new SQLite file, median of {runs} whole-process runs")
    print(f"loaders.upload (clean + normalize + audit): {ours:6.2f} s")
    print(f"pandas read_csv + to_sql (flat, no checks): {pandas:6.2f} s  (to a sqlite3 connection)")
    print(f"pandas read_csv + to_sql (flat, no checks): {pandas_engine:6.2f} s  (to a SQLAlchemy engine)")
    print(f"csv + sqlite3 flat insert (floor):          {floor:6.2f} s")
    for name, baseline in (("sqlite3 connection", pandas), ("SQLAlchemy engine", pandas_engine)):
        verdict = "PASS" if ours <= baseline / 2 else "FAIL"
        print(f"ratio upload / pandas via {name}: {ours / baseline:.2f} (target <= 0.50) {verdict}")


def large_file(rows: int, scratch: Path, postgres: bool) -> None:
    source = write_synthetic(rows, scratch / f"synthetic_{rows}.csv")
    print(f"== synthetic {rows:,}-row file ({source.stat().st_size / 1e6:.0f} MB) resampled from the input")
    targets = [("SQLite", f"sqlite:///{scratch / 'large.db'}")]
    server = None
    if postgres:
        from devtools.postgres import PostgresServer

        server = PostgresServer().start()
        targets.append(("PostgreSQL", server.create_database("bench")))
    try:
        for name, url in targets:
            seconds, peak_mib = run_measured([sys.executable, "-m", "loaders.upload", str(source), "--url", url])
            rate = rows / seconds
            verdict = "PASS" if rate >= 100_000 and peak_mib < 500 else "FAIL"
            print(
                f"{name:<10} {seconds:6.2f} s  {rate:>9,.0f} rows/s (target >= 100,000)  "
                f"peak memory {peak_mib} MiB (target < 500)  {verdict}"
            )
    finally:
        if server:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="census-bench-") as scratch:
        small_file(args.runs, Path(scratch))
        large_file(args.rows, Path(scratch), postgres=not args.skip_postgres)


if __name__ == "__main__":
    main()
