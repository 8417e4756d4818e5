"""Pages of people on the API's fast path: SQL compiled once per filter shape,
the SQLite id-order scan, and the API's count cache. Real SQLite files and a
real PostgreSQL server; every page is compared with the statement's own rows."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from api.app import create_app
from api.services import CensusService, make_api_engine
from loaders.upload import upload
from warehouse import analytics
from warehouse.config import DEFAULT_SOURCE, sqlite_url
from warehouse.db import make_engine, make_read_engine
from warehouse.people import fetch_people_rows, page_shape, prepared_page, scan_by_id, select_people
from warehouse.query import PeopleFilter, count_people

PEOPLE = "/api/v1/people"

FILTERS = [
    PeopleFilter(),
    PeopleFilter(ranges={"age": (30, None)}, categories={"gender": ("Female",)}),
    PeopleFilter(ranges={"age": (None, 40)}, categories={"gender": ("Male",)}),  # same shape as above but one end
    PeopleFilter(
        ranges={"age": (25, 35), "hours_per_week": (None, 40), "education_num": (9, 13)},
        categories={"race": ("Black", None), "income": (">50K",), "occupation": ("Sales", "Tech-support")},
    ),
    PeopleFilter(categories={"native_country": (None,)}),
    # More labels than income has distinct values: no distinct probe, the statement is built instead.
    PeopleFilter(categories={"income": ("<=50K", ">50K", "<=50K")}),
]
COLUMNS: list[list[str] | None] = [None, ["age", "gender", "id"]]
SORTS = [None, "-age", "workclass", "id"]


def _statement_rows(engine: Engine, people_filter: PeopleFilter, **page: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select_people(people_filter, **page))]


def _assert_pages_match(engine: Engine, scans: tuple[bool, ...]) -> None:
    with engine.connect() as connection:
        for people_filter, columns, sort, offset, scan in itertools.product(FILTERS, COLUMNS, SORTS, (0, 7), scans):
            names, rows = fetch_people_rows(connection, people_filter, columns, sort, 20, offset, scan=scan)
            expected = _statement_rows(engine, people_filter, columns=columns, sort=sort, limit=20, offset=offset)
            assert rows == expected, (people_filter, columns, sort, offset, scan)
            assert names == (columns or names)


def test_prepared_pages_are_the_statements_rows_on_sqlite(sqlite_census_url: str) -> None:
    engine = make_read_engine(sqlite_census_url)
    try:
        _assert_pages_match(engine, scans=(False, True))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_prepared_pages_are_the_statements_rows_on_postgres(postgres_census_url: str) -> None:
    engine = make_read_engine(postgres_census_url)
    try:
        _assert_pages_match(engine, scans=(False,))
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg2.dialect()], ids=["sqlite", "postgres"])
def test_one_shape_compiles_once_and_places_each_value(dialect: Any) -> None:
    women = PeopleFilter(ranges={"age": (30, 60)}, categories={"gender": ("Female",)})
    men = PeopleFilter(ranges={"age": (41, 50)}, categories={"gender": ("Male",)})
    shape, values = page_shape(women, 100, 0)
    assert page_shape(men, 5, 10)[0] == shape
    prepared = prepared_page(dialect, shape, ("id",), None)
    assert prepared is not None and prepared_page(dialect, shape, ("id",), None) is prepared
    # Every value of the request goes to exactly one parameter, low before high.
    placed = [page_shape(men, 5, 10)[1][slot] for slot in prepared.slots]
    assert sorted(placed, key=str) == sorted([41, 50, "Male", 5, 10], key=str)
    assert placed.index(41) < placed.index(50)
    assert len(prepared.names) == len(values) == 5
    # A shape no probe can stand for is not prepared (the caller builds the statement).
    too_many = page_shape(PeopleFilter(categories={"income": ("<=50K", ">50K", "<=50K")}), 1, 0)[0]
    assert prepared_page(dialect, too_many, ("id",), None) is None


def test_scan_by_id_only_for_sqlite_pages_in_id_order_that_reach_few_rows() -> None:
    lite, postgres = sqlite.dialect(), postgresql.psycopg2.dialect()
    # 2,088,999 of 10,000,000 match: a page of 100 is found in about 500 rows read in id order.
    assert scan_by_id(lite, None, 100, 2_088_999, 10_000_000)
    assert scan_by_id(lite, "id", 5100, 2_088_999, 10_000_000)
    assert not scan_by_id(lite, "-age", 100, 2_088_999, 10_000_000)  # another order: the sort decides
    assert not scan_by_id(postgres, None, 100, 2_088_999, 10_000_000)  # its planner has statistics
    assert not scan_by_id(lite, None, 100, 1_000, 10_000_000)  # a selective filter: its index
    assert not scan_by_id(lite, None, 100, 0, 10_000_000)
    assert not scan_by_id(lite, None, 100, 5_000, None)  # the number of people is unknown


def test_page_totals_are_cached_per_version_of_the_data(sqlite_census_url: str, tmp_path: Path) -> None:
    database = tmp_path / "census.db"
    shutil.copy(sqlite_census_url.removeprefix("sqlite:///"), database)
    url = sqlite_url(database)
    more = tmp_path / "more.csv"
    with open(DEFAULT_SOURCE, encoding="utf-8") as source:
        more.write_text("".join(itertools.islice(source, 31)))  # the header and 30 people
    query = {"gender": "Female", "age_min": "30", "limit": "5"}
    with TestClient(create_app(url)) as client:
        service = client.app.state.census
        analytics.warm_up(service.engine)
        first = client.get(PEOPLE, params=query).json()
        second = client.get(PEOPLE, params={**query, "offset": "5"}).json()  # the next page: counted once
        assert second["total"] == first["total"] > 0
        assert (service.counts.hits, service.counts.misses) == (1, 1)
        assert [p["id"] for p in second["items"]] != [p["id"] for p in first["items"]]

        writer = make_engine(url)
        upload(writer, more, append=True, progress=False)
        writer.dispose()
        women_30_plus = sum(1 for line in more.read_text().splitlines()[1:] if _is_woman_30_plus(line))
        after = client.get(PEOPLE, params=query).json()  # a new version: counted again, not served stale
        assert after["total"] == first["total"] + women_30_plus
        assert service.counts.misses == 2


def _is_woman_30_plus(line: str) -> bool:
    fields = [field.strip() for field in line.split(",")]
    return int(fields[0]) >= 30 and fields[9] == "Female"


def test_totals_on_the_analytic_copy_are_count_people(sqlite_census_url: str) -> None:
    """The API's totals (SQL compiled per shape, on a DuckDB cursor) equal the
    query layer's count in plain SQL, for every filter of the grid."""
    engine = make_api_engine(sqlite_census_url)
    service = CensusService(engine, sqlite_census_url)
    try:
        analytics.warm_up(engine)
        with engine.connect() as connection:
            copy = analytics.current(connection, wait=True)
            assert copy is not None
            for people_filter in FILTERS:
                in_sql = count_people(connection, people_filter, run=_in_sql)
                assert service._count_on_copy(connection, copy, people_filter) == in_sql, people_filter
    finally:
        engine.dispose()


def _in_sql(connection: Any, statement: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in connection.execute(statement).mappings()]
