"""Read census records from either layout, without being told which.

- CSV with a header row: names with underscores or hyphens, `sex` or `gender`,
  `education_num` or `educational-num`, columns in any order, extra columns
  ignored (with a warning), UTF-8 with or without a BOM, LF or CRLF.
- The raw UCI files: no header, `, ` separators, and `adult.test`'s
  `|1x3 Cross validator` first line.
- Compressed: a `.gz` file, or a `.zip` archive holding one CSV, is read as it
  is (recognised by its first bytes, not its name). Any other file that is not
  text is refused with a message naming what it looks like.
- Any encoding Python knows (`encoding=`), UTF-8 by default.

Records are streamed in chunks so memory stays bounded on large files.

Two parsers give the same records. A UTF-8 file is read as bytes, and a block
of lines with nothing unusual in it (no quotes, NUL bytes, lone carriage
returns or blank lines, the right number of fields on every line) is parsed by
pyarrow's CSV reader straight into typed columns, in C++ and without a Python
object per value (`chunks(typed=True)`, the loader's fast path). Any other
block, and every block of a file in another encoding, goes through the Python
parser (str.split, or the csv module when quotes are involved), which names the
line of anything wrong.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import io
import re
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice, repeat
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pa_csv

from warehouse.domain import CATEGORICAL_COLUMNS, INPUT_COLUMNS, NUMERIC_COLUMNS

# The csv module refuses fields over 131,072 characters with an exception that
# would abort the whole upload; the cleaner enforces its own, far smaller, per-field
# cap instead, so such a field becomes one rejected row.
csv.field_size_limit(sys.maxsize)
# pyarrow's default allocator (mimalloc) keeps freed blocks for reuse: 6-12 MB
# more peak memory over a load than malloc, for no measurable speed.
ARROW_POOL = pa.system_memory_pool()
# pyarrow swaps in a Ctrl-C handler of its own while it parses, and acts on it only
# if the parse checks for it before finishing: a block parses in milliseconds, so
# a Ctrl-C that landed in one was lost and the upload went on to commit (4 times
# in 10 at 5,000-line blocks). Without it, Python's own handler raises
# KeyboardInterrupt as soon as the parse returns.
pa.enable_signal_handlers(False)
# pyarrow reads 0x1A as 26 where int() refuses it. One regular-expression scan is
# half the cost of looking for "0x" and "0X" in turn (0.07 s against 0.17 s a million rows).
_HEX_PREFIX = re.compile(rb"0[xX]")
# Bytes looked at to tell text from a binary file.
SNIFF_BYTES = 8192
# Bytes a block of chunk_size lines is read as (the input's lines average 108).
BYTES_PER_LINE = 110
# Signatures of files people upload by mistake, named in the error message.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"%PDF", "a PDF document"),
    (b"\xd0\xcf\x11\xe0", "an old-style Excel/Office document"),
    (b"PAR1", "a Parquet file"),
    (b"BZh", "a bzip2-compressed file (decompress it first)"),
    (b"\xfd7zXZ", "an xz-compressed file (decompress it first)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)

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
    text (kept for rejects).

    A typed chunk (the fast path) has `table` instead of `columns` and
    `raw_lines`: the warehouse columns parsed by pyarrow (int64 numbers,
    dictionary-encoded labels), one record per line of `lines`; `subset()` gives
    chosen records as an ordinary chunk, for the cleaner's per-row checks."""

    columns: list[Sequence[str]] = field(default_factory=list)
    line_numbers: Sequence[int] = field(default_factory=list)
    raw_lines: list[str] = field(default_factory=list)
    # Records whose field count is wrong: (line number, raw text, reason).
    malformed: list[tuple[int, str, str]] = field(default_factory=list)
    table: pa.Table | None = None
    text: bytes = b""  # a typed chunk's lines, as read
    layout: Layout | None = None

    @property
    def rows_read(self) -> int:
        return len(self.line_numbers) + len(self.malformed)

    def subset(self, indexes: Sequence[int]) -> RawChunk:
        """Records of a typed chunk as a string chunk, parsed the way the Python
        parser parses them (so the cleaner sees the very same field values)."""
        assert self.layout is not None
        every = self.text.splitlines(keepends=True)  # only \n ends a line in a typed chunk
        lines = [every[index].decode("utf-8") for index in indexes]
        return _parse_lines(lines, [self.line_numbers[index] for index in indexes], self.layout)


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
    first = cells[0].strip() if cells else ""
    # Every UCI record starts with an age, so a first line that names no known
    # column and does not start with a number is a header we do not understand
    # (e.g. a typo such as 'agee'), not a data row.
    if not set(names) & set(INPUT_COLUMNS) and first.isascii() and first.isdigit():
        # No header: the UCI files' fixed column order.
        return Layout(False, tuple(range(len(INPUT_COLUMNS))), len(INPUT_COLUMNS), (), preamble_skipped)
    missing = [column for column in INPUT_COLUMNS if column not in names]
    if missing:
        unknown = [cell for cell, name in zip(cells, names) if name not in INPUT_COLUMNS]
        hints = _header_hints(missing, unknown)
        raise SourceError(
            f"line {1 + preamble_skipped}: header lacks column(s) {', '.join(missing)}"
            f"{hints}; found {_shorten(', '.join(cells), 200)}"
        )
    duplicated = sorted({name for name in names if names.count(name) > 1 and name in INPUT_COLUMNS})
    if duplicated:
        raise SourceError(f"line {1 + preamble_skipped}: header names column(s) {', '.join(duplicated)} more than once")
    positions = tuple(names.index(column) for column in INPUT_COLUMNS)
    ignored = tuple(cell for cell, name in zip(cells, names) if name not in INPUT_COLUMNS)
    return Layout(True, positions, len(cells), ignored, preamble_skipped)


def _header_hints(missing: list[str], unknown: list[str]) -> str:
    """' (is 'agee' meant to be 'age'?)' for header cells close to a missing name."""
    hints = []
    for cell in unknown:
        close = difflib.get_close_matches(normalize_header(cell), missing, n=1, cutoff=0.6)
        if close:
            hints.append(f"is {_shorten(cell, 40)!r} meant to be {close[0]!r}?")
    return f" ({'; '.join(hints)})" if hints else ""


def _shorten(text: str, limit: int) -> str:
    """A value as shown in a message: long ones are cut, with their full length."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def python_encoding(encoding: str) -> str:
    """The codec name to decode with: UTF-8 also accepts (and drops) a BOM."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise SourceError(f"unknown encoding {encoding!r} (try utf-8, latin-1, cp1252 or utf-16)") from None
    return "utf-8-sig" if name == "utf-8" else name


def open_binary(path: Path) -> tuple[BinaryIO, BinaryIO, int]:
    """The file's decompressed bytes, the underlying file (whose position drives
    the progress bar) and that file's size. Compression is recognised by the
    first bytes, so a renamed file works as well."""
    if path.is_dir():
        raise SourceError("is a directory, not a file")
    raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    size = path.stat().st_size
    magic = raw.read(4)
    raw.seek(0)
    try:
        if magic[:2] == b"\x1f\x8b":
            return gzip.GzipFile(fileobj=raw, mode="rb"), raw, size  # type: ignore[return-value]
        if magic == b"PK\x03\x04":
            return _zip_member(path, raw), raw, size
    except BaseException:
        raw.close()
        raise
    return raw, raw, size


def _zip_member(path: Path, raw: BinaryIO) -> BinaryIO:
    try:
        archive = zipfile.ZipFile(raw)
    except zipfile.BadZipFile as error:
        raise SourceError(f"looks like a zip archive but cannot be opened ({error})") from None
    members = [info for info in archive.infolist() if not info.is_dir()]
    names = [info.filename for info in members]
    if len(members) != 1:
        if any(name.startswith("xl/") for name in names):
            raise SourceError("is an Excel workbook (.xlsx), not CSV text; save the sheet as CSV (UTF-8) first")
        listed = _shorten(", ".join(names), 200) or "nothing"
        raise SourceError(f"is a zip archive with {len(members)} files ({listed}); it must hold exactly one CSV file")
    return archive.open(members[0])  # type: ignore[return-value]


def describe_binary(head: bytes, encoding: str) -> str | None:
    """What a file that is not text in `encoding` looks like, or None if it is text."""
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return f"is {name}, not CSV text"
    wide = encoding.replace("-", "").replace("_", "").lower().startswith(("utf16", "utf32"))
    if not wide:
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return (
                "is UTF-16 text (it starts with a UTF-16 byte-order mark); use --encoding utf-16 or re-save it as UTF-8"
            )
        # Every other byte zero: ASCII text in UTF-16 without a byte-order mark.
        quarter = len(head) // 4
        if head and (head[1::2].count(b"\x00") > quarter or head[0::2].count(b"\x00") > quarter):
            return "looks like UTF-16 text without a byte-order mark; use --encoding utf-16le (or utf-16be)"
        control = sum(head.count(bytes([b])) for b in range(32) if b not in (9, 10, 13))
        if head and control > len(head) // 10:
            return f"looks like a binary file, not CSV text (it starts with bytes {head[:8].hex(' ')})"
    return None


class SourceReader:
    """Streams a census file as RawChunks; `bytes_read` feeds the progress bar.

    UTF-8 files (whose first block has no lone carriage return, which the text
    layer would take as a line end) are read as bytes, a chunk of lines at a
    time, so that a plain block can go to pyarrow undecoded; other files through
    a text layer with universal newlines."""

    def __init__(self, path: Path, chunk_size: int = 10_000, encoding: str = "utf-8") -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.encoding = python_encoding(encoding)
        self._shown_encoding = "UTF-8" if self.encoding == "utf-8-sig" else encoding
        stream, self._raw, self.size = open_binary(path)
        self.compressed = stream is not self._raw
        try:
            buffered = io.BufferedReader(stream, 1 << 16)  # type: ignore[arg-type]
            head = buffered.peek(SNIFF_BYTES)[:SNIFF_BYTES]
            looks = describe_binary(head, self.encoding)
            if looks:
                raise SourceError(looks)
            self._buffered = buffered
            self._binary = self.encoding == "utf-8-sig" and head.count(b"\r") == head.count(b"\r\n")
            if not self._binary:
                self._text = io.TextIOWrapper(buffered, encoding=self.encoding, newline="")
            self._line_number = 0
            self._pending: list[str] = []
            self._pending_bytes: list[bytes] = []
            self.layout = self._read_layout()
        except BaseException:
            self._raw.close()
            raise

    @property
    def bytes_read(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        if self._binary:
            self._buffered.close()
        else:
            self._text.close()
        self._raw.close()

    def _undecodable(self, error: UnicodeDecodeError) -> SourceError:
        """Decoding works in blocks, so the error does not say which line it was."""
        stream, raw, _ = open_binary(self.path)
        line = 0
        with raw, stream:
            decoder = codecs.getincrementaldecoder(self.encoding)()
            for number, data in enumerate(stream, start=1):
                try:
                    decoder.decode(data)
                except UnicodeDecodeError:
                    line = number
                    break
        where = f"line {line}: " if line else ""
        hint = "re-save it as UTF-8 or name its encoding with --encoding (e.g. --encoding latin-1)"
        if self.encoding != "utf-8-sig":
            hint = "name its real encoding with --encoding"
        return SourceError(f"{where}the file is not {self._shown_encoding} text ({error.reason}); {hint}")

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _next_line(self) -> str | None:
        try:
            if self._binary:
                data = self._buffered.readline()
                if self._line_number == 0:
                    data = data.removeprefix(codecs.BOM_UTF8)
                self._last_bytes = data
                line = data.decode("utf-8")
            else:
                line = self._text.readline()
        except UnicodeDecodeError as error:
            raise self._undecodable(error) from None
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
            if self._binary:
                self._pending_bytes.append(self._last_bytes)
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
            raise self._undecodable(error) from None

    def chunks(self, typed: bool = False) -> Iterator[RawChunk]:
        """Parse each block of lines into columns at C speed, one record a line.
        With `typed`, plain blocks of a UTF-8 file come as typed chunks (see RawChunk)."""
        if not self._binary:
            for first, lines in self._line_blocks():
                yield self._chunk_of(first, lines)
            return
        first = self._pending_line_number if self._pending_bytes else self._line_number + 1
        block = b"".join(self._pending_bytes)
        self._pending_bytes.clear()
        # Whole lines of about chunk_size records, read as one block: no bytes
        # object per line (a tenth of the reading time of a 1,000,000-row file).
        size = self.chunk_size * BYTES_PER_LINE
        while True:
            block += self._buffered.read(max(size - len(block), 1))
            if block and not block.endswith(b"\n"):
                block += self._buffered.readline()
            if not block:
                return
            chunk = self._typed_chunk(first, block) if typed else None
            if chunk is not None:
                first += len(chunk.line_numbers)
            else:
                lines = self._decoded(block)
                chunk = self._chunk_of(first, lines)
                first += len(lines)
            yield chunk
            block = b""

    def _decoded(self, block: bytes) -> list[str]:
        """A block of byte lines as the text layer would give its lines: a lone
        carriage return also ends a line."""
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as error:
            raise self._undecodable(error) from None
        return io.StringIO(text, newline="").readlines()

    def _typed_chunk(self, first: int, block: bytes) -> RawChunk | None:
        """The block parsed by pyarrow, or None if anything in it needs the Python
        parser: quotes, NUL bytes, '0x' (pyarrow reads hex numbers, int() does
        not), lone carriage returns, blank lines (pyarrow skips them, which would
        shift the line numbers), a wrong field count, a value that is not a plain
        integer in a number column, or bytes that are not UTF-8."""
        if b'"' in block or b"\x00" in block or _HEX_PREFIX.search(block):
            return None
        if b"\r" in block and block.count(b"\r") != block.count(b"\r\n"):
            return None
        if not block.isascii():
            try:
                block.decode("utf-8")
            except UnicodeDecodeError:
                return None
        # The UCI files' ", " separators need no rewriting (a scan of every block):
        # pyarrow trims the spaces around numbers and the cleaner trims labels.
        try:
            table = pa_csv.read_csv(
                pa.py_buffer(block),
                read_options=self._arrow_read,
                convert_options=self._arrow_convert,
                memory_pool=ARROW_POOL,
            )
        except pa.ArrowInvalid:
            return None
        records = block.count(b"\n") + (not block.endswith(b"\n"))  # the last line may lack one
        if table.num_rows != records:
            return None
        return RawChunk(line_numbers=range(first, first + records), table=table, text=block, layout=self.layout)

    @cached_property
    def _arrow_read(self) -> pa_csv.ReadOptions:
        names = [f"f{position}" for position in range(self.layout.source_width)]
        # One pyarrow block per chunk: the loader's writer thread has the other core.
        return pa_csv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 20)

    @cached_property
    def _arrow_convert(self) -> pa_csv.ConvertOptions:
        """Warehouse columns by name, numbers as int64 (pyarrow trims spaces and
        tabs around them, as int() does), labels dictionary-encoded; no value is
        taken as null ('?' and '' are the cleaner's business)."""
        types: dict[str, pa.DataType] = {}
        for column, position in zip(INPUT_COLUMNS, self.layout.positions):
            if column in NUMERIC_COLUMNS:
                types[f"f{position}"] = pa.int64()
            elif column in CATEGORICAL_COLUMNS:
                types[f"f{position}"] = pa.dictionary(pa.int32(), pa.string())
        return pa_csv.ConvertOptions(
            column_types=types,
            include_columns=list(types),
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )

    def _chunk_of(self, first: int, lines: list[str]) -> RawChunk:
        numbers: Sequence[int] = range(first, first + len(lines))
        if not all(map(str.strip, lines)):
            # Blank lines (the UCI files end with one) are not records.
            kept = [(number, line) for number, line in zip(numbers, lines) if line.strip()]
            numbers = [number for number, _ in kept]
            lines = [line for _, line in kept]
        columns = self._split_plain(lines)
        if columns is not None:
            return RawChunk([columns[p] for p in self.layout.positions], numbers, lines)
        return _parse_lines(lines, list(numbers), self.layout)

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


def _parse_lines(lines: list[str], numbers: list[int], layout: Layout) -> RawChunk:
    """The csv module's parse of a block, one record a line; a record of the wrong width is malformed."""
    records = list(csv.reader(lines, skipinitialspace=True))
    if len(records) != len(lines):
        # A quoted field spanning lines: parse each line alone, so a record is a line.
        records = [next(csv.reader((line,), skipinitialspace=True), []) for line in lines]
    width = layout.source_width
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
    chunk.columns = [by_position[p] for p in layout.positions]
    return chunk
