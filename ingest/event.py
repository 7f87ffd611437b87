"""An event and a rejection as values: the types of the contract (``events.md`` v1).

:class:`Event` is a msgspec struct whose field annotations carry the contract's constraints,
so msgspec checks most of them while decoding (the fast path of
:func:`~usersignals.ingest.contract.decode_record`). The annotations are built from the
tables of :mod:`usersignals.ingest.rules` (lengths, choices, ratings, the nesting depth), the
same tables the precise path words its messages from; ``tests/ingest/test_contract_agreement.py``
holds the paths equal on what the tables cannot say.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from usersignals.broker import MAX_MESSAGE_BYTES
from usersignals.errors import EventError
from usersignals.ingest.rules import (
    CHOICES,
    EVENT_TYPES,
    MAX_PROPERTIES_DEPTH,
    MAX_TOKENS,
    RATINGS,
    TEXT_LIMITS,
)

__all__ = [
    "DEAD_PREFIX_BYTES",
    "DEAD_TEXT_BYTES",
    "FIELDS",
    "MAX_BATCH",
    "MAX_EVENT_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_READ_DEPTH",
    "MAX_RECORD_BYTES",
    "REASONS",
    "Event",
    "EventError",
    "Rejection",
    "dead_copy",
    "event_indexes",
    "is_prefix",
]

MAX_EVENT_BYTES = 32 * 1024
MAX_RECORD_BYTES = 1 << 20
MAX_BATCH = 1000
MAX_READ_DEPTH = 64
"""Nesting (outside strings) beyond which a record is not read at all."""
DEAD_PREFIX_BYTES = 4096
"""Bytes of an input over :data:`MAX_RECORD_BYTES` that its dead letter keeps."""
DEAD_TEXT_BYTES = 1024
"""UTF-8 bytes a dead letter keeps of a rejection's ``message`` and of its ``field``."""
# MAX_MESSAGE_BYTES (from usersignals.broker, the layer that creates the topics): the largest
# Kafka record the worker sends and the topics take. A dead letter or forward is at most
# MAX_RECORD_BYTES of value plus a few KiB of headers, which it leaves room for.

REASONS = (
    "empty", "too_large", "not_utf8", "too_deep", "not_json", "bad_batch", "not_object",
    "missing_field", "bad_type", "bad_value", "bad_timestamp", "unknown_type",
)  # fmt: skip


# Constrained field types, from the rules' tables: msgspec checks these while decoding (the
# fast path); the precise path (rules.check_event) enforces the same tables with messages.
# Statically the choice fields are str, rating an int, properties a dict and ts a datetime;
# at run time msgspec decodes the choices and ratings as Literal values (a hash lookup in C),
# properties as JSON nested at most MAX_PROPERTIES_DEPTH levels, and ts also as epoch
# milliseconds, which the contract's decoding turns into a UTC datetime (and checks against
# its bounds) before an Event leaves it.
_Moment = Annotated[datetime, msgspec.Meta(tz=True)]


def _text(name: str) -> Any:
    low, high = TEXT_LIMITS[name]
    return Annotated[str, msgspec.Meta(min_length=low, max_length=high)]


def _json(levels: int) -> Any:
    """Any JSON value with at most ``levels`` levels of arrays/objects."""
    value: Any = None | bool | int | float | str
    for _ in range(levels):
        value = None | bool | int | float | str | list[value] | dict[str, value]
    return value


if TYPE_CHECKING:
    _Type = str
    _Platform = str
    _Role = str
    _Winner = str
    _Category = str
    _Severity = str
    _Source = str
    _Ts = datetime
    _EventId = str
    _UserId = str
    _SessionId = str
    _Model = str
    _ModelA = str
    _ModelB = str
    _MessageId = str
    _Name = str
    _Rating = int
    _Properties = dict[str, Any]
else:
    _Type = Literal[EVENT_TYPES]
    _Platform = Literal[CHOICES["platform"]]
    _Role = Literal[CHOICES["role"]]
    _Winner = Literal[CHOICES["winner"]]
    _Category = Literal[CHOICES["category"]]
    _Severity = Literal[CHOICES["severity"]]
    _Source = Literal[CHOICES["source"]]
    _Ts = _Moment | int
    _EventId = _text("event_id")
    _UserId = _text("user_id")
    _SessionId = _text("session_id")
    _Model = _text("model")
    _ModelA = _text("model_a")
    _ModelB = _text("model_b")
    _MessageId = _text("message_id")
    _Name = _text("name")
    _Rating = Literal[RATINGS]
    # the object itself plus MAX_PROPERTIES_DEPTH levels inside
    _Properties = dict[str, _json(MAX_PROPERTIES_DEPTH)]
_Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
_Duration = Annotated[float, msgspec.Meta(ge=0.0, le=1.7976931348623157e308)]


class Event(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One valid event, normalised: ``ts`` and ``received_at`` in UTC, microsecond precision.

    Flat: every type-specific field is optional here; :func:`validate` enforces which ones
    each type requires. ``extra`` holds unknown top-level fields verbatim. Build events from
    input with :func:`validate` or :func:`decode_record`; the constructor checks nothing.
    """

    event_id: _EventId
    type: _Type
    user_id: _UserId
    ts: _Ts
    session_id: _SessionId | None = None
    model: _Model | None = None
    platform: _Platform | None = None
    properties: _Properties | None = None
    role: _Role | None = None
    tokens: _Tokens | None = None
    message_id: _MessageId | None = None
    rating: _Rating | None = None
    model_a: _ModelA | None = None
    model_b: _ModelB | None = None
    winner: _Winner | None = None
    category: _Category | None = None
    severity: _Severity | None = None
    source: _Source | None = None
    duration_s: _Duration | None = None
    name: _Name | None = None
    received_at: _Moment | None = None
    extra: dict[str, Any] | None = None


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """Why some input is not an event: a stable ``reason`` code and a human ``message``.

    ``index`` is the position in a batch (``None`` when the whole record is rejected) and
    ``raw`` the rejected bytes: the element's own JSON bytes, or the whole record.
    """

    reason: str
    message: str
    field: str | None = None
    index: int | None = None
    raw: bytes = b""


FIELDS: tuple[str, ...] = tuple(f for f in Event.__struct_fields__ if f != "extra")


def dead_copy(rejection: Rejection) -> tuple[Rejection, str]:
    """The rejection as it is dead-lettered, in the dead-letter topic and the warehouse alike,
    and the SHA-256 (hex) of its whole input.

    ``message`` and ``field`` are cut to :data:`DEAD_TEXT_BYTES`. An input over
    :data:`MAX_RECORD_BYTES` (it was never read) keeps only its first :data:`DEAD_PREFIX_BYTES`
    bytes, and its message says so and names the hash, so that every dead letter fits in a
    Kafka record of :data:`MAX_MESSAGE_BYTES` and the input can still be found in the topic.
    """
    raw = rejection.raw
    digest = hashlib.sha256(raw).hexdigest()
    message = _cut(rejection.message)
    field = _cut(rejection.field) if rejection.field is not None else None
    if len(raw) > MAX_RECORD_BYTES:
        message = _cut(message, DEAD_TEXT_BYTES - 100)
        message += f"; first {DEAD_PREFIX_BYTES} bytes kept, sha256 {digest}"
        raw = raw[:DEAD_PREFIX_BYTES]
    if raw is rejection.raw and message == rejection.message and field == rejection.field:
        return rejection, digest
    return msgspec.structs.replace(rejection, message=message, field=field, raw=raw), digest


def is_prefix(message: str) -> bool:
    """Whether a dead letter's ``message`` says it kept only the first bytes of its input."""
    return message.endswith(f"; first {DEAD_PREFIX_BYTES} bytes kept, sha256 ", 0, -64)


def _cut(text: str, limit: int = DEAD_TEXT_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (lone surrogates counted escaped),
    whole characters only."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


def event_indexes(n_events: int, rejections: Sequence[Rejection]) -> list[int]:
    """Positions in the record of the valid events, given the rejected elements' positions.

    Every bad element of a readable batch is one rejection carrying its index, so the valid
    events sit at the positions no rejection names, in order.
    """
    bad = {r.index for r in rejections if r.index is not None}
    out: list[int] = []
    i = 0
    while len(out) < n_events:
        if i not in bad:
            out.append(i)
        i += 1
    return out
