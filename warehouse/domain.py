"""The data's rules, stated once: known categories and allowed ranges.

The schema turns these into seeded dimension rows and CHECK constraints; the
loader's cleaner checks every input value against the same constants, so the
database and the cleaner can never disagree about what is valid.
"""

from __future__ import annotations

from typing import Final

# Categories as listed in the UCI `adult.names` description, in that order.
WORKCLASSES: Final = (
    "Private",
    "Self-emp-not-inc",
    "Self-emp-inc",
    "Federal-gov",
    "Local-gov",
    "State-gov",
    "Without-pay",
    "Never-worked",
)
# education label -> education_num: the years-of-schooling code depends on the label alone.
EDUCATION_LEVELS: Final[dict[str, int]] = {
    "Preschool": 1,
    "1st-4th": 2,
    "5th-6th": 3,
    "7th-8th": 4,
    "9th": 5,
    "10th": 6,
    "11th": 7,
    "12th": 8,
    "HS-grad": 9,
    "Some-college": 10,
    "Assoc-voc": 11,
    "Assoc-acdm": 12,
    "Bachelors": 13,
    "Masters": 14,
    "Prof-school": 15,
    "Doctorate": 16,
}
MARITAL_STATUSES: Final = (
    "Married-civ-spouse",
    "Divorced",
    "Never-married",
    "Separated",
    "Widowed",
    "Married-spouse-absent",
    "Married-AF-spouse",
)
OCCUPATIONS: Final = (
    "Tech-support",
    "Craft-repair",
    "Other-service",
    "Sales",
    "Exec-managerial",
    "Prof-specialty",
    "Handlers-cleaners",
    "Machine-op-inspct",
    "Adm-clerical",
    "Farming-fishing",
    "Transport-moving",
    "Priv-house-serv",
    "Protective-serv",
    "Armed-Forces",
)
RELATIONSHIPS: Final = ("Wife", "Own-child", "Husband", "Not-in-family", "Other-relative", "Unmarried")
RACES: Final = ("White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black")
GENDERS: Final = ("Female", "Male")
NATIVE_COUNTRIES: Final = (
    "United-States",
    "Cambodia",
    "England",
    "Puerto-Rico",
    "Canada",
    "Germany",
    "Outlying-US(Guam-USVI-etc)",
    "India",
    "Japan",
    "Greece",
    "South",
    "China",
    "Cuba",
    "Iran",
    "Honduras",
    "Philippines",
    "Italy",
    "Poland",
    "Jamaica",
    "Vietnam",
    "Mexico",
    "Portugal",
    "Ireland",
    "France",
    "Dominican-Republic",
    "Laos",
    "Ecuador",
    "Taiwan",
    "Haiti",
    "Columbia",
    "Hungary",
    "Guatemala",
    "Nicaragua",
    "Scotland",
    "Thailand",
    "Yugoslavia",
    "El-Salvador",
    "Trinadad&Tobago",
    "Peru",
    "Hong",
    "Holand-Netherlands",
)
INCOME_BRACKETS: Final = ("<=50K", ">50K")
HIGH_INCOME: Final = ">50K"

# people-view column -> its categories (education's are the keys of EDUCATION_LEVELS).
CATEGORIES: Final[dict[str, tuple[str, ...]]] = {
    "workclass": WORKCLASSES,
    "education": tuple(EDUCATION_LEVELS),
    "marital_status": MARITAL_STATUSES,
    "occupation": OCCUPATIONS,
    "relationship": RELATIONSHIPS,
    "race": RACES,
    "gender": GENDERS,
    "native_country": NATIVE_COUNTRIES,
    "income": INCOME_BRACKETS,
}

# Inclusive ranges. Ages are 17..90 in the source (90 is top-coded); the bounds
# leave room for other census extracts while still catching typos and unit errors.
RANGES: Final[dict[str, tuple[int, int]]] = {
    "age": (16, 100),
    "fnlwgt": (1, 10_000_000),
    "education_num": (1, 16),
    "capital_gain": (0, 99_999),  # 99,999 is the census top code
    "capital_loss": (0, 99_999),
    "hours_per_week": (1, 99),  # 99 is the top code
}

# The input's columns, in the order of Input_Dataset.csv and the UCI files.
INPUT_COLUMNS: Final = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "gender",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
)
NUMERIC_COLUMNS: Final = ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week")
CATEGORICAL_COLUMNS: Final = tuple(CATEGORIES)
# Columns that may be missing in the source ('?'); every other column is required.
NULLABLE_COLUMNS: Final = frozenset({"workclass", "occupation", "native_country"})
# Titles and descriptions of the columns: warehouse.contract (the census contract).
