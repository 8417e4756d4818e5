"""Visualize tab: filters + a chart builder. Aggregation runs in SQL (through the
query layer); pandas only shapes the few aggregated rows for HoloViews (Bokeh)."""

from __future__ import annotations

import html
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models import NumeralTickFormatter
from sqlalchemy.exc import SQLAlchemyError

from explorer.filters import FilterPanel
from explorer.store import DataStore
from warehouse.contract import MEASURE_DEFS
from warehouse.query import (
    AGE_BAND,
    CATEGORY_COLUMNS,
    GROUP_COLUMNS,
    MEASURES,
    RANGE_COLUMNS,
    PeopleFilter,
    column_title,
)

hv.extension("bokeh", logo=False)

CHART_TYPES: Final[dict[str, str]] = {
    "bar": "Bar",
    "stacked": "Stacked bar",
    "grouped": "Grouped bar",
    "histogram": "Histogram",
    "box": "Box plot",
    "heatmap": "Heatmap",
    "line": "Line over age",
}
NEEDS_GROUP: Final = ("stacked", "grouped", "heatmap")
# Stacking adds the groups' values: only counts and sums add up (a share or a
# mean stacked by race reached ~390 %).
ADDITIVE_MEASURES: Final = ("people", "population")
COUNT_ONLY: Final = ("histogram", "box")  # drawn from exact value counts: the measure is people
UNKNOWN_TEXT: Final = "Unknown"
TITLE_SEPARATOR: Final = " — "  # between a chart's subject and whom it covers
EXPORT_SCALES: Final[dict[str, int]] = {"1× (1000 × 560)": 1, "2× (2000 × 1120)": 2}
HISTOGRAM_BINS: Final = 30
SCREEN_HEIGHT: Final = 480
EXPORT_SIZE: Final = (1000, 560)
TITLE_PX: Final = 16  # exported title and subtitle font sizes
SUBTITLE_PX: Final = 13


def attribute_title(name: str | None) -> str:
    if name is None:
        return "(none)"
    return "Age band" if name == AGE_BAND else column_title(name)


def measure_title(measure: str) -> str:
    definition = MEASURE_DEFS[measure]
    return definition.axis_title or definition.title


def x_choices(kind: str) -> list[str]:
    if kind in COUNT_ONLY:
        return list(RANGE_COLUMNS)
    if kind == "line":
        return ["age"]
    return list(GROUP_COLUMNS)


def group_choices(kind: str | None = None) -> list[str | None]:
    """The same for every chart type: changing a select's options makes the browser
    reset its value, so only the value changes when the chart type does."""
    return [None, *CATEGORY_COLUMNS, AGE_BAND, "education_num"]


@dataclass(frozen=True)
class ChartSpec:
    kind: str = "bar"
    x: str = "education"
    group: str | None = None
    measure: str = "people"

    @property
    def effective_measure(self) -> str:
        return "people" if self.kind in COUNT_ONLY else self.measure

    def problem(self) -> str | None:
        """Why this combination cannot be drawn (None when it can)."""
        if self.kind not in CHART_TYPES:
            return f"Unknown chart type {self.kind!r}."
        if self.x not in x_choices(self.kind):
            return f"{CHART_TYPES[self.kind]} charts cannot use {attribute_title(self.x)} on the x axis."
        if self.kind in NEEDS_GROUP and self.group is None:
            return f"A {CHART_TYPES[self.kind].lower()} needs an attribute to group or colour by: pick one."
        if self.group is not None and self.group == self.x:
            return "Pick a group attribute different from the x axis."
        if self.measure not in MEASURES:
            return f"Unknown measure {self.measure!r}."
        if self.kind == "stacked" and self.measure not in ADDITIVE_MEASURES:
            return (
                f"{measure_title(self.measure)} does not add up across groups, so it cannot be stacked: "
                "choose a grouped bar, or Number of people or Population represented."
            )
        return None

    def subject(self) -> str:
        what = measure_title(self.effective_measure)
        if self.kind == "histogram":
            what = f"Distribution of {attribute_title(self.x).lower()} (number of people)"
        elif self.kind == "box":
            what = f"{attribute_title(self.x)} (quartiles)"
        by = "over age" if self.kind == "line" else f"by {attribute_title(self.x).lower()}"
        if self.kind in COUNT_ONLY:
            by = ""
        if self.group is not None:
            group = attribute_title(self.group).lower()
            joined = f"{by} and {group}" if by else f"by {group}"
            by = f"{by}, by {group}" if self.kind == "line" else joined
        return f"{what} {by}".strip()

    def subtitle(self, people_filter: PeopleFilter, people: int | None = None) -> str:
        """Who the chart covers: the filters and the number of people."""
        who = people_filter.describe()
        counted = f" ({people:,} people)" if people is not None else ""
        return f"{'Everyone' if who == 'everyone' else who}{counted}"

    def title(self, people_filter: PeopleFilter, people: int | None = None) -> str:
        who = people_filter.describe()
        counted = f" ({people:,} people)" if people is not None else ""
        return f"{self.subject()}{TITLE_SEPARATOR}{'everyone' if who == 'everyone' else who}{counted}"

    def filename(self, extension: str, today: date | None = None) -> str:
        """'census-box-plot-age-quartiles-by-race-2026-11-28.png': the chart type, then
        what the title says (the measure only where the chart draws it)."""
        kind = "line" if self.kind == "line" else CHART_TYPES[self.kind]
        stem = f"{kind}-{self.subject()}".lower()
        safe = "".join(ch if ch.isalnum() else "-" for ch in stem)
        while "--" in safe:
            safe = safe.replace("--", "-")
        return f"census-{safe.strip('-')}-{(today or date.today()).isoformat()}.{extension}"

    def to_params(self) -> dict[str, list[str]]:
        params = {"chart": [self.kind], "x": [self.x], "measure": [self.measure]}
        if self.group:
            params["group"] = [self.group]
        return params


def _label(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return UNKNOWN_TEXT
    return str(value)


def weighted_quantile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """The q-quantile of values repeated `counts` times (linear interpolation, as numpy's default)."""
    total = int(counts.sum())
    position = q * (total - 1)
    lower, upper = int(np.floor(position)), int(np.ceil(position))
    cumulative = np.cumsum(counts)
    low_value = values[np.searchsorted(cumulative, lower + 1)]
    high_value = values[np.searchsorted(cumulative, upper + 1)]
    return float(low_value + (high_value - low_value) * (position - lower))


def box_stats(values: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    order = np.argsort(values)
    values, counts = values[order].astype(float), counts[order].astype(np.int64)
    q1, median, q3 = (weighted_quantile(values, counts, q) for q in (0.25, 0.5, 0.75))
    iqr = q3 - q1
    inside = (values >= q1 - 1.5 * iqr) & (values <= q3 + 1.5 * iqr)
    return {
        "q1": q1,
        "median": median,
        "q3": q3,
        "lower": float(values[inside].min()),
        "upper": float(values[inside].max()),
        "mean": float((values * counts).sum() / counts.sum()),
        "people": int(counts.sum()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def chart_data(store: DataStore, spec: ChartSpec, people_filter: PeopleFilter) -> pd.DataFrame:
    """The aggregated rows a chart draws, as a tidy frame (category keys as text)."""
    return chart_data_and_total(store, spec, people_filter)[0]


def chart_data_and_total(store: DataStore, spec: ChartSpec, people_filter: PeopleFilter) -> tuple[pd.DataFrame, int]:
    """The chart's rows and the number of people they cover. The groups cover every
    matching person (missing values form their own group), so one SQL query answers
    both: no separate count over the table."""
    measure = spec.effective_measure
    if spec.kind in COUNT_ONLY:
        rows = store.value_counts(people_filter, spec.x, spec.group)
        frame = pd.DataFrame(rows, columns=(["group"] if spec.group else []) + ["value", "people"])
        total = int(frame["people"].sum())
        if spec.group:
            frame["group"] = frame["group"].map(_label).astype(object)
        if spec.kind == "histogram":
            return _histogram(frame, spec), total
        return _boxes(frame, spec), total
    group_by = [spec.x] if spec.kind != "line" else ["age"]
    if spec.group:
        group_by.append(spec.group)
    measures = [measure] if measure == "people" else [measure, "people"]
    rows = store.aggregate(people_filter, group_by, measures)
    frame = pd.DataFrame(rows, columns=[*group_by, *measures])
    total = int(frame["people"].sum())
    if MEASURE_DEFS[measure].percent:
        frame[measure] = frame[measure] * 100.0
    for column in group_by:
        if spec.kind == "line" and column == "age":
            continue
        frame[column] = frame[column].map(_label).astype(object)
    return frame, total


def _histogram(frame: pd.DataFrame, spec: ChartSpec) -> pd.DataFrame:
    """Bins from exact value counts: columns [group?] left, right, people."""
    if frame.empty:
        return pd.DataFrame(columns=["left", "right", "people"])
    low, high = float(frame["value"].min()), float(frame["value"].max())
    distinct = frame["value"].nunique()
    if spec.x in ("age", "hours_per_week", "education_num") and high - low + 1 <= 100:
        edges = np.arange(low, high + 2) - 0.5  # one bin per whole value
    else:
        edges = np.linspace(low, high if high > low else low + 1, min(HISTOGRAM_BINS, max(distinct, 1)) + 1)
    parts = []
    groups = frame.groupby("group", sort=False) if spec.group else [(None, frame)]
    for name, part in groups:
        counts, _ = np.histogram(part["value"].astype(float), bins=edges, weights=part["people"].astype(float))
        piece = pd.DataFrame({"left": edges[:-1], "right": edges[1:], "people": counts.astype(np.int64)})
        if spec.group:
            piece.insert(0, "group", name)
        parts.append(piece)
    return pd.concat(parts, ignore_index=True)


def _boxes(frame: pd.DataFrame, spec: ChartSpec) -> pd.DataFrame:
    columns = ["group", "q1", "median", "q3", "lower", "upper", "mean", "people", "min", "max"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    groups = frame.groupby("group", sort=False) if spec.group else [("Everyone", frame)]
    records = []
    for name, part in groups:
        stats = box_stats(part["value"].to_numpy(), part["people"].to_numpy())
        records.append({"group": name, **stats})
    return pd.DataFrame(records, columns=columns)


# --------------------------------------------------------------------------- drawing


def _dim(name: str) -> hv.Dimension:
    return hv.Dimension(name, label=attribute_title(name))


def _measure_dim(measure: str) -> hv.Dimension:
    return hv.Dimension(measure, label=measure_title(measure))


def _yformat(measure: str) -> NumeralTickFormatter:
    return NumeralTickFormatter(format="0,0" if measure in ("people", "population") else "0,0.[0]")


def build_chart(data: pd.DataFrame, spec: ChartSpec, title: str) -> hv.Element | hv.Overlay:
    """A HoloViews object with title, axis labels in words and hover tooltips."""
    measure = spec.effective_measure
    m_dim = _measure_dim(measure)
    # The number of people behind each bar or cell shows in the hover tooltip too.
    vdims = [m_dim] if measure == "people" or "people" not in data.columns else [m_dim, _measure_dim("people")]
    common = {"title": title, "tools": ["hover"], "fontsize": {"title": "11pt"}}
    if spec.kind == "bar":
        chart = hv.Bars(data, kdims=[_dim(spec.x)], vdims=vdims).opts(
            xrotation=45 if len(data) > 8 else 0, yformatter=_yformat(measure), color="#3b6ea5", **common
        )
    elif spec.kind in ("stacked", "grouped"):
        assert spec.group is not None
        chart = hv.Bars(data, kdims=[_dim(spec.x), _dim(spec.group)], vdims=vdims).opts(
            stacked=spec.kind == "stacked",
            multi_level=False,
            xrotation=45 if data[spec.x].nunique() > 6 else 0,
            yformatter=_yformat(measure),
            cmap="Category20",
            legend_position="right",
            show_legend=True,
            **common,
        )
    elif spec.kind == "heatmap":
        assert spec.group is not None
        chart = hv.HeatMap(data, kdims=[_dim(spec.x), _dim(spec.group)], vdims=vdims).opts(
            colorbar=True,
            cmap="viridis",
            xrotation=45,
            clabel=measure_title(measure),
            cformatter=NumeralTickFormatter(format="0.[0]a" if measure == "population" else "0,0.[0]"),
            **common,
        )
    elif spec.kind == "line":
        if spec.group:
            curves = {
                name: hv.Curve(part, kdims=[_dim("age")], vdims=vdims, label=name).opts(tools=["hover"])
                for name, part in data.groupby(spec.group, sort=False)
            }
            chart = hv.Overlay(list(curves.values())).opts(
                title=title, legend_position="right", fontsize=common["fontsize"]
            )
        else:
            chart = hv.Curve(data, kdims=[_dim("age")], vdims=vdims).opts(line_width=2, **common)
        chart = chart.opts(hv.opts.Curve(yformatter=_yformat(measure)))
    elif spec.kind == "histogram":
        x_dim, people = _dim(spec.x), _measure_dim("people")
        if spec.group:
            hists = [
                hv.Histogram(
                    (np.append(part["left"].to_numpy(), part["right"].iloc[-1]), part["people"].to_numpy()),
                    kdims=[x_dim],
                    vdims=[people],
                    label=str(name),
                ).opts(alpha=0.55, tools=["hover"])
                for name, part in data.groupby("group", sort=False)
            ]
            chart = hv.Overlay(hists).opts(title=title, legend_position="right", fontsize=common["fontsize"])
        else:
            edges = np.append(data["left"].to_numpy(), data["right"].iloc[-1])
            chart = hv.Histogram((edges, data["people"].to_numpy()), kdims=[x_dim], vdims=[people]).opts(
                color="#3b6ea5", **common
            )
        chart = chart.opts(hv.opts.Histogram(yformatter=_yformat("people")))
    elif spec.kind == "box":
        chart = _box_chart(data, spec, title)
    else:  # pragma: no cover - guarded by ChartSpec.problem
        raise ValueError(spec.kind)
    return chart


def _box_chart(data: pd.DataFrame, spec: ChartSpec, title: str) -> hv.Overlay:
    """Boxes drawn from exact quartiles (no per-person rows are fetched)."""
    y_dim = _dim(spec.x)
    group_title = attribute_title(spec.group) if spec.group else ""
    frame = data.reset_index(drop=True).copy()
    frame["pos"] = np.arange(len(frame), dtype=float)
    frame["left"], frame["right"] = frame["pos"] - 0.35, frame["pos"] + 0.35
    hover = [
        (group_title or "Who", "@group"),
        ("People", "@people{0,0}"),
        ("Median", "@median{0,0.[0]}"),
        ("Quartiles", "@q1{0,0.[0]} – @q3{0,0.[0]}"),
        ("Whiskers", "@lower{0,0.[0]} – @upper{0,0.[0]}"),
        ("Mean", "@mean{0,0.[00]}"),
    ]
    boxes = hv.Rectangles(
        frame, kdims=["left", "q1", "right", "q3"], vdims=["group", "median", "people", "lower", "upper", "mean"]
    ).opts(color="#9ecae1", line_color="#08306b", tools=["hover"], hover_tooltips=hover)
    whiskers = hv.Segments(
        pd.concat(
            [
                frame.assign(x0=frame["pos"], y0=frame["upper"], x1=frame["pos"], y1=frame["q3"]),
                frame.assign(x0=frame["pos"], y0=frame["lower"], x1=frame["pos"], y1=frame["q1"]),
            ]
        )[["x0", "y0", "x1", "y1"]],
        kdims=["x0", "y0", "x1", "y1"],
    ).opts(color="#08306b")
    medians = hv.Segments(
        frame.assign(x0=frame["left"], y0=frame["median"], x1=frame["right"], y1=frame["median"])[
            ["x0", "y0", "x1", "y1"]
        ],
        kdims=["x0", "y0", "x1", "y1"],
    ).opts(color="#d62728", line_width=3)
    ticks = [(float(p), str(g)) for p, g in zip(frame["pos"], frame["group"], strict=True)]
    return (
        (boxes * whiskers * medians)
        .opts(
            hv.opts.Rectangles(
                xticks=ticks, xlabel=group_title or " ", ylabel=y_dim.label, xrotation=45 if len(ticks) > 6 else 0
            ),
        )
        .opts(title=title, xlabel=group_title or " ", ylabel=y_dim.label, xticks=ticks, fontsize={"title": "11pt"})
    )


def size_for_screen(chart: Any) -> Any:
    """The page shows the title above the chart as text, where it wraps."""
    return chart.opts(responsive=True, height=SCREEN_HEIGHT, title="", clone=True)


def size_for_export(chart: Any) -> Any:
    """Export size, with the title wrapped onto as many lines as it needs: the subject
    first, then the filters and the number of people in a smaller subtitle."""
    width, height = EXPORT_SIZE
    title = str(hv.Store.lookup_options("bokeh", chart, "plot").kwargs.get("title") or "")
    return chart.opts(
        responsive=False, width=width, height=height, toolbar=None, hooks=[wrapped_title_hook(title, width)], clone=True
    )


def title_lines(title: str, width: int) -> tuple[list[str], list[str]]:
    """The title's subject and subtitle broken into lines that fit a `width`-pixel
    export. Bokeh starts a title at the plot frame, right of the y axis, and a legend
    or colour bar may take the right side: about `width` - 300 pixels are free, at
    about 0.6 of the font size per character."""
    free = max(300, width - 300)
    subject, _, who = title.partition(TITLE_SEPARATOR)
    subject_lines = textwrap.wrap(subject, max(20, int(free / (TITLE_PX * 0.62)))) or [""]
    who = who[:1].upper() + who[1:]
    who_lines = textwrap.wrap(who, max(20, int(free / (SUBTITLE_PX * 0.6))), break_on_hyphens=False) if who else []
    return subject_lines, who_lines


def wrapped_title_hook(title: str, width: int) -> Callable[[Any, Any], None]:
    """Replace the one-line title (which Bokeh cuts at the edge) by wrapped lines."""

    def hook(plot: Any, _element: Any) -> None:
        from bokeh.models import Title

        figure = plot.state
        if not title or not hasattr(figure, "title"):
            return
        subject_lines, who_lines = title_lines(title, width)
        lines = [(line, TITLE_PX, "bold") for line in subject_lines] + [
            (line, SUBTITLE_PX, "normal") for line in who_lines
        ]
        first, size, style = lines[0]
        figure.title = Title(text=first, text_font_size=f"{size}px", text_font_style=style)
        # Bokeh stacks "above" annotations from the plot outwards, under the title:
        # add the last line first.
        for text, size, style in reversed(lines[1:]):
            figure.add_layout(Title(text=text, text_font_size=f"{size}px", text_font_style=style), "above")

    return hook


# --------------------------------------------------------------------------- the tab


@dataclass
class ChartResult:
    spec: ChartSpec
    people_filter: PeopleFilter
    people: int
    data: pd.DataFrame | None
    chart: Any | None
    message: str | None
    seconds: float


def make_chart(store: DataStore, spec: ChartSpec, people_filter: PeopleFilter) -> ChartResult:
    """Everything a filter or chart change recomputes: count, data, chart or a message."""
    started = time.perf_counter()
    problem = spec.problem()
    if problem:
        return ChartResult(spec, people_filter, 0, None, None, problem, time.perf_counter() - started)
    data, people = chart_data_and_total(store, spec, people_filter)
    if people == 0:
        message = (
            f"No one matches these filters ({people_filter.describe()}). Widen or reset the filters to see a chart."
        )
        return ChartResult(spec, people_filter, 0, None, None, message, time.perf_counter() - started)
    chart = build_chart(data, spec, spec.title(people_filter, people))
    return ChartResult(spec, people_filter, people, data, chart, None, time.perf_counter() - started)


class VisualizeView(pn.viewable.Viewer):
    chart_type = param.Selector(default="bar", objects={v: k for k, v in CHART_TYPES.items()}, label="Chart type")
    x = param.Selector(default="education", objects={attribute_title(c): c for c in GROUP_COLUMNS}, label="X axis")
    group = param.Selector(
        default=None,
        objects={attribute_title(g) if g else "(none)": g for g in group_choices()},
        label="Group / colour by",
    )
    measure = param.Selector(default="people", objects={v: k for k, v in MEASURES.items()}, label="Measure")
    export_scale = param.Selector(default=1, objects=EXPORT_SCALES, label="Image size")
    result = param.Parameter(default=None, doc="The last ChartResult (read by the image export).")

    def __init__(self, store: DataStore, filters: FilterPanel | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.store = store
        self.filters = filters or FilterPanel()
        # Each shown chart passes through these (explorer.crossfilter adds its streams).
        self.chart_hooks: list[Callable[[Any, ChartResult], Any]] = []
        self._set_choices()
        self.filters.param.watch(lambda _event: self._update(), "people_filter")
        self._update()

    @property
    def spec(self) -> ChartSpec:
        return ChartSpec(self.chart_type, self.x, self.group, self.measure)

    def set_spec(self, spec: ChartSpec) -> None:
        with param.parameterized.batch_call_watchers(self):
            self.chart_type = spec.kind
            self._set_choices()
            if spec.x in x_choices(spec.kind):
                self.x = spec.x
            if spec.group in group_choices(spec.kind):
                self.group = spec.group
            self.measure = spec.measure

    @param.depends("chart_type", watch=True)
    def _set_choices(self) -> None:
        xs = x_choices(self.chart_type)
        if self.x not in xs:
            # The browser resets a select to its first option when the value is not
            # among its options: widen the options, move the value, then narrow them.
            new_x = "age" if "age" in xs else xs[0]
            self.param.x.objects = {attribute_title(name): name for name in [new_x, *xs, self.x]}
            self.x = new_x
        self.param.x.objects = {attribute_title(name): name for name in xs}
        if self.group is None and self.chart_type in NEEDS_GROUP:
            self.group = "gender" if self.x != "gender" else "income"

    @param.depends("chart_type", "x", "group", "measure", watch=True)
    def _update(self) -> None:
        holder = getattr(self, "_chart_holder", None)
        if holder is not None:
            holder.loading = True
        try:
            self.result = make_chart(self.store, self.spec, self.filters.people_filter)
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            message = f"The database could not answer: {reason}. Reload the page to try again."
            self.result = ChartResult(self.spec, self.filters.people_filter, 0, None, None, message, 0.0)
        finally:
            if holder is not None:
                holder.loading = False

    @param.depends("result")
    def _view(self) -> pn.viewable.Viewable:
        result = self.result
        if result is None or result.chart is None:
            kind = "info" if result is not None and result.people == 0 and not result.spec.problem() else "warning"
            return pn.pane.Alert(
                result.message if result else "",
                alert_type=kind,
                sizing_mode="stretch_width",
                css_classes=["chart-message"],
            )
        chart = size_for_screen(result.chart)
        for hook in self.chart_hooks:
            chart = hook(chart, result)
        # The title is page text above the chart (it wraps; a canvas title is cut off),
        # and the chart's numbers follow as a table: the chart's text alternative.
        return pn.Column(
            pn.pane.HTML(chart_heading(result), sizing_mode="stretch_width", css_classes=["chart-heading"]),
            pn.pane.HoloViews(
                chart,
                sizing_mode="stretch_width",
                height=SCREEN_HEIGHT + 20,
                css_classes=["chart"],
            ),
            pn.pane.HTML(chart_text_alternative(result), sizing_mode="stretch_width", css_classes=["chart-data"]),
            sizing_mode="stretch_width",
        )

    @param.depends("result")
    def _note(self) -> pn.viewable.Viewable:
        result = self.result
        if result is None:
            return pn.pane.Markdown("")
        text = f"{result.people:,} people match" if result.chart is not None else ""
        if result.spec.kind in COUNT_ONLY and result.spec.measure != "people" and result.chart is not None:
            text += " · histograms and box plots count people (the measure does not apply)"
        return pn.pane.Markdown(text, css_classes=["chart-note"], margin=(0, 10))

    def controls(self) -> pn.FlexBox:
        measure = pn.widgets.Select.from_param(self.param.measure, width=260)

        def measure_applies(*_: Any) -> None:
            # Histograms and box plots count people: the measure does not apply.
            measure.disabled = self.chart_type in COUNT_ONLY

        self.param.watch(measure_applies, "chart_type")
        measure_applies()
        self._controls = pn.FlexBox(
            pn.widgets.Select.from_param(self.param.chart_type, width=170),
            pn.widgets.Select.from_param(self.param.x, width=170),
            NoneSelect.from_param(self.param.group, width=170),
            measure,
            sizing_mode="stretch_width",
        )
        return self._controls

    def __panel__(self) -> pn.viewable.Viewable:
        from explorer.image_export import download_buttons

        controls = self.controls()
        self._chart_holder = pn.Column(
            pn.panel(self._view, loading_indicator=False, sizing_mode="stretch_width"), sizing_mode="stretch_width"
        )
        for widget in controls:
            widget.jslink(self._chart_holder, value="loading")
        self.filters.show_loading_on(self._chart_holder)
        chart_area = pn.Column(
            controls,
            self._chart_holder,
            self._note,
            pn.widgets.RadioButtonGroup.from_param(
                self.param.export_scale, color="light", css_classes=["export-scale"], width=340
            ),
            download_buttons(self),
            sizing_mode="stretch_width",
            css_classes=["chart-area"],
            styles={"flex": "1 1 330px", "min-width": "0"},
        )
        # Side by side on a wide screen; on a phone the filters come first, above the chart.
        return pn.FlexBox(
            pn.Column(self.filters, width=300, css_classes=["visualize-filters"], styles={"flex": "0 1 300px"}),
            chart_area,
            flex_wrap="wrap",
            sizing_mode="stretch_width",
        )


class NoneSelect(pn.widgets.Select):
    """A Select that shows the label of a `None` option on first render (Panel leaves
    the browser's select blank when the initial value is None)."""

    def _init_params(self) -> dict[str, Any]:
        params = super()._init_params()
        if self.value is None and None in self.values:
            params["value"] = None
        return params

    def _process_param_change(self, params: dict[str, Any]) -> dict[str, Any]:
        props = super()._process_param_change(params)
        if "value" in params and params["value"] is None and None in self.values:
            props["value"] = self.unicode_values[self.values.index(None)]
        return props


def chart_heading(result: ChartResult) -> str:
    subtitle = result.spec.subtitle(result.people_filter, result.people)
    return (
        f'<h2 class="chart-title" style="font-size:1.1rem;margin:4px 0 2px">{html.escape(result.spec.subject())}</h2>'
        f'<p class="chart-subtitle" style="margin:0;color:inherit;opacity:.85">{html.escape(subtitle)}</p>'
    )


def chart_text_alternative(result: ChartResult, max_rows: int = 200) -> str:
    """The chart's numbers as an HTML table in a <details>: what a screen reader (or
    anyone who wants the figures) reads instead of the canvas."""
    data = result.data
    if data is None:
        return ""
    frame = data.head(max_rows).copy()
    frame.columns = [
        measure_title(c) if c in MEASURES else attribute_title(c) if c in (*GROUP_COLUMNS, AGE_BAND) else c.title()
        for c in frame.columns
    ]
    table = frame.to_html(index=False, float_format=lambda v: f"{v:,.2f}", border=0, classes="chart-table")
    more = f"<p>First {max_rows} of {len(data):,} rows.</p>" if len(data) > max_rows else ""
    return (
        f"<details><summary>Chart data as a table ({html.escape(result.spec.subject())})</summary>"
        f"{table}{more}</details>"
    )
