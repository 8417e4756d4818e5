"""The columnar snapshot against the SQL path it replaces, on SQLite and PostgreSQL.

For a grid of filters and every grouping shape, `Snapshot.aggregate_people` and
`Snapshot.value_counts` must return what `_aggregate_people_sql` and
`_value_counts_sql` return: the same rows in the same order, the same keys,
the same types. `PeopleFilter.mask` must select the same people as
`PeopleFilter.conditions`. A snapshot must follow uploads, respect
COLUMNAR_MAX_ROWS, and never hold data the caller's connection does not see.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, select

from api.app import create_app
from loaders.upload import upload
from tests.conftest import INPUT
from warehouse import columnar, query
from warehouse.db import make_engine
from warehouse.models import Person
from warehouse.query import CATEGORY_COLUMNS, GROUPABLE_NUMBERS, RANGE_COLUMNS, PeopleFilter, QueryError

PERSON = Person.__table__

FILTERS = [
    PeopleFilter(),
    # Empty selections and open ranges do not filter.
    PeopleFilter(ranges={"age": (None, None)}, categories={"race": ()}),
    PeopleFilter(ranges={"age": (30, None)}, categories={"gender": ("Female",)}),
    PeopleFilter(ranges={"age": (25, 35), "hours_per_week": (None, 40)}),
    PeopleFilter(ranges={"education_num": (13, 16)}),
    PeopleFilter(ranges={"education_num": (None, 8)}, categories={"income": (">50K",)}),
    PeopleFilter(ranges={"education_num": (9, 9), "capital_loss": (1, None)}),
    PeopleFilter(categories={"workclass": (None,)}),
    PeopleFilter(categories={"occupation": (None, "Sales", "Tech-support"), "native_country": (None, "Mexico")}),
    PeopleFilter(categories={"education": ("Bachelors", "Masters"), "marital_status": ("Divorced",)}),
    PeopleFilter(ranges={"capital_gain": (1, None), "fnlwgt": (100_000, 300_000)}, categories={"race": ("Black",)}),
    PeopleFilter(ranges={"age": (90, 90)}, categories={"race": ("White", "Other"), "gender": ("Male",)}),
    PeopleFilter(categories={"relationship": ("Wife",), "gender": ("Male",), "income": ("<=50K",)}),
]
# Filters that match no one (checked below, so the zero-match paths are really exercised).
NOBODY = [
    PeopleFilter(ranges={"age": (16, 16)}),
    PeopleFilter(categories={"gender": (None,)}),
    PeopleFilter(ranges={"education_num": (1, 1), "hours_per_week": (99, 99)}, categories={"workclass": (None,)}),
]
ALL_FILTERS = FILTERS + NOBODY

PAIRS = [
    ("workclass", "income"),
    ("income", "workclass"),
    ("education", "gender"),
    ("race", "age_band"),
    ("age_band", "education_num"),
    ("native_country", "occupation"),
    ("gender", "age"),
    ("education_num", "education"),
    ("hours_per_week", "marital_status"),
]
GROUP_BYS: list[tuple[str, ...]] = [
    (),
    *((name,) for name in CATEGORY_COLUMNS),
    ("age_band",),
    *((name,) for name in GROUPABLE_NUMBERS),
    *PAIRS,
]
VALUE_BYS: list[str | None] = [None, "workclass", "education", "gender", "age_band", "education_num", "age"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def postgres_census_engine(postgres_census_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_census_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def census_engine(request: pytest.FixtureRequest) -> Engine:
    """The input file, loaded by the real loader, on each backend."""
    name = "sqlite_census_engine" if request.param == "sqlite" else "postgres_census_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def snapshot(census_engine: Engine) -> columnar.Snapshot:
    with census_engine.connect() as connection:
        return columnar.build(connection)


def _first_rows(tmp_path: Path, start: int, stop: int, name: str) -> Path:
    """A small CSV of real input rows (lines start..stop-1 after the header)."""
    lines = INPUT.read_text(encoding="utf-8").splitlines()
    path = tmp_path / name
    path.write_text("\n".join([lines[0], *lines[1 + start : 1 + stop]]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def empty_engine(request: pytest.FixtureRequest) -> Engine:
    """An empty database of this test's own, on each backend."""
    return request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "postgres_engine")  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- helpers


def assert_same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]], context: object) -> None:
    """Same rows, order, keys and value types; floats to 1e-9 (the sums are exact)."""
    assert len(got) == len(want), context
    for index, (row, expected) in enumerate(zip(got, want, strict=True)):
        assert list(row) == list(expected), (context, index)
        for key, value in expected.items():
            where = (context, index, key, row[key], value)
            assert type(row[key]) is type(value), where
            if isinstance(value, float):
                assert row[key] == pytest.approx(value, rel=1e-9), where
            else:
                assert row[key] == value, where


# --------------------------------------------------------------------------- same answers as SQL


def test_nobody_filters_match_no_one(sqlite_census_engine: Engine) -> None:
    with sqlite_census_engine.connect() as connection:
        assert [query.count_people(connection, f) for f in NOBODY] == [0] * len(NOBODY)
        assert all(query.count_people(connection, f) > 0 for f in FILTERS)


@pytest.mark.parametrize("people_filter", ALL_FILTERS, ids=lambda f: f.describe())
def test_mask_selects_the_people_conditions_select(
    census_engine: Engine, snapshot: columnar.Snapshot, people_filter: PeopleFilter
) -> None:
    """The two definitions of a filter (SQL conditions, numpy mask) stay equal."""
    with census_engine.connect() as connection:
        ids = np.array(connection.scalars(select(PERSON.c.id).order_by(PERSON.c.id)).all())
        wanted = connection.scalars(select(PERSON.c.id).where(*people_filter.conditions()).order_by(PERSON.c.id)).all()
    mask = people_filter.mask(snapshot)
    assert (mask is None) == people_filter.is_empty
    assert snapshot.count_people(people_filter) == len(wanted)
    assert len(ids) == snapshot.rows
    assert (ids if mask is None else ids[mask]).tolist() == wanted


@pytest.mark.parametrize("people_filter", ALL_FILTERS, ids=lambda f: f.describe())
def test_aggregates_equal_sql(census_engine: Engine, snapshot: columnar.Snapshot, people_filter: PeopleFilter) -> None:
    with census_engine.connect() as connection:
        for group_by in GROUP_BYS:
            want = query._aggregate_people_sql(connection, people_filter, group_by)
            assert_same_rows(snapshot.aggregate_people(people_filter, group_by), want, group_by)
        # Subsets of the measures, in the caller's order (["people"] alone once made
        # the SQL path select count(*) without FROM).
        for group_by in [(), ("race",), ("education_num", "gender")]:
            for measures in [["people"], ["mean_hours", "people", "population"], ["share_over_50k"]]:
                want = query._aggregate_people_sql(connection, people_filter, group_by, measures)
                got = snapshot.aggregate_people(people_filter, group_by, measures)
                assert_same_rows(got, want, (group_by, measures))


def test_no_group_over_no_one_is_one_row_of_nulls(snapshot: columnar.Snapshot) -> None:
    rows = snapshot.aggregate_people(NOBODY[0])
    assert rows == [dict.fromkeys(query.MEASURES) | {"people": 0}]
    assert snapshot.aggregate_people(NOBODY[0], ["gender"]) == []


def test_missing_values_come_last_and_education_by_years(snapshot: columnar.Snapshot) -> None:
    """The order rules, stated directly (the SQL comparison checks them too)."""
    workclasses = [row["workclass"] for row in snapshot.aggregate_people(PeopleFilter(), ["workclass"], ["people"])]
    assert workclasses[-1] is None and workclasses[:-1] == sorted(workclasses[:-1])
    educations = [row["education"] for row in snapshot.aggregate_people(PeopleFilter(), ["education"], ["people"])]
    assert educations[:3] == ["Preschool", "1st-4th", "5th-6th"] and educations[-1] == "Doctorate"


@pytest.mark.parametrize(
    "people_filter", [FILTERS[0], FILTERS[2], FILTERS[4], FILTERS[8], NOBODY[0]], ids=lambda f: f.describe()
)
def test_value_counts_equal_sql(
    census_engine: Engine, snapshot: columnar.Snapshot, people_filter: PeopleFilter
) -> None:
    with census_engine.connect() as connection:
        for column in RANGE_COLUMNS:
            for by in VALUE_BYS:
                want = query._value_counts_sql(connection, people_filter, column, by)
                assert_same_rows(snapshot.value_counts(people_filter, column, by), want, (column, by))


def test_value_counts_many_values_with_groups(census_engine: Engine, snapshot: columnar.Snapshot) -> None:
    """fnlwgt by country: more possible (group, value) pairs than are counted densely."""
    people_filter = PeopleFilter(categories={"native_country": (None, "Mexico", "Canada")})
    sizes = (snapshot.maxima["native_country_id"] + 1) * (snapshot.maxima["fnlwgt"] + 1)
    assert sizes > columnar.DENSE_GROUPS
    with census_engine.connect() as connection:
        want = query._value_counts_sql(connection, people_filter, "fnlwgt", "native_country")
    assert_same_rows(snapshot.value_counts(people_filter, "fnlwgt", "native_country"), want, "fnlwgt")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.aggregate_people(PeopleFilter(), ["age", "race", "gender"]), "group_by: takes one or two"),
        (lambda s: s.aggregate_people(PeopleFilter(), ["race", "race"]), "group_by: takes one or two"),
        (lambda s: s.aggregate_people(PeopleFilter(), ["salary"]), "group_by: cannot group by 'salary'"),
        (lambda s: s.aggregate_people(PeopleFilter(), [], ["median_age"]), "measures: unknown measure"),
        (lambda s: s.value_counts(PeopleFilter(), "gender"), "column: 'gender' is not numeric"),
        (lambda s: s.value_counts(PeopleFilter(), "age", "salary"), "by: cannot group by 'salary'"),
    ],
)
def test_same_errors_as_sql(snapshot: columnar.Snapshot, call: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        call(snapshot)


# --------------------------------------------------------------------------- the public functions use it


def _fresh_engine(url: str) -> Engine:
    """An engine of the test's own, so its snapshot cache starts empty."""
    return make_engine(url)


def test_public_functions_answer_from_the_snapshot(sqlite_census_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _fresh_engine(sqlite_census_url)

    def no_sql(*_: object, **__: object) -> None:
        raise AssertionError("the SQL path was used")

    monkeypatch.setattr(query, "_aggregate_people_sql", no_sql)
    monkeypatch.setattr(query, "_value_counts_sql", no_sql)
    monkeypatch.setattr(query, "_count_people_sql", no_sql)
    with engine.connect() as connection:
        total = query.count_people(connection, FILTERS[2])
        rows = query.aggregate_people(connection, FILTERS[2], ["race"])
        ages = query.value_counts(connection, FILTERS[2], "age")
        snapshot = columnar.cached(engine)
        assert snapshot is not None and snapshot.stamp == columnar.read_stamp(connection)
    assert rows == snapshot.aggregate_people(FILTERS[2], ["race"]) and len(rows) == 5
    assert sum(row["people"] for row in ages) == sum(row["people"] for row in rows) == total > 0
    engine.dispose()


@pytest.mark.parametrize("limit", ["0", "48841"])
def test_columnar_max_rows_sends_queries_to_sql(
    sqlite_census_url: str, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    """0 disables snapshots; a limit below the number of people (48,842) too."""
    monkeypatch.setenv("COLUMNAR_MAX_ROWS", limit)
    engine = _fresh_engine(sqlite_census_url)

    def no_snapshot(*_: object, **__: object) -> None:
        raise AssertionError("the columnar path was used")

    monkeypatch.setattr(columnar.Snapshot, "aggregate_people", no_snapshot)
    monkeypatch.setattr(columnar.Snapshot, "value_counts", no_snapshot)
    with engine.connect() as connection:
        rows = query.aggregate_people(connection, PeopleFilter(), ["gender"], ["people"])
        query.value_counts(connection, PeopleFilter(), "age")
    assert [row["people"] for row in rows] == [16_192, 32_650]
    assert columnar.cached(engine) is None
    engine.dispose()


def test_the_limit_admits_a_table_of_its_size(sqlite_census_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNAR_MAX_ROWS", "48842")
    engine = _fresh_engine(sqlite_census_url)
    with engine.connect() as connection:
        snapshot = columnar.current(connection)
    assert snapshot is not None and snapshot.rows == 48_842
    assert snapshot.nbytes == 34 * 48_842  # the bytes per person the module docstring states
    engine.dispose()


# --------------------------------------------------------------------------- freshness


def test_snapshot_follows_uploads(empty_engine: Engine, tmp_path: Path) -> None:
    first = _first_rows(tmp_path, 0, 40, "first.csv")
    second = _first_rows(tmp_path, 40, 100, "second.csv")
    upload(empty_engine, first, progress=False)

    def answer() -> tuple[list[dict[str, Any]], columnar.Snapshot | None]:
        with empty_engine.connect() as connection:
            rows = query.aggregate_people(connection, PeopleFilter(), ["gender"], ["people"])
            sql = query._aggregate_people_sql(connection, PeopleFilter(), ["gender"], ["people"])
        assert rows == sql
        return rows, columnar.cached(empty_engine)

    rows, before = answer()
    assert before is not None and before.rows == 40 and sum(row["people"] for row in rows) == 40
    assert answer()[1] is before  # unchanged data: the same snapshot

    upload(empty_engine, second, replace=True, progress=False)
    rows, after = answer()
    assert after is not None and after is not before and after.rows == 60
    assert sum(row["people"] for row in rows) == 60

    upload(empty_engine, first, progress=False)  # added to the 60, without --replace
    rows, appended = answer()
    assert appended is not None and appended is not after and appended.rows == 100


def test_uncommitted_writes_are_answered_in_sql(sqlite_engine: Engine, tmp_path: Path) -> None:
    """A connection that sees data others do not gets SQL, and the shared snapshot stays as committed."""
    upload(sqlite_engine, _first_rows(tmp_path, 0, 50, "rows.csv"), progress=False)
    with sqlite_engine.connect() as connection:
        committed = columnar.current(connection)
        assert committed is not None
        last = connection.scalar(select(PERSON.c.id).order_by(PERSON.c.id.desc()).limit(1))
        connection.execute(PERSON.delete().where(PERSON.c.id == last))
        assert columnar.current(connection) is None
        rows = query.aggregate_people(connection, PeopleFilter(), [], ["people"])
        connection.rollback()
    assert rows == [{"people": 49}]
    assert columnar.cached(sqlite_engine) is committed


def test_snapshot_holds_the_people_there_are(empty_engine: Engine, tmp_path: Path) -> None:
    """Arrays are sized from the loads' row count; people written outside an upload
    (fewer, then more than the loads say) must still all be there, and no others."""
    upload(empty_engine, _first_rows(tmp_path, 0, 30, "rows.csv"), progress=False)
    copied = [column for column in PERSON.c if column.name != "id"]
    with empty_engine.begin() as connection:
        connection.execute(PERSON.delete().where(PERSON.c.id <= 5))
    expected_rows = []
    for _ in range(2):
        with empty_engine.connect() as connection:
            snapshot = columnar.build(connection)
            assert snapshot.stamp.rows == 30
            for group_by in [(), ("race", "age_band")]:
                want = query._aggregate_people_sql(connection, PeopleFilter(), group_by)
                assert_same_rows(snapshot.aggregate_people(PeopleFilter(), group_by), want, group_by)
        expected_rows.append(snapshot.rows)
        with empty_engine.begin() as connection:  # then 50 more people than the loads account for
            for _ in range(3):
                connection.execute(PERSON.insert().from_select(copied, select(*copied)))
    assert expected_rows == [25, 200]


def test_concurrent_requests_build_once(sqlite_census_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _fresh_engine(sqlite_census_url)
    builds: list[int] = []
    real_build = columnar.build

    def counted_build(*args: Any, **kwargs: Any) -> columnar.Snapshot:
        builds.append(1)
        time.sleep(0.2)  # long enough for every thread to arrive while it builds
        return real_build(*args, **kwargs)

    monkeypatch.setattr(columnar, "build", counted_build)
    results: list[columnar.Snapshot | None] = []

    def ask() -> None:
        results.append(columnar.warm_up(engine))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(results) == 6
    assert all(result is not None and result is results[0] for result in results)
    engine.dispose()


def test_a_request_does_not_wait_for_a_build_in_progress(sqlite_census_url: str) -> None:
    engine = _fresh_engine(sqlite_census_url)
    with engine.connect() as connection:
        slot = columnar._slot(engine)
        with slot.lock:  # as if another thread were building
            assert columnar.current(connection) is None
            rows = query.aggregate_people(connection, PeopleFilter(), ["gender"], ["people"])
        assert [row["people"] for row in rows] == [16_192, 32_650]
        assert columnar.current(connection) is not None
    engine.dispose()


def test_refuses_values_the_stored_types_cannot_hold(sqlite_engine: Engine, tmp_path: Path) -> None:
    upload(sqlite_engine, _first_rows(tmp_path, 0, 10, "rows.csv"), progress=False)
    with sqlite_engine.begin() as connection:
        # A key beyond int16, as a dimension id; foreign keys do not stop this raw write.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.execute(PERSON.update().where(PERSON.c.id == 1).values(race_id=40_000))
    with sqlite_engine.connect() as connection:
        with pytest.raises(columnar.SnapshotRefused, match="race_id"):
            columnar.build(connection)
        assert columnar.current(connection) is None  # refused: aggregates run in SQL
        assert query.aggregate_people(connection, PeopleFilter(), [], ["people"]) == [{"people": 10}]


# --------------------------------------------------------------------------- API warm-up


def test_api_builds_the_snapshot_at_startup(sqlite_census_url: str) -> None:
    with TestClient(create_app(sqlite_census_url)) as client:
        engine = client.app.state.census.engine
        deadline = time.monotonic() + 30
        while columnar.cached(engine) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert columnar.cached(engine) is not None
        assert client.get("/api/v1/stats?group_by=gender").status_code == 200


def test_api_starts_when_the_warm_up_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Litestar configures logging at startup (caplog's handler does not survive it):
    # record the warning where it is emitted.
    warnings: list[str] = []
    monkeypatch.setattr(columnar.logger, "warning", lambda message, *_, **__: warnings.append(message))
    missing = tmp_path / "gone" / "census.db"
    with TestClient(create_app(f"sqlite:///{missing}")) as client:
        deadline = time.monotonic() + 30
        while not warnings and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/health").status_code == 503  # the API still serves
    assert len(warnings) == 1 and "warm-up failed" in warnings[0]
