"""Browse tab: any table or view, a column picker, and a Tabulator whose page and
sort run in SQL (`pagination="remote"`; only the shown page is ever fetched).
The `people` view shows the session's filter (the same as Visualize's and
Export's) and only the people it selects; headers explain each column."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import panel as pn
import param
from sqlalchemy.exc import SQLAlchemyError

from explorer.dictionary import column_tooltips, columns_help
from explorer.filters import FilterPanel
from explorer.store import DataStore
from warehouse.models import DIMENSIONS
from warehouse.query import PeopleFilter, column_title, table_columns

PAGE_SIZE = 25
UNKNOWN_TEXT = "Unknown"
# The table keeps the pager in view: it grows with its rows up to the window's
# height less the page header, tabs, controls and the folded filter card above it,
# then scrolls inside.
TABLE_MAX_HEIGHT = "max(320px, calc(100vh - 390px))"
# What one row of a table is, for its id column's heading ("Upload id", not "Person id").
ROW_NAMES = {"people": "Person", "person": "Person", "load": "Upload", "rejected_row": "Rejected row"}
# Dimension table -> the attribute it lists ("income_bracket" -> "income").
DIMENSION_ATTRIBUTES = {model.__tablename__: attribute for attribute, (model, _) in DIMENSIONS.items()}
EMPTY_MESSAGES = {
    "rejected_row": "No rejected rows: every row read so far was loaded.",
    "load": "No uploads yet: run python -m loaders.upload.",
}


def column_heading(table: str, column: str) -> str:
    """A column's heading in one table: ids say whose id they are, a dimension's
    label column is named after its attribute, a dimension's counts are 'People'."""
    attribute = DIMENSION_ATTRIBUTES.get(table)
    if column == "id":
        owner = column_title(attribute) if attribute else ROW_NAMES.get(table, column_title(table))
        return f"{owner} id"
    if column == "load_id":
        return "Upload id"
    if attribute and column == "label":
        return column_title(attribute)
    if attribute and column == "people":
        return "People"
    return column_title(column)


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
    url_state = param.Dict(default={}, doc="Table, columns, sort and page as page-URL parameters.")

    def __init__(self, store: DataStore, filters: FilterPanel | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.store = store
        self.filters = filters or FilterPanel()
        self.filters.param.watch(self._filter_changed, ["people_filter"])
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
            # Columns as wide as their longest value (labels are not cut); the last
            # one takes what is left, so a narrow table still uses the width.
            layout="fit_data_stretch",
            configuration={"maxHeight": TABLE_MAX_HEIGHT},
            css_classes=["browse-table"],
        )
        self.tabulator.param.watch(self._page_or_sort, ["page", "sorters"])
        self.row_count = pn.pane.Markdown("", css_classes=["row-count"], margin=(5, 10))
        self.empty_message = pn.pane.Alert(
            "", alert_type="info", visible=False, css_classes=["empty-table"], sizing_mode="stretch_width"
        )
        self.column_picker = pn.widgets.MultiChoice(
            label="Columns (empty = all)",
            options={},
            value=[],
            sizing_mode="stretch_width",
            # At most three lines of chosen columns (then it scrolls): the table below
            # starts at a known height, so TABLE_MAX_HEIGHT keeps the pager in view.
            stylesheets=[".choices__inner { max-height: 5.4em; overflow-y: auto; }"],
        )
        self.column_picker.param.watch(self._columns_changed, "value")
        self.last_query_s = 0.0
        self._resetting = False
        self._filter_card: pn.Card | None = None
        self._reset_columns()
        self._refresh(page=1)

    # -- page-URL form --

    def to_params(self) -> dict[str, list[str]]:
        """table=, and columns= / sort= / page= when they differ from the defaults."""
        params: dict[str, list[str]] = {"table": [self.table]}
        if self.columns != self._all_columns:
            params["columns"] = [",".join(self.columns)]
        sort = self.sort_spec()
        if sort:
            params["sort"] = [sort]
        if self.tabulator.page > 1:
            params["page"] = [str(self.tabulator.page)]
        return params

    def set_params(self, query: dict[str, list[str]]) -> None:
        """Show what a page URL names; names that do not exist are ignored."""
        if not any(query.get(key) for key in ("table", "columns", "sort", "page")):
            return  # the default view, already shown
        table = (query.get("table") or [""])[-1]
        columns = [c for c in ",".join(query.get("columns") or []).split(",") if c]
        sort = (query.get("sort") or [""])[-1]
        try:
            page = max(1, int((query.get("page") or ["1"])[-1]))
        except ValueError:
            page = 1
        self._resetting = True
        try:
            if table in self.param.table.objects and table != self.table:
                self.table = table
                self._reset_columns()
            chosen = [c for c in columns if c in self._all_columns] or list(self._all_columns)
            self.column_picker.value = chosen
            field = sort.removeprefix("-")
            self.tabulator.sorters = (
                [{"field": field, "dir": "desc" if sort.startswith("-") else "asc"}] if field in chosen else []
            )
        finally:
            self._resetting = False
        pages = max(1, -(-self._count() // PAGE_SIZE))
        self._refresh(page=min(page, pages))

    # -- reactions --

    @param.depends("table", watch=True)
    def _table_changed(self) -> None:
        if self._resetting:
            return
        self._resetting = True
        try:
            self.tabulator.sorters = []
            self._reset_columns()
        finally:
            self._resetting = False
        self._refresh(page=1)

    def _filter_changed(self, _event: param.parameterized.Event) -> None:
        if self.table == "people":
            self._refresh(page=1)

    @property
    def people_filter(self) -> PeopleFilter | None:
        """The filter applied: the session's, for the people view only."""
        return self.filters.people_filter if self.table == "people" else None

    def _count(self) -> int:
        people_filter = self.people_filter
        if people_filter is None or people_filter.is_empty:
            return self.store.count_table(self.table)
        return self.store.count(people_filter)

    def _reset_columns(self) -> None:
        names = table_columns(self.table)
        self._all_columns = names
        resetting, self._resetting = self._resetting, True
        try:
            self.column_picker.param.update(
                options={column_heading(self.table, n): n for n in names}, value=list(names)
            )
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
                total = self._count()
                rows = self.store.browse(
                    self.table,
                    columns,
                    self.sort_spec(),
                    limit=PAGE_SIZE,
                    offset=(max(page, 1) - 1) * PAGE_SIZE,
                    people_filter=self.people_filter,
                )
                frame = display_frame(rows, columns)
                numeric = [c for c in columns if rows and isinstance(rows[0].get(c), int | float)]
                self.tabulator.param.update(
                    total_rows=total,
                    titles={c: column_heading(self.table, c) for c in columns},
                    header_tooltips=column_tooltips(self.table, columns),
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
        people_filter = self.people_filter
        who = f" ({people_filter.describe()})" if people_filter is not None and not people_filter.is_empty else ""
        self.row_count.object = f"**{title}: {total:,} {rows_word}**{who} · page {page:,} of {pages:,}"
        # An empty table is a sentence, not a blank grid.
        self.empty_message.param.update(
            object=EMPTY_MESSAGES.get(self.table, f"{title} has no rows."), visible=total == 0
        )
        self.tabulator.visible = total > 0
        if self._filter_card is not None:
            self._filter_card.visible = self.table == "people"
        self.url_state = self.to_params()

    # -- layout --

    def __panel__(self) -> pn.viewable.Viewable:
        table_select = pn.widgets.Select.from_param(
            self.param.table, label="Table", options={title: name for name, title in self._titles.items()}, width=260
        )
        table_select.jslink(self.tabulator, value="loading")
        self.column_picker.jslink(self.tabulator, value="loading")
        # "Age and income only" is None, then two picks (not 14 removals).
        every = pn.widgets.Button(
            label="All", color="light", width=60, margin=(28, 5, 5, 5), css_classes=["columns-all"]
        )
        none = pn.widgets.Button(
            label="None", color="light", width=60, margin=(28, 5, 5, 5), css_classes=["columns-none"]
        )
        every.on_click(lambda _event: setattr(self.column_picker, "value", list(self._all_columns)))
        none.on_click(lambda _event: setattr(self.column_picker, "value", []))
        # The session's filter, folded away: the table keeps the width and the pager its place.
        # Its widgets are built when it is first opened: the page loads as fast as before.
        self._filter_card = card = pn.Card(
            title="Filter people",
            collapsed=True,
            visible=self.table == "people",
            sizing_mode="stretch_width",
            css_classes=["browse-filters"],
        )

        def opened(_event: Any = None) -> None:
            if not card.collapsed and not card.objects:
                self.filters.show_loading_on(self.tabulator)
                card[:] = [self.filters]

        card.param.watch(opened, "collapsed")
        if not self.filters.people_filter.is_empty:
            card.collapsed = False  # a link's filter shows
        opened()
        return pn.Column(
            pn.Row(
                table_select,
                self.column_picker,
                every,
                none,
                sizing_mode="stretch_width",
            ),
            self._filter_card,
            columns_help(),
            self.row_count,
            self.empty_message,
            self.tabulator,
            sizing_mode="stretch_width",
        )


__all__ = ["BrowseView", "SQLTabulator", "column_heading", "display_frame", "display_value"]
