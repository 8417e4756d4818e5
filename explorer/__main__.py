"""`python -m explorer`: serve the explorer with `panel serve` on EXPLORER_PORT.

Extra arguments are passed to `panel serve` (for example --address 0.0.0.0).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from warehouse.config import get_settings


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    app = Path(__file__).resolve().parent / "app.py"
    extra = list(sys.argv[1:] if argv is None else argv)
    command = [sys.executable, "-m", "panel", "serve", str(app), "--port", str(settings.explorer_port)]
    if not any(arg.startswith("--allow-websocket-origin") for arg in extra):
        command.append(f"--allow-websocket-origin=localhost:{settings.explorer_port}")
        command.append(f"--allow-websocket-origin=127.0.0.1:{settings.explorer_port}")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    # Replace this process, so signals (Ctrl-C, docker stop) reach the server directly.
    os.execve(sys.executable, [*command, *extra], env)
    return 0  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main())
