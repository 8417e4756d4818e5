"""Export tab: the session's filters, a column picker, a format, the exact row count, a
preview, and a download produced in batches (never one giant DataFrame).

Files are written batch by batch to a temporary file through `iter_people`
(CSV and JSON lines incrementally, Parquet one row group per batch with pyarrow's
ParquetWriter, Excel with openpyxl's write-only workbook), so memory stays bounded
by the batch size whatever the number of rows.

Served with the download route (`--plugins explorer.downloads`, as `python -m
explorer` does), the file is written by a background job (explorer.export_jobs)
while the page shows its progress and a Cancel button, then the browser fetches it
from disk in chunks and the file is deleted. Without the route (a bare `panel
serve explorer/app.py`), the Download button sends the finished file through the
page's websocket, which holds it in memory once.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import date
from html import escape as html_escape
from pathlib import Path
from typing import Any, Final

import pandas as pd
import panel as pn
import param
from panel.custom import JSComponent
from sqlalchemy.exc import SQLAlchemyError

from explorer import downloads, export_jobs
from explorer.browse import display_frame
from explorer.dictionary import column_tooltips, columns_help
from explorer.export_jobs import EXCEL_MAX_DATA_ROWS, INTEGER_COLUMNS, ExportTooLarge, PeopleRows, write_export
from explorer.filters import FilterPanel
from explorer.store import DataStore
from warehouse.query import PEOPLE_COLUMNS, PeopleFilter, column_title

log = logging.getLogger(__name__)

FORMATS: Final[dict[str, str]] = {"CSV": "csv", "Excel": "xlsx", "JSON": "json", "Parquet": "parquet"}
BATCH_SIZE: Final = 10_000
PREVIEW_ROWS: Final = 10
POLL_MS: Final = 300  # how often the page's progress bar is brought up to date


def export_problem(fmt: str, rows: int) -> str | None:
    """Why this export cannot be made (None when it can)."""
    if fmt == "Excel" and rows > EXCEL_MAX_DATA_ROWS:
        return (
            f"{rows:,} rows do not fit in one Excel sheet (at most {EXCEL_MAX_DATA_ROWS:,} rows): "
            "narrow the filters or choose CSV, JSON or Parquet."
        )
    if rows == 0:
        return "No one matches these filters: there is nothing to export."
    return None


def export_filename(
    fmt: str, people_filter: PeopleFilter, columns: Sequence[str], rows: int, today: date | None = None
) -> str:
    """'census-people_gender-female-age-30-90_3-columns_12345-rows_2026-11-28.csv'.
    A long filter keeps its first conditions whole and says how many more there are,
    never cut in the middle of one."""
    who = people_filter.describe()
    slug = "everyone" if who == "everyone" else _filter_slug(who.split(" · "))
    cols = "all-columns" if list(columns) == list(PEOPLE_COLUMNS) else f"{len(columns)}-columns"
    return f"census-people_{slug}_{cols}_{rows}-rows_{(today or date.today()).isoformat()}.{FORMATS[fmt]}"


FILTER_SLUG_MAX: Final = 150  # characters; file names stay far below the 255-byte limit


def _filter_slug(conditions: Sequence[str]) -> str:
    slugs = [re.sub(r"[^a-z0-9]+", "-", condition.lower()).strip("-") for condition in conditions]
    kept: list[str] = []
    for index, slug in enumerate(slugs):
        rest = len(slugs) - index - 1
        suffix = f"-and-{rest}-more-filters" if rest else ""
        if kept and len("-".join([*kept, slug])) + len(suffix) > FILTER_SLUG_MAX:
            return "-".join(kept) + f"-and-{len(slugs) - index}-more-filters"
        kept.append(slug)
    return "-".join(kept)


class DownloadTrigger(JSComponent):
    """Starts the browser's download of `url` each time it changes (an invisible
    link clicked by script), so one click on the export button is enough."""

    url = param.String(default="")

    _esm = """
    export function render({ model }) {
      model.on("url", () => {
        if (!model.url) { return }
        const link = document.createElement("a")
        link.href = model.url
        link.download = ""
        link.className = "export-auto-download"
        document.body.appendChild(link)
        link.click()
        link.remove()
      })
    }
    """


class ExportView(pn.viewable.Viewer):
    fmt = param.Selector(default="CSV", objects=list(FORMATS), label="Format")
    rows = param.Integer(default=0, doc="Exact number of rows the export will hold.")
    streaming = param.Boolean(
        default=False, doc="Export as a background job served from disk (needs the explorer.downloads route)."
    )

    def __init__(self, store: DataStore, filters: FilterPanel | None = None, **params: Any) -> None:
        params.setdefault("streaming", downloads.served_by_plugin())
        super().__init__(**params)
        self.store = store
        self.filters = filters or FilterPanel()
        self.column_picker = pn.widgets.MultiChoice(
            label="Columns (empty = all)",
            options={column_title(c): c for c in PEOPLE_COLUMNS},
            value=list(PEOPLE_COLUMNS),
            sizing_mode="stretch_width",
        )
        self.count_text = pn.pane.Markdown("", css_classes=["export-count"], margin=(5, 10))
        self.problem = pn.pane.Alert(
            "", alert_type="warning", visible=False, sizing_mode="stretch_width", css_classes=["export-problem"]
        )
        self.preview = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            show_index=False,
            selectable=False,
            sizing_mode="stretch_width",
            layout="fit_data_table",
            css_classes=["export-preview"],
        )
        self.download = pn.widgets.FileDownload(
            callback=self._produce,
            filename="export.csv",
            label="Download",
            color="success",
            width=260,
            css_classes=["export-download"],
        )
        self.last_export: dict[str, Any] = {}
        self._tmpdir = Path(tempfile.mkdtemp(prefix="explorer-exports-"))
        # The background export (streaming mode): button, progress, cancel, link.
        self.start_button = pn.widgets.Button(
            label="Download", color="success", width=260, css_classes=["export-start"]
        )
        self.start_button.on_click(self._start_job)
        self.cancel_button = pn.widgets.Button(
            label="Cancel export", color="warning", width=140, visible=False, css_classes=["export-cancel"]
        )
        self.cancel_button.on_click(self._cancel_job)
        self.progress = pn.indicators.Progress(
            value=0, max=100, visible=False, sizing_mode="stretch_width", css_classes=["export-progress"]
        )
        self.job_status = pn.pane.HTML("", css_classes=["export-status"], sizing_mode="stretch_width")
        self.trigger = DownloadTrigger(height=0, width=0, margin=0)
        self.job: export_jobs.ExportJob | None = None
        self._poller: Any = None
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(self._session_ended)
        self.filters.param.watch(lambda _e: self._update(), "people_filter")
        self.column_picker.param.watch(lambda _e: self._update(), "value")
        self.param.watch(lambda _e: self._update(), "fmt")
        self._update()

    @property
    def columns(self) -> list[str]:
        chosen = [c for c in PEOPLE_COLUMNS if c in (self.column_picker.value or [])]
        return chosen or list(PEOPLE_COLUMNS)

    # -- page-URL form (the filter is the session's, written by the app) --

    def to_params(self) -> dict[str, list[str]]:
        """format= and export_columns= when they differ from the defaults."""
        params: dict[str, list[str]] = {}
        if self.fmt != self.param.fmt.default:
            params["format"] = [self.fmt]
        if self.columns != list(PEOPLE_COLUMNS):
            params["export_columns"] = [",".join(self.columns)]
        return params

    def set_params(self, query: Mapping[str, Sequence[str]]) -> None:
        """Show what a page URL names; unknown formats and columns are ignored."""
        fmt = (query.get("format") or [""])[-1]
        if fmt in FORMATS:
            self.fmt = fmt
        columns = [c for c in ",".join(query.get("export_columns") or []).split(",") if c in PEOPLE_COLUMNS]
        if columns:
            self.column_picker.value = columns

    @property
    def filename(self) -> str:
        return export_filename(self.fmt, self.filters.people_filter, self.columns, self.rows)

    def _update(self) -> None:
        people_filter = self.filters.people_filter
        try:
            with self.preview.param.update(loading=True):
                self.rows = self.store.count(people_filter)
                preview = self.store.fetch(people_filter, self.columns, limit=PREVIEW_ROWS)
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            self.problem.param.update(object=f"The database could not answer: {reason}", visible=True)
            self.download.disabled = True
            return
        with self.preview.param.update(loading=True):
            self.preview.param.update(
                value=display_frame(preview, self.columns),
                titles={c: column_title(c) for c in self.columns},
                header_tooltips=column_tooltips("people", self.columns),
                text_align={c: "right" if c in INTEGER_COLUMNS else "left" for c in self.columns},
            )
        self.count_text.object = (
            f"**{self.rows:,} rows** will be exported ({len(self.columns)} columns, {self.fmt}) — "
            f"{people_filter.describe()}. Preview of the first {min(PREVIEW_ROWS, self.rows)} rows:"
        )
        problem = export_problem(self.fmt, self.rows)
        self.problem.param.update(object=problem or "", visible=problem is not None)
        self.download.param.update(
            disabled=problem is not None, filename=self.filename, label=f"Download {self.fmt} ({self.rows:,} rows)"
        )
        running = self.job is not None and not self.job.finished
        self.start_button.param.update(
            disabled=problem is not None or running, label=f"Download {self.fmt} ({self.rows:,} rows)"
        )

    def produce_file(self) -> Path:
        """Write the export to a temporary file (batch by batch) and return its path."""
        people_filter, columns, fmt = self.filters.people_filter, self.columns, self.fmt
        rows = self.store.count(people_filter)
        problem = export_problem(fmt, rows)
        if problem:
            raise ExportTooLarge(problem)
        for old in self._tmpdir.iterdir():  # keep one finished export per session at most
            old.unlink(missing_ok=True)
        path = self._tmpdir / export_filename(fmt, people_filter, columns, rows)
        started = time.perf_counter()
        written = write_export(self.store.iter_people(people_filter, columns, BATCH_SIZE), columns, fmt, path)
        self.last_export = {
            "path": path,
            "rows": written,
            "seconds": time.perf_counter() - started,
            "bytes": path.stat().st_size,
        }
        return path

    def _produce(self) -> Any:
        self.download.filename = self.filename
        try:
            with self.download.param.update(loading=True):
                return self.produce_file()
        except ExportTooLarge as error:
            self.problem.param.update(object=str(error), visible=True)
        except Exception as error:  # noqa: BLE001 - shown in the page, not as a traceback
            log.exception("export failed")
            self.problem.param.update(object=f"The export failed: {error}", visible=True)
        return io.BytesIO(b"")

    # -- the background export (streaming mode) --

    def start_job(self) -> export_jobs.ExportJob | None:
        """Start writing the current export in the background; None when it cannot be made."""
        people_filter, columns, fmt = self.filters.people_filter, self.columns, self.fmt
        try:
            rows = self.store.count(people_filter)
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            self.problem.param.update(object=f"The database could not answer: {reason}", visible=True)
            return None
        problem = export_problem(fmt, rows)
        if problem:
            self.problem.param.update(object=problem, visible=True)
            return None
        self._drop_job()  # one export per session: the previous file goes
        job = export_jobs.ExportJob(
            fmt=fmt,
            filename=export_filename(fmt, people_filter, columns, rows),
            columns=columns,
            rows_expected=rows,
            rows=PeopleRows(self.store.url, people_filter.to_params(), tuple(columns), BATCH_SIZE),
        )
        self.job = export_jobs.start(job)
        self.problem.visible = False
        self.start_button.disabled = True
        self.cancel_button.visible = True
        self.progress.param.update(value=0, visible=True)
        self.job_status.object = f"Preparing {rows:,} rows as {fmt}…"
        return job

    def _start_job(self, _event: Any = None) -> None:
        if self.start_job() is not None and pn.state.curdoc is not None:
            self._poller = pn.state.add_periodic_callback(self._poll, period=POLL_MS)

    def _cancel_job(self, _event: Any = None) -> None:
        if self.job is not None and not self.job.finished:
            self.job.cancel()

    async def _poll(self) -> None:
        """On the event loop (an async callback): bring the page up to date with the job."""
        self.show_progress()
        if (self.job is None or self.job.finished) and self._poller is not None:
            self._poller.stop()
            self._poller = None

    def show_progress(self) -> None:
        job = self.job
        if job is None:
            return
        if job.state == "queued":
            self.job_status.object = "Waiting for another export on this server to finish…"
        elif job.state == "running":
            share = 100 * job.written // max(job.rows_expected, 1)
            self.progress.value = min(share, 100)
            self.job_status.object = f"Writing {job.written:,} of {job.rows_expected:,} rows…"
        if not job.finished:
            return
        self.cancel_button.visible = False
        self.progress.visible = False
        self.start_button.disabled = export_problem(self.fmt, self.rows) is not None
        if job.state == "done":
            url = downloads.download_url(job.token)
            self.last_export = {"path": job.path, "rows": job.written, "seconds": job.seconds, "bytes": job.bytes}
            self.job_status.object = (
                f"Exported {job.written:,} rows ({job.bytes / 1e6:,.1f} MB) in {job.seconds:.1f} s. "
                f'The download starts by itself; if not, <a class="export-link" href="{url}" download>'
                f"download {html_escape(job.filename)}</a>."
            )
            self.trigger.url = url
        elif job.state == "cancelled":
            self.job_status.object = "Export cancelled; nothing was kept."
        else:
            self.job_status.object = ""
            self.problem.param.update(object=f"The export failed: {job.error}", visible=True)

    def _drop_job(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.cancel()
            job.discard()

    def _session_ended(self, _context: Any) -> None:
        """The analyst left: stop a running export and delete its file."""
        if self._poller is not None:
            self._poller.stop()
        self._drop_job()

    def __panel__(self) -> pn.viewable.Viewable:
        button: list[Any] = [self.start_button, self.cancel_button, self.trigger] if self.streaming else [self.download]
        controls = pn.Row(
            pn.widgets.RadioButtonGroup.from_param(self.param.fmt, color="primary", variant="outline"),
            *button,
        )
        self.filters.show_loading_on(self.preview)
        self.column_picker.jslink(self.preview, value="loading")
        main = pn.Column(
            self.column_picker,
            columns_help(),
            controls,
            self.progress,
            self.job_status,
            self.problem,
            self.count_text,
            self.preview,
            sizing_mode="stretch_width",
        )
        main.styles = {"flex": "1 1 330px", "min-width": "0"}
        # Side by side on a wide screen; on a phone the filters come first.
        return pn.FlexBox(
            pn.Column(self.filters, width=300, css_classes=["export-filters"], styles={"flex": "0 1 300px"}),
            main,
            flex_wrap="wrap",
            sizing_mode="stretch_width",
        )

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self._drop_job()
            for old in self._tmpdir.iterdir():
                old.unlink(missing_ok=True)
            os.rmdir(self._tmpdir)
        except (OSError, AttributeError):  # AttributeError: __init__ did not finish
            pass
