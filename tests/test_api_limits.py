"""The API under locks, slow queries, a full pool, a read-only deployment and --replace.

Real SQLite files and a real PostgreSQL server; locks are taken by a second,
ordinary client connection, as an upload or a maintenance job would.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg2
import pytest
from litestar.testing import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from api.app import create_app
from api.services import make_api_engine
from devtools.postgres import PostgresServer
from devtools.servers import ServerProcess, free_port, python_as
from loaders.upload import upload
from tests.test_api import PEOPLE
from warehouse.config import DEFAULT_SOURCE, get_settings, sqlite_url
from warehouse.db import bound_query_time, make_engine

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sqlite_copy(sqlite_census_url: str, tmp_path: Path) -> Path:
    """This test's own copy of the loaded SQLite file, in the rollback-journal mode,
    where a writer's exclusive lock blocks readers (in WAL mode nothing does)."""
    target = tmp_path / "census.db"
    shutil.copy(sqlite_census_url.removeprefix("sqlite:///"), target)
    with sqlite3.connect(target) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")
    return target


@contextmanager
def sqlite_write_lock(path: Path) -> Iterator[None]:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def timed_get(client: TestClient, path: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = client.get(path)
    return time.monotonic() - started, response


# --------------------------------------------------------------------------- SQLite


def test_sqlite_statement_is_interrupted_past_its_limit(sqlite_copy: Path) -> None:
    engine = make_api_engine(sqlite_url(sqlite_copy))
    bound_query_time(engine, 0.3, 0.3)  # tighter than the API's own settings
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    started = time.monotonic()
    with engine.connect() as connection, pytest.raises(OperationalError, match="interrupted"):
        connection.execute(text(endless))
    assert time.monotonic() - started < 2
    with engine.connect() as connection:  # the connection is usable again
        assert connection.scalar(text("SELECT count(*) FROM person")) > 0
    engine.dispose()


def test_sqlite_reader_cannot_write(sqlite_copy: Path) -> None:
    engine = make_api_engine(sqlite_url(sqlite_copy))
    with engine.connect() as connection, pytest.raises(OperationalError, match="readonly|query_only|read-only"):
        connection.execute(text("DELETE FROM person"))
    engine.dispose()


def test_sqlite_lock_is_503_with_retry_after_and_health_stays_fast(
    sqlite_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_LOCK_TIMEOUT", "1")
    monkeypatch.setenv("API_HEALTH_TIMEOUT", "0.5")
    monkeypatch.setenv("COLUMNAR_MAX_ROWS", "0")  # every answer needs the locked file
    with TestClient(create_app(sqlite_url(sqlite_copy))) as client:
        assert client.get(f"{PEOPLE}/1").status_code == 200
        with sqlite_write_lock(sqlite_copy):
            elapsed, response = timed_get(client, f"{PEOPLE}?limit=5")
            assert response.status_code == 503, response.text
            assert "locked" in response.json()["detail"]
            assert int(response.headers["retry-after"]) >= 1
            assert elapsed < 3, elapsed
            elapsed, health = timed_get(client, "/health")
            assert elapsed < 1, elapsed
            assert health.status_code == 503 and "locked" in health.json()["reason"]
        assert client.get(f"{PEOPLE}?limit=5").status_code == 200  # and it recovers


@pytest.mark.parametrize("second_path", [f"{PEOPLE}?limit=2", "/api/v1/stats?group_by=race"])
def test_full_pool_is_503_with_retry_after(
    sqlite_copy: Path, monkeypatch: pytest.MonkeyPatch, second_path: str
) -> None:
    """The slots are shared by every endpoint: a request on another one is told at once, too."""
    monkeypatch.setenv("API_DB_POOL_SIZE", "1")
    monkeypatch.setenv("API_DB_POOL_TIMEOUT", "0.3")
    monkeypatch.setenv("API_LOCK_TIMEOUT", "2")
    monkeypatch.setenv("COLUMNAR_MAX_ROWS", "0")
    with TestClient(create_app(sqlite_url(sqlite_copy))) as client, sqlite_write_lock(sqlite_copy):
        first: list[httpx.Response] = []
        holder = threading.Thread(target=lambda: first.append(client.get(f"{PEOPLE}?limit=1")))
        holder.start()
        time.sleep(0.5)  # the first request holds the only slot, waiting for the lock
        elapsed, second = timed_get(client, second_path)
        holder.join()
    assert second.status_code == 503, second.text
    assert "busy" in second.json()["detail"] and int(second.headers["retry-after"]) >= 1
    assert elapsed < 1.5, elapsed
    assert first[0].status_code == 503  # the lock outlived API_LOCK_TIMEOUT


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the API as another user")
@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_unprivileged_reader_of_a_read_only_file_answers(sqlite_census_url: str, journal: str) -> None:
    """A root-owned 0644 file in a root-owned 0755 directory, served by `nobody`."""
    command = python_as("nobody", "api.app")
    if command is None:
        pytest.skip("no Python interpreter that the user nobody may run imports the project")
    # Not pytest's tmp_path: its parents are 0700, so nobody could not reach the file at all.
    directory = Path(tempfile.mkdtemp(prefix="census-read-only-"))
    try:
        _serve_as_nobody(command, sqlite_census_url, directory, journal)
    finally:
        shutil.rmtree(directory)


def _serve_as_nobody(command: list[str], sqlite_census_url: str, directory: Path, journal: str) -> None:
    database = directory / "census.db"
    shutil.copy(sqlite_census_url.removeprefix("sqlite:///"), database)
    with sqlite3.connect(database) as connection:
        connection.execute(f"PRAGMA journal_mode={journal}")
    directory.chmod(0o755)
    database.chmod(0o644)
    before = sorted(os.listdir(directory))
    port = free_port()
    env = [f"DATABASE_URL={sqlite_url(database)}", f"API_PORT={port}"]
    server = ServerProcess(
        [*command[:-1], *env, command[-1], "-m", "api", "--log-level", "warning"],
        port,
        ready_path="/health",
        cwd=Path("/tmp"),
        start_timeout_s=30,
    )
    with server:
        health = httpx.get(f"{server.base_url}/health", timeout=2)
        assert health.status_code == 200, health.text
        assert health.json()["people"] > 0
        page = httpx.get(f"{server.base_url}{PEOPLE}", params={"gender": "Female", "limit": 3})
        assert page.status_code == 200 and len(page.json()["items"]) == 3
        assert httpx.get(f"{server.base_url}/api/v1/stats", params={"group_by": "race"}).status_code == 200
    assert sorted(os.listdir(directory)) == before  # nothing written next to the file


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def postgres_copy(postgres_server: PostgresServer) -> str:
    """A PostgreSQL database of this test's own, loaded by the real upload."""
    url = postgres_server.create_database(f"census_limits_{time.monotonic_ns()}")
    engine = make_engine(url)
    upload(engine, DEFAULT_SOURCE, progress=False)
    engine.dispose()
    return url


def _psycopg2_connect(url: str) -> psycopg2.extensions.connection:
    parsed = make_url(url)
    return psycopg2.connect(host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database)


@pytest.mark.postgres
def test_postgres_sessions_are_read_only_and_time_bounded(postgres_copy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_STATEMENT_TIMEOUT", "0.5")
    engine = make_api_engine(postgres_copy, get_settings())
    with engine.connect() as connection, pytest.raises(OperationalError, match="statement timeout"):
        connection.execute(text("SELECT pg_sleep(3)"))
    with engine.connect() as connection, pytest.raises(Exception, match="read-only transaction"):
        connection.execute(text("DELETE FROM person"))
    engine.dispose()


@pytest.mark.postgres
def test_postgres_lock_is_503_with_retry_after_and_health_stays_fast(
    postgres_copy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_LOCK_TIMEOUT", "1")
    monkeypatch.setenv("API_HEALTH_TIMEOUT", "0.5")
    monkeypatch.setenv("COLUMNAR_MAX_ROWS", "0")
    with TestClient(create_app(postgres_copy)) as client:
        assert client.get(f"{PEOPLE}/1").status_code == 200
        locker = _psycopg2_connect(postgres_copy)
        try:
            with locker.cursor() as cursor:
                cursor.execute("LOCK TABLE person IN ACCESS EXCLUSIVE MODE")
            elapsed, response = timed_get(client, f"{PEOPLE}?limit=5")
            assert response.status_code == 503, response.text
            assert "locked" in response.json()["detail"] and int(response.headers["retry-after"]) >= 1
            assert elapsed < 3, elapsed
            elapsed, health = timed_get(client, "/health")
            assert elapsed < 1, elapsed
            assert health.status_code == 503 and "locked" in health.json()["reason"]
        finally:
            locker.rollback()
            locker.close()
        assert client.get(f"{PEOPLE}?limit=5").status_code == 200


# --------------------------------------------------------------------------- ids across --replace


def _check_old_ids_are_gone(url: str) -> None:
    with TestClient(create_app(url)) as client:
        first = client.get(PEOPLE, params={"limit": 1, "fields": "id"}).json()["items"][0]["id"]
        last = client.get(PEOPLE, params={"limit": 1, "fields": "id", "sort": "-id"}).json()["items"][0]["id"]
    engine = make_engine(url)
    upload(engine, DEFAULT_SOURCE, replace=True, progress=False)
    engine.dispose()
    with TestClient(create_app(url)) as client:
        for old in (first, (first + last) // 2, last):
            response = client.get(f"{PEOPLE}/{old}")
            assert response.status_code == 404, (old, response.text)
        new_first = client.get(PEOPLE, params={"limit": 1, "fields": "id"}).json()["items"][0]["id"]
        assert new_first > last


def test_sqlite_ids_are_never_reused_after_replace(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "census.db")
    engine = make_engine(url)
    upload(engine, DEFAULT_SOURCE, progress=False)
    engine.dispose()
    _check_old_ids_are_gone(url)


@pytest.mark.postgres
def test_postgres_ids_are_never_reused_after_replace(postgres_copy: str) -> None:
    _check_old_ids_are_gone(postgres_copy)
