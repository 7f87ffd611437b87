"""An event and a rejection as values: the types of the contract (``events.md`` v1).

:class:`Event` is a msgspec struct whose field annotations carry the contract's constraints,
so msgspec checks most of them while decoding (the fast path of
:func:`~usersignals.ingest.contract.decode_record`); :mod:`usersignals.ingest.rules` holds the
same rules with messages, for the precise path. Keep the two in step.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from usersignals.config import UsersignalsError
from usersignals.ingest.rules import CHOICES, EVENT_TYPES, MAX_TOKENS

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


# Constrained field types: msgspec checks these while decoding (the fast path); the precise
# path (rules.check_event) enforces the same rules with messages. Keep the two in step.
# Statically the choice fields are str and ts a datetime; at run time msgspec decodes them
# as Literal choices (a hash lookup in C) and ts also as epoch milliseconds, which the
# contract's decoding turns into a UTC datetime before an Event leaves it.
_Moment = Annotated[datetime, msgspec.Meta(tz=True)]
if TYPE_CHECKING:
    _Type = str
    _Platform = str
    _Role = str
    _Winner = str
    _Category = str
    _Severity = str
    _Source = str
    _Ts = datetime
else:
    _Type = Literal[EVENT_TYPES]
    _Platform = Literal[CHOICES["platform"]]
    _Role = Literal[CHOICES["role"]]
    _Winner = Literal[CHOICES["winner"]]
    _Category = Literal[CHOICES["category"]]
    _Severity = Literal[CHOICES["severity"]]
    _Source = Literal[CHOICES["source"]]
    _Ts = _Moment | int
_EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
_SessionId = Annotated[str, msgspec.Meta(max_length=256)]
_Model = Annotated[str, msgspec.Meta(max_length=128)]
_ModelAB = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
_Rating = Annotated[int, msgspec.Meta(ge=-1, le=1)]
_Duration = Annotated[float, msgspec.Meta(ge=0.0, le=1.7976931348623157e308)]
_J0 = None | bool | int | float | str
_J1 = _J0 | list[_J0] | dict[str, _J0]
_J2 = _J0 | list[_J1] | dict[str, _J1]
_J3 = _J0 | list[_J2] | dict[str, _J2]
_J4 = _J0 | list[_J3] | dict[str, _J3]
_J5 = _J0 | list[_J4] | dict[str, _J4]
_J6 = _J0 | list[_J5] | dict[str, _J5]
_J7 = _J0 | list[_J6] | dict[str, _J6]
_J8 = _J0 | list[_J7] | dict[str, _J7]
_Properties = dict[str, _J8]  # the object itself plus MAX_PROPERTIES_DEPTH levels inside


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
    model_a: _ModelAB | None = None
    model_b: _ModelAB | None = None
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


class EventError(UsersignalsError):
    """An invalid event handed to the SDK; sending it again cannot help."""

    retryable = False

    def __init__(self, rejection: Rejection) -> None:
        self.rejection = rejection
        super().__init__(rejection.message)


FIELDS: tuple[str, ...] = tuple(f for f in Event.__struct_fields__ if f != "extra")
