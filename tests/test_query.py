"""The query layer against values computed independently from the input with pandas,
and against the `people` view itself (the two must never disagree)."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, func, select

from devtools.reference import people_mask
from warehouse import query
from warehouse.models import people
from warehouse.query import PeopleFilter, QueryError

FEMALE_30 = PeopleFilter(ranges={"age": (30, None)}, categories={"gender": ("Female",)})


def _mask(frame: pd.DataFrame, people_filter: PeopleFilter) -> pd.Series:
    return people_mask(frame, people_filter.ranges, people_filter.categories)


FILTERS = [
    PeopleFilter(),
    FEMALE_30,
    PeopleFilter(ranges={"hours_per_week": (50, 99), "education_num": (13, 16)}),
    PeopleFilter(categories={"workclass": (None, "Never-worked"), "income": (">50K",)}),
    PeopleFilter(ranges={"capital_gain": (1, None)}, categories={"race": ("Black", "Other"), "occupation": (None,)}),
]


@pytest.mark.parametrize("people_filter", FILTERS, ids=lambda f: f.describe())
def test_counts_match_pandas(
    sqlite_census_engine: Engine, input_frame: pd.DataFrame, people_filter: PeopleFilter
) -> None:
    with sqlite_census_engine.connect() as connection:
        assert query.count_people(connection, people_filter) == int(_mask(input_frame, people_filter).sum())


@pytest.mark.parametrize("people_filter", FILTERS[1:], ids=lambda f: f.describe())
def test_query_layer_and_view_agree(sqlite_census_engine: Engine, people_filter: PeopleFilter) -> None:
    """The query layer builds on the fact table for speed; the view is what analysts read."""
    view_conditions = []
    for column, (low, high) in people_filter.ranges.items():
        if low is not None:
            view_conditions.append(people.c[column] >= low)
        if high is not None:
            view_conditions.append(people.c[column] <= high)
    for column, values in people_filter.categories.items():
        labels = [v for v in values if v is not None]
        condition = people.c[column].in_(labels)
        if None in values:
            condition = condition | people.c[column].is_(None)
        view_conditions.append(condition)
    with sqlite_census_engine.connect() as connection:
        from_view = [tuple(r) for r in connection.execute(select(people).where(*view_conditions).order_by(people.c.id))]
        from_layer = [tuple(r) for batch in query.iter_people(connection, people_filter) for r in batch]
    assert from_layer == from_view and len(from_view) > 0


def test_pages_cover_every_match_once(sqlite_census_engine: Engine) -> None:
    seen: list[int] = []
    with sqlite_census_engine.connect() as connection:
        total = query.count_people(connection, FEMALE_30)
        for offset in range(0, total, 1000):
            page = query.fetch_people(connection, FEMALE_30, ["id", "age"], sort="-age", limit=1000, offset=offset)
            seen.extend(row["id"] for row in page)
            ages = [row["age"] for row in page]
            assert ages == sorted(ages, reverse=True)
    assert len(seen) == len(set(seen)) == total


def test_sorting_by_a_label_puts_missing_last(sqlite_census_engine: Engine) -> None:
    with sqlite_census_engine.connect() as connection:
        total = query.count_people(connection, PeopleFilter())
        last = query.fetch_people(
            connection, PeopleFilter(), ["workclass"], sort="workclass", limit=1, offset=total - 1
        )
        first = query.fetch_people(connection, PeopleFilter(), ["workclass"], sort="workclass", limit=1)
    assert last == [{"workclass": None}] and first == [{"workclass": "Federal-gov"}]


def test_grouped_aggregates_match_pandas(sqlite_census_engine: Engine, input_frame: pd.DataFrame) -> None:
    with sqlite_census_engine.connect() as connection:
        rows = query.aggregate_people(connection, FEMALE_30, ["race"])
    subset = input_frame[_mask(input_frame, FEMALE_30)]
    expected = subset.groupby("race").agg(
        people=("age", "size"),
        share_over_50k=("income", lambda s: (s == ">50K").mean()),
        population=("fnlwgt", "sum"),
        mean_age=("age", "mean"),
        mean_hours=("hours_per_week", "mean"),
        mean_capital_gain=("capital_gain", "mean"),
    )
    assert [row["race"] for row in rows] == sorted(expected.index)
    for row in rows:
        want = expected.loc[row["race"]]
        assert row["people"] == want["people"] and row["population"] == want["population"]
        for measure in ("share_over_50k", "mean_age", "mean_hours", "mean_capital_gain"):
            assert row[measure] == pytest.approx(want[measure], rel=1e-9)


def test_two_way_groups_and_missing_values(sqlite_census_engine: Engine, input_frame: pd.DataFrame) -> None:
    with sqlite_census_engine.connect() as connection:
        rows = query.aggregate_people(connection, PeopleFilter(), ["workclass", "income"], ["people"])
    expected = input_frame.groupby(["workclass", "income"], dropna=False).size()
    got = {(row["workclass"], row["income"]): row["people"] for row in rows}
    assert got == {(None if pd.isna(w) else w, i): int(n) for (w, i), n in expected.items()}
    assert list(got)[-2:] == [(None, "<=50K"), (None, ">50K")]  # missing last


def test_age_bands(sqlite_census_engine: Engine, input_frame: pd.DataFrame) -> None:
    with sqlite_census_engine.connect() as connection:
        rows = query.aggregate_people(connection, PeopleFilter(), ["age_band"], ["people"])
    bins = pd.cut(input_frame["age"], [0, 24, 34, 44, 54, 64, 1000], labels=[b[0] for b in query.AGE_BANDS])
    assert {row["age_band"]: row["people"] for row in rows} == {k: int(v) for k, v in bins.value_counts().items()}


def test_value_counts_and_dimension_counts(sqlite_census_engine: Engine, input_frame: pd.DataFrame) -> None:
    with sqlite_census_engine.connect() as connection:
        ages = query.value_counts(connection, FEMALE_30, "age")
        workclasses = query.dimension_counts(connection, "workclass")
    subset = input_frame[_mask(input_frame, FEMALE_30)]
    assert {r["value"]: r["people"] for r in ages} == {int(k): int(v) for k, v in subset["age"].value_counts().items()}
    counts = {r["value"]: r["people"] for r in workclasses}
    assert counts[None] == 2_799 and counts["Never-worked"] == 10
    assert sum(counts.values()) == 48_842


def test_browse_shows_labels_for_keys(sqlite_census_engine: Engine) -> None:
    with sqlite_census_engine.connect() as connection:
        tables = [name for name, _ in query.list_tables(connection)]
        page = query.browse_table(connection, "person", ["id", "gender", "income_bracket"], sort="-id", limit=2)
        total = query.count_table(connection, "person")
        education = query.browse_table(connection, "education", sort="education_num", limit=3)
    assert tables[0] == "people" and {"person", "load", "rejected_row", "gender"} <= set(tables)
    assert page[0]["id"] == total == 48_842 and page[0]["gender"] == "Male" and page[0]["income_bracket"] == ">50K"
    assert [row["label"] for row in education] == ["Preschool", "1st-4th", "5th-6th"]
    assert query.column_title("hours_per_week") == "Hours per week"


@pytest.mark.parametrize(
    ("make", "parameter", "allowed_contains"),
    [
        (lambda: PeopleFilter(categories={"gender": ("Robot",)}), "gender", "Female"),
        (lambda: PeopleFilter(ranges={"age": (50, 30)}), "age_min", None),
        (lambda: PeopleFilter(ranges={"height": (1, 2)}), "height", "age"),
        (lambda: PeopleFilter.from_params({"hours_min": ["lots"]}), "hours_min", None),
    ],
)
def test_bad_filters_name_the_parameter(make: object, parameter: str, allowed_contains: str | None) -> None:
    with pytest.raises(QueryError) as caught:
        make()  # type: ignore[operator]
    assert caught.value.parameter == parameter
    if allowed_contains:
        assert allowed_contains in (caught.value.allowed or [])


def test_bad_columns_and_sorts_are_refused() -> None:
    with pytest.raises(QueryError, match="sort: cannot sort by 'salary'"):
        query.select_people(PeopleFilter(), sort="-salary", limit=5)
    with pytest.raises(QueryError, match="fields: unknown column"):
        query.select_people(PeopleFilter(), columns=["age", "salary"])
    with pytest.raises(QueryError, match="group_by"):
        query.aggregate_people(None, PeopleFilter(), ["age", "race", "gender"])  # type: ignore[arg-type]


def test_params_round_trip() -> None:
    original = PeopleFilter(
        ranges={"age": (30, None), "hours_per_week": (None, 40)},
        categories={"workclass": (None, "Private"), "gender": ("Female",)},
    )
    params = original.to_params()
    assert params == {"age_min": ["30"], "hours_max": ["40"], "workclass": ["unknown", "Private"], "gender": ["Female"]}
    assert PeopleFilter.from_params(params) == original
    assert "Gender: Female" in original.describe() and "Age ≥ 30" in original.describe()


def test_no_sql_text_reaches_the_database(sqlite_census_engine: Engine) -> None:
    """A hostile value is a bound parameter that matches no one, never SQL."""
    hostile = "Female') OR 1=1 --"
    with pytest.raises(QueryError):
        PeopleFilter(categories={"gender": (hostile,)})
    statement = query.select_people(FEMALE_30, limit=10)
    compiled = statement.compile(dialect=create_engine("sqlite://").dialect)
    assert "Female" not in str(compiled) and ["Female"] in compiled.params.values()
    with sqlite_census_engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(statement.subquery())) == 10


def test_facet_counts_leave_out_their_own_choice(sqlite_census_engine: Engine, input_frame: pd.DataFrame) -> None:
    """Each attribute's counts use the OTHER conditions (Datasette's facets): choosing
    Female does not zero the Male count; choosing a race narrows the genders."""
    people_filter = PeopleFilter(ranges={"age": (30, 60)}, categories={"gender": ["Female"], "race": ["White", None]})
    with sqlite_census_engine.connect() as connection:
        facets = query.facet_counts(connection, people_filter, ["gender", "race", "workclass"])
    ranges = {"age": (30, 60)}
    for column, others in (
        ("gender", {"race": ["White", None]}),
        ("race", {"gender": ["Female"]}),
        ("workclass", {"gender": ["Female"], "race": ["White", None]}),
    ):
        chosen = input_frame[people_mask(input_frame, ranges, others)]
        expected = chosen[column].value_counts().to_dict()
        shown = {row["value"]: row["people"] for row in facets[column] if row["value"] is not None}
        assert {k: v for k, v in shown.items() if v} == expected, column
        missing = int(chosen[column].isna().sum())
        assert sum(row["people"] for row in facets[column] if row["value"] is None) == missing


def test_range_bounds_are_the_data_s(sqlite_census_engine: Engine, input_frame: pd.DataFrame) -> None:
    with sqlite_census_engine.connect() as connection:
        bounds = query.range_bounds(connection)
    for column, found in bounds.items():
        assert found == (int(input_frame[column].min()), int(input_frame[column].max())), column
