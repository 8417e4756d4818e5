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

`grouped_statistics` + `estimates_from_statistics` split it in two (several estimates
from one query); `sample_and_weighted` gives the API both variants from one query as
plain columns, without pandas (a /stats request's Python cost stays small).
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
from warehouse.contract import GROUPINGS, MEASURE_DEFS, finish, statistics_for
from warehouse.filters import PeopleFilter, QueryError

SUFFIXES: Final = ("se", "ci_low", "ci_high", "reliable")  # m__se, m__ci_low, m__ci_high, m__reliable
SEPARATOR: Final = "__"


Columns = dict[str, Any]  # column name -> its per-group values (a list or a numpy array)


def check_parameters(confidence: float, min_n: int | None, max_rse: float | None) -> tuple[int, float]:
    """The thresholds to use (None: the configured ones); a QueryError naming a bad one."""
    try:
        _stats.z_value(confidence)
    except (ValueError, TypeError):
        allowed = [f"{level:.2f}" for level in _stats.CONFIDENCE_LEVELS]
        raise QueryError("confidence", f"{confidence!r} is not supported", allowed) from None
    if min_n is None or max_rse is None:
        settings = get_settings()
        min_n = settings.reliability_min_n if min_n is None else min_n
        max_rse = settings.reliability_max_rse if max_rse is None else max_rse
    if isinstance(min_n, bool) or not isinstance(min_n, int | np.integer) or min_n < 0:
        raise QueryError("min_n", f"{min_n!r} is not a whole number of people (0 or more)")
    if isinstance(max_rse, bool) or not (isinstance(max_rse, int | float) and max_rse > 0):
        raise QueryError("max_rse", f"{max_rse!r} is not a positive relative standard error")
    return int(min_n), float(max_rse)


# --------------------------------------------------------------------------- columns (no pandas)


def statistics_columns(
    connection: Connection,
    people_filter: PeopleFilter,
    group_by: Sequence[str],
    measures: Sequence[str],
    *,
    weighted: bool | None = False,
    run: Runner = analytics.run,
) -> tuple[Columns, dict[str, np.ndarray]]:
    """One query: (the group keys as Python values, the statistics as float arrays) that the
    measures' values and intervals need (`weighted`: census-weighted ones; None: both)."""
    wanted = validate_aggregate(group_by, measures)
    statistics = statistics_for(wanted, intervals=weighted is not True, weighted=weighted is not False)
    rows = run(connection, aggregate_statement(people_filter, group_by, wanted, statistics))
    keys = {name: [row[name] for row in rows] for name in group_by}
    sums = {}
    for name in statistics:
        # None (SUM over no rows: the one row of an empty ungrouped query) -> 0; Decimal -> float.
        values = np.array([row[name] for row in rows], dtype=float)
        sums[name] = np.where(np.isnan(values), 0.0, values)
    return keys, sums


def estimate_columns(
    keys: Columns,
    sums: dict[str, np.ndarray],
    measures: Sequence[str],
    *,
    weighted: bool,
    confidence: float,
    min_n: int,
    max_rse: float,
) -> Columns:
    """estimate_groups' columns (see the module docstring) from statistics_columns' answer."""
    n = sums["n"]
    columns: Columns = {**keys, "n": n.astype(np.int64)}
    all_reliable = (n > 0) & (n >= min_n)
    for name in measures:
        measure = MEASURE_DEFS[name]
        uncertainty = measure.uncertainty
        if uncertainty is None:
            values = [finish({s: sums[s][i] for s in measure.statistics}, [name])[name] for i in range(len(n))]
            estimate = np.asarray(values, dtype=float)
            shown: Any = estimate if measure.nullable else estimate.astype(np.int64)
            se = low = high = np.full(len(n), np.nan)
        else:
            interval = uncertainty.weighted_interval if weighted else uncertainty.interval
            answer = interval(sums, confidence)
            estimate = shown = answer["estimate"]
            se, low, high = answer["se"], answer["ci_low"], answer["ci_high"]
        flag = _stats.reliable(n, estimate, se, min_n, max_rse).astype(bool)
        columns[name] = shown
        columns[f"{name}{SEPARATOR}se"] = se
        columns[f"{name}{SEPARATOR}ci_low"] = low
        columns[f"{name}{SEPARATOR}ci_high"] = high
        columns[f"{name}{SEPARATOR}reliable"] = flag
        all_reliable = all_reliable & flag
    columns["reliable"] = np.asarray(all_reliable, dtype=bool)
    return columns


def sample_and_weighted(
    connection: Connection,
    people_filter: PeopleFilter,
    group_by: Sequence[str],
    measures: Sequence[str],
    *,
    confidence: float = _stats.DEFAULT_CONFIDENCE,
    min_n: int | None = None,
    max_rse: float | None = None,
    weighted: bool = True,
    run: Runner = analytics.run,
) -> tuple[Columns, Columns | None]:
    """estimate_groups' columns with weighted=False and (unless not `weighted`: None, and the
    weighted statistics are not summed) weighted=True, from one query and without pandas
    (the API's /stats: a request's Python cost stays well under a millisecond)."""
    least, most = check_parameters(confidence, min_n, max_rse)
    wanted = validate_aggregate(group_by, measures)
    both: bool | None = None if weighted else False
    keys, sums = statistics_columns(connection, people_filter, group_by, wanted, weighted=both, run=run)
    thresholds = {"confidence": confidence, "min_n": least, "max_rse": most}
    sample = estimate_columns(keys, sums, wanted, weighted=False, **thresholds)
    return sample, estimate_columns(keys, sums, wanted, weighted=True, **thresholds) if weighted else None


# --------------------------------------------------------------------------- tables


def _key_column(name: str, values: list[Any]) -> pd.Series:
    """Labels stay Python objects (None for missing: pandas' string dtype would make it NaN);
    numeric groupings (age, years of schooling, hours) are whole numbers."""
    grouping = GROUPINGS[name]
    if grouping.python_type is int and not grouping.nullable:
        return pd.Series(values, dtype=np.int64)
    return pd.Series(values, dtype=object)


def _table(columns: Columns, group_by: Sequence[str], **attrs: Any) -> pd.DataFrame:
    length = len(columns["n"])
    frame = pd.DataFrame(
        {name: _key_column(name, values) if name in group_by else values for name, values in columns.items()},
        index=pd.RangeIndex(length),
    )
    frame.attrs.update(attrs)
    return frame


def grouped_statistics(
    connection: Connection,
    people_filter: PeopleFilter,
    group_by: Sequence[str],
    measures: Sequence[str],
    *,
    weighted: bool | None = False,
    run: Runner = analytics.run,
) -> pd.DataFrame:
    """statistics_columns as a table: one row per group, the group_by columns and the statistics."""
    keys, sums = statistics_columns(connection, people_filter, group_by, measures, weighted=weighted, run=run)
    return _table({**keys, **sums}, group_by)


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
    least, most = check_parameters(confidence, min_n, max_rse)
    wanted = validate_aggregate(group_by, measures)
    keys = {name: statistics[name].tolist() for name in group_by}
    sums = {name: statistics[name].to_numpy(float) for name in statistics.columns if name not in group_by}
    columns = estimate_columns(keys, sums, wanted, weighted=weighted, confidence=confidence, min_n=least, max_rse=most)
    return _table(columns, group_by, weighted=weighted, confidence=confidence, min_n=least, max_rse=most)


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
    least, most = check_parameters(confidence, min_n, max_rse)  # before the database is asked
    wanted = validate_aggregate(group_by, measures)
    keys, sums = statistics_columns(connection, people_filter, group_by, wanted, weighted=weighted)
    columns = estimate_columns(keys, sums, wanted, weighted=weighted, confidence=confidence, min_n=least, max_rse=most)
    return _table(columns, group_by, weighted=weighted, confidence=confidence, min_n=least, max_rse=most)


def column(measure: str, part: str) -> str:
    """The estimate_groups column of one part (se, ci_low, ci_high, reliable) of a measure."""
    if part not in SUFFIXES:
        raise ValueError(f"part={part!r}: use one of {', '.join(SUFFIXES)}")
    return f"{measure}{SEPARATOR}{part}"
