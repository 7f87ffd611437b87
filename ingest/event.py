"""An event and a rejection as values: the types of the contract (``events.md`` v1).

:class:`Event` is a msgspec struct whose field annotations carry the contract's constraints,
so msgspec checks most of them while decoding (the fast path of
:func:`~usersignals.ingest.contract.decode_record`). The annotations are built from the
tables of :mod:`usersignals.ingest.rules` (lengths, choices, ratings, the nesting depth), the
same tables the precise path words its messages from; ``tests/ingest/test_contract_agreement.py``
holds the paths equal on what the tables cannot say.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

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
    "FIELDS",
    "MAX_BATCH",
    "MAX_EVENT_BYTES",
    "MAX_READ_DEPTH",
    "MAX_RECORD_BYTES",
    "REASONS",
    "Event",
    "EventError",
    "Rejection",
]

MAX_EVENT_BYTES = 32 * 1024
MAX_RECORD_BYTES = 1 << 20
MAX_BATCH = 1000
MAX_READ_DEPTH = 64
"""Nesting (outside strings) beyond which a record is not read at all."""

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
