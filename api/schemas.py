"""Request and response types: enums for the query string, msgspec Structs for JSON.

The categorical parameters are Enums built from `warehouse.domain.CATEGORIES`
(plus `unknown`, which selects missing values), so the OpenAPI schema lists
exactly the values the query layer accepts and the two can never drift apart.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

import msgspec
from msgspec import UNSET, UnsetType

from warehouse.domain import CATEGORIES, RANGES
from warehouse.query import GROUP_COLUMNS, MEASURES, PEOPLE_COLUMNS, RANGE_PARAMS, UNKNOWN_PARAM


def _values_enum(name: str, values: tuple[str, ...] | list[str]) -> type[Enum]:
    """A str Enum whose members are the values themselves ('Self-emp-inc', '>50K', ...)."""
    return Enum(name, [(value, value) for value in values], type=str, module=__name__)  # type: ignore[return-value]


def _category_enum(name: str, column: str) -> type[Enum]:
    return _values_enum(name, [*CATEGORIES[column], UNKNOWN_PARAM])


# One Enum per categorical attribute (the names become OpenAPI component names).
Workclass = _category_enum("Workclass", "workclass")
Education = _category_enum("Education", "education")
MaritalStatus = _category_enum("MaritalStatus", "marital_status")
Occupation = _category_enum("Occupation", "occupation")
Relationship = _category_enum("Relationship", "relationship")
Race = _category_enum("Race", "race")
Gender = _category_enum("Gender", "gender")
NativeCountry = _category_enum("NativeCountry", "native_country")
Income = _category_enum("Income", "income")

PeopleField = _values_enum("PeopleField", PEOPLE_COLUMNS)
SortKey = _values_enum("SortKey", [*PEOPLE_COLUMNS, *(f"-{c}" for c in PEOPLE_COLUMNS)])
GroupBy = _values_enum("GroupBy", GROUP_COLUMNS)
Measure = _values_enum("Measure", list(MEASURES))
DimensionName = _values_enum("DimensionName", list(CATEGORIES))

# Query-string names of the filters, in documentation order.
RANGE_QUERY_PARAMS: Final[tuple[str, ...]] = tuple(
    f"{name}_{end}" for name in RANGE_PARAMS.values() for end in ("min", "max")
)
FILTER_PARAMS: Final[frozenset[str]] = frozenset({*RANGE_QUERY_PARAMS, *CATEGORIES})
# Bounds of each range parameter, from the domain's allowed ranges.
RANGE_BOUNDS: Final[dict[str, tuple[int, int]]] = {
    f"{name}_{end}": RANGES[column] for column, name in RANGE_PARAMS.items() for end in ("min", "max")
}

MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 100
# Far beyond any real table; keeps OFFSET inside a 64-bit integer on every database.
MAX_OFFSET: Final = 1_000_000_000
MAX_PERSON_ID: Final = 2_147_483_647  # person.id is a 32-bit INTEGER


class Person(msgspec.Struct, kw_only=True):
    """A person of the `people` view; only the columns asked for with `fields` are present.
    Missing categorical values are `null`."""

    id: int | UnsetType = UNSET
    age: int | UnsetType = UNSET
    workclass: str | None | UnsetType = UNSET
    fnlwgt: int | UnsetType = UNSET
    education: str | None | UnsetType = UNSET
    education_num: int | None | UnsetType = UNSET
    marital_status: str | None | UnsetType = UNSET
    occupation: str | None | UnsetType = UNSET
    relationship: str | None | UnsetType = UNSET
    race: str | None | UnsetType = UNSET
    gender: str | None | UnsetType = UNSET
    capital_gain: int | UnsetType = UNSET
    capital_loss: int | UnsetType = UNSET
    hours_per_week: int | UnsetType = UNSET
    native_country: str | None | UnsetType = UNSET
    income: str | None | UnsetType = UNSET


class PeoplePage(msgspec.Struct):
    """One page of the people matching a filter."""

    total: int  # exact number of people matching the filter
    limit: int
    offset: int
    next: str | None  # URL of the next page, null on the last one
    items: list[Person]


class Group(msgspec.Struct, kw_only=True):
    """One group of /stats: its key(s) (only the `group_by` attributes are present,
    `null` = missing) and the measures asked for."""

    workclass: str | None | UnsetType = UNSET
    education: str | None | UnsetType = UNSET
    marital_status: str | None | UnsetType = UNSET
    occupation: str | None | UnsetType = UNSET
    relationship: str | None | UnsetType = UNSET
    race: str | None | UnsetType = UNSET
    gender: str | None | UnsetType = UNSET
    native_country: str | None | UnsetType = UNSET
    income: str | None | UnsetType = UNSET
    age_band: str | UnsetType = UNSET
    age: int | UnsetType = UNSET
    hours_per_week: int | UnsetType = UNSET
    education_num: int | UnsetType = UNSET
    people: int | UnsetType = UNSET
    share_over_50k: float | None | UnsetType = UNSET
    population: int | None | UnsetType = UNSET
    mean_age: float | None | UnsetType = UNSET
    mean_hours: float | None | UnsetType = UNSET
    mean_capital_gain: float | None | UnsetType = UNSET


class Stats(msgspec.Struct):
    group_by: list[str]
    measures: list[str]
    filter: str  # the filter in words, e.g. "Gender: Female · Age ≥ 30"
    groups: list[Group]


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
    # Counts and aggregates come from the in-memory columnar snapshot of the
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
