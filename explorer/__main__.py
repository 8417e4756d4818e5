"""`python -m explorer`: serve the explorer with `panel serve` on EXPLORER_PORT.

The command comes from explorer/serve.py (worker threads from EXPLORER_NUM_THREADS,
processes from EXPLORER_NUM_PROCS, the download route, session clean-up); docker-compose.yml
runs it too. Extra arguments are passed to `panel serve` (for example --address 0.0.0.0
or --liveness); `--num-threads N` replaces EXPLORER_NUM_THREADS.
"""

from __future__ import annotations

import os
import sys

from explorer.serve import serve_command, serve_environment
from warehouse.config import get_settings


def _own_threads(extra: list[str]) -> tuple[int | None, list[str]]:
    """Take `--num-threads N` (or `--num-threads=N`) out of the extra arguments."""
    rest: list[str] = []
    threads: int | None = None
    items = iter(extra)
    for arg in items:
        value = (
            next(items, "")
            if arg == "--num-threads"
            else arg.partition("=")[2]
            if arg.startswith("--num-threads=")
            else None
        )
        if value is None:
            rest.append(arg)
            continue
        try:
            threads = int(value)
        except ValueError:
            raise SystemExit(f"--num-threads needs a whole number, not {value!r}") from None
    return threads, rest


def main(argv: list[str] | None = None) -> int:
    threads, extra = _own_threads(list(sys.argv[1:] if argv is None else argv))
    own_origins = any(arg.startswith("--allow-websocket-origin") for arg in extra)
    command = serve_command(get_settings().explorer_port, allow_origins=not own_origins, num_threads=threads)
    # Replace this process, so signals (Ctrl-C, docker stop) reach the server directly.
    os.execve(sys.executable, [*command, *extra], serve_environment())
    return 0  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main())
