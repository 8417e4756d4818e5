"""Uploads running at the same time as other uploads and as readers, on a real SQLite
file and a real PostgreSQL server. (Issue 11, points 1, 5, 8 and 9.)"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import Engine, func, select, text

from benchmarks.synthetic import write_synthetic
from loaders.upload import UPLOAD_LOCK_KEY, upload
from tests.test_upload import GOOD, HEADER, ROOT, _cli, _count, _write
from warehouse.db import make_engine
from warehouse.models import Load, Person, load_tables, people

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
LARGE_ROWS = 300_000


OVERLAP_ROWS = 400_000


def _start(source: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loaders.upload", str(source), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def large_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("large")
    return (
        write_synthetic(LARGE_ROWS, folder / "first.csv", seed=1),
        write_synthetic(LARGE_ROWS, folder / "second.csv", seed=2),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_uploads_of_the_same_file_into_a_new_database_load_it_once(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Points 1 and 9: both used to load (SQLite: the check ran before the write lock),
    or one failed creating the schema (PostgreSQL: schema built before the lock)."""
    engine: Engine = request.getfixturevalue(f"{backend}_engine")
    url = engine.url.render_as_string(hide_password=False)
    # Large enough that the three certainly overlap: the loader reads 48,842 rows faster
    # than a second process starts.
    source = write_synthetic(OVERLAP_ROWS, request.getfixturevalue("tmp_path") / "shared.csv")
    uploads = [_start(source, "--url", url) for _ in range(3)]
    outcomes = [(process.wait(timeout=300), *process.communicate()) for process in uploads]
    for status, _out, err in outcomes:
        assert status == 0, err
        assert "Traceback" not in err
    assert sum(f"loaded {OVERLAP_ROWS:,}" in out for _, out, _ in outcomes) == 1
    assert sum("already loaded" in out for _, out, _ in outcomes) == 2
    # The others said why they waited.
    assert any("another upload into" in err and "is running; waiting" in err for _, _, err in outcomes)
    assert _count(engine, Person.__table__) == OVERLAP_ROWS
    assert _count(engine, Load.__table__) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_upload_that_waits_too_long_exits_3(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """Point 8: SQLite said 'database is locked' after 5 s, PostgreSQL waited silently."""
    engine: Engine = request.getfixturevalue(f"{backend}_engine")
    url = engine.url.render_as_string(hide_password=False)
    path = _write(tmp_path, f"{HEADER}\n{GOOD}\n")
    if backend == "sqlite":
        import sqlite3

        holder = sqlite3.connect(engine.url.database, isolation_level=None)
        holder.execute("PRAGMA journal_mode=WAL")  # as every connection of the project sets it
        holder.execute("BEGIN IMMEDIATE")  # what a running upload holds
    else:
        holder = psycopg2.connect(engine.url.render_as_string(hide_password=False).replace("+psycopg2", ""))
        holder.cursor().execute("SELECT pg_advisory_lock(%s)", (UPLOAD_LOCK_KEY,))
    try:
        started = time.monotonic()
        done = _cli(path, "--wait", "1", "--url", url)
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert done.returncode == 3, done.stderr
    assert "is running; waiting for it (up to 1 s)" in done.stderr
    assert "another upload into" in done.stderr and "is still running after 1 s" in done.stderr
    assert "nothing was loaded" in done.stderr and "Traceback" not in done.stderr
    assert elapsed < 30
    # Once the other upload is gone, the same command loads.
    assert _cli(path, "--wait", "1", "--url", url).returncode == 0


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["--replace", "--append"])
def test_readers_never_wait_during_a_postgres_replace_or_append(
    postgres_engine: Engine, large_files: tuple[Path, Path], mode: str
) -> None:
    """Point 5: dropping the live table's indexes and foreign keys locked readers out
    for the whole --replace (16 s for a million rows). A large append goes into a
    load table of its own, attached to person at the end."""
    first, second = large_files
    upload(postgres_engine, first, progress=False)
    with postgres_engine.connect() as connection:
        old_max_id = connection.scalar(select(func.max(Person.id)))
    waits: list[float] = []
    states: set[tuple[int, int]] = set()
    failures: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            with postgres_engine.connect() as connection:
                while not stop.is_set():
                    # Cheap queries (an index-only count, a lookup through the view), so
                    # that on a busy machine the time measured is the time spent waiting.
                    started = time.monotonic()
                    count = connection.scalar(select(func.count()).select_from(Person.__table__))
                    first_id = connection.scalar(select(func.min(Person.id)))
                    connection.execute(select(people).where(people.c.id == first_id)).one()
                    waits.append(time.monotonic() - started)
                    states.add((int(count), int(first_id)))
                    connection.rollback()  # a new snapshot each time, as an API request gets
                    time.sleep(0.02)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        replacing = _start(second, mode, "--url", postgres_engine.url.render_as_string(hide_password=False))
        status = replacing.wait(timeout=600)
        time.sleep(0.3)
    finally:
        stop.set()
        reader.join()
    out, err = replacing.communicate()
    assert status == 0, err
    assert not failures, failures
    assert len(waits) > 20  # the reader really ran during the replace
    assert max(waits) < 1.0, f"a reader waited {max(waits):.2f} s"
    # The old people, then the new ones: never a partial load.
    with postgres_engine.connect() as connection:
        first_id = connection.scalar(select(func.min(Person.id)))
        if mode == "--replace":
            assert len(states) == 2 and {count for count, _ in states} == {LARGE_ROWS}
            assert first_id > old_max_id  # ids never reused
            assert connection.scalar(select(func.count()).select_from(people)) == LARGE_ROWS
        else:
            assert states == {(LARGE_ROWS, first_id), (2 * LARGE_ROWS, first_id)}
            appended = select(func.count()).select_from(Person.__table__).where(Person.id > old_max_id)
            assert connection.scalar(appended) == LARGE_ROWS  # new ids, after the old ones
            assert len(load_tables(connection)) == 1
    print(f"longest reader wait during the {mode[2:]}: {max(waits) * 1000:.0f} ms over {len(waits)} queries")


def _wait_for_copy(engine: Engine, loading: subprocess.Popen[str]) -> int:
    """The upload's server process id, once it is copying rows in."""
    deadline = time.monotonic() + 120
    with engine.connect() as connection:
        while time.monotonic() < deadline and loading.poll() is None:
            pid = connection.scalar(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query LIKE 'COPY%' AND pid <> pg_backend_pid()"
                )
            )
            connection.rollback()
            if pid is not None:
                return int(pid)
            time.sleep(0.05)
    raise AssertionError("the upload never reached its COPY")


@pytest.mark.postgres
def test_a_server_ending_the_upload_gives_the_servers_reason(
    postgres_engine: Engine, large_files: tuple[Path, Path]
) -> None:
    """Point 8: a server shutdown mid-upload said 'connection already closed'."""
    url = postgres_engine.url.render_as_string(hide_password=False)
    loading = _start(large_files[0], "--url", url)
    try:
        pid = _wait_for_copy(postgres_engine, loading)
        with postgres_engine.connect() as connection:
            connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        status = loading.wait(timeout=120)
    finally:
        if loading.poll() is None:
            loading.kill()
    _, err = loading.communicate()
    assert status == 2, err
    assert "server closed the connection unexpectedly (the server is up: it ended this session" in err
    # Only the message: psycopg2 used to print the server's AdminShutdown (and a
    # SystemError) before it, under load (see loaders.upload._quiet_driver_reports).
    assert "nothing was loaded" in err and "Traceback" not in err and err.count("\n") == 1
    assert _count(postgres_engine, Person.__table__) == 0


@pytest.mark.postgres
def test_a_server_shutting_down_midway_is_named(tmp_path: Path, large_files: tuple[Path, Path]) -> None:
    """Point 8: a server shutdown mid-upload said 'connection already closed'."""
    from devtools.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        url = server.create_database("going_down")
        loading = _start(large_files[0], "--url", url)
        _wait_for_copy(make_engine(url), loading)
        assert server.process is not None and loading.poll() is None
        server.process.send_signal(2)  # SIGINT: PostgreSQL's fast shutdown
        status = loading.wait(timeout=120)
        _, err = loading.communicate()
    finally:
        server.stop()
    assert status == 2, err
    assert "server closed the connection unexpectedly (the server now says:" in err
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.postgres
def test_the_postgres_swap_keeps_indexes_views_and_grants(tmp_path: Path, postgres_engine: Engine) -> None:
    """The staging table gets what the live one had, read from the catalog: an index
    and a view made by hand, and a read-only role's privileges (the Docker set-up's
    census_reader), survive a --replace."""
    upload(postgres_engine, _write(tmp_path, f"{HEADER}\n{GOOD}\n", "old.csv"), progress=False)
    with postgres_engine.begin() as connection:
        connection.execute(text("CREATE INDEX ix_person_by_hand ON person (fnlwgt)"))
        connection.execute(text("CREATE VIEW older_people AS SELECT id, age FROM person WHERE age >= 60"))
        connection.execute(text("DROP ROLE IF EXISTS swap_reader"))
        connection.execute(text("CREATE ROLE swap_reader"))
        connection.execute(text("GRANT SELECT ON person, people, older_people TO swap_reader"))
    new = _write(tmp_path, f"{HEADER}\n{GOOD}\n{GOOD.replace('39,', '61,', 1)}\n", "new.csv")
    assert upload(postgres_engine, new, replace=True, progress=False).rows_loaded == 2
    with postgres_engine.connect() as connection:
        indexes = set(connection.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'person'")))
        assert {"pk_person", "ix_person_by_hand", "ix_person_age", "ix_person_gender_id_age"} <= indexes
        assert not any("staging" in name for name in indexes)
        assert connection.scalar(text("SELECT count(*) FROM older_people")) == 1
        foreign_keys = connection.scalar(
            text("SELECT count(*) FROM pg_constraint WHERE conrelid = 'person'::regclass AND contype = 'f'")
        )
        assert foreign_keys == len(Person.__table__.foreign_key_constraints)
        for table in ("person", "people", "older_people"):
            assert connection.scalar(text(f"SELECT has_table_privilege('swap_reader', '{table}', 'SELECT')"))
        connection.execute(text("SET ROLE swap_reader"))
        assert connection.scalar(select(func.count()).select_from(people)) == 2
        connection.rollback()
    with postgres_engine.begin() as connection:
        connection.execute(text("DROP OWNED BY swap_reader"))
        connection.execute(text("DROP ROLE swap_reader"))
