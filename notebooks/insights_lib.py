"""Helpers for notebooks/insights.ipynb: getting data through the query layer,
formatting numbers the same way everywhere, and writing insights.json.

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


def weighted_shares(
    connection: Connection, group_by: str | None = None, people_filter: PeopleFilter = EVERYONE
) -> pd.DataFrame:
    """Unweighted and fnlwgt-weighted share earning >50K, per group (or overall).

    The weighted share is sum(fnlwgt of people >50K) / sum(fnlwgt), both sums
    computed by the query layer (the `population` measure grouped by income).
    Columns: [group], people, population, share_over_50k, weighted_share_over_50k,
    sample_share (of rows), population_share (of summed weight).
    """
    groups = [group_by] if group_by else []
    totals = aggregate_frame(connection, people_filter, groups, ("people", "population", "share_over_50k"))
    by_income = aggregate_frame(connection, people_filter, [*groups, "income"], ("population",))
    high = by_income[by_income["income"] == ">50K"].drop(columns="income").rename(columns={"population": "high"})
    merged = totals.merge(high, how="left", on=groups) if groups else totals.assign(high=high["high"].sum())
    merged["high"] = merged["high"].fillna(0)
    merged["weighted_share_over_50k"] = merged["high"] / merged["population"]
    merged["sample_share"] = merged["people"] / merged["people"].sum()
    merged["population_share"] = merged["population"] / merged["population"].sum()
    return merged.drop(columns="high")


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


# --------------------------------------------------------------------------- reversals


def reversal_scan(
    frame: pd.DataFrame,
    attributes: Sequence[str],
    strata: Sequence[str],
    outcome: str,
    min_group: int = 300,
    min_cell: int = 30,
    min_strata: int = 3,
) -> pd.DataFrame:
    """Simpson-style reversals: pairs of groups of an attribute (each with at least
    `min_group` people) where the group with the higher overall mean of `outcome`
    has the lower mean in *every* stratum of another attribute in which both groups
    have at least `min_cell` people (and there are at least `min_strata` such strata).

    Returns one row per reversal, most strata compared first.
    """
    rows: list[dict[str, Any]] = []
    for attribute in attributes:
        overall = frame.groupby(attribute)[outcome].agg(["mean", "size"])
        overall = overall[overall["size"] >= min_group]
        levels = sorted(overall.index)
        for stratum in strata:
            if stratum == attribute:
                continue
            cells = frame.groupby([attribute, stratum])[outcome].agg(["mean", "size"])
            means = cells["mean"].unstack()
            sizes = cells["size"].unstack().fillna(0)
            for index, first in enumerate(levels):
                for second in levels[index + 1 :]:
                    if overall.loc[first, "mean"] == overall.loc[second, "mean"]:
                        continue
                    ahead = overall.loc[first, "mean"] > overall.loc[second, "mean"]
                    high, low = (first, second) if ahead else (second, first)
                    usable = (sizes.loc[high] >= min_cell) & (sizes.loc[low] >= min_cell)
                    compared = int(usable.sum())
                    if compared < min_strata:
                        continue
                    if bool((means.loc[low][usable] > means.loc[high][usable]).all()):
                        rows.append(
                            {
                                "attribute": attribute,
                                "within": stratum,
                                "higher overall": high,
                                "its share": overall.loc[high, "mean"],
                                "its people": int(overall.loc[high, "size"]),
                                "lower overall": low,
                                "lower share": overall.loc[low, "mean"],
                                "lower people": int(overall.loc[low, "size"]),
                                "strata compared": compared,
                            }
                        )
    columns = [
        "attribute",
        "within",
        "higher overall",
        "its share",
        "its people",
        "lower overall",
        "lower share",
        "lower people",
        "strata compared",
    ]
    result = pd.DataFrame(rows, columns=columns)
    order = ["strata compared", "attribute", "within"]
    return result.sort_values(order, ascending=[False, True, True], ignore_index=True)
