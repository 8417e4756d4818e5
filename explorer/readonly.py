"""The explorer only reads: its engines come from `warehouse.db.make_read_engine`
(a SQLite file opened `mode=ro` and query-only, read-only PostgreSQL sessions),
and a SQLite file that does not exist is reported, never created empty."""

from __future__ import annotations

from warehouse.db import sqlite_file


def missing_file_message(url: str, hint: str) -> str | None:
    """Why the explorer cannot open a SQLite URL whose file does not exist (None when it does)."""
    path = sqlite_file(url)
    if path is None or path.is_file():
        return None
    return f"The SQLite file {path} does not exist — {hint} (or set DATABASE_URL to the right file)."
