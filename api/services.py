"""The API's one service: wraps the warehouse query layer, owns the engine.

Controllers stay thin: they turn the query string into a `PeopleFilter` and call
this service, which opens one connection per call (per request) and returns
plain data. All SQL comes from `warehouse.query`, so the API and the explorer
can never disagree about what a filter means.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, Executable, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from api.errors import public_reason, raw_reason
from warehouse import analytics
from warehouse.config import Settings, get_settings
from warehouse.contract import column_title
from warehouse.db import DatabaseUnavailable, make_read_engine, renew_deadline
from warehouse.domain import CATEGORIES
from warehouse.estimates import Columns, sample_and_weighted
from warehouse.models import Load
from warehouse.people import fetch_people_rows, scan_by_id
from warehouse.query import (
    MEASURES,
    UNKNOWN_PARAM,
    PeopleFilter,
    aggregate_people,
    count_people,
    dimension_counts,
    dimension_counts_many,
    get_person,
    select_people,
)

log = logging.getLogger("api")


def make_api_engine(url: str, settings: Settings | None = None) -> Engine:
    """The API's engine: `warehouse.db.make_read_engine` (read-only on both
    databases) with the API's limits: statements end within
    API_STATEMENT_TIMEOUT, lock waits within API_LOCK_TIMEOUT, and a request
    waits API_DB_POOL_TIMEOUT at most for one of API_DB_POOL_SIZE connections
    (plus 2 for the background snapshot build and /health)."""
    settings = settings or get_settings()
    return make_read_engine(
        url,
        pool_size=settings.api_db_pool_size,
        max_overflow=2,
        pool_timeout_s=settings.api_db_pool_timeout_s,
        statement_timeout_s=settings.api_statement_timeout_s,
        lock_timeout_s=settings.api_lock_timeout_s,
    )


def public_database(url: str) -> str:
    """Which database, for /health: the backend and the database or file name only,
    never a directory, host, port or role."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "unknown"
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {Path(parsed.database or '').name}"
    return f"PostgreSQL database {parsed.database or ''}"


# Every data request asks it (for its ETag): built once.
DATA_VERSION: Final = select(func.coalesce(func.max(Load.id), 0), func.count(Load.id).filter(Load.status == "loaded"))

# Totals of this many recent filters are kept per process (about 300 bytes each).
COUNT_CACHE_ITEMS: Final = 4096


class CountCache:
    """Exact totals by (version of the data, filter), least recently used out.

    The version is the analytic copy's stamp, the one its count came from: an
    upload or `--replace` changes it, so a total is never served for other data
    (the stamp's documented blind spot, a hand-written UPDATE or DELETE, applies
    here as it does to the copy). Thread-safe: handlers run on a thread pool."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: OrderedDict[Hashable, int] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> int | None:
        with self._lock:
            total = self._items.get(key)
            if total is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return total

    def put(self, key: Hashable, total: int) -> None:
        with self._lock:
            self._items[key] = total
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)


def _filter_key(people_filter: PeopleFilter) -> Hashable:
    """The same people, the same key: order-independent (the filter's query-string form)."""
    return tuple(sorted((name, tuple(values)) for name, values in people_filter.to_params().items()))


def _sql_rows(connection: Connection, statement: Executable) -> list[dict[str, Any]]:
    return [dict(row) for row in connection.execute(statement).mappings()]


class CensusService:
    """Read-only census queries for the API; one connection per call."""

    def __init__(self, engine: Engine, url: str, count_cache_items: int = COUNT_CACHE_ITEMS) -> None:
        self.engine = engine
        self.url = url
        self.database = public_database(url)
        self.backend = engine.dialect.name
        self.counts = CountCache(count_cache_items)
        self._cursors = threading.local()  # per handler thread: (analytic copy, its DuckDB cursor)

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
            total, everyone = self._total(connection, people_filter)
            if offset >= total:
                return total, []
            scan = scan_by_id(connection.dialect, sort, offset + limit, total, everyone)
            names, rows = fetch_people_rows(connection, people_filter, fields, sort, limit, offset, scan=scan)
        return total, [dict(zip(names, row, strict=True)) for row in rows]

    def _total(self, connection: Connection, people_filter: PeopleFilter) -> tuple[int, int | None]:
        """How many people match, and how many people there are (None: unknown).

        From the count cache when this version of the data was counted for this
        filter before (paging through a result counts once), else from the
        analytic copy (or SQL while there is none, and then nothing is cached)."""
        copy = analytics.current(connection)
        if copy is None:
            return count_people(connection, people_filter, run=_sql_rows), None
        key = (copy.stamp, _filter_key(people_filter))
        total = self.counts.get(key)
        if total is None:
            total = self._count_on_copy(connection, copy, people_filter)
            self.counts.put(key, total)
        return total, copy.rows

    def _count_on_copy(self, connection: Connection, copy: analytics.AnalyticCopy, people_filter: PeopleFilter) -> int:
        """`count_people` on the copy, as `AnalyticCopy.count`'s SQL (labels
        already turned into ids) on a DuckDB cursor kept per handler thread:
        SQLAlchemy's statement building, BEGIN and ROLLBACK cost about twice the
        count itself (1.7 ms -> 0.7 ms of CPU on 48,842 people)."""
        held = getattr(self._cursors, "held", None)
        if held is None or held[0] is not copy:  # a new copy (an upload): a cursor on it
            held = self._cursors.held = (copy, copy.database.cursor())
        return copy.count(people_filter, held[1])

    def person(self, person_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            return get_person(connection, person_id)

    def stats(
        self, people_filter: PeopleFilter, group_by: Sequence[str], measures: Sequence[str] | None
    ) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return aggregate_people(connection, people_filter, group_by, measures or list(MEASURES))

    def estimates(
        self, people_filter: PeopleFilter, group_by: Sequence[str], measures: Sequence[str], **thresholds: Any
    ) -> tuple[Columns, Columns]:
        """warehouse.estimates' sample and census-weighted columns, from one query.
        `thresholds`: confidence, min_n, max_rse."""
        with self.engine.connect() as connection:
            return sample_and_weighted(connection, people_filter, group_by, measures, **thresholds)

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
            log.warning("health check: the database did not answer: %s", raw_reason(error))
            return False, None, None, public_reason(error)

    def data_version(self) -> tuple[int, int]:
        """What identifies the data's current version: (latest load id, loads in use).
        Every upload adds a load and --replace retires some, so either changes."""
        with self.engine.connect() as connection:
            row = connection.execute(DATA_VERSION).one()
        return int(row[0]), int(row[1])

    def count(self, people_filter: PeopleFilter) -> int:
        with self.engine.connect() as connection:
            return count_people(connection, people_filter)

    def stream_people(
        self,
        people_filter: PeopleFilter,
        fields: Sequence[str] | None,
        sort: str | None,
        limit: int | None,
        offset: int,
        batch_size: int = 1000,
    ) -> Iterator[list[dict[str, Any]]]:
        """Matching people in batches of `batch_size`, read through one streamed
        cursor (memory bounded by one batch). Each batch gets a fresh statement
        deadline, so an export of any size is bounded per batch, not in total."""
        statement = select_people(people_filter, fields, sort, limit, offset)
        with self.engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=batch_size).execute(statement)
            keys = list(result.keys())
            while True:
                renew_deadline(connection)
                rows = result.fetchmany(batch_size)
                if not rows:
                    break
                yield [dict(zip(keys, row, strict=True)) for row in rows]
