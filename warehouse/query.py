"""The one query layer's public face: every part of the platform (explorer, API,
notebook, exports) asks its questions through these names, so a filter means the
same thing everywhere. The code lives in one module per concern:

- `warehouse.contract`: attributes, measures and groupings, declared once;
- `warehouse.filters`: `PeopleFilter`, its SQL conditions and query-string form;
- `warehouse.people`: pages of people (always SQL, the system of record);
- `warehouse.aggregates`: counts and grouped aggregates (run by `warehouse.analytics`,
  the DuckDB copy, when it holds the current data);
- `warehouse.estimates`: estimates per group with their intervals and reliability flag;
- `warehouse.tables`: browsing any table with titles.
"""

from __future__ import annotations

from warehouse.aggregates import (
    aggregate_people,
    aggregate_statement,
    count_people,
    dimension_counts,
    dimension_counts_many,
    facet_counts,
    range_bounds,
    validate_aggregate,
    validate_value_counts,
    value_counts,
)
from warehouse.contract import (
    AGE_BAND,
    AGE_BANDS,
    CATEGORY_COLUMNS,
    GROUP_COLUMNS,
    GROUPABLE_NUMBERS,
    MEASURES,
    RANGE_COLUMNS,
    RANGE_PARAMS,
    UNKNOWN,
    UNKNOWN_PARAM,
    column_title,
)
from warehouse.estimates import estimate_groups
from warehouse.filters import PeopleFilter, QueryError, combine
from warehouse.people import PEOPLE_COLUMNS, fetch_people, get_person, iter_people, select_people
from warehouse.tables import TABLE_TITLES, browse_table, count_table, list_tables, table_columns

__all__ = [
    "AGE_BAND",
    "AGE_BANDS",
    "CATEGORY_COLUMNS",
    "GROUPABLE_NUMBERS",
    "GROUP_COLUMNS",
    "MEASURES",
    "PEOPLE_COLUMNS",
    "RANGE_COLUMNS",
    "RANGE_PARAMS",
    "TABLE_TITLES",
    "UNKNOWN",
    "UNKNOWN_PARAM",
    "PeopleFilter",
    "QueryError",
    "aggregate_people",
    "aggregate_statement",
    "browse_table",
    "column_title",
    "combine",
    "count_people",
    "count_table",
    "dimension_counts",
    "dimension_counts_many",
    "estimate_groups",
    "facet_counts",
    "fetch_people",
    "get_person",
    "iter_people",
    "list_tables",
    "range_bounds",
    "select_people",
    "table_columns",
    "validate_aggregate",
    "validate_value_counts",
    "value_counts",
]
