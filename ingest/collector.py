"""The HTTP collector: browsers and backends ``POST /v1/events``; an acknowledged event is in Kafka.

The collector validates each event with the contract, stamps ``received_at`` on the good
ones, groups them by the partition of their ``user_id`` and writes one batch record per
partition, waiting for Kafka's acknowledgement (``acks=all``) before it answers. So a 2xx
answer means the accepted events are stored; any Kafka trouble is a ``503`` with
``Retry-After`` (a retry may store some events twice, which the ``event_id`` dedupe absorbs).

Answers of ``POST /v1/events`` (``Content-Type: application/json``, ``Authorization: Bearer
<write key>`` when keys are configured):

========  ==============================================================================
status    when, and body
========  ==============================================================================
200       every event accepted: ``{"accepted": [event_id, ...], "rejected": []}``
207       some accepted (and sent), some rejected: the same shape, both lists non-empty
400       nothing accepted (every element rejected, or a body that cannot be read at all:
          not JSON, empty array, ...). Same shape; a whole-body rejection has ``index: null``
401       missing or unknown write key (``WWW-Authenticate: Bearer``)
413       body over 1 MiB, or more than 500 events: ``{"error", "message"}``
415       not ``application/json`` (UTF-8): ``{"error", "message"}``
503       Kafka unavailable; nothing of the request was acknowledged (``Retry-After``)
========  ==============================================================================

Each rejection is ``{"index", "reason", "field", "message"}`` with the contract's reason
codes. The body is read as one record, exactly as a stream worker reads a batch record, so
the collector and the worker never disagree about an event. A single JSON object (not in an
array) is a batch of one, as a record of one event is on Kafka (``events.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler  # sends "100 Continue"
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped,unused-ignore]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped,unused-ignore]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped,unused-ignore]

from usersignals.config import Settings
from usersignals.errors import CollectorError
from usersignals.ingest import contract
from usersignals.ingest.batching import build_records
from usersignals.ingest.collector_auth import (
    check_content_type,
    check_write_key,
    cors_headers,
    parse_origins,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_EVENTS_PER_REQUEST",
    "Collector",
    "CollectorError",
    "response_status",
    "serve",
]

log = logging.getLogger(__name__)

MAX_EVENTS_PER_REQUEST = 500
"""Events one request may carry; more is a 413 (split the batch)."""

EMPTY_REQUEST = f"Empty batch (a request holds 1 to {MAX_EVENTS_PER_REQUEST} events)"
"""The message of the ``bad_batch`` rejection of an empty request."""

MAX_BODY_BYTES = contract.MAX_RECORD_BYTES
"""Largest request body (1 MiB), the contract's record limit."""

SEND_TIMEOUT_S = 10.0
"""How long a request waits for Kafka's acknowledgement before answering 503."""

RETRY_AFTER_S = 5
"""``Retry-After`` of a 503."""

HEALTH_TIMEOUT_S = 2.0
_READ_CHUNK = 64 * 1024
# Room for the record batch framing around a record of MAX_RECORD_BYTES.
_MAX_REQUEST_BYTES = contract.MAX_RECORD_BYTES + 64 * 1024


def response_status(accepted: int, rejected: int) -> int:
    """200 when nothing was rejected, 400 when nothing was accepted, else 207 (multi-status)."""
    if rejected == 0:
        return 200
    return 400 if accepted == 0 else 207


def _count_elements(body: bytes) -> int:
    """Elements of a JSON array body, without building them; 0 when not a readable array."""
    try:
        return len(msgspec.json.decode(body, type=list[msgspec.Raw]))
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return 0


def _rejection_json(r: contract.Rejection) -> dict[str, Any]:
    return {"index": r.index, "reason": r.reason, "field": r.field, "message": r.message}


def _error(status: int, error: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status, headers=headers)


class Collector:
    """The collector's Kafka producer and its HTTP handlers.

    Args:
        settings: Bootstrap, topic prefix and write keys come from here.
        allow_origin: ``*`` or a comma-separated list of web origins that may post.
    """

    def __init__(self, settings: Settings, *, allow_origin: str = "*") -> None:
        self.settings = settings
        self.origins = parse_origins(allow_origin)
        self.partitions = 0
        self._producer: AIOKafkaProducer | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        """Connects the producer and learns the partition count of the events topic.

        Raises:
            CollectorError: Kafka cannot be reached or the topic does not exist (retryable).
        """
        topic = self.settings.events_topic
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap,
            client_id="usersignals-collector",
            acks="all",
            # The embedded broker answers InitProducerId with UnknownError, so no
            # idempotence; a duplicate from a producer retry is absorbed by event_id dedupe.
            enable_idempotence=False,
            linger_ms=0,
            max_request_size=_MAX_REQUEST_BYTES,
            request_timeout_ms=int(SEND_TIMEOUT_S * 1000),
        )
        try:
            await producer.start()
            partitions = await asyncio.wait_for(producer.partitions_for(topic), SEND_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            await producer.stop()
            reason = str(exc) or type(exc).__name__
            raise CollectorError(self.settings.bootstrap, topic, reason) from None
        if not partitions:
            await producer.stop()
            raise CollectorError(self.settings.bootstrap, topic, "topic has no partitions")
        self.partitions = len(partitions)
        self._producer = producer

    async def stop(self) -> None:
        """Flushes what is in flight and closes the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(producer.flush(), SEND_TIMEOUT_S)
            await producer.stop()

    async def kafka_ready(self) -> bool:
        """Whether the producer has a live connection to the leader of every partition."""
        producer = self._producer
        if producer is None:
            return False
        cluster = producer.client.cluster
        topic = self.settings.events_topic
        leaders = {
            cluster.leader_for_partition(TopicPartition(topic, p)) for p in range(self.partitions)
        }
        if None in leaders or -1 in leaders:
            return False
        try:
            for node in leaders:
                if not await asyncio.wait_for(producer.client.ready(node), HEALTH_TIMEOUT_S):
                    return False
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    def app(self) -> web.Application:
        """The aiohttp application (routes and CORS)."""
        app = web.Application(middlewares=[self._cors], client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/events", self.post_events, expect_handler=self.expect)
        app.router.add_route("OPTIONS", "/v1/events", self.preflight)
        app.router.add_get("/healthz", self.healthz)
        return app

    @web.middleware
    async def _cors(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if request.path == "/v1/events" and request.method != "OPTIONS":
            response.headers.update(
                cors_headers(request.headers.get("Origin"), self.origins, preflight=False)
            )
        return response

    async def preflight(self, request: web.Request) -> web.Response:
        """Answers a browser's CORS preflight (no write key needed: browsers send none)."""
        origin = request.headers.get("Origin")
        return web.Response(status=204, headers=cors_headers(origin, self.origins, preflight=True))

    async def healthz(self, request: web.Request) -> web.Response:
        """200 ``{"status": "ok"}`` while Kafka is reachable, else 503."""
        if await self.kafka_ready():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "kafka_unavailable"}, status=503)

    async def drain(self, timeout: float) -> None:
        """Waits (at most ``timeout`` seconds) until no ``POST`` is being handled."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def post_events(self, request: web.Request) -> web.Response:
        """``POST /v1/events``: validate, stamp, write to Kafka, answer (module docstring)."""
        self._in_flight += 1
        self._idle.clear()
        try:
            return await self._post_events(request)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def _refusal(self, request: web.Request) -> web.Response | None:
        """The answer for a request refused on its headers alone (key, media type, size)."""
        problem = check_write_key(request.headers.get("Authorization"), self.settings.write_keys)
        if problem is not None:
            error = 'Bearer realm="usersignals"'
            if "Authorization" in request.headers:
                error += ', error="invalid_token"'
            return _error(401, "unauthorized", problem, **{"WWW-Authenticate": error})
        problem = check_content_type(request.headers.get("Content-Type"))
        if problem is not None:
            return _error(415, "unsupported_media_type", problem)
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _too_large()
        return None

    async def expect(self, request: web.Request) -> web.Response | None:
        """``Expect: 100-continue``: refuse on the headers before the client uploads the body."""
        refusal = self._refusal(request)
        if refusal is None:
            await _default_expect_handler(request)
            return None
        refusal.headers.update(
            cors_headers(request.headers.get("Origin"), self.origins, preflight=False)
        )
        return refusal

    async def _post_events(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await _read_limited(request, MAX_BODY_BYTES)
        if body is None:
            return _too_large()
        if body.lstrip()[:1] == b"{":
            body = b"[" + body + b"]"
        now = datetime.now(UTC)
        events, rejections = contract.decode_record(body, now=now)
        count = len(events) + sum(r.index is not None for r in rejections)
        if not count and [r.reason for r in rejections] == ["bad_batch"]:
            count = _count_elements(body)  # empty, or more than the contract's MAX_BATCH
            if not count:  # the contract's own bound (MAX_BATCH) is not this endpoint's
                rejections = [msgspec.structs.replace(rejections[0], message=EMPTY_REQUEST)]
        if count > MAX_EVENTS_PER_REQUEST:
            return _too_many(count)
        stamped = [msgspec.structs.replace(e, received_at=now) for e in events]
        if stamped:
            problem = await self._send(stamped)
            if problem is not None:
                log.warning("answering 503: %s", problem)
                return _error(
                    503,
                    "kafka_unavailable",
                    f"Kafka is unavailable ({problem}); no event of this request was "
                    f"acknowledged, retry after {RETRY_AFTER_S} s",
                    **{"Retry-After": str(RETRY_AFTER_S)},
                )
        payload = {
            "accepted": [e.event_id for e in stamped],
            "rejected": [_rejection_json(r) for r in rejections],
        }
        return web.json_response(payload, status=response_status(len(stamped), len(rejections)))

    async def _send(self, events: Sequence[contract.Event]) -> str | None:
        """Writes the events and waits for every acknowledgement; a problem text on failure."""
        producer = self._producer
        if producer is None or not await self.kafka_ready():
            return "no connection to the partition leaders"
        topic = self.settings.events_topic
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                futures = [
                    await producer.send(topic, r.value, key=r.key, partition=r.partition)
                    for r in build_records(events, self.partitions)
                ]
                await asyncio.gather(*futures)
        except (KafkaError, OSError, TimeoutError) as exc:
            return str(exc) or type(exc).__name__
        return None


def _too_large() -> web.Response:
    return _error(413, "too_large", f"request body is larger than {MAX_BODY_BYTES} bytes")


def _too_many(count: int) -> web.Response:
    return _error(
        413,
        "too_many_events",
        f"a request may carry at most {MAX_EVENTS_PER_REQUEST} events, got {count}",
    )


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The request body, or ``None`` as soon as it is known to exceed ``limit`` bytes.

    Counts while reading (``Content-Length`` was checked before), so a chunked body cannot
    smuggle more.
    """
    buffer = bytearray()
    async for chunk in request.content.iter_chunked(_READ_CHUNK):
        buffer += chunk
        if len(buffer) > limit:
            return None
    return bytes(buffer)


async def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    allow_origin: str = "*",
    on_ready: Callable[[str], None] = lambda url: None,
) -> None:
    """Runs the collector until SIGTERM or SIGINT, then stops accepting, drains and flushes.

    On a signal the listening socket closes first; requests already being handled (even
    those whose body is still arriving) finish and are answered, then idle connections
    close and the producer flushes.

    Args:
        settings: Kafka, topic prefix, write keys; ``collector_port`` when ``port`` is None.
        host: Interface to listen on.
        port: TCP port (0 picks a free one); ``settings.collector_port`` when ``None``.
        allow_origin: ``*`` or comma-separated web origins allowed by CORS.
        on_ready: Called with the base URL once requests can be served.

    Raises:
        CollectorError: Kafka cannot be used at start.
    """
    collector = Collector(settings, allow_origin=allow_origin)
    await collector.start()
    runner = web.AppRunner(collector.app(), access_log=None, shutdown_timeout=SEND_TIMEOUT_S + 5)
    try:
        await runner.setup()
        site = web.TCPSite(
            runner, host, settings.collector_port if port is None else port, reuse_address=True
        )
        await site.start()
        bound = runner.addresses[0][1]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        on_ready(f"http://{host}:{bound}")
        await stop.wait()
        await site.stop()
        await collector.drain(SEND_TIMEOUT_S + 5)
    finally:
        await runner.cleanup()
        await collector.stop()
