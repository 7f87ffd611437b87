"""Drop-in capture: PostHog, Segment/RudderStack and Snowplow wire payloads as contract events.

Pure functions from a decoded SDK payload (the JSON body, or Snowplow's query dict) to one
:class:`Mapped` per element of the SDK's batch: the contract-shaped dict built from it, and the
contract's verdict on that dict (an :class:`~usersignals.ingest.contract.Event`, or a
:class:`~usersignals.ingest.contract.Rejection` with the contract's reason code). The HTTP layer
(:mod:`usersignals.ingest.capture_http`) decodes bodies, checks keys and sends; ``docs/capture.md``
is the user-facing statement of the mapping, and ``tests/ingest/test_capture_mapping.py`` holds
this module to it with bodies captured from the real SDKs.

Nothing here raises on input: an element that is not an object, or that lacks what the contract
needs, still yields a :class:`Mapped`, with ``event=None`` and the rejection. The verdict is the
contract's own: the built dict is encoded and read by
:func:`~usersignals.ingest.contract.decode_record` (its fast path, the same code as the native
endpoint), so reasons and messages are those of any other event, and the rejection's ``raw`` is
that dict's JSON, which ``usersignals deadletter replay`` can send again once fixed. Only what
the contract cannot see (an unknown Segment call, an undecodable Snowplow ``ue_px``/``cx``, a
``batch`` that is not an array) is worded here, with the contract's reason codes and no byte of
the payload in the message.

The work is done per request where it can be (the send time is read once), and each element
is encoded once: a PostHog or Segment event is built in the contract's key order, so that the
JSON the contract validated is, nearly always, the event's canonical JSON, kept as
:attr:`Mapped.data` for the collector to send with ``received_at`` appended (:func:`stamp`)
rather than encoded again. An element the contract does not take in a batch is judged again
alone, in the key order it is documented and dead-lettered in.

The mapping (``docs/capture.md`` has the tables):

- ``event_id`` <- ``uuid`` / ``messageId`` / ``eid``; ``user_id`` <- ``distinct_id`` (else
  ``properties.distinct_id``, posthog-js) / ``userId`` else ``anonymousId`` / ``uid`` else
  ``duid`` else the Snowplow ``client_session`` context's ``userId``. ``null`` and ``""`` count
  as absent while there is another candidate. Ids are never coerced: a number is rejected as
  the contract rejects it.
- ``ts`` <- the event time (PostHog ``timestamp``, else ``received_at - offset``; Segment
  ``originalTimestamp`` else ``timestamp``; Snowplow ``ttm`` as is, else ``dtm``), corrected
  for the client's clock when the payload carries a send time (PostHog ``sent_at``, or the
  ``sent_at`` argument; Segment ``sentAt``; Snowplow ``stm``):
  ``ts = received_at - max(0, sent_at - event_time)``, the client's own time then kept in
  ``properties.client_ts`` (:data:`CLIENT_TS`, RFC 3339 UTC). A send time before the event
  time counts as no delay (snowplow-tracker 1.1 sends ``stm`` in whole seconds). No event time
  at all: ``ts = received_at``. An event or send time that cannot be read: no correction, the
  event time goes to the contract verbatim (which rejects it with ``bad_timestamp`` if it is
  the bad one).
- The type: ``properties.usersignals_type`` first (verbatim: a bad one is the contract's
  ``unknown_type``), else an identity call (:data:`POSTHOG_IDENTITY`, Segment
  identify/alias/group) is ``identify``, else the event name normalised
  (:func:`normalise_name`) through :data:`EVENT_NAMES`, else ``custom`` with ``name`` = the
  event name as sent. Snowplow: ``iglu:io.usersignals/<type>/jsonschema/<version>`` is that
  type natively; every other event is ``custom`` (see :func:`map_snowplow`).
- The fields the type takes (:data:`TYPE_FIELDS`) are lifted from the properties verbatim
  (so a bad value is rejected by the contract); ``session_id``, ``model`` and ``platform`` are
  lifted when they have the contract's shape and left in the properties otherwise
  (``platform`` only when it is one of the contract's values, any case); the fields lifted,
  ``usersignals_type`` and PostHog's ``token`` (a write key is never stored) leave the
  properties, everything else stays.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from usersignals.ingest import contract
from usersignals.ingest.iglu import FORMAT, FROM_SNOWPLOW, VENDOR
from usersignals.ingest.rules import CHOICES
from usersignals.ingest.timestamps import (
    TimestampError,
    format_ts,
    parse_epoch_ms,
    to_utc,
)

__all__ = [
    "CLIENT_TS",
    "EVENT_NAMES",
    "POSTHOG_IDENTITY",
    "PROTOCOLS",
    "SEGMENT_CALLS",
    "SEGMENT_IDENTITY",
    "TYPE_FIELDS",
    "Mapped",
    "map_posthog",
    "map_segment",
    "map_snowplow",
    "normalise_name",
    "payload_key",
    "snowplow_app_ids",
    "stamp",
]

PROTOCOLS = ("posthog", "segment", "snowplow")

CLIENT_TS = "client_ts"
"""The key in ``properties`` that keeps the client's own event time when ``ts`` was corrected."""

TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "session_start": (),
    "session_end": ("duration_s",),
    "message": ("role", "tokens", "message_id"),
    "feedback": ("message_id", "rating"),
    "preference": ("model_a", "model_b", "winner"),
    "risk_flag": ("category", "severity", "source"),
    "custom": (),
    "identify": (),
}
"""Per contract type: the fields lifted from an SDK event's properties (required and optional)."""

EVENT_NAMES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "session_start": ("session_start", {}, {}),
    "session_started": ("session_start", {}, {}),
    "session_end": ("session_end", {}, {}),
    "session_ended": ("session_end", {}, {}),
    "message": ("message", {}, {}),
    "message_sent": ("message", {"role": "user"}, {}),
    "message_received": ("message", {"role": "assistant"}, {}),
    "thumbs_up": ("feedback", {}, {"rating": 1}),
    "thumbs_down": ("feedback", {}, {"rating": -1}),
    "feedback": ("feedback", {}, {}),
    "message_rated": ("feedback", {}, {}),
    "preference": ("preference", {}, {}),
    "risk_flag": ("risk_flag", {}, {}),
    "risk_flagged": ("risk_flag", {}, {}),
}
"""Normalised event name -> (contract type, defaults for absent fields, fixed fields). A default
(``role``) gives way to the property of that name; a fixed field (the thumbs' ``rating``) is the
name's meaning, and a ``rating`` property beside it stays in the properties."""

POSTHOG_IDENTITY = frozenset(
    {"$identify", "$set", "$set_once", "$create_alias", "$merge_dangerously", "$groupidentify"}
)
"""PostHog events that are identity calls (``identify``), not activity."""

SEGMENT_CALLS = ("track", "page", "screen", "identify", "alias", "group")
SEGMENT_IDENTITY = ("identify", "alias", "group")
_SEGMENT_CHOICES = ", ".join(repr(c) for c in SEGMENT_CALLS)

_SEPARATORS = re.compile(r"[ \-]+")
_ENCODER = msgspec.json.Encoder()
_JSON = msgspec.json.Decoder()
_PLATFORMS = frozenset(CHOICES["platform"])
_SIZE_MARGIN = 1024
"""A built event within this many bytes of the limit is measured again as the collector will
send it (with ``received_at``), so that what is accepted here also fits downstream."""
_JUDGE_BYTES = contract.MAX_EVENT_BYTES
"""Most bytes of one batch read by the contract here: within the size of one event, the
contract reads a batch without first scanning it for an element over that size (each element
is measured here before it is batched)."""
_CHECK_STAMPED = contract.MAX_EVENT_BYTES - _SIZE_MARGIN
"""The size of a built event beyond which it is measured again as it will be sent."""
_AS_BUILT = (
    "event_id", "user_id", "ts", "type", "name",
    "role", "tokens", "message_id", "rating", "model_a", "model_b", "winner",
    "category", "severity", "source", "duration_s",
    "session_id", "model", "platform", "properties",
)  # fmt: skip
"""The key order of a PostHog or Segment dict as documented and dead-lettered (its JSON is a
rejection's ``raw``); an accepted one is built in the contract's order instead, so that its
JSON is the event's canonical JSON. (Each type's fields, :data:`TYPE_FIELDS`, are in this
relative order.)"""
_POSTHOG_SESSION = ("$session_id", "session_id")
_SEGMENT_SESSION = ("session_id", "sessionId")
_NO_TIME = timedelta(0)
_IGLU = re.compile(
    r"iglu:([A-Za-z0-9_.\-]+)/([A-Za-z0-9_\-]+)/([A-Za-z0-9_\-]+)/([0-9]+-[0-9]+-[0-9]+)"
)
_EPOCH_MS = re.compile(r"-?[0-9]{1,18}")
_IDENTITY_TOP = ("$set", "$set_once", "$unset")

# PostHog's $lib and Segment's/RudderStack's context.library.name -> platform. None: a
# cross-platform mobile library, whose platform is the device's operating system.
_SERVER = "api"
_POSTHOG_LIBS: dict[str, str | None] = {
    "web": "web", "posthog-js": "web", "posthog-js-lite": "web",
    "posthog-ios": "ios", "posthog-android": "android",
    "posthog-react-native": None, "posthog-flutter": None,
    "posthog-python": _SERVER, "posthog-node": _SERVER, "posthog-ruby": _SERVER,
    "posthog-go": _SERVER, "posthog-php": _SERVER, "posthog-java": _SERVER,
    "posthog-dotnet": _SERVER, "posthog-elixir": _SERVER, "posthog-rs": _SERVER,
}  # fmt: skip
_SEGMENT_LIBS: dict[str, str | None] = {
    "analytics.js": "web", "analytics-next": "web", "@segment/analytics-next": "web",
    "RudderLabs JavaScript SDK": "web",
    "analytics-ios": "ios", "analytics-swift": "ios", "rudder-ios-library": "ios",
    "analytics-android": "android", "analytics-kotlin": "android",
    "com.rudderstack.android.sdk.core": "android",
    "analytics-react-native": None, "@segment/analytics-react-native": None,
    "analytics_flutter": None, "rudder_sdk_flutter": None,
    "analytics-python": _SERVER, "analytics-node": _SERVER, "@segment/analytics-node": _SERVER,
    "analytics-ruby": _SERVER, "analytics-go": _SERVER, "analytics-java": _SERVER,
    "analytics-php": _SERVER, "analytics.NET": _SERVER, "@rudderstack/rudder-sdk-node": _SERVER,
}  # fmt: skip
_RUDDER_CHANNELS = {"web": "web", "server": "api"}
_MOBILE_OS = {"ios": "ios", "ipados": "ios", "android": "android"}
_SNOWPLOW_PLATFORMS = {"web": "web", "pc": "desktop", "srv": "api"}
_SNOWPLOW_MOBILE = frozenset({"mob", "app"})
_SNOWPLOW_EVENTS = {
    "pv": "page_view",
    "pp": "page_ping",
    "tr": "transaction",
    "ti": "transaction_item",
}
_SNOWPLOW_STRUCTURED = (
    ("se_ca", "category"),
    ("se_la", "label"),
    ("se_pr", "property"),
    ("se_va", "value"),
)
_SNOWPLOW_CONSUMED = frozenset(
    {"e", "eid", "uid", "duid", "dtm", "stm", "ttm", "sid", "p", "ue_pr", "ue_px", "co", "cx"}
    | {"se_ac"}
    | {field for field, _ in _SNOWPLOW_STRUCTURED}
)
_SEGMENT_ENVELOPE = frozenset({
    "type", "messageId", "timestamp", "originalTimestamp", "sentAt", "receivedAt", "context",
    "integrations", "userId", "writeKey", "channel", "version", "_metadata", "properties",
})  # fmt: skip


class Mapped(msgspec.Struct, frozen=True):
    """One element of an SDK batch, mapped.

    Attributes:
        index: The element's position in the SDK's batch (0 for a single event).
        doc: The contract-shaped dict built from it, or the element itself when it is not an
            object (or the payload's ``batch``/``data`` when that is not an array). The dict
            of an accepted PostHog or Segment event has its keys in the contract's order.
        event: The contract's event (``received_at`` not set), ``None`` when rejected.
        rejection: The contract's rejection (``index`` = :attr:`index`, ``raw`` = the JSON of
            :attr:`doc` when it has one), ``None`` when accepted.
        user_id: The mapped ``user_id`` when it is a string, else ``""`` (for partitioning).
        data: :func:`~usersignals.ingest.contract.encode_event` of :attr:`event` when the
            mapping already has those bytes (the JSON it validated), else ``b""``; the
            collector appends ``received_at`` to them rather than encoding the event again.
    """

    index: int
    doc: Any
    event: contract.Event | None
    rejection: contract.Rejection | None
    user_id: str
    data: bytes = b""


# ---------------------------------------------------------------------------------- PostHog


def map_posthog(
    payload: Any, *, received_at: datetime, sent_at: datetime | None = None
) -> list[Mapped]:
    """Maps a PostHog capture payload to contract events, one :class:`Mapped` per element.

    Args:
        payload: The decoded JSON of ``/batch/`` (``{api_key, batch: [...], sent_at}``), or of
            ``/e/``, ``/i/v0/e/``, ``/capture/``, ``/track/``: one event object, or a list of
            them (posthog-js: ``properties.token``, ``properties.distinct_id``).
        received_at: The collector's clock at receipt (tz-aware).
        sent_at: The send time carried outside the body (posthog-js's ``_`` query parameter),
            used when the body has no ``sent_at``.

    Returns:
        One :class:`Mapped` per event, in order (none for an empty batch). Never raises on
        input.
    """
    container: Mapping[str, Any] | None = None
    if isinstance(payload, list):
        elements: list[Any] = payload
    elif isinstance(payload, dict):
        container = payload
        if "batch" in payload:
            batch = payload["batch"]
            if not isinstance(batch, list):
                return [_bad_batch("batch", batch)]
            elements = batch
        else:
            elements = [payload]
    else:
        return [_not_object(0, payload, received_at)]
    sent: Any = container.get("sent_at") if container is not None else None
    if sent is None:
        sent = sent_at
    sent_moment = _moment(sent)  # once per request, not per event
    built: list[Built] = []
    for i, e in enumerate(elements):
        try:
            built.append(_posthog_event(i, e, sent_moment, received_at))
        except Exception as exc:  # never raise on input, whatever it is
            built.append(_unreadable(i, e, exc))
    return _judge(built, received_at, ordered=True)


def _posthog_event(
    index: int, element: Any, sent_moment: datetime | None, received_at: datetime
) -> Built:
    if not isinstance(element, dict):
        return _not_object(index, element, received_at)
    props: Any = element.get("properties")
    is_dict = isinstance(props, dict)
    if is_dict:
        props = dict(props)
        props.pop("token", None)
    user: Any = element.get("distinct_id")
    if (user is None or user == "") and is_dict and not _absent(props.get("distinct_id")):
        user = props.pop("distinct_id")
    event_time = element.get("timestamp")
    if event_time is None and type(element.get("offset")) is int:
        event_time = _offset_time(received_at, element["offset"])
        sent_moment = None
    ts, client_ts = _event_ts(event_time, sent_moment, received_at)
    name = element.get("event")
    explicit = props.pop("usersignals_type", None) if is_dict else None
    if explicit is None and isinstance(name, str) and name in POSTHOG_IDENTITY:
        if props is None:
            props = {}
        if isinstance(props, dict):  # posthog-python sends $set and $set_once at the top
            for key in _IDENTITY_TOP:
                if key in element and key not in props:
                    props[key] = element[key]
        return _identity(element.get("uuid"), user, ts, name, props, client_ts)
    return _signal(
        element.get("uuid"),
        user,
        ts,
        name,
        props,
        explicit,
        client_ts,
        session_keys=_POSTHOG_SESSION,
        context_session=None,
        platform=_posthog_platform(props),
    )


def _posthog_platform(props: Any) -> str | None:
    if not isinstance(props, dict):
        return None
    lib = props.get("$lib")
    if isinstance(lib, str) and lib in _POSTHOG_LIBS:
        return _POSTHOG_LIBS[lib] or _mobile_os(props.get("$os"))
    os_platform = _mobile_os(props.get("$os"))
    if os_platform is not None:
        return os_platform
    return "api" if props.get("$is_server") is True else None


# ---------------------------------------------------------------------------------- Segment


def map_segment(payload: Any, *, received_at: datetime, call: str | None = None) -> list[Mapped]:
    """Maps a Segment (or RudderStack) payload to contract events, one :class:`Mapped` per message.

    Args:
        payload: The decoded JSON of ``/v1/batch`` (``{batch: [...], sentAt, writeKey,
            context}``; a batch-level ``context`` is merged under each message's), or of
            ``/v1/track|identify|page|screen|group|alias``: one message.
        received_at: The collector's clock at receipt (tz-aware).
        call: For a single message, the call its endpoint names (``"track"``, ``"identify"``,
            ``"page"``, ``"screen"``, ``"group"``, ``"alias"``; the HTTP layer resolves
            analytics.js's ``t|i|p|s|g|a``); it overrides the message's ``type``. ``None`` (or
            ``"batch"``) for ``/v1/batch`` and for a message that names its own ``type``.

    Returns:
        One :class:`Mapped` per message, in order (none for an empty batch). Never raises on
        input.
    """
    batch_context: Any = None
    sent: Any = None
    if call in (None, "batch") and isinstance(payload, dict) and "batch" in payload:
        batch = payload["batch"]
        if not isinstance(batch, list):
            return [_bad_batch("batch", batch)]
        elements: list[Any] = batch
        sent = payload.get("sentAt")
        batch_context = payload.get("context")
        call = None
    elif isinstance(payload, list):
        elements = payload
        call = None
    else:
        elements = [payload]
        if call == "batch":
            call = None
    sent_moment = _moment(sent)  # once per request, not per message
    built: list[Built] = []
    for i, e in enumerate(elements):
        try:
            built.append(_segment_message(i, e, call, sent_moment, batch_context, received_at))
        except Exception as exc:  # never raise on input, whatever it is
            built.append(_unreadable(i, e, exc))
    return _judge(built, received_at, ordered=True)


def _segment_message(
    index: int,
    message: Any,
    call: str | None,
    sent_moment: datetime | None,
    batch_context: Any,
    received_at: datetime,
) -> Built:
    if not isinstance(message, dict):
        return _not_object(index, message, received_at)
    kind = call if call is not None else message.get("type")
    if kind is None:
        return _rejected(index, message, "missing_field", "Missing 'type' (the call)", "type")
    if not isinstance(kind, str) or kind not in SEGMENT_CALLS:
        reason = "unknown_type" if isinstance(kind, str) else "bad_type"
        text = f"Invalid 'type': not a Segment call (must be one of {_SEGMENT_CHOICES})"
        return _rejected(index, message, reason, text, "type")
    context = message.get("context")
    if batch_context is not None:
        context = _merged_context(batch_context, context)
    user = message.get("userId")
    if user is None or user == "":
        user = _first(user, message.get("anonymousId"))
    event_time = message.get("originalTimestamp")
    if event_time is None:
        event_time = message.get("timestamp")
    own_sent = message.get("sentAt")
    if own_sent is not None:
        sent_moment = _moment(own_sent)
    ts, client_ts = _event_ts(event_time, sent_moment, received_at)
    if kind in SEGMENT_IDENTITY:
        fields = {k: v for k, v in message.items() if k not in _SEGMENT_ENVELOPE and v is not None}
        traits = context.get("traits") if isinstance(context, dict) else None
        if "traits" not in fields and traits is not None:  # RudderStack: context.traits
            fields["traits"] = traits
        return _identity(message.get("messageId"), user, ts, kind, fields, client_ts)
    props = _copy(message.get("properties"))
    if kind == "track":
        name: Any = message.get("event")
    else:  # page, screen: the call is the name, the page's own name and category are kept
        name = kind
        if props is None:
            props = {}
        if isinstance(props, dict):
            for key in ("name", "category"):
                if message.get(key) is not None and key not in props:
                    props[key] = message[key]
    explicit = _pop_explicit(props)
    return _signal(
        message.get("messageId"),
        user,
        ts,
        name,
        props,
        explicit,
        client_ts,
        session_keys=_SEGMENT_SESSION,
        context_session=_context_value(context, "sessionId"),
        platform=_segment_platform(context, message.get("channel")),
    )


def _merged_context(batch_context: Any, context: Any) -> Any:
    if isinstance(batch_context, dict) and isinstance(context, dict):
        return {**batch_context, **context}
    return context if context is not None else batch_context


def _context_value(context: Any, key: str) -> Any:
    return context.get(key) if isinstance(context, dict) else None


def _segment_platform(context: Any, channel: Any) -> str | None:
    if not isinstance(context, dict):
        context = {}
    device, os_info, library = context.get("device"), context.get("os"), context.get("library")
    if isinstance(device, dict):
        os_platform = _mobile_os(device.get("type"))
        if os_platform is not None:
            return os_platform
    if isinstance(os_info, dict):
        os_platform = _mobile_os(os_info.get("name"))
        if os_platform is not None:
            return os_platform
    if isinstance(channel, str) and channel in _RUDDER_CHANNELS:
        return _RUDDER_CHANNELS[channel]
    lib = library.get("name") if isinstance(library, dict) else None
    if isinstance(lib, str):
        return _SEGMENT_LIBS.get(lib)
    return None


# --------------------------------------------------------------------------------- Snowplow


def map_snowplow(payload: Any, *, received_at: datetime) -> list[Mapped]:
    """Maps a Snowplow tracker-protocol payload to contract events, one :class:`Mapped` per event.

    Self-describing events (``ue_pr`` JSON, or ``ue_px`` URL-safe base64 with or without
    padding) whose schema is ``iglu:io.usersignals/<type>/jsonschema/<version>`` are that
    contract type, their data the event's fields (``event_id``, ``user_id``, ``ts`` still come
    from ``eid``, ``uid``/``duid``, ``ttm``/``dtm``). Every other event is ``custom``: another
    self-describing schema named by its schema name (``properties.schema`` the URI,
    ``properties.data`` its data), a structured event by ``se_ac`` (``se_ca``, ``se_la``,
    ``se_pr``, ``se_va`` as ``category``, ``label``, ``property``, ``value``, strings as sent),
    ``pv`` as ``page_view``, ``pp`` as ``page_ping``, ``tr``/``ti`` as ``transaction``/
    ``transaction_item``, another ``e`` by itself. Contexts (``co`` JSON or ``cx`` base64) go to
    ``properties.contexts`` (the list of self-describing entities) and give the platform of a
    mobile event (``mobile_context.osType``) and a session and user when ``sid``/``uid``/``duid``
    are absent (``client_session``). The other tracker fields (``aid``, ``tv``, ``url``...)
    stay in the properties, as the strings they are.

    Args:
        payload: The decoded JSON of ``POST /com.snowplowanalytics.snowplow/tp2``
            (``{schema, data: [...]}``), or the query dict of ``GET /i`` (one event).
        received_at: The collector's clock at receipt (tz-aware).

    Returns:
        One :class:`Mapped` per event, in order (none for an empty batch). Never raises on
        input.
    """
    if isinstance(payload, dict) and "data" in payload and "e" not in payload:
        data = payload["data"]
        if not isinstance(data, list):
            return [_bad_batch("data", data)]
        elements: list[Any] = data
    elif isinstance(payload, list):
        elements = payload
    else:
        elements = [payload]
    built: list[Built] = []
    for i, e in enumerate(elements):
        try:
            built.append(_snowplow_event(i, e, received_at))
        except Exception as exc:  # never raise on input, whatever it is
            built.append(_unreadable(i, e, exc))
    return _judge(built, received_at, ordered=False)


def _snowplow_event(index: int, element: Any, received_at: datetime) -> Built:
    if not isinstance(element, dict):
        return _not_object(index, element, received_at)
    contexts: list[Any] | None = None
    context_key = _present(element, "co", "cx")
    if context_key is not None:
        got = _self_describing(element[context_key], encoded=context_key == "cx")
        if isinstance(got, str) or not isinstance(got[1], list):
            problem = got if isinstance(got, str) else "contexts"
            return _rejected(index, element, *_sdj_problem(context_key, problem))
        contexts = got[1]
    e = element.get("e")
    unstruct: tuple[str, Any] | None = None
    ue_key = _present(element, "ue_pr", "ue_px")
    if ue_key is not None:
        got = _self_describing(element[ue_key], encoded=ue_key == "ue_px")
        if isinstance(got, str):
            return _rejected(index, element, *_sdj_problem(ue_key, got))
        inner = got[1]
        if not (isinstance(inner, dict) and isinstance(inner.get("schema"), str)):
            return _rejected(index, element, *_sdj_problem(ue_key, "event"))
        if _IGLU.fullmatch(inner["schema"]) is None:
            return _rejected(index, element, *_sdj_problem(ue_key, "schema"))
        unstruct = (inner["schema"], inner.get("data"))
    elif e == "ue":
        message = "Missing 'ue_px' or 'ue_pr' (required for a self-describing event)"
        return _rejected(index, element, "missing_field", message, "ue_px")
    session_ctx = _context_data(contexts, "client_session")
    user = _first(element.get("uid"), element.get("duid"), _context_value(session_ctx, "userId"))
    ts, client_ts = _snowplow_ts(element, received_at)
    doc: dict[str, Any] = {"event_id": element.get("eid"), "user_id": user, "ts": ts}
    props = {k: v for k, v in element.items() if k not in _SNOWPLOW_CONSUMED}
    if unstruct is not None:
        schema, data = unstruct
        vendor, name, fmt = _iglu_parts(schema)
        if vendor != VENDOR or fmt != FORMAT:
            doc["type"], doc["name"] = "custom", name
            props["schema"], props["data"] = schema, data
        elif not isinstance(data, dict):
            message = f"Invalid {ue_key!r}: the data of a usersignals event is not an object"
            return _rejected(index, element, "bad_type", message, ue_key)
        else:
            doc["type"] = name
            for key, value in data.items():  # null is absent (the Iglu schemas allow it)
                if key not in FROM_SNOWPLOW and value is not None:
                    doc[key] = value
            own = doc.pop("properties", None)
            if isinstance(own, dict):
                props.update(own)
            elif own is not None:
                doc["properties"] = own  # not an object: the contract's bad_type
    elif e == "se":
        doc["type"], doc["name"] = "custom", element.get("se_ac")
        for field, key in _SNOWPLOW_STRUCTURED:
            if element.get(field) is not None:
                props[key] = element[field]
    else:
        doc["type"] = "custom"
        doc["name"] = _SNOWPLOW_EVENTS.get(e, e) if isinstance(e, str) else e
    if "session_id" not in doc:
        session = _first(element.get("sid"), _context_value(session_ctx, "sessionId"))
        if session is not None:
            doc["session_id"] = session
    if "platform" not in doc:
        mobile_ctx = _context_data(contexts, "mobile_context")
        platform = _snowplow_platform(element.get("p"), mobile_ctx)
        if platform is not None:
            doc["platform"] = platform
    if contexts is not None:
        props["contexts"] = contexts
    if "properties" not in doc:
        _set_properties(doc, props, client_ts)
    return doc


def _present(element: Mapping[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` that ``element`` has a non-null value for."""
    for key in keys:
        if element.get(key) is not None:
            return key
    return None


def _iglu_parts(schema: str) -> tuple[str, str, str]:
    """Vendor, name and format of an Iglu URI."""
    match = _IGLU.fullmatch(schema)
    return (match.group(1), match.group(2), match.group(3)) if match else ("", schema, "")


def _snowplow_ts(element: Mapping[str, Any], received_at: datetime) -> tuple[Any, str | None]:
    true_ts = element.get("ttm")
    if true_ts is not None:  # the tracker's "true timestamp": taken as is
        return _epoch_ms(true_ts), None
    sent_moment = _moment(_epoch_ms(element.get("stm")))
    return _event_ts(_epoch_ms(element.get("dtm")), sent_moment, received_at)


def _epoch_ms(value: Any) -> Any:
    """A Snowplow time (a string of epoch milliseconds) as an integer, else verbatim."""
    if isinstance(value, str) and _EPOCH_MS.fullmatch(value):
        return int(value)
    return value


def _snowplow_platform(p: Any, mobile_ctx: Any) -> str | None:
    if not isinstance(p, str):
        return None
    if p in _SNOWPLOW_PLATFORMS:
        return _SNOWPLOW_PLATFORMS[p]
    if p in _SNOWPLOW_MOBILE:
        return _mobile_os(_context_value(mobile_ctx, "osType"))
    return None


def _self_describing(value: Any, encoded: bool) -> tuple[str, Any] | str:
    """``(schema, data)`` of a self-describing JSON string, else what is wrong with it."""
    if not isinstance(value, str):
        return "not_string"
    text: str | bytes = value
    if encoded:
        try:
            text = _b64decode(value)
        except (ValueError, binascii.Error):
            return "not_base64"
    try:
        obj = _JSON.decode(text)
    except Exception:  # not JSON, not UTF-8, or nested beyond msgspec's recursion limit
        return "not_json"
    if not isinstance(obj, dict) or not isinstance(obj.get("schema"), str) or "data" not in obj:
        return "not_sdj"
    return obj["schema"], obj["data"]


def _b64decode(value: str) -> bytes:
    """URL-safe (or standard) base64, padding optional."""
    data = value.strip().replace("-", "+").replace("_", "/")
    data += "=" * (-len(data) % 4)
    return base64.b64decode(data, validate=True)


def _sdj_problem(key: str, problem: str) -> tuple[str, str, str]:
    """The reason, message and field of an undecodable Snowplow field."""
    reason, what = {
        "not_string": ("bad_type", "not a string"),
        "not_base64": ("bad_value", "not URL-safe base64"),
        "not_json": ("not_json", "not JSON"),
        "not_sdj": ("bad_value", "not self-describing JSON ({schema, data})"),
        "contexts": ("bad_value", "its data is not an array of contexts"),
        "event": ("bad_value", "its data is not a self-describing event ({schema, data})"),
        "schema": ("bad_value", "its event's schema is not an Iglu URI"),
    }[problem]
    return reason, f"Invalid {key!r}: {what}", key


def _context_data(contexts: list[Any] | None, name: str) -> Any:
    """The data of the first context whose Iglu schema name is ``name``."""
    for entity in contexts or ():
        if isinstance(entity, dict) and isinstance(entity.get("schema"), str):
            match = _IGLU.fullmatch(entity["schema"])
            if match is not None and match.group(2) == name:
                return entity.get("data")
    return None


# ------------------------------------------------------------------------------ write keys


def payload_key(protocol: str, payload: Any) -> str | None:
    """The write key a payload carries in its body, if any (never raises).

    PostHog: ``api_key``, else ``token``, else the first event's ``properties.token``
    (posthog-js). Segment: ``writeKey``. Snowplow has none.
    """
    if protocol == "posthog":
        if isinstance(payload, dict):
            for key in ("api_key", "token"):
                if _key(payload.get(key)):
                    return str(payload[key])
            batch = payload.get("batch")
            first = batch[0] if isinstance(batch, list) and batch else payload
        elif isinstance(payload, list) and payload:
            first = payload[0]
        else:
            return None
        props = first.get("properties") if isinstance(first, dict) else None
        token = props.get("token") if isinstance(props, dict) else None
        return str(token) if _key(token) else None
    if protocol == "segment" and isinstance(payload, dict) and _key(payload.get("writeKey")):
        return str(payload["writeKey"])
    return None


def snowplow_app_ids(payload: Any) -> set[str]:
    """The app ids (``aid``) of a Snowplow payload's events, for the allow-list (never raises)."""
    if isinstance(payload, dict) and isinstance(payload.get("data"), list) and "e" not in payload:
        elements: Iterable[Any] = payload["data"]
    elif isinstance(payload, list):
        elements = payload
    else:
        elements = (payload,)
    return {e["aid"] for e in elements if isinstance(e, dict) and isinstance(e.get("aid"), str)}


def _key(value: Any) -> bool:
    return isinstance(value, str) and value != ""


# ------------------------------------------------------------------------------ shared rules


def normalise_name(name: str) -> str:
    """An event name as :data:`EVENT_NAMES` is keyed: trimmed, lower case, each run of spaces
    and dashes one ``_`` (``"Message Sent"`` -> ``"message_sent"``)."""
    return _SEPARATORS.sub("_", name.strip().lower())


_CUSTOM: tuple[str, dict[str, Any], dict[str, Any]] = ("custom", {}, {})
_NOTHING: dict[str, Any] = {}  # read only


@functools.lru_cache(maxsize=4096)
def _named(name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The :data:`EVENT_NAMES` entry of an event name (``custom`` when it has none)."""
    return EVENT_NAMES.get(normalise_name(name), _CUSTOM)


def _signal(
    event_id: Any,
    user: Any,
    ts: Any,
    name: Any,
    props: Any,
    explicit: Any,
    client_ts: str | None,
    *,
    session_keys: tuple[str, ...],
    context_session: Any,
    platform: str | None,
) -> dict[str, Any]:
    """The contract-shaped dict of a non-identity event (PostHog, Segment), in the contract's
    key order (that of :func:`~usersignals.ingest.contract.encode_event`).

    The type and ``name`` (``explicit``, else the name through :data:`EVENT_NAMES`), the
    type's fields (lifted from the properties, else its fixed or default values), then
    ``session_id``, ``model`` and ``platform`` where they have the contract's shape;
    ``platform`` is the one derived from the SDK's context unless the properties name one.
    What is lifted leaves the properties (each field is lifted by one rule only, so the order
    of the lifting does not matter).
    """
    if explicit is not None:
        etype: Any = explicit
        defaults: dict[str, Any] = _NOTHING
        fixed: dict[str, Any] = _NOTHING
    else:
        etype, defaults, fixed = _named(name) if isinstance(name, str) else _CUSTOM
    fields = TYPE_FIELDS.get(etype, ()) if isinstance(etype, str) else ()
    doc: dict[str, Any] = {"event_id": event_id, "type": etype, "user_id": user, "ts": ts}
    if isinstance(props, dict):
        session: Any = None
        for key in session_keys:  # _session_text, inline
            value = props.get(key)
            if isinstance(value, str):
                session = value
            elif type(value) is int:
                session = str(value)
            else:
                continue
            del props[key]
            break
        if session is None and context_session is not None:
            session = _session_text(context_session)
        if session is not None:
            doc["session_id"] = session
        if isinstance(props.get("model"), str):
            doc["model"] = props.pop("model")
        named = props.get("platform")
        if isinstance(named, str):
            lowered = named.lower()
            if lowered in _PLATFORMS:
                del props["platform"]
                platform = lowered
        if platform is not None:
            doc["platform"] = platform
        doc["properties"] = props  # left out below if nothing stays in it
        for field in fields:
            if field in fixed:
                doc[field] = fixed[field]
            elif props.get(field) is not None:
                doc[field] = props.pop(field)
            elif field in defaults:
                doc[field] = defaults[field]
        if client_ts is not None:
            props[CLIENT_TS] = client_ts
        elif not props:
            del doc["properties"]
    else:
        session = _session_text(context_session)
        if session is not None:
            doc["session_id"] = session
        if platform is not None:
            doc["platform"] = platform
        if client_ts is not None and props is None:
            props = {CLIENT_TS: client_ts}
        if props is not None:
            doc["properties"] = props  # not an object: the contract's bad_type
        for field in fields:
            if field in fixed:
                doc[field] = fixed[field]
            elif field in defaults:
                doc[field] = defaults[field]
    if name is not None and etype in ("custom", "identify"):
        doc["name"] = name
    return doc


def _identity(
    event_id: Any, user: Any, ts: Any, name: str, fields: Any, client_ts: str | None
) -> dict[str, Any]:
    """The contract-shaped dict of an identity call, in the contract's key order."""
    doc: dict[str, Any] = {"event_id": event_id, "type": "identify", "user_id": user, "ts": ts}
    _set_properties(doc, fields, client_ts)
    doc["name"] = name
    return doc


def _session_text(value: Any) -> str | None:
    """A session id as the contract takes it: a string, or an integer's decimal digits."""
    if isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)
    return None


def _set_properties(doc: dict[str, Any], props: Any, client_ts: str | None) -> None:
    if client_ts is not None:
        if props is None:
            props = {}
        if isinstance(props, dict):
            props[CLIENT_TS] = client_ts
    if props is not None and props != {}:
        doc["properties"] = props  # not an object: the contract's bad_type


def _pop_explicit(props: Any) -> Any:
    return props.pop("usersignals_type", None) if isinstance(props, dict) else None


def _mobile_os(value: Any) -> str | None:
    return _MOBILE_OS.get(value.lower()) if isinstance(value, str) else None


def _first(*values: Any) -> Any:
    """The first value neither ``None`` nor ``""``; else ``""`` if one was; else ``None``."""
    for value in values:
        if not _absent(value):
            return value
    return "" if "" in values else None


def _absent(value: Any) -> bool:
    return value is None or value == ""


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


# ------------------------------------------------------------------------------------- time


def _event_ts(
    event_time: Any, sent_moment: datetime | None, received_at: datetime
) -> tuple[Any, str | None]:
    """``ts`` for the built event and the client's own time to keep (when corrected), given
    the send time as :func:`_moment` reads it (``None``: none, or unreadable)."""
    if event_time is None:
        return _text(received_at), None
    if sent_moment is None:
        return event_time, None
    event = _moment(event_time)
    if event is None:
        return event_time, None
    elapsed = sent_moment - event
    try:
        corrected = received_at - elapsed if elapsed > _NO_TIME else received_at
        if corrected.tzinfo is not UTC:
            corrected = to_utc(corrected)
        return _ENCODER.encode(corrected)[1:-1].decode(), _ENCODER.encode(event)[1:-1].decode()
    except (OverflowError, ValueError, TimestampError):
        return event_time, None


def _offset_time(received_at: datetime, offset_ms: int) -> Any:
    """PostHog's legacy ``offset``: milliseconds between the event and its sending."""
    try:
        return _text(received_at - timedelta(milliseconds=max(offset_ms, 0)))
    except (OverflowError, ValueError, TimestampError):
        return _text(received_at)


def _text(moment: datetime) -> str:
    """A moment as RFC 3339 in UTC (``Z``; the fraction only when there is one)."""
    if moment.tzinfo is not UTC:
        moment = to_utc(moment)
    return _ENCODER.encode(moment)[1:-1].decode()


def _moment(value: Any) -> datetime | None:
    """An RFC 3339 string, integer epoch milliseconds or tz-aware datetime, as UTC; else None."""
    try:
        if isinstance(value, str):  # parse_rfc3339, inline
            moment = msgspec.convert(value, datetime)
            if moment.tzinfo is None:
                return None
            return moment if moment.tzinfo is UTC else to_utc(moment)
        if type(value) is int:
            return parse_epoch_ms(value)
        if isinstance(value, datetime) and value.utcoffset() is not None:
            return to_utc(value)
    except (TimestampError, OverflowError, ValueError, msgspec.ValidationError):
        return None
    return None


# ------------------------------------------------------------------------------- verdicts


Built = Mapped | dict[str, Any]
"""What mapping one element gives: the contract-shaped dict to judge, or a finished verdict."""


def _judge(built: list[Built], received_at: datetime, *, ordered: bool) -> list[Mapped]:
    """The contract's verdict on every built dict; ``built[i]`` is the element at index ``i``.

    The dicts are encoded once and read as batches by
    :func:`~usersignals.ingest.contract.decode_record` (its fast path, in C, when all are
    valid), each batch within :data:`_JUDGE_BYTES`; an accepted event keeps the bytes it was
    read from as :attr:`Mapped.data` when they are its canonical JSON (``ordered``: the dicts
    are in the contract's key order, see :func:`_canonical`). An element the batch does not
    accept is judged again alone, as the dict it was built as (:func:`_judge_alone`), so that
    a rejection, its message and its ``raw`` are those of that dict whatever the batch.
    """
    out: list[Mapped | None] = [None] * len(built)
    pending: list[tuple[int, dict[str, Any], bytes]] = []
    size = 2
    for index, item in enumerate(built):
        if isinstance(item, Mapped):
            out[index] = item
            continue
        try:
            data = _ENCODER.encode(item)
        except Exception:  # a value JSON cannot carry: the precise path words it
            out[index] = _judge_alone(index, item, received_at, ordered)
            continue
        if len(data) > contract.MAX_EVENT_BYTES:
            out[index] = _judge_alone(index, item, received_at, ordered)
            continue
        if len(pending) == contract.MAX_BATCH or size + len(data) > _JUDGE_BYTES:
            _judge_batch(pending, out, received_at, ordered)
            pending, size = [], 2
        pending.append((index, item, data))
        size += len(data) + 1
    _judge_batch(pending, out, received_at, ordered)
    return [m for m in out if m is not None]


def _judge_batch(
    pending: list[tuple[int, dict[str, Any], bytes]],
    out: list[Mapped | None],
    received_at: datetime,
    ordered: bool,
) -> None:
    if not pending:
        return
    record = b"[" + b",".join([data for _, _, data in pending]) + b"]"
    events, rejections = contract.decode_record(record, now=received_at)
    if not rejections:
        for (index, doc, data), event in zip(pending, events, strict=True):
            if ordered and len(data) <= _CHECK_STAMPED:  # _accepted, inline: nearly every event
                canonical = data if _canonical(doc) else b""
                out[index] = Mapped(index, doc, event, None, event.user_id, canonical)
            else:
                out[index] = _accepted(index, doc, event, data, received_at, ordered)
        return
    if any(r.index is None for r in rejections):  # a whole-record problem: one by one
        for index, doc, _ in pending:
            out[index] = _judge_alone(index, doc, received_at, ordered)
        return
    bad = {r.index for r in rejections}
    found = iter(events)
    for at, (index, doc, data) in enumerate(pending):
        if at in bad:
            out[index] = _judge_alone(index, doc, received_at, ordered)
        else:
            out[index] = _accepted(index, doc, next(found), data, received_at, ordered)


def _accepted(
    index: int,
    doc: dict[str, Any],
    event: contract.Event,
    data: bytes,
    received_at: datetime,
    ordered: bool,
) -> Mapped:
    """An element the contract accepted, unless its JSON stamped with ``received_at`` (as
    the collector sends it) would be over the event size limit."""
    canonical = data if ordered and _canonical(doc) else b""
    if len(data) > _CHECK_STAMPED:
        if canonical:
            size = len(canonical) - 1 + len(stamp(received_at))
        else:
            stamped = msgspec.structs.replace(event, received_at=received_at)
            size = len(contract.encode_event(stamped))
        if size > contract.MAX_EVENT_BYTES:
            doc = _as_built(doc) if ordered else doc
            return _verdict(index, doc, _too_large(size), _ENCODER.encode(doc), received_at)
    return Mapped(
        index=index, doc=doc, event=event, rejection=None, user_id=event.user_id, data=canonical
    )


def _canonical(doc: dict[str, Any]) -> bool:
    """Whether the JSON of an accepted dict built in the contract's key order is
    :func:`~usersignals.ingest.contract.encode_event` of its event: its ``ts`` is in the
    canonical form, ``YYYY-MM-DDThh:mm:ss.ffffffZ`` (a string the contract accepted, so its
    length and those three characters tell: its grammar has digits everywhere else), and it
    has no integer ``duration_s`` (the event holds a float). Its other values are JSON
    already, which decoding and encoding again leave as they are."""
    ts = doc["ts"]
    duration = doc.get("duration_s")
    return (
        type(ts) is str
        and len(ts) == 27
        and ts[26] == "Z"
        and ts[19] == "."
        and ts[10] == "T"
        and (duration is None or type(duration) is float)
    )


def _judge_alone(index: int, doc: Any, received_at: datetime, ordered: bool) -> Mapped:
    """The verdict on one built dict, judged as the batch of one it makes (``ordered``: put
    back in the key order it is documented and dead-lettered in first, :func:`_as_built`)."""
    if ordered:
        doc = _as_built(doc)
    try:
        data = _ENCODER.encode(doc)
    except Exception:  # a value JSON cannot carry: the precise path words it
        return _verdict(index, doc, contract.validate(doc, now=received_at), b"", received_at)
    if len(data) > contract.MAX_EVENT_BYTES:
        return _verdict(index, doc, _too_large(len(data)), data, received_at)
    events, rejections = contract.decode_record(b"[" + data + b"]", now=received_at)
    if rejections:
        result: contract.Event | contract.Rejection = rejections[0]
        if rejections[0].index is None:
            result = msgspec.structs.replace(rejections[0], index=0)
    else:
        result = events[0]
    return _verdict(index, doc, result, data, received_at)


def _as_built(doc: dict[str, Any]) -> dict[str, Any]:
    """A PostHog or Segment dict with its keys in the order :data:`_AS_BUILT`."""
    built = {key: doc[key] for key in _AS_BUILT if key in doc}
    return built if len(built) == len(doc) else doc


def stamp(received_at: datetime) -> bytes:
    """What turns the JSON of an event without ``received_at`` (:attr:`Mapped.data`) into that
    of the event stamped with it: ``data[:-1] + stamp(received_at)`` is
    :func:`~usersignals.ingest.contract.encode_event` of the stamped event."""
    return b',"received_at":' + _ENCODER.encode(format_ts(received_at)) + b"}"


def _verdict(
    index: int,
    doc: Any,
    result: contract.Event | contract.Rejection,
    raw: bytes,
    received_at: datetime,
) -> Mapped:
    user_id = doc.get("user_id") if isinstance(doc, dict) else None
    user = user_id if isinstance(user_id, str) else ""
    if isinstance(result, contract.Event):
        if len(raw) > contract.MAX_EVENT_BYTES - _SIZE_MARGIN:
            stamped = msgspec.structs.replace(result, received_at=received_at)
            size = len(contract.encode_event(stamped))
            if size > contract.MAX_EVENT_BYTES:
                return _verdict(index, doc, _too_large(size), raw, received_at)
        return Mapped(index=index, doc=doc, event=result, rejection=None, user_id=user)
    rejection = msgspec.structs.replace(result, index=index, raw=raw)
    return Mapped(index=index, doc=doc, event=None, rejection=rejection, user_id=user)


def _not_object(index: int, element: Any, received_at: datetime) -> Mapped:
    """The contract's ``not_object`` for an element that is not a JSON object."""
    return _verdict(
        index, element, contract.validate(element, now=received_at), _raw(element), received_at
    )


def _too_large(size: int) -> contract.Rejection:
    message = f"Event of {size} bytes (at most {contract.MAX_EVENT_BYTES})"
    return contract.Rejection(reason="too_large", message=message)


def _rejected(index: int, element: Any, reason: str, message: str, field: str | None) -> Mapped:
    """A rejection worded here, for what the contract cannot see (the element is the doc)."""
    rejection = contract.Rejection(
        reason=reason, message=message, field=field, index=index, raw=_raw(element)
    )
    user = _first(
        *(element.get(k) for k in ("uid", "duid", "userId", "anonymousId", "distinct_id"))
    )
    return Mapped(
        index=index,
        doc=element,
        event=None,
        rejection=rejection,
        user_id=user if isinstance(user, str) else "",
    )


def _bad_batch(key: str, value: Any) -> Mapped:
    rejection = contract.Rejection(
        reason="bad_batch", message=f"Invalid {key!r}: not an array", index=0, raw=_raw(value)
    )
    return Mapped(index=0, doc=value, event=None, rejection=rejection, user_id="")


def _unreadable(index: int, element: Any, exc: Exception) -> Mapped:
    """The rejection of an element whose mapping failed in a way not foreseen."""
    message = f"Unreadable event ({type(exc).__name__})"
    rejection = contract.Rejection(
        reason="bad_value", message=message, index=index, raw=_raw(element)
    )
    return Mapped(index=index, doc=element, event=None, rejection=rejection, user_id="")


def _raw(value: Any) -> bytes:
    try:
        return _ENCODER.encode(value)
    except Exception:  # not JSON-encodable, or nested beyond msgspec's limit
        return b""
