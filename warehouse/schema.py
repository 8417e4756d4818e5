"""Create the warehouse schema (tables, indexes, view) idempotently.

python -m warehouse.schema                 # data/census.db (SQLite file)
python -m warehouse.schema --db postgres   # DATABASE_URL or POSTGRES_URL
python -m warehouse.schema --url URL
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import Connection, Engine, inspect, select

from warehouse.config import get_settings, resolve_database_url
from warehouse.db import DatabaseUnavailable, describe, make_engine, wait_for_database
from warehouse.domain import CATEGORIES, EDUCATION_LEVELS
from warehouse.models import DIMENSIONS, Base, Education, Load


def seed_dimensions(connection: Connection) -> None:
    """Insert the known categories that are not there yet; ids follow the UCI order."""
    for column, (model, _) in DIMENSIONS.items():
        table = model.__table__
        existing = set(connection.scalars(select(table.c.label)))
        start = (connection.scalar(select(table.c.id).order_by(table.c.id.desc()).limit(1)) or 0) + 1
        missing = [label for label in CATEGORIES[column] if label not in existing]
        if not missing:
            continue
        rows = [{"id": start + offset, "label": label} for offset, label in enumerate(missing)]
        if model is Education:
            for row in rows:
                row["education_num"] = EDUCATION_LEVELS[row["label"]]
        connection.execute(table.insert(), rows)


def create_schema(engine: Engine) -> None:
    """Create whatever is missing and seed the dimensions; safe to run again."""
    with engine.begin() as connection:
        create_schema_on(connection)


def create_schema_on(connection: Connection) -> None:
    """create_schema inside the caller's transaction (the loader's, under its lock)."""
    Base.metadata.create_all(connection, checkfirst=True)
    add_missing_columns(connection)
    drop_retired_indexes(connection)
    seed_dimensions(connection)


# Indexes databases were built with that the models no longer declare (see Person).
RETIRED_INDEXES = ("ix_person_income_bracket_id",)


def drop_retired_indexes(connection: Connection) -> None:
    """An index dropped from the models stays in older databases, where every
    upload would still maintain it: drop it once."""
    existing = {index["name"] for index in inspect(connection).get_indexes("person")}
    for name in RETIRED_INDEXES:
        if name in existing:
            connection.exec_driver_sql(f"DROP INDEX {name}")


def add_missing_columns(connection: Connection) -> None:
    """Columns added to a table after databases were built with it: create_all
    makes missing tables only. Each is nullable, so old rows stay valid."""
    existing = {column["name"] for column in inspect(connection).get_columns(Load.__tablename__)}
    if "rows_digest" not in existing:
        connection.exec_driver_sql(f'ALTER TABLE "{Load.__tablename__}" ADD COLUMN rows_digest VARCHAR(64)')


def schema_exists(engine: Engine) -> bool:
    names = set(inspect(engine).get_table_names())
    return {"person", "load"} <= names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse.schema", description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), help="which database (default: DATABASE_URL or SQLite)")
    parser.add_argument("--url", help="a SQLAlchemy database URL; overrides --db")
    args = parser.parse_args(argv)
    url = resolve_database_url(args.db, args.url)
    try:
        engine = make_engine(url)
        wait_for_database(engine, get_settings().connect_timeout_s)
        create_schema(engine)
    except DatabaseUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"schema ready in {describe(url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
