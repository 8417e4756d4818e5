"""CSV and NDJSON output: which format a request asks for, and the streamed body.

`format=csv|ndjson|json` wins; without it the `Accept` header chooses
(`text/csv`, `application/x-ndjson` or `application/ndjson`, else JSON). A CSV or
NDJSON export is written batch by batch from one streamed database cursor, so
its memory does not grow with the number of people exported. Columns and labels
are those of the JSON `items` (missing values: an empty CSV field, NDJSON `null`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi.spec import Operation
from litestar.response import Stream

from api.services import CensusService
from warehouse.query import PEOPLE_COLUMNS, PeopleFilter


class OutputFormat(StrEnum):
    json = "json"
    csv = "csv"
    ndjson = "ndjson"


MEDIA_TYPES: dict[OutputFormat, str] = {
    OutputFormat.json: "application/json",
    OutputFormat.csv: "text/csv; charset=utf-8",
    OutputFormat.ndjson: "application/x-ndjson",
}
_ACCEPTED: dict[str, OutputFormat] = {
    "text/csv": OutputFormat.csv,
    "application/x-ndjson": OutputFormat.ndjson,
    "application/ndjson": OutputFormat.ndjson,
    "application/jsonl": OutputFormat.ndjson,
    "application/json": OutputFormat.json,
}


def chosen_format(request: Request, requested: OutputFormat | None) -> OutputFormat:
    """The `format` parameter, else the first supported type of `Accept` (by q), else JSON."""
    if requested is not None:
        return requested
    accept = request.headers.get("accept", "")
    ranked: list[tuple[float, int, OutputFormat]] = []
    for position, part in enumerate(accept.split(",")):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if media.lower() in _ACCEPTED and quality > 0:
            ranked.append((-quality, position, _ACCEPTED[media.lower()]))
    return min(ranked)[2] if ranked else OutputFormat.json


def csv_chunks(batches: Iterator[list[dict[str, Any]]], columns: Sequence[str] | None) -> Iterator[bytes]:
    """A header line, then one chunk of CSV per batch of people."""
    names = list(columns or PEOPLE_COLUMNS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    yield buffer.getvalue().encode()
    for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([[("" if row[name] is None else row[name]) for name in names] for row in batch])
        yield buffer.getvalue().encode()


def ndjson_chunks(batches: Iterator[list[dict[str, Any]]]) -> Iterator[bytes]:
    """One JSON object per person and line, one chunk per batch."""
    encoder = msgspec.json.Encoder()
    for batch in batches:
        yield b"".join(encoder.encode(row) + b"\n" for row in batch)


FORMAT_DESCRIPTION = (
    "`json` (a page with `total` and `next`), `csv` (a header line, then one line per person) or "
    "`ndjson` (one JSON object per line). When absent, the `Accept` header chooses "
    "(`text/csv`, `application/x-ndjson`), else JSON. CSV and NDJSON are streamed, "
    "with the exact number of matching people in `X-Total-Count`."
)


def export_people(
    service: CensusService,
    people_filter: PeopleFilter,
    columns: list[str] | None,
    sort: str | None,
    limit: int | None,
    offset: int,
    output: OutputFormat,
) -> Stream:
    """The matching people as a streamed CSV or NDJSON body."""
    total = service.count(people_filter)
    batches = service.stream_people(people_filter, columns, sort, limit, offset) if offset < total else iter(())
    chunks = csv_chunks(batches, columns) if output is OutputFormat.csv else ndjson_chunks(batches)
    # Set here: Litestar would give a streamed answer the route's media type (JSON).
    headers = {"x-total-count": str(total), "content-type": MEDIA_TYPES[output]}
    if output is OutputFormat.csv:
        headers["content-disposition"] = 'attachment; filename="people.csv"'
    return Stream(chunks, media_type=MEDIA_TYPES[output], headers=headers)


class ExportOperation(Operation):
    """The OpenAPI operation of /people: its 200 is JSON, CSV or NDJSON (by `format`/`Accept`)."""

    def to_schema(self) -> dict[str, Any]:
        # Added when the document is rendered: Litestar fills `responses` after construction.
        schema = super().to_schema()
        content = schema.get("responses", {}).get("200", {}).get("content")
        if isinstance(content, dict):
            text = {"schema": {"type": "string"}}
            content[MEDIA_TYPES[OutputFormat.csv]] = text
            content[MEDIA_TYPES[OutputFormat.ndjson]] = text
        return schema
