"""Counts and grouped aggregates: built as SQLAlchemy statements on the star
schema and run by `warehouse.analytics` (the DuckDB copy when it holds the
current data, else the system of record; the statements are the same).

Measures come from the contract as sufficient statistics (counts and sums) that
SQL aggregates per group; `contract.finish` turns them into each measure's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, FromClause, Select, case, func, literal, select, union_all

from warehouse import analytics
from warehouse.contract import (
    AGE_BAND,
    AGE_BANDS,
    CATEGORY_COLUMNS,
    GROUP_COLUMNS,
    MEASURES,
    PERSON,
    RANGE_COLUMNS,
    STATISTICS,
    UNKNOWN,
    finish,
    statistics_for,
)
from warehouse.filters import PeopleFilter, QueryError
from warehouse.models import DIMENSIONS, Education
from warehouse.people import Joins

Runner = Any  # analytics.run or a function with its signature (tests run statements in plain SQL)


def _age_band() -> ColumnElement[str]:
    return case(*((PERSON.c.age <= high, label) for label, _, high in AGE_BANDS[:-1]), else_=AGE_BANDS[-1][0])


def _age_band_number() -> ColumnElement[int]:
    """The age band as its position in AGE_BANDS (0, 1, ...): what the inner query
    groups by. Grouping 10,000,000 people by the band's label made DuckDB build
    and hash a string per person (race x age_band: 152 ms; by the number: 119 ms);
    the label is put back on the few grouped rows (`_age_band_label`)."""
    return case(
        *((PERSON.c.age <= high, index) for index, (_, _, high) in enumerate(AGE_BANDS[:-1])), else_=len(AGE_BANDS) - 1
    )


def _age_band_label(number: ColumnElement[Any]) -> ColumnElement[str]:
    return case({index: label for index, (label, _, _) in enumerate(AGE_BANDS)}, value=number)


def _group_key(name: str) -> ColumnElement[Any]:
    """What the inner (fact-table-only) query groups by: keys, never labels."""
    if name in DIMENSIONS:
        return PERSON.c[DIMENSIONS[name][1]]
    if name == AGE_BAND:
        return _age_band_number()
    if name == "education_num":
        return PERSON.c.education_id
    return PERSON.c[name]


def validate_aggregate(group_by: Sequence[str], measures: Sequence[str] | None) -> list[str]:
    """Refuse what aggregate_people cannot answer; the measures wanted."""
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
    if column not in RANGE_COLUMNS:
        raise QueryError("column", f"{column!r} is not numeric", RANGE_COLUMNS)
    if by is not None and by not in GROUP_COLUMNS:
        raise QueryError("by", f"cannot group by {by!r}", GROUP_COLUMNS)


# --------------------------------------------------------------------------- statements


def count_statement(people_filter: PeopleFilter) -> Select[Any]:
    return select(func.count().label("people")).select_from(PERSON).where(*people_filter.conditions())


def aggregate_statement(
    people_filter: PeopleFilter,
    group_by: Sequence[str],
    measures: Sequence[str],
    statistics: Sequence[str] | None = None,
) -> Select[Any]:
    """Per group: its shown key(s) and the statistics the measures need (or the
    `statistics` named), ordered missing last, education by years of schooling,
    the rest by label."""
    keys = [_group_key(name).label(f"key_{index}") for index, name in enumerate(group_by)]
    wanted = list(statistics) if statistics is not None else statistics_for(list(measures))
    inner = (
        select(*keys, *(STATISTICS[s]().label(s) for s in wanted))
        # Explicit: with no key, no filter and only count(*), nothing else names person.
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
            sort_key = table.c.education_num if name in ("education", "education_num") else table.c.label
            order.append(sort_key.is_(None))
            order.append(sort_key)
        elif name == AGE_BAND:  # the band's number, in AGE_BANDS' order
            outer_columns.append(_age_band_label(key).label(name))
            order.append(key)
        else:
            outer_columns.append(key.label(name))
            order.append(key)
    return select(*outer_columns, *(inner.c[s] for s in wanted)).select_from(joined).order_by(*order)


def value_counts_statement(people_filter: PeopleFilter, column: str, by: str | None) -> Select[Any]:
    joins = Joins()
    value = joins.column(column)
    selected: list[ColumnElement[Any]] = [value.label("value")]
    grouping: list[ColumnElement[Any]] = [value]
    if by is not None:
        group = _age_band() if by == AGE_BAND else joins.column(by)
        selected.insert(0, group.label("group"))
        grouping.insert(0, group)
    # Missing values last on every engine (SQLite sorts NULL first, PostgreSQL and DuckDB last).
    order = [part for expression in grouping for part in (expression.is_(None), expression)]
    return (
        select(*selected, func.count().label("people"))
        .select_from(joins.from_clause())
        .where(*people_filter.conditions())
        .group_by(*grouping)
        .order_by(*order)
    )


def dimension_counts_statement(columns: Sequence[str], people_filter: PeopleFilter | None) -> Any:
    """Per categorical attribute: each label present with its count, and one row
    (label NULL) for missing keys; one statement for several attributes (UNION ALL),
    so /dimensions is one round trip, not nine."""
    parts = []
    for column in columns:
        model, foreign_key = DIMENSIONS[column]
        dimension = model.__table__
        key = PERSON.c[foreign_key]
        conditions = people_filter.conditions() if people_filter else []
        counts = select(key.label("key"), func.count().label("people")).where(*conditions).group_by(key).subquery()
        parts.append(
            select(literal(column).label("dimension"), dimension.c.label.label("value"), counts.c.people).select_from(
                counts.outerjoin(dimension, counts.c.key == dimension.c.id)
            )
        )
    return parts[0] if len(parts) == 1 else union_all(*parts)


def labels_statement(columns: Sequence[str]) -> Any:
    """Every label of several attributes, in id order (the order the schema seeded them)."""
    parts = [
        select(literal(column).label("dimension"), table.c.id, table.c.label)
        for column in columns
        for table in (DIMENSIONS[column][0].__table__,)
    ]
    statement = parts[0] if len(parts) == 1 else union_all(*parts)
    return statement.order_by("dimension", "id")


# --------------------------------------------------------------------------- answers


def count_people(connection: Connection, people_filter: PeopleFilter, run: Runner = analytics.run) -> int:
    """How many people match."""
    return int(run(connection, count_statement(people_filter))[0]["people"] or 0)


def aggregate_people(
    connection: Connection,
    people_filter: PeopleFilter,
    group_by: Sequence[str] = (),
    measures: Sequence[str] | None = None,
    run: Runner = analytics.run,
) -> list[dict[str, Any]]:
    """Grouped measures: one dict per group, labels for keys.

    Groups by one or two of GROUP_COLUMNS (categorical attributes, 'age_band',
    or a numeric attribute with few values). Missing categories come back as None."""
    wanted = validate_aggregate(group_by, measures)  # before the connection is used
    rows = run(connection, aggregate_statement(people_filter, group_by, wanted))
    return [{**{name: row[name] for name in group_by}, **finish(row, wanted)} for row in rows]


def value_counts(
    connection: Connection,
    people_filter: PeopleFilter,
    column: str,
    by: str | None = None,
    run: Runner = analytics.run,
) -> list[dict[str, Any]]:
    """How many people have each value of a numeric column (optionally per group):
    enough to draw exact histograms and box plots without fetching the people."""
    validate_value_counts(column, by)
    rows = run(connection, value_counts_statement(people_filter, column, by))
    return [{**row, "people": int(row["people"])} for row in rows]


def dimension_counts(
    connection: Connection,
    column: str,
    people_filter: PeopleFilter | None = None,
    run: Runner = analytics.run,
) -> list[dict[str, Any]]:
    """Every allowed value of a categorical attribute with its number of people
    (zero included), plus a None row for the missing values when there are any."""
    if column not in CATEGORY_COLUMNS:
        raise QueryError("name", f"unknown dimension {column!r}", CATEGORY_COLUMNS)
    return dimension_counts_many(connection, [column], people_filter, run)[column]


def dimension_counts_many(
    connection: Connection,
    columns: Sequence[str],
    people_filter: PeopleFilter | None = None,
    run: Runner = analytics.run,
) -> dict[str, list[dict[str, Any]]]:
    """dimension_counts of several attributes in two statements."""
    for column in columns:
        if column not in CATEGORY_COLUMNS:
            raise QueryError("name", f"unknown dimension {column!r}", CATEGORY_COLUMNS)
    counted: dict[str, dict[str | None, int]] = {column: {} for column in columns}
    for row in run(connection, dimension_counts_statement(columns, people_filter)):
        counted[row["dimension"]][row["value"]] = int(row["people"])
    answer: dict[str, list[dict[str, Any]]] = {column: [] for column in columns}
    for row in run(connection, labels_statement(columns)):
        answer[row["dimension"]].append(
            {"value": row["label"], "people": counted[row["dimension"]].get(row["label"], 0)}
        )
    for column in columns:
        if counted[column].get(UNKNOWN):
            answer[column].append({"value": UNKNOWN, "people": counted[column][UNKNOWN]})
    return answer


def facet_counts(
    connection: Connection,
    people_filter: PeopleFilter,
    columns: Sequence[str] = CATEGORY_COLUMNS,
    run: Runner = analytics.run,
) -> dict[str, list[dict[str, Any]]]:
    """Facets, as Datasette counts them: per categorical attribute, how many people
    each value has under the filter's OTHER conditions (its own choice left out, so
    the counts say what choosing another value would give). The attributes the
    filter does not name share one dimension_counts_many call; each named one needs
    its own (its filter differs)."""
    named = [column for column in columns if people_filter.categories.get(column)]
    answer: dict[str, list[dict[str, Any]]] = {}
    unnamed = [column for column in columns if column not in named]
    if unnamed:
        answer.update(dimension_counts_many(connection, unnamed, people_filter, run))
    for column in named:
        others = {name: values for name, values in people_filter.categories.items() if name != column}
        without = PeopleFilter(ranges=people_filter.ranges, categories=others)
        answer.update(dimension_counts_many(connection, [column], without, run))
    return {column: answer[column] for column in columns}


def range_bounds(connection: Connection, run: Runner = analytics.run) -> dict[str, tuple[int, int] | None]:
    """The smallest and largest value of each range attribute in the data (None for
    an attribute with no value): the explorer's sliders span these, not the
    domain's CHECK range."""
    education = Education.__table__
    values = {c: education.c.education_num if c == "education_num" else PERSON.c[c] for c in RANGE_COLUMNS}
    statement = select(
        *(func.min(value).label(f"{c}_min") for c, value in values.items()),
        *(func.max(value).label(f"{c}_max") for c, value in values.items()),
    ).select_from(PERSON.outerjoin(education, PERSON.c.education_id == education.c.id))
    row = run(connection, statement)[0]
    bounds: dict[str, tuple[int, int] | None] = {}
    for column in RANGE_COLUMNS:
        low, high = row[f"{column}_min"], row[f"{column}_max"]
        bounds[column] = None if low is None or high is None else (int(low), int(high))
    return bounds
