"""ASGI middleware of the API: request ids, the JSON access log, the database gate, ETags.

- `RequestLog` (outermost): every response carries `X-Request-Id` (the client's,
  when it sent a sane one, else a new one); one JSON line per request goes to the
  `api.access` logger (time, id, method, path, query, status, bytes, ms, client).
- `DataGate` (around the data endpoints, /api/v1/* except health): at most
  API_DB_POOL_SIZE requests use the database at once; a request that cannot start
  within API_DB_POOL_TIMEOUT is a 503 with `Retry-After` (instead of queueing
  without bound behind a lock). It also gives every answer a weak `ETag` made
  from the data's version (the `load` table: every upload changes it) and the
  request (path, query, `Accept`), and `Cache-Control`; `If-None-Match` with the
  current tag is a 304 without running the query.
- `HeadAsGet` (around the whole application, outside routing): HEAD is answered
  as the same GET, with its status and headers and no body.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio import to_thread
from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Gauge

from api.errors import retry_after_s

access_log = logging.getLogger("api.access")

REQUEST_ID_HEADER = "x-request-id"
# A client's id is echoed only when it is short and plain (no header or log injection).
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Which database this process serves (for operators' dashboards), and its pool.
DATABASE_INFO = Gauge("census_api_database", "The database the API reads (1 = in use)", ["backend", "database"])
POOL_IN_USE = Gauge("census_api_db_connections_in_use", "Pooled database connections checked out")
GATE_WAITING = Gauge("census_api_requests_waiting", "Requests waiting for a database slot")


HEAD_FLAG = "head_request"  # in scope["state"]: the client asked HEAD (the app sees GET)


class HeadAsGet:
    """HEAD on any path is the GET of that path without its body (RFC 9110 9.3.2).

    Litestar routes HEAD only to handlers declared for it (else 405) and does not
    drop a GET handler's body, so this wraps the application's ASGI handler,
    before routing: the app runs the GET (same status, headers, ETag, 304s,
    Content-Length) and only the body is withheld. The server is still told it
    is a HEAD (the original scope is not modified), so it expects no body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        as_get.setdefault("state", {})[HEAD_FLAG] = True  # type: ignore[typeddict-unknown-key]
        finished = False

        async def headers_only(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.body":
                # One empty, final body; the rest of a streamed GET is dropped.
                if not finished:
                    finished = True
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(message)

        await self.app(as_get, receive, headers_only)  # type: ignore[arg-type]


def request_id(scope: Scope) -> str:
    """The id of the request in `scope` (set by RequestLog)."""
    return str(scope.get("state", {}).get("request_id", "-"))


class RequestLog:
    """Request id on every response and in the log; the JSON access log."""

    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid  # type: ignore[typeddict-item]
        started = time.perf_counter()
        head = bool(scope["state"].get(HEAD_FLAG))  # type: ignore[typeddict-item]
        status = 0
        size = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = rid
            elif message["type"] == "http.response.body" and not head:  # HEAD: HeadAsGet drops the body
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.enabled:
                self._log(scope, rid, status, size, started)

    @staticmethod
    def _log(scope: Scope, rid: str, status: int, size: int, started: float) -> None:
        client = scope.get("client")
        access_log.info(
            json.dumps(
                {
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "request_id": rid,
                    "method": "HEAD" if scope.get("state", {}).get(HEAD_FLAG) else scope.get("method"),
                    "path": scope.get("path"),
                    "query": scope.get("query_string", b"").decode("latin-1"),
                    "status": status,  # 0: the client left before an answer
                    "bytes": size,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": client[0] if client else None,
                },
                separators=(",", ":"),
            )
        )


class DataGate:
    """Bounded database concurrency with 503 + Retry-After; ETag, Cache-Control and 304s."""

    def __init__(self, app: ASGIApp, prefix: str, exclude: tuple[str, ...], slots: int, wait_s: float, max_age_s: int):
        self.app = app
        self.prefix = prefix
        self.exclude = exclude
        self.slots = slots
        self.wait_s = wait_s
        self.cache_control = f"public, max-age={max_age_s}, must-revalidate"
        self.limiter: anyio.CapacityLimiter | None = None  # made on first use, inside the event loop

    def _applies(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        return (
            scope["type"] == "http"
            and scope.get("method") in ("GET", "HEAD")
            and path.startswith(self.prefix)
            and not path.startswith(self.exclude)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._applies(scope):
            await self.app(scope, receive, send)
            return
        if self.limiter is None:
            self.limiter = anyio.CapacityLimiter(self.slots)
        acquired = False
        GATE_WAITING.inc()
        try:
            with anyio.move_on_after(self.wait_s):
                await self.limiter.acquire()
                acquired = True
        finally:
            GATE_WAITING.dec()
        if not acquired:
            await _busy(send, self.wait_s)
            return
        try:
            await self._answer(scope, receive, send)
        finally:
            self.limiter.release()

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = scope["litestar_app"].state.census  # type: ignore[typeddict-item]
        try:
            version = await to_thread.run_sync(service.data_version)
        except Exception:  # noqa: BLE001 (the handler will meet the same problem and answer 503)
            await self.app(scope, receive, send)
            return
        tag = _etag(version, scope)
        if tag in _if_none_match(scope):
            await send(
                {
                    "type": "http.response.start",
                    "status": 304,
                    "headers": [
                        (b"etag", tag.encode()),
                        (b"cache-control", self.cache_control.encode()),
                        (b"vary", b"Accept, Accept-Encoding"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_tag(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = MutableScopeHeaders.from_message(message)
                headers["etag"] = tag
                headers["cache-control"] = self.cache_control
                vary = headers.get("vary")  # gzip's "Accept-Encoding", when compressed
                headers["vary"] = f"{vary}, Accept" if vary else "Accept"
            await send(message)

        await self.app(scope, receive, send_with_tag)


def _etag(version: Any, scope: Scope) -> str:
    accept = next((v for k, v in scope["headers"] if k == b"accept"), b"")
    key = f"{version}|{scope['path']}|{scope.get('query_string', b'').decode('latin-1')}|{accept.decode('latin-1')}"
    # Weak: the same data compressed or not is the same representation for caching.
    return f'W/"{hashlib.sha256(key.encode()).hexdigest()[:32]}"'


def _if_none_match(scope: Scope) -> set[str]:
    raw = b",".join(v for k, v in scope["headers"] if k == b"if-none-match").decode("latin-1")
    tags = {part.strip() for part in raw.split(",") if part.strip()}
    # Weak comparison (RFC 9110 8.8.3.2): W/"x" and "x" match.
    return tags | {f"W/{t}" for t in tags if not t.startswith("W/")}


async def _busy(send: Send, wait_s: float) -> None:
    body = json.dumps(
        {
            "status": 503,
            "error": "Service Unavailable",
            "detail": f"the database is busy: no query slot came free within {wait_s:g} s",
            "parameter": None,
            "allowed": None,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after_s()).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
