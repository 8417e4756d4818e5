"""Every error as one JSON shape (`ErrorBody`): status, error, detail, parameter, allowed.

Validation errors from Litestar (a value that is not a number, not one of an
enum's values, out of bounds) and `QueryError`s from the query layer (age_min
above age_max, a duplicate group_by) both become 400s that name the parameter
and say what is allowed. A database that does not answer is a 503, never a 500.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import InterfaceError, OperationalError

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


def handle_http_exception(_request: Request, exc: HTTPException) -> Response[ErrorBody]:
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    return error_response(
        exc.status_code,
        str(exc.detail),
        extra.get("parameter"),
        extra.get("allowed"),
        headers=dict(exc.headers or {}),
    )


def handle_database_error(request: Request, exc: Exception) -> Response[ErrorBody]:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    log.warning("database error on %s: %s", request.url.path, reason[0] if reason else exc)
    return error_response(503, f"the database did not answer: {reason[0] if reason else type(exc).__name__}")


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
    OperationalError: handle_database_error,
    InterfaceError: handle_database_error,
    Exception: handle_unexpected,
}
