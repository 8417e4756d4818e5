"""Engines for SQLite and PostgreSQL, and connecting with a bounded retry."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

log = logging.getLogger(__name__)


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached; the message names where and why."""


def describe(url: str) -> str:
    """Where a URL points, without its password: 'host:port/db' or the SQLite file."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return repr(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {(parsed.database or '').removeprefix('file:')}"
    return f"PostgreSQL at {parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


# Pages of 16 KiB rather than SQLite's default 4 KiB: a census table is read in
# scans and index ranges, not by single rows. On 1,000,000 people a load took
# 0.1-0.2 s less (six index builds, each reading the whole table, and the
# write-ahead log's frames), a grouped count over every person 15% less, and
# pages of the people list the same (benchmarks/ingest.py; README "Uploading data").
SQLITE_PAGE_SIZE: Final = 16384


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # SQLite ignores foreign keys unless asked, per connection.
    cursor.execute("PRAGMA foreign_keys=ON")
    # Only a new file takes this (before WAL is set); an existing file keeps its
    # page size. See SQLITE_PAGE_SIZE.
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    # WAL lets the explorer and the API read while an upload writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for a SQLite file or a PostgreSQL server, configured for this project."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise DatabaseUnavailable(f"not a database URL: {url!r} ({error})") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise DatabaseUnavailable("the SQLite database must be a file, not in-memory")
        if not parsed.query.get("uri"):  # a file: URI (e.g. ?mode=ro) names an existing file
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)  # type: ignore[arg-type]
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            # SQLAlchemy 2.1 defaults to psycopg 3; this project ships psycopg2.
            url = parsed.set(drivername="postgresql+psycopg2")  # type: ignore[assignment]
        connect_args = {"connect_timeout": 5, "application_name": "census"}
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)  # type: ignore[arg-type]
    raise DatabaseUnavailable(f"unsupported database {backend!r} in {url!r}: use sqlite or postgresql")


def wait_for_database(
    engine: Engine,
    timeout_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Connect, retrying with exponential backoff for at most `timeout_s` seconds.

    A PostgreSQL container that is still starting refuses connections for a few
    seconds; a wrong host or password should still fail in bounded time.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.25
    while True:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return
        except OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
            if _is_permanent(reason) or time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(
                    f"cannot connect to {describe(engine.url.render_as_string(hide_password=False))}: {reason}"
                ) from None
            sleep(delay)
            delay = min(delay * 2, 5.0)


def _is_permanent(reason: str) -> bool:
    """Errors that no amount of waiting fixes: fail at once instead of retrying."""
    lowered = reason.lower()
    return any(
        marker in lowered
        for marker in (
            "password authentication failed",
            "does not exist",
            "unable to open database file",
            "readonly database",  # a SQLite file this user may not write
        )
    )


# --------------------------------------------------------------------------- read-only, time-bounded readers


def _sqlite_is_wal(path: Path) -> bool:
    """Bytes 18-19 of a SQLite header are 2 in WAL mode (https://sqlite.org/fileformat.html)."""
    try:
        with path.open("rb") as file:
            header = file.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[18] == 2


def sqlite_read_only_uri(path: Path) -> str:
    """A URI that opens `path` read-only without writing anything next to it.

    `mode=ro` never creates or writes the file. A WAL-mode file (the loader's
    mode) also needs its `-shm` index, which a reader must be able to create: in
    a directory this process may not write, the file is opened `immutable`
    instead (SQLite then takes no locks and assumes nobody writes the file, so
    restart the readers after an upload there)."""
    uri = f"file:{path}?mode=ro"
    if _sqlite_is_wal(path) and not os.access(path.parent, os.W_OK):
        uri += "&immutable=1"
    return uri


def bound_query_time(
    engine: Engine, statement_s: float | None, lock_s: float | None, *, read_only: bool = True
) -> None:
    """Every statement on `engine` ends within `statement_s` seconds (None: no limit).

    PostgreSQL: `statement_timeout` and `lock_timeout` per session, and
    read-only transactions. SQLite: a progress handler interrupts a statement past
    its deadline (each fetch of a streamed result gets a fresh one), and a locked
    file is waited for at most `lock_s` seconds (busy timeout; None: SQLite's 5 s)."""
    if engine.dialect.name == "postgresql":

        @event.listens_for(engine, "connect")
        def _postgres_limits(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            if statement_s is not None:
                cursor.execute("SET statement_timeout = %s", (f"{int(statement_s * 1000)}ms",))
            if lock_s is not None:
                cursor.execute("SET lock_timeout = %s", (f"{int(lock_s * 1000)}ms",))
            if read_only:
                cursor.execute("SET default_transaction_read_only = on")
            cursor.close()
            # psycopg2 opened a transaction for the SETs: commit, or the pool's
            # reset would roll them back.
            dbapi_connection.commit()

        return
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _sqlite_limits(dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        if lock_s is not None:
            dbapi_connection.execute(f"PRAGMA busy_timeout={int(lock_s * 1000)}")
        if statement_s is None:
            return
        deadline = [float("inf")]
        record.info["deadline"] = deadline
        record.info["statement_s"] = statement_s

        def past_deadline() -> int:
            return 1 if time.monotonic() > deadline[0] else 0  # non-zero interrupts the statement

        dbapi_connection.set_progress_handler(past_deadline, 10_000)

    if statement_s is None:
        return

    @event.listens_for(engine, "before_cursor_execute")
    def _sqlite_deadline(connection, _cursor, _statement, _parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        renew_deadline(connection)


def renew_deadline(connection: Connection) -> None:
    """Give the statement running on `connection` the engine's own bound afresh
    (SQLite; a no-op elsewhere, where each FETCH is a statement of its own).
    Every statement gets it at execution; a long read through one cursor (an
    export, the analytic copy) calls it before each batch, so it is bounded per
    batch, not in total."""
    info = connection.connection.info
    deadline, seconds = info.get("deadline"), info.get("statement_s")
    if deadline is not None and seconds is not None:
        deadline[0] = time.monotonic() + seconds


# --------------------------------------------------------------------------- the one read-only engine factory

# SQLite memory per reading connection. No mmap by default: every page the
# process ever touched through a map stays in its resident set (the 1 GB map of
# a 10,000,000-person file made the API 1.4 GB resident), while the page cache
# below is bounded per connection and the OS page cache is shared anyway.
# Aggregates, the big scans, read the analytic copy, not this file. See README
# "The API" for the measured cost.
READ_MMAP_BYTES: Final = 0
READ_CACHE_KIB: Final = 8192


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, absolute (None for other databases and in-memory SQLite).
    A URI form (`sqlite:///file:/path?mode=ro&uri=true`) names the same file."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    database = parsed.database.removeprefix("file:") if parsed.query.get("uri") else parsed.database
    return Path(database).resolve()


def _sqlite_read_pragmas(mmap_bytes: int, cache_kib: int) -> Callable[..., None]:
    def pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        # Readers never write: refuse it at the connection, whatever the SQL.
        cursor.execute("PRAGMA query_only=ON")
        cursor.execute(f"PRAGMA mmap_size={int(mmap_bytes)}")
        cursor.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        # GROUP BY sorts every matching row (SQLite has no hash aggregate): let the
        # sorter use both cores. (temp_store=MEMORY made those sorts 3x slower.)
        cursor.execute("PRAGMA threads=2")
        cursor.close()

    return pragmas


def make_read_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout_s: float = 30.0,
    statement_timeout_s: float | None = None,
    lock_timeout_s: float | None = None,
    mmap_bytes: int = READ_MMAP_BYTES,
    cache_kib: int = READ_CACHE_KIB,
) -> Engine:
    """An engine that only reads, for every reader (the API, the explorer).

    SQLite files are opened `mode=ro` (never created, never written; `immutable`
    in a directory this process may not write, see `sqlite_read_only_uri`) and
    query-only; unlike `make_engine` nothing is created or switched to WAL.
    PostgreSQL sessions are read-only transactions. With `statement_timeout_s`
    every statement ends within it (`bound_query_time`), and lock waits end
    within `lock_timeout_s`. The pool holds `pool_size` connections plus
    `max_overflow`, and a caller waits `pool_timeout_s` at most for one."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise DatabaseUnavailable(f"not a database URL: {url!r} ({error})") from None
    pool: dict[str, object] = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout_s}
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is None:
            raise DatabaseUnavailable("the SQLite database must be a file, not in-memory")
        if "immutable=1" in sqlite_read_only_uri(path):
            log.warning(
                "%s is in WAL mode in a directory this process may not write: opened immutable; "
                "restart the readers after an upload",
                path.name,
            )

        def connect() -> sqlite3.Connection:
            # check_same_thread: pooled across threads (one thread at a time).
            return sqlite3.connect(sqlite_read_only_uri(path), uri=True, check_same_thread=False)

        # The plain file URL: the engine's URL names the file (the analytic copy's files go beside it).
        engine = create_engine(f"sqlite:///{path}", creator=connect, **pool)  # type: ignore[arg-type]
        event.listen(engine, "connect", _sqlite_read_pragmas(mmap_bytes, cache_kib))
    else:
        engine = make_engine(url, **pool)
    bound_query_time(engine, statement_timeout_s, lock_timeout_s)
    return engine
