"""Shared fixtures: real SQLite files and a real PostgreSQL server, loaded by the real loader."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from devtools.postgres import PostgresServer
from loaders.upload import upload
from warehouse.config import DEFAULT_SOURCE, sqlite_url
from warehouse.db import make_engine

INPUT = DEFAULT_SOURCE
# Excerpts of the raw UCI files (see tests/data/README.md), and the row of the input
# where each excerpt's first person is: Input_Dataset.csv is adult.data (32,561
# people) followed by adult.test.
UCI_DIR = Path(__file__).resolve().parent / "data"
UCI_FIRST_ROW = {"adult.data": 0, "adult.test": 32_561}
_database_names = (f"census_test_{n}" for n in itertools.count())


@pytest.fixture(scope="session")
def input_frame() -> pd.DataFrame:
    """The input read independently of the loader, with pandas: '?' is missing and
    the income label loses its trailing dot."""
    frame = pd.read_csv(INPUT, skipinitialspace=True, na_values=["?"], keep_default_na=False)
    frame["income"] = frame["income"].str.rstrip(".")
    return frame


@pytest.fixture(scope="session")
def sqlite_census_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file built by the real upload from data/Input_Dataset.csv (read-only use)."""
    url = sqlite_url(tmp_path_factory.mktemp("census") / "census.db")
    engine = make_engine(url)
    upload(engine, INPUT, progress=False)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def sqlite_census_engine(sqlite_census_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_census_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """An empty SQLite file of this test's own."""
    engine = make_engine(sqlite_url(tmp_path / "test.db"))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_engine(postgres_server: PostgresServer) -> Iterator[Engine]:
    """An empty PostgreSQL database of this test's own."""
    engine = make_engine(postgres_server.create_database(next(_database_names)))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_census_url(postgres_server: PostgresServer) -> str:
    """A PostgreSQL database loaded by the real upload from data/Input_Dataset.csv (read-only use)."""
    url = postgres_server.create_database("census_loaded")
    engine = make_engine(url)
    upload(engine, INPUT, progress=False)
    engine.dispose()
    return url
