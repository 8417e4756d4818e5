"""The explorer only reads: a SQLite file is opened read-only (SQLite's `mode=ro`),
and a file that does not exist is reported, never created empty."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None for other databases or a URL already in URI form)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.query.get("uri") or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database).resolve()


def read_only_url(url: str) -> str:
    """The same database, opened read-only when it is a SQLite file: writes fail with
    'attempt to write a readonly database' and a missing file is an error, not a new one."""
    path = sqlite_file(url)
    if path is None:
        return url
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def missing_file_message(url: str, hint: str) -> str | None:
    """Why the explorer cannot open a SQLite URL whose file does not exist (None when it does)."""
    path = sqlite_file(url)
    if path is None or path.is_file():
        return None
    return f"The SQLite file {path} does not exist — {hint} (or set DATABASE_URL to the right file)."
