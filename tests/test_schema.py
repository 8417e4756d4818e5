"""The schema script: tables, constraints, indexes and the view, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from warehouse.config import sqlite_url
from warehouse.db import SQLITE_PAGE_SIZE, make_engine
from warehouse.domain import CATEGORIES, EDUCATION_LEVELS
from warehouse.models import DIMENSIONS, Education, Load, Person
from warehouse.schema import RETIRED_INDEXES, create_schema

ROOT = Path(__file__).resolve().parents[1]
TABLES = {"person", "load", "rejected_row", *(model.__tablename__ for model, _ in DIMENSIONS.values())}


def _check_schema(engine: Engine) -> None:
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) >= TABLES
    assert "people" in inspector.get_view_names()
    view_columns = [column["name"] for column in inspector.get_columns("people")]
    assert view_columns == [
        "id",
        "age",
        "workclass",
        "fnlwgt",
        "education",
        "education_num",
        "marital_status",
        "occupation",
        "relationship",
        "race",
        "gender",
        "capital_gain",
        "capital_loss",
        "hours_per_week",
        "native_country",
        "income",
    ]
    indexed = {tuple(index["column_names"]) for index in inspector.get_indexes("person")}
    assert {("age",), ("hours_per_week",), ("gender_id", "age"), ("education_id",)} <= indexed
    foreign = {fk["referred_table"] for fk in inspector.get_foreign_keys("person")}
    assert foreign == {"load", *(model.__tablename__ for model, _ in DIMENSIONS.values())}
    with engine.connect() as connection:
        for column, (model, _) in DIMENSIONS.items():
            labels = set(connection.scalars(select(model.label)))
            assert labels == set(CATEGORIES[column]), column
        years = dict(connection.execute(select(Education.label, Education.education_num)).all())
        assert years == EDUCATION_LEVELS


def test_schema_on_sqlite_is_idempotent(sqlite_engine: Engine) -> None:
    create_schema(sqlite_engine)
    create_schema(sqlite_engine)  # a second run changes nothing and does not fail
    _check_schema(sqlite_engine)
    with sqlite_engine.connect() as connection:
        assert connection.scalar(select(text("count(*)")).select_from(Education.__table__)) == 16


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_schema_drops_retired_indexes(backend: str, request: pytest.FixtureRequest) -> None:
    """A database built when person had an index the models no longer declare
    loses it at the next schema run (else every upload would still maintain it)."""
    engine: Engine = request.getfixturevalue(f"{backend}_engine")
    create_schema(engine)
    with engine.begin() as connection:
        for name in RETIRED_INDEXES:
            connection.execute(text(f"CREATE INDEX {name} ON person (income_bracket_id)"))
    create_schema(engine)
    names = {index["name"] for index in inspect(engine).get_indexes("person")}
    assert not names & set(RETIRED_INDEXES)
    assert "ix_person_age" in names


@pytest.mark.postgres
def test_schema_on_postgres_is_idempotent(postgres_engine: Engine) -> None:
    create_schema(postgres_engine)
    create_schema(postgres_engine)
    _check_schema(postgres_engine)


def _person(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "load_id": 1,
        "age": 40,
        "fnlwgt": 1000,
        "capital_gain": 0,
        "capital_loss": 0,
        "hours_per_week": 40,
        "education_id": 1,
        "marital_status_id": 1,
        "relationship_id": 1,
        "race_id": 1,
        "gender_id": 1,
        "income_bracket_id": 1,
    }
    row.update(overrides)
    return row


@pytest.mark.parametrize(
    "overrides",
    [{"age": 3}, {"hours_per_week": 100}, {"capital_gain": -1}, {"fnlwgt": 0}, {"race_id": 99}, {"gender_id": None}],
    ids=["age", "hours", "capital_gain", "fnlwgt", "unknown race key", "missing gender"],
)
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_constraints_refuse_bad_people(
    backend: str, overrides: dict[str, object], request: pytest.FixtureRequest
) -> None:
    engine: Engine = request.getfixturevalue(f"{backend}_engine")
    create_schema(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(Load).values(
                id=1,
                source_name="t",
                sha256="0" * 64,
                started_at=text("CURRENT_TIMESTAMP"),
                status="loaded",
                rows_read=0,
                rows_loaded=0,
                rows_rejected=0,
            )
        )
        connection.execute(insert(Person).values(**_person()))  # the valid row goes in
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(Person).values(**_person(**overrides)))


def test_a_new_sqlite_file_gets_16_kib_pages_and_an_older_file_keeps_its_own(tmp_path: Path) -> None:
    """The page size only applies to a file that has no page yet: a file made
    with SQLite's default 4 KiB keeps it (SQLite cannot change it in WAL mode),
    and the schema, a write and a read all work on it."""
    older_path = tmp_path / "older.db"
    made_elsewhere = sqlite3.connect(older_path)
    made_elsewhere.execute("PRAGMA page_size=4096")
    made_elsewhere.execute("PRAGMA journal_mode=WAL")
    made_elsewhere.execute("CREATE TABLE kept (x INTEGER)")
    made_elsewhere.close()
    engines = {
        SQLITE_PAGE_SIZE: make_engine(sqlite_url(tmp_path / "new.db")),
        4096: make_engine(sqlite_url(older_path)),
    }
    try:
        for page_size, engine in engines.items():
            create_schema(engine)
            _check_schema(engine)
            with engine.begin() as connection:
                connection.execute(
                    insert(Load).values(
                        source_name="x.csv", sha256="0" * 64, started_at=datetime.now(UTC), status="loaded"
                    )
                )
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA page_size").scalar() == page_size
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert connection.scalar(select(text("count(*)")).select_from(Load.__table__)) == 1
    finally:
        for engine in engines.values():
            engine.dispose()
    assert SQLITE_PAGE_SIZE == 16384


def test_schema_script_creates_a_sqlite_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "made.db"
    done = subprocess.run(
        [sys.executable, "-m", "warehouse.schema", "--url", f"sqlite:///{target}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert target.is_file() and target.stat().st_size > 0
    assert "schema ready" in done.stdout


def test_schema_script_refuses_in_memory_sqlite() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "warehouse.schema", "--url", "sqlite://"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "must be a file" in done.stderr


def test_schema_script_names_the_unreachable_server() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "warehouse.schema", "--url", "postgresql://census@127.0.0.1:9/census"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"DATABASE_CONNECT_TIMEOUT": "1", "PATH": ""},
    )
    assert done.returncode == 2
    assert "127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr
