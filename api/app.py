"""The Litestar application: `create_app()` wires controllers, service and errors.

The engine is created once, at startup, and disposed at shutdown; each request
borrows a pooled connection through `CensusService`. The API only reads.

At startup a background thread builds the analytic copy /stats answers from
(`warehouse.analytics`, DuckDB, a few seconds per 1,000,000 people), so the first /stats
request does not pay for it; until it is ready, /stats answers in SQL.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import swagger_ui_bundle
from anyio import to_thread
from litestar import Litestar, Request, Response
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.datastructures import ResponseHeader, State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.prometheus import PrometheusController
from litestar.static_files import create_static_files_router

from api.controllers import API_PREFIX, DimensionsController, PeopleController, StatsController, health, provide_service
from api.errors import EXCEPTION_HANDLERS, error_response
from api.http import (
    DATABASE_INFO,
    POOL_IN_USE,
    ClientWindows,
    DatabaseSlots,
    DataGate,
    HeadAsGet,
    RateLimit,
    RequestLog,
    RequestMetrics,
)
from api.schemas import ErrorBody
from api.services import CensusService, make_api_engine
from warehouse import analytics
from warehouse.config import Settings, get_settings

DESCRIPTION = """Query the census (UCI Adult) by filter parameters and get JSON.

Filters are the same on every endpoint and mean what they mean in the explorer
(both use the warehouse's query layer). Categorical parameters repeat
(`gender=Female&gender=Male`); `unknown` selects missing values. Every error is a
JSON body naming the parameter and listing what is allowed.

`/api/v1/people` also answers CSV or NDJSON (`format`, or `Accept`), streamed.
Data responses carry a weak `ETag` tied to the data's version (send it back in
`If-None-Match` for a 304) and `Cache-Control`; gzip when the client accepts it.
A busy or locked database is a 503 with `Retry-After`, as is a query past the
statement timeout; a client over the rate limit (when enabled) gets a 429 with
`Retry-After`. Every response has an `X-Request-Id` (yours, if you send one).
Every GET also answers HEAD: the same status and headers, no body.
Interactive docs: `/schema/swagger` (served by the API itself, no CDN)."""

SWAGGER_ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
STATIC = "/schema/static"


def reject_unknown_parameters(request: Request) -> Response[ErrorBody] | None:
    """A mistyped parameter is an error, not a silently ignored filter."""
    allowed = request.route_handler.opt.get("query")
    if allowed is None:
        return None
    unknown = sorted(key for key in request.query_params if key not in allowed)
    if unknown:
        takes = "takes no query parameters" if not allowed else "does not take it"
        return error_response(
            400,
            f"unknown query parameter(s): {', '.join(unknown)}; {request.url.path} {takes}",
            parameter=unknown[0],
            allowed=sorted(allowed),
        )
    return None


def _access_logging() -> None:
    """JSON access lines go to stderr as they are (the line is the message)."""
    logger = logging.getLogger("api.access")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _middleware(settings: Settings) -> list[Any]:
    """Outermost first: request id and access log, rate limit, metrics, the database gate."""
    middleware: list[Any] = [DefineMiddleware(RequestLog, enabled=settings.api_access_log)]
    if settings.api_rate_limit:
        exempt = ("/health", f"{API_PREFIX}/health", "/metrics")
        # One set of counters for every route (Litestar makes a middleware instance per route).
        windows = ClientWindows(settings.api_rate_limit, window_s=60)
        middleware.append(DefineMiddleware(RateLimit, windows=windows, exclude=exempt))
    if settings.api_metrics:
        middleware.append(DefineMiddleware(RequestMetrics, app_name="census_api"))
    middleware.append(
        DefineMiddleware(
            DataGate,
            prefix=API_PREFIX,
            exclude=(f"{API_PREFIX}/health",),
            slots=DatabaseSlots(settings.api_db_pool_size),
            wait_s=settings.api_db_pool_timeout_s,
            max_age_s=settings.api_cache_max_age_s,
        )
    )
    return middleware


class Metrics(PrometheusController):
    """Prometheus text format: request counts and latencies by path and status, the
    database in use, pooled connections in use, requests waiting for a slot."""

    path = "/metrics"
    include_in_schema = False


def create_app(database_url: str | None = None) -> Litestar:
    """The API for `database_url` (default: DATABASE_URL, else data/census.db)."""
    settings = get_settings()
    url = database_url or settings.database_url
    _access_logging()

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        # Handler threads never outnumber pooled connections (plus /health's own
        # limiter): a thread never waits for a connection it cannot get.
        to_thread.current_default_thread_limiter().total_tokens = settings.api_db_pool_size + 2
        app.state.health_limiter = anyio.CapacityLimiter(2)
        service = CensusService(make_api_engine(url, settings), url)
        app.state.census = service
        DATABASE_INFO.clear()
        DATABASE_INFO.labels(backend=service.backend, database=service.database).set(1)
        POOL_IN_USE.set_function(service.engine.pool.checkedout)  # type: ignore[attr-defined]
        analytics.warm_up_in_background(service.engine)
        try:
            yield
        finally:
            service.dispose()

    docs = SwaggerRenderPlugin(
        path="/swagger",
        js_url=f"{STATIC}/swagger-ui-bundle.js",
        css_url=f"{STATIC}/swagger-ui.css",
        standalone_preset_js_url=f"{STATIC}/swagger-ui-standalone-preset.js",
        favicon=f'<link rel="icon" type="image/png" href="{STATIC}/favicon-32x32.png">',
    )
    handlers: list[Any] = [
        PeopleController,
        StatsController,
        DimensionsController,
        health,
        create_static_files_router(path=STATIC, directories=[SWAGGER_ASSETS], include_in_schema=False),
    ]
    if settings.api_metrics:
        handlers.append(Metrics)
    app = Litestar(
        route_handlers=handlers,
        dependencies={"service": Provide(provide_service, sync_to_thread=False)},
        lifespan=[database],
        state=State(
            {
                "git_commit": settings.git_commit,
                "database_url": url,
                "health_timeout_s": settings.api_health_timeout_s,
            }
        ),
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=reject_unknown_parameters,
        # Which replica answered (its container hostname), for checks behind the proxy.
        response_headers=[ResponseHeader(name="X-Served-By", value=socket.gethostname())],
        middleware=_middleware(settings),
        compression_config=CompressionConfig(backend="gzip", minimum_size=1024, gzip_compress_level=6),
        cors_config=CORSConfig(allow_origins=list(settings.api_cors_origins), allow_methods=["GET", "HEAD"])
        if settings.api_cors_origins
        else None,
        openapi_config=OpenAPIConfig(
            title="Census API",
            version="1.0.0",
            description=DESCRIPTION,
            path="/schema",
            render_plugins=[JsonRenderPlugin(), docs],
        ),
        debug=False,
    )
    # HEAD answers as GET without the body, on every path (routing would say 405).
    app.asgi_handler = HeadAsGet(app.asgi_handler)
    return app
