"""The census contract, declared once: every attribute, measure and grouping.

Everything that names an attribute or a measure reads it from here: the query
layer (filters, aggregates), the API (query parameters, their OpenAPI bounds,
enums and descriptions, the response types), the explorer (the filter panel's
widgets, the measure list, the page URL), column titles and export headers.
Adding an attribute or a measure is one declaration below (and its tests).

The *values* an attribute may take (categories, CHECK ranges) stay in
`warehouse.domain`, which the schema and the loader's cleaner also read; this
module adds what the consumers need on top: titles, a data dictionary, the
query-string name, the widget step, the measure's SQL.

Measures are computed in two steps so that the analytical engine only ever sums:
1. SQL aggregates *sufficient statistics* per group (`STATISTICS`: counts and
   sums, all additive, so any engine and any grouping computes them the same way);
2. a Python `finish` turns one group's statistics into the measure's value.
A mean is `sum / n`; a share `count_true / n`.

Each measure also declares how far to trust it (`Measure.uncertainty`): the extra
statistics its interval needs (sums of squares, of weights, of squared weights,
weighted sums) and the `warehouse.stats` function that turns them into an estimate,
a standard error and an interval, unweighted and census-weighted (`fnlwgt`).
Shares get a Wilson score interval (weighted: on Kish's effective sample size),
means a Student-t interval; counts and the population have none. The extra
statistics are only asked of the database when intervals are (`statistics_for`),
so a plain query costs what it always did; `warehouse.estimates` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, Double, case, cast, func, select

from warehouse import stats as _stats
from warehouse.domain import CATEGORIES, HIGH_INCOME, NULLABLE_COLUMNS, RANGES
from warehouse.models import DIMENSIONS, IncomeBracket, Person

PERSON = Person.__table__
UNKNOWN: Final = None  # in a category filter, selects people whose value is missing
UNKNOWN_PARAM: Final = "unknown"  # how UNKNOWN is spelled in URLs and query strings
UNKNOWN_LABEL: Final = "Unknown"  # how UNKNOWN is shown to people


# --------------------------------------------------------------------------- attributes


@dataclass(frozen=True)
class Attribute:
    """One column of the `people` view."""

    name: str  # the people view's column
    title: str  # headers, axis labels, widget labels
    description: str  # the data dictionary: meaning, unit, source
    kind: Literal["range", "category", "key"]
    # range attributes: query-string stem (`<param>_min` / `<param>_max`) and widget step
    param: str | None = None
    step: int = 1
    groupable: bool = False  # may be grouped by value (few distinct values)

    @property
    def bounds(self) -> tuple[int, int]:
        return RANGES[self.name]

    @property
    def categories(self) -> tuple[str, ...]:
        return CATEGORIES[self.name]

    @property
    def nullable(self) -> bool:
        return self.name in NULLABLE_COLUMNS

    @property
    def python_type(self) -> type:
        return str if self.kind == "category" else int


def _range(name: str, title: str, description: str, param: str | None = None, **extra: Any) -> Attribute:
    return Attribute(name, title, description, "range", param=param or name, **extra)


def _category(name: str, title: str, description: str) -> Attribute:
    return Attribute(name, title, description, "category")


_UCI = "Source: UCI Adult, extracted from the 1994 US Census database by Barry Becker."

# In the order of the `people` view (warehouse.models); a test checks they agree.
ATTRIBUTES: Final[dict[str, Attribute]] = {
    a.name: a
    for a in (
        Attribute("id", "Person id", "The warehouse's surrogate key of a person (not in the source).", "key"),
        _range("age", "Age", f"Age in whole years; 90 is top-coded (90 or older). {_UCI}", groupable=True),
        _category("workclass", "Work class", f"Kind of employer (private, self-employed, government, ...). {_UCI}"),
        _range(
            "fnlwgt",
            "Census weight (fnlwgt)",
            "Final sampling weight: the number of people in the US population this row stands for, "
            f"as estimated by the Census Bureau from age, sex, race and Hispanic origin. {_UCI}",
            step=1000,
        ),
        _category("education", "Education", f"Highest education level reached. {_UCI}"),
        _range(
            "education_num",
            "Education years",
            "Ordinal code of `education` (1 = Preschool ... 16 = Doctorate); it follows the education level "
            f"exactly, so filtering by it selects education levels. {_UCI}",
            groupable=True,
        ),
        _category("marital_status", "Marital status", f"Marital status. {_UCI}"),
        _category("occupation", "Occupation", f"Occupation group. {_UCI}"),
        _category("relationship", "Relationship", f"Relationship to the head of household. {_UCI}"),
        _category("race", "Race", f"Race as recorded by the census. {_UCI}"),
        _category("gender", "Gender", f"Sex as recorded by the census (`sex` in the UCI files). {_UCI}"),
        _range(
            "capital_gain",
            "Capital gain",
            f"Capital gains in the year, in US dollars; 99,999 is the top code. {_UCI}",
            step=100,
        ),
        _range(
            "capital_loss",
            "Capital loss",
            f"Capital losses in the year, in US dollars. {_UCI}",
            step=100,
        ),
        _range(
            "hours_per_week",
            "Hours per week",
            f"Usual hours worked per week; 99 is the top code. {_UCI}",
            param="hours",
            groupable=True,
        ),
        _category("native_country", "Native country", f"Country of birth. {_UCI}"),
        _category(
            "income", "Income", f"Whether yearly income is above 50,000 US dollars (the prediction target). {_UCI}"
        ),
    )
}
# The order filters are offered in (the explorer's panel) and described in (titles,
# file names): the most asked-for first. Attributes not listed follow in declaration order.
FILTER_ORDER: Final = (
    "age",
    "hours_per_week",
    "education_num",
    "capital_gain",
    "capital_loss",
    "fnlwgt",
    "gender",
    "race",
    "marital_status",
    "education",
    "workclass",
    "occupation",
    "relationship",
    "native_country",
    "income",
)


def in_filter_order(names: tuple[str, ...]) -> tuple[str, ...]:
    listed = [name for name in FILTER_ORDER if name in names]
    return (*listed, *(name for name in names if name not in FILTER_ORDER))


RANGE_ATTRIBUTES: Final = tuple(
    ATTRIBUTES[name] for name in in_filter_order(tuple(a.name for a in ATTRIBUTES.values() if a.kind == "range"))
)
CATEGORY_ATTRIBUTES: Final = tuple(a for a in ATTRIBUTES.values() if a.kind == "category")
RANGE_COLUMNS: Final = tuple(a.name for a in RANGE_ATTRIBUTES)
CATEGORY_COLUMNS: Final = tuple(a.name for a in CATEGORY_ATTRIBUTES)
CATEGORY_FILTER_COLUMNS: Final = in_filter_order(CATEGORY_COLUMNS)  # filters' order: the API's, the panel's
# Query-string stems of the range bounds: the API and the explorer's URL share them.
RANGE_PARAMS: Final[dict[str, str]] = {a.name: a.param for a in RANGE_ATTRIBUTES if a.param}
# Every scalar (one value) filter parameter, with the range attribute it bounds.
RANGE_QUERY_PARAMS: Final[dict[str, tuple[str, Literal["min", "max"]]]] = {
    f"{a.param}_{end}": (a.name, end) for a in RANGE_ATTRIBUTES for end in ("min", "max")
}
FILTER_PARAMS: Final[frozenset[str]] = frozenset({*RANGE_QUERY_PARAMS, *CATEGORY_COLUMNS})


def column_title(name: str) -> str:
    """'hours_per_week' -> 'Hours per week' (declared titles first)."""
    attribute = ATTRIBUTES.get(name)
    return attribute.title if attribute else name.replace("_", " ").capitalize()


# --------------------------------------------------------------------------- groupings


@dataclass(frozen=True)
class Grouping:
    """Something /stats and the charts may group by."""

    name: str
    title: str
    python_type: type
    nullable: bool


AGE_BANDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("17-24", 0, 24),
    ("25-34", 25, 34),
    ("35-44", 35, 44),
    ("45-54", 45, 54),
    ("55-64", 55, 64),
    ("65+", 65, 1000),
)
AGE_BAND: Final = "age_band"
GROUPINGS: Final[dict[str, Grouping]] = {
    g.name: g
    for g in (
        *(Grouping(a.name, a.title, str, True) for a in CATEGORY_ATTRIBUTES),
        Grouping(AGE_BAND, "Age band", str, False),
        *(Grouping(a.name, a.title, int, False) for a in RANGE_ATTRIBUTES if a.groupable),
    )
}
GROUP_COLUMNS: Final = tuple(GROUPINGS)
GROUPABLE_NUMBERS: Final = tuple(a.name for a in RANGE_ATTRIBUTES if a.groupable)


# --------------------------------------------------------------------------- measures


def _high_income(value: Any = 1) -> ColumnElement[Any]:
    """`value` for people earning >50K, else 0 (1: counts them; fnlwgt: weighs them)."""
    bracket = IncomeBracket.__table__
    high = select(bracket.c.id).where(bracket.c.label == HIGH_INCOME).scalar_subquery()
    return case((PERSON.c.income_bracket_id == high, value), else_=0)


def _double(expression: Any) -> ColumnElement[float]:
    """As a double: products of weights and squares overflow integers (one person's
    fnlwgt * capital_gain^2 reaches 1e16, a few hundred of them pass 64 bits: SQLite raises
    "integer overflow", PostgreSQL "integer out of range" on the INTEGER product, DuckDB an
    overflow error), and a double's 53-bit mantissa is ample for a standard error."""
    return cast(expression, Double)


def _weight() -> ColumnElement[float]:
    return _double(PERSON.c.fnlwgt)


# The numeric attributes with a mean measure: statistic stem -> column.
MEAN_VARIABLES: Final = {"age": "age", "hours": "hours_per_week", "capital_gain": "capital_gain"}


def _variable(stem: str) -> ColumnElement[float]:
    return _double(PERSON.c[MEAN_VARIABLES[stem]])


def _interval_statistics() -> dict[str, Callable[[], ColumnElement[Any]]]:
    """What the intervals need on top of the plain sums: for every mean variable y, sum(y^2),
    sum(w*y) and sum(w*y^2); for the share, sum(w*[>50K]); and sum(w^2) (Kish's n_eff)."""
    declared: dict[str, Callable[[], ColumnElement[Any]]] = {
        "sum_w2": lambda: func.sum(_weight() * _weight()),
        "sum_w_over_50k": lambda: func.sum(_double(_high_income(PERSON.c.fnlwgt))),
    }
    for stem in MEAN_VARIABLES:
        declared[f"sum_{stem}2"] = lambda stem=stem: func.sum(_variable(stem) * _variable(stem))  # type: ignore[misc]
        declared[f"sum_w_{stem}"] = lambda stem=stem: func.sum(_weight() * _variable(stem))  # type: ignore[misc]
        declared[f"sum_w_{stem}2"] = lambda stem=stem: func.sum(  # type: ignore[misc]
            _weight() * _variable(stem) * _variable(stem)
        )
    return declared


# Sufficient statistics: additive SQL aggregates over `person`, one row per group.
# Name -> a function building the expression (fresh each time: SQLAlchemy
# expressions carry their own bound parameters).
STATISTICS: Final[dict[str, Callable[[], ColumnElement[Any]]]] = {
    "n": lambda: func.count(),
    "n_over_50k": lambda: func.sum(_high_income()),
    "sum_fnlwgt": lambda: func.sum(PERSON.c.fnlwgt),
    "sum_age": lambda: func.sum(PERSON.c.age),
    "sum_hours": lambda: func.sum(PERSON.c.hours_per_week),
    "sum_capital_gain": lambda: func.sum(PERSON.c.capital_gain),
    **_interval_statistics(),
}

Value = int | float | None


def _ratio(numerator: str) -> Callable[[Mapping[str, Any]], Value]:
    """numerator / n, None for an empty group (SQL's AVG of no rows)."""

    def finish(stats: Mapping[str, Any]) -> Value:
        n = stats["n"]
        return float(stats[numerator]) / n if n and stats[numerator] is not None else None

    return finish


def _total(name: str) -> Callable[[Mapping[str, Any]], Value]:
    """A sum as a whole number, None for an empty group (SQL's SUM of no rows)."""

    def finish(stats: Mapping[str, Any]) -> Value:
        return int(stats[name]) if stats["n"] and stats[name] is not None else None

    return finish


Statistics = Mapping[str, Any]  # statistic name -> its per-group column (numpy array or Series)
# (statistics, confidence) -> columns estimate, se, ci_low, ci_high (numpy arrays, one value per group)
Interval = Callable[[Statistics, float], Mapping[str, Any]]


@dataclass(frozen=True)
class Uncertainty:
    """How far to trust a measure: the statistics and `warehouse.stats` function of its
    sample interval, and of its census-weighted estimate and interval."""

    method: str  # in words, for the API's documentation
    statistics: tuple[str, ...]
    interval: Interval
    weighted_statistics: tuple[str, ...]
    weighted_interval: Interval


def _share_uncertainty(successes: str, weighted_successes: str) -> Uncertainty:
    return Uncertainty(
        "Wilson score interval; census-weighted: the fnlwgt-weighted share with a Wilson interval "
        "on Kish's effective sample size",
        ("n", successes),
        lambda s, confidence: _stats.wilson_share_columns(s[successes], s["n"], confidence),
        ("n", "sum_fnlwgt", "sum_w2", weighted_successes),
        lambda s, confidence: _stats.weighted_share_columns(
            s["sum_fnlwgt"], s["sum_w2"], s[weighted_successes], s["n"], confidence
        ),
    )


def _mean_uncertainty(stem: str) -> Uncertainty:
    total, squares, weighted, weighted_squares = f"sum_{stem}", f"sum_{stem}2", f"sum_w_{stem}", f"sum_w_{stem}2"
    return Uncertainty(
        "Student-t interval (mean ± t·s/√n); census-weighted: the fnlwgt-weighted mean, its "
        "standard error with Kish's effective sample size",
        ("n", total, squares),
        lambda s, confidence: _stats.mean_interval_columns(s["n"], s[total], s[squares], confidence),
        ("n", "sum_fnlwgt", "sum_w2", weighted, weighted_squares),
        lambda s, confidence: _stats.weighted_mean_interval_columns(
            s["sum_fnlwgt"], s["sum_w2"], s[weighted], s[weighted_squares], s["n"], confidence
        ),
    )


@dataclass(frozen=True)
class Measure:
    """A number per group: the statistics it needs and how they make its value."""

    name: str
    title: str
    description: str
    statistics: tuple[str, ...]
    finish: Callable[[Mapping[str, Any]], Value]
    python_type: type  # int or float
    additive: bool  # a group's value is the sum of its parts' (counts and sums are; shares and means not)
    nullable: bool = True  # None for an empty group
    axis_title: str = ""  # chart axis, when it differs from the title
    percent: bool = False  # a share: charts show it x100
    extra: Mapping[str, Any] = field(default_factory=dict)
    # None: an exact count or sum of the extract (people, population): no interval.
    uncertainty: Uncertainty | None = None


MEASURES_DECLARED: Final[tuple[Measure, ...]] = (
    Measure(
        "people",
        "Number of people",
        "How many rows (people in the extract) are in the group.",
        ("n",),
        lambda stats: int(stats["n"]),
        int,
        additive=True,
        nullable=False,
    ),
    Measure(
        "share_over_50k",
        "Share earning >50K",
        "Share of the group's people whose income is above 50K (0..1, unweighted).",
        ("n", "n_over_50k"),
        _ratio("n_over_50k"),
        float,
        additive=False,
        axis_title="Share earning >50K (%)",
        percent=True,
        uncertainty=_share_uncertainty("n_over_50k", "sum_w_over_50k"),
    ),
    Measure(
        "population",
        "Population represented (sum of fnlwgt)",
        "Sum of the census weights: how many people in the US population the group stands for.",
        ("n", "sum_fnlwgt"),
        _total("sum_fnlwgt"),
        int,
        additive=True,
    ),
    Measure(
        "mean_age",
        "Mean age",
        "Mean age in years.",
        ("n", "sum_age"),
        _ratio("sum_age"),
        float,
        False,
        uncertainty=_mean_uncertainty("age"),
    ),
    Measure(
        "mean_hours",
        "Mean hours per week",
        "Mean usual hours worked per week.",
        ("n", "sum_hours"),
        _ratio("sum_hours"),
        float,
        False,
        uncertainty=_mean_uncertainty("hours"),
    ),
    Measure(
        "mean_capital_gain",
        "Mean capital gain",
        "Mean capital gain in US dollars.",
        ("n", "sum_capital_gain"),
        _ratio("sum_capital_gain"),
        float,
        False,
        uncertainty=_mean_uncertainty("capital_gain"),
    ),
)
MEASURE_DEFS: Final[dict[str, Measure]] = {m.name: m for m in MEASURES_DECLARED}
# name -> title (what menus and the API list)
MEASURES: Final[dict[str, str]] = {m.name: m.title for m in MEASURES_DECLARED}


def statistics_for(
    measures: list[str] | tuple[str, ...], *, intervals: bool = False, weighted: bool = False
) -> list[str]:
    """The statistics a set of measures needs, each once, in declaration order: their
    values', plus (`intervals`) their sample intervals' and (`weighted`) their
    census-weighted estimates' and intervals'."""
    wanted = {"n"} if intervals or weighted else set()
    for name in measures:
        measure = MEASURE_DEFS[name]
        wanted.update(measure.statistics)
        if measure.uncertainty is not None:
            wanted.update(measure.uncertainty.statistics if intervals else ())
            wanted.update(measure.uncertainty.weighted_statistics if weighted else ())
    return [name for name in STATISTICS if name in wanted]


def finish(row: Mapping[str, Any], measures: list[str] | tuple[str, ...]) -> dict[str, Value]:
    """One group's measures from its statistics."""
    return {m: MEASURE_DEFS[m].finish(row) for m in measures}


def category_dimension(name: str) -> tuple[Any, str]:
    """(dimension model, foreign key on person) of a category attribute."""
    return DIMENSIONS[name]
