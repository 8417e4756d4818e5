"""The reader's two parsers: str.split for plain blocks, csv.reader for the rest.
Whatever path a block takes, the records must come out the same, and a block
whose lines do not all have 15 fields must never be split into shifted columns."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from loaders.reader import RawChunk, SourceReader
from tests.conftest import INPUT, UCI_DIR
from warehouse.domain import INPUT_COLUMNS

HEADER = ",".join(INPUT_COLUMNS)
RECORDS = [
    ["39", "State-gov", "77516", "Bachelors", "13", "Never-married", "Adm-clerical", "Not-in-family", "White",
     "Male", "2174", "0", "40", "United-States", "<=50K"],
    ["50", "?", "83311", "Masters", "14", "Married-civ-spouse", "?", "Husband", "White",
     "Male", "0", "0", "13", "?", ">50K."],
]  # fmt: skip


def _chunks(path: Path, chunk_size: int = 50_000) -> list[RawChunk]:
    with SourceReader(path, chunk_size=chunk_size) as reader:
        return list(reader.chunks())


def _records(chunks: list[RawChunk]) -> list[list[str]]:
    return [list(record) for chunk in chunks for record in zip(*chunk.columns)]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "input.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    "name, text",
    [
        ("plain LF", HEADER + "\n" + "\n".join(map(",".join, RECORDS)) + "\n"),
        ("CRLF, BOM, no final newline", "\ufeff" + HEADER + "\r\n" + "\r\n".join(map(",".join, RECORDS))),
        ("UCI separators", "\n".join(map(", ".join, RECORDS)) + "\n\n"),
        ("every field quoted (csv path)", HEADER + "\n" + "\n".join(",".join(f'"{v}"' for v in r) for r in RECORDS)),
    ],
)
def test_every_layout_gives_the_same_records(tmp_path: Path, name: str, text: str) -> None:
    chunks = _chunks(_write(tmp_path, text))
    assert _records(chunks) == RECORDS, name
    assert [n for chunk in chunks for n in chunk.line_numbers] == ([2, 3] if "UCI" not in name else [1, 2])


def test_split_path_agrees_with_csv_module_on_the_whole_input() -> None:
    with open(INPUT, encoding="utf-8", newline="") as stream:
        expected = list(csv.reader(stream))[1:]
    chunks = _chunks(INPUT, chunk_size=7_000)
    assert len(chunks) == 7
    assert _records(chunks) == expected
    assert [n for chunk in chunks for n in chunk.line_numbers] == list(range(2, len(expected) + 2))


@pytest.mark.parametrize("name", ["adult.data", "adult.test"])
def test_uci_file_matches_csv_module_with_skipinitialspace(name: str) -> None:
    with open(UCI_DIR / name, encoding="utf-8", newline="") as stream:
        lines = stream.read().splitlines()
    skipped = 1 if lines[0].startswith("|") else 0  # adult.test's "|1x3 Cross validator"
    text = "\n".join(lines[skipped:])
    expected = [record for record in csv.reader(io.StringIO(text), skipinitialspace=True) if record]
    chunks = _chunks(UCI_DIR / name, chunk_size=300)  # several chunks, the last one ending on the blank line
    assert len(chunks) > 1
    assert [chunk.malformed for chunk in chunks] == [[]] * len(chunks)  # the preamble is skipped, not refused
    assert _records(chunks) == expected
    assert [n for chunk in chunks for n in chunk.line_numbers] == list(range(1 + skipped, len(expected) + 1 + skipped))


def test_shifted_fields_are_rejected_not_misaligned(tmp_path: Path) -> None:
    # One line with a field too many and one with a field too few: 30 fields in
    # all, so a naive split of the block would line up and shift every value.
    too_many = ",".join(RECORDS[0][:1] + ["extra"] + RECORDS[0][1:])
    too_few = ",".join(RECORDS[1][1:])
    text = "\n".join([HEADER, too_many, too_few, ",".join(RECORDS[0])]) + "\n"
    (chunk,) = _chunks(_write(tmp_path, text))
    assert [list(record) for record in zip(*chunk.columns)] == [RECORDS[0]]
    assert chunk.line_numbers == [4]
    assert chunk.malformed == [
        (2, too_many, "expected 15 fields, found 16"),
        (3, too_few, "expected 15 fields, found 14"),
    ]


def test_a_quoted_comma_stays_inside_its_field(tmp_path: Path) -> None:
    record = RECORDS[0][:]
    record[1] = "State-gov, retired"
    text = HEADER + "\n" + ",".join(f'"{v}"' if "," in v else v for v in record) + "\n"
    assert _records(_chunks(_write(tmp_path, text))) == [record]
