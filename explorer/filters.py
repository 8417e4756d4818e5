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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import panel as pn
import param

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

__all__ = ["CATEGORY_FILTERS", "RANGE_FILTERS", "UNKNOWN_LABEL", "FilterPanel", "category_options"]

# The attributes the panel offers, in the order shown: every one the contract declares.
RANGE_FILTERS: Final = in_filter_order(RANGE_COLUMNS)
CATEGORY_FILTERS: Final = in_filter_order(CATEGORY_COLUMNS)
RANGE_STEPS: Final = {column: ATTRIBUTES[column].step for column in RANGE_FILTERS}


def category_options(column: str) -> list[str]:
    """The choices of a multi-select: the labels, plus "Unknown" where values can be missing."""
    options = list(CATEGORIES[column])
    if column in NULLABLE_COLUMNS:
        options.append(UNKNOWN_LABEL)
    return options


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

    def __init__(self, **params: Any) -> None:
        initial = params.pop("people_filter", None)
        super().__init__(**params)
        self._widgets: pn.Column | None = None
        self.widgets: list[pn.widgets.Widget] = []
        if initial is not None:
            self.set_filter(initial)
        self._sync()

    # -- the filter --

    @param.depends(*RANGE_FILTERS, *CATEGORY_FILTERS, watch=True)
    def _sync(self) -> None:
        built = self.build_filter()
        if self.people_filter is None or built != self.people_filter:
            with param.edit_constant(self):
                self.people_filter = built

    def build_filter(self) -> PeopleFilter:
        ranges: dict[str, tuple[int | None, int | None]] = {}
        for column in RANGE_FILTERS:
            low, high = (int(v) for v in getattr(self, column))
            full_low, full_high = RANGES[column]
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
            full_low, full_high = RANGES[column]
            low, high = people_filter.ranges.get(column, (None, None))
            low = full_low if low is None else min(max(int(low), full_low), full_high)
            high = full_high if high is None else max(min(int(high), full_high), low)
            values[column] = (low, high)
        for column in CATEGORY_FILTERS:
            chosen = people_filter.categories.get(column) or ()
            values[column] = [UNKNOWN_LABEL if v is UNKNOWN else v for v in chosen]
        self.param.update(**values)

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

    def _build(self) -> pn.Column:
        widgets: list[Any] = []
        for column in RANGE_FILTERS:
            widgets.append(
                pn.widgets.IntRangeSlider.from_param(
                    getattr(self.param, column),
                    label=column_title(column),
                    step=RANGE_STEPS[column],
                    format="0,0",
                    sizing_mode="stretch_width",
                )
            )
        for column in CATEGORY_FILTERS:
            widgets.append(
                pn.widgets.MultiChoice.from_param(
                    getattr(self.param, column),
                    label=column_title(column),
                    placeholder="Everyone",
                    sizing_mode="stretch_width",
                    solid=False,
                )
            )
        reset = pn.widgets.Button(label="Reset filters", color="light", sizing_mode="stretch_width")
        reset.on_click(self.reset)
        summary = pn.pane.Markdown(
            self.param.people_filter.rx().describe().rx.pipe(lambda text: f"**Filter:** {text}"),
            sizing_mode="stretch_width",
            margin=(0, 10),
        )
        self.widgets = widgets
        return pn.Column(summary, *widgets, reset, sizing_mode="stretch_width", css_classes=["filter-panel"])

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
