"""warehouse.stats against an independent reference: statsmodels (Wilson intervals,
DescrStatsW, Newcombe's interval, the z-test, multipletests) on groups computed with
pandas from data/Input_Dataset.csv, plus the edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)
from statsmodels.stats.weightstats import DescrStatsW

from warehouse import stats

LEVELS = (0.90, 0.95, 0.99)
GROUPINGS = (["education"], ["gender", "marital_status"], ["race"], ["occupation", "gender"])


@pytest.fixture(scope="module")
def frame(input_frame: pd.DataFrame) -> pd.DataFrame:
    out = input_frame.assign(y=input_frame["income"].eq(">50K").astype(float), w=input_frame["fnlwgt"].astype(float))
    return out.assign(w2=out["w"] ** 2, wy=out["w"] * out["y"])


def sufficient(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """What a database would aggregate per group."""
    work = frame.assign(v=frame[value], v2=frame[value] ** 2, wv=frame["w"] * frame[value])
    work = work.assign(wv2=work["wv"] * work[value])
    return work.groupby(keys, dropna=False).agg(
        n=("v", "size"), sum_y=("v", "sum"), sum_y2=("v2", "sum"), sum_w=("w", "sum"), sum_w2=("w2", "sum"),
        sum_wy=("wv", "sum"), sum_wy2=("wv2", "sum"),
    )  # fmt: skip


# --------------------------------------------------------------------------- against statsmodels


@pytest.mark.parametrize("keys", GROUPINGS)
@pytest.mark.parametrize("confidence", LEVELS)
def test_wilson_share_matches_statsmodels(frame: pd.DataFrame, keys: list[str], confidence: float) -> None:
    groups = sufficient(frame, keys, "y")
    result = stats.wilson_share(groups["sum_y"], groups["n"], confidence)
    low, high = proportion_confint(groups["sum_y"], groups["n"], alpha=1 - confidence, method="wilson")
    assert list(result.index) == list(groups.index)
    np.testing.assert_allclose(result["estimate"], groups["sum_y"] / groups["n"])
    np.testing.assert_allclose(result["ci_low"], low, atol=1e-12)
    np.testing.assert_allclose(result["ci_high"], high, atol=1e-12)


@pytest.mark.parametrize("keys", GROUPINGS)
def test_weighted_share_is_wilson_on_kish_effective_size(frame: pd.DataFrame, keys: list[str]) -> None:
    for (_, rows), (_, g) in zip(
        frame.groupby(keys, dropna=False), sufficient(frame, keys, "y").iterrows(), strict=True
    ):
        n_eff = rows["w"].sum() ** 2 / (rows["w"] ** 2).sum()
        p = np.average(rows["y"], weights=rows["w"])
        result = stats.weighted_share(g["sum_w"], g["sum_w2"], g["sum_wy"], n=g["n"]).iloc[0]
        low, high = proportion_confint(p * n_eff, n_eff, alpha=0.05, method="wilson")
        assert result["n_eff"] == pytest.approx(n_eff)
        assert result["estimate"] == pytest.approx(p)
        assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high), abs=1e-10)
        assert result["n"] == len(rows)


@pytest.mark.parametrize("value", ["age", "hours_per_week", "capital_gain"])
@pytest.mark.parametrize("confidence", LEVELS)
def test_means_match_descrstatsw(frame: pd.DataFrame, value: str, confidence: float) -> None:
    keys = ["education"]
    groups = sufficient(frame, keys, value)
    plain = stats.mean_interval(groups["n"], groups["sum_y"], groups["sum_y2"], confidence)
    weighted = stats.weighted_mean_interval(
        groups["sum_w"], groups["sum_w2"], groups["sum_wy"], groups["sum_wy2"], groups["n"], confidence
    )
    for level, rows in frame.groupby(keys):
        reference = DescrStatsW(rows[value].to_numpy(float))
        assert plain.loc[level, "estimate"] == pytest.approx(reference.mean)
        assert plain.loc[level, "se"] == pytest.approx(reference.std_mean, rel=1e-7)
        low, high = reference.tconfint_mean(alpha=1 - confidence)
        assert (plain.loc[level, "ci_low"], plain.loc[level, "ci_high"]) == pytest.approx((low, high), rel=1e-7)
        # Weighted: DescrStatsW with the weights rescaled to sum to Kish's n_eff.
        w = rows["w"].to_numpy()
        n_eff = w.sum() ** 2 / (w**2).sum()
        reference_w = DescrStatsW(rows[value].to_numpy(float), weights=w * n_eff / w.sum())
        assert weighted.loc[level, "estimate"] == pytest.approx(reference_w.mean)
        assert weighted.loc[level, "se"] == pytest.approx(reference_w.std_mean, rel=1e-6)
        low, high = reference_w.tconfint_mean(alpha=1 - confidence)
        assert (weighted.loc[level, "ci_low"], weighted.loc[level, "ci_high"]) == pytest.approx((low, high), rel=1e-6)


def test_two_proportion_test_matches_statsmodels(frame: pd.DataFrame) -> None:
    groups = sufficient(frame, ["marital_status", "gender"], "y")
    women, men = groups.xs("Female", level="gender"), groups.xs("Male", level="gender")
    result = stats.two_proportion_test(women["sum_y"], women["n"], men["sum_y"], men["n"])
    for status in women.index:
        k1, n1, k2, n2 = (
            women.loc[status, "sum_y"],
            women.loc[status, "n"],
            men.loc[status, "sum_y"],
            men.loc[status, "n"],
        )
        low, high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
        _, p_value = proportions_ztest([k1, k2], [n1, n2])
        row = result.loc[status]
        assert row["difference"] == pytest.approx(k1 / n1 - k2 / n2)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), abs=1e-10)
        assert row["p_value"] == pytest.approx(p_value, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("method", "reference"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjusted_pvalues_match_multipletests(method: str, reference: str) -> None:
    p = np.random.default_rng(7).uniform(0, 0.2, size=40) ** 2
    expected = multipletests(p, method=reference)[1]
    np.testing.assert_allclose(stats.adjust_pvalues(p, method), expected, rtol=1e-12)
    with_gap = np.append(p, np.nan)
    adjusted = stats.adjust_pvalues(with_gap, method)
    assert np.isnan(adjusted[-1])
    np.testing.assert_allclose(adjusted[:-1], expected, rtol=1e-12)


# --------------------------------------------------------------------------- edge cases


def test_empty_group_has_no_interval_and_no_error() -> None:
    with np.errstate(all="raise"):
        share = stats.wilson_share([0], [0])
        mean = stats.mean_interval([0], [0.0], [0.0])
        weighted = stats.weighted_share([0.0], [0.0], [0.0], n=[0])
        wmean = stats.weighted_mean_interval([0.0], [0.0], [0.0], [0.0], n=[0])
        diff = stats.two_proportion_test([0], [0], [3], [10])
    for result in (share, mean, weighted, wmean):
        assert result[["estimate", "ci_low", "ci_high"]].isna().all(axis=None)
    assert diff[["difference", "ci_low", "ci_high", "p_value"]].isna().all(axis=None)
    assert not stats.reliable([0], [np.nan], [np.nan])[0]


@pytest.mark.parametrize("n", [1, 5, 40, 10_000])
def test_wilson_stays_inside_zero_one_at_the_extremes(n: int) -> None:
    result = stats.wilson_share([0, n], [n, n], 0.99)
    assert result["ci_low"].iloc[0] == 0.0 and 0 < result["ci_high"].iloc[0] < 1
    assert 0 < result["ci_low"].iloc[1] < 1 and result["ci_high"].iloc[1] == 1.0
    low, high = proportion_confint([0, n], [n, n], alpha=0.01, method="wilson")
    np.testing.assert_allclose(result["ci_high"].iloc[0], high[0])
    np.testing.assert_allclose(result["ci_low"].iloc[1], low[1])


def test_group_of_one() -> None:
    share = stats.wilson_share([1], [1]).iloc[0]
    assert share["estimate"] == 1.0 and 0 < share["ci_low"] < 1
    mean = stats.mean_interval([1], [37.0], [37.0**2]).iloc[0]
    assert mean["estimate"] == 37.0 and np.isnan(mean["se"]) and np.isnan(mean["ci_low"])
    wmean = stats.weighted_mean_interval([5e4], [2.5e9], [37 * 5e4], [37**2 * 5e4]).iloc[0]
    assert wmean["estimate"] == pytest.approx(37.0) and np.isnan(wmean["ci_high"])
    assert not stats.reliable([1], [37.0], [np.nan])[0]


def test_equal_weights_give_the_unweighted_results(frame: pd.DataFrame) -> None:
    constant = frame.assign(w=123.0, w2=123.0**2, wy=123.0 * frame["y"])
    groups = sufficient(constant, ["education"], "hours_per_week")
    shares = sufficient(constant, ["education"], "y")
    pd.testing.assert_frame_equal(
        stats.mean_interval(groups["n"], groups["sum_y"], groups["sum_y2"]),
        stats.weighted_mean_interval(
            groups["sum_w"], groups["sum_w2"], groups["sum_wy"], groups["sum_wy2"], groups["n"]
        ).drop(columns="n_eff"),
        rtol=1e-9,
    )
    pd.testing.assert_frame_equal(
        stats.wilson_share(shares["sum_y"], shares["n"]),
        stats.weighted_share(shares["sum_w"], shares["sum_w2"], shares["sum_wy"], shares["n"]).drop(columns="n_eff"),
        rtol=1e-9,
    )


@pytest.mark.parametrize("confidence", [0.5, 0.94, 1.0, 95, -0.95])
def test_unsupported_confidence_is_a_value_error_naming_it(confidence: float) -> None:
    for call in (
        lambda: stats.wilson_share([1], [2], confidence),
        lambda: stats.weighted_share([1.0], [1.0], [1.0], confidence=confidence),
        lambda: stats.mean_interval([2], [3.0], [5.0], confidence),
        lambda: stats.weighted_mean_interval([2.0], [2.0], [3.0], [5.0], confidence=confidence),
        lambda: stats.two_proportion_test([1], [2], [1], [2], confidence),
    ):
        with pytest.raises(ValueError, match=r"confidence=.*0\.90, 0\.95, 0\.99"):
            call()


def test_reliability_flag_thresholds_and_overrides() -> None:
    n = np.array([29, 30, 100, 100, 100, 50])
    estimate = np.array([0.5, 0.5, 0.10, 0.10, 0.0, 0.2])
    se = np.array([0.01, 0.01, 0.03, 0.031, 0.0, 0.01])
    assert stats.reliable(n, estimate, se).tolist() == [False, True, True, False, True, True]
    assert stats.reliable(n, estimate, se, min_n=60).tolist() == [False, False, True, False, True, False]
    assert stats.reliable(n, estimate, se, max_rse=0.5).tolist() == [False, True, True, True, True, True]
    flagged = stats.with_reliability(stats.wilson_share([3, 300], [6, 600]))
    assert flagged["reliable"].tolist() == [False, True]
    assert flagged["rse"].iloc[1] == pytest.approx(np.sqrt(0.25 / 600) / 0.5)
    with pytest.raises(ValueError, match="max_rse"):
        stats.reliable([1], [1], [1], max_rse=0)


def test_scalars_and_arrays_work_too() -> None:
    scalar = stats.wilson_share(10, 40)
    array = stats.wilson_share(np.array([10]), np.array([40]))
    pd.testing.assert_frame_equal(scalar, array)
    assert list(scalar.columns) == list(stats.INTERVAL_COLUMNS)
    with pytest.raises(ValueError, match="successes"):
        stats.wilson_share([5], [4])
    with pytest.raises(ValueError, match="method"):
        stats.adjust_pvalues([0.1], "bonferroni")
