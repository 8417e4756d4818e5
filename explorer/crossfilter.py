"""Cross-filtering: a click (or a box selection) on the chart adds what it picked
to the session's filters, and a chip above the filters removes it again.

HoloViews streams carry the browser's events to the server: `Tap` gives the
clicked point in data coordinates (a category's factor on a categorical axis),
`SelectionXY` a box selection (the factors it covers, or the numbers it spans).
What a pick means depends on the chart:

- bars, stacked bars: the x value; grouped bars and heatmap cells: x and group;
- histogram: the bin's range; line over age: the age (a box: the ages);
- box plot: the box's group.

A category pick becomes that attribute's choice (Unknown for missing values), a
number pick a range (an age band becomes its ages). The view only calls
`chart_hooks` (explorer/visualize.py); everything else lives here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import holoviews as hv
import panel as pn

from explorer.filters import RANGE_FILTERS
from warehouse.contract import AGE_BAND, AGE_BANDS, CATEGORY_COLUMNS, UNKNOWN, UNKNOWN_LABEL, column_title
from warehouse.domain import CATEGORIES, RANGES
from warehouse.filters import PeopleFilter, QueryError

PICK_TOOLS = ["hover", "tap", "box_select"]

Pick = dict[str, Any]  # column -> list of category values, or (low, high) for a range


@dataclass
class Chip:
    """One chart selection in the filters: what it set, and what it replaced."""

    pick: Pick
    before: Pick
    button: pn.widgets.Button


def _category_value(text: Any) -> str | None:
    return UNKNOWN if text is None or str(text) == UNKNOWN_LABEL else str(text)


def pick_for(column: str, values: Sequence[Any]) -> Pick:
    """What choosing `values` of a chart attribute means as a filter."""
    values = [v for v in values if v is not None and str(v) != ""]
    if not values:
        return {}
    if column in CATEGORY_COLUMNS:
        chosen: list[str | None] = []
        for value in values:
            category = _category_value(value)
            if category not in chosen and (category is UNKNOWN or category in CATEGORIES[column]):
                chosen.append(category)
        return {column: chosen} if chosen else {}
    if column == AGE_BAND:
        spans = [(low, high) for label, low, high in AGE_BANDS if label in {str(v) for v in values}]
        if not spans:
            return {}
        top = RANGES["age"][1]
        return {"age": (min(s[0] for s in spans), min(max(s[1] for s in spans), top))}
    if column in RANGE_FILTERS:
        numbers = [int(float(v)) for v in values if str(v) != UNKNOWN_LABEL]
        return {column: (min(numbers), max(numbers))} if numbers else {}
    return {}


def range_pick(column: str, low: float, high: float) -> Pick:
    """A span of a numeric axis as whole-number bounds inside it."""
    low_int, high_int = math.ceil(low), math.floor(high)
    if low_int > high_int:  # narrower than one whole value: the nearest one
        low_int = high_int = round((low + high) / 2)
    return {column: (low_int, high_int)}


def nested_factor_at(factors: Sequence[Any], x: float, group_padding: float, factor_padding: float) -> Any:
    """The (x, group) factor of grouped bars at synthetic coordinate `x`. Bokeh lays
    two-level factors out one unit each, `factor_padding` apart inside a group and
    `group_padding` apart between groups; HoloViews' Tap reports that number as it is."""
    position, previous, best = 0.0, None, None
    for factor in factors:
        if previous is not None:
            position += group_padding if factor[0] != previous[0] else factor_padding
        center = position + 0.5
        if best is None or abs(center - x) < abs(best[0] - x):
            best = (center, factor)
        position += 1.0
        previous = factor
    return None if best is None else best[1]


def _picks_glyphs(element: Any) -> bool:
    """An overlay layer that can carry the pick tools (error bars cannot: no glyph renderer)."""
    return isinstance(element, hv.Element) and not isinstance(element, hv.ErrorBars)


def describe_pick(pick: Pick) -> str:
    parts = []
    for column, value in pick.items():
        if isinstance(value, tuple):
            low, high = value
            span = f"{low:,}" if low == high else f"{low:,}–{high:,}"
            parts.append(f"{column_title(column)} {span}")
        else:
            parts.append(f"{column_title(column)}: {', '.join(UNKNOWN_LABEL if v is UNKNOWN else v for v in value)}")
    return " · ".join(parts)


def apply_pick(people_filter: PeopleFilter, pick: Pick) -> PeopleFilter:
    """The filter with the pick's columns set to the pick."""
    ranges = dict(people_filter.ranges)
    categories = dict(people_filter.categories)
    for column, value in pick.items():
        if isinstance(value, tuple):
            ranges[column] = value
        else:
            categories[column] = tuple(value)
    return PeopleFilter(ranges=ranges, categories=categories)


def current_of(people_filter: PeopleFilter, pick: Pick) -> Pick:
    """The filter's present values of the pick's columns (what removing it restores)."""
    before: Pick = {}
    for column, value in pick.items():
        if isinstance(value, tuple):
            before[column] = people_filter.ranges.get(column, (None, None))
        else:
            before[column] = list(people_filter.categories.get(column) or ())
    return before


class CrossFilter:
    """Connects a VisualizeView's charts to its filters."""

    def __init__(self, view: Any) -> None:
        self.view = view
        self.filters = view.filters
        self.chips: list[Chip] = []
        self.x_range: Any = None
        view.chart_hooks.append(self.attach)
        view.chart_listeners.append(self.listen)
        self.filters.param.watch(self._filter_changed, ["people_filter"])

    # -- the chart --

    def attach(self, chart: Any, _result: Any) -> Any:
        """Add the tap and box-select tools (to each chart drawn)."""
        # A drag selects (box select is the active drag tool; panning a bar chart is of little use).
        # A plot hook keeps the figure's x range: grouped bars' clicks come as numbers.
        hooks = list(hv.Store.lookup_options("bokeh", chart, "plot").kwargs.get("hooks") or [])
        tools = {"tools": PICK_TOOLS, "active_tools": ["box_select"]}
        if isinstance(chart, hv.Overlay):
            # The tools go on the layers that draw glyphs: error bars are a Bokeh Whisker
            # annotation, with no renderer for a hover tool (Bokeh refuses [None]). The
            # hooks stay the overlay's own, so the fading and whiskers run once.
            chart = chart.map(lambda element: element.opts(**tools, clone=True), _picks_glyphs)
            chart = chart.opts(hooks=[*hooks, self._keep_x_range], clone=True)
        else:
            chart = chart.opts(**tools, hooks=[*hooks, self._keep_x_range], clone=True)
        return chart

    def listen(self, figure: hv.DynamicMap) -> None:
        """The streams that report a new figure's clicks and box selections. Later
        results are drawn into the same figure: a pick is read against the result
        on screen when it happens."""
        tap = hv.streams.Tap(source=figure, transient=True)
        tap.add_subscriber(lambda x=None, y=None, **_: self._tap(x, y))
        box = hv.streams.SelectionXY(source=figure, transient=True)
        box.add_subscriber(lambda **kwargs: self._box(kwargs))

    def _tap(self, x: Any, y: Any) -> None:
        result = self.view.result
        if result is not None and result.chart is not None:
            self.picked(self.tapped(result.spec, result.data, x, y))

    def _box(self, selection: dict[str, Any]) -> None:
        result = self.view.result
        if result is not None and result.chart is not None:
            self.picked(self.boxed(result.spec, result.data, selection))

    def _keep_x_range(self, plot: Any, _element: Any) -> None:
        self.x_range = getattr(plot.state, "x_range", None)

    def _factor_at(self, x: Any) -> Any:
        """A categorical axis's factor at a click: HoloViews gives the factor, or for
        nested factors (grouped bars) the synthetic coordinate."""
        if not isinstance(x, int | float):
            return x
        factors = list(getattr(self.x_range, "factors", None) or [])
        if factors and isinstance(factors[0], list | tuple):
            return nested_factor_at(
                factors, float(x), float(self.x_range.group_padding), float(self.x_range.factor_padding)
            )
        index = int(x)
        return factors[index] if 0 <= index < len(factors) else None

    def tapped(self, spec: Any, data: Any, x: Any, y: Any) -> Pick:
        """What a click at (x, y) picks on this chart."""
        if x is None:
            return {}
        if spec.kind in ("bar", "stacked", "grouped", "heatmap"):
            x = self._factor_at(x)
            if x is None:
                return {}
        if spec.kind in ("bar", "stacked"):
            return pick_for(spec.x, [x[0] if isinstance(x, list | tuple) else x])
        if spec.kind in ("grouped", "heatmap"):
            if isinstance(x, list | tuple):  # a grouped bar's factor: (x, group)
                pick = pick_for(spec.x, [x[0]])
                if len(x) > 1 and spec.group:
                    pick.update(pick_for(spec.group, [x[1]]))
                return pick
            pick = pick_for(spec.x, [x])
            if spec.kind == "heatmap" and spec.group and y is not None:
                pick.update(pick_for(spec.group, [y]))
            return pick
        if spec.kind == "histogram" and data is not None and not data.empty:
            inside = data[(data["left"] <= float(x)) & (float(x) < data["right"])]
            if inside.empty:
                return {}
            return range_pick(spec.x, float(inside["left"].iloc[0]), float(inside["right"].iloc[0]))
        if spec.kind == "line":
            return pick_for("age", [round(float(x))])
        if spec.kind == "box" and spec.group and data is not None:
            index = round(float(x))
            if 0 <= index < len(data):
                return pick_for(spec.group, [data["group"].iloc[index]])
        return {}

    def boxed(self, spec: Any, data: Any, selection: dict[str, Any]) -> Pick:
        """What a box selection picks: the categories it covers, or the numbers it spans."""
        xs = selection.get("x_selection")
        if xs is None:
            return {}
        if spec.kind in ("histogram", "line"):
            if not isinstance(xs, tuple | list) or len(xs) != 2 or isinstance(xs[0], str):
                return {}
            return range_pick(spec.x if spec.kind == "histogram" else "age", float(xs[0]), float(xs[1]))
        if spec.kind in ("bar", "stacked", "grouped", "heatmap"):
            factors = [f[0] if isinstance(f, list | tuple) else f for f in xs]
            pick = pick_for(spec.x, factors)
            ys = selection.get("y_selection")
            if spec.kind == "heatmap" and spec.group and isinstance(ys, list | tuple) and ys:
                pick.update(pick_for(spec.group, list(ys)))
            return pick
        return {}

    # -- the filters --

    def picked(self, pick: Pick) -> None:
        """Add a pick to the filters, with a chip that takes it away again."""
        if not pick:
            return
        current = self.filters.people_filter
        try:
            narrowed = apply_pick(current, pick)
        except QueryError:  # not a filter (e.g. a click between bars): nothing to add
            return
        if narrowed == current:
            return
        before = current_of(current, pick)
        self.filters.set_filter(narrowed)
        # The pick as the filter holds it (a range reaching the data's end is open there).
        held = current_of(self.filters.people_filter, pick)
        button = pn.widgets.Button(
            label=f"✕ Chart selection: {describe_pick(pick)}",
            color="light",
            sizing_mode="stretch_width",
            css_classes=["crossfilter-chip"],
            description="Remove this chart selection from the filters",
        )
        chip = Chip(held, before, button)
        button.on_click(lambda _event: self.remove(chip))
        self.chips.append(chip)
        self._show_chips()

    def remove(self, chip: Chip) -> None:
        """Put back what the chip's selection replaced."""
        if chip in self.chips:
            self.chips.remove(chip)
            self._show_chips()
        restored = apply_pick(self.filters.people_filter, chip.before)
        self.filters.set_filter(restored)

    def _filter_changed(self, _event: Any) -> None:
        """A chip whose columns were changed by hand no longer says what is filtered."""
        people_filter = self.filters.people_filter
        kept = [chip for chip in self.chips if current_of(people_filter, chip.pick) == chip.pick]
        if len(kept) != len(self.chips):
            self.chips = kept
            self._show_chips()

    def _show_chips(self) -> None:
        self.filters.chips[:] = [chip.button for chip in self.chips]
        self.filters.chips.visible = bool(self.chips)


__all__ = ["CrossFilter", "apply_pick", "describe_pick", "pick_for", "range_pick"]
