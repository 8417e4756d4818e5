"""How the explorer is started with `panel serve`: `python -m explorer` (and so
docker-compose.yml and the image), the browser tests and the benchmark all start
it this way; this is the one place that builds the `panel serve` arguments.

Beyond the app itself the command sets what serving many analysts at once needs
(README "Many analysts at once"):
- `--num-threads N` (EXPLORER_NUM_THREADS): every session's callbacks (page turns,
  filter changes, chart builds, image exports) run in a pool of N threads instead of
  on the one event-loop thread, so one analyst's slow work never freezes another's page;
- `--plugins explorer.downloads`: the route that streams finished exports from disk;
- `--unused-session-lifetime` / `--check-unused-sessions`: a closed tab's session
  (and its export file) is dropped within about a minute.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from warehouse.config import get_settings

APP = Path(__file__).resolve().parent / "app.py"
PROJECT_ROOT = APP.parent.parent
UNUSED_SESSION_LIFETIME_MS = 60_000
CHECK_UNUSED_SESSIONS_MS = 10_000


def serve_command(
    port: int,
    address: str | None = None,
    allow_origins: bool = True,
    num_threads: int | None = None,
    num_procs: int | None = None,
) -> list[str]:
    """`panel serve explorer/app.py` on `port`; websocket connections are allowed
    from localhost and 127.0.0.1 unless the caller names its own origins."""
    settings = get_settings()
    threads = settings.explorer_num_threads if num_threads is None else num_threads
    procs = settings.explorer_num_procs if num_procs is None else num_procs
    command = [sys.executable, "-m", "panel", "serve", str(APP), "--port", str(port)]
    if threads > 0:  # 0: every callback on the event loop (Panel's default, for comparison)
        command += ["--num-threads", str(threads)]
    command += ["--plugins", "explorer.downloads"]
    command += [
        "--unused-session-lifetime",
        str(UNUSED_SESSION_LIFETIME_MS),
        "--check-unused-sessions",
        str(CHECK_UNUSED_SESSIONS_MS),
    ]
    if procs != 1:  # EXPLORER_NUM_PROCS: forked server processes sharing the port (0: one per core)
        command += ["--num-procs", str(procs)]
    if address:
        command += ["--address", address]
    if allow_origins:
        command += [f"--allow-websocket-origin={host}:{port}" for host in ("localhost", "127.0.0.1")]
    return command


def serve_environment(**variables: str) -> dict[str, str]:
    """This process's environment plus `variables`, with the project importable:
    panel serve runs app.py as a script, outside the project's package path."""
    env = {**os.environ, **variables}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def ensure_worker_threads() -> None:
    """Inside the server: run every session's callbacks in worker threads, each
    session's in order (explorer.session_pool). With `--num-threads N` the pool has
    N threads; without (a bare `panel serve explorer/app.py`) EXPLORER_NUM_THREADS;
    0 leaves callbacks on the event loop."""
    import panel as pn

    from explorer.session_pool import install

    threads = pn.config.nthreads if pn.config.nthreads else get_settings().explorer_num_threads
    if threads > 0:
        install(threads)
