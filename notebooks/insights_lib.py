"""Helpers for notebooks/insights.ipynb: getting data through the query layer,
attaching intervals and tests from warehouse.stats, formatting numbers (and
"36.3% (95% CI 30.0–43.1%) of 204") the same way everywhere, bar charts with
error bars, and writing insights.json.

The notebook keeps its analysis visible in its cells; what lives here is the
plumbing that must behave identically on every run (so insights.json is
byte-identical) and that the tests can check on their own.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pandas as pd
from sqlalchemy import Connection, Engine

from warehouse import stats
from warehouse.config import PROJECT_ROOT, get_settings
from warehouse.db import make_engine
from warehouse.query import PEOPLE_COLUMNS, PeopleFilter, aggregate_people, iter_people

INSIGHTS_ENV: Final = "INSIGHTS_PATH"
DEFAULT_INSIGHTS_PATH: Final = PROJECT_ROOT / "insights.json"
EVERYONE: Final = PeopleFilter()


# --------------------------------------------------------------------------- data access


def engine_from_settings() -> Engine:
    """The engine for DATABASE_URL (default: the SQLite file data/census.db)."""
    return make_engine(get_settings().database_url)


def people_frame(
    connection: Connection, people_filter: PeopleFilter = EVERYONE, batch_size: int = 10_000
) -> pd.DataFrame:
    """Every matching person as a DataFrame (columns of the people view), built from
    iter_people batches."""
    rows: list[tuple[Any, ...]] = []
    for batch in iter_people(connection, people_filter, PEOPLE_COLUMNS, batch_size=batch_size):
        rows.extend(batch)
    return pd.DataFrame.from_records(rows, columns=list(PEOPLE_COLUMNS))


def aggregate_frame(
    connection: Connection,
    people_filter: PeopleFilter = EVERYONE,
    group_by: Sequence[str] = (),
    measures: Sequence[str] = ("people", "share_over_50k"),
) -> pd.DataFrame:
    """aggregate_people as a DataFrame (one row per group, SQL-computed measures)."""
    rows = aggregate_people(connection, people_filter, group_by, measures)
    return pd.DataFrame(rows, columns=[*group_by, *measures])


def standardize(rates: pd.Series, mix: pd.Series) -> float:
    """Direct standardization: the share a group would have with its own rates per
    stratum but another group's mix of strata (mix is normalized here; strata
    missing from `rates` are dropped from both)."""
    common = rates.index.intersection(mix.index)
    weights = mix.loc[common] / mix.loc[common].sum()
    return float((rates.loc[common] * weights).sum())


# --------------------------------------------------------------------------- formatting


def pct(value: float, digits: int = 1) -> str:
    """0.44798 -> '44.8%' (half-even rounding of the float, stable across runs)."""
    return f"{value * 100:.{digits}f}%"


def num(value: float | int) -> str:
    """19899 -> '19,899'."""
    return f"{int(round(value)):,}"


def points(value: float, digits: int = 1) -> str:
    """A difference of shares in percentage points: 0.1945 -> '19.5 points'."""
    return f"{value * 100:.{digits}f} points"


# --------------------------------------------------------------------------- uncertainty (warehouse.stats)

CONFIDENCE: Final = 0.95
ALPHA: Final = 1 - CONFIDENCE


def with_intervals(frame: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """An aggregate frame (people, share_over_50k per group) plus the count above 50K, the
    Wilson interval (ci_low, ci_high) and the reliability flag of warehouse.stats."""
    out = frame.copy()
    out["over_50k"] = (out["share_over_50k"].fillna(0) * out["people"]).round().astype(int)
    interval = stats.with_reliability(stats.wilson_share(out["over_50k"], out["people"], confidence))
    out["share_over_50k"] = interval["estimate"].to_numpy()
    for column in ("ci_low", "ci_high", "reliable"):
        out[column] = interval[column].to_numpy()
    return out


def counts_with_intervals(flags: pd.Series, confidence: float = CONFIDENCE) -> pd.Series:
    """One group of rows (a boolean Series: above 50K or not) as people, over_50k, share and interval."""
    return share_row(int(flags.sum()), int(flags.size), confidence)


def share_row(over_50k: float, people: float, confidence: float = CONFIDENCE) -> pd.Series:
    """people, over_50k, share_over_50k, ci_low, ci_high for one group."""
    people, hits = int(people), int(over_50k)
    row = stats.wilson_share(hits, people, confidence).iloc[0]
    return pd.Series(
        {"people": people, "over_50k": hits, "share_over_50k": row["estimate"], "ci_low": row["ci_low"],
         "ci_high": row["ci_high"]}
    )  # fmt: skip


def compare(first: Mapping[str, Any], second: Mapping[str, Any], confidence: float = CONFIDENCE) -> pd.Series:
    """Share of `first` minus share of `second` (each with people and over_50k): Newcombe
    interval and the pooled z-test p-value (warehouse.stats.two_proportion_test)."""
    return stats.two_proportion_test(
        first["over_50k"], first["people"], second["over_50k"], second["people"], confidence
    ).iloc[0]


def share_ci(row: Mapping[str, Any], digits: int = 1) -> str:
    """'36.3% (95% CI 30.0–43.1%) of 204': the share, its interval and the people behind it."""
    return (
        f"{pct(row['share_over_50k'], digits)} ({CONFIDENCE:.0%} CI {row['ci_low'] * 100:.{digits}f}–"
        f"{pct(row['ci_high'], digits)}) of {num(row['people'])}"
    )


def p_text(p_value: float) -> str:
    """'p < 0.001' below a thousandth, else 'p = 0.18' (two significant digits)."""
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"


def difference_text(test: Mapping[str, Any]) -> str:
    """'a difference of 13.7 points, 95% CI 10.8 to 16.6, p < 0.001'."""
    return (
        f"a difference of {points(test['difference'])}, {CONFIDENCE:.0%} CI {test['ci_low'] * 100:.1f} to "
        f"{test['ci_high'] * 100:.1f}, {p_text(test['p_value'])}"
    )


def interval_chart(
    frame: pd.DataFrame,
    label: str,
    title: str,
    color: str | None = None,
    xlabel: str = "",
    ylabel: str = "Share earning >50K (%)",
    width: int = 900,
    height: int = 340,
    rot: int = 30,
    horizontal: bool = False,
) -> Any:
    """Bars of share_over_50k in percent with their interval as error bars; `label` names
    each bar (with its attribute), `color` (optional) colours bars by a column and makes the
    legend. `horizontal` puts the labels on the vertical axis (for many or long labels)."""
    import holoviews as hv

    data = frame.assign(
        percent=frame["share_over_50k"] * 100,
        below=(frame["share_over_50k"] - frame["ci_low"]) * 100,
        above=(frame["ci_high"] - frame["share_over_50k"]) * 100,
        people_text=frame["people"].map(num),
    )
    top = float(data["ci_high"].max() * 100) * 1.15 + 1
    vdims = ["percent", "people_text", *([color] if color else [])]
    bars = hv.Bars(data, kdims=[label], vdims=vdims).opts(
        tools=["hover"], show_legend=bool(color), legend_position="right" if not horizontal else "bottom_right",
        fill_alpha=0.6, **({"color": color, "cmap": "Category10"} if color else {}),
    )  # fmt: skip
    errors = hv.ErrorBars(data, kdims=[label], vdims=["percent", "below", "above"]).opts(color="black", line_width=1.5)
    formatter = {"xformatter" if horizontal else "yformatter": "%.0f%%"}
    return (bars * errors).opts(
        width=width, height=height, title=title, invert_axes=horizontal, xrotation=0 if horizontal else rot,
        xlabel=xlabel, ylabel=ylabel, ylim=(0, top), **formatter,
    )  # fmt: skip


# --------------------------------------------------------------------------- insights.json


def insights_path() -> Path:
    """Where the notebook writes insights.json: $INSIGHTS_PATH, else the repo root
    (read by warehouse.config, the one module that reads the environment)."""
    return get_settings().insights_path


def render_insights(insights: Mapping[str, str]) -> str:
    """The exact text of insights.json: six question -> answer pairs, in the given
    order, 2-space indent, UTF-8 characters kept, one trailing newline."""
    if len(insights) != 6:
        raise ValueError(f"expected exactly six insights, got {len(insights)}")
    for question, answer in insights.items():
        if not question.strip().endswith("?"):
            raise ValueError(f"not a question: {question!r}")
        if not answer.strip():
            raise ValueError(f"empty answer for {question!r}")
    return json.dumps(dict(insights), indent=2, ensure_ascii=False) + "\n"


def write_insights(insights: Mapping[str, str], path: Path | None = None) -> Path:
    target = path or insights_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_insights(insights), encoding="utf-8")
    return target


# --------------------------------------------------------------------------- charts


def static_png(chart: Any) -> bytes | None:
    """A PNG of an hvplot/HoloViews chart, drawn by Bokeh in the explorer's headless
    Chromium (explorer.image_export), for viewers that do not run JavaScript
    (GitHub's notebook view). None, with a warning, when no browser is available:
    the interactive chart and the tables still carry the results."""
    import holoviews as hv

    try:
        from explorer.image_export import export_png

        model = hv.render(chart, backend="bokeh")
        if hasattr(model, "toolbar_location"):
            model.toolbar_location = None
        return export_png(model)
    except Exception as error:  # noqa: BLE001 - a missing browser must not stop the analysis
        warnings.warn(f"no static copy of the chart: {error}", stacklevel=2)
        return None
