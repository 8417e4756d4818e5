"""ASGI middleware of the API: request ids, the JSON access log, the database gate, ETags.

- `RequestLog` (outermost): every response carries `X-Request-Id` (the client's,
  when it sent a sane one, else a new one); one JSON line per request goes to the
  `api.access` logger (time, id, method, path, query, status, bytes, ms, client).
  The request only queues a tuple; `AccessLogWriter`'s thread formats and writes
  the lines a few times a second, so no request waits for a write.
- `RateLimit`: at most N requests per client address per minute (429 with
  `Retry-After`), one counter per client (`ClientWindows`): O(1) per request.
- `RequestMetrics`: Prometheus request counts and latencies by method, path
  template and status, through label children made once per combination.
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

import atexit
import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio import to_thread
from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

from api.errors import TOO_MANY_REQUESTS, retry_after_s

access_log = logging.getLogger("api.access")

REQUEST_ID_HEADER = "x-request-id"
# A client's id is echoed only when it is short and plain (no header or log injection).
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Which database this process serves (for operators' dashboards), and its pool.
DATABASE_INFO = Gauge("census_api_database", "The database the API reads (1 = in use)", ["backend", "database"])
POOL_IN_USE = Gauge("census_api_db_connections_in_use", "Pooled database connections checked out")
GATE_WAITING = Gauge("census_api_requests_waiting", "Requests waiting for a database slot")

# Requests by method, path template and status (the names and labels of Litestar's
# Prometheus middleware, which this module's `RequestMetrics` replaces).
_REQUEST_LABELS = ["method", "path", "status_code", "app_name"]
REQUESTS = Counter("census_api_requests_total", "Total requests", _REQUEST_LABELS)
REQUEST_ERRORS = Counter("census_api_requests_error_total", "Total errors in requests", _REQUEST_LABELS)
REQUEST_SECONDS = Histogram("census_api_request_duration_seconds", "Request duration, in seconds", _REQUEST_LABELS)
IN_PROGRESS = Gauge("census_api_requests_in_progress", "Total requests currently in progress", _REQUEST_LABELS)


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


# What a request leaves for its access-log line:
# (unix time, request id, method, path, query, status, bytes, ms, client address).
AccessEntry = tuple[float, str, str, str, bytes, int, int, float, str | None]


class AccessLogWriter:
    """Writes queued access-log entries to the `api.access` logger from its own thread.

    A request only puts a tuple on a queue (no formatting, no lock held across
    I/O, no write); the thread wakes on the first entry, waits `interval_s` so
    that entries gather, then formats and logs every queued one, in order. At exit
    (and when the app shuts down) `flush()` writes what is left."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.entries: queue.SimpleQueue[AccessEntry] = queue.SimpleQueue()
        self.lock = threading.Lock()  # one drainer at a time keeps the lines in order
        self.thread: threading.Thread | None = None
        self.pid = 0  # the thread belongs to this process (not to a forked worker)

    def put(self, entry: AccessEntry) -> None:
        if self.thread is None or self.pid != os.getpid():
            self._start()
        self.entries.put(entry)

    def _start(self) -> None:
        with self.lock:
            if self.thread is None or self.pid != os.getpid():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._run, name="access-log", daemon=True)
                self.thread.start()
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            first = self.entries.get()
            time.sleep(self.interval_s)
            self._write(first)

    def flush(self) -> None:
        """Write every queued entry now."""
        try:
            first = self.entries.get_nowait()
        except queue.Empty:
            return
        self._write(first)

    def _write(self, first: AccessEntry) -> None:
        with self.lock:
            entry: AccessEntry | None = first
            while entry is not None:
                access_log.info(_access_line(entry))
                try:
                    entry = self.entries.get_nowait()
                except queue.Empty:
                    entry = None


def _access_line(entry: AccessEntry) -> str:
    """One access-log line: a JSON object, keys in a fixed order."""
    when, rid, method, path, query, status, size, ms, client = entry
    return json.dumps(
        {
            "time": datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds"),
            "request_id": rid,
            "method": method,
            "path": path,
            "query": query.decode("latin-1"),
            "status": status,  # 0: the client left before an answer
            "bytes": size,
            "ms": round(ms, 2),
            "client": client,
        },
        separators=(",", ":"),
    )


ACCESS_LOG = AccessLogWriter()


class RequestLog:
    """Request id on every response and in the log; the JSON access log."""

    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                given = value.decode("latin-1")
                break
        # A fresh id: 128 random bits as 32 hex digits (what uuid4().hex looks like, at a tenth of its cost).
        rid = given if given and _SANE_ID.fullmatch(given) else os.urandom(16).hex()
        state = scope.setdefault("state", {})  # type: ignore[typeddict-item]
        state["request_id"] = rid
        started = time.perf_counter()
        head = bool(state.get(HEAD_FLAG))
        status = 0
        size = 0
        rid_header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])  # type: ignore[typeddict-item]
                if not isinstance(headers, list):  # a tuple or another sequence: a list we may extend
                    headers = message["headers"] = list(headers)  # type: ignore[typeddict-item]
                headers.append(rid_header)
            elif message["type"] == "http.response.body" and not head:  # HEAD: HeadAsGet drops the body
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.enabled:
                client = scope.get("client")
                ACCESS_LOG.put(
                    (
                        time.time(),
                        rid,
                        "HEAD" if head else scope.get("method", ""),
                        scope.get("path", ""),
                        scope.get("query_string", b""),
                        status,
                        size,
                        (time.perf_counter() - started) * 1000,
                        client[0] if client else None,
                    )
                )


class ClientWindows:
    """Each client address's request count in its current window (one per process).

    A window starts at a client's first request, as with Litestar's limiter. Kept
    apart from the middleware because Litestar builds one middleware instance per
    route, and the limit is per client, not per client and route."""

    def __init__(self, limit: int, window_s: int = 60) -> None:
        self.limit = limit
        self.window_s = window_s
        self.windows: dict[str, list[int]] = {}  # client -> [the window's end (unix s), requests in it]
        self.next_sweep = 0

    def current(self, client: str, now: int) -> list[int]:
        """The client's open window (a new one when its last has ended)."""
        window = self.windows.get(client)
        if window is None or window[0] <= now:
            if now >= self.next_sweep:  # forget ended windows once per window length
                self.windows = {key: w for key, w in self.windows.items() if w[0] > now}
                self.next_sweep = now + self.window_s
            window = self.windows[client] = [now + self.window_s, 0]
        return window


class RateLimit:
    """At most `windows.limit` requests per client address per window (a 429 past it).

    The answers carry the `RateLimit-*` headers of Litestar's limiter; the 429 is
    the API's JSON error with `Retry-After`, sent from here (not raised) so that it
    passes through `RequestLog`: it has a request id and its line in the log. Litestar's
    limiter stores every timestamp of the window and re-encodes them all on each
    request, so its cost grows with the client's requests in the window (measured:
    0.1 ms a request after 1,000, 0.4 ms after 10,000); here a client is one counter. This runs on the event
    loop, so it needs no lock; the counts are per worker process."""

    def __init__(self, app: ASGIApp, windows: ClientWindows, exclude: tuple[str, ...] = ()) -> None:
        self.app = app
        self.windows = windows
        self.exclude = frozenset(exclude)
        self.policy = f"{windows.limit}; w={windows.window_s}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exclude:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        window = self.windows.current(client[0] if client else "127.0.0.1", int(time.time()))
        if window[1] >= self.windows.limit:
            await _too_many(send, self._headers(window))
            return
        window[1] += 1

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])  # type: ignore[typeddict-item]
                if not isinstance(headers, list):  # a tuple or another sequence: a list we may extend
                    headers = message["headers"] = list(headers)  # type: ignore[typeddict-item]
                headers += [(key.lower().encode(), value.encode()) for key, value in self._headers(window).items()]
            await send(message)

        await self.app(scope, receive, send_with_limits)

    def _headers(self, window: list[int]) -> dict[str, str]:
        return {
            "RateLimit-Policy": self.policy,
            "RateLimit-Limit": str(self.windows.limit),
            "RateLimit-Remaining": str(max(0, self.windows.limit - window[1])),
            "RateLimit-Reset": str(window[0] - int(time.time())),
        }


class RequestMetrics:
    """Counts and times requests for Prometheus, by method, path template and status.

    A label combination's children are looked up once and kept (prometheus
    `labels()` takes a lock and builds a tuple on every call)."""

    def __init__(self, app: ASGIApp, app_name: str = "census_api") -> None:
        self.app = app
        self.app_name = app_name
        self.children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}  # -> (count, seconds, errors)
        self.running: dict[tuple[str, str], Any] = {}  # (method, path) -> in-progress gauge child

    def _children(self, method: str, path: str, status: int) -> tuple[Any, Any, Any]:
        key = (method, path, status)
        found = self.children.get(key)
        if found is None:
            labels = (method, path, str(status), self.app_name)
            found = self.children[key] = (
                REQUESTS.labels(*labels),
                REQUEST_SECONDS.labels(*labels),
                REQUEST_ERRORS.labels(*labels),
            )
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path = scope.get("path_template") or scope["path"]  # type: ignore[typeddict-item]
        running = self.running.get((method, path))
        if running is None:
            running = self.running[method, path] = IN_PROGRESS.labels(method, path, "200", self.app_name)
        started = time.perf_counter()
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        running.inc()
        try:
            await self.app(scope, receive, send_with_status)
        except BaseException:
            status = status or 500  # the exception handler outside answers 500 (or the client left)
            raise
        finally:
            running.dec()
            count, seconds, errors = self._children(method, path, status or 200)
            count.inc()
            seconds.observe(time.perf_counter() - started)
            if status >= 500:
                errors.inc()


class DatabaseSlots:
    """The database slots DataGate hands out, one set for every route: Litestar
    builds a middleware instance per route, and a limiter per instance would let
    each endpoint use the whole pool (a request on another endpoint would then
    queue behind a lock instead of getting its 503)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._limiter: anyio.CapacityLimiter | None = None  # made on first use, inside the event loop

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.total)
        return self._limiter


class DataGate:
    """Bounded database concurrency with 503 + Retry-After; ETag, Cache-Control and 304s."""

    def __init__(
        self, app: ASGIApp, prefix: str, exclude: tuple[str, ...], slots: DatabaseSlots, wait_s: float, max_age_s: int
    ):
        self.app = app
        self.prefix = prefix
        self.exclude = exclude
        self.slots = slots
        self.wait_s = wait_s
        self.cache_control = f"public, max-age={max_age_s}, must-revalidate"

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
        limiter = self.slots.limiter
        acquired = False
        GATE_WAITING.inc()
        try:
            with anyio.move_on_after(self.wait_s):
                await limiter.acquire()
                acquired = True
        finally:
            GATE_WAITING.dec()
        if not acquired:
            await _busy(send, self.wait_s)
            return
        try:
            await self._answer(scope, receive, send)
        finally:
            limiter.release()

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


async def _too_many(send: Send, limits: dict[str, str]) -> None:
    """The 429 of the rate limit: the API's error body, `Retry-After` when the window ends."""
    body = json.dumps(
        {"status": 429, "error": "Too Many Requests", "detail": TOO_MANY_REQUESTS, "parameter": None, "allowed": None}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(key.lower().encode(), value.encode()) for key, value in limits.items()]
    headers.append((b"retry-after", limits["RateLimit-Reset"].encode()))
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
