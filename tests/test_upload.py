"""The upload, end to end on real databases: the data's facts, both layouts, rejects,
--strict, idempotence, --replace, atomicity and connection errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, Integer, func, select, text
from sqlalchemy.exc import IntegrityError

from loaders import upload as upload_module
from loaders.cleaner import OUTPUT_COLUMNS
from loaders.upload import StrictModeError, file_sha256, upload
from tests.conftest import INPUT, UCI_DIR, UCI_FIRST_ROW
from warehouse.models import Load, Person, RejectedRow, people
from warehouse.schema import create_schema
from warehouse.tables import list_tables

ROOT = Path(__file__).resolve().parents[1]
HEADER = INPUT.read_text(encoding="utf-8").splitlines()[0]
GOOD = (
    "39,State-gov,77516,Bachelors,13,Never-married,Adm-clerical,Not-in-family,White,Male,2174,0,40,United-States,<=50K"
)
GOOD_2 = "50,?,83311,Masters,14,Married-civ-spouse,?,Husband,White,Male,0,0,13,?,>50K."


def _facts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        row = connection.execute(
            select(
                func.count(),
                func.sum((people.c.income == ">50K").cast(Integer)),
                func.sum(people.c.workclass.is_(None).cast(Integer)),
                func.sum(people.c.occupation.is_(None).cast(Integer)),
                func.sum(people.c.native_country.is_(None).cast(Integer)),
            )
        ).one()
    return dict(zip(["people", "over_50k", "no_workclass", "no_occupation", "no_country"], map(int, row)))


def _people_frame(engine: Engine) -> pd.DataFrame:
    with engine.connect() as connection:
        rows = connection.execute(select(people).order_by(people.c.id)).all()
    return pd.DataFrame(rows, columns=list(people.c.keys())).drop(columns="id")


def _assert_same_people(loaded: pd.DataFrame, expected: pd.DataFrame) -> None:
    def normal(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame[list(expected.columns)].astype(object)
        return frame.where(frame.notna(), None).reset_index(drop=True)

    pd.testing.assert_frame_equal(normal(loaded), normal(expected), check_dtype=False)


def _write(tmp_path: Path, text: str, name: str = "input.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(table)))  # type: ignore[arg-type]


EXPECTED = {"people": 48_842, "over_50k": 11_687, "no_workclass": 2_799, "no_occupation": 2_809, "no_country": 857}


def test_input_dataset_loads_every_person_on_sqlite(sqlite_census_engine: Engine, input_frame: pd.DataFrame) -> None:
    assert _facts(sqlite_census_engine) == EXPECTED
    loaded = _people_frame(sqlite_census_engine)
    # The file's 29 exact duplicate rows are real people: all kept. (Once the income
    # label's trailing dot is normalized, 52 rows repeat an earlier one.)
    raw = pd.read_csv(INPUT, dtype=str, keep_default_na=False)
    assert int(raw.duplicated().sum()) == 29
    assert int(loaded.duplicated().sum()) == int(input_frame.duplicated().sum()) == 52
    # Every value survives the round trip, in input order.
    _assert_same_people(loaded, input_frame)
    with sqlite_census_engine.connect() as connection:
        load = connection.execute(select(Load)).one()
    assert (load.rows_read, load.rows_loaded, load.rows_rejected, load.status) == (48_842, 48_842, 0, "loaded")
    assert load.sha256 == file_sha256(INPUT) and load.source_name == "Input_Dataset.csv"
    assert load.finished_at >= load.started_at


@pytest.mark.postgres
def test_input_dataset_loads_every_person_on_postgres(postgres_census_url: str, input_frame: pd.DataFrame) -> None:
    from warehouse.db import make_engine

    engine = make_engine(postgres_census_url)
    assert _facts(engine) == EXPECTED
    _assert_same_people(_people_frame(engine), input_frame)
    engine.dispose()


def test_uci_files_load_the_same_people(sqlite_engine: Engine, sqlite_census_engine: Engine) -> None:
    """The raw UCI layout (excerpts, see tests/data/README.md) loads the same people as
    the corresponding rows of Input_Dataset.csv: `, `, the preamble line, the dotted
    labels and `?` make no difference."""
    census = _people_frame(sqlite_census_engine)
    expected = []
    for name in ("adult.data", "adult.test"):
        people = sum(1 for line in (UCI_DIR / name).read_text().splitlines() if line and not line.startswith("|"))
        result = upload(sqlite_engine, UCI_DIR / name, progress=False)
        assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (people, people, 0), name
        expected.append(census.iloc[UCI_FIRST_ROW[name] : UCI_FIRST_ROW[name] + people])
    loaded = _people_frame(sqlite_engine)
    pd.testing.assert_frame_equal(loaded, pd.concat(expected, ignore_index=True))
    # The quirks were there to be handled: missing values and both income labels.
    facts = _facts(sqlite_engine)
    assert min(facts["no_workclass"], facts["no_occupation"], facts["no_country"], facts["over_50k"]) > 0, facts


def test_header_variants_bom_crlf_order_and_extra_columns(
    sqlite_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    names = HEADER.split(",")
    hyphenated = [
        n.replace("_", "-").replace("gender", "sex").replace("education-num", "educational-num") for n in names
    ]
    order = list(range(len(names)))[::-1]  # columns in reverse order, plus an extra one
    header = ",".join(["note", *(hyphenated[i] for i in order)])
    lines = [",".join(["x", *(row.split(",")[i] for i in order)]) for row in (GOOD, GOOD_2)]
    path = _write(Path(sqlite_engine.url.database).parent, "\ufeff" + "\r\n".join([header, *lines]) + "\r\n")
    result = upload(sqlite_engine, path, progress=False)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (2, 2, 0)
    assert "ignoring column(s) note" in capsys.readouterr().err
    frame = _people_frame(sqlite_engine)
    assert frame.loc[0, "workclass"] == "State-gov" and frame.loc[0, "capital_gain"] == 2174
    assert frame.loc[1, "income"] == ">50K" and pd.isna(frame.loc[1, "native_country"])
    assert frame.loc[1, "gender"] == "Male" and frame.loc[1, "education_num"] == 14


def test_missing_columns_fail_with_their_names(tmp_path: Path, sqlite_engine: Engine) -> None:
    header = HEADER.replace(",fnlwgt", "").replace(",income", "")
    path = _write(tmp_path, header + "\n1,2\n")
    with pytest.raises(upload_module.SourceError, match="lacks column\\(s\\) fnlwgt, income"):
        upload(sqlite_engine, path, progress=False)


BAD_ROWS = {
    "200,State-gov,77516,Bachelors,13,Never-married,Adm-clerical,Not-in-family,White,Male,0,0,40,United-States,<=50K": "age: 200 is outside the allowed range 16..100",
    "39,State-gov,77516,Bachelors,12,Never-married,Adm-clerical,Not-in-family,White,Male,0,0,40,United-States,<=50K": "education_num: 12 does not match education 'Bachelors', which is 13",
    "39,Stat-gov,77516,Bachelors,13,Never-married,Adm-clerical,Not-in-family,White,Male,0,0,40,United-States,<=50K": "workclass: unknown value 'Stat-gov'; did you mean 'State-gov'?",
    "39,State-gov,77516,Bachelors,13,Never-married,Adm-clerical,Not-in-family,White,?,0,0,40,United-States,<=50K": "gender: missing, but it is required",
    "39,State-gov,many,Bachelors,13,Never-married,Adm-clerical,Not-in-family,White,Male,0,0,40,United-States,maybe": "fnlwgt: 'many' is not a whole number; income: unknown value 'maybe'",
    "39,State-gov,77516,Bachelors,13": "expected 15 fields, found 5",
}


def test_bad_rows_are_kept_with_line_and_reason(tmp_path: Path, sqlite_engine: Engine) -> None:
    lines = [HEADER, GOOD, *BAD_ROWS, GOOD_2]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    result = upload(sqlite_engine, path, progress=False)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (8, 2, 6)
    with sqlite_engine.connect() as connection:
        rejected = connection.execute(
            select(RejectedRow.line_number, RejectedRow.raw_text, RejectedRow.reason, RejectedRow.load_id).order_by(
                RejectedRow.line_number
            )
        ).all()
    assert [r.line_number for r in rejected] == [3, 4, 5, 6, 7, 8]
    for row, (raw, reason) in zip(rejected, BAD_ROWS.items()):
        assert row.raw_text == raw
        assert row.reason.startswith(reason), row.reason
        assert row.load_id == result.load_id
    assert _count(sqlite_engine, Person.__table__) == 2


def test_cli_prints_a_summary_with_the_first_reasons(tmp_path: Path) -> None:
    path = _write(tmp_path, "\n".join([HEADER, GOOD, *BAD_ROWS]) + "\n")
    done = _cli(path, "--url", f"sqlite:///{tmp_path / 'cli.db'}")
    assert done.returncode == 0, done.stderr
    assert "read 7 rows, loaded 1, rejected 6" in done.stdout
    assert "rejected line 3: age: 200 is outside the allowed range 16..100" in done.stdout
    assert "every rejected row is kept in table rejected_row" in done.stdout


def test_strict_fails_the_whole_upload(tmp_path: Path, sqlite_engine: Engine) -> None:
    path = _write(tmp_path, "\n".join([HEADER, GOOD, *list(BAD_ROWS)[:1]]) + "\n")
    with pytest.raises(StrictModeError, match="line 3 rejected: age: 200"):
        upload(sqlite_engine, path, strict=True, progress=False)
    assert _count(sqlite_engine, Person.__table__) == 0
    assert _count(sqlite_engine, Load.__table__) == 0
    done = _cli(path, "--strict", "--url", str(sqlite_engine.url))
    assert done.returncode == 1
    assert "nothing was loaded" in done.stderr


def test_same_file_twice_is_a_no_op(tmp_path: Path, sqlite_engine: Engine) -> None:
    path = _write(tmp_path, "\n".join([HEADER, GOOD, GOOD_2]) + "\n")
    first = upload(sqlite_engine, path, progress=False)
    second = upload(sqlite_engine, path, progress=False)
    assert not first.already_loaded and second.already_loaded and second.load_id == first.load_id
    assert _count(sqlite_engine, Person.__table__) == 2
    done = _cli(path, "--url", str(sqlite_engine.url))
    assert done.returncode == 0 and "already loaded" in done.stdout


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_replace_swaps_the_data(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    engine: Engine = request.getfixturevalue(f"{backend}_engine")
    old = _write(tmp_path, "\n".join([HEADER, GOOD, GOOD, GOOD]) + "\n", "old.csv")
    new = _write(tmp_path, "\n".join([HEADER, GOOD_2]) + "\n", "new.csv")
    upload(engine, old, progress=False)
    result = upload(engine, new, replace=True, progress=False)
    assert result.replaced_loads == 1
    frame = _people_frame(engine)
    assert len(frame) == 1 and frame.loc[0, "education"] == "Masters"
    with engine.connect() as connection:
        statuses = dict(connection.execute(select(Load.source_name, Load.status)).all())
    assert statuses == {"old.csv": "replaced", "new.csv": "loaded"}
    # --replace with the file already loaded loads it again rather than doing nothing.
    again = upload(engine, new, replace=True, progress=False)
    assert not again.already_loaded and len(_people_frame(engine)) == 1


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_failure_midway_leaves_the_database_unchanged(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine: Engine = request.getfixturevalue(f"{backend}_engine")
    first = _write(tmp_path, "\n".join([HEADER, GOOD]) + "\n", "first.csv")
    upload(engine, first, progress=False)
    before = (_people_frame(engine), _count(engine, Load.__table__))

    # A failure after two chunks were written: a real write path that breaks midway.
    real_write = upload_module._BulkWriter.write
    calls = {"n": 0}

    def failing_write(self: upload_module._BulkWriter, clean: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk on fire")
        real_write(self, clean)  # type: ignore[arg-type]

    monkeypatch.setattr(upload_module._BulkWriter, "write", failing_write)
    with pytest.raises(OSError, match="disk on fire"):
        upload(engine, INPUT, chunk_size=10_000, progress=False)
    assert calls["n"] == 3
    monkeypatch.undo()
    pd.testing.assert_frame_equal(_people_frame(engine), before[0])
    assert _count(engine, Load.__table__) == before[1]
    # --replace that fails must not lose the current data either.
    monkeypatch.setattr(upload_module._BulkWriter, "write", failing_write)
    calls["n"] = 0
    with pytest.raises(OSError):
        upload(engine, INPUT, replace=True, chunk_size=10_000, progress=False)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(_people_frame(engine), before[0])


def _resampled(tmp_path: Path, name: str, rows: int, seed: int) -> Path:
    """`rows` people drawn from the input (a file of other rows for each seed)."""
    frame = pd.read_csv(INPUT).sample(n=rows, replace=True, random_state=seed)
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _index_columns(connection: Connection, table: str) -> set[str]:
    """Each index's column list on `table`, from pg_indexes (names differ per table)."""
    definitions = connection.scalars(text("SELECT indexdef FROM pg_indexes WHERE tablename = :t"), {"t": table})
    return {definition.split(" USING ", 1)[1] for definition in definitions}


@pytest.mark.parametrize("rows", [2_000, 120_000])
def test_sqlite_appends_keep_every_value_in_place_or_rebuilt(tmp_path: Path, sqlite_engine: Engine, rows: int) -> None:
    """An append of up to twice the current rows goes into the indexed table (one
    SQL statement per 200 people, missing labels written as NULL by CASE); a
    larger one drops and rebuilds the indexes. Either way every value lands and
    the indexes are all there."""
    first = _resampled(tmp_path, "first.csv", 50_000, seed=1)
    more = _resampled(tmp_path, "more.csv", rows, seed=2)
    upload(sqlite_engine, first, progress=False)
    assert upload_module.APPEND_IN_PLACE_SHARE["sqlite"] * 50_000 > 2_000  # in place
    assert upload_module.APPEND_IN_PLACE_SHARE["sqlite"] * 50_000 < 120_000  # rebuilt
    result = upload(sqlite_engine, more, progress=False)
    with sqlite_engine.connect() as connection:
        appended = connection.execute(
            select(people).join(Person.__table__, Person.id == people.c.id).where(Person.load_id == result.load_id)
        ).all()
        indexes = set(
            connection.scalars(text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'person'"))
        )
    expected = pd.read_csv(more, dtype=str, keep_default_na=False)
    loaded = pd.DataFrame(appended, columns=list(people.c.keys())).drop(columns="id")
    assert len(loaded) == rows
    # A '?' in the file is a missing value: NULL in person (not id 0, which the
    # view's LEFT JOIN would also show as no label).
    with sqlite_engine.connect() as connection:
        for column in ("workclass", "occupation", "native_country"):
            key = Person.__table__.c[f"{column}_id"]
            counts = select(func.count(key), func.count()).where(Person.load_id == result.load_id)
            written, everyone = connection.execute(counts).one()
            assert everyone - written == int((expected[column] == "?").sum()) > 0
            assert int(loaded[column].isna().sum()) == everyone - written
    assert loaded["age"].tolist() == expected["age"].astype(int).tolist()
    assert {index.name for index in Person.__table__.indexes} <= indexes
    assert _count(sqlite_engine, people) == 50_000 + rows


def test_a_constraint_failing_midway_through_an_in_place_append_loads_nothing(
    tmp_path: Path, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """INSERT OR FAIL keeps the rows a failing statement wrote before the failure:
    the upload's rollback must still take every row of the append away."""
    upload(sqlite_engine, _resampled(tmp_path, "first.csv", 20_000, seed=1), progress=False)
    before = (_people_frame(sqlite_engine), _count(sqlite_engine, Load.__table__))
    real_clean = upload_module.Cleaner.clean_chunk
    chunks = {"n": 0}

    def clean_with_a_bad_age(self: object, chunk: object) -> object:
        clean = real_clean(self, chunk)  # type: ignore[arg-type]
        chunks["n"] += 1
        if chunks["n"] == 2:
            clean.matrix[150, 1 + OUTPUT_COLUMNS.index("age")] = 500  # the 151st row of a 200-row statement
        return clean

    monkeypatch.setattr(upload_module.Cleaner, "clean_chunk", clean_with_a_bad_age)
    more = _resampled(tmp_path, "more.csv", 12_000, seed=2)  # in place: under twice the current rows
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed: ck_person_age_range"):
        upload(sqlite_engine, more, chunk_size=5_000, progress=False)
    assert chunks["n"] >= 2
    pd.testing.assert_frame_equal(_people_frame(sqlite_engine), before[0])
    assert _count(sqlite_engine, Load.__table__) == before[1]


@pytest.mark.postgres
def test_large_appends_on_postgres_index_only_their_own_rows(tmp_path: Path, postgres_engine: Engine) -> None:
    """A large append loads into a table of its own that inherits from person:
    readers see every person through person and the people view, the new table
    has person's indexes and enforced foreign keys, the explorer does not list
    it, and the fifth one merges them all back into person."""
    engine = postgres_engine
    upload(engine, _resampled(tmp_path, "first.csv", 1_500, seed=0), progress=False)
    appended = [
        upload(engine, _resampled(tmp_path, f"more{n}.csv", 1_500, seed=n), progress=False)
        for n in range(1, upload_module.MAX_LOAD_TABLES + 1)
    ]
    with engine.connect() as connection:
        children = upload_module.load_tables(connection)
        assert children == [f"person_load_{result.load_id}" for result in appended]
        assert int(connection.scalar(text(f"SELECT count(*) FROM ONLY {children[0]}"))) == 1_500
        assert _index_columns(connection, children[0]) == _index_columns(connection, "person")
        ids = connection.execute(text("SELECT load_id, min(id), max(id) FROM person GROUP BY load_id ORDER BY 1")).all()
        assert all(earlier[2] < later[1] for earlier, later in zip(ids, ids[1:]))  # ids keep increasing
        assert "person_load" not in " ".join(name for name, _ in list_tables(connection))
        with pytest.raises(IntegrityError, match="fk_person_gender_id_gender"):
            connection.execute(
                text(f"UPDATE {children[0]} SET gender_id = 99 WHERE id = (SELECT min(id) FROM {children[0]})")
            )
    assert _count(engine, people) == 1_500 * (1 + upload_module.MAX_LOAD_TABLES)
    # A role that may read person and people (the Docker set-up's census_reader)
    # reads the load tables' rows through them, with no grant of its own on them.
    with engine.begin() as connection:
        connection.execute(text("DROP ROLE IF EXISTS append_reader"))
        connection.execute(text("CREATE ROLE append_reader"))
        connection.execute(text("GRANT SELECT ON person, people TO append_reader"))
    with engine.connect() as connection:
        connection.execute(text("SET ROLE append_reader"))
        assert connection.scalar(select(func.count()).select_from(people)) == 1_500 * (
            1 + upload_module.MAX_LOAD_TABLES
        )
        connection.rollback()

    merged = upload(engine, _resampled(tmp_path, "merge.csv", 1_500, seed=99), progress=False)
    with engine.connect() as connection:
        assert upload_module.load_tables(connection) == []
        loads = connection.execute(select(Person.load_id, func.count()).group_by(Person.load_id)).all()
    assert sorted(loads) == sorted(
        [(appended[0].load_id - 1, 1_500), *((r.load_id, 1_500) for r in [*appended, merged])]
    )

    # --replace drops the load tables with the people they held.
    upload(engine, _resampled(tmp_path, "after.csv", 1_500, seed=100), progress=False)
    upload(engine, _resampled(tmp_path, "replacement.csv", 700, seed=101), replace=True, progress=False)
    with engine.connect() as connection:
        assert upload_module.load_tables(connection) == []
    assert _count(engine, people) == 700
    with engine.begin() as connection:
        connection.execute(text("DROP OWNED BY append_reader"))
        connection.execute(text("DROP ROLE append_reader"))


def test_a_file_that_is_not_utf8_fails_naming_the_line(tmp_path: Path, sqlite_engine: Engine) -> None:
    lines = [HEADER, *([GOOD] * 30_000), GOOD.replace("State-gov", "Stäte-gov"), GOOD]
    path = _write(tmp_path, "\n".join(lines) + "\n", encoding="latin-1")
    done = _cli(path, "--url", str(sqlite_engine.url))
    assert done.returncode == 2
    assert "line 30002: the file is not UTF-8 text" in done.stderr
    assert "nothing was loaded" in done.stderr and "Traceback" not in done.stderr
    create_schema(sqlite_engine)
    assert _count(sqlite_engine, Person.__table__) == 0


def _cli(source: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loaders.upload", str(source), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_cli_reports_a_server_that_is_down_without_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, "\n".join([HEADER, GOOD]) + "\n")
    env = {"DATABASE_CONNECT_TIMEOUT": "2", "PATH": "/usr/bin:/bin"}
    done = _cli(path, "--url", "postgresql://census:pw@127.0.0.1:9/census", env=env)
    assert done.returncode == 2
    assert "cannot connect to PostgreSQL at 127.0.0.1:9/census" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_reports_a_wrong_url(tmp_path: Path) -> None:
    path = _write(tmp_path, "\n".join([HEADER, GOOD]) + "\n")
    done = _cli(path, "--url", "mysql://nobody@localhost/x")
    assert done.returncode == 2
    assert "unsupported database 'mysql'" in done.stderr


@pytest.mark.postgres
def test_cli_reports_a_wrong_database_name_at_once(tmp_path: Path, postgres_server: object) -> None:
    path = _write(tmp_path, "\n".join([HEADER, GOOD]) + "\n")
    url = postgres_server.url("no_such_db")  # type: ignore[attr-defined]
    done = _cli(path, "--url", url, env={"DATABASE_CONNECT_TIMEOUT": "60", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert 'database "no_such_db" does not exist' in done.stderr


@pytest.mark.postgres
def test_cli_switch_loads_postgres(tmp_path: Path, postgres_server: object) -> None:
    url = postgres_server.create_database("cli_switch")  # type: ignore[attr-defined]
    path = _write(tmp_path, "\n".join([HEADER, GOOD, GOOD_2]) + "\n")
    env = {"POSTGRES_URL": url, "PATH": "/usr/bin:/bin"}
    done = _cli(path, "--db", "postgres", env=env)
    assert done.returncode == 0, done.stderr
    assert "loaded 2" in done.stdout and "PostgreSQL at 127.0.0.1" in done.stdout


@pytest.mark.postgres
def test_upload_waits_for_a_server_that_is_still_starting(tmp_path: Path) -> None:
    """Like a PostgreSQL container that comes up after the loader: retried, then loaded."""
    from devtools.postgres import PostgresServer

    server = PostgresServer()
    path = _write(tmp_path, "\n".join([HEADER, GOOD]) + "\n")
    env = {"DATABASE_CONNECT_TIMEOUT": "60", "PATH": "/usr/bin:/bin"}
    loader = subprocess.Popen(
        [sys.executable, "-m", "loaders.upload", str(path), "--url", server.url()],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(1.5)
        assert loader.poll() is None  # still waiting, not failed
        server.start()
        out, err = loader.communicate(timeout=60)
    finally:
        server.stop()
    assert loader.returncode == 0, err
    assert "loaded 1" in out


def test_progress_bar_shows_only_when_asked(
    tmp_path: Path, sqlite_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = _write(tmp_path, f"{HEADER}\n{GOOD}\n", name="quiet.csv")
    upload(sqlite_engine, quiet, progress=False)
    assert capsys.readouterr().err == ""
    shown = _write(tmp_path, f"{HEADER}\n{GOOD_2}\n", name="shown.csv")
    upload(sqlite_engine, shown, progress=True)
    bar = capsys.readouterr().err
    assert "shown.csv" in bar and "100%" in bar
