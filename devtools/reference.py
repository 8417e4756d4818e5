"""The people filter computed with pandas alone: the reference the tests compare the
query layer, the API and the explorer with. It is written from the rule as the
README states it, without importing the application, so that a bug in the
application's filter cannot hide by being shared with its reference:

- a range is inclusive at both ends; a missing end (None) does not limit;
- a category list keeps the people whose value is one of the listed values;
  None in the list (the API's `unknown`, the explorer's "Unknown") selects the
  people whose value is missing; an empty list does not filter;
- a person must pass every range and every list.

The frame is the input read with pandas (`?` as missing), with the input's column names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

Bound = float | int | None

# The query parameters (API and explorer URLs) that bound a range: NAME_min / NAME_max -> column.
RANGE_PARAMETERS: dict[str, str] = {
    "age": "age",
    "hours": "hours_per_week",
    "education_num": "education_num",
    "capital_gain": "capital_gain",
    "capital_loss": "capital_loss",
    "fnlwgt": "fnlwgt",
}
# The category columns (query parameters of the same name).
CATEGORY_COLUMNS: tuple[str, ...] = (
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "gender",
    "native_country",
    "income",
)
# The query parameter value that stands for a missing value.
UNKNOWN_PARAMETER = "unknown"


def people_mask(
    frame: pd.DataFrame,
    ranges: Mapping[str, tuple[Bound, Bound]] | None = None,
    categories: Mapping[str, Iterable[str | None]] | None = None,
) -> pd.Series:
    """True for each row of `frame` the filter selects."""
    mask = pd.Series(True, index=frame.index)
    for column, (low, high) in (ranges or {}).items():
        if low is not None:
            mask &= frame[column] >= low
        if high is not None:
            mask &= frame[column] <= high
    for column, chosen in (categories or {}).items():
        values = list(chosen)
        if not values:
            continue
        selected = frame[column].isin([v for v in values if v is not None])
        if None in values:
            selected |= frame[column].isna()
        mask &= selected
    return mask


def select_people(
    frame: pd.DataFrame,
    ranges: Mapping[str, tuple[Bound, Bound]] | None = None,
    categories: Mapping[str, Iterable[str | None]] | None = None,
) -> pd.DataFrame:
    """The rows of `frame` the filter selects, in their order."""
    return frame[people_mask(frame, ranges, categories)]


def select_by_params(frame: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """The rows selected by query parameters as the API takes them: `age_min=30`,
    `gender=Female`, a list for several values, `unknown` for missing. Parameters
    that do not filter (limit, sort, group_by...) are ignored."""
    ranges: dict[str, tuple[Bound, Bound]] = {}
    categories: dict[str, list[str | None]] = {}
    bounds = {f"{name}_{end}": (column, end) for name, column in RANGE_PARAMETERS.items() for end in ("min", "max")}
    for key, value in params.items():
        if key in bounds:
            column, end = bounds[key]
            low, high = ranges.get(column, (None, None))
            ranges[column] = (float(value), high) if end == "min" else (low, float(value))
        elif key in CATEGORY_COLUMNS:
            values = value if isinstance(value, list | tuple) else [value]
            categories[key] = [None if v == UNKNOWN_PARAMETER else v for v in values]
    return select_people(frame, ranges, categories)
