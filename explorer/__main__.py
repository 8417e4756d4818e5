"""`python -m explorer`: serve the explorer with `panel serve` on EXPLORER_PORT.

Extra arguments are passed to `panel serve` (for example --address 0.0.0.0).
"""

from __future__ import annotations

import os
import sys

from explorer.serve import serve_command, serve_environment
from warehouse.config import get_settings


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    own_origins = any(arg.startswith("--allow-websocket-origin") for arg in extra)
    command = serve_command(get_settings().explorer_port, allow_origins=not own_origins)
    # Replace this process, so signals (Ctrl-C, docker stop) reach the server directly.
    os.execve(sys.executable, [*command, *extra], serve_environment())
    return 0  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main())
