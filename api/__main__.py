"""`python -m api`: serve the API with uvicorn on API_HOST:API_PORT (default 127.0.0.1:8000).

python -m api [--host HOST] [--port PORT] [--workers N]

The server is uvicorn on httptools and uvloop with the limits of `api.server`
(request-head timeout and size, JSON errors) and a keep-alive timeout of
API_KEEP_ALIVE seconds. The access log is the app's own (JSON, `api.access`).
"""

from __future__ import annotations

import argparse

import uvicorn

from api.server import HardenedHttpToolsProtocol
from warehouse.config import get_settings


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m api", description="Serve the census API.")
    parser.add_argument("--host", default=settings.api_host)
    parser.add_argument("--port", type=int, default=settings.api_port)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        http=HardenedHttpToolsProtocol,
        loop="uvloop",
        timeout_keep_alive=int(max(1, settings.api_keep_alive_s)),
        # The app's own errors stay JSON; uvicorn's "Server" header says nothing useful.
        server_header=False,
    )


if __name__ == "__main__":
    main()
