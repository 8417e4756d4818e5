"""The API's one service: wraps the warehouse query layer, owns the engine.

Controllers stay thin: they turn the query string into a `PeopleFilter` and call
this service, which opens one connection per call (per request) and returns
plain data. All SQL comes from `warehouse.query`, so the API and the explorer
can never disagree about what a filter means.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from warehouse import analytics
from warehouse.contract import column_title
from warehouse.db import DatabaseUnavailable, describe, make_engine
from warehouse.domain import CATEGORIES
from warehouse.query import (
    MEASURES,
    UNKNOWN_PARAM,
    PeopleFilter,
    aggregate_people,
    count_people,
    dimension_counts,
    dimension_counts_many,
    fetch_people,
    get_person,
)


def _sqlite_read_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # The API never writes: refuse it at the connection, whatever the SQL.
    cursor.execute("PRAGMA query_only=ON")
    # Map the file into memory and keep a larger page cache: reads skip syscalls.
    cursor.execute("PRAGMA mmap_size=1073741824")
    cursor.execute("PRAGMA cache_size=-65536")
    # GROUP BY sorts every matching row (SQLite has no hash aggregate): let the
    # sorter use both cores. (temp_store=MEMORY made those sorts 3x slower.)
    cursor.execute("PRAGMA threads=2")
    cursor.close()


def make_read_engine(url: str) -> Engine:
    """An engine for the API. SQLite files are opened read-write-but-never-create
    (a mistyped path is an error, not a new empty database) and query-only."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database).resolve()

        def connect() -> sqlite3.Connection:
            # mode=rw: never create the file; check_same_thread: pooled across threads.
            return sqlite3.connect(f"file:{path}?mode=rw", uri=True, check_same_thread=False)

        # Not warehouse.db.make_engine: that one creates missing folders and sets WAL,
        # both writes; the API only reads.
        engine = create_engine(url, creator=connect, pool_size=8, max_overflow=8)
        event.listen(engine, "connect", _sqlite_read_pragmas)
        return engine
    return make_engine(url, pool_size=8, max_overflow=8)


def _reason(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


class CensusService:
    """Read-only census queries for the API; one connection per call."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.database = describe(url)
        self.backend = engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()

    def people_page(
        self,
        people_filter: PeopleFilter,
        fields: Sequence[str] | None,
        sort: str | None,
        limit: int,
        offset: int,
    ) -> tuple[int, list[dict[str, Any]]]:
        """The exact total and one page, read on the same connection."""
        with self.engine.connect() as connection:
            total = count_people(connection, people_filter)
            rows = fetch_people(connection, people_filter, fields, sort, limit, offset) if offset < total else []
        return total, rows

    def person(self, person_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            return get_person(connection, person_id)

    def stats(
        self, people_filter: PeopleFilter, group_by: Sequence[str], measures: Sequence[str] | None
    ) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return aggregate_people(connection, people_filter, group_by, measures or list(MEASURES))

    def dimension(self, name: str, people_filter: PeopleFilter | None = None) -> dict[str, Any]:
        """Every allowed value of one categorical attribute with its count; `unknown`
        (missing) is always listed, since it is always an allowed filter value."""
        with self.engine.connect() as connection:
            return self._dimension(connection, name, people_filter)

    def dimensions(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            counts = dimension_counts_many(connection, list(CATEGORIES))  # two statements, not eighteen
        return [self._shape(name, counts[name]) for name in CATEGORIES]

    @classmethod
    def _dimension(cls, connection: Any, name: str, people_filter: PeopleFilter | None) -> dict[str, Any]:
        return cls._shape(name, dimension_counts(connection, name, people_filter))

    @staticmethod
    def _shape(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        values = [
            {
                "value": row["value"],
                "param": UNKNOWN_PARAM if row["value"] is None else row["value"],
                "people": row["people"],
            }
            for row in rows
        ]
        if not any(row["value"] is None for row in rows):
            values.append({"value": None, "param": UNKNOWN_PARAM, "people": 0})
        return {"name": name, "title": column_title(name), "values": values}

    def health(self) -> tuple[bool, int | None, bool | None, str | None]:
        """(answers, number of people, whether counts and aggregates come from the
        in-memory snapshot yet, reason it does not answer)."""
        try:
            with self.engine.connect() as connection:
                people = count_people(connection, PeopleFilter())
                return True, people, analytics.is_current(connection), None
        except (SQLAlchemyError, DBAPIError, DatabaseUnavailable, OSError) as error:
            return False, None, None, _reason(error)
