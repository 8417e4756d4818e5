"""The Litestar application: `create_app()` wires controllers, service and errors.

The engine is created once, at startup, and disposed at shutdown; each request
borrows a pooled connection through `CensusService`. The API only reads.

At startup a background thread builds the analytic copy /stats answers from
(`warehouse.analytics`, DuckDB, a few seconds per 1,000,000 people), so the first /stats
request does not pay for it; until it is ready, /stats answers in SQL.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request, Response
from litestar.datastructures import ResponseHeader, State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from api.controllers import DimensionsController, PeopleController, StatsController, health, provide_service
from api.errors import EXCEPTION_HANDLERS, error_response
from api.schemas import ErrorBody
from api.services import CensusService, make_read_engine
from warehouse import analytics
from warehouse.config import get_settings

DESCRIPTION = """Query the census (UCI Adult) by filter parameters and get JSON.

Filters are the same on every endpoint and mean what they mean in the explorer
(both use the warehouse's query layer). Categorical parameters repeat
(`gender=Female&gender=Male`); `unknown` selects missing values. Every error is a
JSON body naming the parameter and listing what is allowed."""


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


def create_app(database_url: str | None = None) -> Litestar:
    """The API for `database_url` (default: DATABASE_URL, else data/census.db)."""
    settings = get_settings()
    url = database_url or settings.database_url

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        service = CensusService(make_read_engine(url), url)
        app.state.census = service
        analytics.warm_up_in_background(service.engine)
        try:
            yield
        finally:
            service.dispose()

    return Litestar(
        route_handlers=[PeopleController, StatsController, DimensionsController, health],
        dependencies={"service": Provide(provide_service, sync_to_thread=False)},
        lifespan=[database],
        state=State({"git_commit": settings.git_commit, "database_url": url}),
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=reject_unknown_parameters,
        # Which replica answered (its container hostname), for checks behind the proxy.
        response_headers=[ResponseHeader(name="X-Served-By", value=socket.gethostname())],
        openapi_config=OpenAPIConfig(
            title="Census API",
            version="1.0.0",
            description=DESCRIPTION,
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
        ),
        debug=False,
    )
