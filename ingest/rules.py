"""The contract's field rules, and the precise checks that name whichever one an event breaks.

The limits, choices and per-type requirements of ``events.md`` v1 live here, with the slow
path of :func:`usersignals.ingest.contract.validate`: the checks that turn a broken field into
a reason code and a message quoting the bad value. The msgspec types of the fast path, the
SDK's check and the JSON Schema are built from these tables too, and one property test holds
all four equal (see :mod:`usersignals.ingest.contract`). Import the public names from
:mod:`usersignals.ingest.contract`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from usersignals.ingest.timestamps import (
    TimestampError,
    epoch_ms_at_or_after,
    epoch_ms_at_or_before,
    epoch_unit_hint,
    parse_epoch_ms,
    parse_rfc3339,
    show_moment,
    to_utc,
)

__all__ = [
    "CHOICES",
    "EVENT_TYPES",
    "MAX_FUTURE",
    "MAX_PROPERTIES_DEPTH",
    "MAX_TOKENS",
    "RATINGS",
    "REQUIRED_BY_TYPE",
    "TEXT_LIMITS",
    "Rejected",
    "check_event",
]

MAX_PROPERTIES_DEPTH = 8
MAX_FUTURE = timedelta(hours=24)
MAX_TOKENS = (1 << 63) - 1

EVENT_TYPES = (
    "session_start",
    "session_end",
    "message",
    "feedback",
    "preference",
    "risk_flag",
    "custom",
    "identify",
)
CHOICES: dict[str, tuple[str, ...]] = {
    "platform": ("web", "ios", "android", "desktop", "api"),
    "role": ("user", "assistant", "system", "tool"),
    "winner": ("a", "b", "tie", "both_bad"),
    "category": (
        "self_harm",
        "suicidal_ideation",
        "mania",
        "psychosis",
        "delusion",
        "emotional_dependence",
        "sycophancy",
        "other",
    ),
    "severity": ("low", "medium", "high", "critical"),
    "source": ("classifier", "moderator", "user_report"),
}
TEXT_LIMITS: dict[str, tuple[int, int]] = {
    "event_id": (1, 128),
    "user_id": (1, 512),
    "session_id": (0, 256),
    "model": (0, 128),
    "message_id": (1, 256),
    "model_a": (1, 128),
    "model_b": (1, 128),
    "name": (1, 256),
}
REQUIRED_BY_TYPE: dict[str, tuple[str, ...]] = {
    "session_start": (),
    "session_end": (),
    "message": ("role",),
    "feedback": ("message_id", "rating"),
    "preference": ("model_a", "model_b", "winner"),
    "risk_flag": ("category", "severity"),
    "custom": ("name",),
    "identify": ("name",),
}
RATINGS = (1, -1, 0)

_SURROGATE = re.compile("[\ud800-\udfff]")
_RATING_RULE = f"must be {', '.join(map(str, RATINGS[:-1]))} or {RATINGS[-1]}"


class Rejected(Exception):
    """Carries a rejection out of the field checks, to :func:`check_event`'s caller."""

    def __init__(self, reason: str, message: str, field: str | None) -> None:
        self.reason = reason
        self.message = message
        self.field = field


def check_event(
    obj: object, now: datetime, fields: Sequence[str], known: frozenset[str], min_ts: datetime
) -> dict[str, Any]:
    """The keyword arguments of a valid event built from ``obj``.

    Args:
        obj: The event as parsed JSON (or a Python mapping).
        now: The moment of receipt, for the 24 h future limit of ``ts``.
        fields: The contract's fields in the order they are checked (the first broken one
            is reported).
        known: The same fields as a set; other keys go to ``extra``.
        min_ts: The earliest ``ts`` accepted (UTC).

    Raises:
        Rejected: The first rule ``obj`` breaks.
    """
    if not isinstance(obj, Mapping):
        raise Rejected("not_object", f"Not a JSON object: {_show(obj)} (an event is one)", None)
    given: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise Rejected("bad_type", f"Invalid field name: {_show(key)} (not a string)", None)
        if key in known:
            if value is not None:
                given[key] = value
        else:
            extra[key] = value
    out: dict[str, Any] = {}
    for name in ("event_id", "type", "user_id", "ts"):
        if name not in given:
            raise Rejected("missing_field", f"Missing {name!r} (required)", name)
    etype = given["type"]
    if not isinstance(etype, str) or etype not in EVENT_TYPES:
        reason = "unknown_type" if isinstance(etype, str) else "bad_type"
        raise Rejected(reason, _invalid("type", etype, _choices(EVENT_TYPES)), "type")
    for name in fields:
        if name in given:
            out[name] = _check_field(name, given[name], now, min_ts)
        elif name in REQUIRED_BY_TYPE[etype]:
            message = f"Missing {name!r} (required for type {etype!r})"
            raise Rejected("missing_field", message, name)
    if out.get("model_a") is not None and out.get("model_a") == out.get("model_b"):
        raise Rejected(
            "bad_value", _invalid("model_b", out["model_b"], "same as 'model_a'"), "model_b"
        )
    for key, value in extra.items():
        _check_json(key, value)
    if extra:
        out["extra"] = extra
    return out


def _check_field(name: str, value: Any, now: datetime, min_ts: datetime) -> Any:
    if name in TEXT_LIMITS:
        low, high = TEXT_LIMITS[name]
        rule = f"must be a string of {f'{low} to' if low else 'at most'} {high} characters"
        _check_text(name, value, rule)
        if not low <= len(value) <= high:
            raise Rejected("bad_value", _invalid(name, value, rule), name)
        return value
    if name == "type":
        return value
    if name in CHOICES:
        rule = _choices(CHOICES[name])
        _check_text(name, value, rule)
        if value not in CHOICES[name]:
            raise Rejected("bad_value", _invalid(name, value, rule), name)
        return value
    if name in ("ts", "received_at"):
        return _check_moment(name, value, now, min_ts)
    if name == "properties":
        if not isinstance(value, dict):
            raise Rejected("bad_type", _invalid(name, value, "must be an object"), name)
        _check_json(name, value)
        return value
    if name == "rating":
        if type(value) is not int or value not in RATINGS:
            reason = "bad_value" if type(value) is int else "bad_type"
            raise Rejected(reason, _invalid(name, value, _RATING_RULE), name)
        return value
    if name == "tokens":
        rule = f"must be an integer from 0 to {MAX_TOKENS}"
        if type(value) is not int:
            raise Rejected("bad_type", _invalid(name, value, rule), name)
        if not 0 <= value <= MAX_TOKENS:
            raise Rejected("bad_value", _invalid(name, value, rule), name)
        return value
    # duration_s
    rule = "must be a finite number, 0 or more"
    if type(value) not in (int, float):
        raise Rejected("bad_type", _invalid(name, value, rule), name)
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not 0.0 <= seconds < math.inf:
        raise Rejected("bad_value", _invalid(name, value, rule), name)
    return seconds


def _check_text(name: str, value: Any, rule: str) -> None:
    if not isinstance(value, str):
        raise Rejected("bad_type", _invalid(name, value, rule), name)
    if not value.isascii() and _SURROGATE.search(value):
        raise Rejected("bad_value", _invalid(name, value, "not valid Unicode"), name)


def _check_moment(name: str, value: Any, now: datetime, min_ts: datetime) -> datetime:
    limit = now + MAX_FUTURE
    try:
        if isinstance(value, str):
            moment = parse_rfc3339(value)
        elif isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise TimestampError("no UTC offset; add 'Z' or '+HH:MM'")
            moment = to_utc(value)
        elif name == "ts" and type(value) is int:
            low, high = epoch_ms_at_or_after(min_ts), epoch_ms_at_or_before(limit)
            hint = None if low <= value <= high else epoch_unit_hint(value, low, high)
            if hint is not None:
                raise TimestampError(hint)
            moment = parse_epoch_ms(value)
        else:
            rule = "must be an RFC 3339 string" + (
                " or integer epoch milliseconds" if name == "ts" else ""
            )
            raise Rejected("bad_type", _invalid(name, value, rule), name)
    except TimestampError as exc:
        raise Rejected("bad_timestamp", _invalid(name, value, exc.problem), name) from None
    if name == "ts":
        if moment > limit:
            message = _invalid(name, value, "more than 24 h after receipt")
            raise Rejected("bad_timestamp", message, name)
        if moment < min_ts:
            message = _invalid(name, value, f"before the lower bound {show_moment(min_ts)}")
            raise Rejected("bad_timestamp", message, name)
    return moment


def _check_json(name: str, value: Any) -> None:
    """Rejects values JSON cannot carry, and nesting beyond the properties limit."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if depth > MAX_PROPERTIES_DEPTH:
                message = f"Invalid {name!r}: nested deeper than {MAX_PROPERTIES_DEPTH} levels"
                raise Rejected("too_deep", message, name)
            if kind is dict:
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise Rejected(
                            "bad_type", _contains(name, key, "keys must be strings"), name
                        )
                    _check_json_text(name, key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif kind is str:
            _check_json_text(name, item)
        elif kind is float:
            if not math.isfinite(item):
                raise Rejected("bad_value", _contains(name, item, "numbers must be finite"), name)
        elif kind is int:
            if item.bit_length() > 14000 and not _fits_decimal(item):
                raise Rejected("bad_value", _contains(name, item, "more than 4300 digits"), name)
        elif item is not None and kind is not bool:
            raise Rejected("bad_type", _contains(name, item, "not a JSON value"), name)


def _check_json_text(name: str, text: str) -> None:
    if not text.isascii() and _SURROGATE.search(text):
        raise Rejected("bad_value", _contains(name, text, "not valid Unicode"), name)


def _fits_decimal(number: int) -> bool:
    try:
        str(number)
    except ValueError:
        return False
    return True


def _show(value: Any) -> str:
    """``repr`` of a bad value, cut to a readable length."""
    try:
        text = repr(value)
    except Exception:  # a huge int, or an object whose repr fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _invalid(name: str, value: Any, rule: str) -> str:
    return f"Invalid {name!r}: {_show(value)} ({rule})"


def _contains(name: str, value: Any, rule: str) -> str:
    return f"Invalid {name!r}: contains {_show(value)} ({rule})"


def _choices(names: Sequence[str]) -> str:
    return "must be one of " + ", ".join(repr(n) for n in names)
