"""Clean and validate census records, a chunk at a time.

Two paths, one set of rules. A typed chunk (pyarrow columns, see
loaders.reader) is checked with numpy over whole columns: ranges, label ids
through each chunk's small dictionary, education_num against education. Any
record that fails a check there goes, with its text, through the Python path,
which is the authority on every rule and writes every reason: so a record is
accepted or rejected, with the same reason, whichever path its block took.

The Python path works column by column over a whole chunk (list comprehensions
and dict lookups), which is several times faster in CPython than validating row
by row. Only rejected rows get per-row Python code, to write a reason a person
can act on.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import pyarrow as pa

from loaders.reader import RawChunk
from warehouse.domain import (
    CATEGORIES,
    EDUCATION_LEVELS,
    INPUT_COLUMNS,
    NULLABLE_COLUMNS,
    NUMERIC_COLUMNS,
    RANGES,
)

# Markers of a missing value in the source.
MISSING_MARKERS = ("?", "")
# No census value is longer than 26 characters; anything past this cap is not a
# census value (and a megabyte-long field must not reach the database or a message).
MAX_FIELD_CHARS = 100
# How much of an offending value a reason quotes.
SHOWN_VALUE_CHARS = 40
# The income label's spellings: the original test part adds a trailing dot.
INCOME_SPELLINGS = {"<=50K": "<=50K", ">50K": ">50K", "<=50K.": "<=50K", ">50K.": ">50K"}

_INVALID = object()  # a value that failed; distinct from None (missing)
_POSITION = {column: index for index, column in enumerate(INPUT_COLUMNS)}

# The person-row layout the cleaner produces, after load_id.
OUTPUT_COLUMNS = (
    "age",
    "fnlwgt",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "gender",
    "native_country",
    "income",
)


# Positions in a CleanChunk's matrix of the labels that may be missing.
NULLABLE_POSITIONS = tuple(1 + OUTPUT_COLUMNS.index(column) for column in sorted(NULLABLE_COLUMNS))
# A missing label's id in the matrix (dimension ids start at 1): NULL in the database.
MISSING_ID = 0


@dataclass
class CleanChunk:
    """The accepted people, one matrix row each: load_id, then OUTPUT_COLUMNS
    with dimension ids for labels; int64, MISSING_ID for a missing label. The
    writers send it to the database without a Python object per value."""

    matrix: np.ndarray = field(default_factory=lambda: np.empty((0, 1 + len(OUTPUT_COLUMNS)), np.int64))
    # (line number, raw text, reason)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def row_count(self) -> int:
        return len(self.matrix)


def _matrix(columns: Sequence[Sequence[int | None]]) -> np.ndarray:
    """Python columns (None for a missing label) as a CleanChunk matrix."""
    matrix = np.empty((len(columns[0]), len(columns)), np.int64)
    for position, column in enumerate(columns):
        if position in NULLABLE_POSITIONS:
            column = [MISSING_ID if value is None else value for value in column]
        matrix[:, position] = column
    return matrix


class Cleaner:
    """Validates records against the warehouse's rules and maps labels to dimension ids."""

    def __init__(self, dimension_ids: dict[str, dict[str, int]], load_id: int = 0) -> None:
        self.load_id = load_id
        # column -> {source spelling -> id or None}; a spelling not in the map is invalid.
        self._lookups: dict[str, dict[str, int | None]] = {}
        for column, ids in dimension_ids.items():
            lookup: dict[str, int | None] = dict(ids)
            if column == "income":
                lookup = {spelling: ids[label] for spelling, label in INCOME_SPELLINGS.items()}
            if column in NULLABLE_COLUMNS:
                lookup.update(dict.fromkeys(MISSING_MARKERS))
            self._lookups[column] = lookup
        self._education_num_by_id = {
            dimension_ids["education"][label]: number for label, number in EDUCATION_LEVELS.items()
        }
        # education id -> its education_num, for numpy (-1 where no id is).
        self._education_num_table = np.full(max(self._education_num_by_id, default=0) + 1, -1, np.int64)
        for key, number in self._education_num_by_id.items():
            self._education_num_table[key] = number

    def clean(self, columns: Sequence[Sequence[str]], line_numbers: Sequence[int], raw_lines: list[str]) -> CleanChunk:
        """`columns[i]` holds the values of INPUT_COLUMNS[i], one per record."""
        problems: dict[int, list[str]] = {}
        values: dict[str, list[object]] = {}
        _check_lines(raw_lines, problems)
        for column in NUMERIC_COLUMNS:
            values[column] = self._numbers(column, columns[_POSITION[column]], problems)
        for column in self._lookups:
            values[column] = self._labels(column, columns[_POSITION[column]], problems)
        self._check_education_num(values, columns, problems)

        count = len(line_numbers)
        # Columns come out ready for the person table: load_id first.
        columns: list[Sequence[int | None]] = [
            [self.load_id] * count,
            *(values[column] for column in OUTPUT_COLUMNS),  # type: ignore[misc]
        ]
        if not problems:
            return CleanChunk(_matrix(columns) if count else CleanChunk().matrix)
        kept = [index for index in range(count) if index not in problems]
        rejected = [
            (line_numbers[index], raw_lines[index].rstrip("\r\n"), "; ".join(reasons))
            for index, reasons in sorted(problems.items())
        ]
        if not kept:
            return CleanChunk(rejected=rejected)
        return CleanChunk(_matrix([[column[index] for index in kept] for column in columns]), rejected)

    def clean_chunk(self, chunk: RawChunk) -> CleanChunk:
        """Either kind of chunk the reader gives."""
        if chunk.table is None:
            return self.clean(chunk.columns, chunk.line_numbers, chunk.raw_lines)
        return self._clean_typed(chunk)

    def _clean_typed(self, chunk: RawChunk) -> CleanChunk:
        """The vectorised path: accepts only what the Python path accepts with the
        same values, and sends every record it does not accept to that path."""
        table = chunk.table
        assert table is not None and chunk.layout is not None
        count = table.num_rows
        matrix = np.empty((count, 1 + len(OUTPUT_COLUMNS)), np.int64)
        matrix[:, 0] = self.load_id
        doubtful = np.zeros(count, dtype=bool)
        for column, position in zip(INPUT_COLUMNS, chunk.layout.positions):
            values = table.column(f"f{position}")
            if column in RANGES:
                numbers = _int_array(values)
                low, high = RANGES[column]
                doubtful |= (numbers < low) | (numbers > high)
                if column != "education_num":
                    matrix[:, 1 + OUTPUT_COLUMNS.index(column)] = numbers
            else:
                ids = self._label_ids(column, values)
                doubtful |= ids < 0
                matrix[:, 1 + OUTPUT_COLUMNS.index(column)] = ids
        # education_num depends on education alone.
        education = matrix[:, 1 + OUTPUT_COLUMNS.index("education")]
        education_num = _int_array(table.column(f"f{chunk.layout.positions[_POSITION['education_num']]}"))
        doubtful |= self._education_num_table[np.maximum(education, 0)] != education_num
        if not doubtful.any():
            return CleanChunk(matrix)
        # Each doubtful record, with its text, through the Python path.
        indexes = np.flatnonzero(doubtful)
        subset = chunk.subset(indexes.tolist())
        checked = self.clean(subset.columns, subset.line_numbers, subset.raw_lines)
        checked.rejected.extend(subset.malformed)
        rejected_lines = {line for line, _, _ in checked.rejected}
        line_numbers = np.asarray(chunk.line_numbers)
        accepted = indexes[~np.isin(line_numbers[indexes], list(rejected_lines))]
        matrix[accepted] = checked.matrix
        keep = np.ones(count, dtype=bool)
        keep[np.setdiff1d(indexes, accepted)] = False
        return CleanChunk(matrix[keep], checked.rejected)

    def _label_ids(self, column: str, values: pa.ChunkedArray) -> np.ndarray:
        """Dimension ids of a dictionary-encoded column: each chunk's dictionary
        (a few dozen spellings) is looked up in Python, the indices in numpy.
        -1 marks a value the Python path must judge."""
        lookup = self._lookups[column]
        parts = []
        for part in values.chunks:
            table = np.array(
                [_label_id(lookup, spelling) for spelling in part.dictionary.to_pylist()] or [-1], dtype=np.int64
            )
            parts.append(table[_numpy_view(part.indices)])
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    @staticmethod
    def _numbers(column: str, raw: Sequence[str], problems: dict[int, list[str]]) -> list[object]:
        low, high = RANGES[column]
        joined = "".join(raw)
        try:
            # Fast path, all in C. int() also takes '3_9' and non-ASCII digits such
            # as '٣٩' or '３９'; a census number is ASCII digits with an optional sign
            # (and spaces around), so those go the checked path.
            if not joined.isascii() or "_" in joined:
                raise ValueError
            parsed: list[object] = list(map(int, raw))
            if not parsed or (low <= min(parsed) and max(parsed) <= high):  # type: ignore[type-var]
                return parsed
        except ValueError:
            parsed = [_parse_int(value) for value in raw]
        for index, number in enumerate(parsed):
            if number is _INVALID or not low <= number <= high:  # type: ignore[operator]
                value = raw[index]
                reason = _too_long(column, value) or _number_reason(column, value.strip(), low, high)
                problems.setdefault(index, []).append(reason)
        return parsed

    def _labels(self, column: str, raw: Sequence[str], problems: dict[int, list[str]]) -> list[object]:
        lookup = self._lookups[column]
        try:
            return list(map(lookup.__getitem__, raw))  # C speed; most chunks are all valid
        except KeyError:
            pass
        ids: list[object] = list(map(lookup.get, raw, repeat(_INVALID)))
        for index, key in enumerate(ids):
            if key is _INVALID:
                value = raw[index]
                too_long = _too_long(column, value)
                stripped = value.strip()
                key = _INVALID if too_long else lookup.get(stripped, _INVALID)  # trailing spaces are fine
                if key is _INVALID:
                    problems.setdefault(index, []).append(too_long or _category_reason(column, stripped))
                else:
                    ids[index] = key
        return ids

    def _check_education_num(
        self, values: dict[str, list[object]], columns: Sequence[Sequence[str]], problems: dict[int, list[str]]
    ) -> None:
        """education_num depends on education alone: a mismatch is a corrupt row."""
        expected = list(map(self._education_num_by_id.get, values["education"]))
        actual = values["education_num"]
        if expected == actual:
            return
        for index, (want, got) in enumerate(zip(expected, actual)):
            if want is not None and got is not _INVALID and got != want:
                label = columns[_POSITION["education"]][index].strip()
                problems.setdefault(index, []).append(
                    f"education_num: {got} does not match education {label!r}, which is {want}"
                )


def _numpy_view(array: pa.Array) -> np.ndarray:
    """An integer pyarrow array without nulls, as numpy (no copy). Not
    Array.to_numpy(): that imports pandas, 50 MB of the loader's memory."""
    assert array.null_count == 0
    dtype = np.dtype(array.type.to_pandas_dtype())
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def _int_array(values: pa.ChunkedArray) -> np.ndarray:
    parts = [_numpy_view(part) for part in values.chunks]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _label_id(lookup: dict[str, int | None], spelling: str) -> int:
    """A spelling's id as the Python path finds it (exact, else trimmed unless
    too long), MISSING_ID for a missing marker, -1 if it is not accepted."""
    key = lookup.get(spelling, _INVALID)
    if key is _INVALID and len(spelling) <= MAX_FIELD_CHARS:
        key = lookup.get(spelling.strip(), _INVALID)
    if key is _INVALID:
        return -1
    return MISSING_ID if key is None else key  # type: ignore[return-value]


_DIGITS = frozenset("0123456789")


def _parse_int(value: str) -> object:
    """The slow path: surrounding spaces and a leading sign are tolerated; the
    digits must be ASCII."""
    stripped = value.strip()
    digits = stripped[1:] if stripped[:1] in ("+", "-") else stripped
    if not digits or not _DIGITS.issuperset(digits):
        return _INVALID
    return int(stripped)


def shorten(value: str, limit: int = SHOWN_VALUE_CHARS) -> str:
    """A value as quoted in a reason: cut when long, with its full length."""
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value):,} characters)"


def _quoted(value: str) -> str:
    return repr(value) if len(value) <= SHOWN_VALUE_CHARS else f"{shorten(value)!r}"


def _check_lines(raw_lines: Sequence[str], problems: dict[int, list[str]]) -> None:
    """A NUL byte is never part of census text (and PostgreSQL cannot store it)."""
    if "\x00" not in "".join(raw_lines):
        return
    for index, line in enumerate(raw_lines):
        if "\x00" in line:
            problems.setdefault(index, []).append(f"contains a NUL byte (at character {line.index(chr(0)) + 1})")


def _too_long(column: str, value: str) -> str | None:
    """The reason for a value past the per-field cap. Only values that failed the
    fast paths are measured: one that matched a category or parsed as an
    in-range number is short by construction (int() refuses over 4,300 digits)."""
    if len(value) <= MAX_FIELD_CHARS:
        return None
    return f"{column}: value of {len(value):,} characters is longer than the {MAX_FIELD_CHARS} allowed"


def _number_reason(column: str, value: str, low: int, high: int) -> str:
    if value in MISSING_MARKERS:
        return f"{column}: missing, but it is required"
    number = _parse_int(value)
    if number is _INVALID:
        # int() would take these; say why they are refused.
        odd = "_" in value or any(char.isdigit() and char not in _DIGITS for char in value)
        return f"{column}: {_quoted(value)} is not a whole number{' (ASCII digits 0-9 only)' if odd else ''}"
    return f"{column}: {number} is outside the allowed range {low}..{high}"


def _category_reason(column: str, value: str) -> str:
    if value in MISSING_MARKERS:
        return f"{column}: missing, but it is required"
    allowed = CATEGORIES[column]
    if len(value) > MAX_FIELD_CHARS:
        return f"{column}: unknown value {_quoted(value)}"
    # A difference of case only ('male') is the likeliest slip: say so first.
    same_case = [label for label in allowed if label.lower() == value.lower()]
    close = same_case or difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
    return f"{column}: unknown value {_quoted(value)}{hint}"
