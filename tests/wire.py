"""The wire format read from the contract's text (docs/events.md), for the oracle.

The pipeline tests hand the same record bytes to the system and to this reader. It shares no
code with ``usersignals.ingest``: it parses JSON with the standard library, reads ``ts`` with
its own RFC 3339 pattern and its own rounding, and applies the documented rules one by one, so
that timestamp normalisation and reason codes are checked independently. Only the reason code
of a rejection is produced (messages are the contract's own tests' business).

The reading is literal and slow. Documented leniencies it follows: a space or ``t`` for ``T``,
``z`` for ``Z``, an offset written ``+0530``; fractional seconds of any length, rounded half up
to the microsecond.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from usersignals.ingest.event import Event

__all__ = ["WireResult", "read_record"]

MAX_EVENT_BYTES = 32 * 1024
MAX_RECORD_BYTES = 1 << 20
MAX_BATCH = 1000
MAX_NESTING = 64  # record nesting outside strings beyond which it is not read
PROPERTIES_DEPTH = 8
MAX_FUTURE = timedelta(hours=24)
DEFAULT_MIN_TS = datetime(2000, 1, 1, tzinfo=UTC)

TYPES = {
    "session_start": (),
    "session_end": (),
    "message": ("role",),
    "feedback": ("message_id", "rating"),
    "preference": ("model_a", "model_b", "winner"),
    "risk_flag": ("category", "severity"),
    "custom": ("name",),
    "identify": ("name",),
}
TEXT = {
    "event_id": (1, 128),
    "user_id": (1, 512),
    "session_id": (0, 256),
    "model": (0, 128),
    "message_id": (1, 256),
    "model_a": (1, 128),
    "model_b": (1, 128),
    "name": (1, 256),
}
CHOICES = {
    "platform": {"web", "ios", "android", "desktop", "api"},
    "role": {"user", "assistant", "system", "tool"},
    "winner": {"a", "b", "tie", "both_bad"},
    "category": {
        "self_harm",
        "suicidal_ideation",
        "mania",
        "psychosis",
        "delusion",
        "emotional_dependence",
        "sycophancy",
        "other",
    },
    "severity": {"low", "medium", "high", "critical"},
    "source": {"classifier", "moderator", "user_report"},
}
ORDER = (
    "event_id",
    "type",
    "user_id",
    "ts",
    "session_id",
    "model",
    "platform",
    "properties",
    "role",
    "tokens",
    "message_id",
    "rating",
    "model_a",
    "model_b",
    "winner",
    "category",
    "severity",
    "source",
    "duration_s",
    "name",
    "received_at",
)

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))"
)


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass
class WireResult:
    """The valid events of one record, in order, and the reason codes of its rejections."""

    events: list[Event] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def read_record(
    value: bytes | None, now: datetime | None = None, min_ts: datetime = DEFAULT_MIN_TS
) -> WireResult:
    """One record value read by the contract's rules."""
    now = now or datetime.now(UTC)
    out = WireResult()
    if not value:
        out.reasons.append("empty")
        return out
    if len(value) > MAX_RECORD_BYTES:
        out.reasons.append("too_large")
        return out
    if value.lstrip(b" \t\r\n")[:1] != b"[" and len(value) > MAX_EVENT_BYTES:
        out.reasons.append("too_large")  # not a batch: the record is one event, sized unread
        return out
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        out.reasons.append("not_utf8")
        return out
    if _nesting(text) > MAX_NESTING:
        out.reasons.append("too_deep")
        return out
    try:
        parsed = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        out.reasons.append("not_json")
        return out
    if _has_surrogate(parsed):  # a lone surrogate escape denotes no Unicode text
        out.reasons.append("not_json")
        return out
    if isinstance(parsed, dict):
        elements: list[Any] = [parsed]
        sizes = [len(value)]
    elif isinstance(parsed, list):
        if not parsed or len(parsed) > MAX_BATCH:
            out.reasons.append("bad_batch")
            return out
        elements = parsed
        sizes = _element_sizes(text)
    else:
        out.reasons.append("not_object")
        return out
    for element, size in zip(elements, sizes, strict=True):
        try:
            if size > MAX_EVENT_BYTES:
                raise _Bad("too_large")
            out.events.append(_event(element, now, min_ts))
        except _Bad as bad:
            out.reasons.append(bad.reason)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON


def _element_sizes(text: str) -> list[int]:
    """UTF-8 sizes of the elements of a JSON array, as written (whitespace around them left out)."""
    sizes: list[int] = []
    depth = 0
    in_string = escaped = False
    start = -1
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth == 1:
                start = i + 1
                continue
        elif ch in "]}":
            depth -= 1
        if (depth == 0 and ch == "]") or (depth == 1 and ch == ","):
            sizes.append(len(text[start:i].strip().encode()))
            start = i + 1
    return sizes


def _nesting(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _event(obj: Any, now: datetime, min_ts: datetime) -> Event:
    if not isinstance(obj, dict):
        raise _Bad("not_object")
    given = {k: v for k, v in obj.items() if k in ORDER and v is not None}
    extra = {k: v for k, v in obj.items() if k not in ORDER}
    for name in ("event_id", "type", "user_id", "ts"):
        if name not in given:
            raise _Bad("missing_field")
    kind = given["type"]
    if not isinstance(kind, str):
        raise _Bad("bad_type")
    if kind not in TYPES:
        raise _Bad("unknown_type")
    values: dict[str, Any] = {}
    for name in ORDER:
        if name in given:
            values[name] = _field(name, given[name], now, min_ts)
        elif name in TYPES[kind]:
            raise _Bad("missing_field")
    if "model_a" in values and values.get("model_a") == values.get("model_b"):
        raise _Bad("bad_value")
    for value in extra.values():
        _json_value(value, 0, limit=PROPERTIES_DEPTH)
    return Event(**values, extra=extra or None)


def _field(name: str, value: Any, now: datetime, min_ts: datetime) -> Any:
    if name in TEXT:
        if not isinstance(value, str):
            raise _Bad("bad_type")
        low, high = TEXT[name]
        if not low <= len(value) <= high:
            raise _Bad("bad_value")
        return value
    if name == "type":
        return value
    if name in CHOICES:
        if not isinstance(value, str):
            raise _Bad("bad_type")
        if value not in CHOICES[name]:
            raise _Bad("bad_value")
        return value
    if name in ("ts", "received_at"):
        return _moment(name, value, now, min_ts)
    if name == "properties":
        if not isinstance(value, dict):
            raise _Bad("bad_type")
        _json_value(value, 0, limit=PROPERTIES_DEPTH)
        return value
    if name == "rating":
        if type(value) is not int:
            raise _Bad("bad_type")
        if value not in (1, -1, 0):
            raise _Bad("bad_value")
        return value
    if name == "tokens":
        if type(value) is not int:
            raise _Bad("bad_type")
        if not 0 <= value < 2**63:
            raise _Bad("bad_value")
        return value
    if type(value) not in (int, float):  # duration_s
        raise _Bad("bad_type")
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond any double
        seconds = math.inf
    if not 0 <= seconds < math.inf:
        raise _Bad("bad_value")
    return seconds


def _moment(name: str, value: Any, now: datetime, min_ts: datetime) -> datetime:
    if isinstance(value, str):
        moment = _rfc3339(value)
    elif name == "ts" and type(value) is int:
        try:
            moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)
        except OverflowError:
            raise _Bad("bad_timestamp") from None
    else:
        raise _Bad("bad_type")
    if name == "ts" and not min_ts <= moment <= now + MAX_FUTURE:
        raise _Bad("bad_timestamp")  # also an epoch-seconds integer: it lands in 1970
    return moment


def _rfc3339(text: str) -> datetime:
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise _Bad("bad_timestamp")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or "0"
    # rounded half up to the microsecond
    micro = (int(frac) * 2_000_000 + 10 ** len(frac)) // (2 * 10 ** len(frac))
    if m.group(8):
        offset = timedelta(0)
    else:
        sign = 1 if m.group(9) == "+" else -1
        hours, minutes = int(m.group(10)), int(m.group(11))
        if hours > 23 or minutes > 59:
            raise _Bad("bad_timestamp")
        offset = sign * timedelta(hours=hours, minutes=minutes)
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        raise _Bad("bad_timestamp") from None
    return (local + timedelta(microseconds=micro)).astimezone(UTC)


def _surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _surrogate(value)
    if isinstance(value, dict):
        return any(_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def _json_value(value: Any, depth: int, limit: int | None) -> None:
    if isinstance(value, dict | list):
        if limit is not None and depth > limit:
            raise _Bad("too_deep")
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            _json_value(child, depth + 1, limit)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _Bad("bad_value")
