"""The reusable filter component: one widget per attribute, producing a PeopleFilter.

    import panel as pn
    from explorer.filters import FilterPanel
    pn.extension()
    filters = FilterPanel()
    filters            # renders in a notebook or a served app
    filters.people_filter   # -> warehouse.query.PeopleFilter

A range left at its full extent and an empty multi-select do not filter.
The widgets come from the census contract (`warehouse.contract`): one range
slider per range attribute, one multi-select per categorical attribute, in the
contract's order, so a new attribute appears here without an edit.

Given a `DataStore`, the panel also:
- spans each slider over the data's smallest and largest value (not the domain's
  CHECK range), with number boxes beside it for exact bounds (two-way: typing
  moves the slider, sliding changes the boxes);
- shows facet counts: beside each value of a category, how many people it has
  under the OTHER filters (Datasette's facets), brought up to date after each
  change (after the views that watch the filter, so the chart is drawn first;
  in a served page counted in a facet thread, off the event loop).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, Final

import panel as pn
import param
from panel.io.document import hold
from panel.io.state import set_curdoc
from sqlalchemy.exc import SQLAlchemyError

from explorer.background import answer_on_loop
from warehouse.contract import (
    ATTRIBUTES,
    CATEGORY_COLUMNS,
    RANGE_COLUMNS,
    UNKNOWN,
    UNKNOWN_LABEL,
    column_title,
    in_filter_order,
)
from warehouse.domain import CATEGORIES, NULLABLE_COLUMNS, RANGES
from warehouse.filters import PeopleFilter

__all__ = ["CATEGORY_FILTERS", "RANGE_FILTERS", "UNKNOWN_LABEL", "FacetChoice", "FilterPanel", "category_options"]

# The attributes the panel offers, in the order shown: every one the contract declares.
RANGE_FILTERS: Final = in_filter_order(RANGE_COLUMNS)
CATEGORY_FILTERS: Final = in_filter_order(CATEGORY_COLUMNS)
RANGE_STEPS: Final = {column: ATTRIBUTES[column].step for column in RANGE_FILTERS}
# Facet counts of served sessions run here, off the event loop (they only read; the
# results are shown on the loop). Two threads: the machine's cores, shared by all sessions.
_facet_pool: Final = ThreadPoolExecutor(max_workers=2, thread_name_prefix="facets")


def category_options(column: str) -> list[str]:
    """The choices of a multi-select: the labels, plus "Unknown" where values can be missing."""
    options = list(CATEGORIES[column])
    if column in NULLABLE_COLUMNS:
        options.append(UNKNOWN_LABEL)
    return options


def facet_label(value: str, people: int | None) -> str:
    """'Female (10,771)': a value and its people under the other filters."""
    return value if people is None else f"{value} ({people:,})"


class FacetChoice(pn.widgets.MultiChoice):
    """A MultiChoice whose options read 'value (people)': the browser gets (value,
    label) pairs, so the value sent back and kept in the URL stays the plain value."""

    counts = param.Dict(default={}, doc="value -> people under the other filters (facet counts).")

    _rename = {**pn.widgets.MultiChoice._rename, "counts": None}

    def _process_param_change(self, params: dict[str, Any]) -> dict[str, Any]:
        counts_changed = "counts" in params
        props = super()._process_param_change(params)
        if "options" in props or counts_changed:
            props["options"] = [(label, facet_label(label, self.counts.get(label))) for label in self.labels]
        return props


def _range_param(column: str) -> param.Range:
    low, high = RANGES[column]
    return param.Range(default=(low, high), bounds=(low, high), label=column_title(column))


def _category_param(column: str) -> param.ListSelector:
    return param.ListSelector(default=[], objects=category_options(column), label=column_title(column))


class FilterPanel(pn.viewable.Viewer):
    """Ranges for numbers, multi-selects for categories; `people_filter` is the result."""

    # One parameter per attribute of the contract (a class body's namespace is a plain dict).
    locals().update({column: _range_param(column) for column in RANGE_FILTERS})
    locals().update({column: _category_param(column) for column in CATEGORY_FILTERS})

    people_filter = param.ClassSelector(
        class_=PeopleFilter, constant=True, doc="The warehouse filter these widgets describe (read-only)."
    )

    def __init__(self, store: Any = None, actions: Sequence[pn.viewable.Viewable] = (), **params: Any) -> None:
        """`store` (an explorer.store.DataStore) gives data bounds and facet counts;
        `actions` are shown under Reset (e.g. Visualize's "Export this subset")."""
        initial = params.pop("people_filter", None)
        super().__init__(**params)
        self.store = store
        self.actions = list(actions)
        # Above the widgets: what another component adds to the filter (cross-filter chips).
        self.chips = pn.FlexBox(sizing_mode="stretch_width", css_classes=["filter-chips"], visible=False)
        self._widgets: pn.Column | None = None
        self.widgets: list[pn.widgets.Widget] = []
        self.choices: dict[str, FacetChoice] = {}
        self.number_boxes: dict[str, tuple[pn.widgets.IntInput, pn.widgets.IntInput]] = {}
        self._boxing = False
        self._facets_pending = False
        self._facets_again = False
        self.facet_seconds = 0.0
        if store is not None:
            self._use_data_bounds(store.range_bounds())
        if initial is not None:
            self.set_filter(initial)
        self._sync()
        # After the views' own watchers (precedence orders watchers): the chart first.
        self.param.watch(self._facets_changed, ["people_filter"], precedence=10)

    def bounds_of(self, column: str) -> tuple[int, int]:
        """The slider's extent: the data's bounds (or the domain's without a store)."""
        low, high = self.param[column].bounds
        return int(low), int(high)

    def _use_data_bounds(self, bounds: Mapping[str, tuple[int, int] | None]) -> None:
        values: dict[str, Any] = {}
        for column in RANGE_FILTERS:
            found = bounds.get(column)
            if found is None or found[0] >= found[1]:
                continue  # no values, or one: the domain's range keeps a slider usable
            self.param[column].bounds = found
            values[column] = found
        self.param.update(**values)

    # -- the filter --

    @param.depends(*RANGE_FILTERS, *CATEGORY_FILTERS, watch=True)
    def _sync(self) -> None:
        built = self.build_filter()
        if self.people_filter is None or built != self.people_filter:
            # What the change redraws (the summary, the chart, the URL) goes to the browser
            # as one message (Panel sends a widget callback's changes one by one), so the
            # page is laid out once, not once per pane. `freeze`: Bokeh walks the whole
            # document's model graph once at the end, not after every plot update and
            # pane change inside (HoloViews freezes and re-walks it per plot update: 15%
            # of the server's time with 8 analysts changing filters).
            with hold(freeze=True), param.edit_constant(self):
                self.people_filter = built

    def build_filter(self) -> PeopleFilter:
        ranges: dict[str, tuple[int | None, int | None]] = {}
        for column in RANGE_FILTERS:
            low, high = (int(v) for v in getattr(self, column))
            full_low, full_high = self.bounds_of(column)
            if low > full_low or high < full_high:
                ranges[column] = (low if low > full_low else None, high if high < full_high else None)
        categories: dict[str, tuple[str | None, ...]] = {}
        for column in CATEGORY_FILTERS:
            chosen = getattr(self, column)
            if chosen:
                categories[column] = tuple(UNKNOWN if v == UNKNOWN_LABEL else v for v in chosen)
        return PeopleFilter(ranges=ranges, categories=categories)

    def set_filter(self, people_filter: PeopleFilter) -> None:
        """Show a given filter in the widgets (columns it does not name are reset)."""
        values: dict[str, Any] = {}
        for column in RANGE_FILTERS:
            low, high = people_filter.ranges.get(column, (None, None))
            self._widen_to(column, low, high)  # a link's bound outside the data keeps its meaning
            full_low, full_high = self.bounds_of(column)
            low = full_low if low is None else min(max(int(low), full_low), full_high)
            high = full_high if high is None else max(min(int(high), full_high), low)
            values[column] = (low, high)
        for column in CATEGORY_FILTERS:
            chosen = people_filter.categories.get(column) or ()
            values[column] = [UNKNOWN_LABEL if v is UNKNOWN else v for v in chosen]
        self.param.update(**values)

    def _widen_to(self, column: str, *ends: int | None) -> None:
        """Let the slider reach a bound the data does not (within the domain's range)."""
        low, high = self.bounds_of(column)
        domain_low, domain_high = RANGES[column]
        for end in ends:
            if end is not None:
                low, high = min(low, max(int(end), domain_low)), max(high, min(int(end), domain_high))
        if (low, high) != self.bounds_of(column):
            self.param[column].bounds = (low, high)
            for widget in self.widgets:
                if isinstance(widget, pn.widgets.IntRangeSlider) and widget.label == column_title(column):
                    widget.param.update(start=low, end=high)
            for box in self.number_boxes.get(column, ()):
                box.param.update(start=low, end=high)

    def reset(self, _event: Any = None) -> None:
        self.set_filter(PeopleFilter())

    # -- query-string form (page URL) --

    def to_params(self) -> dict[str, list[str]]:
        return self.people_filter.to_params()

    def set_params(self, params: Mapping[str, Sequence[str]]) -> None:
        self.set_filter(PeopleFilter.from_params(params))

    def describe(self) -> str:
        return self.people_filter.describe()

    # -- layout --

    def _range_widgets(self, column: str) -> list[Any]:
        """A slider, and number boxes beside it for exact bounds (kept in step both ways)."""
        title = column_title(column)
        low, high = self.bounds_of(column)
        slider = pn.widgets.IntRangeSlider.from_param(
            getattr(self.param, column),
            label=title,
            step=RANGE_STEPS[column],
            format="0,0",
            sizing_mode="stretch_width",
        )
        boxes = tuple(
            pn.widgets.IntInput(
                label=f"{title}: {end}",
                value=getattr(self, column)[index],
                start=low,
                end=high,
                step=RANGE_STEPS[column],
                width=125,
                margin=(0, 10, 8, 10),
                css_classes=["range-box", f"range-{column}-{'min' if index == 0 else 'max'}"],
                stylesheets=[":host .bk-input-group label { font-size: 0.8em; }"],
            )
            for index, end in enumerate(("from", "to"))
        )
        self.number_boxes[column] = boxes  # type: ignore[assignment]

        def typed(_event: Any, column: str = column) -> None:
            if self._boxing:
                return
            low_box, high_box = self.number_boxes[column]
            full_low, full_high = self.bounds_of(column)
            low = full_low if low_box.value is None else min(max(int(low_box.value), full_low), full_high)
            high = full_high if high_box.value is None else min(max(int(high_box.value), full_low), full_high)
            if low > high:  # the end just typed wins
                low, high = (high, high) if _event.obj is high_box else (low, low)
            setattr(self, column, (low, high))
            self._show_in_boxes(column)  # a clamped or emptied box shows the bound kept

        for box in boxes:
            box.param.watch(typed, "value")
        self.param.watch(lambda _event, column=column: self._show_in_boxes(column), [column])
        return [slider, pn.Row(*boxes, sizing_mode="stretch_width", margin=0)]

    def _show_in_boxes(self, column: str) -> None:
        boxes = self.number_boxes.get(column)
        if not boxes:
            return
        low, high = (int(v) for v in getattr(self, column))
        self._boxing = True
        try:
            boxes[0].value, boxes[1].value = low, high
        finally:
            self._boxing = False

    def _build(self) -> pn.Column:
        widgets: list[Any] = []
        rows: list[Any] = []
        for column in RANGE_FILTERS:
            slider, boxes = self._range_widgets(column)
            widgets.append(slider)
            widgets.extend(boxes.objects)
            rows.extend([slider, boxes])
        for column in CATEGORY_FILTERS:
            choice = FacetChoice.from_param(
                getattr(self.param, column),
                label=column_title(column),
                placeholder="Everyone",
                sizing_mode="stretch_width",
                solid=False,
            )
            self.choices[column] = choice
            widgets.append(choice)
            rows.append(choice)
        reset = pn.widgets.Button(label="Reset filters", color="light", sizing_mode="stretch_width")
        reset.on_click(self.reset)
        summary = pn.pane.Markdown(
            self.param.people_filter.rx().describe().rx.pipe(lambda text: f"**Filter:** {text}"),
            sizing_mode="stretch_width",
            margin=(0, 10),
            css_classes=["filter-summary"],
        )
        self.widgets = widgets
        self.update_facets()
        return pn.Column(
            summary,
            self.chips,
            *rows,
            reset,
            *self.actions,
            sizing_mode="stretch_width",
            css_classes=["filter-panel"],
        )

    # -- facet counts --

    def _facets_changed(self, _event: Any) -> None:
        """Facets after the chart, and off the event loop: in a served page the counts
        (several GROUP BYs, ten times the chart's cost on 400,000 people) run in a
        facet thread and are shown on the loop when done, so neither this session's
        chart nor other sessions wait for them (with worker threads, in this callback:
        the thread is already off the loop)."""
        if not self.choices or self.store is None:
            return
        document = pn.state.curdoc
        threaded = getattr(pn.state, "_thread_pool", None) is not None
        if document is None or document.session_context is None or threaded:
            self.update_facets()
            return
        if self._facets_pending:  # the running count is followed by one for the newest filter
            self._facets_again = True
            return
        self._facets_pending, self._facets_again = True, False
        # Counted from the loop's next turn: the chart's update is on its way to the
        # browser by then, and the counts do not compete with drawing it.
        document.add_next_tick_callback(partial(self._count_in_thread, document))

    def _count_in_thread(self, document: Any) -> None:
        people_filter = self.people_filter

        def show(future: Future[dict[str, list[dict[str, Any]]] | None]) -> None:
            self._facets_pending = False
            facets = None if future.exception() is not None else future.result()
            if facets is not None and self.people_filter == people_filter:
                # All the filters' counts in one message: the browser lays the page out
                # once, not once per filter (each costs about 10 ms there).
                with set_curdoc(document), hold():
                    self._show_facets(facets)
            if self._facets_again or self.people_filter != people_filter:
                self._facets_changed(None)  # the filter moved on meanwhile

        answer_on_loop(_facet_pool, document, lambda: self._count_facets(people_filter), show, "facet counts")

    def _count_facets(self, people_filter: PeopleFilter) -> dict[str, list[dict[str, Any]]] | None:
        started = time.perf_counter()
        try:
            return self.store.facets(people_filter, list(self.choices))  # type: ignore[no-any-return]
        except SQLAlchemyError:
            return None  # the counts stay as they were; the views say the database failed
        finally:
            self.facet_seconds = time.perf_counter() - started

    def update_facets(self) -> None:
        """Each category's values with their people under the other filters."""
        if self.store is None or not self.choices:
            return
        facets = self._count_facets(self.people_filter)
        if facets is not None:
            self._show_facets(facets)

    def _show_facets(self, facets: Mapping[str, list[dict[str, Any]]]) -> None:
        for column, rows in facets.items():
            counts = {UNKNOWN_LABEL if row["value"] is UNKNOWN else row["value"]: int(row["people"]) for row in rows}
            for label in category_options(column):
                counts.setdefault(label, 0)
            choice = self.choices[column]
            if choice.counts != counts:
                choice.counts = counts

    def show_loading_on(self, *targets: pn.viewable.Viewable) -> None:
        """Grey out `targets` in the browser the moment a filter widget changes (the
        server clears it when the new result is shown)."""
        self.__panel__()
        for widget in self.widgets:
            for target in targets:
                widget.jslink(target, value="loading")

    def __panel__(self) -> pn.Column:
        if self._widgets is None:
            self._widgets = self._build()
        return self._widgets
