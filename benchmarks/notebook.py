"""How long notebooks/insights.ipynb takes to run, as printed figures (no test asserts a timing).

    python -m benchmarks.notebook                 # a fresh SQLite database built from data/Input_Dataset.csv
    python -m benchmarks.notebook --url URL       # an existing, loaded database (e.g. PostgreSQL)
    python -m benchmarks.notebook --runs 3

Figures: the database build (when not given --url), then for each run the wall time of the
whole notebook executed by nbclient (kernel start included) and of its slowest cells. The
target of the first pass was under two minutes on this 2-core machine; on a shared machine
print `uptime` beside the figures. insights.json is written to a temporary file, never over
the committed one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from loaders.upload import upload
from warehouse.config import DEFAULT_SOURCE, sqlite_url
from warehouse.db import make_engine

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "insights.ipynb"
TARGET_S = 120.0


def build_database(directory: Path) -> tuple[str, float]:
    """A SQLite file loaded by the real loader; returns its URL and the seconds it took."""
    url = sqlite_url(directory / "census.db")
    started = time.perf_counter()
    engine = make_engine(url)
    upload(engine, DEFAULT_SOURCE, progress=False)
    engine.dispose()
    return url, time.perf_counter() - started


def run_once(url: str, directory: Path) -> tuple[float, list[tuple[float, int]]]:
    """Execute the notebook once; the total seconds and (seconds, cell index) of each code cell."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        INSIGHTS_PATH=str(directory / "insights.json"),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.record_timing = True
    started = time.perf_counter()
    client.execute(env=env)
    total = time.perf_counter() - started
    cells = []
    for index, cell in enumerate(notebook.cells):
        timing = cell.metadata.get("execution", {})
        begin, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if cell.cell_type == "code" and begin and end:
            seconds = (
                datetime.fromisoformat(end.rstrip("Z")) - datetime.fromisoformat(begin.rstrip("Z"))
            ).total_seconds()
            cells.append((seconds, index))
    return total, sorted(cells, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already loaded database (default: build a fresh SQLite file)")
    parser.add_argument("--runs", type=int, default=1, help="how many times to execute the notebook (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="notebook-bench-") as tmp:
        directory = Path(tmp)
        if args.url:
            url = args.url
        else:
            url, seconds = build_database(directory)
            print(f"fresh SQLite database loaded from {DEFAULT_SOURCE.name}: {seconds:.1f} s")
        for run in range(1, args.runs + 1):
            total, cells = run_once(url, directory)
            verdict = "within" if total <= TARGET_S else "OVER"
            print(f"run {run}: notebook executed in {total:.1f} s ({verdict} the {TARGET_S:.0f} s target)")
            print("  slowest cells: " + ", ".join(f"#{index} {seconds:.1f} s" for seconds, index in cells[:3]))
    print(f"load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
