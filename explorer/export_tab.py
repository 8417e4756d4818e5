"""Export tab: its own filters, a column picker, a format, the exact row count, a
preview, and a download produced in batches (never one giant DataFrame).

Files are written batch by batch to a temporary file through `iter_people`
(CSV and JSON lines incrementally, Parquet one row group per batch with pyarrow's
ParquetWriter, Excel with openpyxl's write-only workbook), so memory stays bounded
by the batch size whatever the number of rows.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Final

import pandas as pd
import panel as pn
import param
from sqlalchemy.exc import SQLAlchemyError

from explorer.browse import display_frame
from explorer.filters import FilterPanel
from explorer.store import DataStore
from warehouse.domain import NUMERIC_COLUMNS
from warehouse.query import PEOPLE_COLUMNS, PeopleFilter, column_title

log = logging.getLogger(__name__)

FORMATS: Final[dict[str, str]] = {"CSV": "csv", "Excel": "xlsx", "JSON": "json", "Parquet": "parquet"}
EXCEL_MAX_DATA_ROWS: Final = 1_048_575  # 1,048,576 rows per sheet, less the header
BATCH_SIZE: Final = 10_000
PREVIEW_ROWS: Final = 10
INTEGER_COLUMNS: Final = frozenset({"id", *NUMERIC_COLUMNS})


class ExportTooLarge(ValueError):
    pass


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


class ExportView(pn.viewable.Viewer):
    fmt = param.Selector(default="CSV", objects=list(FORMATS), label="Format")
    rows = param.Integer(default=0, doc="Exact number of rows the export will hold.")

    def __init__(self, store: DataStore, filters: FilterPanel | None = None, **params: Any) -> None:
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
        self.filters.param.watch(lambda _e: self._update(), "people_filter")
        self.column_picker.param.watch(lambda _e: self._update(), "value")
        self.param.watch(lambda _e: self._update(), "fmt")
        self._update()

    @property
    def columns(self) -> list[str]:
        chosen = [c for c in PEOPLE_COLUMNS if c in (self.column_picker.value or [])]
        return chosen or list(PEOPLE_COLUMNS)

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

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Row(
            pn.widgets.RadioButtonGroup.from_param(self.param.fmt, color="primary", variant="outline"),
            self.download,
        )
        self.filters.show_loading_on(self.preview)
        self.column_picker.jslink(self.preview, value="loading")
        main = pn.Column(
            self.column_picker, controls, self.problem, self.count_text, self.preview, sizing_mode="stretch_width"
        )
        return pn.Row(
            pn.Column(self.filters, width=300, css_classes=["export-filters"]), main, sizing_mode="stretch_width"
        )

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            for old in self._tmpdir.iterdir():
                old.unlink(missing_ok=True)
            os.rmdir(self._tmpdir)
        except OSError:
            pass
