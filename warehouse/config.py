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
    # Largest person table copied into the analytic engine (warehouse.analytics); 0 disables it.
    columnar_max_rows: int
    # The explorer starts its export browser this many seconds after start-up (0: at once) ...
    explorer_warm_delay_s: float
    # ... unless this is off (EXPLORER_WARM_BROWSER=0).
    explorer_warm_browser: bool
    # Where the notebook writes insights.json.
    insights_path: Path
    # Where the analytic copy's files of a PostgreSQL database go (a SQLite file's go beside it).
    analytic_dir: Path
    # The explorer under concurrent use (README "Many analysts at once").
    explorer_num_threads: int
    explorer_num_procs: int
    explorer_chromium: str
    explorer_chromedriver: str
    explorer_image_browsers: int
    explorer_render_timeout_s: float
    explorer_export_dir: Path
    # Reliability flag of warehouse.stats: fewer people or a larger relative standard error
    # marks an estimate unreliable (NCHS presentation rule; see warehouse/stats.py).
    reliability_min_n: int = 30
    reliability_max_rse: float = 0.30
    # The API's limits and HTTP features (README "The API"): defaults suit one
    # small server; every one can be changed without a code change.
    api_db_pool_size: int = 8  # connections per API process; also its handler thread limit
    api_db_pool_timeout_s: float = 5.0  # wait for a free connection, then 503 + Retry-After
    api_statement_timeout_s: float = 10.0  # longest query, then 503 + Retry-After
    api_lock_timeout_s: float = 3.0  # longest wait for a table lock (PostgreSQL), then 503
    api_health_timeout_s: float = 0.9  # /health answers within this, locked or not
    api_rate_limit: int = 0  # requests per minute per client address; 0 = off
    api_cors_origins: tuple[str, ...] = ()  # origins allowed by CORS; empty = CORS off
    api_access_log: bool = True  # one JSON line per request on stderr
    api_metrics: bool = True  # Prometheus /metrics
    api_cache_max_age_s: int = 0  # Cache-Control max-age of data responses (ETag revalidates)
    api_header_timeout_s: float = 10.0  # a request head must arrive within this (slowloris)
    api_keep_alive_s: float = 5.0  # idle keep-alive connections are closed after this
    api_max_url_bytes: int = 8192  # longer request target: 414
    api_max_head_bytes: int = 16384  # larger request head: 431


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


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"environment variable {name}={raw!r} is not one of 1/0, true/false, yes/no, on/off")


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise SystemExit(f"environment variable {name}={value!r} must be above 0")
    return value


def columnar_max_rows() -> int:
    """COLUMNAR_MAX_ROWS alone: read on every count and aggregate, where building
    all the settings (53 us) cost a tenth of a page's count."""
    return _int("COLUMNAR_MAX_ROWS", 20_000_000)


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
        columnar_max_rows=columnar_max_rows(),
        explorer_warm_delay_s=_float("EXPLORER_WARM_DELAY", 4.0),
        explorer_warm_browser=os.environ.get("EXPLORER_WARM_BROWSER", "1").strip() != "0",
        insights_path=Path(os.environ.get("INSIGHTS_PATH", "").strip() or PROJECT_ROOT / "insights.json"),
        analytic_dir=Path(os.environ.get("ANALYTIC_DIR", "").strip() or PROJECT_ROOT / "data" / "analytic"),
        reliability_min_n=_int("RELIABILITY_MIN_N", 30),
        reliability_max_rse=_float("RELIABILITY_MAX_RSE", 0.30),
        api_db_pool_size=int(_positive("API_DB_POOL_SIZE", _int("API_DB_POOL_SIZE", 8))),
        api_db_pool_timeout_s=_positive("API_DB_POOL_TIMEOUT", _float("API_DB_POOL_TIMEOUT", 5.0)),
        api_statement_timeout_s=_positive("API_STATEMENT_TIMEOUT", _float("API_STATEMENT_TIMEOUT", 10.0)),
        api_lock_timeout_s=_positive("API_LOCK_TIMEOUT", _float("API_LOCK_TIMEOUT", 3.0)),
        api_health_timeout_s=_positive("API_HEALTH_TIMEOUT", _float("API_HEALTH_TIMEOUT", 0.9)),
        api_rate_limit=max(0, _int("API_RATE_LIMIT", 0)),
        api_cors_origins=tuple(o.strip() for o in os.environ.get("API_CORS_ORIGINS", "").split(",") if o.strip()),
        api_access_log=_bool("API_ACCESS_LOG", True),
        api_metrics=_bool("API_METRICS", True),
        api_cache_max_age_s=max(0, _int("API_CACHE_MAX_AGE", 0)),
        api_header_timeout_s=_positive("API_HEADER_TIMEOUT", _float("API_HEADER_TIMEOUT", 10.0)),
        api_keep_alive_s=_positive("API_KEEP_ALIVE", _float("API_KEEP_ALIVE", 5.0)),
        api_max_url_bytes=int(_positive("API_MAX_URL_BYTES", _int("API_MAX_URL_BYTES", 8192))),
        api_max_head_bytes=int(_positive("API_MAX_HEAD_BYTES", _int("API_MAX_HEAD_BYTES", 16384))),
        explorer_num_threads=max(0, _int("EXPLORER_NUM_THREADS", 0)),
        explorer_num_procs=max(0, _int("EXPLORER_NUM_PROCS", 1)),
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
