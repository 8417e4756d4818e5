"""Estimates per group with their uncertainty: the one function the API, the explorer and
the notebook use for every interval and reliability flag they show.

The database (or the DuckDB analytic copy) sums the *sufficient statistics* each measure
declares in the contract (`Measure.uncertainty`: sums, sums of squares, of weights, of
squared weights); `warehouse.stats` turns them into estimates, standard errors and
intervals (Wilson for shares, Student t for means; census-weighted: Kish's effective
sample size); no row of people is pulled into Python.

`estimate_groups` answers one table, one row per group:

- the `group_by` columns (the values and order `aggregate_people` gives);
- `n`: people in the sample;
- per measure `m`: `m` (the sample estimate, or the census-weighted one when
  `weighted`; `people` and `population` are exact totals either way), `m__se`,
  `m__ci_low`, `m__ci_high` (NaN where no interval applies: the totals, an empty
  group, a mean of one person), `m__reliable`;
- `reliable`: at least `min_n` people and every measure's relative standard error at
  most `max_rse` (the NCHS presentation rule; see `warehouse.stats`).

`grouped_statistics` + `estimates_from_statistics` split it in two, so the API can
answer the sample and the census-weighted estimates from one query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from warehouse import analytics
from warehouse import stats as _stats
from warehouse.aggregates import Runner, aggregate_statement, validate_aggregate
from warehouse.config import get_settings
from warehouse.contract import MEASURE_DEFS, finish, statistics_for
from warehouse.filters import PeopleFilter, QueryError

SUFFIXES: Final = ("se", "ci_low", "ci_high", "reliable")  # m__se, m__ci_low, m__ci_high, m__reliable
SEPARATOR: Final = "__"


def check_parameters(confidence: float, min_n: int | None, max_rse: float | None) -> tuple[int, float]:
    """The thresholds to use (None: the configured ones); a QueryError naming a bad one."""
    try:
        _stats.z_value(confidence)
    except (ValueError, TypeError):
        allowed = [f"{level:.2f}" for level in _stats.CONFIDENCE_LEVELS]
        raise QueryError("confidence", f"{confidence!r} is not supported", allowed) from None
    settings = get_settings()
    chosen_n = settings.reliability_min_n if min_n is None else min_n
    chosen_rse = settings.reliability_max_rse if max_rse is None else max_rse
    if isinstance(chosen_n, bool) or not isinstance(chosen_n, int | np.integer) or chosen_n < 0:
        raise QueryError("min_n", f"{chosen_n!r} is not a whole number of people (0 or more)")
    if not (isinstance(chosen_rse, int | float) and chosen_rse > 0):
        raise QueryError("max_rse", f"{chosen_rse!r} is not a positive relative standard error")
    return int(chosen_n), float(chosen_rse)


def grouped_statistics(
    connection: Connection,
    people_filter: PeopleFilter,
    group_by: Sequence[str],
    measures: Sequence[str],
    *,
    weighted: bool | None = False,
    run: Runner = analytics.run,
) -> pd.DataFrame:
    """One row per group: the group_by columns and, as floats, the statistics the measures'
    values and intervals need (`weighted`: census-weighted ones; None: both), in one query."""
    wanted = validate_aggregate(group_by, measures)
    statistics = statistics_for(wanted, intervals=weighted is not True, weighted=weighted is not False)
    rows = run(connection, aggregate_statement(people_filter, group_by, wanted, statistics))
    # Group keys as Python objects (labels, None for missing; pandas' string dtype would make
    # None NaN); statistics as floats, 0 for the NULL sums of an empty ungrouped query.
    frame = pd.DataFrame(
        {
            **{name: pd.Series([row[name] for row in rows], dtype=object) for name in group_by},
            **{name: pd.Series([row[name] for row in rows], dtype=float).fillna(0.0) for name in statistics},
        },
        columns=[*group_by, *statistics],
    )
    frame.attrs["measures"] = wanted
    return frame


def estimates_from_statistics(
    statistics: pd.DataFrame,
    group_by: Sequence[str],
    measures: Sequence[str],
    *,
    weighted: bool = False,
    confidence: float = _stats.DEFAULT_CONFIDENCE,
    min_n: int | None = None,
    max_rse: float | None = None,
) -> pd.DataFrame:
    """estimate_groups' table from grouped_statistics' (see the module docstring)."""
    min_people, max_error = check_parameters(confidence, min_n, max_rse)
    wanted = validate_aggregate(group_by, measures)
    n = statistics["n"].to_numpy(float)
    out = statistics[list(group_by)].reset_index(drop=True).copy()
    out["n"] = n.astype(np.int64)
    plain_rows = statistics.to_dict("records")
    all_reliable = (n > 0) & (n >= min_people)
    for name in wanted:
        measure = MEASURE_DEFS[name]
        uncertainty = measure.uncertainty
        if uncertainty is None:
            values = [finish(row, [name])[name] for row in plain_rows]
            estimate = pd.Series(values, dtype=float if measure.nullable else np.int64)
            se = low = high = np.full(len(out), np.nan)
        else:
            interval = uncertainty.weighted_interval if weighted else uncertainty.interval
            frame = interval(statistics.reset_index(drop=True), confidence)
            estimate = frame["estimate"].reset_index(drop=True)
            se, low, high = (frame[c].to_numpy(float) for c in ("se", "ci_low", "ci_high"))
        flag = _stats.reliable(n, estimate.to_numpy(float), se, min_people, max_error).astype(bool)
        out[name] = estimate.to_numpy()
        out[f"{name}{SEPARATOR}se"] = se
        out[f"{name}{SEPARATOR}ci_low"] = low
        out[f"{name}{SEPARATOR}ci_high"] = high
        out[f"{name}{SEPARATOR}reliable"] = flag
        all_reliable = all_reliable & flag
    out["reliable"] = np.asarray(all_reliable, dtype=bool)
    out.attrs.update(weighted=weighted, confidence=confidence, min_n=min_people, max_rse=max_error)
    return out


def estimate_groups(
    connection: Connection,
    people_filter: PeopleFilter,
    group_by: Sequence[str],
    measures: Sequence[str],
    *,
    weighted: bool = False,
    confidence: float = 0.95,
    min_n: int | None = None,
    max_rse: float | None = None,
) -> pd.DataFrame:
    """Per group: n, each measure's estimate (sample, or census-weighted when `weighted`),
    standard error, interval and reliability, and the group's reliability (module docstring).

    `min_n` / `max_rse` None: RELIABILITY_MIN_N / RELIABILITY_MAX_RSE (30 people, 30%).
    A bad parameter is a QueryError naming it (`confidence` must be 0.90, 0.95 or 0.99)."""
    check_parameters(confidence, min_n, max_rse)  # before the database is asked
    statistics = grouped_statistics(connection, people_filter, group_by, measures, weighted=weighted)
    return estimates_from_statistics(
        statistics,
        group_by,
        measures,
        weighted=weighted,
        confidence=confidence,
        min_n=min_n,
        max_rse=max_rse,
    )


def column(measure: str, part: str) -> str:
    """The estimate_groups column of one part (se, ci_low, ci_high, reliable) of a measure."""
    if part not in SUFFIXES:
        raise ValueError(f"part={part!r}: use one of {', '.join(SUFFIXES)}")
    return f"{measure}{SEPARATOR}{part}"


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The table as JSON-ready dicts: NaN as None, numpy scalars as Python numbers."""
    cleaned = frame.astype(object).where(frame.notna(), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in cleaned.to_dict("records")
    ]
