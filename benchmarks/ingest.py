"""Ingest benchmark: prints the figures the loader issue (#11) asks for.

    python -m benchmarks.ingest [--runs 3] [--rows 1000000] [--large-runs 1] [--skip-postgres] [--skip-small]

1. data/Input_Dataset.csv (48,842 rows) into a new SQLite file, whole process,
   median of --runs: the upload against pandas read_csv + to_sql (flat table,
   through a plain sqlite3 connection and through a SQLAlchemy engine) and a
   csv + sqlite3 flat insert. Dominated by interpreter and import time: printed,
   not a target.
2. A synthetic file of --rows rows (resampled from the input), whole process,
   median of --large-runs runs (upload, pandas, append interleaved: the
   machine's load shifts less between them than between separate runs):
   - into a new SQLite file, against pandas read_csv + to_sql through a plain
     sqlite3 connection (pandas' fastest SQLite path): wall time and peak memory.
     Target: at most 1.0x pandas' time at at most 1/10 of its peak memory.
   - into a new PostgreSQL database, against pandas read_csv + to_sql through a
     psycopg2 engine with a COPY-based `method` (pandas' documented fastest way).
   - appending --rows rows onto --rows rows, against loading them into an empty
     table, on both databases. Target: at most 1.5x.
   - the longest wait of a reader querying PostgreSQL in a loop during a
     --replace of --rows rows.
The machine's load average is printed with every section: figures from a shared
machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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
# pandas' documented COPY-based insertion method (the "Insertion method" example
# of the pandas I/O guide), through psycopg2.
PANDAS_POSTGRES_COPY = """
import csv, io, sys, pandas as pd, sqlalchemy

def copy_method(table, connection, keys, data_iter):
    cursor = connection.connection.cursor()
    buffer = io.StringIO()
    csv.writer(buffer).writerows(data_iter)
    buffer.seek(0)
    columns = ", ".join('"{}"'.format(k) for k in keys)
    cursor.copy_expert('COPY "{}" ({}) FROM STDIN WITH CSV'.format(table.name, columns), buffer)

frame = pd.read_csv(sys.argv[1])
frame.to_sql("people_flat", sqlalchemy.create_engine(sys.argv[2]), index=False, method=copy_method)
"""
CSV_FLAT = """
import csv, sys, sqlite3
with open(sys.argv[1], newline="") as stream, sqlite3.connect(sys.argv[2]) as connection:
    rows = csv.reader(stream)
    header = next(rows)
    connection.execute("CREATE TABLE people (%s)" % ", ".join(header))
    connection.executemany("INSERT INTO people VALUES (%s)" % ", ".join("?" * len(header)), rows)
"""


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def run_measured(command: list[str]) -> tuple[float, int, float]:
    """Wall seconds, peak resident memory (MiB) and CPU seconds (user + system)
    of one child process. On a busy machine wall time follows CPU time more than
    parallelism, so both are printed."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return elapsed, usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime


def upload_command(source: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "loaders.upload", str(source), "--url", url, *extra]


def median_time(make_command: Callable[[Path], list[str]], runs: int, scratch: Path) -> float:
    times = []
    for run in range(runs):
        target = scratch / f"bench_{time.monotonic_ns()}_{run}.db"
        times.append(run_measured(make_command(target))[0])
    return statistics.median(times)


def small_file(runs: int, scratch: Path) -> None:
    source = str(DEFAULT_SOURCE)
    python = sys.executable
    ours = median_time(lambda db: upload_command(DEFAULT_SOURCE, f"sqlite:///{db}"), runs, scratch)
    pandas = median_time(lambda db: [python, "-c", PANDAS_FLAT, source, str(db)], runs, scratch)
    pandas_engine = median_time(lambda db: [python, "-c", PANDAS_FLAT_SQLALCHEMY, source, str(db)], runs, scratch)
    floor = median_time(lambda db: [python, "-c", CSV_FLAT, source, str(db)], runs, scratch)
    print(f"== {DEFAULT_SOURCE.name} (48,842 rows) into a new SQLite file, median of {runs} whole-process runs")
    print(f"   ({load_average()})")
    print(f"loaders.upload (clean + normalize + audit): {ours:6.2f} s")
    print(f"pandas read_csv + to_sql (flat, no checks): {pandas:6.2f} s  (to a sqlite3 connection)")
    print(f"pandas read_csv + to_sql (flat, no checks): {pandas_engine:6.2f} s  (to a SQLAlchemy engine)")
    print(f"csv + sqlite3 flat insert (floor):          {floor:6.2f} s")
    for name, baseline in (("sqlite3 connection", pandas), ("SQLAlchemy engine", pandas_engine)):
        print(f"ratio upload / pandas via {name}: {ours / baseline:.2f} (for the record; not a target)")


def compare(name: str, ours: tuple[float, int, float], pandas: tuple[float, int, float]) -> None:
    time_ratio = ours[0] / pandas[0]
    memory_ratio = ours[1] / pandas[1]
    verdict = "PASS" if time_ratio <= 1.0 and memory_ratio <= 0.1 else "FAIL"
    print(
        f"{name}: upload {ours[0]:6.2f} s, {ours[1]} MiB, {ours[2]:.2f} s CPU | "
        f"pandas {pandas[0]:6.2f} s, {pandas[1]} MiB, {pandas[2]:.2f} s CPU (client process only)"
    )
    print(
        f"{name}: time ratio {time_ratio:.2f} (target <= 1.00), memory ratio {memory_ratio:.3f} "
        f"(target <= 0.100)  {verdict}   ({load_average()})"
    )


def memory_above_imports(
    name: str, ours: tuple[float, int, float], pandas: tuple[float, int, float], pandas_imports: str
) -> None:
    """Peak resident memory is mostly what a process holds before it reads a byte:
    the interpreter, its modules and the shared libraries mapped from files
    (pyarrow's alone are 44-70 MiB resident, and how much of a library counts
    varies with the kernel's page cache). The peak above that floor is the
    memory the work itself took."""
    ours_floor = run_measured([sys.executable, "-c", "import loaders.upload"])[1]
    pandas_floor = run_measured([sys.executable, "-c", pandas_imports])[1]
    ours_work, pandas_work = ours[1] - ours_floor, pandas[1] - pandas_floor
    print(
        f"{name}: peak memory of the imports alone: upload {ours_floor} MiB, pandas {pandas_floor} MiB; "
        f"above them: upload {ours_work} MiB, pandas {pandas_work} MiB (ratio {ours_work / pandas_work:.3f})"
    )


def append_ratio(name: str, empty_s: float, append_s: float) -> None:
    ratio = append_s / empty_s
    verdict = "PASS" if ratio <= 1.5 else "FAIL"
    print(
        f"{name}: empty table {empty_s:6.2f} s, appended onto as many {append_s:6.2f} s: ratio {ratio:.2f} "
        f"(target <= 1.50)  {verdict}   ({load_average()})"
    )


def median_measures(measures: list[tuple[float, int, float]]) -> tuple[float, int, float]:
    """Median wall and CPU time, largest peak memory, of interleaved runs."""
    return (
        statistics.median(m[0] for m in measures),
        max(m[1] for m in measures),
        statistics.median(m[2] for m in measures),
    )


def large_sqlite(rows: int, first: Path, second: Path, scratch: Path, runs: int) -> None:
    print(f"== {rows:,} rows into SQLite, whole process, median of {runs} interleaved run(s)")
    ours, pandas, appended = [], [], []
    for run in range(runs):
        database = scratch / f"large_{run}.db"
        ours.append(run_measured(upload_command(first, f"sqlite:///{database}")))
        pandas.append(run_measured([sys.executable, "-c", PANDAS_FLAT, str(first), str(scratch / f"pandas_{run}.db")]))
        appended.append(run_measured(upload_command(second, f"sqlite:///{database}")))
        for leftover in scratch.glob(f"*_{run}.db*"):
            leftover.unlink()
    print_runs(ours, pandas, appended)
    compare("SQLite", median_measures(ours), median_measures(pandas))
    memory_above_imports("SQLite", median_measures(ours), median_measures(pandas), "import sqlite3, pandas")
    append_ratio("SQLite append", median_measures(ours)[0], median_measures(appended)[0])


def print_runs(*series: list[tuple[float, int, float]]) -> None:
    """Each run's wall seconds (upload, pandas, append), when there are several."""
    if len(series[0]) > 1:
        upload, pandas, append = (" ".join(f"{m[0]:.2f}" for m in measures) for measures in series)
        print(f"(each run's wall seconds: upload {upload}; pandas {pandas}; append {append})")


def large_postgres(rows: int, first: Path, second: Path, runs: int) -> None:
    from sqlalchemy import text

    from devtools.postgres import PostgresServer
    from warehouse.db import make_engine

    print(f"== {rows:,} rows into PostgreSQL, whole process, median of {runs} interleaved run(s)")
    server = PostgresServer().start()
    try:
        ours, pandas, appended = [], [], []
        for run in range(runs):
            url = server.create_database(f"bench{run}")
            ours.append(run_measured(upload_command(first, url)))
            flat = server.create_database(f"flat{run}")
            pandas.append(run_measured([sys.executable, "-c", PANDAS_POSTGRES_COPY, str(first), flat]))
            appended.append(run_measured(upload_command(second, url)))
        print("(pandas: read_csv + to_sql through psycopg2 with a COPY `method`)")
        print_runs(ours, pandas, appended)
        compare("PostgreSQL", median_measures(ours), median_measures(pandas))
        memory_above_imports(
            "PostgreSQL", median_measures(ours), median_measures(pandas), "import csv, io, pandas, sqlalchemy, psycopg2"
        )
        append_ratio("PostgreSQL append", median_measures(ours)[0], median_measures(appended)[0])

        # A reader in a loop while --replace swaps in rows+rows new people.
        engine = make_engine(url)
        waits: list[float] = []
        stop = threading.Event()

        def read() -> None:
            with engine.connect() as connection:
                while not stop.is_set():
                    started = time.monotonic()
                    connection.execute(text("SELECT count(*) FROM people WHERE gender = 'Female' AND age > 40"))
                    connection.rollback()
                    waits.append(time.monotonic() - started)
                    time.sleep(0.01)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            replaced = run_measured(upload_command(first, url, "--replace"))
        finally:
            stop.set()
            reader.join()
            engine.dispose()
        print(
            f"PostgreSQL --replace with {rows:,} rows: {replaced[0]:.2f} s; a reader querying in a loop "
            f"({len(waits)} queries) waited at most {max(waits) * 1000:.0f} ms "
            f"(median {statistics.median(waits) * 1000:.0f} ms)"
            f"   ({load_average()})"
        )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument(
        "--large-runs", type=int, default=1, help="interleaved runs of each large-file measure (medians printed)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="census-bench-") as folder:
        scratch = Path(folder)
        if not args.skip_small:
            small_file(args.runs, scratch)
        first = write_synthetic(args.rows, scratch / f"synthetic_{args.rows}.csv", seed=1)
        second = write_synthetic(args.rows, scratch / f"synthetic_{args.rows}_more.csv", seed=2)
        print(
            f"synthetic files: {args.rows:,} rows each ({first.stat().st_size / 1e6:.0f} MB), resampled from the input"
        )
        large_sqlite(args.rows, first, second, scratch, args.large_runs)
        if not args.skip_postgres:
            large_postgres(args.rows, first, second, args.large_runs)


if __name__ == "__main__":
    main()
