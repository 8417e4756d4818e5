"""Every error as one JSON shape (`ErrorBody`): status, error, detail, parameter, allowed.

Validation errors from Litestar (a value that is not a number, not one of an
enum's values, out of bounds) and `QueryError`s from the query layer (age_min
above age_max, a duplicate group_by) both become 400s that name the parameter
and say what is allowed. A database that does not answer, is locked past the
lock timeout, runs a query past the statement timeout or has no free connection
is a 503 with `Retry-After`, never a 500; its detail says which, in words that
name no host, port, role or path (the full reason goes to the log).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.schemas import (
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_PERSON_ID,
    RANGE_BOUNDS,
    DimensionName,
    ErrorBody,
    GroupBy,
    Measure,
    PeopleField,
    SortKey,
)
from warehouse.config import get_settings
from warehouse.db import DatabaseUnavailable
from warehouse.domain import CATEGORIES
from warehouse.query import UNKNOWN_PARAM, QueryError

log = logging.getLogger("api")

# What each parameter allows, for error messages.
ALLOWED: dict[str, list[str]] = {
    **{column: [*values, UNKNOWN_PARAM] for column, values in CATEGORIES.items()},
    **{name: [f"a whole number from {low} to {high}"] for name, (low, high) in RANGE_BOUNDS.items()},
    "fields": [m.value for m in PeopleField],  # type: ignore[attr-defined]
    "sort": [m.value for m in SortKey],  # type: ignore[attr-defined]
    "group_by": [m.value for m in GroupBy],  # type: ignore[attr-defined]
    "measures": [m.value for m in Measure],  # type: ignore[attr-defined]
    "limit": [f"a whole number from 1 to {MAX_LIMIT}"],
    "offset": [f"a whole number from 0 to {MAX_OFFSET}"],
    "person_id": [f"a whole number from 1 to {MAX_PERSON_ID}"],
    "name": [m.value for m in DimensionName],  # type: ignore[attr-defined]
}


class UnknownParameter(HTTPException):
    status_code = 400


def error_response(
    status: int,
    detail: str,
    parameter: str | None = None,
    allowed: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorBody]:
    body = ErrorBody(
        status=status, error=HTTPStatus(status).phrase, detail=detail, parameter=parameter, allowed=allowed
    )
    return Response(body, status_code=status, headers=headers, media_type="application/json")


_KEY = re.compile(r"`\$\.([A-Za-z_]+)")


def _validation_problem(exc: ValidationException) -> tuple[str | None, str]:
    """The parameter and message of Litestar's first validation error."""
    extra = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        first: dict[str, Any] = extra[0]
        key = first.get("key")
        message = str(first.get("message") or exc.detail)
        if not key:
            match = _KEY.search(message)
            key = match.group(1) if match else None
        return (str(key) if key else None), message
    return None, str(exc.detail)


def handle_validation(request: Request, exc: ValidationException) -> Response[ErrorBody]:
    parameter, message = _validation_problem(exc)
    if parameter:
        shown = request.query_params.getall(parameter, []) if parameter in request.query_params else []
        value = f" (got {', '.join(repr(v) for v in shown)})" if shown else ""
        detail = f"invalid value for {parameter}{value}: {message}"
    else:
        detail = message
    return error_response(400, detail, parameter, ALLOWED.get(parameter or ""))


def handle_query_error(_request: Request, exc: QueryError) -> Response[ErrorBody]:
    parameter = exc.parameter
    allowed = exc.allowed if exc.allowed is not None else ALLOWED.get(parameter)
    return error_response(400, f"{parameter}: {exc.message}", parameter, allowed)


TOO_MANY_REQUESTS = "too many requests from this client; retry after the number of seconds in Retry-After"


def handle_http_exception(_request: Request, exc: HTTPException) -> Response[ErrorBody]:
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    headers = dict(exc.headers or {})
    if exc.status_code == 429:
        # Litestar's rate limiter says when the window resets; clients read Retry-After.
        headers.setdefault("Retry-After", headers.get("RateLimit-Reset", "60"))
        return error_response(429, TOO_MANY_REQUESTS, headers=headers)
    return error_response(exc.status_code, str(exc.detail), extra.get("parameter"), extra.get("allowed"), headers)


# Known causes, by a fragment of the driver's message -> what a client may be told.
_PUBLIC_REASONS: tuple[tuple[str, str], ...] = (
    ("queuepool limit", "every database connection is busy"),
    ("statement timeout", "the query took longer than the statement timeout"),
    ("interrupted", "the query took longer than the statement timeout"),
    ("lock timeout", "the data is locked (an upload or maintenance is running)"),
    ("database is locked", "the data is locked (an upload or maintenance is running)"),
    ("refused", "connection refused"),
    ("timeout expired", "connecting timed out"),
    ("timed out", "connecting timed out"),
    ("could not translate host name", "the database host is unknown"),
    ("authentication failed", "the database refused the credentials"),
    ("no such table", "the database has no census tables"),
    ("does not exist", "the database or a table does not exist"),
    ("unable to open database file", "the database file cannot be opened"),
    ("readonly database", "the database file cannot be read without writing"),
    ("server closed the connection", "the connection to the database broke"),
    ("terminating connection", "the connection to the database broke"),
)


def raw_reason(error: BaseException) -> str:
    """The driver's first line, for the log."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return text[0] if text else type(error).__name__


def public_reason(error: BaseException) -> str:
    """Why the database did not answer, without host, port, role or file path."""
    lowered = raw_reason(error).lower()
    for fragment, reason in _PUBLIC_REASONS:
        if fragment in lowered:
            return reason
    return "the database did not answer"


def retry_after_s() -> int:
    """Seconds a client should wait before retrying a 503: a lock or a busy pool
    clears on the scale of the configured waits."""
    settings = get_settings()
    return max(1, round(max(settings.api_lock_timeout_s, settings.api_db_pool_timeout_s)))


def handle_database_error(request: Request, exc: Exception) -> Response[ErrorBody]:
    log.warning(
        "database error on %s (request %s): %s",
        request.url.path,
        request.scope.get("state", {}).get("request_id", "-"),
        raw_reason(exc),
    )
    return error_response(
        503, f"the database did not answer: {public_reason(exc)}", headers={"Retry-After": str(retry_after_s())}
    )


def handle_unexpected(request: Request, exc: Exception) -> Response[ErrorBody]:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return error_response(500, "internal error; it has been logged")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ValidationException: handle_validation,
    QueryError: handle_query_error,
    HTTPException: handle_http_exception,
    # Could not connect, or the connection broke: the database is unavailable.
    # Any other database error is a bug and stays a logged 500.
    DatabaseUnavailable: handle_database_error,
    # No free pooled connection within API_DB_POOL_TIMEOUT: busy, not broken.
    PoolTimeout: handle_database_error,
    OperationalError: handle_database_error,
    InterfaceError: handle_database_error,
    Exception: handle_unexpected,
}
