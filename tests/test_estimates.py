"""warehouse.estimates.estimate_groups against an independent reference: statsmodels
(`proportion_confint(method="wilson")`, `DescrStatsW`) on groups computed with pandas from
data/Input_Dataset.csv, for several filters and groupings, with the statistics summed by
SQLite, PostgreSQL and the DuckDB analytic copy; plus the edge cases (no one, one person,
all weights equal, shares of 0 and 1, bad parameters) and the overflow the casts prevent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from devtools.reference import people_mask
from loaders.upload import upload
from tests.conftest import INPUT
from warehouse import analytics, contract
from warehouse.aggregates import aggregate_people
from warehouse.db import make_engine
from warehouse.estimates import estimate_groups
from warehouse.query import PeopleFilter, QueryError

MEANS = {"mean_age": "age", "mean_hours": "hours_per_week", "mean_capital_gain": "capital_gain"}
MEASURES = ["people", "share_over_50k", "population", *MEANS]
FILTERS = [
    PeopleFilter(),
    PeopleFilter(ranges={"age": (30, None)}, categories={"gender": ("Female",)}),
    PeopleFilter(ranges={"capital_gain": (1, None)}, categories={"race": ("Black", "Other"), "occupation": (None,)}),
]
GROUPINGS: list[list[str]] = [[], ["race"], ["gender", "marital_status"], ["education_num"], ["occupation", "income"]]


@pytest.fixture(scope="module", autouse=True)
def analytic_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """PostgreSQL copies' files go to a temporary ANALYTIC_DIR, so tests leave nothing behind."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANALYTIC_DIR", str(tmp_path_factory.mktemp("analytic")))
        yield


@pytest.fixture(scope="module")
def postgres_census_engine(postgres_census_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_census_url)
    yield engine
    engine.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        "duckdb",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-duckdb", marks=pytest.mark.postgres),
    ]
)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """A loaded database, its statistics summed in SQL or by the DuckDB copy (checked with a spy)."""
    name = "sqlite_census_engine" if request.param.startswith("sqlite") else "postgres_census_engine"
    engine: Engine = request.getfixturevalue(name)
    if request.param.endswith("duckdb"):
        assert analytics.warm_up(engine) is not None
        real = analytics.AnalyticCopy.execute

        def counted(self: analytics.AnalyticCopy, statement: Any) -> list[dict[str, Any]]:
            request.node.copy_queries = getattr(request.node, "copy_queries", 0) + 1
            return real(self, statement)

        monkeypatch.setattr(analytics.AnalyticCopy, "execute", counted)
    else:
        monkeypatch.setenv("COLUMNAR_MAX_ROWS", "0")  # every aggregate in SQL
    return engine


@pytest.fixture(scope="module")
def frame(input_frame: pd.DataFrame) -> pd.DataFrame:
    return input_frame.assign(y=input_frame["income"].eq(">50K").astype(float), w=input_frame["fnlwgt"].astype(float))


def _groups(frame: pd.DataFrame, people_filter: PeopleFilter, keys: list[str]) -> dict[tuple[Any, ...], pd.DataFrame]:
    subset = frame[people_mask(frame, people_filter.ranges, people_filter.categories)]
    if not keys:
        return {(): subset}
    return {
        tuple(None if pd.isna(v) else v for v in (key if isinstance(key, tuple) else (key,))): rows
        for key, rows in subset.groupby(keys, dropna=False)
    }


def _wilson_on(k: float, n: float, confidence: float) -> tuple[float, float]:
    low, high = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


def _expected(rows: pd.DataFrame, confidence: float, weighted: bool) -> dict[str, tuple[float, float, float, float]]:
    """measure -> (estimate, se, ci_low, ci_high) computed by statsmodels from the people themselves."""
    n = len(rows)
    w = rows["w"].to_numpy()
    n_eff = w.sum() ** 2 / (w**2).sum()
    y = rows["y"].to_numpy()
    answer: dict[str, tuple[float, float, float, float]] = {}
    if weighted:
        p = float(np.average(y, weights=w))
        answer["share_over_50k"] = (p, np.sqrt(p * (1 - p) / n_eff), *_wilson_on(p * n_eff, n_eff, confidence))
    else:
        p = y.mean()
        answer["share_over_50k"] = (p, np.sqrt(p * (1 - p) / n), *_wilson_on(y.sum(), n, confidence))
    for measure, column in MEANS.items():
        values = rows[column].to_numpy(float)
        reference = DescrStatsW(values, weights=w * n_eff / w.sum()) if weighted else DescrStatsW(values)
        answer[measure] = (reference.mean, reference.std_mean, *reference.tconfint_mean(alpha=1 - confidence))
    return answer


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # statsmodels, one person
@pytest.mark.parametrize("people_filter", FILTERS, ids=lambda f: f.describe() or "everyone")
@pytest.mark.parametrize("keys", GROUPINGS, ids=lambda k: "+".join(k) or "no-groups")
def test_estimates_match_statsmodels(
    engine: Engine, frame: pd.DataFrame, people_filter: PeopleFilter, keys: list[str], request: pytest.FixtureRequest
) -> None:
    confidence = {0: 0.90, 1: 0.95, 2: 0.99}[len(keys) % 3]
    groups = _groups(frame, people_filter, keys)
    with engine.connect() as connection:
        plain = aggregate_people(connection, people_filter, keys, MEASURES)
        results = {
            weighted: estimate_groups(
                connection, people_filter, keys, MEASURES, weighted=weighted, confidence=confidence, min_n=30
            )
            for weighted in (False, True)
        }
    if "duckdb" in request.node.callspec.params.get("engine", ""):
        assert getattr(request.node, "copy_queries", 0) >= 3  # the copy answered
    for weighted, result in results.items():
        # The same groups, in the same order, as aggregate_people.
        assert result[keys].to_dict("records") == [{k: row[k] for k in keys} for row in plain]
        assert len(result) == len(groups) > 0
        for record, row in zip(result.to_dict("records"), plain, strict=True):
            rows = groups[tuple(record[k] for k in keys)]
            assert record["n"] == len(rows) == row["people"]
            assert record["people"] == row["people"] and record["population"] == row["population"]
            assert np.isnan(record["population__ci_low"]) and np.isnan(record["people__se"])
            for measure, (estimate, se, low, high) in _expected(rows, confidence, weighted).items():
                where = (weighted, keys, record[keys[0]] if keys else None, measure)
                if not weighted:
                    assert record[measure] == pytest.approx(row[measure], rel=1e-12), where
                assert record[measure] == pytest.approx(estimate, rel=1e-9), where
                if len(rows) < 2 and measure in MEANS:  # one person: no standard error
                    assert np.isnan(record[f"{measure}__se"]) and np.isnan(record[f"{measure}__ci_low"]), where
                    continue
                assert record[f"{measure}__se"] == pytest.approx(se, rel=1e-6, abs=1e-12), where
                assert record[f"{measure}__ci_low"] == pytest.approx(low, rel=1e-6, abs=1e-9), where
                assert record[f"{measure}__ci_high"] == pytest.approx(high, rel=1e-6, abs=1e-9), where
                rse_ok = estimate == 0 or se / abs(estimate) <= 0.30
                assert record[f"{measure}__reliable"] == (len(rows) >= 30 and rse_ok), where
            flags = [record[f"{m}__reliable"] for m in MEASURES]
            assert record["reliable"] == (len(rows) >= 30 and all(flags))


def test_columns_and_edge_cases(sqlite_census_engine: Engine) -> None:
    nobody = PeopleFilter(ranges={"age": (16, 16)})
    with sqlite_census_engine.connect() as connection:
        empty = estimate_groups(connection, nobody, [], MEASURES)
        empty_grouped = estimate_groups(connection, nobody, ["race"], ["share_over_50k"])
        everyone = estimate_groups(connection, PeopleFilter(), ["income"], ["share_over_50k"], weighted=True)
        tiny = estimate_groups(connection, PeopleFilter(ranges={"age": (90, 90)}), ["occupation"], MEASURES)
    # Exactly the promised columns, in order.
    parts = ["", "__se", "__ci_low", "__ci_high", "__reliable"]
    assert list(empty) == ["n", *(f"{m}{p}" for m in MEASURES for p in parts), "reliable"]
    assert list(empty_grouped) == ["race", "n", *(f"share_over_50k{p}" for p in parts), "reliable"]
    # No one: one row of n = 0, no estimate, no interval, not reliable (and no error).
    assert len(empty) == 1 and empty.loc[0, "n"] == 0 and empty.loc[0, "people"] == 0
    assert empty.loc[0, ["share_over_50k", "share_over_50k__ci_low", "mean_age__ci_high"]].isna().all()
    assert not empty.loc[0, "reliable"] and empty_grouped.empty
    # Income groups: the share is exactly 0 and 1, its interval inside [0, 1] and not empty.
    low_income, high_income = everyone.to_dict("records")
    assert low_income["share_over_50k"] == 0 and low_income["share_over_50k__ci_low"] == 0
    assert 0 < low_income["share_over_50k__ci_high"] < 0.01
    assert high_income["share_over_50k"] == 1 and high_income["share_over_50k__ci_high"] == 1
    assert 0.99 < high_income["share_over_50k__ci_low"] < 1
    # Small groups are flagged; a group of one has a share interval but no mean interval.
    assert not tiny["reliable"].any()
    one = tiny[tiny["n"] == 1].iloc[0]
    assert 0 <= one["share_over_50k__ci_low"] < one["share_over_50k__ci_high"] <= 1
    assert np.isnan(one["mean_age__ci_low"]) and one["mean_age"] == 90


@pytest.mark.parametrize(
    ("arguments", "parameter"),
    [({"confidence": 0.8}, "confidence"), ({"confidence": 1.5}, "confidence"), ({"min_n": -1}, "min_n"),
     ({"max_rse": 0}, "max_rse")],
)  # fmt: skip
def test_bad_parameters_name_themselves(
    sqlite_census_engine: Engine, arguments: dict[str, Any], parameter: str
) -> None:
    with sqlite_census_engine.connect() as connection, pytest.raises(QueryError) as caught:
        estimate_groups(connection, PeopleFilter(), ["race"], ["people"], **arguments)
    assert caught.value.parameter == parameter


def test_thresholds_come_from_the_configuration(sqlite_census_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with sqlite_census_engine.connect() as connection:
        default = estimate_groups(connection, PeopleFilter(), ["race"], ["people"])
        monkeypatch.setenv("RELIABILITY_MIN_N", "1000")
        strict = estimate_groups(connection, PeopleFilter(), ["race"], ["people"])
        explicit = estimate_groups(connection, PeopleFilter(), ["race"], ["people"], min_n=1)
    assert list(default["reliable"]) == list(default["n"] >= 30)
    assert (
        list(strict["reliable"]) == list(strict["n"] >= 1000) and default["reliable"].sum() > strict["reliable"].sum()
    )
    assert explicit["reliable"].all()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "postgres_engine")  # type: ignore[no-any-return]


@pytest.mark.parametrize("copy", [False, True], ids=["sql", "duckdb"])
def test_equal_weights_and_no_overflow(
    fresh_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy: bool
) -> None:
    """All weights equal: weighted = unweighted. Top-coded capital gains and the largest
    weight: sum(w * gain^2) is 1e17 per person, past a 64-bit integer over 100 people,
    and the answer is still right (the statistics are summed as doubles)."""
    monkeypatch.setenv("ANALYTIC_DIR", str(tmp_path / "analytic"))
    monkeypatch.setenv("COLUMNAR_MAX_ROWS", "1000000" if copy else "0")
    rows = pd.read_csv(INPUT, dtype=str, keep_default_na=False, nrows=3000)
    rows["fnlwgt"] = "10000000"  # the largest weight allowed
    rows.loc[rows.index % 2 == 0, "capital_gain"] = "99999"  # the top code
    path = tmp_path / "heavy.csv"
    rows.to_csv(path, index=False)
    upload(fresh_engine, path, progress=False)
    if copy:
        assert analytics.warm_up(fresh_engine) is not None
    keys = ["gender"]
    with fresh_engine.connect() as connection:
        plain = estimate_groups(connection, PeopleFilter(), keys, MEASURES)
        weighted = estimate_groups(connection, PeopleFilter(), keys, MEASURES, weighted=True)
    columns = [c for c in plain if c not in ("population",)]
    pd.testing.assert_frame_equal(plain[columns], weighted[columns], rtol=1e-9)
    assert (plain["mean_capital_gain"] > 40_000).all()


def test_plain_queries_ask_for_no_more_than_before() -> None:
    """The interval statistics are summed only when intervals are asked for."""
    plain = contract.statistics_for(MEASURES)
    assert plain == ["n", "n_over_50k", "sum_fnlwgt", "sum_age", "sum_hours", "sum_capital_gain"]
    sample = contract.statistics_for(MEASURES, intervals=True)
    weighted = contract.statistics_for(MEASURES, weighted=True)
    assert "sum_age2" in sample and "sum_w2" not in sample
    assert {"sum_w2", "sum_w_over_50k", "sum_w_capital_gain2"} <= set(weighted) and "sum_age2" not in weighted
    for measure in contract.MEASURES_DECLARED:  # people and population: exact totals, no interval
        assert (measure.uncertainty is None) == measure.additive, measure.name
