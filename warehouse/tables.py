"""Browsing any table or view in readable form (labels for keys, titles), one page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, FromClause, func, inspect, select

from warehouse.aggregates import count_people
from warehouse.contract import column_title
from warehouse.filters import PeopleFilter, QueryError
from warehouse.models import DIMENSIONS, Base, Person, load_tables
from warehouse.people import PEOPLE_COLUMNS, Joins

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


def list_tables(connection: Connection) -> list[tuple[str, str]]:
    """(name, friendly title) of every table and view that exists, `people` first."""
    inspector = inspect(connection)
    # A large append's load table (PostgreSQL) is part of person, shown through it.
    existing = set(inspector.get_table_names()) - set(load_tables(connection))
    existing |= set(inspector.get_view_names())
    known = [name for name in TABLE_TITLES if name in existing]
    others = sorted(existing - set(TABLE_TITLES))
    return [(name, TABLE_TITLES.get(name, column_title(name))) for name in [*known, *others]]


def _readable_select(table_name: str) -> tuple[list[ColumnElement[Any]], FromClause]:
    """A table's columns with foreign keys to dimensions replaced by their labels."""
    if table_name == "people":
        joins = Joins()
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
PERSON = Person.__table__


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
