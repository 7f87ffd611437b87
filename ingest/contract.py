"""The event contract (``events.md`` v1), defined once for the SDK, the collector and the workers.

Bad input is normal traffic, so a broken event is a value, a :class:`Rejection` with a stable
reason code, never an exception: :func:`decode_record` and :func:`validate` never raise on input.

:func:`decode_record` first tries a fast path: msgspec decodes the whole record straight into
:class:`Event` objects (:mod:`usersignals.ingest.event`), whose field annotations carry the
contract's constraints. When that fails, each element is tried the same way, and only the
elements that fail are re-read by the precise path, which names each problem
(:func:`validate`).

The contract has four forms: the msgspec types of the fast path (:mod:`~usersignals.ingest.event`),
the precise checks with their messages (:mod:`~usersignals.ingest.rules`), the SDK's check at
the call (:func:`~usersignals.ingest.batching.encode_call`) and the JSON Schema
(:mod:`~usersignals.ingest.schema`). They are **held equal by one property test over one
corpus** (``tests/ingest/test_contract_agreement.py``: the same generated events, under several
lower bounds of ``ts``, through all four), and what they share as data (field order, lengths,
choices, per-type requirements, ratings, the token range, the nesting depth, the bounds of
``ts``) comes from the tables of :mod:`~usersignals.ingest.rules` and
:mod:`~usersignals.ingest.timestamps`, so that a limit is changed in one place. Why not one
declarative definition that generates all four: each form is the code it is for a reason
(msgspec checks in C while it decodes, which is the workers' throughput; the precise path
exists to word a message; a JSON Schema cannot state some rules at all), so a generator would
be an interpreter slower than the fast path, and the forms would still differ in what the
definition cannot say (RFC 3339 by msgspec's parser or by a regular expression, the order in
which problems are found, Unicode and number edge cases). The property test judges the
behaviour itself, including those parts; the tables keep it passing.

Decisions the spec leaves open, taken here:

- ``null`` for a field means the field is absent (a required field that is ``null`` is missing).
- A type-specific field on an event of another type (``rating`` on a ``message``) is checked
  by its own rule and kept; only the fields its own type requires are required.
- ``model_a``/``model_b`` are 1-128 characters like ``model``; ``message_id`` is 1-256.
- ``tokens`` fits a signed 64-bit integer; ``duration_s`` is a finite number (ints allowed).
- Unknown top-level fields are kept verbatim in :attr:`Event.extra` and may nest as deep as
  ``properties`` (8 levels inside the value).
- A record not starting with ``[`` is one event, so more than 32 KiB of it is ``too_large``.
- A record nested deeper than :data:`MAX_READ_DEPTH` levels (outside strings) is not read at
  all: one ``too_deep`` rejection. Within that, each too-deep element is rejected alone.
- :func:`validate` on a Python dict also rejects what JSON cannot carry (non-string keys,
  tuples and other non-JSON values, NaN, lone surrogates) and takes tz-aware ``datetime``
  objects for ``ts`` and ``received_at``. Its rejections carry ``raw=b""``.
- Timestamps: see :mod:`usersignals.ingest.timestamps` (rounded to the microsecond). ``ts``
  lies between the lower bound in force (:func:`min_ts`, ``USERSIGNALS_MIN_TS``, default
  2000-01-01T00:00:00Z; a ``min_ts`` argument overrides it) and 24 h after receipt, both
  included. An integer outside that range that would be inside it as epoch seconds
  (``ts * 1000``), microseconds (``ts // 1000``) or nanoseconds (``ts // 10**6``) is rejected
  with the hint ``looks like <unit>; send milliseconds``; any other with the bound it passes.
  ``received_at`` (the collector's own clock) has no such bounds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import msgspec

from usersignals.ingest.event import (
    FIELDS,
    MAX_BATCH,
    MAX_EVENT_BYTES,
    MAX_READ_DEPTH,
    MAX_RECORD_BYTES,
    REASONS,
    Event,
    EventError,
    Rejection,
)
from usersignals.ingest.partitioner import partition_for
from usersignals.ingest.rules import (
    CHOICES,
    EVENT_TYPES,
    MAX_FUTURE,
    MAX_PROPERTIES_DEPTH,
    MAX_TOKENS,
    REQUIRED_BY_TYPE,
    TEXT_LIMITS,
    Rejected,
    check_event,
)
from usersignals.ingest.rules import RATINGS as RATINGS
from usersignals.ingest.timestamps import (
    TimestampError,
    format_ts,
    min_ts,
    parse_epoch_ms,
    set_min_ts,
    to_utc,
)

__all__ = [
    "CHOICES",
    "EVENT_TYPES",
    "FIELDS",
    "MAX_BATCH",
    "MAX_EVENT_BYTES",
    "MAX_FUTURE",
    "MAX_PROPERTIES_DEPTH",
    "MAX_READ_DEPTH",
    "MAX_RECORD_BYTES",
    "MAX_TOKENS",
    "REASONS",
    "REQUIRED_BY_TYPE",
    "TEXT_LIMITS",
    "Event",
    "EventError",
    "Rejection",
    "decode_record",
    "encode_batch",
    "encode_event",
    "json_schema",
    "min_ts",
    "partition_for",
    "set_min_ts",
    "validate",
]

_KNOWN = frozenset(FIELDS)
_BATCH_DECODER = msgspec.json.Decoder(list[Event])
_EVENT_DECODER = msgspec.json.Decoder(Event)
_RAW_LIST_DECODER = msgspec.json.Decoder(list[msgspec.Raw])
_ANY_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


# ---------------------------------------------------------------------------------- decoding


def decode_record(
    value: bytes | None, *, now: datetime | None = None, min_ts: datetime | None = None
) -> tuple[list[Event], list[Rejection]]:
    """Decodes one Kafka record value: one event object, or a JSON array batch of them.

    Args:
        value: The record value as received.
        now: The moment of receipt, for the 24 h future limit of ``ts`` (default: the clock).
        min_ts: The earliest ``ts`` accepted, tz-aware (default: :func:`min_ts`, the
            setting ``USERSIGNALS_MIN_TS``).

    Returns:
        The valid events in batch order, and one rejection per bad element (or a single one
        for a record that cannot be read at all). Never raises on input.

    Raises:
        ValueError: ``min_ts`` is naive.
    """
    bounds = _bounds(now or datetime.now(UTC), min_ts)
    try:
        fast = _decode_fast(value, bounds)
        if fast is not None:
            return fast, []
        return _decode_precise(value, bounds, fast_elements=True)
    except Exception as exc:  # never raise on input, whatever it is
        raw = bytes(value) if isinstance(value, bytes | bytearray | memoryview) else b""
        message = f"Unreadable record ({type(exc).__name__})"
        return [], [Rejection(reason="not_json", message=message, raw=raw)]


_Bounds = tuple[datetime, datetime, datetime]
"""The moment of receipt, the earliest and the latest ``ts`` accepted (UTC)."""


def _bounds(now: datetime, low: datetime | None) -> _Bounds:
    if low is None:
        low = min_ts()
    elif low.tzinfo is not UTC:
        if low.utcoffset() is None:
            raise ValueError(f"min_ts must be tz-aware: {low!r}")
        low = low.astimezone(UTC)
    return now, low, now + MAX_FUTURE


def _decode_fast(value: bytes | None, bounds: _Bounds) -> list[Event] | None:
    """All events of a record that is wholly valid, else ``None``."""
    if not value or len(value) > MAX_RECORD_BYTES:
        return None
    try:
        if not _is_batch(value):
            if len(value) > MAX_EVENT_BYTES:
                return None
            events = [_EVENT_DECODER.decode(value)]
        else:
            if len(value) > MAX_EVENT_BYTES and any(
                len(raw) > MAX_EVENT_BYTES for raw in _RAW_LIST_DECODER.decode(value)
            ):
                return None
            events = _BATCH_DECODER.decode(value)
            if not 1 <= len(events) <= MAX_BATCH:
                return None
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    _, low, high = bounds
    for e in events:
        if _checked(e, low, high) is None:
            return None
    return events


def _checked(e: Event, low: datetime, high: datetime) -> Event | None:
    """A freshly decoded ``e``, its times made UTC in place, if msgspec's decoding left
    nothing for the precise path to say about it, else ``None`` (the rules msgspec does not
    check while decoding)."""
    if e.extra is not None:  # "extra" itself is an unknown field
        return None
    for name in REQUIRED_BY_TYPE[e.type]:
        if getattr(e, name) is None:
            return None
    if e.model_a is not None and e.model_a == e.model_b:
        return None
    ts = cast("datetime | int", e.ts)  # see Event.ts
    received = e.received_at
    try:
        if isinstance(ts, int):  # epoch milliseconds
            ts = parse_epoch_ms(ts)
        elif ts.tzinfo is not UTC:
            ts = to_utc(ts)
        if received is not None and received.tzinfo is not UTC:
            msgspec.structs.force_setattr(e, "received_at", to_utc(received))
    except TimestampError:
        return None
    if ts is not e.ts:
        msgspec.structs.force_setattr(e, "ts", ts)
    return e if low <= ts <= high else None


def _decode_precise(
    value: bytes | None, bounds: _Bounds, *, fast_elements: bool = False
) -> tuple[list[Event], list[Rejection]]:
    """Every element of a record checked on its own, with a rejection per bad one.

    With ``fast_elements``, each element of a batch is first decoded as :func:`_decode_fast`
    decodes a whole record, and only an element that fails that goes through
    :func:`validate`: the result is the same, and a batch with a bad element costs about
    what a valid one does. Only the failing elements are scanned for nesting (see
    :func:`_too_deep`).
    """
    raw = bytes(value) if value else b""
    problem = _record_problem(raw)
    if problem is not None:
        return [], [Rejection(reason=problem[0], message=problem[1], raw=raw)]
    elements: list[msgspec.Raw] | None = None
    decoded: list[Event | None] = []
    if fast_elements and _is_batch(raw):
        try:
            elements = _RAW_LIST_DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            elements = None
        if elements and len(elements) <= MAX_BATCH:
            _, low, high = bounds
            decoded = [_element_fast(element, low, high) for element in elements]
            if None not in decoded:
                return cast(list[Event], decoded), []
    if _too_deep(raw, elements, decoded):
        message = f"Record nested deeper than {MAX_READ_DEPTH} levels"
        return [], [Rejection(reason="too_deep", message=message, raw=raw)]
    if not _is_batch(raw):
        return _decode_element(raw, None, bounds)
    if elements is None:
        try:
            elements = _RAW_LIST_DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return [], [Rejection(reason="not_json", message=f"Not JSON: {exc}", raw=raw)]
    if not 1 <= len(elements) <= MAX_BATCH:
        if elements:
            message = f"Batch of {len(elements)} events (at most {MAX_BATCH})"
        else:
            message = f"Empty batch (a batch holds 1 to {MAX_BATCH} events)"
        return [], [Rejection(reason="bad_batch", message=message, raw=raw)]
    events: list[Event] = []
    rejections: list[Rejection] = []
    for index, element in enumerate(elements):
        event = decoded[index] if decoded else None
        if event is not None:
            events.append(event)
            continue
        got, rejected = _decode_element(bytes(element), index, bounds)
        events += got
        rejections += rejected
    return events, rejections


def _too_deep(raw: bytes, elements: list[msgspec.Raw] | None, decoded: list[Event | None]) -> bool:
    """Whether the record nests deeper than :data:`MAX_READ_DEPTH`, scanning only what is
    needed: an element that decoded as an :class:`Event` is a few levels deep at most."""
    if elements is None or not decoded:
        return _nesting_exceeds(raw, MAX_READ_DEPTH)
    return any(
        _nesting_exceeds(bytes(element), MAX_READ_DEPTH - 1)  # inside the batch's brackets
        for element, event in zip(elements, decoded, strict=True)
        if event is None
    )


def _element_fast(element: msgspec.Raw, low: datetime, high: datetime) -> Event | None:
    """The event of one batch element if msgspec decodes it as :func:`_decode_fast` would,
    else ``None``."""
    if len(element) > MAX_EVENT_BYTES:
        return None
    try:
        return _checked(_EVENT_DECODER.decode(element), low, high)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def _record_problem(raw: bytes) -> tuple[str, str] | None:
    """Why a whole record cannot be read, found without parsing it (nesting aside), if any."""
    if not raw:
        return "empty", "Empty record"
    if len(raw) > MAX_RECORD_BYTES:
        return "too_large", f"Record of {len(raw)} bytes (at most {MAX_RECORD_BYTES})"
    if not _is_batch(raw) and len(raw) > MAX_EVENT_BYTES:
        return "too_large", f"Event of {len(raw)} bytes (at most {MAX_EVENT_BYTES})"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "not_utf8", f"Not UTF-8: {exc.reason} at byte {exc.start}"
    return None


def _decode_element(
    raw: bytes, index: int | None, bounds: _Bounds
) -> tuple[list[Event], list[Rejection]]:
    if len(raw) > MAX_EVENT_BYTES:
        message = f"Event of {len(raw)} bytes (at most {MAX_EVENT_BYTES})"
        return [], [Rejection(reason="too_large", message=message, index=index, raw=raw)]
    try:
        obj = _ANY_DECODER.decode(raw)
    except RecursionError:
        message = f"Record nested deeper than {MAX_READ_DEPTH} levels"
        return [], [Rejection(reason="too_deep", message=message, index=index, raw=raw)]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        message = f"Not JSON: {exc}"
        return [], [Rejection(reason="not_json", message=message, index=index, raw=raw)]
    result = _validate(obj, bounds)
    if isinstance(result, Rejection):
        return [], [msgspec.structs.replace(result, index=index, raw=raw)]
    return [result], []


def _is_batch(raw: bytes) -> bool:
    return raw.lstrip(b" \t\r\n")[:1] == b"["


def _nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit`` (balanced or not)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for c in _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS):
        if c == 91 or c == 123:  # '[' or '{'
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


# -------------------------------------------------------------------------------- validation


def validate(
    obj: Mapping[str, Any], *, now: datetime | None = None, min_ts: datetime | None = None
) -> Event | Rejection:
    """Checks one parsed event against the contract.

    Args:
        obj: The event as parsed JSON (a dict); anything else is a ``not_object`` rejection.
        now: The moment of receipt, for the 24 h future limit of ``ts`` (default: the clock).
        min_ts: The earliest ``ts`` accepted, tz-aware (default: :func:`min_ts`).

    Returns:
        The normalised :class:`Event`, or a :class:`Rejection` (``index=None``, ``raw=b""``).
        Never raises on input.

    Raises:
        ValueError: ``min_ts`` is naive.
    """
    return _validate(obj, _bounds(now or datetime.now(UTC), min_ts))


def _validate(obj: Any, bounds: _Bounds) -> Event | Rejection:
    try:
        return Event(**check_event(obj, bounds[0], FIELDS, _KNOWN, bounds[1]))
    except Rejected as exc:
        return Rejection(reason=exc.reason, message=exc.message, field=exc.field)
    except Exception as exc:  # never raise on input, whatever it is
        return Rejection(reason="bad_value", message=f"Unreadable event ({type(exc).__name__})")


# ---------------------------------------------------------------------------------- encoding


def encode_event(event: Event) -> bytes:
    """The canonical wire JSON of one event.

    Contract fields in declaration order with ``None`` ones left out, times as RFC 3339 UTC
    with six fractional digits and ``Z``, then the fields of ``extra`` (except any named like
    a contract field). ``decode_record(encode_event(e)) == ([e], [])`` for every valid event.
    """
    return _ENCODER.encode(_wire(event))


def encode_batch(events: Sequence[Event]) -> bytes:
    """A JSON array of :func:`encode_event` objects: one Kafka record value."""
    return _ENCODER.encode([_wire(e) for e in events])


def _wire(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(event, name)
        if value is not None:
            out[name] = format_ts(value) if isinstance(value, datetime) else value
    if event.extra:
        for key, value in event.extra.items():
            if key not in _KNOWN:
                out[key] = value
    return out


def json_schema(min_ts: datetime | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one event, for client teams (``usersignals schema``).

    Args:
        min_ts: The lower bound of ``ts`` it states (default: :func:`min_ts`).
    """
    from usersignals.ingest.schema import build_schema

    return build_schema(min_ts)
