"""An in-memory, columnar snapshot of the `person` fact table for grouped aggregates.

Why: SQLite has no hash aggregation, so every GROUP BY sorts all the rows it
groups. On a 1,000,000-row file the API's /stats queries took 70-860 ms (a bare
count/sum/avg over `person` 280 ms, everyone grouped by gender 556-966 ms).
numpy over one contiguous array per column answers the same requests in 7-30 ms
end to end (benchmarks/api.py; 13 ms median where PostgreSQL's SQL took 79 ms):
a filter is a handful of vectorised comparisons, a grouping is `np.bincount`
over small integer keys. Building a snapshot of 1,000,000 people takes ~2 s
(SQLite 2.0 s, PostgreSQL 1.8 s) and ~45 MB at its peak.
`warehouse.query.aggregate_people` and `value_counts` use a snapshot when they
can and SQL otherwise; both give the same rows, in the same order, with the
same types (tests/test_columnar.py).

What is held, per person (no ids, no labels):
- the 9 dimension keys as int16, MISSING (0) for NULL (dimension ids start at 1);
- age and hours_per_week as int16; fnlwgt, capital_gain, capital_loss as int32
  (each number's CHECK range, warehouse.domain.RANGES, decides);
= 34 bytes per person, 34 MB for 1,000,000 people, plus the dimensions' labels.

Freshness: a snapshot belongs to one engine and one version of the data. Every
use first reads a version stamp (loads with status 'loaded': count, last id,
rows loaded; first and last person id: well under a millisecond) on the
caller's connection, and rebuilds when it changed. A build reads the stamp
before the rows, so an upload committed meanwhile can only make the snapshot
look older than it is (it is rebuilt on the next use), never newer.
Snapshots are cached per Engine; one thread builds while the others answer in
SQL. Above COLUMNAR_MAX_ROWS people, no snapshot is held and SQL answers.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple
from weakref import WeakKeyDictionary

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, Integer, Select, func, literal, null, select

from warehouse.config import get_settings
from warehouse.domain import HIGH_INCOME, RANGES
from warehouse.models import DIMENSIONS, Education, Load, Person
from warehouse.query import (
    AGE_BAND,
    AGE_BANDS,
    PeopleFilter,
    validate_aggregate,
    validate_value_counts,
)

logger = logging.getLogger(__name__)

MISSING: Final = 0  # the key a NULL foreign key is stored as
KEY_DTYPE: Final = np.int16
NUMBER_COLUMNS: Final = ("age", "hours_per_week", "fnlwgt", "capital_gain", "capital_loss")
KEY_COLUMNS: Final = tuple(foreign_key for _, foreign_key in DIMENSIONS.values())
STORED_COLUMNS: Final = (*NUMBER_COLUMNS, *KEY_COLUMNS)
# Small batches: a batch's Python tuples take ~10x the memory of its arrays.
BATCH_ROWS: Final = 20_000
# Up to this many groups are counted with np.bincount (an array of counts per
# possible group); above it (fnlwgt has millions of values) with np.unique.
DENSE_GROUPS: Final = 1 << 20
# Measure -> the person column it averages or sums.
MEASURE_COLUMNS: Final[dict[str, str]] = {
    "population": "fnlwgt",
    "mean_age": "age",
    "mean_hours": "hours_per_week",
    "mean_capital_gain": "capital_gain",
}
PERSON = Person.__table__
LOAD = Load.__table__

# "aggregate": aggregate_people's ORDER BY (missing last, education by years of
# schooling); "plain": value_counts' ORDER BY on the shown value (labels, NULL
# where the database puts it).
Ordering = Literal["aggregate", "plain"]


class SnapshotRefused(Exception):
    """The data cannot be held: too many people, or values outside the stored types."""


# --------------------------------------------------------------------------- version stamp


class Stamp(NamedTuple):
    """Changes whenever the people change: an upload (with or without --replace)
    adds a loaded load with a new id, and people come and go by id."""

    loads: int
    last_load: int | None
    rows: int  # people the loaded uploads wrote: what a snapshot will hold
    first_person: int | None
    last_person: int | None


def read_stamp(connection: Connection) -> Stamp:
    """One round trip of indexed lookups (the load table has a row per upload)."""
    loaded = LOAD.c.status == "loaded"
    statement = select(
        select(func.count()).select_from(LOAD).where(loaded).scalar_subquery(),
        select(func.max(LOAD.c.id)).where(loaded).scalar_subquery(),
        select(func.coalesce(func.sum(LOAD.c.rows_loaded), 0)).where(loaded).scalar_subquery(),
        # Separate subqueries: SQLite answers a lone min() or max() from the index.
        select(func.min(PERSON.c.id)).scalar_subquery(),
        select(func.max(PERSON.c.id)).scalar_subquery(),
    )
    loads, last_load, rows, first_person, last_person = connection.execute(statement).one()
    return Stamp(int(loads), last_load, int(rows), first_person, last_person)


# --------------------------------------------------------------------------- snapshot


@dataclass(frozen=True)
class _Grouping:
    """One attribute to group by: its result position per key, and what each position shows.

    Positions follow the SQL path's ORDER BY, so counting by position yields the
    groups already in order."""

    keys: NDArray[np.integer[Any]]  # per person
    positions: NDArray[np.intp] | None  # key -> position; None: the key is its own position
    size: int  # number of positions
    shown: Callable[[int], Any]  # position -> the value the SQL path returns

    def of(self, rows: NDArray[np.intp] | None) -> NDArray[np.intp]:
        """Positions of the selected people (all of them when rows is None)."""
        keys = self.keys if rows is None else self.keys[rows]
        return keys.astype(np.intp) if self.positions is None else self.positions[keys]


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The person table as arrays, with the dimensions needed to filter, group and label."""

    stamp: Stamp
    columns: Mapping[str, NDArray[np.integer[Any]]]  # person column -> one value per person
    maxima: Mapping[str, int]  # person column -> its largest value (0 when empty)
    labels: Mapping[str, Mapping[int, str]]  # dimension -> id -> label
    label_ranks: Mapping[str, Mapping[int, int]]  # dimension -> id -> place in the database's ORDER BY label
    education_nums: Mapping[int, int]  # education id -> education_num
    nulls_first: bool  # where the database sorts NULL in an ascending ORDER BY
    build_seconds: float
    missing_key: int = MISSING

    @property
    def rows(self) -> int:
        return len(self.columns["age"])

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.columns.values())

    # -- what PeopleFilter.mask asks --

    def between(self, column: str, low: int | None, high: int | None) -> NDArray[np.bool_]:
        values = self.columns[column]
        if low is not None and high is not None:
            return (values >= low) & (values <= high)
        return values >= low if low is not None else values <= high

    def key_in(self, column: str, keys: Sequence[int]) -> NDArray[np.bool_]:
        """Whether each person's key is one of `keys`, through a lookup table over all keys."""
        wanted = np.zeros(self.maxima[column] + 1, dtype=np.bool_)
        present = [key for key in keys if 0 <= key < len(wanted)]
        wanted[present] = True
        return wanted[self.columns[column]]

    def label_keys(self, dimension: str, labels: Sequence[str]) -> list[int]:
        """The keys of these labels (a label the database does not have matches no one)."""
        ids = {label: key for key, label in self.labels[dimension].items()}
        return [ids[label] for label in labels if label in ids]

    def education_ids(self, low: int | None, high: int | None) -> list[int]:
        return [
            key
            for key, years in self.education_nums.items()
            if (low is None or years >= low) and (high is None or years <= high)
        ]

    # -- the questions --

    def count_people(self, people_filter: PeopleFilter) -> int:
        """What warehouse.query.count_people returns, computed from the arrays."""
        mask = people_filter.mask(self)
        return self.rows if mask is None else int(np.count_nonzero(mask))

    def aggregate_people(
        self, people_filter: PeopleFilter, group_by: Sequence[str] = (), measures: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """What warehouse.query.aggregate_people returns, computed from the arrays."""
        wanted = validate_aggregate(group_by, measures)
        rows = _selected(people_filter.mask(self))
        groupings = [self._grouping(name, "aggregate") for name in group_by]
        codes, size = _codes(groupings, rows)
        people = _counts(codes, size, self.rows if rows is None else len(rows))
        totals = {m: self._measure_totals(m, codes, size, rows) for m in wanted if m != "people"}
        # Without group_by, SQL returns its one row even when no one matches.
        found = np.flatnonzero(people) if groupings else np.zeros(1, dtype=np.intp)
        return [
            {
                **dict(zip(group_by, _shown(groupings, int(code)), strict=True)),
                **{m: _measure(m, int(people[code]), totals.get(m), int(code)) for m in wanted},
            }
            for code in found
        ]

    def value_counts(self, people_filter: PeopleFilter, column: str, by: str | None = None) -> list[dict[str, Any]]:
        """What warehouse.query.value_counts returns, computed from the arrays."""
        validate_value_counts(column, by)
        rows = _selected(people_filter.mask(self))
        groupings = [self._grouping(name, "plain") for name in (by, column) if name is not None]
        codes, size = _codes(groupings, rows)
        assert codes is not None  # there is always the value column
        found, counts = _distinct(codes, size)
        names = ["group", "value"] if by is not None else ["value"]
        return [
            {**dict(zip(names, _shown(groupings, int(code)), strict=True)), "people": int(count)}
            for code, count in zip(found, counts, strict=True)
        ]

    # -- helpers --

    def _measure_totals(
        self, measure: str, codes: NDArray[np.intp] | None, size: int, rows: NDArray[np.intp] | None
    ) -> NDArray[np.float64]:
        """Per group: the number earning >50K, or the sum of the measure's column."""
        if measure == "share_over_50k":
            income = _take(self.columns["income_bracket_id"], rows)
            high = self.label_keys("income", [HIGH_INCOME])
            weights = income == high[0] if high else np.zeros(len(income), dtype=np.bool_)
        else:
            weights = _take(self.columns[MEASURE_COLUMNS[measure]], rows)
        return _sums(codes, size, weights)

    def _grouping(self, name: str, ordering: Ordering) -> _Grouping:
        if name == AGE_BAND:
            return self._age_bands()
        if name in DIMENSIONS or name == "education_num":
            return self._dimension_grouping(name, ordering)
        # A number: its value is its key and its position (values are >= 0, see _checked).
        return _Grouping(self.columns[name], None, self.maxima[name] + 1, int)

    def _age_bands(self) -> _Grouping:
        # Band labels sort in band order ("17-24" < ... < "65+"), as the SQL path's ORDER BY does.
        ages = np.arange(self.maxima["age"] + 1)
        positions = np.zeros(len(ages), dtype=np.intp)
        for index, (_, _, high) in enumerate(AGE_BANDS[:-1]):
            positions[ages > high] = index + 1
        return _Grouping(self.columns["age"], positions, len(AGE_BANDS), lambda position: AGE_BANDS[position][0])

    def _dimension_grouping(self, name: str, ordering: Ordering) -> _Grouping:
        """A dimension (or education_num, through education's keys), in the SQL path's order."""
        dimension = "education" if name == "education_num" else name
        column = DIMENSIONS[dimension][1]
        every_key = range(self.maxima[column] + 1)
        show = self.education_nums if name == "education_num" else self.labels[dimension]
        by_years = name == "education_num" or (name == "education" and ordering == "aggregate")
        rank = self.education_nums if by_years else self.label_ranks[dimension]
        # aggregate_people puts missing values last; a plain ORDER BY where the database does.
        missing_rank = 0 if ordering == "plain" and self.nulls_first else 2
        order = sorted(every_key, key=lambda key: (1, rank[key]) if key in rank else (missing_rank, key))
        positions = np.empty(len(order), dtype=np.intp)
        positions[order] = np.arange(len(order))
        shown = [show.get(key) for key in order]
        return _Grouping(self.columns[column], positions, len(order), shown.__getitem__)


def _selected(mask: NDArray[np.bool_] | None) -> NDArray[np.intp] | None:
    """Indexes of the people a mask keeps (None: everyone): gathering columns by
    index is cheaper than boolean-indexing each column with the mask."""
    return None if mask is None else np.flatnonzero(mask)


def _take(values: NDArray[Any], rows: NDArray[np.intp] | None) -> NDArray[Any]:
    return values if rows is None else values[rows]


def _codes(groupings: Sequence[_Grouping], rows: NDArray[np.intp] | None) -> tuple[NDArray[np.intp] | None, int]:
    """One code per selected person, ordered like the result (first grouping
    major), and the number of possible codes; None without groupings."""
    codes: NDArray[np.intp] | None = None
    size = 1
    for grouping in groupings:
        positions = grouping.of(rows)
        codes = positions if codes is None else codes * grouping.size + positions
        size *= grouping.size
    return codes, size


def _shown(groupings: Sequence[_Grouping], code: int) -> list[Any]:
    """Decode a combined code (see _codes) into each grouping's shown value."""
    values: list[Any] = []
    for grouping in reversed(groupings):
        code, position = divmod(code, grouping.size)
        values.append(grouping.shown(position))
    return values[::-1]


def _counts(codes: NDArray[np.intp] | None, size: int, selected: int) -> NDArray[np.int64]:
    if codes is None:
        return np.array([selected], dtype=np.int64)
    return np.bincount(codes, minlength=size)


def _sums(codes: NDArray[np.intp] | None, size: int, weights: NDArray[Any]) -> NDArray[np.float64]:
    """Per-group sums. float64 holds these integer sums exactly: they stay below
    2**53 for up to ~900 million people at the largest fnlwgt (10,000,000)."""
    if codes is None:
        return np.array([weights.sum(dtype=np.int64)], dtype=np.float64)
    return np.bincount(codes, weights=weights, minlength=size)


def _distinct(codes: NDArray[np.intp], size: int) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
    """The codes present, ascending, and how often each occurs."""
    if size <= DENSE_GROUPS:
        counts = np.bincount(codes, minlength=size)
        found = np.flatnonzero(counts)
        return found, counts[found]
    found, counts = np.unique(codes, return_counts=True)
    return found, counts


def _measure(measure: str, people: int, totals: NDArray[np.float64] | None, code: int) -> int | float | None:
    """One measure of one group, typed like the SQL path: NULL (None) over no one."""
    if measure == "people":
        return people
    if people == 0 or totals is None:
        return None
    if measure == "population":
        return int(totals[code])
    return float(totals[code]) / people


# --------------------------------------------------------------------------- building


def build(connection: Connection, max_rows: int | None = None) -> Snapshot:
    """Read the person table into a new snapshot (not cached: see `current`).

    The stamp is read before the rows: an upload committed while they are read
    makes the snapshot look older than it is, never newer. Raises SnapshotRefused
    above `max_rows` people or for values the stored types cannot hold.
    """
    started = time.perf_counter()
    stamp = read_stamp(connection)
    labels, label_ranks = _read_dimensions(connection)
    education_nums = {key: years for key, years in connection.execute(select(Education.id, Education.education_num))}
    columns = _read_columns(connection, stamp.rows, max_rows)
    return Snapshot(
        stamp=stamp,
        columns=columns,
        maxima={name: int(values.max()) if len(values) else 0 for name, values in columns.items()},
        labels=labels,
        label_ranks=label_ranks,
        education_nums=education_nums,
        nulls_first=_nulls_sort_first(connection),
        build_seconds=time.perf_counter() - started,
    )


def _read_dimensions(connection: Connection) -> tuple[dict[str, dict[int, str]], dict[str, dict[int, int]]]:
    """Labels by key, and each key's place when the database sorts the labels
    (its collation decides, exactly as in the SQL path's ORDER BY label)."""
    labels: dict[str, dict[int, str]] = {}
    ranks: dict[str, dict[int, int]] = {}
    for name, (model, _) in DIMENSIONS.items():
        table = model.__table__
        rows = connection.execute(select(table.c.id, table.c.label).order_by(table.c.label)).all()
        if any(not MISSING < key <= np.iinfo(KEY_DTYPE).max for key, _ in rows):
            raise SnapshotRefused(f"{table.name} has ids outside 1..{np.iinfo(KEY_DTYPE).max}")
        labels[name] = {key: label for key, label in rows}
        ranks[name] = {key: rank for rank, (key, _) in enumerate(rows)}
    return labels, ranks


def _nulls_sort_first(connection: Connection) -> bool:
    """Where an ascending ORDER BY puts NULL: first in SQLite, last in PostgreSQL."""
    probe = select(literal(1, Integer).label("v")).union_all(select(null().label("v"))).subquery()
    return connection.scalar(select(probe.c.v).order_by(probe.c.v).limit(1)) is None


def _stored_select() -> Select[Any]:
    # COALESCE: NULL keys arrive as MISSING, so every value is an int.
    picked = [
        func.coalesce(PERSON.c[name], MISSING) if PERSON.c[name].nullable else PERSON.c[name] for name in STORED_COLUMNS
    ]
    # In id order, so a snapshot's people line up with `SELECT id ... ORDER BY id`.
    return select(*picked).order_by(PERSON.c.id)


def _read_columns(
    connection: Connection, expected_rows: int, max_rows: int | None
) -> dict[str, NDArray[np.integer[Any]]]:
    """The stored columns, converted batch by batch into their small types.

    Written into arrays sized from the stamp's row count: gathering batches and
    concatenating them would need twice the snapshot's memory at the end."""
    columns = {name: np.empty(expected_rows, dtype=_stored_dtype(name)) for name in STORED_COLUMNS}
    count = 0
    for batch in _batches(connection, _stored_select(), BATCH_ROWS):
        end = count + len(batch)
        if max_rows is not None and end > max_rows:
            raise SnapshotRefused(f"more than {max_rows:,} people (COLUMNAR_MAX_ROWS)")
        if end > len(columns["age"]):  # more people than the loads account for
            columns = {name: _grown(values, count, end) for name, values in columns.items()}
        table = _as_array(batch, len(STORED_COLUMNS))
        for index, name in enumerate(STORED_COLUMNS):
            columns[name][count:end] = _checked(table[:, index], columns[name].dtype, name)
        count = end
    for name, values in columns.items():
        columns[name] = values if count == len(values) else values[:count].copy()
        columns[name].flags.writeable = False  # shared by every request: nothing may change it in place
    return columns


def _stored_dtype(column: str) -> np.dtype[Any]:
    """Keys as int16; numbers as int16 when their CHECK range fits, else int32."""
    if column in KEY_COLUMNS:
        return np.dtype(KEY_DTYPE)
    return np.dtype(np.int16 if RANGES[column][1] <= np.iinfo(np.int16).max else np.int32)


def _grown(values: NDArray[Any], count: int, needed: int) -> NDArray[Any]:
    grown = np.empty(max(needed, len(values) * 3 // 2), dtype=values.dtype)
    grown[:count] = values[:count]
    return grown


def _batches(connection: Connection, statement: Select[Any], size: int) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Rows in batches straight from the DBAPI cursor: SQLAlchemy's Row objects
    cost about 1 s per million rows here (2.8 s instead of 1.7 s on SQLite)."""
    compiled = statement.compile(dialect=connection.dialect)
    parameters: Any = compiled.params
    if compiled.positional:
        parameters = tuple(compiled.params[name] for name in compiled.positiontup or ())
    driver = connection.connection.driver_connection
    # A named cursor is PostgreSQL's server-side cursor: it streams, where a plain
    # psycopg2 cursor would pull every row into the client at once.
    is_postgres = connection.dialect.name == "postgresql"
    cursor = driver.cursor(name="census_columnar") if is_postgres else driver.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), parameters)
        while batch := cursor.fetchmany(size):
            yield batch
    finally:
        cursor.close()


def _as_array(batch: Sequence[tuple[Any, ...]], width: int) -> NDArray[np.int64]:
    """A batch of tuples as a 2-D array, without an intermediate Python list."""
    try:
        flat = np.fromiter(itertools.chain.from_iterable(batch), dtype=np.int64, count=len(batch) * width)
    except (TypeError, ValueError, OverflowError) as error:
        raise SnapshotRefused(f"person holds a value that is not a small integer: {error}") from None
    return flat.reshape(len(batch), width)


def _checked(values: NDArray[np.int64], dtype: np.dtype[Any], column: str) -> NDArray[np.int64]:
    """Refuse values the stored type cannot hold (storing them would wrap around).
    Negative values are refused too: keys and numbers double as array indexes."""
    top = np.iinfo(dtype).max
    if len(values) and (values.min() < 0 or values.max() > top):
        raise SnapshotRefused(f"person.{column} holds values outside 0..{top}")
    return values


# --------------------------------------------------------------------------- one snapshot per engine


@dataclass
class _Slot:
    """One engine's snapshot; `lock` is held while it is being built."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    snapshot: Snapshot | None = None
    refused: tuple[Stamp, int] | None = None  # (version, limit) that could not be held: do not retry


# Weak keys: an engine that is disposed of and dropped takes its snapshot with it.
_slots: WeakKeyDictionary[Engine, _Slot] = WeakKeyDictionary()
_slots_lock = threading.Lock()


def _slot(engine: Engine) -> _Slot:
    with _slots_lock:
        slot = _slots.get(engine)
        if slot is None:
            slot = _slots[engine] = _Slot()
        return slot


def cached(engine: Engine) -> Snapshot | None:
    """The snapshot held for `engine`, if any, fresh or not (for tests and diagnostics)."""
    with _slots_lock:
        slot = _slots.get(engine)
    return slot.snapshot if slot else None


def current(connection: Connection, *, wait: bool = False) -> Snapshot | None:
    """The snapshot of exactly the data `connection` sees, (re)built if needed.

    None means "answer in SQL": snapshots are disabled or the data is larger than
    COLUMNAR_MAX_ROWS, another thread is building it (unless `wait`: a request
    would rather take the SQL path's ~0.5 s than wait ~2 s), or the connection
    does not see the committed data (its own uncommitted writes, or an upload
    that committed a moment ago).
    """
    limit = get_settings().columnar_max_rows
    if limit <= 0:
        return None
    stamp = read_stamp(connection)
    if stamp.rows > limit:
        return None
    slot = _slot(connection.engine)
    snapshot = slot.snapshot
    if snapshot is not None and snapshot.stamp == stamp:
        return snapshot
    if slot.refused == (stamp, limit) or not slot.lock.acquire(blocking=wait):
        return None
    try:
        return _refresh(slot, connection.engine, stamp, limit)
    finally:
        slot.lock.release()


def _refresh(slot: _Slot, engine: Engine, stamp: Stamp, limit: int) -> Snapshot | None:
    """Under the slot's lock: make the slot hold the snapshot of `stamp`, if that
    is what is committed."""
    snapshot = slot.snapshot
    if snapshot is not None and snapshot.stamp == stamp:
        return snapshot  # built by the thread that held the lock before
    # A connection of its own, not the caller's: the snapshot is shared, so it
    # must hold committed data, and the caller may be inside a writing transaction.
    with engine.connect() as connection:
        if read_stamp(connection) != stamp:
            return None
        slot.snapshot = None  # let the old arrays go before the new ones are read
        try:
            snapshot = build(connection, limit)
        except SnapshotRefused as reason:
            logger.warning("no columnar snapshot (aggregates run in SQL): %s", reason)
            slot.refused = (stamp, limit)
            return None
    slot.snapshot = snapshot
    logger.info(
        "columnar snapshot of %s people built in %.2f s (%.1f MB)",
        f"{snapshot.rows:,}",
        snapshot.build_seconds,
        snapshot.nbytes / 1e6,
    )
    return snapshot if snapshot.stamp == stamp else None


def is_current(connection: Connection) -> bool:
    """Whether the engine holds the snapshot of the data `connection` sees (for /health)."""
    snapshot = cached(connection.engine)
    return snapshot is not None and snapshot.stamp == read_stamp(connection)


def warm_up(engine: Engine) -> Snapshot | None:
    """Build `engine`'s snapshot now (waiting for a build in progress), so the
    first request that needs it does not pay for it."""
    with engine.connect() as connection:
        return current(connection, wait=True)


def warm_up_in_background(engine: Engine) -> threading.Thread:
    """warm_up on a daemon thread, for servers at start-up: it never delays start-up
    or shutdown, and a failure is only logged (requests then build the snapshot
    themselves, or answer in SQL)."""

    def warm() -> None:
        try:
            warm_up(engine)
        except Exception:  # any failure: the snapshot is only an optimization
            logger.warning("columnar snapshot warm-up failed; aggregates answer in SQL meanwhile", exc_info=True)

    thread = threading.Thread(target=warm, name="columnar-warm-up", daemon=True)
    thread.start()
    return thread
