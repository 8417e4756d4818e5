"""The DuckDB analytic copy against plain SQL on the system of record, on SQLite and PostgreSQL.

The same statements run on both engines (`warehouse.aggregates` builds them,
`warehouse.analytics.run` picks the engine), so a smaller grid than the old
numpy engine needed is enough: a few filters and every grouping shape must give
the same rows, in the same order, with the same types. The copy must follow
uploads and --replace, respect COLUMNAR_MAX_ROWS, never hold data the caller's
connection does not see, and (documented blind spot) does not see a hand-made
UPDATE of person.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Executable, select, text, update
from sqlalchemy.exc import OperationalError

from loaders.upload import upload
from tests.conftest import INPUT
from warehouse import aggregates, analytics
from warehouse.contract import CATEGORY_COLUMNS, GROUPABLE_NUMBERS, UNKNOWN
from warehouse.db import make_engine, make_read_engine
from warehouse.domain import CATEGORIES, RANGES
from warehouse.models import Person
from warehouse.query import PeopleFilter

PERSON = Person.__table__

FILTERS = [
    PeopleFilter(),
    PeopleFilter(ranges={"age": (30, None)}, categories={"gender": ("Female",)}),
    PeopleFilter(ranges={"education_num": (13, 16), "capital_loss": (1, None)}),
    PeopleFilter(categories={"occupation": (None, "Sales"), "native_country": (None, "Mexico")}),
    PeopleFilter(ranges={"capital_gain": (1, None), "fnlwgt": (100_000, 300_000)}, categories={"race": ("Black",)}),
    PeopleFilter(ranges={"age": (16, 16)}),  # no one
]
GROUP_BYS: list[tuple[str, ...]] = [
    (),
    *((name,) for name in CATEGORY_COLUMNS),
    ("age_band",),
    *((name,) for name in GROUPABLE_NUMBERS),
    ("workclass", "income"),
    ("race", "age_band"),
    ("education_num", "education"),
]


def plain_sql(connection: Connection, statement: Executable) -> list[dict[str, Any]]:
    return [dict(row) for row in connection.execute(statement).mappings()]


def on_copy(connection: Connection, statement: Executable) -> list[dict[str, Any]]:
    copy = analytics.current(connection, wait=True)
    assert copy is not None, "no analytic copy"
    return copy.execute(statement)


@pytest.fixture(scope="module", autouse=True)
def analytic_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """PostgreSQL copies' files go to ANALYTIC_DIR (default: data/analytic in the
    repository): a temporary directory here, so tests leave nothing behind."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("analytic")
        patch.setenv("ANALYTIC_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def postgres_census_engine(postgres_census_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_census_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def census_engine(request: pytest.FixtureRequest) -> Engine:
    name = "sqlite_census_engine" if request.param == "sqlite" else "postgres_census_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture(params=["sqlite", "postgres"])
def empty_engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "postgres_engine")  # type: ignore[no-any-return]


def _first_rows(tmp_path: Path, start: int, stop: int, name: str) -> Path:
    lines = INPUT.read_text(encoding="utf-8").splitlines()
    path = tmp_path / name
    path.write_text("\n".join([lines[0], *lines[1 + start : 1 + stop]]) + "\n", encoding="utf-8")
    return path


def assert_same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]], context: object) -> None:
    """Same rows, order, keys and value types; floats to 1e-12 (the sums are exact)."""
    assert len(got) == len(want), context
    for index, (row, expected) in enumerate(zip(got, want, strict=True)):
        assert list(row) == list(expected), (context, index)
        for key, value in expected.items():
            where = (context, index, key, row[key], value)
            assert type(row[key]) is type(value), where
            assert row[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), where


@pytest.mark.postgres
@pytest.mark.parametrize("people_filter", FILTERS, ids=lambda f: f.describe())
def test_copy_answers_what_sql_answers(census_engine: Engine, people_filter: PeopleFilter) -> None:
    with census_engine.connect() as connection:
        for group_by in GROUP_BYS:
            want = aggregates.aggregate_people(connection, people_filter, group_by, run=plain_sql)
            got = aggregates.aggregate_people(connection, people_filter, group_by, run=on_copy)
            assert_same_rows(got, want, group_by)
        for by in (None, "workclass", "age_band", "education_num"):
            want = aggregates.value_counts(connection, people_filter, "age", by, run=plain_sql)
            assert_same_rows(aggregates.value_counts(connection, people_filter, "age", by, run=on_copy), want, by)
        for column in CATEGORY_COLUMNS:
            want = aggregates.dimension_counts(connection, column, people_filter, run=plain_sql)
            assert_same_rows(aggregates.dimension_counts(connection, column, people_filter, run=on_copy), want, column)
        many = aggregates.dimension_counts_many(connection, CATEGORY_COLUMNS, people_filter, run=on_copy)
        for column in CATEGORY_COLUMNS:
            want = aggregates.dimension_counts(connection, column, people_filter, run=plain_sql)
            assert_same_rows(many[column], want, column)
        want_count = aggregates.count_people(connection, people_filter, run=plain_sql)
        assert aggregates.count_people(connection, people_filter, run=on_copy) == want_count
    if people_filter.ranges.get("age") == (16, 16):
        assert want_count == 0  # the zero-match paths are really exercised


def test_missing_values_come_last_and_education_by_years(sqlite_census_engine: Engine) -> None:
    with sqlite_census_engine.connect() as connection:
        rows = aggregates.aggregate_people(connection, PeopleFilter(), ["workclass"], ["people"], run=on_copy)
        education = aggregates.aggregate_people(connection, PeopleFilter(), ["education"], ["people"], run=on_copy)
    assert rows[-1]["workclass"] is None and all(row["workclass"] for row in rows[:-1])
    assert [row["education"] for row in education][:3] == ["Preschool", "1st-4th", "5th-6th"]


def test_public_functions_answer_from_the_copy(sqlite_census_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a current copy, nothing aggregates in the system of record."""
    engine = make_engine(sqlite_census_url)
    try:
        analytics.warm_up(engine)
        asked: list[str] = []
        original = analytics.AnalyticCopy.execute

        def spy(self: analytics.AnalyticCopy, statement: Executable) -> list[dict[str, Any]]:
            asked.append(type(statement).__name__)
            return original(self, statement)

        monkeypatch.setattr(analytics.AnalyticCopy, "execute", spy)
        with engine.connect() as connection:
            aggregates.count_people(connection, PeopleFilter())
            aggregates.aggregate_people(connection, PeopleFilter(), ["race"])
            aggregates.value_counts(connection, PeopleFilter(), "age")
            aggregates.dimension_counts(connection, "race")
        assert len(asked) == 5  # dimension_counts: the counts and the labels
    finally:
        engine.dispose()


@pytest.mark.parametrize("limit", ["0", "48841"])
def test_columnar_max_rows_sends_queries_to_sql(
    sqlite_census_url: str, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    monkeypatch.setenv("COLUMNAR_MAX_ROWS", limit)
    engine = make_engine(sqlite_census_url)
    try:
        with engine.connect() as connection:
            assert analytics.current(connection, wait=True) is None
            assert aggregates.count_people(connection, PeopleFilter()) == 48842
        assert analytics.cached(engine) is None
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_copy_follows_uploads_and_replace(empty_engine: Engine, tmp_path: Path) -> None:
    first = _first_rows(tmp_path, 0, 40, "first.csv")
    second = _first_rows(tmp_path, 40, 100, "second.csv")
    upload(empty_engine, first, progress=False)

    def answer() -> tuple[int, analytics.AnalyticCopy | None]:
        with empty_engine.connect() as connection:
            rows = aggregates.aggregate_people(connection, PeopleFilter(), ["gender"], ["people"])
            assert rows == aggregates.aggregate_people(
                connection, PeopleFilter(), ["gender"], ["people"], run=plain_sql
            )
        return sum(row["people"] for row in rows), analytics.cached(empty_engine)

    people, before = answer()
    assert before is not None and before.rows == 40 and people == 40
    assert answer()[1] is before  # unchanged data: the same copy

    upload(empty_engine, second, replace=True, progress=False)
    people, after = answer()
    assert after is not None and after is not before and after.rows == 60 and people == 60

    upload(empty_engine, first, progress=False)  # added to the 60, without --replace
    people, appended = answer()
    assert appended is not None and appended is not after and appended.rows == 100 and people == 100


def test_uncommitted_writes_are_answered_in_sql(sqlite_engine: Engine, tmp_path: Path) -> None:
    upload(sqlite_engine, _first_rows(tmp_path, 0, 50, "rows.csv"), progress=False)
    with sqlite_engine.connect() as connection:
        committed = analytics.current(connection)
        assert committed is not None
        last = connection.scalar(select(PERSON.c.id).order_by(PERSON.c.id.desc()).limit(1))
        connection.execute(PERSON.delete().where(PERSON.c.id == last))
        assert analytics.current(connection) is None
        rows = aggregates.aggregate_people(connection, PeopleFilter(), [], ["people"])
        connection.rollback()
    assert rows == [{"people": 49}]
    assert analytics.cached(sqlite_engine) is committed


def test_a_hand_written_update_is_not_seen_until_restart(sqlite_engine: Engine, tmp_path: Path) -> None:
    """The documented blind spot of the version stamp (README "Querying")."""
    upload(sqlite_engine, _first_rows(tmp_path, 0, 30, "rows.csv"), progress=False)
    with sqlite_engine.connect() as connection:
        before = aggregates.aggregate_people(connection, PeopleFilter(), [], ["mean_age"])
    with sqlite_engine.begin() as connection:
        connection.execute(update(PERSON).values(age=PERSON.c.age + 1))
    with sqlite_engine.connect() as connection:
        stale = aggregates.aggregate_people(connection, PeopleFilter(), [], ["mean_age"])
        fresh = aggregates.aggregate_people(connection, PeopleFilter(), [], ["mean_age"], run=plain_sql)
    assert stale == before and fresh[0]["mean_age"] == pytest.approx(before[0]["mean_age"] + 1)
    # A restart alone reopens the shared file of the same version: still stale.
    restarted = make_engine(sqlite_engine.url.render_as_string(hide_password=False))  # a new process's engine
    with restarted.connect() as connection:
        assert aggregates.aggregate_people(connection, PeopleFilter(), [], ["mean_age"]) == before
    # The documented remedy: discard the files (python -m warehouse.analytics --discard), then restart.
    # (Both "processes" end here: DuckDB shares one open database per file within a process.)
    for engine in (restarted, sqlite_engine):
        analytics.cached(engine).close()  # type: ignore[union-attr]
    restarted.dispose()
    assert analytics.discard(sqlite_engine) == 1
    restarted = make_engine(sqlite_engine.url.render_as_string(hide_password=False))
    try:
        with restarted.connect() as connection:
            assert aggregates.aggregate_people(connection, PeopleFilter(), [], ["mean_age"]) == fresh
    finally:
        restarted.dispose()


@pytest.mark.postgres
def test_processes_share_one_file_per_version(
    empty_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first process writes the version's file; another opens it read-only
    instead of copying again; a new upload's file replaces it."""
    monkeypatch.setenv("ANALYTIC_DIR", str(tmp_path / "analytic"))
    upload(empty_engine, _first_rows(tmp_path, 0, 40, "first.csv"), progress=False)
    first = analytics.warm_up(empty_engine)
    assert first is not None and first.path is not None and first.path.exists()
    other = make_engine(empty_engine.url.render_as_string(hide_password=False))  # another process's engine
    try:
        with other.connect() as connection:
            opened = analytics.build(connection)
        assert opened.path == first.path and opened.rows == 40
        assert opened.database.execute("SELECT count(*) FROM person").fetchone() == (40,)
        opened.close()
    finally:
        other.dispose()
    upload(empty_engine, _first_rows(tmp_path, 40, 100, "second.csv"), replace=True, progress=False)
    second = analytics.warm_up(empty_engine)
    assert second is not None and second.path != first.path and second.rows == 60
    assert not first.path.exists()  # the older version's file is gone
    assert [p.name for p in second.path.parent.glob("*.duckdb")] == [second.path.name]


def test_a_read_only_directory_keeps_the_copy_in_memory(sqlite_engine: Engine, tmp_path: Path) -> None:
    upload(sqlite_engine, _first_rows(tmp_path, 0, 20, "rows.csv"), progress=False)
    with sqlite_engine.connect() as connection:
        copy = analytics.build(connection, directory=Path("/proc"))  # not writable by anyone
    assert copy.path is None and copy.rows == 20
    copy.close()


def test_a_request_does_not_wait_for_a_build_in_progress(sqlite_census_url: str) -> None:
    engine = make_engine(sqlite_census_url)
    try:
        slot = analytics._slot(engine)
        with slot.lock, engine.connect() as connection:  # the lock: a build in progress elsewhere
            assert analytics.current(connection) is None
            assert aggregates.count_people(connection, PeopleFilter()) == 48842  # answered in SQL
    finally:
        engine.dispose()


def test_a_copy_that_takes_longer_than_one_statement_may_is_still_built(
    sqlite_census_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API bounds every statement (API_STATEMENT_TIMEOUT); copying 10,000,000
    people takes longer than that in all, so each batch of the read gets the bound
    afresh. Here: 10 batches, each made 0.15 s slower, under a 0.5 s bound."""
    engine = make_read_engine(sqlite_census_url, statement_timeout_s=0.5)
    monkeypatch.setattr(analytics, "BATCH_ROWS", 5_000)
    as_array = analytics._as_array

    def slow_as_array(batch: Any, width: int) -> Any:
        time.sleep(0.15)
        return as_array(batch, width)

    monkeypatch.setattr(analytics, "_as_array", slow_as_array)
    try:
        with engine.connect() as connection:
            started = time.monotonic()
            copy = analytics.build(connection, directory=tmp_path)
            took = time.monotonic() - started
        assert copy.rows == 48_842 and took > 1.0  # twice the bound, and every person copied
        copy.close()
        with engine.connect() as connection, pytest.raises(OperationalError, match="interrupted"):
            connection.execute(
                text("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n")
            )
    finally:
        engine.dispose()


def _random_filters(seed: int, count: int) -> list[PeopleFilter]:
    """Filters of every kind: ranges with one or both ends (education_num too),
    one or several labels, `unknown` alone or with labels."""
    rng = random.Random(seed)
    filters = []
    for _ in range(count):
        ranges: dict[str, tuple[int | None, int | None]] = {}
        for column in rng.sample(sorted(RANGES), rng.randint(0, 2)):
            lowest, highest = RANGES[column]
            low, high = sorted(rng.randint(lowest, min(highest, lowest + 100)) for _ in range(2))
            ranges[column] = rng.choice([(low, high), (low, None), (None, high)])
        categories: dict[str, tuple[str | None, ...]] = {}
        for column in rng.sample(sorted(CATEGORIES), rng.randint(0, 2)):
            chosen = rng.sample(list(CATEGORIES[column]), rng.randint(0, 2))
            categories[column] = tuple(chosen) + ((UNKNOWN,) if rng.random() < 0.3 or not chosen else ())
        filters.append(PeopleFilter(ranges=ranges, categories=categories))
    return filters


@pytest.mark.postgres
def test_the_copys_count_sql_counts_what_sql_counts(census_engine: Engine) -> None:
    """`AnalyticCopy.count` writes the filter with dimension ids instead of labels:
    the same count as `count_statement` in SQL, for every kind of filter."""
    with census_engine.connect() as connection:
        copy = analytics.current(connection, wait=True)
        assert copy is not None
        counts = []
        for people_filter in [*FILTERS, *_random_filters(12, 150)]:
            want = aggregates.count_people(connection, people_filter, run=plain_sql)
            assert copy.count(people_filter) == want, people_filter
            counts.append(want)
    assert 0 in counts and len(set(counts)) > 50  # zero and many different answers really checked


def test_the_copys_count_of_a_label_no_one_has_is_zero(sqlite_engine: Engine, tmp_path: Path) -> None:
    upload(sqlite_engine, _first_rows(tmp_path, 0, 30, "few.csv"), progress=False)
    with sqlite_engine.connect() as connection:
        copy = analytics.current(connection, wait=True)
        assert copy is not None
        present = {row[0] for row in connection.exec_driver_sql("SELECT DISTINCT native_country FROM people")}
        absent = next(label for label in CATEGORIES["native_country"] if label not in present)
        counts = []
        for chosen in [(absent,), (absent, UNKNOWN), (UNKNOWN,)]:
            people_filter = PeopleFilter(categories={"native_country": chosen})
            counts.append(copy.count(people_filter))
            assert counts[-1] == aggregates.count_people(connection, people_filter, run=plain_sql), chosen
    assert counts[0] == 0 and counts[1] == counts[2]
