"""How /stats says how far to trust each number: the fields, their names and the method.

Generated from the contract: every measure that declares an uncertainty
(`warehouse.contract.Measure.uncertainty`) gets, next to its value, its standard error,
interval and reliability flag, and the same four for its census-weighted estimate;
exact totals (people, population) get none. The numbers come from
`warehouse.estimates` (the function the explorer and the notebook use too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final

from msgspec import UNSET, UnsetType

from warehouse.contract import MEASURE_DEFS, MEASURES_DECLARED
from warehouse.estimates import Columns, column
from warehouse.stats import CONFIDENCE_LEVELS

PARTS: Final = ("se", "ci_low", "ci_high")
MAX_MIN_N: Final = 1_000_000_000


class SmallGroups(StrEnum):
    """What /stats does with groups of fewer than `min_n` people."""

    flag = "flag"
    hide = "hide"


def field_name(measure: str, part: str = "", weighted: bool = False) -> str:
    """'share_over_50k', 'ci_low', True -> 'share_over_50k_weighted_ci_low'."""
    return "_".join(p for p in (measure, "weighted" if weighted else "", part) if p)


def interval_fields() -> list[tuple[str, Any, Any]]:
    """The Group struct's fields beyond keys and values (all optional: /stats?intervals=false omits them)."""
    number = float | None | UnsetType
    flag = bool | UnsetType
    fields: list[tuple[str, Any, Any]] = [
        ("n", int | UnsetType, UNSET),
        ("reliable", flag, UNSET),
        ("reliable_weighted", flag, UNSET),
    ]
    for measure in MEASURES_DECLARED:
        if measure.uncertainty is None:
            continue
        for weighted in (False, True):
            if weighted:
                fields.append((field_name(measure.name, weighted=True), number, UNSET))
            fields.extend((field_name(measure.name, part, weighted), number, UNSET) for part in PARTS)
            fields.append((field_name(measure.name, "reliable", weighted), flag, UNSET))
    return fields


def _column(columns: Columns, name: str) -> list[Any]:
    """A column as JSON-ready Python values (NaN is null; tolist converts numpy scalars)."""
    values = columns[name]
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def groups(
    sample: Columns, weighted: Columns | None, group_by: Sequence[str], measures: Sequence[str]
) -> list[dict[str, Any]]:
    """One dict per group from warehouse.estimates.sample_and_weighted's sets of columns
    (same groups, same order; `weighted` None: no census-weighted fields), built column by column."""
    fields: dict[str, list[Any]] = {name: _column(sample, name) for name in (*group_by, "n")}
    fields["reliable"] = _column(sample, "reliable")
    variants: list[tuple[bool, Columns]] = [(False, sample)]
    if weighted is not None:
        fields["reliable_weighted"] = _column(weighted, "reliable")
        variants.append((True, weighted))
    for name in measures:
        fields[name] = _column(sample, name)
        if MEASURE_DEFS[name].uncertainty is None:
            continue
        for is_weighted, table in variants:
            if is_weighted:
                fields[field_name(name, weighted=True)] = _column(table, name)
            for part in (*PARTS, "reliable"):
                fields[field_name(name, part, is_weighted)] = _column(table, column(name, part))
    return [dict(zip(fields, values, strict=True)) for values in zip(*fields.values(), strict=True)]


# The measures with the method of their interval, from the contract.
MEASURES_TEXT: Final = (
    "Measures: "
    + "; ".join(
        f"`{m.name}`: {m.title} ({m.uncertainty.method if m.uncertainty else 'an exact total: no interval'})"
        for m in MEASURES_DECLARED
    )
    + "."
)
LEVELS: Final = ", ".join(f"{level:.2f}" for level in CONFIDENCE_LEVELS)
METHOD: Final = (
    "**How far to trust each number.** Unless `intervals=false`, every group carries `n` (people in the "
    "sample) and, for each share and mean, its standard error (`<measure>_se`), its interval "
    "(`<measure>_ci_low`, `<measure>_ci_high`) and a reliability flag (`<measure>_reliable`), plus the "
    "census-weighted estimate (weights: `fnlwgt`) with the same four (`<measure>_weighted`, "
    "`<measure>_weighted_se`, `..._weighted_ci_low`, `..._weighted_ci_high`, `..._weighted_reliable`); "
    "`reliable` / `reliable_weighted` hold when every measure of the group is reliable "
    "(`weighted=false` leaves the census-weighted fields out: fewer sums for the database). Counts "
    "(`people`) and the population represented are exact totals of the extract: no interval.\n\n"
    "Methods: a share has a **Wilson score interval** (it stays inside [0, 1] and keeps its coverage for "
    "small groups and shares near 0 or 1); its census-weighted version is the fnlwgt-weighted share "
    "with a Wilson interval on **Kish's effective sample size** n_eff = (Σw)² / Σw², an approximation "
    "that accounts for unequal weights only and ignores the survey's strata and clusters, which the file "
    "does not carry (so the weighted intervals are, if anything, too narrow). A mean has a **Student-t "
    "interval** (mean ± t·s/√n, n − 1 degrees of freedom); weighted: the same with n_eff. A group of one "
    "has no mean interval; a group of nobody no estimate (all null).\n\n"
    "Reliability follows the **NCHS presentation standard**: an estimate is unreliable when fewer than "
    "`min_n` people stand behind it (default 30, RELIABILITY_MIN_N) or its relative standard error "
    "se / estimate is above 30% (RELIABILITY_MAX_RSE); the American Community Survey likewise flags "
    f"estimates with a high coefficient of variation. Confidence levels: {LEVELS}."
)
