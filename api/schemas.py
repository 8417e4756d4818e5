"""Request and response types: enums for the query string, msgspec Structs for JSON.

Derived from the census contract (`warehouse.contract`): the categorical
parameters are Enums of each attribute's categories (plus `unknown`, which
selects missing values), `Person` has a field per attribute and `Group` a field
per grouping and per measure, so the OpenAPI schema states exactly what the
query layer accepts and returns, and a new attribute or measure appears here
without an edit.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType

from api.intervals import interval_fields
from warehouse.contract import (
    ATTRIBUTES,
    CATEGORY_ATTRIBUTES,
    FILTER_PARAMS,
    GROUP_COLUMNS,
    GROUPINGS,
    MEASURES_DECLARED,
    RANGE_QUERY_PARAMS,
    UNKNOWN_PARAM,
)
from warehouse.domain import CATEGORIES
from warehouse.people import PEOPLE_COLUMNS


def _values_enum(name: str, values: tuple[str, ...] | list[str]) -> type[Enum]:
    """A str Enum whose members are the values themselves ('Self-emp-inc', '>50K', ...)."""
    return Enum(name, [(value, value) for value in values], type=str, module=__name__)  # type: ignore[return-value]


def _component_name(column: str) -> str:
    """'marital_status' -> 'MaritalStatus' (the OpenAPI component name)."""
    return "".join(part.capitalize() for part in column.split("_"))


# One Enum per categorical attribute, e.g. `Gender`, `MaritalStatus`, `Income`.
CATEGORY_ENUMS: Final[dict[str, type[Enum]]] = {
    a.name: _values_enum(_component_name(a.name), [*a.categories, UNKNOWN_PARAM]) for a in CATEGORY_ATTRIBUTES
}

PeopleField = _values_enum("PeopleField", PEOPLE_COLUMNS)
SortKey = _values_enum("SortKey", [*PEOPLE_COLUMNS, *(f"-{c}" for c in PEOPLE_COLUMNS)])
GroupBy = _values_enum("GroupBy", GROUP_COLUMNS)
Measure = _values_enum("Measure", [m.name for m in MEASURES_DECLARED])
DimensionName = _values_enum("DimensionName", list(CATEGORIES))

# Bounds of each range parameter, from the domain's allowed ranges.
RANGE_BOUNDS: Final[dict[str, tuple[int, int]]] = {
    name: ATTRIBUTES[column].bounds for name, (column, _) in RANGE_QUERY_PARAMS.items()
}
__all__ = ["FILTER_PARAMS"]  # re-exported for the controllers

MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 100
# Far beyond any real table; keeps OFFSET inside a 64-bit integer on every database.
MAX_OFFSET: Final = 1_000_000_000
MAX_PERSON_ID: Final = 2_147_483_647  # person.id is a 32-bit INTEGER


def _optional(python_type: type, nullable: bool) -> Any:
    return (python_type | None | UnsetType) if nullable else (python_type | UnsetType)  # type: ignore[operator]


# A person of the `people` view; only the columns asked for with `fields` are
# present. Missing categorical values are `null`.
Person = msgspec.defstruct(
    "Person",
    [
        (a.name, _optional(a.python_type, a.kind == "category" or a.name == "education_num"), UNSET)
        for a in ATTRIBUTES.values()
    ],
    kw_only=True,
    module=__name__,
)


class PeoplePage(msgspec.Struct):
    """One page of the people matching a filter."""

    total: int  # exact number of people matching the filter
    limit: int
    offset: int
    next: str | None  # URL of the next page, null on the last one
    items: list[Person]


# One group of /stats: its key(s) (only the `group_by` attributes are present,
# `null` = missing), the measures asked for, and (unless intervals=false) `n` and each
# measure's standard error, interval, reliability and census-weighted variant
# (api.intervals, from the contract's declared uncertainties).
Group = msgspec.defstruct(
    "Group",
    [
        *((g.name, _optional(g.python_type, g.nullable), UNSET) for g in GROUPINGS.values()),
        *((m.name, _optional(m.python_type, m.nullable), UNSET) for m in MEASURES_DECLARED),
        *interval_fields(),
    ],
    kw_only=True,
    module=__name__,
)


class Stats(msgspec.Struct):
    group_by: list[str]
    measures: list[str]
    filter: str  # the filter in words, e.g. "Gender: Female · Age ≥ 30"
    groups: list[Group]
    intervals: bool = True  # false: the plain measures only (`n` still given)
    weighted: bool = True  # false: without the census-weighted variants
    confidence: float = 0.95  # of every interval
    min_n: int = 30  # fewer people: unreliable (flagged) or hidden
    max_rse: float = 0.30  # a larger relative standard error: unreliable
    small_groups: str = "flag"
    hidden: int = 0  # groups left out (small_groups=hide)


class DimensionValue(msgspec.Struct):
    value: str | None  # the label; null for missing values
    param: str  # how to select it in a filter (`unknown` for missing)
    people: int


class Dimension(msgspec.Struct):
    name: str
    title: str
    values: list[DimensionValue]


class Dimensions(msgspec.Struct):
    dimensions: list[Dimension]


class Health(msgspec.Struct):
    status: str  # "ok" or "unavailable"
    database: str  # where the database is, without a password
    backend: str
    commit: str
    people: int | None = None
    # Counts and aggregates come from the analytic copy (DuckDB) of the
    # current data (false while it is built after start-up or an upload, or when
    # COLUMNAR_MAX_ROWS turns it off: SQL answers then, more slowly).
    in_memory: bool | None = None
    reason: str | None = None


class ErrorBody(msgspec.Struct):
    """Every error: the HTTP status, what went wrong, which parameter, what is allowed."""

    status: int
    error: str
    detail: str
    parameter: str | None = None
    allowed: list[str] | None = None
