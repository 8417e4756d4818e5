"""The normalized, star-like schema: a `person` fact table, one dimension table per
categorical attribute, the `load` / `rejected_row` audit tables and the `people` view.

The same models run unchanged on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.ddl import CreateView

from warehouse.domain import RANGES

# Named constraints make migrations and error messages readable on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _range_check(column: str) -> CheckConstraint:
    low, high = RANGES[column]
    return CheckConstraint(f"{column} BETWEEN {low} AND {high}", name=f"{column}_range")


class Dimension(Base):
    """A categorical attribute's allowed labels. Missing values are NULL keys, not rows."""

    __abstract__ = True

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    label: Mapped[str] = mapped_column(String(64), unique=True)


class Workclass(Dimension):
    __tablename__ = "workclass"


class Education(Dimension):
    __tablename__ = "education"
    # Years of schooling depend on the education level alone (3NF: it lives here).
    education_num: Mapped[int] = mapped_column(SmallInteger, unique=True)
    __table_args__ = (_range_check("education_num"),)


class MaritalStatus(Dimension):
    __tablename__ = "marital_status"


class Occupation(Dimension):
    __tablename__ = "occupation"


class Relationship(Dimension):
    __tablename__ = "relationship"


class Race(Dimension):
    __tablename__ = "race"


class Gender(Dimension):
    __tablename__ = "gender"


class NativeCountry(Dimension):
    __tablename__ = "native_country"


class IncomeBracket(Dimension):
    __tablename__ = "income_bracket"


class Load(Base):
    """One upload: where it came from, what it held and how it ended."""

    __tablename__ = "load"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_name: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # sha256 of the rows as cleaned (see loaders.upload.RowDigest): the same data
    # re-saved with other line endings, spacing or compression has the same digest.
    rows_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_loaded: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # 'running' only ever exists inside the upload's own transaction; 'replaced'
    # marks a load whose people a later `--replace` upload swapped out.
    status: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        CheckConstraint("status IN ('running', 'loaded', 'replaced')", name="status_known"),
        CheckConstraint("rows_read = rows_loaded + rows_rejected", name="rows_add_up"),
    )


class RejectedRow(Base):
    """A row the cleaner refused, kept verbatim so nothing read is lost."""

    __tablename__ = "rejected_row"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    load_id: Mapped[int] = mapped_column(ForeignKey("load.id", ondelete="CASCADE"), index=True)
    line_number: Mapped[int] = mapped_column(Integer)
    raw_text: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)


class Person(Base):
    """The fact table: one row per census respondent.

    Indexed: the columns whose filters are selective (age, hours, education,
    occupation, country, gender with age). Low-cardinality attributes
    such as race or relationship are left to a scan: an index on them is rarely
    chosen and every index costs about 0.3 s per million rows on each upload.
    """

    __tablename__ = "person"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    load_id: Mapped[int] = mapped_column(ForeignKey("load.id"))
    age: Mapped[int] = mapped_column(SmallInteger, index=True)
    fnlwgt: Mapped[int] = mapped_column(BigInteger)
    capital_gain: Mapped[int] = mapped_column(Integer)
    capital_loss: Mapped[int] = mapped_column(Integer)
    hours_per_week: Mapped[int] = mapped_column(SmallInteger, index=True)
    workclass_id: Mapped[int | None] = mapped_column(ForeignKey("workclass.id"))
    education_id: Mapped[int] = mapped_column(ForeignKey("education.id"), index=True)
    marital_status_id: Mapped[int] = mapped_column(ForeignKey("marital_status.id"))
    occupation_id: Mapped[int | None] = mapped_column(ForeignKey("occupation.id"), index=True)
    relationship_id: Mapped[int] = mapped_column(ForeignKey("relationship.id"))
    race_id: Mapped[int] = mapped_column(ForeignKey("race.id"))
    gender_id: Mapped[int] = mapped_column(ForeignKey("gender.id"))
    native_country_id: Mapped[int | None] = mapped_column(ForeignKey("native_country.id"), index=True)
    # No index: two values, so a filter on it keeps a quarter or three quarters of
    # the table; SQLite chose it over ix_person_age for `income=<=50K&sort=-age`
    # (184-264 ms against 4-6 ms without it, 1,000,000 people) and it cost 0.3 s per
    # million rows on every upload (benchmarks in the loader section of the README).
    income_bracket_id: Mapped[int] = mapped_column(ForeignKey("income_bracket.id"))

    __table_args__ = (
        _range_check("age"),
        _range_check("fnlwgt"),
        _range_check("capital_gain"),
        _range_check("capital_loss"),
        _range_check("hours_per_week"),
        # The most common API filter is gender plus an age range: one index serves both.
        Index("ix_person_gender_id_age", "gender_id", "age"),
        # Ids are never reused: after --replace, an old /people/{id} link is a 404,
        # never another person (PostgreSQL's sequence already never goes back).
        {"sqlite_autoincrement": True},
    )


def load_tables(connection: Connection) -> list[str]:
    """The tables large appends loaded into on PostgreSQL: inheritance children of
    person, read through it (see loaders.upload). None on SQLite."""
    if connection.dialect.name != "postgresql":
        return []
    return list(
        connection.scalars(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'person'::regclass ORDER BY c.relname"
            )
        )
    )


# people-view column -> (dimension model, its foreign key on person), in view order.
DIMENSIONS: dict[str, tuple[type[Dimension], str]] = {
    "workclass": (Workclass, "workclass_id"),
    "education": (Education, "education_id"),
    "marital_status": (MaritalStatus, "marital_status_id"),
    "occupation": (Occupation, "occupation_id"),
    "relationship": (Relationship, "relationship_id"),
    "race": (Race, "race_id"),
    "gender": (Gender, "gender_id"),
    "native_country": (NativeCountry, "native_country_id"),
    "income": (IncomeBracket, "income_bracket_id"),
}


def _people_select():  # type: ignore[no-untyped-def]
    """Each person in human-readable form: the input's column names, labels for keys.

    LEFT JOINs on unique keys let both SQLite and PostgreSQL drop the joins a query
    does not use, so counting the view costs no more than counting `person`.
    """
    p = Person.__table__
    dims = {name: model.__table__.alias(name) for name, (model, _) in DIMENSIONS.items()}
    joined = p
    for name, (_, fk) in DIMENSIONS.items():
        joined = joined.outerjoin(dims[name], p.c[fk] == dims[name].c.id)
    return select(
        p.c.id,
        p.c.age,
        dims["workclass"].c.label.label("workclass"),
        p.c.fnlwgt,
        dims["education"].c.label.label("education"),
        dims["education"].c.education_num.label("education_num"),
        dims["marital_status"].c.label.label("marital_status"),
        dims["occupation"].c.label.label("occupation"),
        dims["relationship"].c.label.label("relationship"),
        dims["race"].c.label.label("race"),
        dims["gender"].c.label.label("gender"),
        p.c.capital_gain,
        p.c.capital_loss,
        p.c.hours_per_week,
        dims["native_country"].c.label.label("native_country"),
        dims["income"].c.label.label("income"),
    ).select_from(joined)


PEOPLE_VIEW = CreateView(_people_select(), "people", metadata=Base.metadata)
# The view as a table object: the query layer selects from it like from any table.
people = PEOPLE_VIEW.table
