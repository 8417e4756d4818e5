"""The one place that reads the environment.

Every service (schema script, upload, explorer, API) asks this module for its
settings, so a deployment is configured by environment variables alone.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_PATH = PROJECT_ROOT / "data" / "census.db"
DEFAULT_SOURCE = PROJECT_ROOT / "data" / "Input_Dataset.csv"
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://census:census@localhost:5432/census"


def sqlite_url(path: Path | str = DEFAULT_SQLITE_PATH) -> str:
    """A URL for a physical SQLite file (the embedded default, never in-memory)."""
    return f"sqlite:///{Path(path).resolve()}"


@dataclass(frozen=True)
class Settings:
    """Settings with sane defaults; see README "Configuration" for each variable."""

    database_url: str
    postgres_url: str
    connect_timeout_s: float
    api_host: str
    api_port: int
    explorer_port: int
    git_commit: str
    # Largest person table aggregated in memory (warehouse.columnar); 0 disables it.
    columnar_max_rows: int
    # The explorer under concurrent use (README "Many analysts at once").
    explorer_num_threads: int
    explorer_chromium: str
    explorer_chromedriver: str
    explorer_image_browsers: int
    explorer_render_timeout_s: float
    explorer_export_dir: Path


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"environment variable {name}={raw!r} is not a whole number") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"environment variable {name}={raw!r} is not a number") from None


def get_settings() -> Settings:
    """Read the environment now (not at import), so tests and CLIs can set it first."""
    return Settings(
        database_url=os.environ.get("DATABASE_URL", "").strip() or sqlite_url(),
        postgres_url=os.environ.get("POSTGRES_URL", "").strip() or DEFAULT_POSTGRES_URL,
        connect_timeout_s=_float("DATABASE_CONNECT_TIMEOUT", 30.0),
        api_host=os.environ.get("API_HOST", "127.0.0.1"),
        api_port=_int("API_PORT", 8000),
        explorer_port=_int("EXPLORER_PORT", 5006),
        git_commit=os.environ.get("GIT_COMMIT", "unknown"),
        columnar_max_rows=_int("COLUMNAR_MAX_ROWS", 5_000_000),
        explorer_num_threads=_int("EXPLORER_NUM_THREADS", 8),
        explorer_chromium=os.environ.get("EXPLORER_CHROMIUM", "").strip() or "/usr/bin/chromium",
        explorer_chromedriver=os.environ.get("EXPLORER_CHROMEDRIVER", "").strip() or "/usr/bin/chromedriver",
        explorer_image_browsers=max(1, _int("EXPLORER_IMAGE_BROWSERS", 2)),
        explorer_render_timeout_s=_float("EXPLORER_RENDER_TIMEOUT", 20.0),
        explorer_export_dir=Path(
            os.environ.get("EXPLORER_EXPORT_DIR", "").strip()
            or Path(tempfile.gettempdir()) / f"census-explorer-exports-{os.getuid()}"
        ),
    )


def resolve_database_url(db: str | None = None, url: str | None = None) -> str:
    """Turn the CLI switch (`--db sqlite|postgres`, `--url`) into one URL.

    Precedence: an explicit --url, then --db, then DATABASE_URL, then the SQLite file.
    `--db postgres` uses DATABASE_URL when it already names PostgreSQL, else POSTGRES_URL.
    """
    settings = get_settings()
    if url:
        return url
    if db == "sqlite":
        env = settings.database_url
        return env if env.startswith("sqlite") else sqlite_url()
    if db == "postgres":
        env = settings.database_url
        return env if env.startswith("postgresql") else settings.postgres_url
    return settings.database_url
