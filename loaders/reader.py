"""Read census records from either layout, without being told which.

- CSV with a header row: names with underscores or hyphens, `sex` or `gender`,
  `education_num` or `educational-num`, columns in any order, extra columns
  ignored (with a warning), UTF-8 with or without a BOM, LF or CRLF.
- The raw UCI files: no header, `, ` separators, and `adult.test`'s
  `|1x3 Cross validator` first line.

Records are streamed in chunks so memory stays bounded on large files.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from pathlib import Path
from typing import BinaryIO

from warehouse.domain import INPUT_COLUMNS

# Header spellings seen in the wild -> the warehouse's column names.
ALIASES: dict[str, str] = {
    "sex": "gender",
    "educational_num": "education_num",
    "education_number": "education_num",
    "income_bracket": "income",
    "class": "income",
    "salary": "income",
    "native": "native_country",
    "hours": "hours_per_week",
}


class SourceError(ValueError):
    """The file as a whole cannot be read (wrong encoding, missing columns...)."""


@dataclass
class RawChunk:
    """Up to `chunk_size` records, column by column: `columns[i]` holds the values
    of warehouse column INPUT_COLUMNS[i], one per record (the cleaner works on
    whole columns). Also the physical line each record starts on, and its raw
    text (kept for rejects)."""

    columns: list[Sequence[str]] = field(default_factory=list)
    line_numbers: Sequence[int] = field(default_factory=list)
    raw_lines: list[str] = field(default_factory=list)
    # Records whose field count is wrong: (line number, raw text, reason).
    malformed: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return len(self.line_numbers) + len(self.malformed)


@dataclass
class Layout:
    has_header: bool
    # For each warehouse column, its position in the source record.
    positions: tuple[int, ...]
    source_width: int
    ignored_columns: tuple[str, ...]
    skipped_preamble: bool


def normalize_header(name: str) -> str:
    key = re.sub(r"[\s\-.]+", "_", name.strip().lower()).strip("_")
    return ALIASES.get(key, key)


def detect_layout(first_line: str, preamble_skipped: bool) -> Layout:
    """Decide between a header row and the headerless UCI layout from the first line."""
    cells = next(csv.reader([first_line], skipinitialspace=True), [])
    names = [normalize_header(cell) for cell in cells]
    if "age" not in names:
        # No header: the UCI files' fixed column order.
        return Layout(False, tuple(range(len(INPUT_COLUMNS))), len(INPUT_COLUMNS), (), preamble_skipped)
    missing = [column for column in INPUT_COLUMNS if column not in names]
    if missing:
        raise SourceError(
            f"line {1 + preamble_skipped}: header lacks column(s) {', '.join(missing)}; found {', '.join(cells)}"
        )
    duplicated = sorted({name for name in names if names.count(name) > 1 and name in INPUT_COLUMNS})
    if duplicated:
        raise SourceError(f"line {1 + preamble_skipped}: header names column(s) {', '.join(duplicated)} more than once")
    positions = tuple(names.index(column) for column in INPUT_COLUMNS)
    ignored = tuple(cell for cell, name in zip(cells, names) if name not in INPUT_COLUMNS)
    return Layout(True, positions, len(cells), ignored, preamble_skipped)


def first_undecodable_line(path: Path) -> int:
    """The line number of the first line that is not UTF-8 (decoding works in
    blocks, so the error itself does not say which line it was)."""
    with open(path, "rb") as binary:
        for number, raw in enumerate(binary, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


class SourceReader:
    """Streams a census file as RawChunks; `bytes_read` feeds the progress bar."""

    def __init__(self, path: Path, chunk_size: int = 10_000) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self._binary: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._text = io.TextIOWrapper(self._binary, encoding="utf-8-sig", newline="")
        self._line_number = 0
        self._pending: list[str] = []
        self.layout = self._read_layout()

    @property
    def bytes_read(self) -> int:
        return self._binary.tell()

    def close(self) -> None:
        self._text.close()

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _next_line(self) -> str | None:
        try:
            line = self._text.readline()
        except UnicodeDecodeError as error:
            raise SourceError(
                f"line {first_undecodable_line(self.path)}: the file is not UTF-8 text ({error.reason}); "
                "re-save it as UTF-8"
            ) from None
        if not line:
            return None
        self._line_number += 1
        return line

    def _read_layout(self) -> Layout:
        line = self._next_line()
        skipped = False
        if line is not None and line.startswith("|"):
            skipped = True  # adult.test's "|1x3 Cross validator" preamble
            line = self._next_line()
        while line is not None and not line.strip():
            line = self._next_line()
        if line is None:
            raise SourceError(f"{self.path.name} holds no records")
        layout = detect_layout(line, skipped)
        if not layout.has_header:
            self._pending.append(line)  # the first line is already a record
            self._pending_line_number = self._line_number
        return layout

    def _line_blocks(self) -> Iterator[tuple[int, list[str]]]:
        """Blocks of up to chunk_size lines, with the line number of the first."""
        first = self._line_number + 1
        if self._pending:
            first = self._pending_line_number
        block = self._pending[:]
        self._pending.clear()
        try:
            while True:
                block.extend(islice(self._text, self.chunk_size - len(block)))
                if not block:
                    return
                yield first, block
                first += len(block)
                block = []
        except UnicodeDecodeError as error:
            raise SourceError(
                f"line {first_undecodable_line(self.path)}: the file is not UTF-8 text ({error.reason}); "
                "re-save it as UTF-8"
            ) from None

    def chunks(self) -> Iterator[RawChunk]:
        """Parse each block of lines into columns at C speed, one record a line."""
        for first, lines in self._line_blocks():
            numbers: Sequence[int] = range(first, first + len(lines))
            if not all(map(str.strip, lines)):
                # Blank lines (the UCI files end with one) are not records.
                kept = [(number, line) for number, line in zip(numbers, lines) if line.strip()]
                numbers = [number for number, _ in kept]
                lines = [line for _, line in kept]
            columns = self._split_plain(lines)
            if columns is not None:
                yield RawChunk([columns[p] for p in self.layout.positions], numbers, lines)
            else:
                yield self._parse_csv(lines, list(numbers))

    def _split_plain(self, lines: list[str]) -> list[list[str]] | None:
        """The common case, without the csv module: a block with no quotes and the
        right number of commas on every line is one str.split away from its fields,
        and every column is then a slice. Building per-record lists and transposing
        them took three quarters of the reading time. Anything else (quotes, a short
        or long record, stray spaces or carriage returns) returns None and goes
        through csv.reader, which says which record is wrong."""
        width = self.layout.source_width
        text = "".join(lines)
        if '"' in text or set(map(str.count, lines, repeat(","))) != {width - 1}:
            return None
        while ", " in text:  # the UCI files separate fields with ", " (csv's skipinitialspace)
            text = text.replace(", ", ",")
        if "\r\n" in text:
            text = text.replace("\r\n", "\n")
        if "\r" in text or "\n " in text or text.startswith(" "):
            return None
        values = text.replace("\n", ",").split(",")
        if text.endswith("\n"):
            values.pop()  # the empty string after the last line's newline
        if len(values) != width * len(lines):
            return None
        return [values[position::width] for position in range(width)]

    def _parse_csv(self, lines: list[str], numbers: list[int]) -> RawChunk:
        records = list(csv.reader(lines, skipinitialspace=True))
        if len(records) != len(lines):
            # A quoted field spanning lines: parse each line alone, so a record is a line.
            records = [next(csv.reader((line,), skipinitialspace=True), []) for line in lines]
        width = self.layout.source_width
        chunk = RawChunk(line_numbers=numbers, raw_lines=lines)
        if set(map(len, records)) != {width}:
            good = [index for index, record in enumerate(records) if len(record) == width]
            chunk.malformed = [
                (numbers[index], lines[index].rstrip("\r\n"), f"expected {width} fields, found {len(record)}")
                for index, record in enumerate(records)
                if len(record) != width
            ]
            records = [records[index] for index in good]
            chunk.line_numbers = [numbers[index] for index in good]
            chunk.raw_lines = [lines[index] for index in good]
        by_position = list(zip(*records)) if records else [() for _ in range(width)]
        chunk.columns = [by_position[p] for p in self.layout.positions]
        return chunk
