"""/api/v1/stats says how far to trust each number, over HTTP against a real SQLite file.

Intervals are checked against statsmodels on the people pandas selects from the input
(never through the warehouse); then the edge cases: nobody matches, shares of exactly
0% and 100%, a group of one, confidence out of range, min_n with small_groups=flag|hide,
intervals=false, and the OpenAPI's account of the method.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from litestar.testing import TestClient
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from api.app import create_app
from devtools import reference

STATS = "/api/v1/stats"
INTERVAL_MEASURES = {"share_over_50k": None, "mean_age": "age", "mean_hours": "hours_per_week"}


@pytest.fixture(scope="module")
def client(sqlite_census_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_census_url)) as test_client:
        yield test_client


def _get(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get(STATS, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _reference(rows: pd.DataFrame, measure: str, weighted: bool, confidence: float) -> tuple[float, float, float]:
    """(estimate, ci_low, ci_high) by statsmodels from the people themselves."""
    w = rows["fnlwgt"].to_numpy(float)
    n_eff = w.sum() ** 2 / (w**2).sum()
    alpha = 1 - confidence
    column = INTERVAL_MEASURES[measure]
    if column is None:
        y = rows["income"].eq(">50K").to_numpy(float)
        if weighted:
            p = float(np.average(y, weights=w))
            return (p, *proportion_confint(p * n_eff, n_eff, alpha=alpha, method="wilson"))
        return (y.mean(), *proportion_confint(y.sum(), len(y), alpha=alpha, method="wilson"))
    values = rows[column].to_numpy(float)
    stats = DescrStatsW(values, weights=w * n_eff / w.sum()) if weighted else DescrStatsW(values)
    return (stats.mean, *stats.tconfint_mean(alpha=alpha))


@pytest.mark.parametrize(
    ("params", "group_by", "confidence"),
    [
        ({}, "race", 0.95),
        ({"gender": "Female", "age_min": 40}, "occupation", 0.90),
        ({"education": ["Bachelors", "Masters"], "hours_min": 45}, "marital_status", 0.99),
    ],
)
def test_intervals_match_statsmodels(
    client: TestClient, input_frame: pd.DataFrame, params: dict[str, Any], group_by: str, confidence: float
) -> None:
    body = _get(client, **params, group_by=group_by, confidence=confidence, measures=list(INTERVAL_MEASURES))
    assert body["confidence"] == confidence and body["intervals"] is True and body["min_n"] == 30
    selected = reference.select_by_params(input_frame, params)
    parts = {None if pd.isna(key) else key: rows for key, rows in selected.groupby(group_by, dropna=False)}
    assert [g[group_by] for g in body["groups"]] and {g[group_by] for g in body["groups"]} == set(parts)
    for group in body["groups"]:
        rows = parts[group[group_by]]
        assert group["n"] == len(rows)
        for measure in INTERVAL_MEASURES:
            for weighted in (False, True):
                name = f"{measure}_weighted" if weighted else measure
                where = (group[group_by], name)
                estimate, low, high = _reference(rows, measure, weighted, confidence)
                assert group[name] == pytest.approx(estimate, rel=1e-9), where
                if len(rows) < 2 and measure != "share_over_50k":
                    assert group[f"{name}_ci_low"] is None, where
                    continue
                assert group[f"{name}_ci_low"] == pytest.approx(low, rel=1e-6, abs=1e-9), where
                assert group[f"{name}_ci_high"] == pytest.approx(high, rel=1e-6, abs=1e-9), where
        reliable = [group[f"{m}_reliable"] for m in INTERVAL_MEASURES]
        assert group["reliable"] == (len(rows) >= 30 and all(reliable))
        if len(rows) < 30:
            assert not group["reliable"] and not group["reliable_weighted"]


def test_nobody_matches(client: TestClient) -> None:
    """n = 0: no estimate, no interval, not reliable, and no error."""
    (group,) = _get(client, age_min=100)["groups"]
    assert group["n"] == 0 and group["people"] == 0 and group["reliable"] is False
    for measure in INTERVAL_MEASURES:
        for name in (measure, f"{measure}_weighted"):
            assert group[name] is None and group[f"{name}_ci_low"] is None and group[f"{name}_ci_high"] is None
    assert _get(client, age_min=100, group_by="race")["groups"] == []


def test_shares_of_none_and_all_stay_inside_zero_one(client: TestClient) -> None:
    groups = {g["income"]: g for g in _get(client, group_by="income", measures="share_over_50k")["groups"]}
    low, high = groups["<=50K"], groups[">50K"]
    for suffix in ("", "_weighted"):
        assert low[f"share_over_50k{suffix}"] == 0 and low[f"share_over_50k{suffix}_ci_low"] == 0
        assert 0 < low[f"share_over_50k{suffix}_ci_high"] < 0.01
        assert high[f"share_over_50k{suffix}"] == 1 and high[f"share_over_50k{suffix}_ci_high"] == 1
        assert 0.99 < high[f"share_over_50k{suffix}_ci_low"] < 1
    # RSE of a share of 0 is undefined: judged by n alone (tens of thousands of people).
    assert low["share_over_50k_reliable"] is True


def test_a_group_of_one(client: TestClient, input_frame: pd.DataFrame) -> None:
    params = {"age_min": 87, "age_max": 87, "gender": "Female"}
    assert len(reference.select_by_params(input_frame, params)) == 1
    (group,) = _get(client, **params)["groups"]
    assert group["n"] == 1 and group["reliable"] is False
    assert 0 <= group["share_over_50k_ci_low"] < group["share_over_50k_ci_high"] <= 1
    assert group["mean_age"] == 87 and group["mean_age_ci_low"] is None and group["mean_age_se"] is None


@pytest.mark.parametrize("confidence", ["0.8", "1.5", "0", "95", "-0.95", "nan"])
def test_confidence_out_of_range_is_a_400_naming_it(client: TestClient, confidence: str) -> None:
    response = client.get(STATS, params={"confidence": confidence, "group_by": "race"})
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == "confidence"
    assert "confidence" in response.json()["detail"]


@pytest.mark.parametrize(("params", "parameter"), [({"min_n": 0}, "min_n"), ({"small_groups": "drop"}, "small_groups")])
def test_bad_small_group_parameters_are_a_400(client: TestClient, params: dict[str, Any], parameter: str) -> None:
    response = client.get(STATS, params=params)
    assert response.status_code == 400 and response.json()["parameter"] == parameter


def test_min_n_flags_or_hides_small_groups(client: TestClient, input_frame: pd.DataFrame) -> None:
    sizes = input_frame.groupby("race").size()
    flagged = _get(client, group_by="race", min_n=1000, measures="people")
    assert flagged["small_groups"] == "flag" and flagged["hidden"] == 0
    assert {g["race"]: g["reliable"] for g in flagged["groups"]} == {r: bool(n >= 1000) for r, n in sizes.items()}
    hidden = _get(client, group_by="race", min_n=1000, small_groups="hide", measures="people")
    assert [g["race"] for g in hidden["groups"]] == sorted(sizes[sizes >= 1000].index)
    assert hidden["hidden"] == int((sizes < 1000).sum()) > 0
    plain = _get(client, group_by="race", min_n=1000, small_groups="hide", intervals="false", measures="people")
    assert [g["race"] for g in plain["groups"]] == [g["race"] for g in hidden["groups"]]


def test_intervals_false_gives_the_plain_measures(client: TestClient) -> None:
    full = _get(client, group_by="gender")
    plain = _get(client, group_by="gender", intervals="false")
    assert plain["intervals"] is False
    for with_intervals, without in zip(full["groups"], plain["groups"], strict=True):
        assert set(without) == {"gender", "n", *plain["measures"]}
        assert {k: with_intervals[k] for k in without} == without


def test_weighted_false_leaves_the_census_weighted_fields_out(client: TestClient) -> None:
    full = _get(client, group_by="race", measures=["share_over_50k", "mean_age"])
    sample = _get(client, group_by="race", measures=["share_over_50k", "mean_age"], weighted="false")
    assert sample["weighted"] is False and full["weighted"] is True
    for with_weights, without in zip(full["groups"], sample["groups"], strict=True):
        assert not any("weighted" in key for key in without)
        assert {k: with_weights[k] for k in without} == without
        assert "share_over_50k_weighted_ci_low" in with_weights


def test_the_openapi_documents_the_method(client: TestClient) -> None:
    schema = client.get("/schema/openapi.json").json()
    operation = schema["paths"][STATS]["get"]
    for words in ("Wilson", "Kish", "strata and clusters", "Student-t", "NCHS", "coefficient of variation"):
        assert words in operation["description"], words
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters["confidence"]["schema"]["enum"] == [0.9, 0.95, 0.99]
    assert parameters["min_n"]["schema"]["minimum"] == 1
    group = schema["components"]["schemas"]["Group"]["properties"]
    for name in ("n", "reliable", "share_over_50k_ci_low", "mean_age_weighted_ci_high", "mean_hours_reliable"):
        assert name in group, name
    assert "people_ci_low" not in group and "population_weighted" not in group  # exact totals
