"""Capture endpoints: the collector speaks the wire formats of the PostHog, Segment, RudderStack
and Snowplow SDKs, so an app already instrumented with one points its host here and is done.

=======  ========================================  ========  =========  ============================
method   path                                      protocol  encodings  answers
=======  ========================================  ========  =========  ============================
POST     ``/batch/``, ``/e/``, ``/i/v0/e/``,       PostHog   any body   200 ``{"status": 1}``
         ``/capture/``, ``/track/``,                         (below)
         ``/i/v0/ai/batch/`` (all also without
         the trailing ``/``); posthog-js's
         query (``?ip=1&_=…&ver=…``) is read
POST     ``/flags/``, ``/decide/`` (and without    PostHog   any body   200: no flags, nothing on
         ``/``)                                              (unread)   (v1 and v2+ shapes)
GET      ``/array/{token}/config``                 PostHog   none       200: remote config,
                                                                        nothing switched on
POST     ``/v1/batch``, ``/v1/b``,                 Segment,  any body   200 ``{"success": true}``
         ``/v1/track|identify|page|screen|``       Rudder-   (below)
         ``group|alias``, ``/v1/t|i|p|s|g|a``      Stack
GET      ``/v1/projects/{write_key}/settings``     Segment   none       200: analytics.js
                                                                        settings, sending here
GET      ``/sourceConfig/`` (and without ``/``)    Rudder-   none       200: an enabled source,
                                                   Stack                no destinations
POST     ``/com.snowplowanalytics.snowplow/tp2``   Snowplow  any body   200 ``ok`` (text/plain)
                                                             (below)
GET      ``/i?e=…&eid=…&aid=…``                    Snowplow  query      200, a 1x1 GIF
                                                             string
OPTIONS  every path above                          (CORS)    none       204, preflight headers
=======  ========================================  ========  =========  ============================

**Any body** (``POST``) is decoded whatever its ``Content-Type`` says (``application/json``,
``text/plain``, ``application/x-www-form-urlencoded``, none): ``Content-Encoding: gzip`` or
``deflate``; else gzip told by its first bytes (``1f 8b``: posthog-js ``compression=gzip-js``,
sent as ``text/plain`` with no header); then a form body ``data=<base64>`` (posthog-js
``compression=base64``; standard or URL-safe base64, padded or not, ``+`` read back from a
space; a ``data`` field that is plain JSON is taken as is); then JSON. posthog-js's query
(``?ip=1&_=…&ver=…&compression=…``) is accepted, and its ``_`` (the send time, epoch ms) is the
send time of a body without ``sent_at``. At most :data:`MAX_CAPTURE_BODY_BYTES` (5 MiB) after
inflating, inflated in bounded steps (a gzip bomb costs 5 MiB of inflation, then ``413``), and
at most :data:`MAX_CAPTURE_EVENTS` events.

Other answers, each the collector's JSON ``{"error", "message"}`` with ``code`` (the same as
``error``, as the Segment wire format has it: :func:`with_code`) and CORS headers:

========  ==============================================================================
status    when
========  ==============================================================================
400       the body cannot be decoded (``bad_encoding``: gzip told by its magic bytes that
          is not, a form or base64 that cannot be read; ``not_json``): its bytes are still
          sent to the events topic, whole (a stand-in over 1 MiB), where the stream worker
          dead-letters them with the contract's reason. A body not valid in its declared
          ``Content-Encoding`` is a 400 ``bad_encoding`` too, kept nowhere, as on
          ``/v1/events``
401       write keys are configured and the key is missing or unknown
403       Snowplow: the app id (``aid``) or the ``Origin`` is not on its allow-list
408       the body did not arrive within ``collector_body_timeout_s``
413       body over 5 MiB (declared, sent or inflated), or more than 1000 events
415       a ``Content-Encoding`` other than gzip or deflate
429       over a rate limit (``Retry-After``), as ``/v1/events``
503       Kafka unavailable: nothing of the request was acknowledged (``Retry-After``)
========  ==============================================================================

**Every element is kept.** A body that decodes is answered 200 once every element is in
Kafka (``acks=all``): the events the mapping (:mod:`usersignals.ingest.capture`) accepts,
stamped ``received_at`` and written like those of ``/v1/events`` (one record per partition of
their users), and each rejected element as the JSON the mapping built of it (or the element
itself), a batch of one on its user's partition (partition 0 when it has no user), where the
worker dead-letters it with its reason exactly as for any producer. The SDKs drop a whole
batch on a 4xx, so a request with some bad (or only bad) events is still 200. A rejected
element too large for a Kafka record (over 1 MiB) is sent as a stand-in the worker rejects as
``too_large`` too: ``{"usersignals_stand_in": {"bytes", "sha256", "head"}}``, the first 40 KiB
of the element's JSON in ``head``; one that cannot be encoded at all (nested past msgspec's
limit) as a stand-in nested past the contract's limit, which the worker rejects ``too_deep``.

**Keys.** With ``USERSIGNALS_WRITE_KEYS`` set, the key is the first found of: an
``Authorization: Bearer`` token; the user of ``Authorization: Basic`` (Segment and RudderStack
send ``base64("key:")``); the body's ``api_key`` / ``token`` (PostHog) or ``writeKey``
(Segment); the first event's ``properties.token`` (posthog-js). Any other ``Authorization``
form is passed over. Snowplow trackers send no key: a Snowplow request with a good header key
is let in; otherwise ``USERSIGNALS_SNOWPLOW_APP_IDS`` (every event's ``aid`` must be listed)
and ``USERSIGNALS_SNOWPLOW_ORIGINS`` (a request with an ``Origin`` must come from a listed one)
apply: each configured list that applies must pass and at least one must apply (a request with
no ``Origin`` needs the app id list). With neither list, Snowplow is open when no write keys
are set and closed (403) when some are. Keys are compared in constant time; no error answer
and no log line quotes a key, a header or a byte of a body. The start-up calls (flags, remote
config, settings, sourceConfig) are answered to every client within its rate limit: they give
nothing away. Only two answers echo what the client sent, as their protocols need: CORS's
``Origin`` when allowed, and Segment's settings, which carry the host asked for (checked to
be a host name) and the write key of their path as ``apiKey`` (analytics.js sends it with
every event) when it is a configured key, or any when none are.

**CORS.** Every answer echoes an allowed ``Origin`` (``--allow-origin``; any when ``*``) with
``Access-Control-Allow-Credentials: true`` and ``Vary: Origin``, since posthog-js and the
Snowplow tracker send with credentials; a preflight allows ``GET, POST, OPTIONS`` and the
headers the browser SDKs send (:data:`~usersignals.ingest.collector_auth.CAPTURE_ALLOW_HEADERS`).
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs

import msgspec
from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler  # sends "100 Continue"

from usersignals.config import Settings
from usersignals.ingest import capture, contract
from usersignals.ingest.batching import RECORD_BYTES_LIMIT, records_of
from usersignals.ingest.bodies import GZIP_MAGIC, BodyProblem, inflate
from usersignals.ingest.collector_auth import (
    Refusal,
    capture_cors_headers,
    header_key,
    key_matches,
)
from usersignals.ingest.collector_guards import IngestGuards
from usersignals.ingest.httpguard import error_response

__all__ = [
    "ENDPOINTS",
    "MAX_CAPTURE_BODY_BYTES",
    "MAX_CAPTURE_EVENTS",
    "PIXEL_GIF",
    "STAND_IN_HEAD_BYTES",
    "CaptureEndpoints",
    "Endpoint",
    "ExpectHandler",
    "Handler",
    "Produce",
    "Sink",
    "b64decode_lenient",
    "capture_records",
    "decode_form",
    "element_count",
    "posthog_flags",
    "posthog_remote_config",
    "rudderstack_source_config",
    "segment_settings",
    "snowplow_problem",
    "stand_in",
    "with_code",
]

log = logging.getLogger("usersignals.ingest.collector")

MAX_CAPTURE_BODY_BYTES = 5 * 1024 * 1024
"""Largest body of a capture request after inflating (5 MiB, PostHog's own bound)."""

MAX_CAPTURE_EVENTS = contract.MAX_BATCH
"""Most elements one capture request may carry (1000; the SDKs send 100 or fewer)."""

STAND_IN_HEAD_BYTES = 40 * 1024
"""Bytes of an element too large for a Kafka record that its stand-in keeps (more than
:data:`~usersignals.ingest.contract.MAX_EVENT_BYTES`, so the worker rejects it ``too_large``)."""

PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
"""A transparent 1x1 GIF: the answer to Snowplow's ``GET /i``."""

Produce = tuple[int, bytes | None, bytes]
"""One Kafka record to write: partition, key, value."""

RETRY_AFTER_S = 5
"""``Retry-After`` of a 503 (as ``/v1/events``)."""

_SLASHED = ("", "/")
_SEGMENT_SHORT = {
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
_HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
_EPOCH_MS = re.compile(r"[0-9]{10,15}")
_JSON = msgspec.json.Decoder()
_ENCODE = msgspec.json.Encoder().encode
_FORM_MEDIA = "application/x-www-form-urlencoded"
_MISSING_KEY = (
    "missing write key; send 'Authorization: Bearer <key>', Basic auth with the key as user, "
    "or the key in the body (api_key, token, writeKey, properties.token)"
)
_NOT_JSON = "the body is not JSON (after gzip, form and base64 decoding); it was dead-lettered"
_BAD_ENCODING = "the body is not valid in its encoding (gzip, form or base64); it was dead-lettered"
_SNOWPLOW_CLOSED = (
    "Snowplow requests need a write key, or USERSIGNALS_SNOWPLOW_APP_IDS or "
    "USERSIGNALS_SNOWPLOW_ORIGINS, when write keys are configured"
)
_SNOWPLOW_ORIGIN = "this Origin is not on the Snowplow allow-list (USERSIGNALS_SNOWPLOW_ORIGINS)"
_SNOWPLOW_APP = "an app id (aid) is missing or not allowed (USERSIGNALS_SNOWPLOW_APP_IDS)"
_SNOWPLOW_NO_ORIGIN = (
    "a Snowplow request without an Origin needs an allowed app id (USERSIGNALS_SNOWPLOW_APP_IDS)"
)


# -------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Endpoint:
    """One capture route.

    Attributes:
        method: ``GET`` or ``POST`` (each path also answers ``OPTIONS``).
        path: The aiohttp path (``{name}`` for a path parameter, as in OpenAPI).
        protocol: ``posthog``, ``segment`` (RudderStack too) or ``snowplow``.
        kind: ``events`` (a body of events), ``pixel`` (Snowplow's ``GET /i``), or a start-up
            call: ``flags``, ``remote_config``, ``settings``, ``source_config``.
        call: The Segment call a single-message path names (``track`` ...), else ``None``.
    """

    method: str
    path: str
    protocol: str
    kind: str
    call: str | None = None


def _endpoints() -> tuple[Endpoint, ...]:
    table: list[Endpoint] = []
    for base in ("/batch", "/e", "/i/v0/e", "/capture", "/track", "/i/v0/ai/batch"):
        table += [Endpoint("POST", base + s, "posthog", "events") for s in _SLASHED]
    for base in ("/flags", "/decide"):
        table += [Endpoint("POST", base + s, "posthog", "flags") for s in _SLASHED]
    table.append(Endpoint("GET", "/array/{token}/config", "posthog", "remote_config"))
    table += [Endpoint("POST", f"/v1/{p}", "segment", "events") for p in ("batch", "b")]
    for call in capture.SEGMENT_CALLS:
        table.append(Endpoint("POST", f"/v1/{call}", "segment", "events", call))
    for short, call in _SEGMENT_SHORT.items():
        table.append(Endpoint("POST", f"/v1/{short}", "segment", "events", call))
    table.append(Endpoint("GET", "/v1/projects/{write_key}/settings", "segment", "settings"))
    table += [Endpoint("GET", "/sourceConfig" + s, "segment", "source_config") for s in _SLASHED]
    table.append(Endpoint("POST", "/com.snowplowanalytics.snowplow/tp2", "snowplow", "events"))
    table.append(Endpoint("GET", "/i", "snowplow", "pixel"))
    return tuple(table)


ENDPOINTS = _endpoints()
"""Every capture route (each path also answers ``OPTIONS``)."""


# -------------------------------------------------------------------------- pure: decoding


def b64decode_lenient(text: str) -> bytes | None:
    """Base64 as browsers send it: standard or URL-safe, padded or not, and with ``+`` read
    back from a space (a form decoder turns an unescaped ``+`` into one); ``None`` if not."""
    cleaned = "".join(text.replace(" ", "+").split()).rstrip("=")
    cleaned = cleaned.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_form(body: bytes) -> bytes | None:
    """The payload of a form body ``data=<base64 JSON>`` (posthog-js), ``None`` when it is not
    one that can be read: not ASCII, no ``data`` field, or not base64. A ``data`` that is
    plain JSON (it starts with ``{`` or ``[``) is taken as it is."""
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        return None
    values = fields.get("data")
    if not values:
        return None
    data = values[0].strip()
    if data[:1] in ("{", "["):
        return data.encode()
    return b64decode_lenient(data)


def _is_form(body: bytes, content_type: str | None) -> bool:
    """A form body: one that starts ``data=``, or one said to be a form that is not JSON
    (``curl -d`` calls any body a form)."""
    if body[:5] == b"data=":
        return True
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == _FORM_MEDIA and body.lstrip()[:1] not in (b"{", b"[")


def element_count(payload: Any) -> int:
    """How many elements a decoded payload carries (its ``batch``/``data`` array, a top-level
    array, else one), counted before mapping them."""
    if isinstance(payload, list):
        return len(payload)
    if isinstance(payload, dict):
        for key in ("batch", "data"):
            inner = payload.get(key)
            if isinstance(inner, list):
                return len(inner)
    return 1


def _sent_at(query: Mapping[str, str]) -> datetime | None:
    """posthog-js's send time: the ``_`` query parameter, epoch milliseconds."""
    value = query.get("_", "")
    if not _EPOCH_MS.fullmatch(value):
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


# ------------------------------------------------------------------------ pure: the records


def stand_in(data: bytes) -> bytes:
    """A record the worker rejects ``too_large``, for an element too large to be sent: its size,
    SHA-256 and first :data:`STAND_IN_HEAD_BYTES` bytes (as text), in a batch of one."""
    head = data[:STAND_IN_HEAD_BYTES].decode("utf-8", "replace")
    doc = {
        "usersignals_stand_in": {
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "head": head,
        }
    }
    return b"[" + _ENCODE(doc) + b"]"


def _too_deep_stand_in(index: int) -> bytes:
    """A record the worker rejects ``too_deep``, for an element nested past what can be encoded."""
    depth = contract.MAX_READ_DEPTH + 1
    nested = b"[" * depth + b"]" * depth
    return (
        b'[{"usersignals_stand_in":{"index":'
        + str(index).encode()
        + b',"nested":'
        + nested
        + b"}}]"
    )


def _partition(user_id: str, partitions: int) -> tuple[int, bytes | None]:
    if not user_id or partitions < 1:
        return 0, None
    return contract.partition_for(user_id, partitions), user_id.encode("utf-8", "surrogatepass")


def _dead(user_id: str, data: bytes, partitions: int) -> Produce:
    """The record of one rejected element: a batch of one on its user's partition."""
    partition, key = _partition(user_id, partitions)
    value = b"[" + data + b"]" if len(data) + 2 <= RECORD_BYTES_LIMIT else stand_in(data)
    return partition, key, value


def capture_records(
    mapped: Sequence[capture.Mapped], *, received_at: datetime, partitions: int
) -> tuple[list[Produce], int]:
    """The Kafka records of a mapped request, and how many of its elements were accepted.

    The accepted events, stamped ``received_at``, go in records of their partition (those of
    ``/v1/events``: :func:`~usersignals.ingest.batching.records_of`), as the canonical JSON
    of :func:`~usersignals.ingest.contract.encode_event`: the bytes the mapping validated
    (:attr:`~usersignals.ingest.capture.Mapped.data`) with ``received_at`` appended
    (:func:`~usersignals.ingest.capture.stamp`), or the event encoded; each rejected element
    goes alone, as the JSON the mapping built (:attr:`~usersignals.ingest.capture.Mapped.doc`),
    on its user's partition (0 with no user), for the worker to dead-letter with the contract's
    reason. An accepted event whose stamped JSON is over
    :data:`~usersignals.ingest.contract.MAX_EVENT_BYTES` goes the same way (the worker says
    ``too_large``). Nothing is larger than a Kafka record: see :func:`stand_in`.
    """
    items: list[tuple[str, bytes]] = []
    dead: list[Produce] = []
    suffix = b""
    for m in mapped:
        if m.event is not None:
            if m.data:  # the event's canonical JSON, from the mapping: stamp it
                if not suffix:
                    suffix = capture.stamp(received_at)
                data = m.data[:-1] + suffix
            else:
                event = msgspec.structs.replace(m.event, received_at=received_at)
                data = contract.encode_event(event)
            if len(data) <= contract.MAX_EVENT_BYTES:
                items.append((m.event.user_id, data))
                continue
            dead.append(_dead(m.user_id, data, partitions))
            continue
        raw = m.rejection.raw if m.rejection is not None else b""
        if not raw:
            try:
                raw = _ENCODE(m.doc)
            except Exception:  # nested past msgspec's limit (or not JSON at all)
                partition, key = _partition(m.user_id, partitions)
                dead.append((partition, key, _too_deep_stand_in(m.index)))
                continue
        dead.append(_dead(m.user_id, raw, partitions))
    records = [(r.partition, r.key, r.value) for r in records_of(items, partitions)]
    return records + dead, len(items)


def _raw_record(data: bytes) -> Produce:
    """A body that cannot be decoded, whole, on partition 0 (the worker dead-letters it)."""
    return 0, None, data if len(data) <= RECORD_BYTES_LIMIT else stand_in(data)


# --------------------------------------------------------------------- pure: who may write


def snowplow_problem(
    *,
    app_ids: Sequence[str],
    origins: Sequence[str],
    keys_configured: bool,
    origin: str | None,
    aids: set[str],
) -> str | None:
    """Why a Snowplow request (with no good header key) may not write, ``None`` when it may.

    Each configured allow-list that applies must pass, and at least one must apply: the app
    id list (every event's ``aid`` listed) always applies when set; the origin list applies to
    a request with an ``Origin``. With neither list, Snowplow is open unless write keys are
    configured.
    """
    if not app_ids and not origins:
        return _SNOWPLOW_CLOSED if keys_configured else None
    applied = False
    if origins and origin is not None:
        applied = True
        if origin.rstrip("/") not in origins:
            return _SNOWPLOW_ORIGIN
    if app_ids:
        applied = True
        if not aids or not aids <= set(app_ids):
            return _SNOWPLOW_APP
    return None if applied else _SNOWPLOW_NO_ORIGIN


# ---------------------------------------------------------------- pure: start-up answers


_POSTHOG_CONFIG: dict[str, Any] = {
    "supportedCompression": ["gzip", "gzip-js"],
    "hasFeatureFlags": False,
    "autocapture_opt_out": False,
    "autocaptureExceptions": False,
    "capturePerformance": False,
    "captureDeadClicks": False,
    "heatmaps": False,
    "sessionRecording": False,
    "surveys": False,
    "siteApps": [],
    "elementsChainAsString": True,
    "defaultIdentifiedOnly": True,
}


def posthog_remote_config() -> dict[str, Any]:
    """``GET /array/{token}/config``: posthog-js's remote config with nothing switched on
    (no feature flags, so it asks for none; no session recording, surveys or heatmaps)."""
    return dict(_POSTHOG_CONFIG)


def posthog_flags() -> dict[str, Any]:
    """``POST /flags/`` and ``/decide/``: no flag, in the v2+ shape (``flags``, which
    posthog-python 7 reads) and the v1 one (``featureFlags``, ``featureFlagPayloads``), with
    the remote config of :func:`posthog_remote_config` (``/flags/?config=true``)."""
    return {
        **_POSTHOG_CONFIG,
        "flags": {},
        "featureFlags": {},
        "featureFlagPayloads": {},
        "errorsWhileComputingFlags": False,
        "quotaLimited": [],
        "requestId": str(uuid.uuid4()),
        "evaluatedAt": int(time.time() * 1000),
        "config": {"enable_collect_everything": True},
        "toolbarParams": {},
        "isAuthenticated": False,
    }


def segment_settings(api_key: str, api_host: str, protocol: str) -> dict[str, Any]:
    """``GET /v1/projects/{write_key}/settings``: analytics.js's settings with the Segment.io
    destination only, sending to ``protocol://api_host`` with ``api_key`` as write key."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": api_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": False,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {"track": {"__default": {"enabled": True, "integrations": {}}}},
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def rudderstack_source_config() -> dict[str, Any]:
    """``GET /sourceConfig/``: an enabled source with no destinations and no stats collection
    (what the RudderStack JS SDK validates before it sends)."""
    return {
        "isHosted": False,
        "source": {
            "id": "usersignals",
            "name": "usersignals",
            "enabled": True,
            "workspaceId": "usersignals",
            "config": {
                "statsCollection": {"errors": {"enabled": False}, "metrics": {"enabled": False}}
            },
            "destinations": [],
            "dataplanes": {},
        },
        "updatedAt": "2026-01-01T00:00:00.000Z",
    }


# ------------------------------------------------------------------------------- the shell


class Sink(Protocol):
    """What the endpoints need of the collector: the partition count, sending, draining."""

    partitions: int

    async def send_records(self, records: Sequence[Produce]) -> str | None:
        """Writes the records, waiting for every acknowledgement; a problem text on failure."""
        ...

    def busy(self) -> AbstractAsyncContextManager[None]:
        """Marks a request in flight (a stopping collector waits for it)."""
        ...


@dataclass(frozen=True)
class _Admission:
    answer: web.Response | None
    key_ok: bool  # a configured write key came in the Authorization header


_ADMISSION = web.RequestKey("usersignals.capture_admission", _Admission)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ExpectHandler = Callable[[web.Request], Awaitable[web.Response | None]]


@dataclass(frozen=True)
class _Decoded:
    payload: Any = None
    raw: bytes = b""  # the bytes that could not be decoded
    error: str | None = None  # "bad_encoding" or "not_json" when it could not
    answer: web.Response | None = None  # a body inflating past the limit


class CaptureEndpoints:
    """The capture routes' handlers (module docstring), over the collector's guards and sink.

    Args:
        settings: Write keys, the Snowplow allow-lists.
        guards: The collector's guards (its rate limits and keys are shared with
            ``/v1/events``).
        origins: The allowed web origins (:func:`~usersignals.ingest.collector_auth.parse_origins`).
        sink: Where records go (the collector).
    """

    def __init__(
        self, settings: Settings, *, guards: IngestGuards, origins: Sequence[str], sink: Sink
    ) -> None:
        self.guards = guards
        self.gate = guards.gate
        self.origins = tuple(origins)
        self.sink = sink
        self.app_ids = settings.snowplow_app_ids
        self.snowplow_origins = settings.snowplow_origins

    def routes(self) -> list[tuple[str, str, Handler, ExpectHandler | None]]:
        """``(method, path, handler, expect_handler)`` of every capture route, ``OPTIONS``
        included (one per path); the expect handler of a route that takes a body refuses on
        its headers before the client uploads it."""
        out: list[tuple[str, str, Handler, ExpectHandler | None]] = []
        for endpoint in ENDPOINTS:
            expect = self._expect(endpoint) if endpoint.method == "POST" else None
            out.append((endpoint.method, endpoint.path, self._handler(endpoint), expect))
            out.append(("OPTIONS", endpoint.path, self.preflight, None))
        return out

    def _handler(self, endpoint: Endpoint) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            async with self.sink.busy():
                response = await self._dispatch(endpoint, request)
            response.headers.update(self._cors(request, preflight=False))
            return with_code(response)

        return handle

    def _expect(self, endpoint: Endpoint) -> ExpectHandler:
        async def expect(request: web.Request) -> web.Response | None:
            """``Expect: 100-continue``: refuse on the headers before the upload."""
            admission = self._admit(request, endpoint)
            if admission.answer is None:
                await _default_expect_handler(request)
                return None
            admission.answer.headers.update(self._cors(request, preflight=False))
            return with_code(admission.answer)

        return expect

    def _cors(self, request: web.Request, *, preflight: bool) -> Mapping[str, str]:
        private = request.headers.get("Access-Control-Request-Private-Network", "") == "true"
        return capture_cors_headers(
            request.headers.get("Origin"),
            self.origins,
            preflight=preflight,
            private_network=private,
        )

    async def preflight(self, request: web.Request) -> web.Response:
        """A browser's CORS preflight of any capture path (no key needed: browsers send none)."""
        return web.Response(status=204, headers=self._cors(request, preflight=True))

    # -- admission

    def _admit(self, request: web.Request, endpoint: Endpoint) -> _Admission:
        """What the headers decide (once per request): client rate, a header key (not for a
        start-up call: those answer every client), encoding, declared size."""
        if _ADMISSION in request:
            return request[_ADMISSION]
        remote = request.remote or ""
        answer = _refused(self.gate.admit_client(remote))
        key_ok = False
        if answer is None and self.gate.keys and endpoint.kind in ("events", "pixel"):
            key = header_key(request.headers.get("Authorization"))
            if key is not None:
                answer = _refused(self.gate.admit_capture(remote, key, _MISSING_KEY))
                key_ok = answer is None
        if answer is None and request.method == "POST":
            answer = self.guards.admit_body(request, limit=MAX_CAPTURE_BODY_BYTES)
        admission = _Admission(answer, key_ok)
        request[_ADMISSION] = admission
        return admission

    def _admit_payload(
        self, request: web.Request, protocol: str, payload: Any, key_ok: bool
    ) -> web.Response | None:
        """What the body decides: its key (PostHog, Segment), the allow-lists (Snowplow)."""
        remote = request.remote or ""
        if key_ok:
            return None
        if protocol == "snowplow":
            aids = capture.snowplow_app_ids(payload) if payload is not None else set()
            origin = request.headers.get("Origin")
            problem = snowplow_problem(
                app_ids=self.app_ids,
                origins=self.snowplow_origins,
                keys_configured=bool(self.gate.keys),
                origin=origin,
                aids=aids,
            )
            if problem is None and not self.app_ids and not self.snowplow_origins:
                return None  # open: no key, no list
            bucket = "\0snowplow:" + (min(aids) if aids else origin or "")
            refusal = self.gate.admit_key(remote, bucket, problem, sent=True, forbidden=True)
            return _refused(refusal)
        if not self.gate.keys:
            return None
        key = capture.payload_key(protocol, payload) if payload is not None else None
        return _refused(self.gate.admit_capture(remote, key, _MISSING_KEY))

    # -- the routes

    async def _dispatch(self, endpoint: Endpoint, request: web.Request) -> web.Response:
        admission = self._admit(request, endpoint)
        if admission.answer is not None:
            return admission.answer
        kind = endpoint.kind
        if kind in ("events", "pixel"):
            return await self._events(endpoint, request, admission.key_ok)
        if kind == "flags":  # the body (what to evaluate) is read, within the limits, and unused
            read = await self.guards.read(request, limit=MAX_CAPTURE_BODY_BYTES)
            if isinstance(read, web.Response):
                return read
            return web.json_response(posthog_flags())
        if kind == "remote_config":
            return web.json_response(posthog_remote_config())
        if kind == "settings":
            return self._segment_settings(request)
        return web.json_response(rudderstack_source_config())

    def _segment_settings(self, request: web.Request) -> web.Response:
        """analytics.js's settings, sending to the host it asked (``X-Forwarded-Host`` and
        ``-Proto`` first, behind a proxy)."""
        host = _first(request.headers.get("X-Forwarded-Host")) or request.host
        if not _HOST.fullmatch(host):
            return error_response(400, "bad_host", "the Host header is not a host name")
        forwarded = _first(request.headers.get("X-Forwarded-Proto")).lower()
        scheme = forwarded if forwarded in ("http", "https") else request.scheme
        key = request.match_info.get("write_key", "")
        keys = self.gate.keys
        known = not keys or key_matches(key, keys)
        body = segment_settings(key if known else "", f"{host}/v1", scheme)
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def _events(self, endpoint: Endpoint, request: web.Request, key_ok: bool) -> web.Response:
        if endpoint.kind == "pixel":
            query = {k: request.query[k] for k in request.query}
            body: bytes | _Decoded = _Decoded(payload=query if query else None)
        else:
            read = await self.guards.read(request, limit=MAX_CAPTURE_BODY_BYTES)
            if isinstance(read, web.Response):
                return read
            body = await self._inflate(read.data)
            if isinstance(body, _Decoded) and body.answer is not None:
                return body.answer
        with _collection_paused():
            prepared = self._prepare(endpoint, request, key_ok, body)
        if isinstance(prepared, web.Response):
            return prepared
        records, answer = prepared
        if records:
            problem = await self.sink.send_records(records)
            if problem is not None:
                return _unavailable(problem)
        return answer

    def _prepare(
        self, endpoint: Endpoint, request: web.Request, key_ok: bool, body: bytes | _Decoded
    ) -> web.Response | tuple[list[Produce], web.Response]:
        """What a body comes to, without I/O: an answer now, or the records to send and the
        answer once they are in Kafka. The decoded payload and its mapping (many small
        objects) live only in here, never across the wait for Kafka."""
        if isinstance(body, _Decoded):
            decoded = body
        else:
            decoded = _decode(body, request.headers.get("Content-Type"))
        refusal = self._admit_payload(request, endpoint.protocol, decoded.payload, key_ok)
        if refusal is not None:
            return refusal
        if decoded.error is not None:
            message = _NOT_JSON if decoded.error == "not_json" else _BAD_ENCODING
            return [_raw_record(decoded.raw)], error_response(400, decoded.error, message)
        if endpoint.kind == "pixel" and decoded.payload is None:
            return _accepted(endpoint)  # a bare GET /i (a probe): no event in it
        count = element_count(decoded.payload)
        if count > MAX_CAPTURE_EVENTS:
            return error_response(
                413,
                "too_many_events",
                f"a request may carry at most {MAX_CAPTURE_EVENTS} events, got {count}",
            )
        now = datetime.now(UTC)
        mapped = _map(endpoint, decoded.payload, now, request.query)
        records, _ = capture_records(mapped, received_at=now, partitions=self.sink.partitions)
        return records, _accepted(endpoint)

    async def _inflate(self, data: bytes) -> bytes | _Decoded:
        """A body gzipped with no ``Content-Encoding`` (told by its magic bytes), inflated."""
        if data[:2] != GZIP_MAGIC:
            return data
        body = await inflate(
            data, wbits=31, limit=MAX_CAPTURE_BODY_BYTES, stats=self.guards.body_stats
        )
        if body.problem is BodyProblem.TOO_LARGE:
            return _Decoded(answer=self.guards.too_large(MAX_CAPTURE_BODY_BYTES))
        if body.problem is not None:
            return _Decoded(raw=data, error="bad_encoding")
        return body.data


def _decode(data: bytes, content_type: str | None) -> _Decoded:
    """The payload of a body once inflated (module docstring: form base64, then JSON)."""
    if _is_form(data, content_type):
        form = decode_form(data)
        if form is None:
            return _Decoded(raw=data, error="bad_encoding")
        data = form
    try:
        return _Decoded(payload=_JSON.decode(data))
    except (msgspec.DecodeError, RecursionError):
        return _Decoded(raw=data, error="not_json")


@contextmanager
def _collection_paused() -> Iterator[None]:
    """The cyclic garbage collector held off while a request is decoded and mapped (no await
    in between): the payload and its mapping are a few thousand small objects, all freed by
    their reference counts before the request waits for Kafka, so a collection in the middle
    would only move them to older generations and set off full collections of the heap. It
    runs again as before afterwards (nothing is left for it to do), even on an exception."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def with_code(response: web.Response) -> web.Response:
    """An error answer whose JSON ``{"error", "message"}`` also says ``code``, the same as
    ``error``, as the Segment wire format has it: rudder-sdk-python reads ``code`` from any
    answer but a 200 and catches only ``ValueError`` while it does, so without it every 4xx
    would be a ``KeyError``, which its consumer retries as if the network had failed, rather
    than the ``APIError`` it gives up on at once. Any other answer is returned as it is."""
    if response.status < 400 or response.content_type != "application/json":
        return response
    body = response.body
    if not isinstance(body, bytes):
        return response
    try:
        doc = json.loads(body)
    except ValueError:
        return response
    if isinstance(doc, dict) and isinstance(doc.get("error"), str) and "code" not in doc:
        response.body = json.dumps({**doc, "code": doc["error"]}).encode()
    return response


def _first(forwarded: str | None) -> str:
    """The first (the client's side) of a comma-separated ``X-Forwarded-*`` header."""
    return (forwarded or "").split(",", 1)[0].strip()


def _map(
    endpoint: Endpoint, payload: Any, now: datetime, query: Mapping[str, str]
) -> list[capture.Mapped]:
    if endpoint.protocol == "posthog":
        return capture.map_posthog(payload, received_at=now, sent_at=_sent_at(query))
    if endpoint.protocol == "segment":
        return capture.map_segment(payload, received_at=now, call=endpoint.call)
    return capture.map_snowplow(payload, received_at=now)


def _refused(refusal: Refusal | None) -> web.Response | None:
    if refusal is None:
        return None
    return error_response(refusal.status, refusal.error, refusal.message, refusal.headers)


def _unavailable(problem: str) -> web.Response:
    log.warning("answering 503: %s", problem)
    return error_response(
        503,
        "kafka_unavailable",
        f"Kafka is unavailable ({problem}); no event of this request was acknowledged, "
        f"retry after {RETRY_AFTER_S} s",
        {"Retry-After": str(RETRY_AFTER_S)},
    )


def _accepted(endpoint: Endpoint) -> web.Response:
    if endpoint.kind == "pixel":
        return web.Response(
            body=PIXEL_GIF, content_type="image/gif", headers={"Cache-Control": "no-store"}
        )
    if endpoint.protocol == "posthog":
        return web.json_response({"status": 1})
    if endpoint.protocol == "segment":
        return web.json_response({"success": True})
    return web.Response(text="ok", content_type="text/plain")
