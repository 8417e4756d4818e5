"""Upload a census file into the warehouse, in one transaction.

    python -m loaders.upload [SOURCE] [--db sqlite|postgres] [--url URL] [--replace [--allow-empty]]
                             [--append] [--strict] [--encoding ENC] [--wait SECONDS]

SOURCE defaults to data/Input_Dataset.csv (plain, .gz, or a .zip holding one CSV);
the database to the SQLite file data/census.db (or DATABASE_URL). Exit status
(the README's "Uploading data" lists them): 0 loaded or already loaded,
1 rows rejected under --strict, 2 the file or the database could not be used or
the upload was refused, 3 another upload kept the database busy past --wait,
130 interrupted (Ctrl-C). In every case but 0 nothing was loaded.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import logging
import os
import re
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from loaders.cleaner import MISSING_ID, NULLABLE_POSITIONS, OUTPUT_COLUMNS, CleanChunk, Cleaner, shorten
from loaders.reader import ARROW_POOL, SourceError, SourceReader
from warehouse.config import DEFAULT_SOURCE, get_settings, resolve_database_url
from warehouse.db import DatabaseUnavailable, describe, make_engine, wait_for_database
from warehouse.models import DIMENSIONS, PEOPLE_VIEW, Load, Person, RejectedRow, load_tables
from warehouse.schema import create_schema_on

# Person columns in the order the cleaner produces them, after load_id.
PERSON_COLUMNS = ("load_id", *(DIMENSIONS[c][1] if c in DIMENSIONS else c for c in OUTPUT_COLUMNS))
# Any constant works: it only has to be the same for every upload process.
UPLOAD_LOCK_KEY = 0x63656E73  # "cens"
SHOWN_REASONS = 5

# Exit statuses, documented in the README ("Uploading data").
EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNUSABLE = 2
EXIT_BUSY = 3
EXIT_INTERRUPTED = 130

# --replace refuses (unless --allow-empty) when it would load nothing, or when
# more than this share of the rows read were rejected: a wrong file must not
# silently swap the warehouse for a fraction of it.
REPLACE_MAX_REJECTED_SHARE = 0.10
# How long an upload waits for another one to finish (--wait).
DEFAULT_WAIT_S = 600.0
# A rejected row's raw text is kept up to this many characters (its length is noted).
RAW_TEXT_CHARS = 10_000
# Bytes a SQLite database grows by per person loaded (table and indexes),
# measured on the 48,842-row input (5.0 MB); the free-space check needs twice it (the
# write-ahead log holds every new page until it is copied into the file).
SQLITE_BYTES_PER_ROW = 100
# Input bytes per record, to estimate rows from a file's size (the input's
# lines average 108 bytes; compressed files are assumed to shrink 5x).
BYTES_PER_RECORD = 100
# An append of at most this share of the current rows adds them to the live
# table, its indexes maintained row by row; a larger one rebuilds the indexes
# (SQLite) or goes into a table of its own (PostgreSQL). SQLite maintains its
# indexes (small keys, new ids after every old one: each new entry goes at the
# end of its key's run) faster than it rebuilds them over old and new rows
# while the new rows are fewer than twice the old: 1,000,000 onto 1,000,000
# took 3.3 s in place against 0.65 s + 3.3-4.0 s to insert and rebuild.
# PostgreSQL's in-place COPY of 1,000,000 rows onto as many took 34 s.
APPEND_IN_PLACE_SHARE = {"sqlite": 2.0, "postgresql": 0.125}
# SQLite page cache (KiB) while an append maintains the indexes: the last leaf
# of every key's run in six indexes stays cached (2 MB, the default, took
# 4.1 s for 1,000,000 rows against 3.3 s with 10 MB).
SQLITE_APPEND_CACHE_KIB = 10_000
STAGING_TABLE = "person_staging"
# PostgreSQL: a large append loads into `person_load_<load id>`, a table that
# inherits from person (readers of person see its rows), so only its own rows
# are indexed. With this many such tables, the next large append merges them
# all back into one person table (through the staging table), which keeps the
# number of tables a query plans over small.
LOAD_TABLE_PREFIX = "person_load_"
MAX_LOAD_TABLES = 4
# Rows read, cleaned and written at a time. Two chunks are in memory at once (one
# cleaned, one written): 5,000 rows took 7-10 MiB off the peak of a
# 1,000,000-row upload against 10,000 (137 against 146 MiB), in the same time;
# the 48,842-row input still comes in ten chunks, so writing one overlaps
# cleaning the next (50,000 was one chunk there, with no overlap, and 190 MB on
# the large file).
CHUNK_ROWS = 5_000
# People per SQLite INSERT statement: 15 values each, under SQLite's 32,766
# variables; 200 rows halved the insert time against one row per statement.
SQLITE_ROWS_PER_STATEMENT = 200
# SQLite sorter threads for index builds over at least SQLITE_SORT_THREADS_FROM
# rows (the default is none): they took a 2,000,000-row rebuild from 3.5 s to
# 3.0 s, and nothing off 1,000,000 rows, where their buffers added 5-8 MiB to the
# upload's peak memory.
SQLITE_SORT_THREADS = min(os.cpu_count() or 1, 4)
SQLITE_SORT_THREADS_FROM = 2_000_000


class StrictModeError(RuntimeError):
    """Raised under --strict when any row was rejected; the transaction rolls back."""


class UploadRefused(RuntimeError):
    """The upload would do something the operator did not ask for (exit 2)."""


class UploadBusy(RuntimeError):
    """Another upload held the database for longer than --wait (exit 3)."""


class _AlreadyLoaded(Exception):  # noqa: N818 - control flow, never shown
    """The rows equal a current load's: roll back and report a no-op."""

    def __init__(self, load_id: int, source_name: str) -> None:
        super().__init__(load_id)
        self.load_id = load_id
        self.source_name = source_name


@dataclass
class UploadResult:
    load_id: int | None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    already_loaded: bool = False
    # For a content match: the name the same rows were loaded under.
    same_rows_as: str | None = None
    replaced_loads: int = 0
    seconds: float = 0.0
    first_rejections: list[tuple[int, str]] = field(default_factory=list)


_SPACED_COMMA = re.compile(r"\s*,\s*")


class RowDigest:
    """What "the same data" means: the sha256 of the rows as cleaned, in file order
    (every value after trimming, missing markers, income spelling and label
    lookup), followed by the rejected rows' text with its fields trimmed. A copy re-saved with CRLF,
    other spacing after commas, a BOM or compression has the same digest; any
    changed value changes it. Rows are hashed row-major, so the chunk size does
    not matter."""

    def __init__(self) -> None:
        self._rows = hashlib.sha256()
        self._rejected = hashlib.sha256()

    def update(self, clean: CleanChunk) -> None:
        if clean.row_count:
            # float64 holds every value exactly; NULL becomes NaN.
            matrix = clean.matrix[:, 1:].astype(np.float64)
            for position in NULLABLE_POSITIONS:
                column = matrix[:, position - 1]
                column[column == MISSING_ID] = np.nan
            self._rows.update(matrix.tobytes())
        for _, raw, _ in sorted(clean.rejected):
            normal = _SPACED_COMMA.sub(",", raw.strip())  # fields trimmed, as the cleaner does
            self._rejected.update(normal.encode("utf-8", "surrogatepass") + b"\n")

    def hexdigest(self) -> str:
        return hashlib.sha256(self._rows.digest() + self._rejected.digest()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def dimension_ids(connection: Connection) -> dict[str, dict[str, int]]:
    return {
        column: {label: key for key, label in connection.execute(select(model.id, model.label))}
        for column, (model, _) in DIMENSIONS.items()
    }


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """The upload allocates millions of short-lived lists and tuples and creates no
    reference cycles; CPython's cyclic collector would rescan them all repeatedly
    (measured: about 40% of the upload's time on a 1,000,000-row file)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def upload(
    engine: Engine,
    source: Path,
    *,
    replace: bool = False,
    append: bool = False,
    allow_empty: bool = False,
    strict: bool = False,
    encoding: str = "utf-8",
    wait_s: float = DEFAULT_WAIT_S,
    check_space: bool = True,
    chunk_size: int = CHUNK_ROWS,
    progress: bool | None = None,
) -> UploadResult:
    """Clean `source` and load it; everything or nothing is committed.

    About `chunk_size` rows are read, cleaned and written at a time (see CHUNK_ROWS).
    """
    options = _Options(replace, append, allow_empty, strict, encoding, wait_s, check_space, chunk_size, progress)
    with _cyclic_gc_paused():
        return _upload(engine, source, options)


@dataclass(frozen=True)
class _Options:
    replace: bool
    append: bool
    allow_empty: bool
    strict: bool
    encoding: str
    wait_s: float
    check_space: bool
    chunk_size: int
    progress: bool | None


def _upload(engine: Engine, source: Path, options: _Options) -> UploadResult:
    started = time.perf_counter()
    # The file is opened (and its kind recognised) before the database is touched.
    with SourceReader(source, chunk_size=options.chunk_size, encoding=options.encoding) as reader:
        estimated_rows = reader.size // (BYTES_PER_RECORD // 5 if reader.compressed else BYTES_PER_RECORD)
        if options.check_space:
            _check_free_space(engine, estimated_rows)
        # Under the lock, so two first uploads into a new database do not both
        # create it; committed apart, so the schema stays whatever the upload does.
        with _upload_transaction(engine, options.wait_s) as connection:
            create_schema_on(connection)
        try:
            with _upload_transaction(engine, options.wait_s) as connection:
                sha256 = None
                # With no current load, no file can be this one: the hash is then
                # taken on the core the index builds leave idle (see _load).
                if connection.execute(select(Load.id).where(Load.status == "loaded").limit(1)).first():
                    sha256 = file_sha256(source)
                    previous = connection.execute(
                        select(Load.id).where(Load.sha256 == sha256, Load.status == "loaded")
                    ).first()
                    if previous is not None and not options.replace:
                        return UploadResult(load_id=previous.id, already_loaded=True)
                result = _load(connection, reader, source, sha256, estimated_rows, options)
        except _AlreadyLoaded as same:
            return UploadResult(load_id=same.load_id, already_loaded=True, same_rows_as=same.source_name)
    if engine.dialect.name == "sqlite":
        _checkpoint(engine)
    result.seconds = time.perf_counter() - started
    return result


def _load(
    connection: Connection,
    reader: SourceReader,
    source: Path,
    sha256: str | None,
    estimated_rows: int,
    options: _Options,
) -> UploadResult:
    if reader.layout.ignored_columns:
        print(f"warning: ignoring column(s) {', '.join(reader.layout.ignored_columns)}", file=sys.stderr)
    result = UploadResult(load_id=None)
    load_id = connection.execute(
        insert(Load)
        .values(
            source_name=source.name,
            sha256=sha256 or "",  # set at the end when not known yet
            started_at=datetime.now(UTC),
            status="running",
            rows_read=0,
            rows_loaded=0,
            rows_rejected=0,
        )
        .returning(Load.id)
    ).scalar_one()
    result.load_id = load_id
    if connection.dialect.name == "postgresql":
        # The ids the cleaner maps labels to stay valid until the commit: no
        # dimension row can change meanwhile (readers go on).
        tables = ", ".join(model.__tablename__ for model, _ in DIMENSIONS.values())
        connection.exec_driver_sql(f"LOCK TABLE {tables} IN SHARE MODE")
    cleaner = Cleaner(dimension_ids(connection), load_id)
    digest = RowDigest()
    writer = _writer_for(connection, load_id, options.replace, estimated_rows)
    show = sys.stderr.isatty() if options.progress is None else options.progress
    writer.begin()
    with _progress_bar(source, reader.size, show) as bar, _Pipeline(writer.write) as pipeline:
        for chunk in reader.chunks(typed=True):
            clean = cleaner.clean_chunk(chunk)
            clean.rejected.extend(chunk.malformed)
            _record(result, clean, chunk.rows_read)
            if options.strict and clean.rejected:
                line, _, reason = min(clean.rejected)
                raise StrictModeError(f"--strict: line {line} rejected: {reason}")
            digest.update(clean)
            pipeline.submit(clean)
            bar.update(reader.bytes_read - bar.n)  # bytes, so the bar needs no row count
    rows_digest = digest.hexdigest()
    _check_same_data(connection, load_id, rows_digest, source.name, options)
    if options.replace:
        _check_replacement(result, source, options.allow_empty)
        result.replaced_loads = _retire_loads(connection, load_id)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="census-sha256") as hasher:
        hashing = hasher.submit(file_sha256, source) if sha256 is None else None
        writer.finish()
        sha256 = hashing.result() if hashing is not None else sha256
    connection.execute(
        update(Load)
        .where(Load.id == load_id)
        .values(
            sha256=sha256,
            rows_read=result.rows_read,
            rows_loaded=result.rows_loaded,
            rows_rejected=result.rows_rejected,
            rows_digest=rows_digest,
            finished_at=datetime.now(UTC),
            status="loaded",
        )
    )
    return result


def _check_same_data(connection: Connection, load_id: int, rows_digest: str, name: str, options: _Options) -> None:
    """Same rows as a current load: a no-op. Other rows under a name already
    loaded: most likely an edited copy, so refuse unless told what to do."""
    same = connection.execute(
        select(Load.id, Load.source_name)
        .where(Load.rows_digest == rows_digest, Load.status == "loaded", Load.id != load_id)
        .order_by(Load.id)
    ).first()
    if same is not None and not options.replace:
        raise _AlreadyLoaded(same.id, same.source_name)
    if options.replace or options.append:
        return
    earlier = connection.execute(
        select(Load.id, Load.rows_loaded, Load.finished_at)
        .where(Load.source_name == name, Load.status == "loaded", Load.id != load_id)
        .order_by(Load.id.desc())
    ).first()
    if earlier is not None:
        when = f", finished {earlier.finished_at:%Y-%m-%d %H:%M}" if earlier.finished_at else ""
        raise UploadRefused(
            f"{name} was loaded before with other rows (load #{earlier.id}, {earlier.rows_loaded:,} people{when}); "
            "pass --replace to swap the current people for this file's, or --append to add its rows as well"
        )


def _check_replacement(result: UploadResult, source: Path, allow_empty: bool) -> None:
    """--replace must not swap the warehouse for nothing, or for a small part of a bad file."""
    if allow_empty:
        return
    if result.rows_loaded == 0:
        raise UploadRefused(
            f"--replace would empty the warehouse: {source.name} has no loadable rows "
            f"(read {result.rows_read:,}, rejected {result.rows_rejected:,}); the current people are kept "
            "(pass --allow-empty to replace them anyway)"
        )
    if result.rows_rejected > REPLACE_MAX_REJECTED_SHARE * result.rows_read:
        first = f"; first: line {result.first_rejections[0][0]}: {result.first_rejections[0][1]}"
        raise UploadRefused(
            f"--replace refused: {result.rows_rejected:,} of {result.rows_read:,} rows of {source.name} were rejected, "
            f"more than {REPLACE_MAX_REJECTED_SHARE:.0%}{first}; the current people are kept "
            "(pass --allow-empty to replace them anyway)"
        )


def _check_free_space(engine: Engine, estimated_rows: int) -> None:
    """SQLite writes new pages to the write-ahead log, then copies them into the
    file: it needs about twice the data's size free. Refuse before starting
    rather than fail midway. (PostgreSQL's server owns its disk; a full disk
    there is still a one-line error and a rolled-back upload.)"""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return
    folder = Path(engine.url.database).resolve().parent
    need = 2 * estimated_rows * SQLITE_BYTES_PER_ROW + (1 << 20)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UploadRefused(
            f"not enough disk space: the upload needs about {_megabytes(need)} free in {folder} "
            f"(twice the new data, for the write-ahead log), and {_megabytes(free)} are free; "
            "free some space (or pass --skip-space-check if the estimate is wrong)"
        )


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _checkpoint(engine: Engine) -> None:
    """Copy the committed write-ahead log into the database file now, and say so
    if that fails (a full disk): the rows are committed, but the log stays."""
    with engine.connect() as connection:
        try:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except DBAPIError as error:
            raise CheckpointFailed(_first_line(error.orig or error)) from None


class CheckpointFailed(RuntimeError):
    """The upload committed, but its write-ahead log could not be copied into the file."""


class _NoProgress:
    n = 0

    def update(self, _bytes: int) -> None:
        pass


@contextmanager
def _progress_bar(source: Path, size: int, show: bool) -> Iterator[Any]:
    """A tqdm bar over the file's bytes on a terminal; nothing otherwise."""
    if not show:
        yield _NoProgress()
        return
    from tqdm import tqdm  # imported only when shown: it is 1% of a small upload's time

    with tqdm(total=size, unit="B", unit_scale=True, desc=source.name) as bar:
        yield bar


@contextmanager
def _upload_transaction(engine: Engine, wait_s: float) -> Iterator[Connection]:
    """One transaction holding the upload lock from its first statement.

    The lock comes before anything is read, so two uploads of the same file
    cannot both find it "not loaded yet": on SQLite a BEGIN IMMEDIATE (the
    database's write lock; the driver would otherwise begin lazily at the first
    INSERT), on PostgreSQL a transaction-scoped advisory lock.

    On SQLite, per-row foreign-key checks are switched off for the load (they cost
    about 1.7 s per million rows): every key the upload writes was read from the
    dimension tables inside this same transaction, so none can dangle. The pragma
    only takes effect outside a transaction, hence before begin().
    """
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            # Debian's SQLite overwrites every freed page with zeros (SECURE_DELETE):
            # dropping the indexes of 1,000,000 people wrote 40 MB of zeros (0.1 s).
            # FAST (stricter than SQLite's own default, OFF) still clears deleted
            # content wherever that costs no extra write.
            connection.exec_driver_sql("PRAGMA secure_delete=FAST")
            connection.commit()  # ends SQLAlchemy's autobegun (empty) transaction
        try:
            with connection.begin():
                _lock_uploads(connection, wait_s)
                yield connection
        finally:
            if sqlite and not connection.invalidated:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def _lock_uploads(connection: Connection, wait_s: float) -> None:
    """Take the upload lock, saying so when another upload holds it, for at most wait_s."""
    deadline = time.monotonic() + wait_s
    where = describe(connection.engine.url.render_as_string(hide_password=True))
    announced = False
    while not _try_lock(connection):
        if time.monotonic() >= deadline:
            raise UploadBusy(
                f"another upload into {where} is still running after {wait_s:g} s; "
                "try again when it has finished (or wait longer with --wait SECONDS)"
            )
        if not announced:
            print(f"another upload into {where} is running; waiting for it (up to {wait_s:g} s)", file=sys.stderr)
            announced = True
        time.sleep(0.2)


def _try_lock(connection: Connection) -> bool:
    if connection.dialect.name == "postgresql":
        return bool(connection.scalar(select(func.pg_try_advisory_xact_lock(UPLOAD_LOCK_KEY))))
    driver = connection.connection.driver_connection
    try:
        driver.execute("PRAGMA busy_timeout = 200")  # type: ignore[union-attr]
        driver.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            return False
        raise
    finally:
        driver.execute("PRAGMA busy_timeout = 5000")  # type: ignore[union-attr]
    return True


def _record(result: UploadResult, clean: CleanChunk, rows_read: int) -> None:
    result.rows_read += rows_read
    result.rows_loaded += clean.row_count
    result.rows_rejected += len(clean.rejected)
    room = SHOWN_REASONS - len(result.first_rejections)
    if room > 0:
        result.first_rejections.extend((line, reason) for line, _, reason in sorted(clean.rejected)[:room])


def _retire_loads(connection: Connection, load_id: int) -> int:
    """--replace: every current load is marked replaced (its people go with the swap)."""
    retired = connection.execute(
        update(Load).where(Load.status == "loaded", Load.id != load_id).values(status="replaced")
    )
    return retired.rowcount or 0


class _Pipeline:
    """Writes chunk N on a worker thread while the main thread reads and cleans
    chunk N+1. The database does its part (sqlite3_step, PostgreSQL's COPY) without
    holding Python's GIL, so on two cores the two overlap. At most one chunk is in
    flight; a write error surfaces at the next submit or on exit, and the
    transaction then rolls back as for any other failure.
    """

    def __init__(self, write: Callable[[CleanChunk], None]) -> None:
        self._write = write
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="census-writer")
        self._in_flight: Future[None] | None = None

    def submit(self, clean: CleanChunk) -> None:
        self._wait()
        self._in_flight = self._executor.submit(self._write, clean)

    def _wait(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()

    def __enter__(self) -> _Pipeline:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self._wait()
            elif self._in_flight is not None:
                # Let the write finish (it cannot be interrupted) before the rollback.
                wait([self._in_flight])
        finally:
            self._executor.shutdown(wait=True)


def _writer_for(connection: Connection, load_id: int, replace: bool, estimated_rows: int) -> _BulkWriter:
    """Bulk mode (indexes built once at the end) for a first load, a --replace,
    or an append large next to the table; otherwise rows go into the live table.
    On PostgreSQL bulk mode writes a table nobody reads yet: the staging table
    swapped in for person, or a large append's own load table."""
    dialect = connection.dialect.name
    existing = int(connection.scalar(select(func.count()).select_from(Person.__table__)) or 0)
    bulk = replace or existing == 0 or estimated_rows > APPEND_IN_PLACE_SHARE[dialect] * existing
    if dialect != "postgresql":
        rows_after = estimated_rows + (0 if replace else existing)
        return _SqliteWriter(connection, load_id, bulk=bulk, replace=replace, rows_after=rows_after)
    if not bulk:
        return _PostgresWriter(connection, load_id, target=Person.__tablename__)
    if replace or existing == 0:
        return _PostgresWriter(connection, load_id, target=STAGING_TABLE)
    if len(load_tables(connection)) < MAX_LOAD_TABLES:
        return _PostgresWriter(connection, load_id, target=f"{LOAD_TABLE_PREFIX}{load_id}")
    return _PostgresWriter(connection, load_id, target=STAGING_TABLE, keep_existing=True)


class _BulkWriter:
    """Writes people with each database's fast bulk path, not one ORM object per row.

    Building an index once is far cheaper than updating it a million times, so
    in bulk mode the indexes are built after the rows are in (PostgreSQL's own
    "Populating a Database" advice)."""

    def __init__(self, connection: Connection, load_id: int, bulk: bool) -> None:
        self.connection = connection
        self.load_id = load_id
        self.bulk = bulk
        self.target = Person.__tablename__

    def begin(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def write(self, clean: CleanChunk) -> None:
        if clean.row_count:
            self._write_people(clean.matrix)
        if clean.rejected:
            self.connection.execute(
                insert(RejectedRow),
                [
                    {
                        "load_id": self.load_id,
                        "line_number": line,
                        "raw_text": _storable(raw, RAW_TEXT_CHARS),
                        "reason": _storable(reason, RAW_TEXT_CHARS),
                    }
                    for line, raw, reason in clean.rejected
                ],
            )

    def _write_people(self, matrix: np.ndarray) -> None:
        raise NotImplementedError


def _storable(value: str, limit: int) -> str:
    """Text any database stores: NUL written as \x00, and long text cut, noting its length."""
    value = value.replace("\x00", "\\x00")
    if len(value) > limit:
        value = f"{value[:limit]}... [cut: {len(value):,} characters in all]"
    return value


class _SqliteWriter(_BulkWriter):
    """Many rows per INSERT statement, from the cleaner's matrix.

    One statement per row (executemany of tuples) spent half its time in
    per-statement work (binding, resetting, AUTOINCREMENT's bookkeeping) and
    needed a Python tuple per person; an INSERT of SQLITE_ROWS_PER_STATEMENT
    rows takes each group's values as one flat list (numpy's tolist). A missing
    label is MISSING_ID in the matrix and the statement makes it NULL (see _insert_sql)."""

    def __init__(self, connection: Connection, load_id: int, bulk: bool, replace: bool, rows_after: int) -> None:
        super().__init__(connection, load_id, bulk)
        self.replace = replace
        self.rows_after = rows_after  # estimated: what the index builds will sort
        self._statements: dict[int, str] = {}

    def _insert_sql(self, rows: int) -> str:
        """INSERT of `rows` rows (compiled once per size: SQLite caches the plan).

        OR FAIL: a failing constraint stops the statement without undoing its
        earlier rows, so SQLite keeps no statement journal (a copy of every page
        each statement changes, to undo it alone); any failure rolls back the
        whole upload anyway. A missing label (MISSING_ID) becomes NULL through
        CASE on a numbered parameter, not NULLIF(?, 0): SQLite journals a
        statement that calls a function, as one that may fail midway. With the
        indexes in place, either journal doubled an append: 1,000,000 rows onto
        as many took 6.1-6.3 s to write, against 3.4 s."""
        statement = self._statements.get(rows)
        if statement is None:
            width = len(PERSON_COLUMNS)
            records = (
                "(" + ", ".join(_value_sql(first + position, position) for position in range(width)) + ")"
                for first in range(1, rows * width, width)
            )
            statement = f"INSERT OR FAIL INTO person ({', '.join(PERSON_COLUMNS)}) VALUES {', '.join(records)}"
            self._statements[rows] = statement
        return statement

    def begin(self) -> None:
        if self.replace:
            # DELETE, not DROP: the table's AUTOINCREMENT counter (and so the ids
            # never reused) survives; readers keep their snapshot until commit (WAL).
            self.connection.execute(Person.__table__.delete())
        if self.bulk:
            for index in Person.__table__.indexes:
                index.drop(self.connection)
        else:
            self._cache_kib = self.connection.exec_driver_sql("PRAGMA cache_size").scalar()
            self.connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_APPEND_CACHE_KIB}")

    def finish(self) -> None:
        if not self.bulk:
            self.connection.exec_driver_sql(f"PRAGMA cache_size={self._cache_kib}")
        else:
            # Each index build sorts every row; helper threads sort in parallel
            # (the other core is idle by now), which pays on large builds only.
            if self.rows_after >= SQLITE_SORT_THREADS_FROM:
                self.connection.exec_driver_sql(f"PRAGMA threads={SQLITE_SORT_THREADS}")
            for index in Person.__table__.indexes:
                index.create(self.connection)

    def _write_people(self, matrix: np.ndarray) -> None:
        cursor = self.connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            start = 0
            for per in STATEMENT_SIZES:
                whole = (len(matrix) - start) // per * per
                if not whole:
                    continue
                groups = matrix[start : start + whole].reshape(-1, per * matrix.shape[1])
                # A generator: one group's Python ints exist at a time.
                cursor.executemany(self._insert_sql(per), (group.tolist() for group in groups))
                start += whole
        finally:
            cursor.close()


def _value_sql(number: int, position: int) -> str:
    """Parameter `number` of an INSERT, for the person column at `position`."""
    if position in NULLABLE_POSITIONS:
        return f"CASE ?{number} WHEN {MISSING_ID} THEN NULL ELSE ?{number} END"
    return f"?{number}"


# SQLITE_ROWS_PER_STATEMENT rows per statement, then powers of two for the rest
# of a chunk. Chunks end at line boundaries, so their sizes vary: a statement for
# each remainder size (up to 199 of them, each compiled and kept in the driver's
# statement cache) cost several MiB; the powers of two are eight sizes.
STATEMENT_SIZES = (SQLITE_ROWS_PER_STATEMENT, 128, 64, 32, 16, 8, 4, 2, 1)


class _PostgresWriter(_BulkWriter):
    """COPY into one of three targets, by `target`:

    - `person` itself: a small append (its indexes are maintained row by row).
    - `person_staging`, swapped in for person at the end (a first load, a
      --replace, or an append that merges the load tables): dropping the live
      table's indexes and foreign keys (as the loader did) takes an ACCESS
      EXCLUSIVE lock for the whole load, so every reader waited (16 s for a
      million rows). Instead the rows (and, to merge, the current ones) go into
      the staging table, which nobody reads; its indexes and foreign keys are
      built there; then a few renames swap it in, holding the exclusive lock
      for milliseconds.
    - `person_load_<id>`, a large append's own table: built the same way, then
      attached to person as an inheritance child. Only the new rows are
      indexed, where copying the current rows into the staging table made an
      append of 1,000,000 rows onto as many index 2,000,000 (1.6x an empty load).

    Every target draws ids from person's sequence, so ids stay increasing and
    are never reused."""

    def __init__(self, connection: Connection, load_id: int, target: str, keep_existing: bool = False) -> None:
        super().__init__(connection, load_id, bulk=target != Person.__tablename__)
        self.target = target
        self.keep_existing = keep_existing
        self.swap = target == STAGING_TABLE

    def begin(self) -> None:
        if not self.bulk:
            return
        run = self.connection.exec_driver_sql
        # Nothing else may write person meanwhile; readers (ACCESS SHARE) go on.
        run("LOCK TABLE person IN SHARE MODE")
        run(f"DROP TABLE IF EXISTS {self.target}")
        run(f"CREATE TABLE {self.target} (LIKE person INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        if self.keep_existing:
            run(f"INSERT INTO {self.target} SELECT * FROM person")  # with the load tables' rows

    def finish(self) -> None:
        if not self.bulk:
            return
        # Index builds sort in memory when they may; the default 64 MB spills to disk.
        self.connection.execute(select(func.set_config("maintenance_work_mem", "256MB", True)))
        catalog = _PersonCatalog.read(self.connection)
        suffix = "__staging" if self.swap else f"__load{self.load_id}"
        self._build_like_person(catalog, suffix)
        if self.swap:
            self._swap_in(catalog)
        else:
            # Readers of person see the new rows from the commit on; the lock
            # this takes on person (SHARE UPDATE EXCLUSIVE) lets them read meanwhile.
            self.connection.exec_driver_sql(f"ALTER TABLE {self.target} INHERIT person")

    def _build_like_person(self, catalog: _PersonCatalog, suffix: str) -> None:
        """Give the target what person has (read from the catalog, so indexes
        added outside the models survive too), under names ending in `suffix`."""
        run = self.connection.exec_driver_sql
        for name, definition in catalog.key_constraints:
            run(f"ALTER TABLE {self.target} ADD CONSTRAINT {name}{suffix} {definition}")
        for name, definition in catalog.indexes:
            run(_retarget_index(definition, name, self.target, suffix))
        for name, definition in catalog.foreign_keys:
            # NOT VALID: enforced for every later write, but the rows already in are
            # not re-checked (one scan of the table per key, ten in all, a third of
            # the build): every key was read from the dimension tables in this
            # transaction, which holds them in SHARE mode (see _load), as SQLite's
            # load runs with foreign_keys off for the same reason.
            definition = definition.removesuffix(" NOT VALID")
            run(f"ALTER TABLE {self.target} ADD CONSTRAINT {name} {definition} NOT VALID")

    def _swap_in(self, catalog: _PersonCatalog) -> None:
        """The only statements that hold person's exclusive lock."""
        run = self.connection.exec_driver_sql
        run("LOCK TABLE person IN ACCESS EXCLUSIVE MODE")  # and its load tables
        for view in catalog.views:
            run(f"DROP {view.kind} {view.name}")
        if catalog.sequence:
            run(f"ALTER SEQUENCE {catalog.sequence} OWNED BY {STAGING_TABLE}.id")
        for name in load_tables(self.connection):  # their rows were retired or merged
            run(f"DROP TABLE {name}")
        run("DROP TABLE person")
        run(f"ALTER TABLE {STAGING_TABLE} RENAME TO person")
        for name, _ in catalog.key_constraints:
            run(f"ALTER TABLE person RENAME CONSTRAINT {name}__staging TO {name}")
        for name, _ in catalog.indexes:
            run(f"ALTER INDEX {name}__staging RENAME TO {name}")
        for view in catalog.views:
            run(f"CREATE {view.kind} {view.name} AS {view.definition}")
        if not catalog.views:  # a database from before the view existed
            self.connection.execute(PEOPLE_VIEW)
        for grant in catalog.grants:
            run(grant)

    def _write_people(self, matrix: np.ndarray) -> None:
        from psycopg2 import sql

        # pyarrow formats the matrix as CSV in C++ (csv.writer needed a tuple per
        # row and was 6x slower). A missing label is MISSING_ID: COPY's NULL
        # string, which FORCE_NOT_NULL keeps from meaning NULL in other columns.
        columns = np.ascontiguousarray(matrix.T)
        # Arrays over numpy's buffers (pa.array() would import pandas: 50 MB).
        arrays = [pa.Array.from_buffers(pa.int64(), len(column), [None, pa.py_buffer(column)]) for column in columns]
        table = pa.Table.from_arrays(arrays, names=list(PERSON_COLUMNS))
        sink = pa.BufferOutputStream(ARROW_POOL)
        pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False), memory_pool=ARROW_POOL)
        buffer = io.BytesIO(sink.getvalue().to_pybytes())
        nullable = {PERSON_COLUMNS[position] for position in NULLABLE_POSITIONS}
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL {}, FORCE_NOT_NULL ({}){})").format(
            sql.Identifier(self.target),
            sql.SQL(", ").join(map(sql.Identifier, PERSON_COLUMNS)),
            sql.Literal(str(MISSING_ID)),
            sql.SQL(", ").join(sql.Identifier(column) for column in PERSON_COLUMNS if column not in nullable),
            # A bulk target was created in this transaction: its rows can be
            # written frozen, so later scans (index builds) need not set hint bits.
            sql.SQL(", FREEZE" if self.bulk else ""),
        )
        cursor = self.connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        # psycopg2 sends 8 kB at a time by default; 1 MB blocks took the COPY of a
        # 1,000,000-row file from 5.3 s to 3.4 s.
        cursor.copy_expert(statement, buffer, size=1 << 20)
        cursor.close()


@dataclass(frozen=True)
class _View:
    name: str
    kind: str  # "VIEW" or "MATERIALIZED VIEW"
    definition: str


@dataclass(frozen=True)
class _PersonCatalog:
    """What the live person table has beyond its columns, from PostgreSQL's catalog."""

    key_constraints: list[tuple[str, str]]  # primary key / unique: (name, definition)
    indexes: list[tuple[str, str]]  # other indexes: (name, CREATE INDEX statement)
    foreign_keys: list[tuple[str, str]]
    views: list[_View]  # views reading person (dropped and created again around the swap)
    grants: list[str]  # privileges of other roles on person and those views
    sequence: str | None

    @classmethod
    def read(cls, connection: Connection) -> _PersonCatalog:
        constraints = connection.execute(
            text(
                "SELECT conname, contype, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
                "WHERE conrelid = 'person'::regclass AND contype IN ('p', 'u', 'f') ORDER BY conname"
            )
        ).all()
        indexes = connection.execute(
            text(
                "SELECT i.relname, pg_get_indexdef(i.oid) AS definition FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = 'person'::regclass "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) ORDER BY i.relname"
            )
        ).all()
        views = connection.execute(
            text(
                "SELECT DISTINCT v.relname, v.relkind, pg_get_viewdef(v.oid) AS definition FROM pg_depend d "
                "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
                "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = 'person'::regclass "
                "AND v.oid <> 'person'::regclass ORDER BY v.relname"
            )
        ).all()
        names = ["person", *(view.relname for view in views)]
        grants = connection.execute(
            text(
                "SELECT table_name, grantee, privilege_type FROM information_schema.role_table_grants "
                "WHERE table_schema = current_schema() AND table_name = ANY(:names) AND grantee <> current_user"
            ),
            {"names": names},
        ).all()
        return cls(
            key_constraints=[(row.conname, row.definition) for row in constraints if row.contype in ("p", "u")],
            indexes=[(row.relname, row.definition) for row in indexes],
            foreign_keys=[(row.conname, row.definition) for row in constraints if row.contype == "f"],
            views=[
                _View(row.relname, "MATERIALIZED VIEW" if row.relkind == "m" else "VIEW", row.definition.rstrip(";"))
                for row in views
            ],
            grants=[f'GRANT {row.privilege_type} ON {row.table_name} TO "{row.grantee}"' for row in grants],
            sequence=connection.scalar(text("SELECT pg_get_serial_sequence('person', 'id')")),
        )


_INDEX_TARGET = re.compile(r"^(CREATE (?:UNIQUE )?INDEX )(\S+)( ON (?:ONLY )?)(?:\S+\.)?person( )")


def _retarget_index(definition: str, name: str, table: str, suffix: str) -> str:
    """person's CREATE INDEX statement, for `table` under the name `name + suffix`."""
    statement, count = _INDEX_TARGET.subn(rf"\g<1>{name}{suffix}\g<3>{table}\g<4>", definition)
    if count != 1:
        raise RuntimeError(f"cannot rebuild index {name} on table {table}: {definition}")
    return statement


def _summary(result: UploadResult, source: Path, where: str) -> str:
    if result.already_loaded:
        same = ""
        if result.same_rows_as is not None:
            same = f" (the same rows as {result.same_rows_as})" if result.same_rows_as != source.name else ""
        return (
            f"{source.name} is already loaded in {where}{same} (load #{result.load_id}); "
            "nothing to do. Use --replace to load it again."
        )
    lines = [
        f"{source.name} -> {where}: read {result.rows_read:,} rows, loaded {result.rows_loaded:,}, "
        f"rejected {result.rows_rejected:,} (load #{result.load_id}, {result.seconds:.1f} s)"
    ]
    if result.replaced_loads:
        lines.append(f"replaced the people of {result.replaced_loads} earlier load(s)")
    for line, reason in result.first_rejections:
        lines.append(f"  rejected line {line}: {shorten(reason, 300)}")
    if result.rows_rejected > len(result.first_rejections):
        lines.append(f"  ... every rejected row is kept in table rejected_row (load_id = {result.load_id})")
    return "\n".join(lines)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _database_error(error: BaseException) -> BaseException | None:
    """The driver's own error behind `error`, if it is one (SQLAlchemy wraps what
    goes through it; the raw cursors used for bulk writes raise it bare)."""
    if isinstance(error, DBAPIError):
        return error.orig or error
    if isinstance(error, sqlite3.Error) or type(error).__module__.startswith("psycopg2"):
        return error
    return None


def _root_database_error(error: BaseException) -> BaseException | None:
    """The first database error in the chain: when the server goes away midway,
    the rollback fails with "connection already closed" and would hide the
    server's own reason (e.g. "terminating connection due to administrator command")."""
    found = None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _database_error(current) or found
        current = current.__cause__ or current.__context__
    return found


def failure(error: BaseException, source: Path, where: str) -> tuple[int, str]:
    """Every way an upload can fail, as (exit status, one-line message). The one
    place the statuses are decided; the README's table lists them."""
    nothing = "nothing was loaded"
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED, f"error: interrupted; {nothing}"
    if isinstance(error, StrictModeError):
        return EXIT_REJECTED, f"error: {error}; {nothing}"
    if isinstance(error, UploadBusy):
        return EXIT_BUSY, f"error: {error}; {nothing}"
    if isinstance(error, CheckpointFailed):
        return EXIT_UNUSABLE, (
            f"error: {where}: the upload was committed, but its write-ahead log could not be copied into the "
            f"database file ({error}); free disk space, then open the database again to finish the copy"
        )
    if isinstance(error, SourceError):
        return EXIT_UNUSABLE, f"error: {source}: {error}; {nothing}"
    if isinstance(error, UploadRefused | DatabaseUnavailable):
        return EXIT_UNUSABLE, f"error: {error}; {nothing}"
    database_error = _root_database_error(error)
    if database_error is not None:
        reason = _first_line(database_error)
        if "disk is full" in reason or "No space left" in reason:
            reason += " (an upload needs about twice the new data's size free; see the README)"
        return EXIT_UNUSABLE, f"error: {where}: {shorten(reason, 300)}; {nothing}"
    if isinstance(error, OSError):
        name = error.filename if error.filename is not None else source
        return EXIT_UNUSABLE, f"error: {name}: {error.strerror or _first_line(error)}; {nothing}"
    if isinstance(error, EOFError | ValueError):  # e.g. a truncated .gz file
        return EXIT_UNUSABLE, f"error: {source}: {shorten(_first_line(error), 300)}; {nothing}"
    return EXIT_UNUSABLE, f"error: unexpected {type(error).__name__}: {shorten(_first_line(error), 300)}; {nothing}"


def _server_state(engine: Engine) -> str:
    """Why the server dropped the upload's connection: libpq loses the server's
    last words when it is sending COPY data, so ask the server again."""
    engine.dispose()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as error:
        return f"the server now says: {_first_line(error.orig or error)}"
    return "the server is up: it ended this session (pg_terminate_backend, a restart or a crash)"


def _quiet_driver_reports(previous: Callable[..., Any]) -> Callable[..., Any]:
    """sys.excepthook without psycopg2's stray reports.

    When the server ends the connection during a COPY, libpq can take the
    server's last message (e.g. "terminating connection due to administrator
    command") as a notice; psycopg2 then fails to decode it while its own error
    is already set ("SystemError: <function decode> returned a result with an
    exception set") and calls PyErr_Print, which goes through sys.excepthook:
    the error and a traceback appeared on stderr before the one-line message
    (only under load, when the send fails before the reply is read). The same
    error also reaches the upload the ordinary way, so the report is dropped."""

    def hook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
        if any(type(link).__module__.startswith("psycopg2") for link in _chain(error)):
            return
        previous(kind, error, traceback)

    return hook


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders.upload", description=__doc__.splitlines()[0])
    parser.add_argument(
        "source", nargs="?", type=Path, default=DEFAULT_SOURCE, help="CSV or UCI file (default: %(default)s)"
    )
    parser.add_argument("--db", choices=("sqlite", "postgres"), help="which database (default: DATABASE_URL or SQLite)")
    parser.add_argument("--url", help="a SQLAlchemy database URL; overrides --db")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--replace", action="store_true", help="swap the current data for this file's, atomically")
    mode.add_argument(
        "--append", action="store_true", help="add the rows even though another file of this name is loaded"
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help=f"let --replace go ahead with no rows, or with more than {REPLACE_MAX_REJECTED_SHARE:.0%} rejected",
    )
    parser.add_argument("--strict", action="store_true", help="fail the whole upload if any row is rejected")
    parser.add_argument("--encoding", default="utf-8", help="the file's text encoding (default: %(default)s)")
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="how long to wait for another upload to finish (default: %(default)g)",
    )
    parser.add_argument("--skip-space-check", action="store_true", help="do not check free disk space first (SQLite)")
    parser.add_argument("--chunk-size", type=int, default=CHUNK_ROWS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    url = resolve_database_url(args.db, args.url)
    where = describe(url)
    # The CLI speaks in one-line messages (failure() below). When the server goes
    # away midway, libraries log the failed rollback with a traceback through
    # logging's last-resort handler; a handler on the root logger keeps that off stderr.
    logging.getLogger().addHandler(logging.NullHandler())
    sys.excepthook = _quiet_driver_reports(sys.excepthook)
    engine: Engine | None = None
    try:
        if not args.source.exists():
            raise SourceError("no such file")
        engine = make_engine(url)
        wait_for_database(engine, get_settings().connect_timeout_s)
        result = upload(
            engine,
            args.source,
            replace=args.replace,
            append=args.append,
            allow_empty=args.allow_empty,
            strict=args.strict,
            encoding=args.encoding,
            wait_s=args.wait,
            check_space=not args.skip_space_check,
            chunk_size=args.chunk_size,
        )
    except (Exception, KeyboardInterrupt) as error:
        status, message = failure(error, args.source, where)
        if engine is not None and "server closed the connection" in message:
            message = message.replace("; nothing was loaded", f" ({_server_state(engine)}); nothing was loaded")
        print(message, file=sys.stderr)
        return status
    finally:
        if engine is not None:
            engine.dispose()  # closes the connections (SQLite then removes its -wal and -shm files)
    print(_summary(result, args.source, where))
    return EXIT_OK


if __name__ == "__main__":
    exit_status = main()
    # Everything is committed (or rolled back) and closed: skip the interpreter's
    # teardown of numpy, pyarrow and SQLAlchemy, 0.08-0.09 s of every upload.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_status)
