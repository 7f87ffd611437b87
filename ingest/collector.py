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
          (a body that is not valid gzip/deflate is a 400 ``{"error", "message"}``)
401       missing or unknown write key (``WWW-Authenticate: Bearer``)
408       the body did not arrive within ``collector_body_timeout_s`` (connection closed)
413       body over 1 MiB (after inflating ``Content-Encoding: gzip``/``deflate``), or more
          than 500 events: ``{"error", "message"}``; the connection is closed
415       not ``application/json`` (UTF-8), or an unknown ``Content-Encoding``
429       over a rate limit (per client, per key, refused keys per client): ``Retry-After``
503       Kafka unavailable; nothing of the request was acknowledged (``Retry-After``)
========  ==============================================================================

Every error body is the collector's own JSON ``{"error", "message"}`` (also for unknown
paths, wrong methods and requests that are not HTTP), and no answer or log line quotes a key,
a header value or any byte of a body. ``GET /healthz`` says whether Kafka can be written to
and which broker it is (``tansu``, the embedded one, keeps nothing over a restart; ``kafka``);
``GET /openapi.json`` documents every route. The capture endpoints of the PostHog, Segment,
RudderStack and Snowplow SDKs (their own paths, encodings and answers) are
:mod:`usersignals.ingest.capture_http`'s; they share this producer, the rate limits and the
keys. Connection guards (timeouts, a bound on
connections) are :mod:`usersignals.ingest.httpguard`'s; what every ingest route checks first
(rate limits, key, media type, encoding, size) and how it reads a body are
:mod:`usersignals.ingest.collector_guards`'s; :attr:`Collector.routes` is the route table.

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler  # sends "100 Continue"
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped,unused-ignore]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped,unused-ignore]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped,unused-ignore]

from usersignals.broker import refuse_topic_auto_creation
from usersignals.config import Settings
from usersignals.errors import CollectorError
from usersignals.ingest import contract
from usersignals.ingest.batching import build_records
from usersignals.ingest.brokerinfo import BrokerInfo, cluster_id_of
from usersignals.ingest.capture_http import (
    MAX_CAPTURE_BODY_BYTES,
    CaptureEndpoints,
    ExpectHandler,
    Produce,
)
from usersignals.ingest.collector_auth import cors_headers, parse_origins
from usersignals.ingest.collector_guards import IngestGuards
from usersignals.ingest.event import MAX_MESSAGE_BYTES
from usersignals.ingest.httpguard import GuardedRunner, Limits, error_response
from usersignals.ingest.openapi import build_openapi

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_EVENTS_PER_REQUEST",
    "BrokerInfo",
    "Collector",
    "CollectorError",
    "batch_of",
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
# Room for the record batch framing around a record of MAX_RECORD_BYTES.
_MAX_REQUEST_BYTES = MAX_MESSAGE_BYTES


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


def batch_of(body: bytes) -> bytes:
    """The body as the record the collector reads: one JSON object is a batch of one.

    Only a body that is one JSON value is put in brackets: ``{...}, {...}`` is no JSON, and
    in brackets it would read as a batch of two that the worker, reading it as a record, would
    reject (``not_json``).
    """
    if body.lstrip()[:1] != b"{":
        return body
    try:
        msgspec.json.decode(body, type=msgspec.Raw)
    except (msgspec.DecodeError, RecursionError):
        return body
    return b"[" + body + b"]"


def _rejection_json(r: contract.Rejection) -> dict[str, Any]:
    return {"index": r.index, "reason": r.reason, "field": r.field, "message": r.message}


def _error(status: int, error: str, message: str, **headers: str) -> web.Response:
    return error_response(status, error, message, headers)


@dataclass(frozen=True)
class Route:
    """One endpoint: method, path, handler, and whether it takes events (the write gate), with
    the handler of ``Expect: 100-continue`` when it is not the collector's own."""

    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ingest: bool = False
    expect: ExpectHandler | None = None


class Collector:
    """The collector's Kafka producer and its HTTP handlers.

    Args:
        settings: Bootstrap, topic prefix, write keys, limits and timeouts come from here.
        allow_origin: ``*`` or a comma-separated list of web origins that may post.
        clock: Monotonic seconds for the rate limits.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        allow_origin: str = "*",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.origins = parse_origins(allow_origin)
        self.partitions = 0
        self.broker = BrokerInfo.from_cluster_id(None, settings.bootstrap)
        self.guards = IngestGuards(settings, max_body_bytes=MAX_BODY_BYTES, clock=clock)
        self.capture = CaptureEndpoints(
            settings, guards=self.guards, origins=self.origins, sink=self
        )
        self.openapi = build_openapi(
            max_body_bytes=MAX_BODY_BYTES,
            max_events=MAX_EVENTS_PER_REQUEST,
            max_capture_bytes=MAX_CAPTURE_BODY_BYTES,
        )
        self._producer: AIOKafkaProducer | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def limits(self) -> Limits:
        return Limits(
            header_timeout=self.settings.collector_header_timeout_s,
            idle_timeout=self.settings.collector_idle_timeout_s,
            max_connections=self.settings.collector_max_connections,
        )

    @property
    def routes(self) -> tuple[Route, ...]:
        """Every endpoint; those with ``ingest=True`` are behind the write gate."""
        native = (
            Route("POST", "/v1/events", self.post_events, ingest=True),
            Route("OPTIONS", "/v1/events", self.preflight),
            Route("GET", "/healthz", self.healthz),
            Route("GET", "/openapi.json", self.openapi_json),
        )
        captured = tuple(
            Route(method, path, handler, ingest=expect is not None, expect=expect)
            for method, path, handler, expect in self.capture.routes()
        )
        return native + captured

    async def start(self) -> None:
        """Connects the producer, learns the partition count and which broker it is.

        Raises:
            CollectorError: Kafka cannot be reached or the topic does not exist (retryable).
        """
        topic = self.settings.events_topic
        refuse_topic_auto_creation()
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
            cluster_id = await asyncio.wait_for(cluster_id_of(producer), SEND_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            await producer.stop()
            reason = str(exc) or type(exc).__name__
            raise CollectorError(self.settings.bootstrap, topic, reason) from None
        if not partitions:
            await producer.stop()
            raise CollectorError(self.settings.bootstrap, topic, "topic has no partitions")
        self.partitions = len(partitions)
        self.broker = BrokerInfo.from_cluster_id(cluster_id, self.settings.bootstrap)
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
        """The aiohttp application (routes, CORS, JSON errors)."""
        app = web.Application(middlewares=[self._errors, self._cors])
        for route in self.routes:
            expect = route.expect or (self.expect if route.ingest else None)
            app.router.add_route(route.method, route.path, route.handler, expect_handler=expect)
        return app

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """aiohttp's own answers (404, 405, ...) as the collector's JSON, not its text page."""
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            slug = exc.reason.lower().replace(" ", "_").replace("-", "_")
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
            return _error(exc.status, slug, exc.reason, **headers)
        return response

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
        """200 while Kafka is reachable, else 503; either way the broker it speaks to."""
        ready = await self.kafka_ready()
        payload = {"status": "ok" if ready else "kafka_unavailable", "broker": self.broker.json()}
        return web.json_response(payload, status=200 if ready else 503)

    async def openapi_json(self, request: web.Request) -> web.Response:
        """The OpenAPI document of every route (:mod:`usersignals.ingest.openapi`)."""
        return web.json_response(self.openapi)

    async def drain(self, timeout: float) -> None:
        """Waits (at most ``timeout`` seconds) until no ``POST`` is being handled."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def post_events(self, request: web.Request) -> web.Response:
        """``POST /v1/events``: validate, stamp, write to Kafka, answer (module docstring)."""
        async with self.busy():
            return await self._post_events(request)

    @contextlib.asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        """Marks a request in flight: :meth:`drain` waits for it."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def expect(self, request: web.Request) -> web.Response | None:
        """``Expect: 100-continue``: refuse on the headers before the client uploads the body."""
        refusal = self.guards.admit(request)
        if refusal is None:
            await _default_expect_handler(request)
            return None
        refusal.headers.update(
            cors_headers(request.headers.get("Origin"), self.origins, preflight=False)
        )
        return refusal

    async def _post_events(self, request: web.Request) -> web.Response:
        refusal = self.guards.admit(request)
        if refusal is not None:
            return refusal
        read = await self.guards.read(request)
        if isinstance(read, web.Response):
            return read
        body = batch_of(read.data)
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
        records = build_records(events, self.partitions)
        return await self.send_records([(r.partition, r.key, r.value) for r in records])

    async def send_records(self, records: Sequence[Produce]) -> str | None:
        """Writes ``(partition, key, value)`` records to the events topic and waits for every
        acknowledgement (``acks=all``); a problem text (no record content) on failure."""
        producer = self._producer
        if producer is None or not await self.kafka_ready():
            return "no connection to the partition leaders"
        topic = self.settings.events_topic
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                futures = [
                    await producer.send(topic, value, key=key, partition=partition)
                    for partition, key, value in records
                ]
                await asyncio.gather(*futures)
        except (KafkaError, OSError, TimeoutError) as exc:
            return str(exc) or type(exc).__name__
        return None


def _too_many(count: int) -> web.Response:
    return _error(
        413,
        "too_many_events",
        f"a request may carry at most {MAX_EVENTS_PER_REQUEST} events, got {count}",
    )


async def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    allow_origin: str = "*",
    on_ready: Callable[[str], None] = lambda url: None,
    collector: Collector | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Runs the collector until SIGTERM or SIGINT (or ``stop``), then drains and flushes.

    On a signal the listening socket closes first; requests already being handled (even
    those whose body is still arriving) finish and are answered, then idle connections
    close and the producer flushes.

    Args:
        settings: Kafka, topic prefix, write keys; ``collector_port`` when ``port`` is None.
        host: Interface to listen on.
        port: TCP port (0 picks a free one); ``settings.collector_port`` when ``None``.
        allow_origin: ``*`` or comma-separated web origins allowed by CORS.
        on_ready: Called with the base URL once requests can be served.
        collector: The collector to serve (built from ``settings`` when ``None``).
        stop: Set to stop; when given, no signal handlers are installed (another thread).

    Raises:
        CollectorError: Kafka cannot be used at start.
    """
    collector = collector or Collector(settings, allow_origin=allow_origin)
    await collector.start()
    runner = GuardedRunner(
        collector.app(), limits=collector.limits, shutdown_timeout=SEND_TIMEOUT_S + 5
    )
    try:
        await runner.setup()
        site = web.TCPSite(
            runner, host, settings.collector_port if port is None else port, reuse_address=True
        )
        await site.start()
        bound = runner.addresses[0][1]
        if stop is None:
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
