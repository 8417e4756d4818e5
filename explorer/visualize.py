"""Visualize tab: filters + a chart builder. Aggregation runs in SQL (through the
query layer); pandas only shapes the few aggregated rows for HoloViews (Bokeh)."""

from __future__ import annotations

import html
import io
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models import NumeralTickFormatter
from panel.io.document import hold
from panel.io.state import set_curdoc
from sqlalchemy.exc import SQLAlchemyError

from explorer.background import answer_on_loop
from explorer.filters import FilterPanel
from explorer.store import DataStore
from warehouse.config import get_settings
from warehouse.contract import MEASURE_DEFS
from warehouse.estimates import column as estimate_column
from warehouse.query import (
    AGE_BAND,
    CATEGORY_COLUMNS,
    GROUP_COLUMNS,
    MEASURES,
    RANGE_COLUMNS,
    PeopleFilter,
    column_title,
)
from warehouse.stats import CONFIDENCE_LEVELS, DEFAULT_CONFIDENCE

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
FOOTNOTE_PX: Final = 11
# How far to trust a number (issue 14): intervals, census weights, small groups.
BAR_KINDS: Final = ("bar", "stacked", "grouped")  # the charts whose bars may be sorted by value
ORDERS: Final[dict[str, str]] = {"Category order": "category", "By value (largest first)": "value"}
ESTIMATES: Final[dict[str, bool]] = {"Sample": False, "Census-weighted": True}
CONFIDENCES: Final[dict[str, float]] = {f"{level:.0%} interval": level for level in CONFIDENCE_LEVELS}
FADED_ALPHA: Final = 0.3  # an unreliable group's bar, cell or point; hatched as well where it has a fill
FADED_HATCH: Final = "/"
SOURCE: Final = "UCI Adult, 1994 CPS"


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
    weighted: bool = False  # census-weighted (fnlwgt) estimates instead of the sample's
    order: str = "category"  # "value": bars sorted by their value, largest first
    hide_small: bool = False  # leave out the groups too small to trust, instead of fading them
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def effective_measure(self) -> str:
        return "people" if self.kind in COUNT_ONLY else self.measure

    @property
    def has_intervals(self) -> bool:
        """Whether the chart draws an estimate with an interval (shares and means; counts
        and the population are exact totals of the extract, and weights do not apply)."""
        return self.kind not in COUNT_ONLY and MEASURE_DEFS[self.effective_measure].uncertainty is not None

    @property
    def census_weighted(self) -> bool:
        return self.weighted and self.has_intervals

    @property
    def by_value(self) -> bool:
        return self.order == "value" and self.kind in BAR_KINDS

    @property
    def estimates_label(self) -> str:
        """What the title says about the estimates: '' where weights and intervals do not apply."""
        if not self.has_intervals:
            return ""
        return "census-weighted" if self.weighted else "sample"

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
        subject = f"{what} {by}".strip()
        # Sample or census-weighted: stated in the title, so a shared image says which.
        return f"{subject} ({self.estimates_label})" if self.estimates_label else subject

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
        """The page-URL form; the options left at their defaults are left out (`confidence`
        is the API's /stats parameter of the same name)."""
        params = {"chart": [self.kind], "x": [self.x], "measure": [self.measure]}
        if self.group:
            params["group"] = [self.group]
        if self.weighted:
            params["weighted"] = ["true"]
        if self.order != "category":
            params["order"] = [self.order]
        if self.hide_small:
            params["small"] = ["hide"]
        if self.confidence != DEFAULT_CONFIDENCE:
            params["confidence"] = [f"{self.confidence:.2f}"]
        return params

    @classmethod
    def from_params(cls, query: dict[str, list[str]]) -> ChartSpec:
        """The chart a page URL asks for; a value this explorer does not know is left at its default."""

        def last(name: str) -> str:
            return (query.get(name) or [""])[-1]

        try:
            confidence = float(last("confidence") or DEFAULT_CONFIDENCE)
        except ValueError:
            confidence = DEFAULT_CONFIDENCE
        return cls(
            kind=last("chart") or "bar",
            x=last("x") or "education",
            group=last("group") or None,
            measure=last("measure") or "people",
            weighted=last("weighted").lower() in ("true", "1", "yes"),
            order=last("order") if last("order") in ORDERS.values() else "category",
            hide_small=last("small") == "hide",
            confidence=next((c for c in CONFIDENCE_LEVELS if np.isclose(c, confidence)), DEFAULT_CONFIDENCE),
        )


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


@dataclass
class ChartData:
    """What a chart draws, and how far to trust each of its groups."""

    frame: pd.DataFrame  # the rows drawn (shares in %), category keys as text
    people: int  # people the chart covers (hidden groups included)
    estimates: pd.DataFrame | None = None  # estimate_groups' rows drawn, in the chart's order (the CSV)
    faded: int = 0  # groups drawn faded
    hidden: int = 0  # groups left out by "Hide small groups"
    min_n: int = 30
    max_rse: float = 0.30


def chart_data(store: DataStore, spec: ChartSpec, people_filter: PeopleFilter) -> pd.DataFrame:
    """The aggregated rows a chart draws, as a tidy frame (category keys as text)."""
    return collect_chart_data(store, spec, people_filter).frame


def chart_data_and_total(store: DataStore, spec: ChartSpec, people_filter: PeopleFilter) -> tuple[pd.DataFrame, int]:
    collected = collect_chart_data(store, spec, people_filter)
    return collected.frame, collected.people


def collect_chart_data(store: DataStore, spec: ChartSpec, people_filter: PeopleFilter) -> ChartData:
    """The chart's rows and the number of people they cover. The groups cover every
    matching person (missing values form their own group), so one SQL query answers
    both: no separate count over the table."""
    settings = get_settings()
    if spec.kind in COUNT_ONLY:
        rows = store.value_counts(people_filter, spec.x, spec.group)
        frame = pd.DataFrame(rows, columns=(["group"] if spec.group else []) + ["value", "people"])
        total = int(frame["people"].sum())
        if spec.group:
            frame["group"] = frame["group"].map(_label).astype(object)
        drawn = _histogram(frame, spec) if spec.kind == "histogram" else _boxes(frame, spec)
        return ChartData(drawn, total, None, 0, 0, settings.reliability_min_n, settings.reliability_max_rse)
    group_by = [spec.x] if spec.kind != "line" else ["age"]
    if spec.group:
        group_by.append(spec.group)
    measure = spec.effective_measure
    # warehouse.estimates is the one place intervals and reliability flags are computed.
    estimates = store.estimates(
        people_filter, group_by, [measure], weighted=spec.census_weighted, confidence=spec.confidence
    ).reset_index(drop=True)
    min_n = int(estimates.attrs.get("min_n", settings.reliability_min_n))
    max_rse = float(estimates.attrs.get("max_rse", settings.reliability_max_rse))
    frame = _estimate_frame(estimates, spec, group_by, min_n, max_rse)
    total = int(frame["people"].sum())
    hidden = 0
    if spec.hide_small:
        hidden = int((~frame["reliable"]).sum())
        frame = frame[frame["reliable"]]
    if spec.by_value:
        frame = _sorted_by_value(frame, spec)
    faded = int((~frame["reliable"]).sum())
    shown = estimates.loc[frame.index].reset_index(drop=True)
    return ChartData(frame.reset_index(drop=True), total, shown, faded, hidden, min_n, max_rse)


def _estimate_frame(
    estimates: pd.DataFrame, spec: ChartSpec, group_by: list[str], min_n: int, max_rse: float
) -> pd.DataFrame:
    """estimate_groups' table as the chart draws it: the keys as labels, the measure (x100
    for a share), `people` (n), the interval, the reliability flag and, for tooltips and
    the table, the interval and the flag's reason in words."""
    measure = spec.effective_measure
    definition = MEASURE_DEFS[measure]
    scale = 100.0 if definition.percent else 1.0
    frame = pd.DataFrame(index=estimates.index)
    for column in group_by:
        if spec.kind == "line" and column == "age":
            frame[column] = estimates[column].astype(int)
        else:
            frame[column] = estimates[column].map(_label).astype(object)
    frame[measure] = estimates[measure] * scale if definition.percent else estimates[measure]
    frame["people"] = estimates["n"].astype(np.int64)
    frame["se"] = estimates[estimate_column(measure, "se")] * scale
    frame["ci_low"] = estimates[estimate_column(measure, "ci_low")] * scale
    frame["ci_high"] = estimates[estimate_column(measure, "ci_high")] * scale
    frame["reliable"] = estimates[estimate_column(measure, "reliable")].astype(bool)
    bounds = zip(frame["ci_low"], frame["ci_high"], strict=True)
    intervals = [interval_text(low, high, measure, spec.has_intervals) for low, high in bounds]
    notes = [
        "" if ok else flag_text(n, value, se, min_n, max_rse)
        for ok, n, value, se in zip(frame["reliable"], frame["people"], frame[measure], frame["se"], strict=True)
    ]
    # Plain objects: HoloViews reshapes a heatmap's columns, which pandas' Arrow strings refuse.
    frame["interval"] = pd.Series(intervals, index=frame.index, dtype=object)
    frame["note"] = pd.Series(notes, index=frame.index, dtype=object)
    return frame


def _sorted_by_value(frame: pd.DataFrame, spec: ChartSpec) -> pd.DataFrame:
    """Largest first. A grouped or stacked chart keeps its x categories together and
    sorts them by their stack's total (stacked) or their bars' mean (grouped)."""
    measure = spec.effective_measure
    if spec.group is None:
        return frame.sort_values(measure, ascending=False, kind="stable")
    how = "sum" if spec.kind == "stacked" else "mean"
    rank = frame.groupby(spec.x, sort=False)[measure].transform(how)
    return frame.assign(_rank=rank).sort_values("_rank", ascending=False, kind="stable").drop(columns="_rank")


def format_value(value: float, measure: str) -> str:
    """A measure's value as the chart's table and tooltips write it."""
    if value is None or not np.isfinite(value):
        return "–"
    if MEASURE_DEFS[measure].percent:
        return f"{value:.1f}%"
    if measure in ("people", "population", "mean_capital_gain"):
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def interval_text(low: float, high: float, measure: str, has_intervals: bool = True) -> str:
    if not has_intervals:
        return "none (an exact count of the extract)"
    if not (np.isfinite(low) and np.isfinite(high)):
        return "none (too few people)"
    return f"{format_value(low, measure)} – {format_value(high, measure)}"


def flag_text(n: int, value: float, se: float, min_n: int, max_rse: float) -> str:
    """Why estimate_groups flagged a group unreliable, in words (warehouse.stats.reliable's rule)."""
    if n < min_n:
        return f"fewer than {min_n} people"
    if np.isfinite(se) and value and np.isfinite(value) and abs(se / value) > max_rse:
        return f"relative standard error {abs(se / value):.0%} (above {max_rse:.0%})"
    return "too uncertain to trust"


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


def _tooltips(data: pd.DataFrame, spec: ChartSpec, keys: list[str]) -> list[tuple[str, str]]:
    """Each group's keys, its value, n and its interval (or why it has none), and a flag."""
    measure = spec.effective_measure
    text = spec.kind == "heatmap"  # HoloViews hands a heatmap's values to Bokeh as text
    number = "" if text else "{0.0}" if MEASURE_DEFS[measure].percent else "{0,0.[0]}"
    unit = "%" if MEASURE_DEFS[measure].percent else ""
    tips = [(attribute_title(key), f"@{{{key}}}") for key in keys]
    if measure != "people":
        tips.append((measure_title(measure), f"@{{{measure}}}{number}{unit}"))
    tips.append(("People (n)", "@{people}" if text else "@{people}{0,0}"))
    if spec.has_intervals:
        tips.append((f"{spec.confidence:.0%} interval", "@{interval}"))
    tips.append(("Note", "@{note}"))
    return tips


def _value_dims(data: pd.DataFrame, spec: ChartSpec) -> list[hv.Dimension | str]:
    """The measure first (what is drawn), then what the tooltips, the fading and the
    error bars read from the chart's data source."""
    measure = spec.effective_measure
    extra = [c for c in ("people", "ci_low", "ci_high", "interval", "note", "reliable") if c in data.columns]
    dims: list[hv.Dimension | str] = [_measure_dim(measure)]
    dims += [_measure_dim("people") if c == "people" else c for c in extra if c != measure]
    return dims


def _y_limits(data: pd.DataFrame, spec: ChartSpec) -> tuple[float, float] | None:
    """Room for the error bars (HoloViews sizes a bar chart's axis to the bars alone)."""
    if not spec.has_intervals or data.empty:
        return None
    measure = spec.effective_measure
    values = data[[measure, "ci_low", "ci_high"]].to_numpy(dtype=float)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    low, high = min(0.0, low), max(0.0, high)
    pad = (high - low) * 0.05 or 1.0
    return (low - pad if low < 0 else 0.0, high + pad)


def build_chart(data: pd.DataFrame, spec: ChartSpec, title: str) -> hv.Element | hv.Overlay:
    """A HoloViews object with title, axis labels in words, hover tooltips giving n and
    the interval, error bars (bars) or bands (lines), and unreliable groups faded."""
    measure = spec.effective_measure
    m_dim = _measure_dim(measure)
    estimates = "reliable" in data.columns  # drawn from warehouse.estimates (not the count-only charts)
    vdims = _value_dims(data, spec) if estimates else [m_dim]
    common = {"title": title, "tools": ["hover"], "fontsize": {"title": "11pt"}}
    hooks = [fade_hook] if estimates else []
    if spec.kind == "bar":
        chart = hv.Bars(data, kdims=[_dim(spec.x)], vdims=vdims).opts(
            xrotation=45 if len(data) > 8 else 0,
            yformatter=_yformat(measure),
            color="#3b6ea5",
            hover_tooltips=_tooltips(data, spec, [spec.x]),
            **common,
        )
        if spec.has_intervals:
            chart = (chart * _error_bars(data, spec)).opts(title=title, fontsize=common["fontsize"])
            hooks.append(whisker_colour_hook)
    elif spec.kind in ("stacked", "grouped"):
        assert spec.group is not None
        if spec.kind == "grouped" and spec.has_intervals:
            hooks += [whisker_hook, whisker_colour_hook]  # hv.ErrorBars cannot follow grouped (nested) bars
        chart = hv.Bars(data, kdims=[_dim(spec.x), _dim(spec.group)], vdims=vdims).opts(
            stacked=spec.kind == "stacked",
            multi_level=False,
            xrotation=45 if data[spec.x].nunique() > 6 else 0,
            yformatter=_yformat(measure),
            cmap="Category20",
            legend_position="right",
            show_legend=True,
            hover_tooltips=_tooltips(data, spec, [spec.x, spec.group]),
            **common,
        )
    elif spec.kind == "heatmap":
        assert spec.group is not None
        chart = hv.HeatMap(data, kdims=[_dim(spec.x), _dim(spec.group)], vdims=vdims).opts(
            hover_tooltips=_tooltips(data, spec, [spec.x, spec.group]),
            colorbar=True,
            cmap="viridis",
            xrotation=45,
            clabel=measure_title(measure),
            cformatter=NumeralTickFormatter(format="0.[0]a" if measure == "population" else "0,0.[0]"),
            **common,
        )
    elif spec.kind == "line":
        chart = _line_chart(data, spec, vdims, title)
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
    if hooks:
        chart = chart.opts(hooks=hooks)
        limits = _y_limits(data, spec)
        if limits is not None and spec.kind != "line":
            chart = chart.opts(ylim=limits)
    return chart


def _error_bars(data: pd.DataFrame, spec: ChartSpec) -> hv.ErrorBars:
    """Each bar's interval (asymmetric: a Wilson interval is not centred on the share)."""
    measure = spec.effective_measure
    rows = data[data["ci_low"].notna() & data["ci_high"].notna()]
    frame = pd.DataFrame(
        {
            spec.x: rows[spec.x],
            measure: rows[measure],
            "below": rows[measure] - rows["ci_low"],
            "above": rows["ci_high"] - rows[measure],
        }
    )
    return hv.ErrorBars(frame, kdims=[_dim(spec.x)], vdims=[_measure_dim(measure), "below", "above"]).opts(
        color="#222222", line_width=1.5
    )


LINE_COLOURS: Final = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _line_chart(data: pd.DataFrame, spec: ChartSpec, vdims: list[Any], title: str) -> hv.Overlay:
    """Per line: its interval as a band, the line, and a point per age (faded where few
    people stand behind it), whose tooltip gives n and the interval."""
    measure = spec.effective_measure
    age = _dim("age")
    parts = data.groupby(spec.group, sort=False) if spec.group else [(None, data)]
    layers: list[Any] = []
    tips = _tooltips(data, spec, ["age", *([spec.group] if spec.group else [])])
    for index, (name, part) in enumerate(parts):
        colour = LINE_COLOURS[index % len(LINE_COLOURS)] if spec.group else "#3b6ea5"
        label = {"label": str(name)} if spec.group else {}
        if spec.has_intervals:
            band = hv.Area(part, kdims=[age], vdims=["ci_low", "ci_high"], **label)
            layers.append(band.opts(color=colour, alpha=0.18, line_alpha=0))
        layers.append(hv.Curve(part, kdims=[age], vdims=vdims, **label).opts(color=colour, line_width=2))
        points = hv.Scatter(part, kdims=[age], vdims=vdims, **label)
        layers.append(points.opts(color=colour, size=5, tools=["hover"], hover_tooltips=tips))
    overlay = hv.Overlay(layers).opts(
        title=title, fontsize={"title": "11pt"}, show_legend=spec.group is not None, ylabel=measure_title(measure)
    )
    if spec.group:
        overlay = overlay.opts(legend_position="right")
    return overlay.opts(hv.opts.Curve(yformatter=_yformat(measure)), hv.opts.Scatter(yformatter=_yformat(measure)))


def fade_hook(plot: Any, _element: Any) -> None:
    """Draw each unreliable group faded (and hatched, where it has a fill), from the
    `reliable` column of the glyph's own data source: HoloViews maps style columns in
    another row order than it draws grouped bars in, so the flag is read where it is drawn."""
    from bokeh.core.properties import field

    for renderer in getattr(plot.state, "renderers", []):
        source = getattr(renderer, "data_source", None)
        glyph = getattr(renderer, "glyph", None)
        if source is None or glyph is None or "reliable" not in source.data:
            continue
        # A heatmap's source holds its values as text ('True' / 'False').
        flags = [value is True or str(value) in ("True", "1", "1.0") for value in source.data["reliable"]]
        source.data["fade_alpha"] = [1.0 if ok else FADED_ALPHA for ok in flags]
        for prop in ("fill_alpha", "line_alpha"):
            if _per_point(glyph, prop):  # (a line is one mark: its points fade instead)
                setattr(glyph, prop, field("fade_alpha"))
        if type(glyph).__name__ == "Scatter":  # a line's points: hollow where unreliable
            source.data["fade_fill"] = [1.0 if ok else 0.0 for ok in flags]
            glyph.fill_alpha = field("fade_fill")
            glyph.line_alpha = 0.8
        if type(glyph).__name__ in ("VBar", "Rect"):
            source.data["fade_hatch"] = [" " if ok else FADED_HATCH for ok in flags]
            glyph.hatch_pattern = field("fade_hatch")
            glyph.hatch_color = "#333333"
            glyph.hatch_alpha = 0.6
        _legend_from_reliable_rows(plot.state, renderer, flags)


def _per_point(glyph: Any, prop: str) -> bool:
    """Whether a glyph's property can take a value per data point (a Bokeh DataSpec)."""
    from bokeh.core.property.dataspec import DataSpec

    return hasattr(glyph, prop) and isinstance(glyph.lookup(prop).property, DataSpec)


def _legend_from_reliable_rows(figure: Any, renderer: Any, flags: list[bool]) -> None:
    """A legend entry drawn from a column (grouped or stacked bars) shows its first row's
    look, which may be a faded one: point each entry at a reliable row of its group.
    The entries made here name their column (a later result drawn into the same figure
    has its rows in another order: they are made again from it)."""
    from bokeh.core.properties import value
    from bokeh.models import LegendItem

    data = renderer.data_source.data
    for legend in getattr(figure, "legend", []):
        items, remade = [], set()
        for item in legend.items:
            if item.name == RELIABLE_LEGEND_ITEM:
                column = item.tags[0] if item.tags else None
            elif item.label is not None and item.index is None:
                column = getattr(item.label, "field", None)
            else:
                column = None
            if renderer not in item.renderers or column not in data:
                items.append(item)
                continue
            if column in remade:  # this column's entries are already made again
                continue
            remade.add(column)
            labels = list(data[column])
            for label in dict.fromkeys(labels):
                rows = [i for i, name in enumerate(labels) if name == label]
                index = next((i for i in rows if flags[i]), rows[0])
                items.append(
                    LegendItem(
                        label=value(str(label)),
                        renderers=[renderer],
                        index=index,
                        name=RELIABLE_LEGEND_ITEM,
                        tags=[column],
                    )
                )
        legend.items = items


def whisker_colour_hook(plot: Any, _element: Any, colour: str | None = None) -> None:
    """Error bars dark on a light page and light on a dark one (exported images are
    always light: size_for_export passes the colour)."""
    colour = colour or ("#e6e6e6" if pn.config.theme == "dark" else "#222222")
    for annotation in getattr(plot.state, "center", []):
        if type(annotation).__name__ == "Whisker":
            annotation.line_color = colour
            for head in (annotation.upper_head, annotation.lower_head):
                if head is not None:
                    head.line_color = colour


WHISKERS_NAME: Final = "interval-whiskers"
RELIABLE_LEGEND_ITEM: Final = "legend-from-reliable-row"


def whisker_hook(plot: Any, _element: Any) -> None:
    """Error bars on grouped bars: a Bokeh Whisker at each bar's nested (x, group) position,
    read from the bars' own data source."""
    from bokeh.models import ColumnDataSource, TeeHead, Whisker

    figure = plot.state
    # A new result drawn into this figure runs the hook again: its whiskers replace these.
    figure.center = [item for item in figure.center if getattr(item, "name", None) != WHISKERS_NAME]
    for renderer in list(getattr(figure, "renderers", [])):
        data = getattr(getattr(renderer, "data_source", None), "data", {})
        if "xoffsets" not in data or "ci_low" not in data:
            continue
        keep = [
            i for i, (low, high) in enumerate(zip(data["ci_low"], data["ci_high"], strict=True))
            if np.isfinite(low) and np.isfinite(high)
        ]  # fmt: skip
        source = ColumnDataSource(
            {
                "base": [tuple(data["xoffsets"][i]) for i in keep],
                "lower": [float(data["ci_low"][i]) for i in keep],
                "upper": [float(data["ci_high"][i]) for i in keep],
            }
        )
        whisker = Whisker(
            source=source,
            base="base",
            lower="lower",
            upper="upper",
            line_color="#222222",
            line_width=1.5,
            upper_head=TeeHead(size=8, line_color="#222222"),
            lower_head=TeeHead(size=8, line_color="#222222"),
            name=WHISKERS_NAME,
        )
        figure.add_layout(whisker)


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
    """The page shows the title above the chart as text, where it wraps. The axes fit
    each new result (`framewise`), as a new figure's would. (One `opts` call each:
    HoloViews validates every call, a few ms each.)"""
    if isinstance(chart, hv.Overlay):
        chart = chart.map(lambda layer: layer.opts(framewise=True, clone=True), hv.Element)
    return chart.opts(responsive=True, height=SCREEN_HEIGHT, title="", framewise=True, clone=True)


def chart_layout(result: ChartResult) -> tuple[Any, ...]:
    """What a new result must share with the chart on screen to be drawn into its
    figure: the chart's choices, its layers (a line or histogram per group) and the
    groups its legend or axis names (a legend entry is not added or removed in place)."""
    chart, data = result.chart, result.data
    layers = list(chart.values()) if isinstance(chart, hv.Overlay) else [chart]
    named: list[tuple[str, ...]] = []
    for column in (result.spec.group, "group"):
        if data is not None and column in data.columns:
            named.append(tuple(sorted(map(str, data[column].unique()))))
    return result.spec, tuple((type(layer).__name__, layer.group, layer.label) for layer in layers), tuple(named)


def size_for_export(chart: Any, footnote: str = "") -> Any:
    """Export size, with the title wrapped onto as many lines as it needs: the subject
    first, then the filters and the number of people in a smaller subtitle; and the
    footnote (intervals, small groups, source) under the chart."""
    width, height = EXPORT_SIZE
    options = hv.Store.lookup_options("bokeh", chart, "plot").kwargs
    title = str(options.get("title") or "")
    hooks = [*options.get("hooks", []), wrapped_title_hook(title, width)]  # keep the fading and error bars
    if whisker_colour_hook in hooks:  # the image is light whatever the page's theme
        hooks.append(lambda plot, element: whisker_colour_hook(plot, element, "#222222"))
    if footnote:
        hooks.append(footnote_hook(footnote, width))
    return chart.opts(responsive=False, width=width, height=height, toolbar=None, hooks=hooks, clone=True)


def export_chart(result: ChartResult) -> Any:
    """The chart of a result as the PNG/JPG export draws it (a Bokeh model: the image
    exporter draws it as it is), footnote included."""
    return hv.render(size_for_export(result.chart, result.footnote), backend="bokeh")


def footnote_hook(text: str, width: int) -> Callable[[Any, Any], None]:
    """The footnote under the plot, wrapped to the image's width."""

    def hook(plot: Any, _element: Any) -> None:
        from bokeh.models import Title

        figure = plot.state
        if not hasattr(figure, "add_layout"):
            return
        # Bokeh stacks "below" annotations from the plot outwards: the first line first.
        for line in textwrap.wrap(text, max(40, int((width - 60) / (FOOTNOTE_PX * 0.5)))):
            note = Title(text=line, text_font_size=f"{FOOTNOTE_PX}px", text_font_style="normal", text_color="#333333")
            figure.add_layout(note, "below")

    return hook


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
    estimates: pd.DataFrame | None = None  # estimate_groups' rows drawn (the chart-data CSV)
    faded: int = 0
    hidden: int = 0
    min_n: int = 30
    max_rse: float = 0.30

    @property
    def footnote(self) -> str:
        return footnote(self)


def make_chart(store: DataStore, spec: ChartSpec, people_filter: PeopleFilter) -> ChartResult:
    """Everything a filter or chart change recomputes: count, data, chart or a message."""
    started = time.perf_counter()
    problem = spec.problem()
    if problem:
        return ChartResult(spec, people_filter, 0, None, None, problem, time.perf_counter() - started)
    collected = collect_chart_data(store, spec, people_filter)
    data, people = collected.frame, collected.people
    trust = {
        "estimates": collected.estimates,
        "faded": collected.faded,
        "hidden": collected.hidden,
        "min_n": collected.min_n,
        "max_rse": collected.max_rse,
    }
    if people == 0:
        message = (
            f"No one matches these filters ({people_filter.describe()}). Widen or reset the filters to see a chart."
        )
        return ChartResult(spec, people_filter, 0, None, None, message, time.perf_counter() - started)
    if data.empty:  # every group hidden
        message = (
            f"Every group here is too small to trust ({small_groups_rule(spec, collected.min_n, collected.max_rse)})"
            ": untick Hide small groups to see them faded, or widen the filters."
        )
        return ChartResult(spec, people_filter, people, None, None, message, time.perf_counter() - started, **trust)
    chart = build_chart(data, spec, spec.title(people_filter, people))
    return ChartResult(spec, people_filter, people, data, chart, None, time.perf_counter() - started, **trust)


def small_groups_rule(spec: ChartSpec, min_n: int, max_rse: float) -> str:
    """'fewer than 30 people or a relative standard error above 30%' (from the settings)."""
    rule = f"fewer than {min_n} people"
    return f"{rule} or a relative standard error above {max_rse:.0%}" if spec.has_intervals else rule


def footnote(result: ChartResult) -> str:
    """The line under an exported chart, from the chart's actual settings: the intervals,
    sample or census-weighted estimates, faded or hidden small groups, the source."""
    return "; ".join(footnote_parts(result))


def footnote_parts(result: ChartResult) -> list[str]:
    spec = result.spec
    parts = []
    if spec.has_intervals:
        method = "Wilson score" if MEASURE_DEFS[spec.effective_measure].percent else "Student t"
        how = (
            "census-weighted (fnlwgt; Kish effective sample size, strata and clusters ignored)"
            if spec.census_weighted
            else "sample estimates (unweighted)"
        )
        parts.append(f"{spec.confidence:.0%} intervals ({method}); {how}")
    rule = small_groups_rule(spec, result.min_n, result.max_rse)
    if spec.kind not in COUNT_ONLY:
        if result.hidden:
            groups = "group" if result.hidden == 1 else "groups"
            parts.append(f"hidden: {result.hidden} {groups} with {rule}")
        if result.faded:
            parts.append(f"faded: {rule}")
    parts.append(f"source: {SOURCE}")
    return parts


# The chart's options besides type, axes and measure (each in the page URL, see ChartSpec.to_params).
CHART_OPTIONS: Final = ("weighted", "order", "hide_small", "confidence")

# Served pages' charts answered in SQL are computed here, off the event loop (VisualizeView._update).
_chart_pool: Final = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chart")


class VisualizeView(pn.viewable.Viewer):
    chart_type = param.Selector(default="bar", objects={v: k for k, v in CHART_TYPES.items()}, label="Chart type")
    x = param.Selector(default="education", objects={attribute_title(c): c for c in GROUP_COLUMNS}, label="X axis")
    group = param.Selector(
        default=None,
        objects={attribute_title(g) if g else "(none)": g for g in group_choices()},
        label="Group / colour by",
    )
    measure = param.Selector(default="people", objects={v: k for k, v in MEASURES.items()}, label="Measure")
    weighted = param.Selector(default=False, objects=ESTIMATES, label="Estimates")
    order = param.Selector(default="category", objects=ORDERS, label="Sort bars")
    hide_small = param.Boolean(default=False, label="Hide small groups")
    confidence = param.Selector(default=DEFAULT_CONFIDENCE, objects=CONFIDENCES, label="Intervals")
    export_scale = param.Selector(default=1, objects=EXPORT_SCALES, label="Image size")
    result = param.Parameter(default=None, doc="The last ChartResult (read by the image export).")

    def __init__(self, store: DataStore, filters: FilterPanel | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.store = store
        self.filters = filters or FilterPanel()
        # Each chart shown passes through the hooks; each new figure (a DynamicMap that
        # later results of the same layout flow into) is given to the listeners
        # (explorer.crossfilter adds its pick tools as a hook, its streams as a listener).
        self.chart_hooks: list[Callable[[Any, ChartResult], Any]] = []
        self.chart_listeners: list[Callable[[hv.DynamicMap], None]] = []
        self._computing = self._compute_again = False
        self._set_choices()
        self.filters.param.watch(lambda _event: self._update(), "people_filter")
        self._update()

    @property
    def spec(self) -> ChartSpec:
        return ChartSpec(
            self.chart_type,
            self.x,
            self.group,
            self.measure,
            weighted=self.weighted,
            order=self.order,
            hide_small=self.hide_small,
            confidence=self.confidence,
        )

    def set_spec(self, spec: ChartSpec) -> None:
        with param.parameterized.batch_call_watchers(self):
            self.chart_type = spec.kind
            self._set_choices()
            if spec.x in x_choices(spec.kind):
                self.x = spec.x
            if spec.group in group_choices(spec.kind):
                self.group = spec.group
            self.measure = spec.measure
            self.param.update(
                weighted=spec.weighted, order=spec.order, hide_small=spec.hide_small, confidence=spec.confidence
            )

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

    @param.depends("chart_type", "x", "group", "measure", *CHART_OPTIONS, watch=True)
    def _update(self) -> None:
        """Recompute the chart for the current spec and filter. Right here when its
        queries are answered by the analytic copy (tens of milliseconds), and outside a
        served page, with worker threads, or for a page's first chart. But in a served
        page whose callbacks run on the event loop (the default), while the answers
        come from SQL (the copy being built at start or after an upload, or refused
        for size: up to seconds on 1,000,000 people), in a chart thread, shown on the
        loop when done: one session's slow query never holds up the others. Not always
        in the thread: the thread's Python work (the frame, the HoloViews element)
        competes with the loop for the interpreter lock, and with 8 analysts that took
        the p95 from 0.26 s to 0.7-1.1 s (python -m benchmarks.explorer --concurrency)."""
        document = pn.state.curdoc
        threaded = getattr(pn.state, "_thread_pool", None) is not None
        served_on_loop = document is not None and document.session_context is not None and not threaded
        if self.result is None or not served_on_loop or self.store.answers_from_copy():
            self._show(self._compute(self.spec, self.filters.people_filter))
            return
        if self._computing:  # the running computation is followed by one for the newest state
            self._compute_again = True
            return
        self._computing, self._compute_again = True, False
        self._set_loading(True)
        spec, people_filter = self.spec, self.filters.people_filter

        def show(future: Future[ChartResult]) -> None:
            self._computing = False
            with set_curdoc(document):
                if self._compute_again or (spec, people_filter) != (self.spec, self.filters.people_filter):
                    self._update()  # what changed meanwhile: its answer replaces this one
                else:
                    self._show(future.result())

        answer_on_loop(_chart_pool, document, lambda: self._compute(spec, people_filter), show, "chart")

    def _compute(self, spec: ChartSpec, people_filter: PeopleFilter) -> ChartResult:
        try:
            return make_chart(self.store, spec, people_filter)
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            message = f"The database could not answer: {reason}. Reload the page to try again."
            return ChartResult(spec, people_filter, 0, None, None, message, 0.0)

    def _show(self, result: ChartResult) -> None:
        try:
            # The chart and its texts in one message, one walk of the model graph (as FilterPanel._sync).
            with hold(freeze=True):
                self.result = result
        finally:
            self._set_loading(False)

    def _set_loading(self, loading: bool) -> None:
        holder = getattr(self, "_chart_holder", None)
        if holder is not None:
            holder.loading = loading

    def _chart_panes(self) -> pn.Column:
        """The chart area's panes, built once and updated in place on each new result
        (their `object`s), the chart itself through a DynamicMap's Pipe: a filter change
        then sends the new data into the figure on screen instead of a new figure (what
        a change cost most, on the server and in the browser)."""
        self._message = pn.pane.Alert(
            "", alert_type="info", visible=False, sizing_mode="stretch_width", css_classes=["chart-message"]
        )
        self._heading = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["chart-heading"])
        self._plot = pn.pane.HoloViews(
            None, sizing_mode="stretch_width", height=SCREEN_HEIGHT + 20, css_classes=["chart"]
        )
        self._caption = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["chart-caption"])
        self._data = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["chart-data"])
        self._pipe: hv.streams.Pipe | None = None
        self._layout_shown: tuple[Any, ...] | None = None
        # Shown or hidden together (the HoloViews pane's own `visible` fails to reach
        # its inner Bokeh pane in Panel 1.9: a TypeError on its stylesheets).
        self._drawn = pn.Column(self._heading, self._plot, self._caption, self._data, sizing_mode="stretch_width")
        self._show_result()
        self.param.watch(lambda _event: self._show_result(), "result")
        return pn.Column(self._message, self._drawn, sizing_mode="stretch_width")

    def _show_result(self) -> None:
        result = self.result
        drawn = result is not None and result.chart is not None
        if not drawn:
            kind = "info" if result is not None and result.people == 0 and not result.spec.problem() else "warning"
            self._message.param.update(object=result.message if result else "", alert_type=kind, visible=True)
        else:
            self._draw(result)
            # The title is page text above the chart (it wraps; a canvas title is cut off),
            # and the chart's numbers follow as a table: the chart's text alternative.
            self._heading.object = chart_heading(result)
            self._caption.object = chart_caption(result)
            self._data.object = chart_text_alternative(result)
            self._message.visible = False
        self._drawn.visible = drawn

    def _draw(self, result: ChartResult) -> None:
        """Into the figure on screen when the chart keeps its layout, else a new figure."""
        layout = chart_layout(result)
        if self._pipe is not None and layout == self._layout_shown:
            self._pipe.send(result)
            return
        self._pipe = hv.streams.Pipe(data=result)
        chart = hv.DynamicMap(self._screen_chart, streams=[self._pipe])
        for listen in self.chart_listeners:
            listen(chart)
        self._plot.object = chart
        self._layout_shown = layout

    def _screen_chart(self, data: ChartResult) -> Any:
        chart = size_for_screen(data.chart)
        for hook in self.chart_hooks:
            chart = hook(chart, data)
        return chart

    def _note(self) -> pn.pane.Markdown:
        """How many people the chart counts, updated in place with each result."""
        note = pn.pane.Markdown(chart_note(self.result), css_classes=["chart-note"], margin=(0, 10))
        self.param.watch(lambda event: setattr(note, "object", chart_note(event.new)), "result")
        return note

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

    def options(self) -> pn.FlexBox:
        """How far to trust the numbers: sample or census-weighted, the interval level,
        small groups faded or hidden; and the bars' order."""
        weighted = pn.widgets.RadioButtonGroup.from_param(
            self.param.weighted, color="primary", variant="outline", css_classes=["estimates-switch"]
        )
        confidence = pn.widgets.Select.from_param(self.param.confidence, width=130)
        order = pn.widgets.Select.from_param(self.param.order, width=190)
        hide = pn.widgets.Checkbox.from_param(self.param.hide_small, css_classes=["hide-small"], align="end")

        def applies(*_: Any) -> None:
            spec = self.spec
            # Weights and intervals apply to shares and means; sorting to bar charts.
            weighted.disabled = confidence.disabled = not spec.has_intervals
            order.disabled = spec.kind not in BAR_KINDS
            hide.disabled = spec.kind in COUNT_ONLY

        self.param.watch(applies, ["chart_type", "measure"])
        applies()
        return pn.FlexBox(
            pn.Column(pn.pane.HTML("<span>Estimates</span>", margin=(5, 10, 0, 10)), weighted, width=240),
            confidence,
            order,
            hide,
            sizing_mode="stretch_width",
            css_classes=["chart-options"],
        )

    def __panel__(self) -> pn.viewable.Viewable:
        from explorer.image_export import download_buttons

        controls = self.controls()
        self._chart_holder = pn.Column(self._chart_panes(), sizing_mode="stretch_width")
        for widget in controls:
            widget.jslink(self._chart_holder, value="loading")
        self.filters.show_loading_on(self._chart_holder)
        chart_area = pn.Column(
            controls,
            self.options(),
            self._chart_holder,
            chart_data_download(self),
            self._note(),
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


def chart_note(result: ChartResult | None) -> str:
    if result is None or result.chart is None:
        return ""
    text = f"{result.people:,} people match"
    if result.spec.kind in COUNT_ONLY and result.spec.measure != "people":
        text += " · histograms and box plots count people (the measure does not apply)"
    return text


def chart_heading(result: ChartResult) -> str:
    subtitle = result.spec.subtitle(result.people_filter, result.people)
    return (
        f'<h2 class="chart-title" style="font-size:1.1rem;margin:4px 0 2px">{html.escape(result.spec.subject())}</h2>'
        f'<p class="chart-subtitle" style="margin:0;color:inherit;opacity:.85">{html.escape(subtitle)}</p>'
    )


def chart_caption(result: ChartResult) -> str:
    """What the error bars and the faded groups mean, under the chart (the export's footnote)."""
    spec = result.spec
    what = "Bands" if spec.kind == "line" else "Error bars"
    parts = []
    if spec.has_intervals and spec.kind != "heatmap":
        parts.append(f"{what} show {spec.confidence:.0%} intervals.")
    if result.faded:
        groups = "group is" if result.faded == 1 else "groups are"
        look = "faded" if spec.kind in ("line", "heatmap") else "faded and hatched"
        parts.append(
            f"{result.faded} {groups} {look}: {small_groups_rule(spec, result.min_n, result.max_rse)}; "
            "tick Hide small groups to leave them out."
        )
    # Then the export's footnote, less what the sentence above already says.
    rest = "; ".join(part for part in footnote_parts(result) if not part.startswith("faded:"))
    explained = f"{html.escape(' '.join(parts))}<br>" if parts else ""
    return (
        f'<p class="chart-footnote" style="margin:2px 0;font-size:0.9rem">{explained}'
        f'<span style="opacity:.85">{html.escape(rest[:1].upper() + rest[1:])}</span></p>'
    )


def chart_table(result: ChartResult) -> pd.DataFrame:
    """The chart's data as people read it: group, n, estimate, interval, flag."""
    data = result.data
    assert data is not None
    spec = result.spec
    if "reliable" not in data.columns:  # histograms and box plots: their own numbers
        frame = data.copy()
        frame.columns = [
            measure_title(c) if c in MEASURES else attribute_title(c) if c in (*GROUP_COLUMNS, AGE_BAND) else c.title()
            for c in frame.columns
        ]
        return frame
    measure = spec.effective_measure
    keys = [c for c in ([spec.x if spec.kind != "line" else "age", spec.group]) if c]
    table = pd.DataFrame({attribute_title(key): data[key] for key in keys})
    table["People (n)"] = [f"{n:,}" for n in data["people"]]
    if measure != "people":
        table[measure_title(measure)] = [format_value(v, measure) for v in data[measure]]
    if spec.has_intervals:
        table[f"{spec.confidence:.0%} interval"] = data["interval"]
    table["Flag"] = data["note"]
    return table


def chart_text_alternative(result: ChartResult, max_rows: int = 200) -> str:
    """The chart's numbers as an HTML table in a <details>: what a screen reader (or
    anyone who wants the figures) reads instead of the canvas."""
    if result.data is None:
        return ""
    data = chart_table(result)
    table = data.head(max_rows).to_html(
        index=False, float_format=lambda v: f"{v:,.2f}", border=0, classes="chart-table"
    )
    more = f"<p>First {max_rows} of {len(data):,} rows.</p>" if len(data) > max_rows else ""
    return (
        f"<details><summary>Chart data as a table ({html.escape(result.spec.subject())})</summary>"
        f"{table}{more}</details>"
    )


def chart_csv(result: ChartResult) -> bytes:
    """The chart's data as CSV. A chart of estimates: one row per group drawn, in the
    chart's order, with the API's /stats fields of the same names (the group keys, `n`,
    the estimate, its standard error, interval and reliability flag, census-weighted
    ones named `<measure>_weighted...`; a share as 0..1, a missing category empty)."""
    if result.estimates is not None:
        spec = result.spec
        measure = spec.effective_measure
        frame = result.estimates
        keys = [c for c in frame.columns if c in GROUP_COLUMNS]
        out = frame[[*keys, "n"]].copy()
        if spec.has_intervals:
            # /stats' field names: share_over_50k_ci_low, or share_over_50k_weighted_ci_low.
            stem = f"{measure}_weighted" if spec.census_weighted else measure
            out[stem] = frame[measure]
            for part in ("se", "ci_low", "ci_high", "reliable"):
                out[f"{stem}_{part}"] = frame[estimate_column(measure, part)]
        else:
            out[measure] = frame[measure]
            out["reliable"] = frame["reliable"]
    elif result.data is not None:
        out = result.data
    else:
        return b""
    return out.to_csv(index=False).encode("utf-8")


def chart_data_download(view: VisualizeView) -> pn.widgets.FileDownload:
    """'Download chart data (CSV)': the numbers behind the chart on screen."""
    button = pn.widgets.FileDownload(
        label="Download chart data (CSV)",
        filename="chart-data.csv",
        color="primary",
        variant="outline",
        width=260,
        css_classes=["download-chart-data"],
    )

    def callback() -> io.BytesIO:
        result = view.result
        return io.BytesIO(chart_csv(result) if result is not None else b"")

    def refresh(*_: Any) -> None:
        result = view.result
        button.disabled = result is None or result.data is None
        if result is not None:
            button.filename = result.spec.filename("csv").replace("census-", "census-chart-data-", 1)

    button.callback = callback
    view.param.watch(refresh, "result")
    refresh()
    return button
