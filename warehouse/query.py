"""The one query layer: filters, pages, counts and grouped aggregates over people.

Every part of the platform (explorer, API, notebook, exports) asks its questions
through this module, so a filter means the same thing everywhere.

Results have the columns of the `people` view (labels, not keys), but the SQL is
built on the `person` fact table, joining only the dimensions a query shows:
SQLite does not drop unused LEFT JOINs inside a view, and filtering through the
view's labels cost 350 ms instead of 6 ms on a 1,000,000-row file. A test checks
that both paths return the same people.

Grouped aggregates (`aggregate_people`, `value_counts`) are answered from an
in-memory columnar snapshot of `person` (`warehouse.columnar`) when the data fits
COLUMNAR_MAX_ROWS: SQLite has no hash aggregation, so its GROUP BY sorts every
matching row, and on 1,000,000 rows the API's /stats queries took 70-860 ms
(median 217-298 ms; grouping everyone by gender 556 ms, by race and age band
781-857 ms). numpy over one contiguous array per column answers the same
requests in 7-30 ms (median 12 ms). The SQL versions stay below
(`_aggregate_people_sql`, `_value_counts_sql`): they answer when the snapshot
cannot (too many rows, a build in progress elsewhere) and are the reference the
tests compare it with.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    Alias,
    ColumnElement,
    Connection,
    FromClause,
    Select,
    and_,
    case,
    func,
    inspect,
    or_,
    select,
)

from warehouse.domain import CATEGORIES, COLUMN_TITLES, HIGH_INCOME
from warehouse.models import DIMENSIONS, Base, Education, IncomeBracket, Person, people

if TYPE_CHECKING:
    from warehouse.columnar import Snapshot

PERSON = Person.__table__
# Columns of the people view, in order.
PEOPLE_COLUMNS: Final[tuple[str, ...]] = tuple(column.name for column in people.columns)
RANGE_COLUMNS: Final = ("age", "hours_per_week", "education_num", "capital_gain", "capital_loss", "fnlwgt")
CATEGORY_COLUMNS: Final = tuple(DIMENSIONS)
UNKNOWN: Final = None  # in a category filter, selects people whose value is missing
UNKNOWN_PARAM: Final = "unknown"  # how UNKNOWN is spelled in URLs and query strings

# Query-string names of the range bounds: the API and the explorer's URL share them.
RANGE_PARAMS: Final[dict[str, str]] = {
    "age": "age",
    "hours_per_week": "hours",
    "education_num": "education_num",
    "capital_gain": "capital_gain",
    "capital_loss": "capital_loss",
    "fnlwgt": "fnlwgt",
}

AGE_BANDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("17-24", 0, 24),
    ("25-34", 25, 34),
    ("35-44", 35, 44),
    ("45-54", 45, 54),
    ("55-64", 55, 64),
    ("65+", 65, 1000),
)
AGE_BAND: Final = "age_band"
# Numeric columns that may be grouped by value (few distinct values).
GROUPABLE_NUMBERS: Final = ("age", "hours_per_week", "education_num")
GROUP_COLUMNS: Final = (*CATEGORY_COLUMNS, AGE_BAND, *GROUPABLE_NUMBERS)

MEASURES: Final[dict[str, str]] = {
    "people": "Number of people",
    "share_over_50k": "Share earning >50K",
    "population": "Population represented (sum of fnlwgt)",
    "mean_age": "Mean age",
    "mean_hours": "Mean hours per week",
    "mean_capital_gain": "Mean capital gain",
}


class QueryError(ValueError):
    """A request the query layer refuses; says which parameter and what is allowed."""

    def __init__(self, parameter: str, message: str, allowed: Sequence[str] | None = None) -> None:
        self.parameter = parameter
        self.message = message
        self.allowed = list(allowed) if allowed is not None else None
        super().__init__(f"{parameter}: {message}")


# --------------------------------------------------------------------------- filter


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
                conditions.append(_between(PERSON.c[column], low, high))
        for column, values in self.categories.items():
            if values:
                conditions.append(_category_condition(column, values))
        return conditions

    def mask(self, snapshot: Snapshot) -> NDArray[np.bool_] | None:
        """conditions() over a columnar snapshot: one boolean per person of the
        snapshot, or None when the filter keeps everyone.

        The same rules, stated a second time for numpy: keep both in step.
        tests/test_columnar.py checks, filter by filter, that the two select
        exactly the same people.
        """
        parts: list[NDArray[np.bool_]] = []
        for column, (low, high) in self.ranges.items():
            if low is None and high is None:
                continue
            if column == "education_num":
                parts.append(snapshot.key_in("education_id", snapshot.education_ids(low, high)))
            else:
                parts.append(snapshot.between(column, low, high))
        for column, values in self.categories.items():
            if values:
                labels = [v for v in values if v is not UNKNOWN]
                keys = snapshot.label_keys(column, labels)
                if len(labels) < len(values):
                    keys.append(snapshot.missing_key)  # UNKNOWN: a NULL key
                parts.append(snapshot.key_in(DIMENSIONS[column][1], keys))
        if not parts:
            return None
        mask = parts[0]
        for part in parts[1:]:
            mask &= part
        return mask

    def describe(self) -> str:
        """Words for titles and file names: 'Gender: Female · Age 30–90'."""
        parts = []
        for column, values in self.categories.items():
            if values:
                shown = ", ".join("Unknown" if v is UNKNOWN else v for v in values)
                parts.append(f"{COLUMN_TITLES[column]}: {shown}")
        for column, (low, high) in self.ranges.items():
            if low is None and high is None:
                continue
            title = COLUMN_TITLES[column]
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
        """Parse query-string values; unrelated keys are ignored (they belong to the caller)."""
        ranges: dict[str, tuple[int | None, int | None]] = {}
        for column, name in RANGE_PARAMS.items():
            low = _int_param(f"{name}_min", params.get(f"{name}_min"))
            high = _int_param(f"{name}_max", params.get(f"{name}_max"))
            if low is not None or high is not None:
                ranges[column] = (low, high)
        categories = {
            column: tuple(UNKNOWN if v == UNKNOWN_PARAM else v for v in params[column])
            for column in CATEGORY_COLUMNS
            if params.get(column)
        }
        return cls(ranges=ranges, categories=categories)


def _int_param(name: str, values: Sequence[str] | None) -> int | None:
    if not values or values[-1] == "":
        return None
    try:
        return int(values[-1])
    except ValueError:
        raise QueryError(name, f"{values[-1]!r} is not a whole number") from None


def _between(column: Any, low: int | None, high: int | None) -> ColumnElement[bool]:
    if low is not None and high is not None:
        return column.between(low, high)
    return column >= low if low is not None else column <= high


def _education_ids(low: int | None, high: int | None) -> Select[Any]:
    table = Education.__table__
    return select(table.c.id).where(_between(table.c.education_num, low, high))


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


# --------------------------------------------------------------------------- rows


class _Joins:
    """Builds a FROM clause that joins only the dimensions a query needs."""

    def __init__(self) -> None:
        self.aliases: dict[str, Alias] = {}

    def dimension(self, column: str) -> Alias:
        if column not in self.aliases:
            self.aliases[column] = DIMENSIONS[column][0].__table__.alias(column)
        return self.aliases[column]

    def column(self, name: str) -> ColumnElement[Any]:
        if name in DIMENSIONS:
            return self.dimension(name).c.label.label(name)
        if name == "education_num":
            return self.dimension("education").c.education_num.label(name)
        return PERSON.c[name]

    def from_clause(self, base: FromClause = PERSON) -> FromClause:
        joined = base
        for column, alias in self.aliases.items():
            joined = joined.outerjoin(alias, base.c[DIMENSIONS[column][1]] == alias.c.id)
        return joined


def _check_columns(columns: Sequence[str] | None, parameter: str = "fields") -> list[str]:
    if not columns:
        return list(PEOPLE_COLUMNS)
    unknown = [c for c in columns if c not in PEOPLE_COLUMNS]
    if unknown:
        raise QueryError(parameter, f"unknown column(s) {', '.join(unknown)}", PEOPLE_COLUMNS)
    return list(dict.fromkeys(columns))


def _order(sort: str | None, joins: _Joins) -> list[Any]:
    """'age' or '-age'; the person id breaks ties so pages never overlap or skip."""
    if not sort:
        return [PERSON.c.id]
    name = sort.removeprefix("-")
    if name not in PEOPLE_COLUMNS:
        raise QueryError("sort", f"cannot sort by {name!r}", [*PEOPLE_COLUMNS, *(f"-{c}" for c in PEOPLE_COLUMNS)])
    expression = joins.column(name)
    ordered = expression.desc() if sort.startswith("-") else expression.asc()
    return [ordered.nulls_last(), PERSON.c.id] if name != "id" else [ordered]


def select_people(
    people_filter: PeopleFilter,
    columns: Sequence[str] | None = None,
    sort: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Select[Any]:
    """The SELECT for a page of people (or all of them, for a streamed export).

    A page is found first as person ids (from indexes, joining only the sort
    column's dimension), then only those rows are joined to their labels: SQLite
    would otherwise join every matching row before sorting (460 ms -> 40 ms for a
    page of 200,000 matches out of 1,000,000).
    """
    names = _check_columns(columns)
    joins = _Joins()
    selected = [joins.column(name) for name in names]
    if limit is None:
        statement = select(*selected).select_from(joins.from_clause()).where(*people_filter.conditions())
        return statement.order_by(*_order(sort, joins)).offset(offset or None)

    page_joins = _Joins()
    order = _order(sort, page_joins)
    page = select(PERSON.c.id).select_from(page_joins.from_clause()).where(*people_filter.conditions())
    page = page.order_by(*order).limit(limit).offset(offset or None).subquery("page")
    outer_order = _order(sort, joins)
    # The page comes first in FROM: PostgreSQL keeps the written join order past
    # join_collapse_limit (8), and with nine dimensions joined before the page it
    # joined all 1,000,000 people to their labels first (1.2 s instead of 2 ms).
    joined: FromClause = page.join(PERSON, page.c.id == PERSON.c.id)
    for column, alias in joins.aliases.items():
        joined = joined.outerjoin(alias, PERSON.c[DIMENSIONS[column][1]] == alias.c.id)
    return select(*selected).select_from(joined).order_by(*outer_order)


def fetch_people(
    connection: Connection,
    people_filter: PeopleFilter,
    columns: Sequence[str] | None = None,
    sort: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    if limit < 0 or offset < 0:
        raise QueryError("limit" if limit < 0 else "offset", "must not be negative")
    statement = select_people(people_filter, columns, sort, limit, offset)
    return [dict(row) for row in connection.execute(statement).mappings()]


def iter_people(
    connection: Connection,
    people_filter: PeopleFilter,
    columns: Sequence[str] | None = None,
    sort: str | None = None,
    batch_size: int = 10_000,
) -> Iterator[list[tuple[Any, ...]]]:
    """Every matching person, in batches, without holding them all in memory."""
    statement = select_people(people_filter, columns, sort)
    result = connection.execution_options(stream_results=True, yield_per=batch_size).execute(statement)
    for partition in result.partitions(batch_size):
        yield [tuple(row) for row in partition]


def count_people(connection: Connection, people_filter: PeopleFilter) -> int:
    """How many people match; from the columnar snapshot when there is one (a
    filtered count over 1,000,000 people took SQLite 40-80 ms, the mask 1-5 ms)."""
    snapshot = _snapshot(connection)
    if snapshot is not None:
        return snapshot.count_people(people_filter)
    return _count_people_sql(connection, people_filter)


def _count_people_sql(connection: Connection, people_filter: PeopleFilter) -> int:
    statement = select(func.count()).select_from(PERSON).where(*people_filter.conditions())
    return int(connection.scalar(statement) or 0)


def get_person(connection: Connection, person_id: int) -> dict[str, Any] | None:
    joins = _Joins()
    selected = [joins.column(name) for name in PEOPLE_COLUMNS]
    statement = select(*selected).select_from(joins.from_clause()).where(PERSON.c.id == person_id)
    row = connection.execute(statement).mappings().first()
    return dict(row) if row else None


# --------------------------------------------------------------------------- aggregates


def _measure_expressions() -> dict[str, ColumnElement[Any]]:
    high_income = select(IncomeBracket.__table__.c.id).where(IncomeBracket.__table__.c.label == HIGH_INCOME)
    return {
        "people": func.count(),
        "share_over_50k": func.avg(case((PERSON.c.income_bracket_id == high_income.scalar_subquery(), 1.0), else_=0.0)),
        "population": func.sum(PERSON.c.fnlwgt),
        "mean_age": func.avg(PERSON.c.age),
        "mean_hours": func.avg(PERSON.c.hours_per_week),
        "mean_capital_gain": func.avg(PERSON.c.capital_gain),
    }


def _age_band() -> ColumnElement[str]:
    return case(*((PERSON.c.age <= high, label) for label, _, high in AGE_BANDS[:-1]), else_=AGE_BANDS[-1][0])


def _group_key(name: str) -> ColumnElement[Any]:
    """What the inner (fact-table-only) query groups by: keys, never labels."""
    if name in DIMENSIONS:
        return PERSON.c[DIMENSIONS[name][1]]
    if name == AGE_BAND:
        return _age_band()
    if name == "education_num":
        return PERSON.c.education_id
    return PERSON.c[name]


def validate_aggregate(group_by: Sequence[str], measures: Sequence[str] | None) -> list[str]:
    """Refuse what aggregate_people cannot answer (both paths share this); the measures wanted."""
    if len(group_by) > 2 or len(set(group_by)) != len(group_by):
        raise QueryError("group_by", "takes one or two different attributes", GROUP_COLUMNS)
    for name in group_by:
        if name not in GROUP_COLUMNS:
            raise QueryError("group_by", f"cannot group by {name!r}", GROUP_COLUMNS)
    wanted = list(measures) if measures else list(MEASURES)
    unknown = [m for m in wanted if m not in MEASURES]
    if unknown:
        raise QueryError("measures", f"unknown measure(s) {', '.join(unknown)}", list(MEASURES))
    return wanted


def validate_value_counts(column: str, by: str | None) -> None:
    """Refuse what value_counts cannot answer (both paths share this)."""
    if column not in RANGE_COLUMNS:
        raise QueryError("column", f"{column!r} is not numeric", RANGE_COLUMNS)
    if by is not None and by not in GROUP_COLUMNS:
        raise QueryError("by", f"cannot group by {by!r}", GROUP_COLUMNS)


def _snapshot(connection: Connection) -> Snapshot | None:
    # Imported here, not at the top: warehouse.columnar builds on this module.
    from warehouse import columnar

    return columnar.current(connection)


def aggregate_people(
    connection: Connection,
    people_filter: PeopleFilter,
    group_by: Sequence[str] = (),
    measures: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Grouped measures: one dict per group, labels for keys.

    Groups by one or two of GROUP_COLUMNS (categorical attributes, 'age_band',
    or a numeric attribute with few values). Missing categories come back as None.
    Answered from the columnar snapshot when there is one (see the module
    docstring), else in SQL; both give the same rows in the same order.
    """
    validate_aggregate(group_by, measures)  # before the connection is used
    snapshot = _snapshot(connection)
    if snapshot is not None:
        return snapshot.aggregate_people(people_filter, group_by, measures)
    return _aggregate_people_sql(connection, people_filter, group_by, measures)


def _aggregate_people_sql(
    connection: Connection,
    people_filter: PeopleFilter,
    group_by: Sequence[str] = (),
    measures: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """aggregate_people computed in SQL: the fallback, and the reference the snapshot is tested against."""
    wanted = validate_aggregate(group_by, measures)
    expressions = _measure_expressions()
    keys = [_group_key(name).label(f"key_{index}") for index, name in enumerate(group_by)]
    inner = (
        select(*keys, *(expressions[m].label(m) for m in wanted))
        # Explicit: with no key, no filter and only count(*), nothing else names person
        # and the SELECT had no FROM at all (it answered 1 person).
        .select_from(PERSON)
        .where(*people_filter.conditions())
        .group_by(*keys)
        .subquery("groups")
    )
    outer_columns: list[ColumnElement[Any]] = []
    order: list[Any] = []
    joined: FromClause = inner
    for index, name in enumerate(group_by):
        key = inner.c[f"key_{index}"]
        if name in DIMENSIONS or name == "education_num":
            table = (Education if name == "education_num" else DIMENSIONS[name][0]).__table__.alias(f"dim_{index}")
            joined = joined.outerjoin(table, key == table.c.id)
            shown = table.c.education_num if name == "education_num" else table.c.label
            outer_columns.append(shown.label(name))
            # Education reads best in years-of-schooling order; the rest alphabetically.
            sort_key = table.c.education_num if name in ("education", "education_num") else table.c.label
            order.append(sort_key.is_(None))
            order.append(sort_key)
        else:
            outer_columns.append(key.label(name))
            order.append(key)
    statement = select(*outer_columns, *(inner.c[m] for m in wanted)).select_from(joined).order_by(*order)
    rows = [dict(row) for row in connection.execute(statement).mappings()]
    for row in rows:
        for m in wanted:
            if m in ("people", "population") and row[m] is not None:
                row[m] = int(row[m])
            elif row[m] is not None:
                row[m] = float(row[m])
    return rows


def value_counts(
    connection: Connection, people_filter: PeopleFilter, column: str, by: str | None = None
) -> list[dict[str, Any]]:
    """How many people have each value of a numeric column (optionally per group):
    enough to draw exact histograms and box plots without fetching the people.
    Answered from the columnar snapshot when there is one, else in SQL."""
    validate_value_counts(column, by)  # before the connection is used
    snapshot = _snapshot(connection)
    if snapshot is not None:
        return snapshot.value_counts(people_filter, column, by)
    return _value_counts_sql(connection, people_filter, column, by)


def _value_counts_sql(
    connection: Connection, people_filter: PeopleFilter, column: str, by: str | None = None
) -> list[dict[str, Any]]:
    """value_counts computed in SQL: the fallback, and the reference the snapshot is tested against."""
    validate_value_counts(column, by)
    joins = _Joins()
    value = joins.column(column)
    selected: list[ColumnElement[Any]] = [value.label("value")]
    grouping: list[ColumnElement[Any]] = [value]
    if by is not None:
        group = _age_band() if by == AGE_BAND else joins.column(by)
        selected.insert(0, group.label("group"))
        grouping.insert(0, group)
    statement = (
        select(*selected, func.count().label("people"))
        .select_from(joins.from_clause())
        .where(*people_filter.conditions())
        .group_by(*grouping)
        .order_by(*grouping)
    )
    return [dict(row) for row in connection.execute(statement).mappings()]


def dimension_counts(
    connection: Connection, column: str, people_filter: PeopleFilter | None = None
) -> list[dict[str, Any]]:
    """Every allowed value of a categorical attribute with its number of people
    (zero included), plus a None row for the missing values when there are any."""
    if column not in CATEGORY_COLUMNS:
        raise QueryError("name", f"unknown dimension {column!r}", CATEGORY_COLUMNS)
    model, foreign_key = DIMENSIONS[column]
    dimension = model.__table__
    key = PERSON.c[foreign_key]
    conditions = people_filter.conditions() if people_filter else []
    counts = select(key.label("key"), func.count().label("people")).where(*conditions).group_by(key).subquery()
    statement = (
        select(dimension.c.label, func.coalesce(counts.c.people, 0).label("people"))
        .select_from(dimension.outerjoin(counts, counts.c.key == dimension.c.id))
        .order_by(dimension.c.id)
    )
    rows = [{"value": label, "people": int(people)} for label, people in connection.execute(statement)]
    missing = connection.scalar(select(func.count()).select_from(PERSON).where(key.is_(None), *conditions))
    if missing:
        rows.append({"value": UNKNOWN, "people": int(missing)})
    return rows


# --------------------------------------------------------------------------- browse any table

TABLE_TITLES: Final[dict[str, str]] = {
    "people": "People (readable view)",
    "person": "Person (fact table)",
    "load": "Uploads",
    "rejected_row": "Rejected rows",
    "workclass": "Work classes",
    "education": "Education levels",
    "marital_status": "Marital statuses",
    "occupation": "Occupations",
    "relationship": "Relationships",
    "race": "Races",
    "gender": "Genders",
    "native_country": "Native countries",
    "income_bracket": "Income brackets",
}


def column_title(name: str) -> str:
    """'hours_per_week' -> 'Hours per week'."""
    return COLUMN_TITLES.get(name) or name.replace("_", " ").capitalize()


def list_tables(connection: Connection) -> list[tuple[str, str]]:
    """(name, friendly title) of every table and view that exists, `people` first."""
    inspector = inspect(connection)
    existing = set(inspector.get_table_names()) | set(inspector.get_view_names())
    known = [name for name in TABLE_TITLES if name in existing]
    others = sorted(existing - set(TABLE_TITLES))
    return [(name, TABLE_TITLES.get(name, column_title(name))) for name in [*known, *others]]


def _readable_select(table_name: str) -> tuple[list[ColumnElement[Any]], FromClause]:
    """A table's columns with foreign keys to dimensions replaced by their labels."""
    if table_name == "people":
        joins = _Joins()
        return [joins.column(name) for name in PEOPLE_COLUMNS], joins.from_clause()
    table = Base.metadata.tables.get(table_name)
    if table is None:
        raise QueryError("table", f"unknown table {table_name!r}", [name for name in TABLE_TITLES])
    columns: list[ColumnElement[Any]] = []
    joined: FromClause = table
    for column in table.columns:
        targets = [fk.column.table for fk in column.foreign_keys]
        dimension = targets[0] if targets and "label" in targets[0].c else None
        if dimension is None:
            columns.append(column)
            continue
        alias = dimension.alias(f"{column.name}_dim")
        joined = joined.outerjoin(alias, column == alias.c.id)
        columns.append(alias.c.label.label(column.name.removesuffix("_id")))
    people_key = _DIMENSION_KEYS.get(table_name)
    if people_key is not None:
        # A dimension table shows how many people each label covers: one grouped scan
        # of `person`, outer-joined so that labels nobody has show 0.
        key = PERSON.c[people_key]
        counts = select(key.label("key"), func.count().label("people")).group_by(key).subquery(f"{table_name}_people")
        joined = joined.outerjoin(counts, counts.c.key == table.c.id)
        columns.append(func.coalesce(counts.c.people, 0).label("people"))
    return columns, joined


# Dimension table name -> the `person` column that points at it.
_DIMENSION_KEYS: Final[dict[str, str]] = {model.__tablename__: key for model, key in DIMENSIONS.values()}


def table_columns(table_name: str) -> list[str]:
    return [column.name for column in _readable_select(table_name)[0]]


def browse_table(
    connection: Connection,
    table_name: str,
    columns: Sequence[str] | None = None,
    sort: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """A page of any table in readable form; the page and the sort run in SQL."""
    available, joined = _readable_select(table_name)
    by_name = {column.name: column for column in available}
    names = list(columns) if columns else list(by_name)
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise QueryError("columns", f"unknown column(s) {', '.join(unknown)}", list(by_name))
    order: list[Any] = []
    if sort:
        name = sort.removeprefix("-")
        if name not in by_name:
            raise QueryError("sort", f"cannot sort by {name!r}", list(by_name))
        order.append((by_name[name].desc() if sort.startswith("-") else by_name[name].asc()).nulls_last())
    order.extend(column for column in available if column.primary_key)
    statement = (
        select(*(by_name[name] for name in names)).select_from(joined).order_by(*order).limit(limit).offset(offset)
    )
    return [dict(row) for row in connection.execute(statement).mappings()]


def count_table(connection: Connection, table_name: str) -> int:
    if table_name == "people":
        return count_people(connection, PeopleFilter())
    table = Base.metadata.tables.get(table_name)
    if table is None:
        raise QueryError("table", f"unknown table {table_name!r}", list(TABLE_TITLES))
    return int(connection.scalar(select(func.count()).select_from(table)) or 0)


def combine(filters: Iterable[PeopleFilter]) -> ColumnElement[bool]:
    """AND of several filters' conditions (for callers that compose filters)."""
    return and_(*(condition for f in filters for condition in f.conditions()))
