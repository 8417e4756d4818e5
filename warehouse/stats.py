"""How far to trust a number: estimates with their intervals, from sufficient statistics.

One module the API, the explorer and the notebook share (issue "every number says how far
to trust it"). It is pure: no database access. Every function takes the *sufficient
statistics* a database aggregates in one pass per group -- counts and sums such as
``n``, ``successes``, ``sum(w)``, ``sum(w*w)``, ``sum(w*y)``, ``sum(w*y*y)``, ``sum(y)``,
``sum(y*y)`` -- so a grouped SQL result (or a pandas ``groupby().agg``) can be passed
whole: every argument may be a scalar, a numpy array or a pandas Series, and the result is
a DataFrame with one row per group (indexed like the first Series argument).

Methods, and why:

- **Unweighted share**: Wilson score interval. Unlike the textbook normal ("Wald")
  interval it stays inside [0, 1] and keeps close to its nominal coverage for small groups
  and for shares near 0 or 1 (Brown, Cai & DasGupta, Statistical Science 16(2), 2001).
- **Census-weighted share** (weights = ``fnlwgt``): the weighted share ``sum(w*y)/sum(w)``
  with a Wilson interval computed on Kish's effective sample size
  ``n_eff = sum(w)**2 / sum(w**2)`` (Kish, Survey Sampling, 1965). This is an
  **approximation**: it accounts for unequal weights only, not for the survey's strata and
  clusters, which the file does not carry (the CPS design effect is larger than the
  weighting effect alone, so these intervals are, if anything, too narrow).
- **Means**: mean, standard error ``s/sqrt(n)`` and a Student-t interval with ``n - 1``
  degrees of freedom. The weighted mean uses the same recipe with the weights rescaled to
  sum to ``n_eff`` (what statsmodels' ``DescrStatsW`` gives for such weights): with equal
  weights it is exactly the unweighted result.
- **Difference of two shares**: Newcombe's hybrid score interval (Newcombe, Statistics in
  Medicine 17, 1998, method 10) and the pooled two-proportion z-test.
- **Many comparisons**: Holm's step-down (controls the family-wise error rate) or
  Benjamini-Hochberg (controls the false discovery rate) adjusted p-values.
- **Reliability flag**: an estimate is *unreliable* when fewer than ``min_n`` people stand
  behind it (default 30) or its relative standard error ``se / estimate`` exceeds
  ``max_rse`` (default 0.30). Both defaults are the US National Center for Health
  Statistics' long-standing presentation rule (an estimate based on fewer than 30 sample
  cases, or with an RSE of 30% or more, is flagged "statistically unreliable"; see NCHS,
  *Data Presentation Standards for Proportions*, Vital Health Stat 2(175), 2017, which
  also reviews the rule); the American Community Survey similarly flags estimates whose
  coefficient of variation is high. The RSE of a zero estimate is undefined, so a zero is
  judged by its ``n`` alone.

Edge cases: a group with ``n = 0`` (or zero weight) gets NaN estimate and interval, never a
division error; a group of one gets a share interval but no mean interval (no variance can be
estimated from one value); an unsupported confidence level is a ``ValueError`` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import special as _scipy_special
from scipy import stats as _scipy_stats

CONFIDENCE_LEVELS: Final = (0.90, 0.95, 0.99)
DEFAULT_CONFIDENCE: Final = 0.95
DEFAULT_MIN_N: Final = 30
DEFAULT_MAX_RSE: Final = 0.30
INTERVAL_COLUMNS: Final = ("n", "estimate", "se", "ci_low", "ci_high")


# --------------------------------------------------------------------------- plumbing


def z_value(confidence: float = DEFAULT_CONFIDENCE) -> float:
    """The two-sided standard-normal quantile for a supported confidence level."""
    _check_confidence(confidence)
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _check_confidence(confidence: float) -> None:
    if not any(np.isclose(confidence, level) for level in CONFIDENCE_LEVELS):
        allowed = ", ".join(f"{level:.2f}" for level in CONFIDENCE_LEVELS)
        raise ValueError(f"confidence={confidence!r} is not supported: use one of {allowed}")


def _index(*values: object) -> pd.Index | None:
    """The index of the first pandas argument, so grouped results keep their group labels."""
    for value in values:
        if isinstance(value, pd.Series | pd.DataFrame):
            return value.index
    return None


def _array(value: ArrayLike) -> np.ndarray:
    return np.atleast_1d(np.asarray(value, dtype=float))


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (no warning, no error)."""
    numerator, denominator = np.broadcast_arrays(numerator, denominator)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _frame(index: pd.Index | None, **columns: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    if index is not None and len(index) == len(frame):
        frame.index = index
    return frame


# --------------------------------------------------------------------------- shares


def _wilson(p: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score bounds for share p of n (n may be fractional: an effective size)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        denominator = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
        low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    # Exactly 0 / 1 at the extremes (the formula gives them up to rounding).
    low[p == 0], high[p == 1] = 0.0, 1.0
    empty = ~(n > 0)
    low[empty], high[empty] = np.nan, np.nan
    return low, high


def wilson_share_columns(
    successes: ArrayLike, n: ArrayLike, confidence: float = DEFAULT_CONFIDENCE
) -> dict[str, np.ndarray]:
    """wilson_share's columns as numpy arrays (no index, no DataFrame: the cheap form for a
    request that formats them itself)."""
    z = z_value(confidence)
    k, size = np.broadcast_arrays(_array(successes), _array(n))
    if np.any(k < 0) or np.any(k > size):
        raise ValueError("successes must lie between 0 and n")
    p = _divide(k, size)
    low, high = _wilson(p, size, z)
    se = np.sqrt(_divide(p * (1 - p), size))
    return dict(n=size, estimate=p, se=se, ci_low=low, ci_high=high)


def wilson_share(successes: ArrayLike, n: ArrayLike, confidence: float = DEFAULT_CONFIDENCE) -> pd.DataFrame:
    """Unweighted share successes/n with its Wilson score interval.

    Columns: n, estimate, se (binomial sqrt(p(1-p)/n), for the reliability flag), ci_low, ci_high.
    """
    return _frame(_index(successes, n), **wilson_share_columns(successes, n, confidence))


def effective_sample_size(sum_w: ArrayLike, sum_w2: ArrayLike) -> np.ndarray:
    """Kish's effective sample size (sum w)^2 / sum w^2; NaN for a group without weight."""
    total, squares = np.broadcast_arrays(_array(sum_w), _array(sum_w2))
    return _divide(total * total, squares)


def weighted_share_columns(
    sum_w: ArrayLike,
    sum_w2: ArrayLike,
    sum_wy: ArrayLike,
    n: ArrayLike | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, np.ndarray]:
    """weighted_share's columns as numpy arrays (no index, no DataFrame: the cheap form for a
    request that formats them itself)."""
    z = z_value(confidence)
    total, squares, weighted_hits = np.broadcast_arrays(_array(sum_w), _array(sum_w2), _array(sum_wy))
    n_eff = effective_sample_size(total, squares)
    p = _divide(weighted_hits, total)
    low, high = _wilson(p, n_eff, z)
    se = np.sqrt(_divide(p * (1 - p), n_eff))
    people = np.broadcast_to(_array(n), total.shape).astype(float) if n is not None else n_eff
    return dict(n=people, n_eff=n_eff, estimate=p, se=se, ci_low=low, ci_high=high)


def weighted_share(
    sum_w: ArrayLike,
    sum_w2: ArrayLike,
    sum_wy: ArrayLike,
    n: ArrayLike | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> pd.DataFrame:
    """Census-weighted share sum(w*y)/sum(w) of a 0/1 outcome y, with a Wilson interval on
    Kish's effective sample size (an approximation: ignores strata and clusters).

    Columns: n (people, if given), n_eff, estimate, se (sqrt(p(1-p)/n_eff)), ci_low, ci_high.
    """
    return _frame(_index(sum_w, sum_w2, sum_wy, n), **weighted_share_columns(sum_w, sum_w2, sum_wy, n, confidence))


# --------------------------------------------------------------------------- means


def _t_interval(mean: np.ndarray, se: np.ndarray, df: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    usable = df > 0
    quantile = np.full(mean.shape, np.nan)
    # stdtrit is what t.ppf computes, without the distribution machinery's overhead per call.
    quantile[usable] = _scipy_special.stdtrit(df[usable], 0.5 + confidence / 2)
    return mean - quantile * se, mean + quantile * se


def mean_interval_columns(
    n: ArrayLike, sum_y: ArrayLike, sum_y2: ArrayLike, confidence: float = DEFAULT_CONFIDENCE
) -> dict[str, np.ndarray]:
    """mean_interval's columns as numpy arrays (no index, no DataFrame: the cheap form for a
    request that formats them itself)."""
    _check_confidence(confidence)
    size, total, squares = np.broadcast_arrays(_array(n), _array(sum_y), _array(sum_y2))
    mean = _divide(total, size)
    # sum (y - mean)^2 from the sums; clipped at 0 against rounding when every y is equal.
    deviations = np.clip(squares - mean * total, 0, None)
    variance = _divide(deviations, size - 1)
    variance[~(size > 1)] = np.nan
    se = np.sqrt(_divide(variance, size))
    low, high = _t_interval(mean, se, size - 1, confidence)
    return dict(n=size, estimate=mean, se=se, ci_low=low, ci_high=high)


def mean_interval(
    n: ArrayLike, sum_y: ArrayLike, sum_y2: ArrayLike, confidence: float = DEFAULT_CONFIDENCE
) -> pd.DataFrame:
    """Mean of y, its standard error s/sqrt(n) and a t interval (n - 1 degrees of freedom).

    A group of one has a mean but no standard error or interval (NaN); an empty group has neither.
    """
    return _frame(_index(n, sum_y, sum_y2), **mean_interval_columns(n, sum_y, sum_y2, confidence))


def weighted_mean_interval_columns(
    sum_w: ArrayLike,
    sum_w2: ArrayLike,
    sum_wy: ArrayLike,
    sum_wy2: ArrayLike,
    n: ArrayLike | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, np.ndarray]:
    """weighted_mean_interval's columns as numpy arrays (no index, no DataFrame: the cheap form for a
    request that formats them itself)."""
    _check_confidence(confidence)
    total, squares, wy, wy2 = np.broadcast_arrays(_array(sum_w), _array(sum_w2), _array(sum_wy), _array(sum_wy2))
    n_eff = effective_sample_size(total, squares)
    mean = _divide(wy, total)
    deviations = np.clip(wy2 - mean * wy, 0, None)
    population_variance = _divide(deviations, total)
    variance_of_mean = _divide(population_variance, n_eff - 1)
    # One person (n_eff == 1) or none: no standard error.
    variance_of_mean[~(n_eff > 1 + 1e-9)] = np.nan
    se = np.sqrt(variance_of_mean)
    low, high = _t_interval(mean, se, n_eff - 1, confidence)
    people = np.broadcast_to(_array(n), total.shape).astype(float) if n is not None else n_eff
    return dict(n=people, n_eff=n_eff, estimate=mean, se=se, ci_low=low, ci_high=high)


def weighted_mean_interval(
    sum_w: ArrayLike,
    sum_w2: ArrayLike,
    sum_wy: ArrayLike,
    sum_wy2: ArrayLike,
    n: ArrayLike | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> pd.DataFrame:
    """Weighted mean sum(w*y)/sum(w) with the standard error and t interval of the
    unweighted recipe applied to weights rescaled to sum to Kish's n_eff
    (se^2 = sum w (y - mean)^2 / sum w / (n_eff - 1); df = n_eff - 1).
    Equal weights give exactly mean_interval. Approximate: ignores strata and clusters.

    Columns: n (people, if given), n_eff, estimate, se, ci_low, ci_high.
    """
    return _frame(
        _index(sum_w, sum_w2, sum_wy, sum_wy2, n),
        **weighted_mean_interval_columns(sum_w, sum_w2, sum_wy, sum_wy2, n, confidence),
    )


# --------------------------------------------------------------------------- reliability


def reliable(
    n: ArrayLike,
    estimate: ArrayLike,
    se: ArrayLike,
    min_n: float = DEFAULT_MIN_N,
    max_rse: float = DEFAULT_MAX_RSE,
) -> np.ndarray:
    """True where an estimate may be shown without a warning: at least `min_n` people and
    a relative standard error se/|estimate| of at most `max_rse` (NCHS rule; see the module
    docstring). A zero estimate has no RSE and is judged by n alone; n = 0 is never reliable."""
    if min_n < 0:
        raise ValueError(f"min_n={min_n!r} must not be negative")
    if not max_rse > 0:
        raise ValueError(f"max_rse={max_rse!r} must be positive")
    size, value, error = np.broadcast_arrays(_array(n), _array(estimate), _array(se))
    rse = _divide(error, np.abs(value))
    rse_ok = np.isnan(rse) | (rse <= max_rse)
    return (size > 0) & (size >= min_n) & ~np.isnan(value) & rse_ok


def with_reliability(
    frame: pd.DataFrame, min_n: float = DEFAULT_MIN_N, max_rse: float = DEFAULT_MAX_RSE
) -> pd.DataFrame:
    """The frame of any function above plus `rse` and `reliable` columns (n is the people
    count; for weighted estimates the RSE already reflects n_eff)."""
    out = frame.copy()
    out["rse"] = _divide(out["se"].to_numpy(float), np.abs(out["estimate"].to_numpy(float)))
    out["reliable"] = reliable(out["n"], out["estimate"], out["se"], min_n, max_rse)
    return out


# --------------------------------------------------------------------------- comparisons


def two_proportion_test(
    successes1: ArrayLike,
    n1: ArrayLike,
    successes2: ArrayLike,
    n2: ArrayLike,
    confidence: float = DEFAULT_CONFIDENCE,
) -> pd.DataFrame:
    """Difference of two unweighted shares p1 - p2: Newcombe's hybrid score interval and the
    two-sided pooled z-test p-value. NaN where either group is empty.

    Columns: n1, p1, n2, p2, difference, ci_low, ci_high, z, p_value.
    """
    z_crit = z_value(confidence)
    index = _index(successes1, n1, successes2, n2)
    k1, size1, k2, size2 = np.broadcast_arrays(_array(successes1), _array(n1), _array(successes2), _array(n2))
    p1, p2 = _divide(k1, size1), _divide(k2, size2)
    low1, high1 = _wilson(p1, size1, z_crit)
    low2, high2 = _wilson(p2, size2, z_crit)
    difference = p1 - p2
    ci_low = difference - np.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2)
    ci_high = difference + np.sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2)
    pooled = _divide(k1 + k2, size1 + size2)
    with np.errstate(invalid="ignore", divide="ignore"):
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / size1 + 1 / size2))
    z = _divide(difference, se0)
    # Identical all-0 or all-1 groups: no evidence of a difference.
    z[(se0 == 0) & (difference == 0)] = 0.0
    p_value = 2 * _scipy_stats.norm.sf(np.abs(z))
    return _frame(
        index, n1=size1, p1=p1, n2=size2, p2=p2, difference=difference, ci_low=ci_low, ci_high=ci_high,
        z=z, p_value=p_value,
    )  # fmt: skip


def adjust_pvalues(p_values: ArrayLike | Sequence[float], method: str = "holm") -> np.ndarray:
    """Adjusted p-values for a family of tests: "holm" (Holm 1979, family-wise error rate) or
    "bh" (Benjamini-Hochberg 1995, false discovery rate). Compare each with the level alpha.
    NaN p-values are left out of the family and stay NaN."""
    if method not in ("holm", "bh"):
        raise ValueError(f"method={method!r} is not supported: use 'holm' or 'bh'")
    raw = _array(p_values)
    out = np.full(raw.shape, np.nan)
    present = ~np.isnan(raw)
    p = raw[present]
    m = len(p)
    if m == 0:
        return out
    if method == "holm":
        order = np.argsort(p, kind="stable")
        stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    else:
        order = np.argsort(p, kind="stable")[::-1]
        stepped = np.minimum.accumulate(m / np.arange(m, 0, -1) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.clip(stepped, 0, 1)
    out[present] = adjusted
    return out
