"""The loader's two paths (pyarrow + numpy for plain blocks, the Python parser and
rules for everything else) must give the same people, the same rejected rows with
the same reasons, and the same content digest, whatever mix of rows a file holds.
(Issue 11: the speed redesign keeps every rule and every message.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg2.errors
import pytest

from loaders.cleaner import CleanChunk, Cleaner
from loaders.reader import SourceReader
from loaders.upload import RowDigest, _quiet_driver_reports
from tests.conftest import INPUT
from tests.test_upload import GOOD, GOOD_2, HEADER
from warehouse.domain import CATEGORIES

IDS = {column: {label: key for key, label in enumerate(labels, start=1)} for column, labels in CATEGORIES.items()}


def _row(**changes: str) -> str:
    names, values = HEADER.split(","), GOOD.split(",")
    for name, value in changes.items():
        values[names.index(name)] = value
    return ",".join(values)


# Rows each path must judge alike: accepted with a tolerated spelling, or rejected.
# These the fast path parses, then sends to the Python rules one by one.
ROW_LEVEL = [
    _row(gender="male"),
    _row(gender="Male "),
    _row(gender=" Male"),
    _row(gender="Male\t"),
    _row(gender="?"),
    _row(workclass="?"),
    _row(workclass=""),
    _row(age="-39"),
    _row(age=" 39"),
    _row(age="39 "),
    _row(age="\t39"),
    _row(age="200"),
    _row(age="0039"),
    _row(education_num="14"),
    _row(education_num="99"),
    _row(education="Bachelor"),
    _row(native_country="x" * 500),
    _row(income=">50K."),
    _row(income="50K"),
    ", ".join(GOOD.split(",")),  # UCI separators
    _row(race="Wh\u00efte"),
]
# These send their whole block to the Python parser.
BLOCK_LEVEL = [
    _row(age="+39"),
    _row(age="0x1F"),
    _row(age="3_9"),
    _row(age="\u0663\u0669"),
    _row(age="\uff13\uff19"),
    _row(age=""),
    _row(fnlwgt="99999999999999999999999"),
    _row(occupation="Adm-clerical, retired"),  # a field too many
    GOOD + ",extra",
    ",".join(GOOD.split(",")[1:]),  # a field too few
]


def _clean_all(
    path: Path, typed: bool, chunk_size: int
) -> tuple[np.ndarray, list[tuple[int, str, str]], int, str, int]:
    cleaner = Cleaner(IDS, load_id=7)
    digest = RowDigest()
    matrices, rejected, read, typed_chunks = [], [], 0, 0
    with SourceReader(path, chunk_size=chunk_size) as reader:
        for chunk in reader.chunks(typed=typed):
            typed_chunks += chunk.table is not None
            clean: CleanChunk = cleaner.clean_chunk(chunk)
            clean.rejected.extend(chunk.malformed)
            digest.update(clean)
            matrices.append(clean.matrix)
            rejected.extend(sorted(clean.rejected))
            read += chunk.rows_read
    return np.concatenate(matrices), rejected, read, digest.hexdigest(), typed_chunks


def _compare(path: Path, chunk_size: int) -> tuple[list[tuple[int, str, str]], int]:
    python = _clean_all(path, typed=False, chunk_size=chunk_size)
    fast = _clean_all(path, typed=True, chunk_size=chunk_size)
    assert python[4] == 0
    assert np.array_equal(fast[0], python[0])
    assert fast[1] == python[1]
    assert fast[2] == python[2] == len(fast[0]) + len(fast[1])
    assert fast[3] == python[3]
    return fast[1], fast[4]


def _odd_file(tmp_path: Path, rows: list[str]) -> Path:
    lines = [HEADER]
    for odd in rows:
        lines += [GOOD, odd, GOOD_2]
    path = tmp_path / "odd.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return path


@pytest.mark.parametrize("chunk_size", [1, 5, 10_000])
def test_doubtful_rows_of_a_typed_block_get_the_python_rules(tmp_path: Path, chunk_size: int) -> None:
    rejected, typed_chunks = _compare(_odd_file(tmp_path, ROW_LEVEL), chunk_size)
    assert typed_chunks > 0  # the fast path did take part
    reasons = {line: reason for line, _, reason in rejected}
    assert reasons[3] == "gender: unknown value 'male'; did you mean 'Male'?"
    assert 6 not in reasons and 9 not in reasons  # 'Male ' and ' Male' are accepted
    assert len(rejected) == 10


@pytest.mark.parametrize("chunk_size", [1, 5, 10_000])
def test_rows_the_fast_parser_refuses_are_judged_alike(tmp_path: Path, chunk_size: int) -> None:
    rejected, _ = _compare(_odd_file(tmp_path, ROW_LEVEL + BLOCK_LEVEL), chunk_size)
    reasons = {line: reason for line, _, reason in rejected}
    assert "ASCII digits 0-9 only" in reasons[3 * (len(ROW_LEVEL) + BLOCK_LEVEL.index(_row(age="3_9"))) + 3]


@pytest.mark.parametrize(
    "name, text",
    [
        ("CRLF", "\r\n".join([HEADER, GOOD, GOOD_2] * 3) + "\r\n"),
        ("lone CR", "\n".join([HEADER, GOOD, GOOD_2 + "\r" + GOOD, GOOD_2]) + "\n"),
        ("blank lines", "\n".join([HEADER, GOOD, "", GOOD_2, "  ", GOOD]) + "\n\n"),
        ("quotes", "\n".join([HEADER, GOOD, '"39",' + GOOD.split(",", 1)[1], GOOD_2]) + "\n"),
        ("NUL", "\n".join([HEADER, GOOD, GOOD.replace("Male", "Ma\x00le"), GOOD_2]) + "\n"),
        ("no final newline", "\n".join([HEADER, GOOD, GOOD_2])),
        ("BOM", "\ufeff" + "\n".join([HEADER, GOOD, GOOD_2]) + "\n"),
        ("headerless UCI", "\n".join(", ".join(row.split(",")) for row in [GOOD, GOOD_2, GOOD]) + "\n\n"),
    ],
)
@pytest.mark.parametrize("chunk_size", [2, 10_000])
def test_unusual_layouts_agree(tmp_path: Path, name: str, text: str, chunk_size: int) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(text.encode("utf-8"))
    _compare(path, chunk_size)


def test_the_input_file_agrees() -> None:
    rejected, typed_chunks = _compare(INPUT, 7_000)
    assert typed_chunks == 7 and rejected == []


def test_psycopg2_reports_through_excepthook_are_dropped() -> None:
    """psycopg2 calls PyErr_Print (so sys.excepthook) when it cannot decode the
    server's last message after a dropped COPY; that report must not reach stderr,
    anything else still must."""
    seen: list[BaseException] = []
    hook = _quiet_driver_reports(lambda kind, error, traceback: seen.append(error))
    try:
        try:
            raise psycopg2.errors.AdminShutdown("terminating connection due to administrator command")
        except psycopg2.Error as driver_error:
            raise SystemError("<function decode> returned a result with an exception set") from driver_error
    except SystemError as error:
        hook(SystemError, error, error.__traceback__)
    other = ValueError("anything else")
    hook(ValueError, other, None)
    assert seen == [other]
