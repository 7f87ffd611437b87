"""The guards every ingest route of the collector shares: who may write, and reading the body.

An ingest route (``POST /v1/events``) first asks :meth:`IngestGuards.admit` — rate limits, write
key, media type, encoding, declared size, all decided on the headers — and then reads its body
with :meth:`IngestGuards.read`, within the body timeout and the size limit, inflating
``gzip``/``deflate`` in bounded steps. Both answer with the collector's JSON errors, so a new
route gets the same refusals with no code of its own. The capture endpoints of the SDK wire
formats (:mod:`usersignals.ingest.capture_http`) find their key in the body too, so they share
the :class:`~usersignals.ingest.collector_auth.Gate` and ask only :meth:`IngestGuards.admit_body`
(encoding, declared size) and :meth:`IngestGuards.read` with their own, larger limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from usersignals.config import Settings
from usersignals.ingest.bodies import Body, BodyProblem, BodyStats, read_body
from usersignals.ingest.collector_auth import (
    Gate,
    check_content_encoding,
    check_content_type,
)
from usersignals.ingest.httpguard import error_response

__all__ = ["IngestGuards"]


@dataclass(frozen=True)
class _Admission:
    answer: web.Response | None


_ADMISSION = web.RequestKey("usersignals.admission", _Admission)
"""A request's answer from :meth:`IngestGuards.admit`, decided once (``Expect`` asks first)."""


_LATE = "the request body did not arrive in time"
_BAD_ENCODING = "the body is not valid in its encoding"


def _closing(response: web.Response) -> web.Response:
    """``response``, after which the connection closes: what is left of the body is drained
    for a moment (uninflated, so that the client can read the answer) and then dropped."""
    response.force_close()
    return response


class IngestGuards:
    """Admission and body reading for the ingest routes.

    Args:
        settings: Write keys, rate limits and the body timeout.
        max_body_bytes: Largest body, after decoding ``Content-Encoding``.
        clock: Monotonic seconds for the rate limits.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_body_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.body_timeout = settings.collector_body_timeout_s
        self.body_stats = BodyStats()
        self.gate = Gate(
            settings.write_keys,
            client=(settings.collector_client_rate, settings.collector_client_burst),
            key=(settings.collector_key_rate, settings.collector_key_burst),
            failed=(settings.collector_auth_fail_rate, settings.collector_auth_fail_burst),
            clock=clock,
        )
        self._problems = {
            BodyProblem.TIMEOUT: (
                408,
                "request_timeout",
                "the request body did not arrive in time",
            ),
            BodyProblem.BAD_ENCODING: (
                400,
                "bad_encoding",
                "the body is not valid in its encoding",
            ),
            BodyProblem.UNSUPPORTED_ENCODING: (
                415,
                "unsupported_encoding",
                "Content-Encoding must be gzip, deflate or identity",
            ),
        }

    def _answer(self, problem: BodyProblem, limit: int | None = None) -> web.Response:
        if problem is BodyProblem.TOO_LARGE:
            return self.too_large(limit)
        status, error, message = self._problems[problem]
        return _closing(error_response(status, error, message))

    def too_large(self, limit: int | None = None) -> web.Response:
        """The 413 of a body over ``limit`` bytes (default: ``max_body_bytes``); it closes
        the connection."""
        size = self.max_body_bytes if limit is None else limit
        message = f"request body is larger than {size} bytes"
        return _closing(error_response(413, "too_large", message))

    def problem_answer(self, problem: BodyProblem, limit: int | None = None) -> web.Response:
        """The answer to a body that could not be read or decoded (``problem``)."""
        return self._answer(problem, limit)

    def admit_body(self, request: web.Request, *, limit: int) -> web.Response | None:
        """The answer for a request whose ``Content-Encoding`` cannot be read or whose declared
        ``Content-Length`` is over ``limit``, else ``None``."""
        if check_content_encoding(request.headers.get("Content-Encoding")):
            return self._answer(BodyProblem.UNSUPPORTED_ENCODING)
        if (request.content_length or 0) > limit:
            return self.too_large(limit)
        return None

    def admit(self, request: web.Request) -> web.Response | None:
        """The answer for a request refused on its headers alone (rate, key, media type,
        encoding, size), ``None`` when it may go on; decided once per request."""
        if _ADMISSION in request:
            return request[_ADMISSION].answer
        refusal = self.gate.admit(request.remote or "", request.headers.get("Authorization"))
        answer = None
        if refusal is not None:
            answer = error_response(refusal.status, refusal.error, refusal.message, refusal.headers)
        if answer is None:
            problem = check_content_type(request.headers.get("Content-Type"))
            if problem is not None:
                answer = error_response(415, "unsupported_media_type", problem)
        if answer is None and check_content_encoding(request.headers.get("Content-Encoding")):
            answer = self._answer(BodyProblem.UNSUPPORTED_ENCODING)
        if answer is None and (request.content_length or 0) > self.max_body_bytes:
            answer = self._answer(BodyProblem.TOO_LARGE)
        request[_ADMISSION] = _Admission(answer)
        return answer

    async def read(self, request: web.Request, *, limit: int | None = None) -> Body | web.Response:
        """The body within the body timeout and size limit (``limit``, default
        ``max_body_bytes``), or the answer saying why not."""
        size = self.max_body_bytes if limit is None else limit
        body = await read_body(
            request.content,
            encoding=request.headers.get("Content-Encoding"),
            limit=size,
            timeout=self.body_timeout,
            stats=self.body_stats,
        )
        return body if body.problem is None else self._answer(body.problem, size)
