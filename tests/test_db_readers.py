"""The one read-only engine factory (`warehouse.db.make_read_engine`), used by the
API and the explorer alike: real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from api.services import make_api_engine
from explorer.store import engine_for
from warehouse.db import (
    READ_CACHE_KIB,
    READ_MMAP_BYTES,
    DatabaseUnavailable,
    make_read_engine,
    sqlite_file,
)

ENDLESS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"


def _pragma(engine: Engine, name: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(f"PRAGMA {name}")).scalar_one())


@pytest.mark.parametrize("reader", ["api", "explorer"])
def test_every_reader_gets_the_same_read_only_sqlite_engine(sqlite_census_url: str, reader: str) -> None:
    # The explorer's engine is shared per URL for the whole process: not disposed here.
    engine = make_api_engine(sqlite_census_url) if reader == "api" else engine_for(sqlite_census_url)
    assert Path(engine.url.database or "") == sqlite_file(sqlite_census_url)  # the file, not a URI
    assert _pragma(engine, "query_only") == 1
    assert _pragma(engine, "mmap_size") == READ_MMAP_BYTES
    assert _pragma(engine, "cache_size") == -READ_CACHE_KIB
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM person")).scalar_one() > 0
        with pytest.raises(OperationalError, match="readonly"):
            connection.execute(text("DELETE FROM gender"))
    if reader == "api":
        engine.dispose()


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "census.db"
    engine = make_read_engine(f"sqlite:///{missing}")
    with pytest.raises(OperationalError, match="unable to open"), engine.connect():
        pass
    engine.dispose()
    assert not missing.parent.exists()


def test_statements_are_bounded_only_when_asked(sqlite_census_url: str) -> None:
    bounded = make_read_engine(sqlite_census_url, statement_timeout_s=0.3)
    started = time.monotonic()
    with bounded.connect() as connection, pytest.raises(OperationalError, match="interrupted"):
        connection.execute(text(ENDLESS))
    assert time.monotonic() - started < 2
    bounded.dispose()
    unbounded = make_read_engine(sqlite_census_url)
    with unbounded.connect() as connection:
        assert "deadline" not in connection.connection.info  # no progress handler was installed
    unbounded.dispose()


def test_urls_the_factory_refuses_or_understands() -> None:
    with pytest.raises(DatabaseUnavailable, match="in-memory"):
        make_read_engine("sqlite://")
    with pytest.raises(DatabaseUnavailable, match="not a database URL"):
        make_read_engine("no url at all")
    # The URI form names the same file as the plain one.
    assert sqlite_file("sqlite:///file:/srv/census.db?mode=ro&uri=true") == Path("/srv/census.db")
    assert sqlite_file("sqlite:////srv/census.db") == Path("/srv/census.db")
    assert sqlite_file("postgresql://census@db/census") is None


@pytest.mark.postgres
def test_postgres_readers_are_read_only_sessions(postgres_census_url: str) -> None:
    explorer = make_read_engine(postgres_census_url)  # what the explorer gets: read-only, not time-bounded
    api = make_api_engine(postgres_census_url)
    try:
        with explorer.connect() as connection:
            assert connection.execute(text("SHOW default_transaction_read_only")).scalar_one() == "on"
            assert connection.execute(text("SHOW statement_timeout")).scalar_one() == "0"
            with pytest.raises(Exception, match="read-only transaction"):
                connection.execute(text("DELETE FROM gender"))
        with api.connect() as connection:
            assert connection.execute(text("SHOW default_transaction_read_only")).scalar_one() == "on"
            assert connection.execute(text("SHOW statement_timeout")).scalar_one() == "10s"
    finally:
        explorer.dispose()
        api.dispose()
