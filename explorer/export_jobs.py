"""Exports as background jobs: written batch by batch to a file on disk by a child
process, with progress the page can show and a cancel the analyst can press.

Why a process and not a thread: an export is Python work from the first row to the
last (rows from the database cursor, each turned into CSV, JSON, Excel or Parquet):
6.4 s of CPU for 1,000,000 people as CSV. In a thread of the server it holds the
interpreter's lock for all that time, and every analyst's filter changes and page
turns wait their turn for it (the 95th percentile of 8 analysts' chart updates went
from 0.7 s to 1.1 s while one exported everyone, `python -m benchmarks.explorer
--concurrency`). A child process has its own interpreter, and on a second core
the server does not notice it. The child (`python -m explorer.export_jobs`, this
module) reads its job as JSON on stdin and writes one line per batch on stdout:
`written N`, then `done N PEAK` (its peak memory in bytes) or `error MESSAGE`.

The job never touches a Panel or Bokeh object: the page polls `written` from the
event loop (explorer.export_tab), so the waiting thread never edits a session's
document. At most EXPORT_WORKERS exports run at once per server process; more wait
in line (their page says so), so a crowd of exports cannot take every core.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from explorer import downloads
from warehouse.domain import NUMERIC_COLUMNS

log = logging.getLogger(__name__)

EXPORT_WORKERS: Final = 2
EXCEL_MAX_DATA_ROWS: Final = 1_048_575  # 1,048,576 rows per sheet, less the header
INTEGER_COLUMNS: Final = frozenset({"id", *NUMERIC_COLUMNS})
PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
# The waiting is done by threads (each blocks on its child's output, without the lock).
_executor = ThreadPoolExecutor(max_workers=EXPORT_WORKERS, thread_name_prefix="export")


class ExportCancelled(Exception):
    pass


class ExportFailed(Exception):
    pass


@dataclass(frozen=True)
class PeopleRows:
    """The people an export holds, as plain values a child process can be given:
    the database, the filter in its query-string form, the columns."""

    url: str
    filter_params: Mapping[str, Sequence[str]]
    columns: tuple[str, ...]
    batch_size: int

    def batches(self) -> Iterator[list[tuple[Any, ...]]]:
        from warehouse.db import make_read_engine
        from warehouse.filters import PeopleFilter
        from warehouse.people import iter_people

        # No memory-mapped reads: a whole-table export would map the whole file into
        # this process (read once, in order, the page cache serves it as well).
        engine = make_read_engine(self.url, pool_size=1, max_overflow=0, mmap_bytes=0)
        try:
            with engine.connect() as connection:
                people_filter = PeopleFilter.from_params(self.filter_params)
                yield from iter_people(connection, people_filter, self.columns, batch_size=self.batch_size)
        finally:
            engine.dispose()

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "filter": {k: list(v) for k, v in self.filter_params.items()},
            "columns": list(self.columns),
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> PeopleRows:
        return cls(spec["url"], spec["filter"], tuple(spec["columns"]), int(spec["batch_size"]))


@dataclass
class ExportJob:
    """One export: what to write, and how far it got. States: queued, running,
    done, cancelled, failed."""

    fmt: str
    filename: str
    columns: Sequence[str]
    rows_expected: int
    rows: PeopleRows
    state: str = "queued"
    written: int = 0
    error: str = ""
    token: str = ""
    path: Path | None = None
    bytes: int = 0
    peak_bytes: int = 0  # the writing process's peak memory
    started: float = 0.0
    seconds: float = 0.0
    _cancel: threading.Event = field(default_factory=threading.Event)
    _child: subprocess.Popen[str] | None = None
    future: Future[None] | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "cancelled", "failed")

    def cancel(self) -> None:
        """Stop the writing process now; the partial file is removed."""
        self._cancel.set()
        if self.future is not None and self.future.cancel():  # still queued: never starts
            self.state = "cancelled"
            self.discard()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()

    def discard(self) -> None:
        """Remove the file (after it was sent, or when the session ends)."""
        if self.token:
            downloads.remove_slot(self.token)

    def run(self) -> None:
        if self._cancel.is_set():
            self.state = "cancelled"
            return
        self.state, self.started = "running", time.perf_counter()
        self.token, folder = downloads.new_slot()
        # Written under a .part name, renamed when complete: the download route never
        # serves a half-written file.
        partial = folder / f"{self.filename}.part"
        try:
            self._write_in_child(partial)
            self.path = partial.rename(folder / self.filename)
            self.bytes = self.path.stat().st_size
            self.state = "done"
        except ExportCancelled:
            self.state = "cancelled"
            self.discard()
        except Exception as error:  # noqa: BLE001 - reported in the page, not as a traceback
            log.warning("export failed: %s", error)
            self.error = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            self.state = "failed"
            self.discard()
        finally:
            self.seconds = time.perf_counter() - self.started

    def _write_in_child(self, path: Path) -> None:
        job = {"rows": self.rows.to_json(), "columns": list(self.columns), "fmt": self.fmt, "path": str(path)}
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")))),
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "explorer.export_jobs"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream: nothing can fill up unread
            text=True,
            env=env,
            cwd=PROJECT_ROOT,
        )
        self._child = child
        if self._cancel.is_set():  # cancelled while the child was starting
            child.terminate()
        error = ""
        with child:
            assert child.stdin is not None and child.stdout is not None
            try:
                child.stdin.write(json.dumps(job))
                child.stdin.close()
            except BrokenPipeError:
                pass  # it was terminated already; its exit status says why
            for line in child.stdout:
                kind, _, value = line.rstrip("\n").partition(" ")
                if kind == "written":
                    self.written = int(value)
                elif kind == "done":
                    written, peak = value.split()
                    self.written, self.peak_bytes = int(written), int(peak)
                elif kind == "error":
                    error = value
        if self._cancel.is_set():
            raise ExportCancelled
        if child.returncode != 0:
            raise ExportFailed(error or f"the export process stopped (exit status {child.returncode})")


def start(job: ExportJob) -> ExportJob:
    job.future = _executor.submit(job.run)
    return job


class ExportTooLarge(ValueError):
    pass


def _json_value(value: Any) -> Any:
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def write_export(
    batches: Iterable[list[tuple[Any, ...]]],
    columns: Sequence[str],
    fmt: str,
    path: Path,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write batches of rows to `path` in the given format; returns the number of data rows."""
    written = 0
    columns = list(columns)
    if fmt == "CSV":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for batch in batches:
                writer.writerows(batch)
                written += len(batch)
                if progress:
                    progress(written)
    elif fmt == "JSON":  # one JSON array of objects (what a .json reader expects), written batch by batch
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("[")
            separator = "\n"
            for batch in batches:
                for row in batch:
                    record = {c: _json_value(v) for c, v in zip(columns, row, strict=True)}
                    handle.write(separator + json.dumps(record, ensure_ascii=False))
                    separator = ",\n"
                written += len(batch)
                if progress:
                    progress(written)
            handle.write("\n]\n")
    elif fmt == "Parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        # A fixed schema: a batch whose column is all missing must not change its type.
        schema = pa.schema([(c, pa.int64() if c in INTEGER_COLUMNS else pa.string()) for c in columns])
        with pq.ParquetWriter(path, schema) as writer:
            for batch in batches:
                arrays = list(zip(*batch, strict=True)) if batch else [[] for _ in columns]
                table = pa.Table.from_arrays(
                    [pa.array(list(a), type=schema.field(i).type) for i, a in enumerate(arrays)], schema=schema
                )
                writer.write_table(table)
                written += len(batch)
                if progress:
                    progress(written)
    elif fmt == "Excel":
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("people")
        sheet.append(columns)  # the same headers as CSV, JSON and Parquet: the column names
        for batch in batches:
            if written + len(batch) > EXCEL_MAX_DATA_ROWS:
                raise ExportTooLarge(f"more than {EXCEL_MAX_DATA_ROWS:,} rows do not fit in an Excel sheet")
            for row in batch:
                sheet.append(list(row))
            written += len(batch)
            if progress:
                progress(written)
        workbook.save(path)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return written


def _peak_memory_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main() -> int:
    """The child: read the job from stdin, write the file, report on stdout."""
    job = json.load(sys.stdin)
    rows = PeopleRows.from_json(job["rows"])

    def progress(written: int) -> None:
        print(f"written {written}", flush=True)

    try:
        written = write_export(rows.batches(), job["columns"], job["fmt"], Path(job["path"]), progress)
    except Exception as error:  # noqa: BLE001 - one line for the page, not a traceback
        reason = str(getattr(error, "orig", None) or error).strip()
        print(f"error {reason.splitlines()[0] if reason else type(error).__name__}", flush=True)
        return 1
    print(f"done {written} {_peak_memory_bytes()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
