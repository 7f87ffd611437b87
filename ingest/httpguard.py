"""Connection-level guards of an aiohttp server against clients that hold it up or make it talk.

aiohttp itself waits for headers as long as the client likes, answers a malformed request
with its own text page (quoting the bytes it could not parse) and logs it at ERROR with a
traceback. :class:`GuardedRunner` serves an application through :class:`GuardedHandler`,
which:

- closes a connection whose request headers have not all come ``header_timeout`` seconds
  after their first byte (answering ``408``), and one that sits idle (no request started)
  for ``idle_timeout`` seconds, new connections included (aiohttp's keep-alive timer);
- answers a request aiohttp cannot parse, and any failure of a handler, with the JSON shape
  of every other error (``{"error", "message"}``), closes the connection, and logs one line
  naming only the kind of fault: never the request's bytes, headers or the exception's text;
- counts open connections: past ``max_connections`` a new one is answered ``503`` at once
  and closed, without reading a byte of it.

Decompression is left to the handlers (``auto_decompress=False``; see
:mod:`usersignals.ingest.bodies`), so that it is bounded. Every route of the application gets
these guards; none has to ask for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

from aiohttp import StreamReader, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

__all__ = [
    "GuardedHandler",
    "GuardedRunner",
    "GuardedServer",
    "Limits",
    "error_body",
    "error_response",
]

log = logging.getLogger("usersignals.ingest.collector")

MAX_LINE_BYTES = 8190
"""Longest request line or header line (aiohttp's default, kept on purpose)."""

MAX_HEADERS = 100
"""Most header lines one request may have."""

LINGER_S = 2.0
"""How long an unread body is drained after an early answer before the connection closes."""

BUSY_RETRY_AFTER_S = 1
"""``Retry-After`` of the ``503`` given to a connection beyond the bound."""


@dataclass(frozen=True)
class Limits:
    """How long and how many: the connection guards' settings (``Settings.collector_*``)."""

    header_timeout: float
    idle_timeout: float
    max_connections: int


def error_body(error: str, message: str) -> bytes:
    """The JSON of every error answer: ``{"error": code, "message": text}``."""
    return json.dumps({"error": error, "message": message}).encode()


def error_response(
    status: int, error: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An error answer with :func:`error_body`, as JSON in UTF-8."""
    return web.Response(
        status=status,
        body=error_body(error, message),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def _raw_answer(status: int, error: str, message: str, *extra: str) -> bytes:
    body = error_body(error, message)
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


_HEADER_TIMEOUT = _raw_answer(
    408, "request_timeout", "the request headers did not all arrive in time"
)
_BUSY = _raw_answer(
    503,
    "too_many_connections",
    "the collector holds as many connections as it may; retry later",
    f"Retry-After: {BUSY_RETRY_AFTER_S}",
)


class GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol with a header deadline and errors of our own."""

    def __init__(self, manager: web.Server, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=limits.idle_timeout, **kwargs)
        self._limits = limits
        self._header_deadline: asyncio.TimerHandle | None = None
        self._awaiting_request = True
        self._last_body: StreamReader | None = None  # the body of the newest request parsed

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        body_done = self._last_body is None or self._last_body.is_eof()
        if data and body_done and self._awaiting_request and self._header_deadline is None:
            self._awaiting_request = False  # these bytes begin the next request's headers
            self._header_deadline = self._loop.call_later(
                self._limits.header_timeout, self._headers_late
            )
        super().data_received(data)
        if self._request_count != before:
            self._cancel_header_deadline()
            if self._messages:
                self._last_body = self._messages[-1][1]

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self._request_in_progress or self._messages or self.transport is None:
            return  # a request is being handled: its body has a deadline of its own
        log.warning("closing a connection: request headers not complete in time")
        self.transport.write(_HEADER_TIMEOUT)
        self.force_close()

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        answered = await super().finish_response(request, resp, start_time)
        self._awaiting_request = True  # the next byte starts the next request's headers
        return answered

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        kind = type(exc).__name__ if isinstance(exc, BaseException) else "error"
        log.error("request failed: %s", kind)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        kind = type(exc).__name__ if exc is not None else "error"
        if status >= 500:
            log.error("answering %d: %s in a handler", status, kind)
        else:
            log.warning("answering %d to a malformed request: %s", status, kind)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was being sent already")
        if status == 400:
            error, text = "bad_request", "malformed HTTP request"
        elif status == 504:
            error, text = "timeout", "the request took too long"
        else:
            error, text = "internal_error", "the collector failed on this request"
        resp = error_response(status, error, text)
        resp.force_close()
        return resp


class _Refuse(asyncio.Protocol):
    """A connection beyond the bound: answered 503 and closed at once, nothing read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(_BUSY)
        transport.close()


class GuardedServer(web.Server):
    """aiohttp's low-level server, building :class:`GuardedHandler` connections."""

    def __init__(self, *args: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.refused = 0

    def __call__(self) -> RequestHandler:
        if len(self._connections) >= self.limits.max_connections:
            self.refused += 1
            log.warning("refusing a connection: %d open", len(self._connections))
            return cast(RequestHandler, _Refuse())
        return GuardedHandler(self, loop=self._loop, limits=self.limits, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections are guarded by ``limits``."""

    def __init__(self, app: web.Application, *, limits: Limits, **kwargs: Any) -> None:
        handler_kwargs: dict[str, Any] = {
            "auto_decompress": False,
            "lingering_time": LINGER_S,
            "max_line_size": MAX_LINE_BYTES,
            "max_field_size": MAX_LINE_BYTES,
            "max_headers": MAX_HEADERS,
        }
        super().__init__(app, access_log=None, **handler_kwargs, **kwargs)
        self.limits = limits
        self.guarded: GuardedServer | None = None

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        kwargs = {k: v for k, v in plain._kwargs.items() if k != "keepalive_timeout"}
        self.guarded = GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            limits=self.limits,
            **kwargs,
        )
        return self.guarded
