"""The analytic copy: an in-process DuckDB database that answers counts and
grouped aggregates with the *same* SQLAlchemy statements the SQL path runs.

Why: SQLite has no hash aggregation, so every GROUP BY sorts all the rows it
groups (a /stats query on 1,000,000 people took 70-860 ms in SQLite, /dimensions
2.4 s); DuckDB, a vectorised column store, answers the identical statements in a
few milliseconds. SQLite or PostgreSQL stays the system of record: pages of
people, single persons and every write go there; the copy only ever aggregates.

What is copied: `person` without its id and load (the 9 dimension keys and the
5 numbers) and the 9 small dimension tables, under the same table and column
names, so a statement built on `warehouse.models` runs on either engine.

Where: one DuckDB *file* per version of the data, written by the first process
that needs it and opened read-only by every other (API workers, explorers): a
file is built once per upload, not once per process, and DuckDB keeps its
compressed blocks (about 13 bytes per person) where an in-memory database holds
about 41 (README "Figures"). For a SQLite database the file sits next to it
(`census.db-analytic-<version>.duckdb`), for PostgreSQL in ANALYTIC_DIR. When
the directory cannot be written (a read-only deployment) the copy is built in
memory instead.
The copy is fed through Python (batches of rows from the system of record's
DBAPI cursor, as Arrow arrays, into DuckDB): it works the same for SQLite and
PostgreSQL and needs no DuckDB extension (`INSTALL sqlite/postgres` downloads
from the internet; see README "Querying" for the figures behind the choice).

Freshness: a copy belongs to one engine and one version of the data. Every use
first reads a version stamp (loads with status 'loaded': count, last id, rows
loaded; first and last person id: well under a millisecond) on the caller's
connection, and rebuilds when it changed. A build reads the stamp before the
rows, so an upload committed meanwhile can only make the copy look older than it
is (it is rebuilt on the next use), never newer. One thread builds while the
others answer in SQL. Above COLUMNAR_MAX_ROWS people no copy is held.
The stamp's blind spot: a hand-written UPDATE of a person, or a DELETE that
keeps the first and last id, is not seen (tests/test_analytics.py shows it);
after editing `person` by hand, run `python -m warehouse.analytics --discard`
(deletes the files) and restart the servers.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import hashlib
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple
from weakref import WeakKeyDictionary

import duckdb
import numpy as np
import pyarrow as pa
from duckdb_engine import ConnectionWrapper
from sqlalchemy import Connection, Engine, Executable, create_engine, func, select
from sqlalchemy.pool import QueuePool

from warehouse.config import columnar_max_rows, get_settings
from warehouse.contract import UNKNOWN
from warehouse.db import renew_deadline
from warehouse.domain import RANGES
from warehouse.filters import PeopleFilter
from warehouse.models import DIMENSIONS, Load, Person

logger = logging.getLogger(__name__)

PERSON = Person.__table__
LOAD = Load.__table__
MISSING: Final = 0  # a NULL key travels as 0 (dimension ids start at 1) and is NULL again in DuckDB
KEY_COLUMNS: Final = tuple(foreign_key for _, foreign_key in DIMENSIONS.values())
NUMBER_COLUMNS: Final = ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week")
COPIED_NUMBERS: Final = tuple(c for c in NUMBER_COLUMNS if c != "education_num")  # education_num lives on education
COPIED_COLUMNS: Final = (*COPIED_NUMBERS, *KEY_COLUMNS)
BATCH_ROWS: Final = 50_000


class CopyRefused(Exception):
    """The data cannot be copied: too many people, or values outside the stored types."""


# --------------------------------------------------------------------------- version stamp


class Stamp(NamedTuple):
    """Changes whenever the people change: an upload (with or without --replace)
    adds a loaded load with a new id, and people come and go by id."""

    loads: int
    last_load: int | None
    rows: int  # people the loaded uploads wrote: what a copy will hold
    first_person: int | None
    last_person: int | None


def _stamp_statement() -> Any:
    loaded = LOAD.c.status == "loaded"
    return select(
        select(func.count()).select_from(LOAD).where(loaded).scalar_subquery(),
        select(func.max(LOAD.c.id)).where(loaded).scalar_subquery(),
        select(func.coalesce(func.sum(LOAD.c.rows_loaded), 0)).where(loaded).scalar_subquery(),
        # Separate subqueries: SQLite answers a lone min() or max() from the index.
        select(func.min(PERSON.c.id)).scalar_subquery(),
        select(func.max(PERSON.c.id)).scalar_subquery(),
    )


# Read on every count and aggregate (every API page): built once, not per call
# (building it cost about as much CPU as SQLite spent answering it).
STAMP_STATEMENT: Final = _stamp_statement()


def read_stamp(connection: Connection) -> Stamp:
    """One round trip of indexed lookups (the load table has a row per upload)."""
    loads, last_load, rows, first_person, last_person = connection.execute(STAMP_STATEMENT).one()
    return Stamp(int(loads), last_load, int(rows), first_person, last_person)


# --------------------------------------------------------------------------- the copy


@dataclass(eq=False)
class AnalyticCopy:
    """One version of the data in DuckDB, and a SQLAlchemy engine over it."""

    stamp: Stamp
    database: duckdb.DuckDBPyConnection
    engine: Engine
    rows: int
    build_seconds: float
    path: Path | None = None  # the shared file, None for an in-memory copy

    def execute(self, statement: Executable) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(statement).mappings()]

    def close(self) -> None:
        self.engine.dispose()
        self.database.close()

    @functools.cached_property
    def keys(self) -> dict[str, dict[Any, list[int]]]:
        """Per filter column, the dimension ids of each label (of each years of
        schooling for `education_num`), read from the copy once."""
        cursor = self.database.cursor()
        try:
            keys: dict[str, dict[Any, list[int]]] = {}
            for column, (model, _) in DIMENSIONS.items():
                table = model.__table__.name
                keys[column] = {}
                for key, label in cursor.execute(f"SELECT id, label FROM {table}").fetchall():
                    keys[column].setdefault(label, []).append(key)
            keys["education_num"] = {}
            for key, years in cursor.execute("SELECT id, education_num FROM education").fetchall():
                keys["education_num"].setdefault(years, []).append(key)
            return keys
        finally:
            cursor.close()

    def count_sql(self, people_filter: PeopleFilter) -> tuple[str, list[Any]] | None:
        """`count_statement(people_filter)` for this copy as SQL text and values,
        with each category's labels (and education_num's years) replaced by the
        dimension ids they stand for; None when no one can match (a label no
        person has). The statement's `key IN (SELECT id FROM dim WHERE label IN
        (...))` cost DuckDB more to plan than to run: a page's count took 0.97 ms
        of CPU, 0.62 ms with the ids (48,842 people; every /people request that
        the count cache cannot serve counts). Same rows as the statement:
        tests/test_analytics.py compares them."""
        where: list[str] = []
        values: list[Any] = []
        keys = self.keys
        for column, (low, high) in people_filter.ranges.items():
            if low is None and high is None:
                continue
            if column == "education_num":
                ids = [
                    key
                    for years, found in keys[column].items()
                    if years is not None and (low is None or years >= low) and (high is None or years <= high)
                    for key in found
                ]
                if not ids:
                    return None
                where.append(f"education_id IN ({', '.join('?' * len(ids))})")
                values += ids
                continue
            if low is not None:
                where.append(f"{column} >= ?")
                values.append(low)
            if high is not None:
                where.append(f"{column} <= ?")
                values.append(high)
        for column, chosen in people_filter.categories.items():
            if not chosen:
                continue
            foreign_key = DIMENSIONS[column][1]
            ids = [key for label in chosen if label is not UNKNOWN for key in keys[column].get(label, ())]
            either = [f"{foreign_key} IN ({', '.join('?' * len(ids))})"] if ids else []
            if UNKNOWN in chosen:
                either.append(f"{foreign_key} IS NULL")
            if not either:
                return None
            where.append(either[0] if len(either) == 1 else f"({' OR '.join(either)})")
            values += ids
        return "SELECT count(*) FROM person" + (f" WHERE {' AND '.join(where)}" if where else ""), values

    def count(self, people_filter: PeopleFilter, cursor: duckdb.DuckDBPyConnection | None = None) -> int:
        """How many people match (`cursor`: one of this copy's, e.g. kept per thread)."""
        query = self.count_sql(people_filter)
        if query is None:
            return 0
        row = (cursor or self.database).execute(*query).fetchone()
        return int(row[0]) if row else 0


def _duckdb_type(column: str) -> pa.DataType:
    """Keys as int16; numbers as int16 when their CHECK range fits, else int32."""
    if column in KEY_COLUMNS:
        return pa.int16()
    return pa.int16() if RANGES[column][1] <= np.iinfo(np.int16).max else pa.int32()


def build(connection: Connection, max_rows: int | None = None, directory: Path | None = None) -> AnalyticCopy:
    """The copy of the data `connection` sees (not cached: see `current`): opened
    from its shared file when one exists for this version, else built (into a new
    shared file when `directory` can be written, else in memory).

    The stamp is read before the rows: an upload committed while they are read
    makes the copy look older than it is, never newer."""
    started = time.perf_counter()
    stamp = read_stamp(connection)
    if max_rows is not None and stamp.rows > max_rows:
        raise CopyRefused(f"more than {max_rows:,} people (COLUMNAR_MAX_ROWS)")
    path = shared_path(connection.engine, stamp, directory)
    if path is not None and path.exists():
        return _open(stamp, duckdb.connect(str(path), read_only=True, config=_CONFIG), started, path)
    if path is not None:
        try:
            return _build_file(connection, stamp, path, max_rows, started)
        except (OSError, duckdb.IOException) as error:  # cannot write there: hold it in memory
            logger.info("analytic copy kept in memory (%s cannot be written: %s)", path.parent, error)
    database = duckdb.connect(":memory:", config=_CONFIG)
    try:
        _fill(connection, database, max_rows)
    except BaseException:
        database.close()
        raise
    return _open(stamp, database, started, None)


_CONFIG: Final = {"threads": 2}


def _fill(connection: Connection, database: duckdb.DuckDBPyConnection, max_rows: int | None) -> int:
    for model, _ in DIMENSIONS.values():
        _copy_dimension(connection, database, model.__table__)
    return _copy_people(connection, database, max_rows)


def _build_file(connection: Connection, stamp: Stamp, path: Path, max_rows: int | None, started: float) -> AnalyticCopy:
    """Write the copy to a temporary file beside `path`, then rename it into place
    (atomic: a reader sees a whole file or none; a concurrent builder's identical
    file may win the race), and open it read-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"{path.parent} is not writable")
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with duckdb.connect(str(temporary), config=_CONFIG) as database:
            _fill(connection, database, max_rows)
            database.execute("CHECKPOINT")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
        Path(f"{temporary}.wal").unlink(missing_ok=True)
    _discard_older(path)
    return _open(stamp, duckdb.connect(str(path), read_only=True, config=_CONFIG), started, path)


def _open(stamp: Stamp, database: duckdb.DuckDBPyConnection, started: float, path: Path | None) -> AnalyticCopy:
    rows = int(database.execute("SELECT count(*) FROM person").fetchone()[0])  # type: ignore[index]
    engine = create_engine(
        "duckdb://",
        # One DuckDB database, one cursor (its own connection to it) per pooled connection.
        creator=lambda: ConnectionWrapper(database.cursor()),
        poolclass=QueuePool,
        pool_size=4,
        max_overflow=12,
    )
    return AnalyticCopy(stamp, database, engine, rows, time.perf_counter() - started, path)


def _file_stem(engine: Engine, directory: Path | None) -> Path | None:
    """Where this database's copies live, as a path prefix; None: nowhere shared."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and directory is None:
        # The explorer opens SQLite read-only as a URI (file:/path?mode=ro&uri=true).
        database = Path(url.database.removeprefix("file:"))
        return database.with_name(f"{database.name}-analytic")
    where = directory or get_settings().analytic_dir
    # Never the password: the name only tells databases apart.
    digest = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return where / f"{url.get_backend_name()}-{digest}-analytic"


def shared_path(engine: Engine, stamp: Stamp, directory: Path | None = None) -> Path | None:
    """The shared file of one version of one database's data."""
    stem = _file_stem(engine, directory)
    if stem is None:
        return None
    version = "-".join(str(part if part is not None else "x") for part in stamp)
    return stem.with_name(f"{stem.name}-{version}.duckdb")


def _discard_older(path: Path) -> None:
    """Remove the other versions' files of the same database (a process still
    reading one keeps it open until it moves on: POSIX unlink semantics)."""
    prefix = path.name.rsplit("-analytic-", 1)[0] + "-analytic-"
    for other in path.parent.glob(f"{prefix}*.duckdb"):
        if other != path:
            other.unlink(missing_ok=True)


def discard(engine: Engine, directory: Path | None = None) -> int:
    """Delete every shared file of `engine`'s database (after a hand edit of person); how many."""
    stem = _file_stem(engine, directory)
    if stem is None:
        return 0
    files = list(stem.parent.glob(f"{stem.name}-*.duckdb"))
    for path in files:
        path.unlink(missing_ok=True)
    return len(files)


def _copy_dimension(connection: Connection, database: duckdb.DuckDBPyConnection, table: Any) -> None:
    rows = connection.execute(select(*table.columns)).all()
    arrays = {column.name: [row[index] for row in rows] for index, column in enumerate(table.columns)}
    data = pa.table(arrays)  # noqa: F841  (DuckDB reads the local variable by name)
    database.execute(f'CREATE TABLE "{table.name}" AS SELECT * FROM data')


def _copy_people(connection: Connection, database: duckdb.DuckDBPyConnection, max_rows: int | None) -> int:
    """person's copied columns, batch by batch as Arrow, NULL keys restored."""
    types = [_duckdb_type(name) for name in COPIED_COLUMNS]
    restore = ", ".join(f'NULLIF("{c}", {MISSING}) AS "{c}"' if c in KEY_COLUMNS else f'"{c}"' for c in COPIED_COLUMNS)
    count = 0
    for batch in _batches(connection, BATCH_ROWS):
        count += len(batch)
        if max_rows is not None and count > max_rows:
            raise CopyRefused(f"more than {max_rows:,} people (COLUMNAR_MAX_ROWS)")
        table = _as_array(batch, len(COPIED_COLUMNS))
        arrow = pa.record_batch(  # noqa: F841  (read by DuckDB by name)
            [_checked(table[:, i], types[i], name) for i, name in enumerate(COPIED_COLUMNS)],
            names=list(COPIED_COLUMNS),
        )
        if count == len(batch):
            database.execute(f"CREATE TABLE person AS SELECT {restore} FROM arrow")
        else:
            database.execute(f"INSERT INTO person SELECT {restore} FROM arrow")
    if count == 0:  # no people: the table still exists, with the same types
        columns = ", ".join(
            f'"{c}" {"SMALLINT" if t == pa.int16() else "INTEGER"}' for c, t in zip(COPIED_COLUMNS, types)
        )
        database.execute(f"CREATE TABLE person ({columns})")
    return count


def _batches(connection: Connection, size: int) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Rows straight from the DBAPI cursor: SQLAlchemy's Row objects cost about
    1 s per million rows more."""
    picked = [
        func.coalesce(PERSON.c[name], MISSING) if PERSON.c[name].nullable else PERSON.c[name] for name in COPIED_COLUMNS
    ]
    compiled = select(*picked).compile(dialect=connection.dialect)
    parameters: Any = compiled.params
    if compiled.positional:
        parameters = tuple(compiled.params[name] for name in compiled.positiontup or ())
    driver = connection.connection.driver_connection
    # A named cursor is PostgreSQL's server-side cursor: it streams, where a plain
    # psycopg2 cursor would pull every row into the client at once.
    is_postgres = connection.dialect.name == "postgresql"
    cursor = driver.cursor(name="census_analytic_copy") if is_postgres else driver.cursor()  # type: ignore[union-attr]
    try:
        # Each batch gets the engine's statement deadline afresh: the whole copy of
        # 10,000,000 people takes longer than one statement may (the API's 10 s),
        # and interrupted, it was started again and again and never finished.
        renew_deadline(connection)
        cursor.execute(str(compiled), parameters)
        while True:
            renew_deadline(connection)
            batch = cursor.fetchmany(size)
            if not batch:
                break
            yield batch
    finally:
        cursor.close()


def _as_array(batch: Sequence[tuple[Any, ...]], width: int) -> np.ndarray:
    try:
        flat = np.fromiter(itertools.chain.from_iterable(batch), dtype=np.int64, count=len(batch) * width)
    except (TypeError, ValueError, OverflowError) as error:
        raise CopyRefused(f"person holds a value that is not a whole number: {error}") from None
    return flat.reshape(len(batch), width)


def _checked(values: np.ndarray, arrow_type: pa.DataType, column: str) -> pa.Array:
    """Refuse values the stored type cannot hold (they would wrap around)."""
    dtype = np.dtype(arrow_type.to_pandas_dtype())
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    if len(values) and (values.min() < low or values.max() > high):
        raise CopyRefused(f"person.{column} holds values outside {low}..{high}")
    return pa.array(values.astype(dtype), type=arrow_type)


# --------------------------------------------------------------------------- one copy per engine


@dataclass
class _Slot:
    """One engine's copy; `lock` is held while it is being built."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    copy: AnalyticCopy | None = None
    refused: tuple[Stamp, int] | None = None  # (version, limit) that could not be held: do not retry


# Weak keys: an engine that is disposed of and dropped takes its copy with it.
_slots: WeakKeyDictionary[Engine, _Slot] = WeakKeyDictionary()
_slots_lock = threading.Lock()


def _slot(engine: Engine) -> _Slot:
    with _slots_lock:
        slot = _slots.get(engine)
        if slot is None:
            slot = _slots[engine] = _Slot()
        return slot


def cached(engine: Engine) -> AnalyticCopy | None:
    """The copy held for `engine`, if any, fresh or not (for tests and diagnostics)."""
    with _slots_lock:
        slot = _slots.get(engine)
    return slot.copy if slot else None


def current(connection: Connection, *, wait: bool = False) -> AnalyticCopy | None:
    """The copy of exactly the data `connection` sees, (re)built if needed.

    None means "answer in SQL": the copy is disabled or the data is larger than
    COLUMNAR_MAX_ROWS, another thread is building it (unless `wait`), or the
    connection does not see the committed data (its own uncommitted writes, or
    an upload that committed a moment ago)."""
    limit = columnar_max_rows()
    if limit <= 0:
        return None
    stamp = read_stamp(connection)
    if stamp.rows > limit:
        return None
    slot = _slot(connection.engine)
    copy = slot.copy
    if copy is not None and copy.stamp == stamp:
        return copy
    if slot.refused == (stamp, limit) or not slot.lock.acquire(blocking=wait):
        return None
    try:
        return _refresh(slot, connection.engine, stamp, limit)
    finally:
        slot.lock.release()


def _refresh(slot: _Slot, engine: Engine, stamp: Stamp, limit: int) -> AnalyticCopy | None:
    """Under the slot's lock: make the slot hold the copy of `stamp`, if that is what is committed."""
    copy = slot.copy
    if copy is not None and copy.stamp == stamp:
        return copy  # built by the thread that held the lock before
    # A connection of its own, not the caller's: the copy is shared, so it must
    # hold committed data, and the caller may be inside a writing transaction.
    with engine.connect() as connection:
        if read_stamp(connection) != stamp:
            return None
        old, slot.copy = slot.copy, None  # requests answer in SQL while the new copy is built
        if old is not None:
            # Not closed: a request may still be reading it; DuckDB frees it with the last reference.
            old.engine.dispose()
        try:
            copy = build(connection, limit)
        except CopyRefused as reason:
            logger.warning("no analytic copy (aggregates run in SQL): %s", reason)
            slot.refused = (stamp, limit)
            return None
    slot.copy = copy
    logger.info("analytic copy of %s people built in %.2f s", f"{copy.rows:,}", copy.build_seconds)
    return copy if copy.stamp == stamp else None


def is_current(connection: Connection) -> bool:
    """Whether the engine holds the copy of the data `connection` sees (for /health)."""
    copy = cached(connection.engine)
    return copy is not None and copy.stamp == read_stamp(connection)


def run(connection: Connection, statement: Executable) -> list[dict[str, Any]]:
    """Rows of an aggregate statement: from the analytic copy when it holds the
    data `connection` sees, else from the system of record."""
    copy = current(connection)
    if copy is not None:
        return copy.execute(statement)
    return [dict(row) for row in connection.execute(statement).mappings()]


def main(argv: list[str] | None = None) -> None:
    from warehouse.config import resolve_database_url
    from warehouse.db import make_engine

    parser = argparse.ArgumentParser(description="The analytic copy's shared files.")
    parser.add_argument("--discard", action="store_true", help="delete them (after editing person by hand)")
    parser.add_argument("--db", choices=["sqlite", "postgres"])
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    engine = make_engine(resolve_database_url(args.db, args.url))
    if args.discard:
        print(f"deleted {discard(engine)} analytic file(s)")
    else:
        copy = warm_up(engine)
        print(f"analytic copy: {copy.path if copy else 'none'}")


def warm_up(engine: Engine) -> AnalyticCopy | None:
    """Build `engine`'s copy now (waiting for a build in progress), so the first
    request that needs it does not pay for it."""
    with engine.connect() as connection:
        return current(connection, wait=True)


def warm_up_in_background(engine: Engine) -> threading.Thread:
    """warm_up on a daemon thread, for servers at start-up: it never delays start-up
    or shutdown, and a failure is only logged (SQL answers meanwhile)."""

    def warm() -> None:
        try:
            warm_up(engine)
        except Exception:  # any failure: the copy is only an optimization
            logger.warning("analytic copy warm-up failed; aggregates answer in SQL meanwhile", exc_info=True)

    thread = threading.Thread(target=warm, name="analytic-copy-warm-up", daemon=True)
    thread.start()
    _warm_ups.append(thread)
    return thread


# Daemon, so start-up and a server's shutdown signal never wait for it; but a thread
# still inside DuckDB when the interpreter finalizes aborts the whole process
# ("terminate called after throwing ...": DuckDB's bindings cannot take the GIL back),
# so the interpreter's exit waits for a build in progress, for a bounded time.
_warm_ups: list[threading.Thread] = []
_EXIT_WAIT_SECONDS: Final = 120.0


@atexit.register
def _wait_for_warm_ups() -> None:
    deadline = time.monotonic() + _EXIT_WAIT_SECONDS
    for thread in _warm_ups:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


if __name__ == "__main__":
    main()
