"""The data dictionary in the explorer: what every column means, as header tooltips
(Browse and Export) and as a "Columns" help panel.

The meanings of the people's attributes come from the contract's descriptions
(`warehouse.contract.ATTRIBUTES`), so they are written once for the explorer,
the API's OpenAPI document and the notebook; the bookkeeping tables' columns
(uploads, rejected rows, the dimension tables' keys) are described here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Final

import panel as pn

from warehouse.contract import ATTRIBUTES
from warehouse.domain import EDUCATION_LEVELS
from warehouse.models import DIMENSIONS

# Dimension table -> the attribute it lists ("income_bracket" -> "income").
DIMENSION_ATTRIBUTES: Final = {model.__tablename__: attribute for attribute, (model, _) in DIMENSIONS.items()}
# Columns of the tables that are not attributes of a person.
TABLE_COLUMNS: Final[dict[str, dict[str, str]]] = {
    "load": {
        "id": "The upload's number, in the order uploads were made.",
        "source_name": "The file uploaded.",
        "sha256": "SHA-256 of the file's bytes: the same file uploaded twice has the same digest.",
        "rows_digest": "Digest of the rows loaded, independent of the file's line endings and order.",
        "rows_read": "Data rows read from the file.",
        "rows_loaded": "Rows that became people.",
        "rows_rejected": "Rows refused, each listed in Rejected rows with its reason.",
        "started_at": "When the upload started (UTC).",
        "finished_at": "When the upload finished (UTC).",
        "status": "How the upload ended.",
    },
    "rejected_row": {
        "id": "The rejected row's number.",
        "load_id": "The upload that read it.",
        "line_number": "Its line in the uploaded file.",
        "raw_text": "The line as read.",
        "reason": "Why it was refused.",
    },
    "person": {
        "load_id": "The upload that loaded this person.",
        "income_bracket": "Key of the income bracket (see the Income brackets table).",
    },
}


def education_codes() -> str:
    """'1 = Preschool, 2 = 1st-4th, ..., 16 = Doctorate'."""
    return ", ".join(f"{code} = {label}" for label, code in sorted(EDUCATION_LEVELS.items(), key=lambda kv: kv[1]))


def describe_column(table: str, column: str) -> str | None:
    """A column's meaning in one table (None when nothing is known about it)."""
    attribute = DIMENSION_ATTRIBUTES.get(table)
    if attribute is not None:
        if column == "label":
            return ATTRIBUTES[attribute].description if attribute in ATTRIBUTES else None
        if column == "people":
            return "How many people have this value (all people, whatever the filters)."
        if column == "id":
            return "The value's key, which the person table stores."
        if column == "education_num":
            return describe_column("people", "education_num")
    specific = TABLE_COLUMNS.get(table, {}).get(column)
    if specific:
        return specific
    if column in ATTRIBUTES:
        text = ATTRIBUTES[column].description
        if column == "education_num":
            text = f"{text} Codes: {education_codes()}."
        if table == "person" and column in DIMENSIONS:
            text = f"Key of: {text}"
        return text
    return None


def column_tooltips(table: str, columns: Sequence[str]) -> dict[str, str]:
    """Tabulator header tooltips: column -> its meaning."""
    tips = {column: describe_column(table, column) for column in columns}
    return {column: tip for column, tip in tips.items() if tip}


def columns_help_html() -> str:
    """Every attribute of a person: name, title and meaning, as a <details> list."""
    items = []
    for name, attribute in ATTRIBUTES.items():
        meaning = describe_column("people", name) or ""
        items.append(
            f"<dt><b>{html.escape(attribute.title)}</b> <code>{html.escape(name)}</code></dt>"
            f"<dd style='margin:0 0 6px 12px'>{html.escape(meaning)}</dd>"
        )
    return (
        '<details class="columns-help"><summary>Columns: what each one means</summary>'
        f"<dl style='margin:6px 0'>{''.join(items)}</dl>"
        "<p>Hover over a column's header to read its meaning there.</p></details>"
    )


def columns_help() -> pn.pane.HTML:
    """The "Columns" help panel (folded: one line until opened)."""
    return pn.pane.HTML(columns_help_html(), sizing_mode="stretch_width", css_classes=["columns-help-pane"])


__all__ = ["column_tooltips", "columns_help", "columns_help_html", "describe_column", "education_codes"]
