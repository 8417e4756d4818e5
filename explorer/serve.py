"""How the explorer is started with `panel serve`: `python -m explorer`, the
browser tests and the benchmark all start it this way."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
PROJECT_ROOT = APP.parent.parent


def serve_command(port: int, address: str | None = None, allow_origins: bool = True) -> list[str]:
    """`panel serve explorer/app.py` on `port`; websocket connections are allowed
    from localhost and 127.0.0.1 unless the caller names its own origins."""
    command = [sys.executable, "-m", "panel", "serve", str(APP), "--port", str(port)]
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
