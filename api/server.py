"""The HTTP server the API ships with: uvicorn on httptools (llhttp), with limits uvicorn lacks.

llhttp in its strict mode (the default) refuses what request smuggling needs: a
request with both `Content-Length` and `Transfer-Encoding`, bare-LF line
endings, unknown HTTP versions. What uvicorn does not bound, this protocol does:

- the request head must arrive within `API_HEADER_TIMEOUT` seconds of the
  connection opening (or of the previous response): a slowloris client that
  sends one header every few seconds gets a 408 and is disconnected;
- a request target over `API_MAX_URL_BYTES` is a 414, a head over
  `API_MAX_HEAD_BYTES` a 431 (httptools itself accepts any size);
- every error the server answers itself is JSON in the API's error shape
  (`api.schemas.ErrorBody`), not uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from warehouse.config import get_settings


class _Rejected(Exception):
    """Raised from a parser callback to stop parsing a request that breaks a limit."""


def error_bytes(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 response with a JSON `ErrorBody`, closing the connection."""
    body = json.dumps(
        {"status": status, "error": HTTPStatus(status).phrase, "detail": detail, "parameter": None, "allowed": None}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class HardenedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head timeout, head-size limits and JSON errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = settings.api_header_timeout_s
        self.max_url = settings.api_max_url_bytes
        self.max_head = settings.api_max_head_bytes
        self.head_bytes = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.rejection: tuple[int, str] | None = None
        self.closing = False  # an error was answered: what still arrives is discarded

    # --- the head deadline: armed while a request head is awaited
    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self.head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            self.logger.warning("request head not received within %.0f s; closing", self.header_timeout)
            self._reply(408, f"the request head did not arrive within {self.header_timeout:g} s")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    # --- size limits
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self.head_bytes += len(url)
        if len(self.url) > self.max_url:
            self.rejection = (414, f"the request target is longer than {self.max_url} bytes")
            raise _Rejected

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.max_head:
            self.rejection = (431, f"the request head is larger than {self.max_head} bytes")
            raise _Rejected
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    # --- errors as JSON
    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The API has no WebSockets: uvicorn logs and ignores the upgrade, as it does.
            self._unsupported_upgrade_warning()
        except (httptools.HttpParserError, _Rejected) as error:
            if self.rejection is not None:
                status, detail = self.rejection
            else:
                status, detail = 400, f"invalid HTTP request: {_parser_reason(error)}"
            self.logger.warning("refused a request: %s", detail)
            self._reply(status, detail)

    def send_400_response(self, msg: str) -> None:
        self._reply(400, msg)

    def _reply(self, status: int, detail: str) -> None:
        """Answer, then close gracefully: closing with unread input would reset the
        connection and the client could lose the answer, so what the client still
        sends is read and dropped for up to a second ("lingering close")."""
        self._cancel_head_timer()
        if self.closing or self.transport.is_closing():
            return
        self.closing = True
        self.transport.write(error_bytes(status, detail))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(1.0, self.transport.close)


def _parser_reason(error: BaseException) -> str:
    """llhttp's reason ('Invalid HTTP version', ...), or the callback error's cause."""
    cause = error.__cause__ or error.__context__
    text = str(cause if isinstance(cause, _Rejected) else error).strip()
    return text or type(error).__name__
