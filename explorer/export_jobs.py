"""Exports as background jobs: written batch by batch to a file on disk by a worker
thread, with progress the page can show and a cancel the analyst can press.

The job never touches a Panel or Bokeh object: the page polls `progress()` from
the event loop (explorer.export_tab), so a worker thread never edits a session's
document. At most EXPORT_WORKERS exports run at once per server process; more wait
in line (their page says so), so a crowd of exports cannot starve the threads that
answer page turns and filter changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from explorer import downloads

log = logging.getLogger(__name__)

EXPORT_WORKERS: Final = 2
_executor = ThreadPoolExecutor(max_workers=EXPORT_WORKERS, thread_name_prefix="export")

Writer = Callable[[Iterable[list[tuple[Any, ...]]], Sequence[str], str, Path, Callable[[int], None]], int]
Batches = Callable[[], Iterator[list[tuple[Any, ...]]]]


class ExportCancelled(Exception):
    pass


@dataclass
class ExportJob:
    """One export: what to write, and how far it got. States: queued, running,
    done, cancelled, failed."""

    fmt: str
    filename: str
    columns: Sequence[str]
    rows_expected: int
    batches: Batches
    write: Writer
    state: str = "queued"
    written: int = 0
    error: str = ""
    token: str = ""
    path: Path | None = None
    bytes: int = 0
    started: float = 0.0
    seconds: float = 0.0
    _cancel: threading.Event = field(default_factory=threading.Event)
    future: Future[None] | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "cancelled", "failed")

    def cancel(self) -> None:
        """Stop at the next batch; the partial file is removed."""
        self._cancel.set()
        if self.future is not None and self.future.cancel():  # still queued: never starts
            self.state = "cancelled"
            self.discard()

    def discard(self) -> None:
        """Remove the file (after it was sent, or when the session ends)."""
        if self.token:
            downloads.remove_slot(self.token)

    def _checked(self) -> Iterator[list[tuple[Any, ...]]]:
        batches = self.batches()
        try:
            for batch in batches:
                if self._cancel.is_set():
                    raise ExportCancelled
                yield batch
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # gives the database connection back now, also on cancel

    def _progress(self, written: int) -> None:
        self.written = written

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
            self.written = self.write(self._checked(), self.columns, self.fmt, partial, self._progress)
            self.path = partial.rename(folder / self.filename)
            self.bytes = self.path.stat().st_size
            self.state = "done"
        except ExportCancelled:
            self.state = "cancelled"
            self.discard()
        except Exception as error:  # noqa: BLE001 - reported in the page, not as a traceback
            log.exception("export failed")
            self.error = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            self.state = "failed"
            self.discard()
        finally:
            self.seconds = time.perf_counter() - self.started


def start(job: ExportJob) -> ExportJob:
    job.future = _executor.submit(job.run)
    return job
