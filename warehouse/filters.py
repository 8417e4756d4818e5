"""Who a question is about: `PeopleFilter`, its SQL conditions and its query-string form.

The query-string rules are the API's and the explorer URL's alike (both parse
with `PeopleFilter.from_params`): a range bound is one whole number written as
digits (`30`, not `30.0` or `3e1`) and may appear once; a category may repeat
(`gender=Female&gender=Male`, a repeated value counts once) and `unknown`
selects missing values; `x_min` may not exceed `x_max`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select

from warehouse.contract import (
    ATTRIBUTES,
    CATEGORY_COLUMNS,
    CATEGORY_FILTER_COLUMNS,
    PERSON,
    RANGE_COLUMNS,
    RANGE_PARAMS,
    RANGE_QUERY_PARAMS,
    UNKNOWN,
    UNKNOWN_PARAM,
    column_title,
)
from warehouse.domain import CATEGORIES
from warehouse.models import DIMENSIONS, Education

# A whole number as people write it in a URL: optional sign, digits. Not 30.0, 3e1, 0x1E or " 30".
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


class QueryError(ValueError):
    """A request the query layer refuses; says which parameter and what is allowed."""

    def __init__(self, parameter: str, message: str, allowed: Sequence[str] | None = None) -> None:
        self.parameter = parameter
        self.message = message
        self.allowed = list(allowed) if allowed is not None else None
        super().__init__(f"{parameter}: {message}")


@dataclass(frozen=True)
class PeopleFilter:
    """Who to include: inclusive ranges on numbers, allowed values on categories.

    `ranges`: column -> (low or None, high or None).
    `categories`: column -> labels; UNKNOWN (None) selects missing values. An
    absent column, or an empty selection, does not filter.
    """

    ranges: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)
    categories: Mapping[str, Sequence[str | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for column, bounds in self.ranges.items():
            if column not in RANGE_COLUMNS:
                raise QueryError(column, "cannot be filtered by range", RANGE_COLUMNS)
            low, high = bounds
            if low is not None and high is not None and low > high:
                name = RANGE_PARAMS[column]
                raise QueryError(f"{name}_min", f"{low} is greater than {name}_max ({high})")
        for column, values in self.categories.items():
            if column not in CATEGORY_COLUMNS:
                raise QueryError(column, "is not a categorical attribute", CATEGORY_COLUMNS)
            allowed = CATEGORIES[column]
            for value in values:
                if value is not UNKNOWN and value not in allowed:
                    raise QueryError(column, f"unknown value {value!r}", [*allowed, UNKNOWN_PARAM])

    @property
    def is_empty(self) -> bool:
        return not self.conditions()

    def conditions(self) -> list[ColumnElement[bool]]:
        """WHERE conditions on the person table (index-friendly: keys, not labels)."""
        conditions: list[ColumnElement[bool]] = []
        for column, (low, high) in self.ranges.items():
            if low is None and high is None:
                continue
            if column == "education_num":
                conditions.append(PERSON.c.education_id.in_(_education_ids(low, high)))
            else:
                conditions.append(between(PERSON.c[column], low, high))
        for column, values in self.categories.items():
            if values:
                conditions.append(_category_condition(column, values))
        return conditions

    def describe(self) -> str:
        """Words for titles and file names: 'Gender: Female · Age 30–90'."""
        parts = []
        for column, values in self.categories.items():
            if values:
                shown = ", ".join("Unknown" if v is UNKNOWN else v for v in values)
                parts.append(f"{column_title(column)}: {shown}")
        for column, (low, high) in self.ranges.items():
            if low is None and high is None:
                continue
            title = column_title(column)
            if low is not None and high is not None:
                parts.append(f"{title} {low:,}–{high:,}")
            elif low is not None:
                parts.append(f"{title} ≥ {low:,}")
            else:
                parts.append(f"{title} ≤ {high:,}")
        return " · ".join(parts) if parts else "everyone"

    # -- query-string form, shared by the API and the explorer's URL --

    def to_params(self) -> dict[str, list[str]]:
        params: dict[str, list[str]] = {}
        for column, (low, high) in self.ranges.items():
            name = RANGE_PARAMS[column]
            if low is not None:
                params[f"{name}_min"] = [str(low)]
            if high is not None:
                params[f"{name}_max"] = [str(high)]
        for column, values in self.categories.items():
            if values:
                params[column] = [UNKNOWN_PARAM if v is UNKNOWN else v for v in values]
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Sequence[str]]) -> PeopleFilter:
        """Parse query-string values by the contract's rules; unrelated keys are
        ignored (they belong to the caller). An empty range value means no bound."""
        ranges: dict[str, tuple[int | None, int | None]] = {}
        for name, (column, end) in RANGE_QUERY_PARAMS.items():
            value = parse_whole_number(name, params.get(name))
            if value is not None:
                low, high = ranges.get(column, (None, None))
                ranges[column] = (value, high) if end == "min" else (low, value)
        for column, (low, high) in ranges.items():  # bounds from the contract (the API's OpenAPI states them)
            lowest, highest = ATTRIBUTES[column].bounds
            for end, value in (("min", low), ("max", high)):
                if value is not None and not lowest <= value <= highest:
                    raise QueryError(f"{RANGE_PARAMS[column]}_{end}", f"{value} is outside {lowest}..{highest}")
        categories = {
            column: tuple(dict.fromkeys(UNKNOWN if v == UNKNOWN_PARAM else v for v in params[column]))
            for column in CATEGORY_FILTER_COLUMNS
            if params.get(column)
        }
        return cls(ranges=ranges, categories=categories)


def parse_whole_number(name: str, values: Sequence[str] | None) -> int | None:
    """One scalar query parameter: absent or empty is None; repeated, or not
    written as digits, is a QueryError naming it."""
    if not values:
        return None
    if len(values) > 1:
        raise QueryError(name, f"given {len(values)} times; it takes one value")
    raw = values[0]
    if raw == "":
        return None
    if not WHOLE_NUMBER.fullmatch(raw):
        raise QueryError(name, f"{raw!r} is not a whole number")
    return int(raw)


def between(column: Any, low: int | None, high: int | None) -> ColumnElement[bool]:
    if low is not None and high is not None:
        return column.between(low, high)
    return column >= low if low is not None else column <= high


def _education_ids(low: int | None, high: int | None) -> Select[Any]:
    table = Education.__table__
    return select(table.c.id).where(between(table.c.education_num, low, high))


def _category_condition(column: str, values: Sequence[str | None]) -> ColumnElement[bool]:
    model, foreign_key = DIMENSIONS[column]
    key = PERSON.c[foreign_key]
    labels = [v for v in values if v is not UNKNOWN]
    parts: list[ColumnElement[bool]] = []
    if labels:
        dimension = model.__table__
        parts.append(key.in_(select(dimension.c.id).where(dimension.c.label.in_(labels))))
    if len(labels) < len(values):
        parts.append(key.is_(None))
    return parts[0] if len(parts) == 1 else or_(*parts)


def combine(filters: Sequence[PeopleFilter]) -> ColumnElement[bool]:
    """AND of several filters' conditions (for callers that compose filters)."""
    return and_(*(condition for f in filters for condition in f.conditions()))
