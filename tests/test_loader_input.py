"""Hostile and unusual input files: every bad row becomes a rejected row, every bad
file a one-line message with exit status 2, on real SQLite files and a real
PostgreSQL. (Issue 11, points 2, 3, 6, 7 and 8.)"""

from __future__ import annotations

import gzip
import sqlite3
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from loaders.upload import upload
from tests.test_upload import GOOD, GOOD_2, HEADER, _cli, _count, _people_frame, _write
from warehouse.models import Load, Person, RejectedRow

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _row(**changes: str) -> str:
    """GOOD with some columns changed, by header name."""
    names = HEADER.split(",")
    values = GOOD.split(",")
    for name, value in changes.items():
        values[names.index(name)] = value
    return ",".join(values)


def _rejected(engine: Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(RejectedRow.line_number, RejectedRow.raw_text, RejectedRow.reason).order_by(RejectedRow.line_number)
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.mark.parametrize("backend", BACKENDS)
def test_oversized_field_and_nul_byte_are_rejected_rows(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Point 2: a field over the csv module's 131,072-character limit, and a NUL byte
    (which PostgreSQL cannot store), used to abort the whole upload with a traceback."""
    engine: Engine = request.getfixturevalue(f"{backend}_engine")
    huge = "x" * 200_000
    lines = [HEADER, GOOD, _row(workclass=f'"{huge}"'), _row(occupation="Adm-\x00clerical"), GOOD_2]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    done = _cli(path, "--url", engine.url.render_as_string(hide_password=False))
    assert done.returncode == 0, done.stderr
    assert "read 4 rows, loaded 2, rejected 2" in done.stdout
    # The 200,000-character value is not echoed whole into the summary.
    assert len(done.stdout) < 2_000 and "200,000 characters" in done.stdout
    (line_3, raw_3, reason_3), (line_4, raw_4, reason_4) = _rejected(engine)
    assert (line_3, line_4) == (3, 4)
    assert reason_3.startswith("workclass: value of 200,000 characters is longer than the 100 allowed")
    assert len(reason_3) < 500 and len(raw_3) < 20_000 and "200,"[:3] in raw_3
    assert "contains a NUL byte" in reason_4
    assert "Adm-\\x00clerical" in raw_4  # stored, written as \x00
    assert _count(engine, Person.__table__) == 2


def test_numbers_are_ascii_digits_only(tmp_path: Path, sqlite_engine: Engine) -> None:
    """Point 6: Python's int() reads '3_9', '٣٩' and '３９' as 39; a census file never means that."""
    odd = ["3_9", "\u0663\u0669", "\uff13\uff19", "39\u00b2"]
    lines = [HEADER, GOOD, *(_row(age=value) for value in odd), _row(age="+39"), _row(age=" 39 ")]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    result = upload(sqlite_engine, path, progress=False)
    assert (result.rows_loaded, result.rows_rejected) == (3, 4)
    reasons = [reason for _, _, reason in _rejected(sqlite_engine)]
    for value, reason in zip(odd, reasons):
        assert reason == f"age: {value!r} is not a whole number (ASCII digits 0-9 only)"
    assert set(_people_frame(sqlite_engine)["age"]) == {39}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "body",
    [pytest.param([], id="header-only"), pytest.param([_row(age="x"), _row(gender="?")], id="all-rejected")],
)
def test_replace_refuses_to_empty_the_warehouse(
    tmp_path: Path, backend: str, body: list[str], request: pytest.FixtureRequest
) -> None:
    """Point 3: --replace with nothing loadable used to empty the warehouse and exit 0."""
    engine: Engine = request.getfixturevalue(f"{backend}_engine")
    url = engine.url.render_as_string(hide_password=False)
    upload(engine, _write(tmp_path, "\n".join([HEADER, GOOD, GOOD_2]) + "\n", "old.csv"), progress=False)
    before = _people_frame(engine)
    empty = _write(tmp_path, "\n".join([HEADER, *body]) + "\n", "empty.csv")
    done = _cli(empty, "--replace", "--url", url)
    assert done.returncode == 2, done.stdout
    assert "--replace would empty the warehouse: empty.csv has no loadable rows" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert _people_frame(engine).equals(before)
    with engine.connect() as connection:
        assert connection.execute(select(Load.source_name, Load.status)).all() == [("old.csv", "loaded")]
    # Told so, it does empty it.
    done = _cli(empty, "--replace", "--allow-empty", "--url", url)
    assert done.returncode == 0, done.stderr
    assert _count(engine, Person.__table__) == 0


def test_replace_refuses_a_mostly_rejected_file(tmp_path: Path, sqlite_engine: Engine) -> None:
    upload(sqlite_engine, _write(tmp_path, "\n".join([HEADER, GOOD, GOOD_2]) + "\n", "old.csv"), progress=False)
    bad = _write(tmp_path, "\n".join([HEADER, GOOD, *[_row(age="200")] * 3]) + "\n", "bad.csv")
    done = _cli(bad, "--replace", "--url", str(sqlite_engine.url))
    assert done.returncode == 2
    assert "3 of 4 rows of bad.csv were rejected, more than 10%" in done.stderr
    assert "line 3: age: 200 is outside the allowed range" in done.stderr
    assert _count(sqlite_engine, Person.__table__) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_resaved_copy_is_recognised_and_an_edited_one_refused(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Point 7: the no-op check was on the file's bytes, so a copy re-saved with CRLF
    (or gzipped) loaded everyone again, and an edited file under the same name was
    appended silently."""
    engine: Engine = request.getfixturevalue(f"{backend}_engine")
    url = engine.url.render_as_string(hide_password=False)
    lines = [HEADER, GOOD, GOOD_2, _row(age="x")]
    first = upload(engine, _write(tmp_path, "\n".join(lines) + "\n", "census.csv"), progress=False)
    assert first.rows_loaded == 2
    # Re-saved by a spreadsheet: CRLF, a BOM and spaces after the commas.
    copy = _write(tmp_path, "\ufeff" + "\r\n".join(line.replace(",", ", ") for line in lines) + "\r\n", "copy.csv")
    done = _cli(copy, "--url", url)
    assert done.returncode == 0, done.stderr
    assert "already loaded in" in done.stdout and "the same rows as census.csv" in done.stdout
    compressed = tmp_path / "census.csv.gz"
    compressed.write_bytes(gzip.compress(copy.read_bytes()))
    assert _cli(compressed, "--url", url).stdout.count("already loaded") == 1
    assert _count(engine, Person.__table__) == 2
    # The same name with one value edited: refused, naming the earlier load.
    edited = _write(tmp_path, "\n".join([HEADER, GOOD, GOOD_2.replace("50,", "51,", 1)]) + "\n", "census.csv")
    done = _cli(edited, "--url", url)
    assert done.returncode == 2
    assert f"census.csv was loaded before with other rows (load #{first.load_id}, 2 people" in done.stderr
    assert "--replace" in done.stderr and "--append" in done.stderr
    assert _count(engine, Person.__table__) == 2
    done = _cli(edited, "--append", "--url", url)
    assert done.returncode == 0, done.stderr
    assert _count(engine, Person.__table__) == 4


def test_compressed_files_are_read_transparently(tmp_path: Path, sqlite_engine: Engine) -> None:
    text = "\n".join([HEADER, GOOD, GOOD_2]) + "\n"
    gz = tmp_path / "people.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert upload(sqlite_engine, gz, progress=False).rows_loaded == 2
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("inside/more.csv", "\n".join([HEADER, GOOD]) + "\n")
    assert upload(sqlite_engine, archive, progress=False).rows_loaded == 1
    assert _count(sqlite_engine, Person.__table__) == 3


def _binary_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    text = "\n".join([HEADER, GOOD]) + "\n"
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zipped:
        zipped.writestr("a.csv", text)
        zipped.writestr("b.csv", text)
    xlsx = tmp_path / "book.xlsx"
    with zipfile.ZipFile(xlsx, "w") as zipped:
        zipped.writestr("[Content_Types].xml", "<Types/>")
        zipped.writestr("xl/workbook.xml", "<workbook/>")
    database = tmp_path / "census.db"
    sqlite3.connect(database).execute("CREATE TABLE t (x)").connection.commit()
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(256)) * 64)
    utf16 = _write(tmp_path, text, "utf16.csv", encoding="utf-16")
    bare16 = _write(tmp_path, text, "utf16le.csv", encoding="utf-16-le")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    return {
        "two files in a zip": (two, "is a zip archive with 2 files (a.csv, b.csv); it must hold exactly one CSV file"),
        "xlsx": (xlsx, "is an Excel workbook (.xlsx), not CSV text"),
        "sqlite": (database, "is an SQLite database, not CSV text"),
        "binary": (noise, "looks like a binary file, not CSV text (it starts with bytes 00 01 02"),
        "utf-16": (utf16, "is UTF-16 text (it starts with a UTF-16 byte-order mark); use --encoding utf-16"),
        "utf-16le": (bare16, "looks like UTF-16 text without a byte-order mark; use --encoding utf-16le"),
        "directory": (folder, "is a directory, not a file"),
        "missing": (tmp_path / "nope.csv", "no such file"),
    }


def test_files_that_are_not_csv_text_are_named(tmp_path: Path) -> None:
    """Point 8: gzip, UTF-16 and binary files were all told to 're-save it as UTF-8',
    a directory was 'no such file'."""
    url = f"sqlite:///{tmp_path / 'target.db'}"
    for kind, (path, message) in _binary_files(tmp_path).items():
        done = _cli(path, "--url", url)
        assert done.returncode == 2, (kind, done.stdout)
        assert message in done.stderr, (kind, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, kind


def test_encoding_option(tmp_path: Path, sqlite_engine: Engine) -> None:
    url = str(sqlite_engine.url)
    utf16 = _write(tmp_path, "\n".join([HEADER, GOOD, GOOD_2]) + "\n", "utf16.csv", encoding="utf-16")
    done = _cli(utf16, "--encoding", "utf-16", "--url", url)
    assert done.returncode == 0 and "loaded 2" in done.stdout, done.stderr
    latin = _write(tmp_path, f"note,{HEADER}\nCafé,{GOOD}\n", "latin.csv", encoding="latin-1")
    done = _cli(latin, "--url", url)
    assert done.returncode == 2
    assert "line 2: the file is not UTF-8 text" in done.stderr and "--encoding" in done.stderr
    done = _cli(latin, "--encoding", "latin-1", "--url", url)
    assert done.returncode == 0 and "loaded 1" in done.stdout, done.stderr
    done = _cli(latin, "--encoding", "klingon", "--url", url)
    assert done.returncode == 2 and "unknown encoding 'klingon'" in done.stderr


def test_unknown_header_is_named_not_loaded_as_data(tmp_path: Path, sqlite_engine: Engine) -> None:
    """Point 8: a header with 'agee' was silently taken as a data row (and rejected)."""
    path = _write(tmp_path, HEADER.replace("age,", "agee,", 1) + "\n" + GOOD + "\n")
    done = _cli(path, "--url", str(sqlite_engine.url))
    assert done.returncode == 2
    assert "line 1: header lacks column(s) age (is 'agee' meant to be 'age'?)" in done.stderr


def test_reasons_hint_at_case_and_cut_long_values(tmp_path: Path, sqlite_engine: Engine) -> None:
    """Point 8: 'male' got "did you mean 'Female'?"."""
    lines = [HEADER, _row(gender="male"), _row(race="white"), _row(native_country="Germny" * 10)]
    result = upload(sqlite_engine, _write(tmp_path, "\n".join(lines) + "\n"), progress=False)
    reasons = [reason for _, _, reason in _rejected(sqlite_engine)]
    assert result.rows_rejected == 3
    assert reasons[0] == "gender: unknown value 'male'; did you mean 'Male'?"
    assert reasons[1] == "race: unknown value 'white'; did you mean 'White'?"
    assert "'GermnyGermnyGermnyGermnyGermnyGermnyGerm... (60 characters)'" in reasons[2]
