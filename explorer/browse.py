"""Browse tab: any table or view, a column picker, and a Tabulator whose page and
sort run in SQL (`pagination="remote"`; only the shown page is ever fetched)."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import panel as pn
import param
from sqlalchemy.exc import SQLAlchemyError

from explorer.store import DataStore
from warehouse.query import column_title, table_columns

PAGE_SIZE = 25
UNKNOWN_TEXT = "Unknown"


def display_value(value: Any) -> str:
    """How a cell reads: thousands separators, 'Unknown' for missing."""
    if value is None or (isinstance(value, float) and value != value):
        return UNKNOWN_TEXT
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ", timespec="seconds") if hasattr(value, "hour") else value.isoformat()
    return str(value)


def display_frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    data = {column: [display_value(row.get(column)) for row in rows] for column in columns}
    return pd.DataFrame(data, columns=columns, dtype=object)


class SQLTabulator(pn.widgets.Tabulator):
    """A Tabulator whose `value` is the current page only; `total_rows` says how many
    rows exist, so the pager counts pages of the whole table. Page and sort events
    are answered by the owner (which fetches the page from SQL and sets `value`)."""

    total_rows = param.Integer(default=0, bounds=(0, None))

    _rename = {**pn.widgets.Tabulator._rename, "total_rows": None}

    @property
    def _length(self) -> int:
        return self.total_rows

    def _get_data(self):  # type: ignore[no-untyped-def]
        if self.value is None:
            return super()._get_data()
        return self._process_df_and_convert_to_cds(self.value)

    def _sort_df(self, df: pd.DataFrame) -> pd.DataFrame:
        return df  # the database sorted it

    @param.depends("total_rows", watch=True)
    def _total_changed(self) -> None:
        self._update_max_page()


class BrowseView(pn.viewable.Viewer):
    table = param.Selector(default="people", objects=["people"], doc="The table or view shown.")

    def __init__(self, store: DataStore, **params: Any) -> None:
        super().__init__(**params)
        self.store = store
        tables = store.tables()
        self._titles = dict(tables)
        self.param.table.objects = [name for name, _ in tables]
        if self.table not in self._titles:
            self.table = tables[0][0]
        self.tabulator = SQLTabulator(
            pd.DataFrame(),
            pagination="remote",
            page_size=PAGE_SIZE,
            sizing_mode="stretch_width",
            show_index=False,
            disabled=True,
            selectable=False,
            header_align="left",
            layout="fit_data_table",
            height=760,
        )
        self.tabulator.param.watch(self._page_or_sort, ["page", "sorters"])
        self.row_count = pn.pane.Markdown("", css_classes=["row-count"], margin=(5, 10))
        self.column_picker = pn.widgets.MultiChoice(
            label="Columns (empty = all)", options={}, value=[], sizing_mode="stretch_width"
        )
        self.column_picker.param.watch(self._columns_changed, "value")
        self.last_query_s = 0.0
        self._resetting = False
        self._reset_columns()
        self._refresh(page=1)

    # -- reactions --

    @param.depends("table", watch=True)
    def _table_changed(self) -> None:
        self._resetting = True
        try:
            self.tabulator.sorters = []
            self._reset_columns()
        finally:
            self._resetting = False
        self._refresh(page=1)

    def _reset_columns(self) -> None:
        names = table_columns(self.table)
        self._all_columns = names
        resetting, self._resetting = self._resetting, True
        try:
            self.column_picker.param.update(options={column_title(n): n for n in names}, value=list(names))
        finally:
            self._resetting = resetting

    @property
    def columns(self) -> list[str]:
        chosen = [c for c in self.column_picker.value if c in self._all_columns]
        return chosen or list(self._all_columns)

    def _columns_changed(self, _event: param.parameterized.Event) -> None:
        if not self._resetting:
            self._refresh(page=1)

    def _page_or_sort(self, *events: param.parameterized.Event) -> None:
        if self._resetting:
            return
        sorted_anew = any(event.name == "sorters" for event in events)
        self._refresh(page=1 if sorted_anew else self.tabulator.page)

    def sort_spec(self) -> str | None:
        sorters = self.tabulator.sorters or []
        if not sorters:
            return None
        first = sorters[0]
        field = first.get("field")
        if field not in self.columns:
            return None
        return f"-{field}" if first.get("dir") == "desc" else field

    def _refresh(self, page: int) -> None:
        columns = self.columns
        started = time.perf_counter()
        try:
            with self.tabulator.param.update(loading=True):
                total = self.store.count_table(self.table)
                rows = self.store.browse(
                    self.table, columns, self.sort_spec(), limit=PAGE_SIZE, offset=(max(page, 1) - 1) * PAGE_SIZE
                )
                frame = display_frame(rows, columns)
                numeric = [c for c in columns if rows and isinstance(rows[0].get(c), int | float)]
                self.tabulator.param.update(
                    total_rows=total,
                    titles={c: column_title(c) for c in columns},
                    text_align={c: ("right" if c in numeric else "left") for c in columns},
                    value=frame,
                )
                if self.tabulator.page != page:
                    with param.discard_events(self.tabulator):
                        self.tabulator.page = page
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            self.row_count.object = f"**The database could not answer:** {reason}. Reload the page to try again."
            return
        self.last_query_s = time.perf_counter() - started
        title = self._titles.get(self.table, self.table)
        rows_word = "row" if total == 1 else "rows"
        pages = max(1, -(-total // PAGE_SIZE))
        self.row_count.object = f"**{title}: {total:,} {rows_word}** · page {page:,} of {pages:,}"

    # -- layout --

    def __panel__(self) -> pn.viewable.Viewable:
        table_select = pn.widgets.Select.from_param(
            self.param.table, label="Table", options={title: name for name, title in self._titles.items()}, width=260
        )
        table_select.jslink(self.tabulator, value="loading")
        self.column_picker.jslink(self.tabulator, value="loading")
        return pn.Column(
            pn.Row(table_select, self.column_picker, sizing_mode="stretch_width"),
            self.row_count,
            self.tabulator,
            sizing_mode="stretch_width",
        )


__all__ = ["BrowseView", "SQLTabulator", "display_frame", "display_value"]
