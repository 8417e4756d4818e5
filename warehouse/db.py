"""Engines for SQLite and PostgreSQL, and connecting with a bounded retry."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError


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


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # SQLite ignores foreign keys unless asked, per connection.
    cursor.execute("PRAGMA foreign_keys=ON")
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
