"""Pages of people: the SELECTs for the people view's rows, always run in SQL
(the system of record), never in the analytic copy.

Results have the columns of the `people` view (labels, not keys), but the SQL is
built on the `person` fact table, joining only the dimensions a query shows:
SQLite does not drop unused LEFT JOINs inside a view, and filtering through the
view's labels cost 350 ms instead of 6 ms on a 1,000,000-row file. A test checks
that both paths return the same people.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    Alias,
    Column,
    ColumnElement,
    Connection,
    Dialect,
    Executable,
    FromClause,
    Select,
    literal_column,
    select,
)
from sqlalchemy.sql.visitors import replacement_traverse

from warehouse.contract import PERSON, UNKNOWN
from warehouse.domain import CATEGORIES, RANGES
from warehouse.filters import PeopleFilter, QueryError
from warehouse.models import DIMENSIONS, people

# Columns of the people view, in order.
PEOPLE_COLUMNS: Final[tuple[str, ...]] = tuple(column.name for column in people.columns)


class Joins:
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


def _order(sort: str | None, joins: Joins) -> list[Any]:
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
    *,
    scan_by_id: bool = False,
) -> Select[Any]:
    """The SELECT for a page of people (or all of them, for a streamed export).

    A page is found first as person ids (from indexes, joining only the sort
    column's dimension), then only those rows are joined to their labels: SQLite
    would otherwise join every matching row before sorting (460 ms -> 40 ms for a
    page of 200,000 matches out of 1,000,000).

    `scan_by_id` (a page in id order): the filter's columns are not used as an
    index, so the ids are read in id order and the scan stops at the page's end;
    see `scan_by_id`.
    """
    names = _check_columns(columns)
    joins = Joins()
    selected = [joins.column(name) for name in names]
    if limit is None:
        statement = select(*selected).select_from(joins.from_clause()).where(*people_filter.conditions())
        return statement.order_by(*_order(sort, joins)).offset(offset or None)

    page_joins = Joins()
    order = _order(sort, page_joins)
    conditions = people_filter.conditions()
    if scan_by_id and not page_joins.aliases:
        conditions = [_unindexed(condition) for condition in conditions]
    page = select(PERSON.c.id).select_from(page_joins.from_clause()).where(*conditions)
    page = page.order_by(*order).limit(limit).offset(offset or None).subquery("page")
    outer_order = _order(sort, joins)
    # The page comes first in FROM: PostgreSQL keeps the written join order past
    # join_collapse_limit (8), and with nine dimensions joined before the page it
    # joined all 1,000,000 people to their labels first (1.2 s instead of 2 ms).
    joined: FromClause = page.join(PERSON, page.c.id == PERSON.c.id)
    for column, alias in joins.aliases.items():
        joined = joined.outerjoin(alias, PERSON.c[DIMENSIONS[column][1]] == alias.c.id)
    return select(*selected).select_from(joined).order_by(*outer_order)


def _unindexed(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """The same condition on `person.x + 0` instead of `person.x`: equal for every
    row, but no index matches the expression, so the database does not use one."""

    def replace(element: Any) -> Any:
        if isinstance(element, Column) and element.table is PERSON and element.name != "id":
            return element + literal_column("0", type_=element.type)
        return None

    return replacement_traverse(condition, {}, replace)  # type: ignore[no-any-return]


def scan_by_id(dialect: Dialect, sort: str | None, reach: int, total: int, people: int | None) -> bool:
    """Whether a SQLite page in id order is cheaper read in id order than from an index.

    SQLite (without ANALYZE statistics, which a read-only reader cannot make)
    takes an index on the filter's columns whenever there is one, reads *every*
    match and sorts them by id to keep the first `reach` (offset + limit): 2,088,999
    matches out of 10,000,000 cost 400 ms for a page of 100. Read in id order,
    the scan stops after about reach * people / total rows (matches spread
    evenly over the ids; when they cluster at the end, the scan reads more, up
    to the table: the statement deadline still bounds it). The index reads the
    `total` matches, each usually with a lookup of its row, several times the
    cost of a row read in order: with random filters and offsets on 48,842
    people, a page took 2.1 ms on average when scanning up to 1x the matches,
    1.2 ms up to 8x (SCAN_FACTOR). PostgreSQL's planner has statistics and
    chooses itself."""
    if dialect.name != "sqlite" or sort not in (None, "id") or not people or total <= 0:
        return False
    return reach * people <= SCAN_FACTOR * total * total


SCAN_FACTOR: Final = 8


def fetch_people(
    connection: Connection,
    people_filter: PeopleFilter,
    columns: Sequence[str] | None = None,
    sort: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    names, rows = fetch_people_rows(connection, people_filter, columns, sort, limit, offset)
    return [dict(zip(names, row, strict=True)) for row in rows]


def fetch_people_rows(
    connection: Connection,
    people_filter: PeopleFilter,
    columns: Sequence[str] | None = None,
    sort: str | None = None,
    limit: int = 100,
    offset: int = 0,
    *,
    scan: bool = False,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """One page as (column names, rows as tuples), through SQL compiled once per
    filter shape (see `prepared_page`); the same rows as `select_people`'s statement.
    `scan`: read the ids in id order (`scan_by_id` says when that is cheaper)."""
    if limit < 0 or offset < 0:
        raise QueryError("limit" if limit < 0 else "offset", "must not be negative")
    names = _check_columns(columns)
    shape, values = page_shape(people_filter, limit, offset)
    prepared = prepared_page(connection.dialect, shape, tuple(names), sort, scan)
    if prepared is None:  # a shape that cannot be prepared: build the statement
        statement = select_people(people_filter, names, sort, limit, offset, scan_by_id=scan)
        return names, [tuple(row) for row in connection.execute(statement)]
    ordered = [values[slot] for slot in prepared.slots]
    parameters = tuple(ordered) if prepared.positional else dict(zip(prepared.names, ordered, strict=True))
    # exec_driver_sql still runs the engine's events (the statement deadline);
    # the rows come straight from the DBAPI cursor, as tuples.
    result = connection.exec_driver_sql(prepared.sql, parameters)
    try:
        return names, result.cursor.fetchall()  # type: ignore[union-attr]
    finally:
        result.close()


# --------------------------------------------------------------------------- prepared pages
#
# Building and compiling `select_people`'s statement cost more CPU than SQLite
# spent running it (about 0.4 ms of SQLAlchemy per page of 100 on 48,842 people).
# A page's SQL depends only on the filter's *shape* (which ranges have which
# ends, how many labels each category lists and whether `unknown` is one of
# them), the columns and the sort; the values, limit and offset are
# parameters (OFFSET always is one: OFFSET 0 is no offset). So the SQL is
# compiled once per shape and dialect, and each
# request only places its values. Which value goes to which parameter is not
# guessed: the shape is compiled from a probe filter whose every value is
# distinct, and each parameter is matched to the value it received.

Shape = tuple[tuple[str, str, int, int], ...]


@dataclass(frozen=True)
class PreparedPage:
    sql: str  # in the dialect's parameter style, IN lists expanded
    names: tuple[str, ...]  # the parameters, in the order a positional style takes them
    slots: tuple[int, ...]  # for each parameter, the index of its value in `page_shape`'s values
    positional: bool


def page_shape(people_filter: PeopleFilter, limit: int, offset: int) -> tuple[Shape, list[Any]]:
    """The filter's shape and its values, in a fixed order (ranges, labels, limit, offset)."""
    shape: list[tuple[str, str, int, int]] = []
    values: list[Any] = []
    for column, (low, high) in people_filter.ranges.items():
        if low is None and high is None:
            continue
        shape.append(("range", column, int(low is not None), int(high is not None)))
        values += [bound for bound in (low, high) if bound is not None]
    for column, chosen in people_filter.categories.items():
        if not chosen:
            continue
        labels = [label for label in chosen if label is not UNKNOWN]
        shape.append(("category", column, len(labels), int(len(labels) < len(chosen))))
        values += labels
    values += [limit, offset]
    return tuple(shape), values


def _probe(shape: Shape) -> tuple[PeopleFilter, list[Any]]:
    """A filter of `shape` whose values are all distinct, and those values in `page_shape`'s order."""
    used: set[Any] = set()

    def fresh(candidates: Iterator[Any]) -> Any:
        value = next((v for v in candidates if v not in used), None)
        if value is None:
            raise LookupError("no distinct value left")
        used.add(value)
        return value

    ranges: dict[str, tuple[int | None, int | None]] = {}
    categories: dict[str, tuple[str | None, ...]] = {}
    for kind, column, first, second in shape:
        if kind == "range":
            lowest, highest = RANGES[column]
            low = fresh(iter(range(lowest, highest + 1))) if first else None
            high = fresh(iter(range(highest, lowest - 1, -1))) if second else None
            ranges[column] = (low, high)
        else:
            labels = tuple(fresh(iter(CATEGORIES[column])) for _ in range(first))
            categories[column] = labels + ((UNKNOWN,) if second else ())
    probe = PeopleFilter(ranges=ranges, categories=categories)  # refuses low > high
    limit = fresh(itertools.count(2_000_000_001))
    offset = fresh(itertools.count(2_000_000_001))
    return probe, page_shape(probe, limit, offset)[1]


@functools.lru_cache(maxsize=512)
def prepared_page(
    dialect: Dialect, shape: Shape, columns: tuple[str, ...], sort: str | None, scan: bool = False
) -> PreparedPage | None:
    """The compiled page SQL for one shape (None: use the statement; e.g. more
    labels asked than a category has distinct values). Raises QueryError for a
    bad sort, as `select_people` does."""
    return _prepare(
        dialect,
        shape,
        lambda probe, limit, offset: select_people(probe, columns, sort, limit=limit, offset=offset, scan_by_id=scan),
        paged=True,
    )


def _prepare(
    dialect: Dialect, shape: Shape, build: Callable[[PeopleFilter, int, int], Executable], *, paged: bool
) -> PreparedPage | None:
    try:
        probe, values = _probe(shape)
    except (LookupError, QueryError):
        return None
    statement = build(probe, values[-2], values[-1])
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.params)
    slot_of = {value: index for index, value in enumerate(values)}
    slots = tuple(slot_of.get(compiled.params[name], -1) for name in names)
    used = len(values) if paged else len(values) - 2
    if sorted(slots) != list(range(used)):  # every value used exactly once, nothing else
        return None
    return PreparedPage(str(compiled), names, slots, compiled.positional)


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


def get_person(connection: Connection, person_id: int) -> dict[str, Any] | None:
    joins = Joins()
    selected = [joins.column(name) for name in PEOPLE_COLUMNS]
    statement = select(*selected).select_from(joins.from_clause()).where(PERSON.c.id == person_id)
    row = connection.execute(statement).mappings().first()
    return dict(row) if row else None
