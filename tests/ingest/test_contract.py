"""The event contract, rule by rule: exact reason codes and exact messages (events.md)."""

# ruff: noqa: E501  (one table row per rule, each with its full message, reads best unwrapped)

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from usersignals.config import ConfigError, UsersignalsError
from usersignals.ingest.contract import (
    MAX_BATCH,
    MAX_EVENT_BYTES,
    MAX_RECORD_BYTES,
    REASONS,
    Event,
    EventError,
    Rejection,
    decode_record,
    encode_batch,
    encode_event,
    partition_for,
    validate,
)
from usersignals.ingest.partitioner import murmur2

NOW = datetime(2026, 8, 4, 12, 0, tzinfo=UTC)
DROP = object()

BASE: dict[str, dict[str, Any]] = {
    "session_start": {},
    "session_end": {"duration_s": 61.5},
    "message": {"role": "assistant", "tokens": 42, "message_id": "msg-1"},
    "feedback": {"message_id": "msg-1", "rating": -1},
    "preference": {"model_a": "m-5.1", "model_b": "m-5.2", "winner": "tie"},
    "risk_flag": {"category": "mania", "severity": "high", "source": "classifier"},
}


def ev(etype: str = "message", **changes: Any) -> dict[str, Any]:
    """A valid event of ``etype`` with some fields changed (``DROP`` removes one)."""
    event: dict[str, Any] = {
        "event_id": "e-1",
        "type": etype,
        "user_id": "u-1",
        "ts": "2026-08-03T23:59:59.123+05:30",
        "session_id": "s-1",
        "model": "m-5.2",
        "platform": "web",
        "properties": {"lang": "en"},
        **BASE[etype],
    }
    for name, value in changes.items():
        if value is DROP:
            event.pop(name, None)
        else:
            event[name] = value
    return event


def decode_one(obj: Any) -> Event | Rejection:
    events, rejections = decode_record(json.dumps(obj).encode(), now=NOW)
    assert len(events) + len(rejections) == 1
    return events[0] if events else rejections[0]


# (event, reason, field, message); every rule of events.md, every type
REJECTED = [
    # common fields
    (ev(event_id=DROP), "missing_field", "event_id", "Missing 'event_id' (required)"),
    (ev(event_id=None), "missing_field", "event_id", "Missing 'event_id' (required)"),
    (ev(event_id=""), "bad_value", "event_id", "Invalid 'event_id': '' (must be a string of 1 to 128 characters)"),
    (ev(event_id="x" * 129), "bad_value", "event_id", "Invalid 'event_id': '" + "x" * 76 + "... (must be a string of 1 to 128 characters)"),
    (ev(event_id=7), "bad_type", "event_id", "Invalid 'event_id': 7 (must be a string of 1 to 128 characters)"),
    (ev(type=DROP), "missing_field", "type", "Missing 'type' (required)"),
    (ev(type="click"), "unknown_type", "type", "Invalid 'type': 'click' (must be one of 'session_start', 'session_end', 'message', 'feedback', 'preference', 'risk_flag', 'custom', 'identify')"),
    (ev(type="Message"), "unknown_type", "type", "Invalid 'type': 'Message' (must be one of 'session_start', 'session_end', 'message', 'feedback', 'preference', 'risk_flag', 'custom', 'identify')"),
    (ev(type=["message"]), "bad_type", "type", "Invalid 'type': ['message'] (must be one of 'session_start', 'session_end', 'message', 'feedback', 'preference', 'risk_flag', 'custom', 'identify')"),
    (ev(user_id=DROP), "missing_field", "user_id", "Missing 'user_id' (required)"),
    (ev(user_id=12345), "bad_type", "user_id", "Invalid 'user_id': 12345 (must be a string of 1 to 512 characters)"),
    (ev(user_id=""), "bad_value", "user_id", "Invalid 'user_id': '' (must be a string of 1 to 512 characters)"),
    (ev(user_id="é" * 513), "bad_value", "user_id", "Invalid 'user_id': '" + "é" * 76 + "... (must be a string of 1 to 512 characters)"),
    (ev(ts=DROP), "missing_field", "ts", "Missing 'ts' (required)"),
    (ev(ts="2026-08-03T23:59:59"), "bad_timestamp", "ts", "Invalid 'ts': '2026-08-03T23:59:59' (no UTC offset; add 'Z' or '+HH:MM')"),
    (ev(ts="2026-08-03"), "bad_timestamp", "ts", "Invalid 'ts': '2026-08-03' (not an RFC 3339 date-time)"),
    (ev(ts="2026-02-30T10:00:00Z"), "bad_timestamp", "ts", "Invalid 'ts': '2026-02-30T10:00:00Z' (not an RFC 3339 date-time)"),
    (ev(ts="2026-08-03T23:59:60Z"), "bad_timestamp", "ts", "Invalid 'ts': '2026-08-03T23:59:60Z' (not an RFC 3339 date-time)"),
    (ev(ts="2026-08-03T10:00:00+24:00"), "bad_timestamp", "ts", "Invalid 'ts': '2026-08-03T10:00:00+24:00' (not an RFC 3339 date-time)"),
    (ev(ts="2026-08-03T10:00:00.Z"), "bad_timestamp", "ts", "Invalid 'ts': '2026-08-03T10:00:00.Z' (not an RFC 3339 date-time)"),
    (ev(ts="0001-01-01T00:30:00+01:00"), "bad_timestamp", "ts", "Invalid 'ts': '0001-01-01T00:30:00+01:00' (out of range)"),
    (ev(ts="2026-08-05T12:00:00.000001Z"), "bad_timestamp", "ts", "Invalid 'ts': '2026-08-05T12:00:00.000001Z' (more than 24 h after receipt)"),
    (ev(ts=1785931200001), "bad_timestamp", "ts", "Invalid 'ts': 1785931200001 (more than 24 h after receipt)"),
    (ev(ts=10**17), "bad_timestamp", "ts", "Invalid 'ts': 100000000000000000 (out of range)"),
    # the lower bound (default 2000-01-01T00:00:00Z), and integers in another unit than ms
    (ev(ts="1999-12-31T23:59:59.999999Z"), "bad_timestamp", "ts", "Invalid 'ts': '1999-12-31T23:59:59.999999Z' (before the lower bound 2000-01-01T00:00:00Z)"),
    (ev(ts="2000-01-01T00:59:59+01:00"), "bad_timestamp", "ts", "Invalid 'ts': '2000-01-01T00:59:59+01:00' (before the lower bound 2000-01-01T00:00:00Z)"),
    (ev(ts="1970-01-21T10:10:50Z"), "bad_timestamp", "ts", "Invalid 'ts': '1970-01-21T10:10:50Z' (before the lower bound 2000-01-01T00:00:00Z)"),
    (ev(ts=946684799999), "bad_timestamp", "ts", "Invalid 'ts': 946684799999 (before the lower bound 2000-01-01T00:00:00Z)"),
    (ev(ts=0), "bad_timestamp", "ts", "Invalid 'ts': 0 (before the lower bound 2000-01-01T00:00:00Z)"),
    (ev(ts=-1), "bad_timestamp", "ts", "Invalid 'ts': -1 (before the lower bound 2000-01-01T00:00:00Z)"),
    (ev(ts=1764650000), "bad_timestamp", "ts", "Invalid 'ts': 1764650000 (looks like seconds; send milliseconds)"),
    (ev(ts=946684800), "bad_timestamp", "ts", "Invalid 'ts': 946684800 (looks like seconds; send milliseconds)"),
    (ev(ts=1785931200), "bad_timestamp", "ts", "Invalid 'ts': 1785931200 (looks like seconds; send milliseconds)"),
    (ev(ts=946684799), "bad_timestamp", "ts", "Invalid 'ts': 946684799 (before the lower bound 2000-01-01T00:00:00Z)"),
    (ev(ts=1785931201), "bad_timestamp", "ts", "Invalid 'ts': 1785931201 (before the lower bound 2000-01-01T00:00:00Z)"),
    (ev(ts=1764650000123456), "bad_timestamp", "ts", "Invalid 'ts': 1764650000123456 (looks like microseconds; send milliseconds)"),
    (ev(ts=10**15), "bad_timestamp", "ts", "Invalid 'ts': 1000000000000000 (looks like microseconds; send milliseconds)"),
    (ev(ts=1764650000123456789), "bad_timestamp", "ts", "Invalid 'ts': 1764650000123456789 (looks like nanoseconds; send milliseconds)"),
    (ev(ts=True), "bad_type", "ts", "Invalid 'ts': True (must be an RFC 3339 string or integer epoch milliseconds)"),
    (ev(ts=1.7e12), "bad_type", "ts", "Invalid 'ts': 1700000000000.0 (must be an RFC 3339 string or integer epoch milliseconds)"),
    (ev(session_id="s" * 257), "bad_value", "session_id", "Invalid 'session_id': '" + "s" * 76 + "... (must be a string of at most 256 characters)"),
    (ev(session_id=1), "bad_type", "session_id", "Invalid 'session_id': 1 (must be a string of at most 256 characters)"),
    (ev(model="m" * 129), "bad_value", "model", "Invalid 'model': '" + "m" * 76 + "... (must be a string of at most 128 characters)"),
    (ev(platform="linux"), "bad_value", "platform", "Invalid 'platform': 'linux' (must be one of 'web', 'ios', 'android', 'desktop', 'api')"),
    (ev(platform=0), "bad_type", "platform", "Invalid 'platform': 0 (must be one of 'web', 'ios', 'android', 'desktop', 'api')"),
    (ev(properties=[1]), "bad_type", "properties", "Invalid 'properties': [1] (must be an object)"),
    (ev(properties="x"), "bad_type", "properties", "Invalid 'properties': 'x' (must be an object)"),
    (ev(properties={"a": [[[[[[[[{"deep": 1}]]]]]]]]}), "too_deep", "properties", "Invalid 'properties': nested deeper than 8 levels"),
    (ev(received_at="2026-08-03 10:00:00"), "bad_timestamp", "received_at", "Invalid 'received_at': '2026-08-03 10:00:00' (no UTC offset; add 'Z' or '+HH:MM')"),
    (ev(received_at=1785931200000), "bad_type", "received_at", "Invalid 'received_at': 1785931200000 (must be an RFC 3339 string)"),
    (ev(future=[[[[[[[[[[1]]]]]]]]]]), "too_deep", "future", "Invalid 'future': nested deeper than 8 levels"),
    # session_end
    (ev("session_end", duration_s=-0.5), "bad_value", "duration_s", "Invalid 'duration_s': -0.5 (must be a finite number, 0 or more)"),
    (ev("session_end", duration_s="60"), "bad_type", "duration_s", "Invalid 'duration_s': '60' (must be a finite number, 0 or more)"),
    (ev("session_end", duration_s=False), "bad_type", "duration_s", "Invalid 'duration_s': False (must be a finite number, 0 or more)"),
    # message
    (ev("message", role=DROP), "missing_field", "role", "Missing 'role' (required for type 'message')"),
    (ev("message", role=None), "missing_field", "role", "Missing 'role' (required for type 'message')"),
    (ev("message", role="bot"), "bad_value", "role", "Invalid 'role': 'bot' (must be one of 'user', 'assistant', 'system', 'tool')"),
    (ev("message", tokens=-1), "bad_value", "tokens", "Invalid 'tokens': -1 (must be an integer from 0 to 9223372036854775807)"),
    (ev("message", tokens=2**63), "bad_value", "tokens", "Invalid 'tokens': 9223372036854775808 (must be an integer from 0 to 9223372036854775807)"),
    (ev("message", tokens=1.5), "bad_type", "tokens", "Invalid 'tokens': 1.5 (must be an integer from 0 to 9223372036854775807)"),
    (ev("message", tokens=True), "bad_type", "tokens", "Invalid 'tokens': True (must be an integer from 0 to 9223372036854775807)"),
    (ev("message", message_id=""), "bad_value", "message_id", "Invalid 'message_id': '' (must be a string of 1 to 256 characters)"),
    # feedback
    (ev("feedback", message_id=DROP), "missing_field", "message_id", "Missing 'message_id' (required for type 'feedback')"),
    (ev("feedback", rating=DROP), "missing_field", "rating", "Missing 'rating' (required for type 'feedback')"),
    (ev("feedback", rating=2), "bad_value", "rating", "Invalid 'rating': 2 (must be 1, -1 or 0)"),
    (ev("feedback", rating=True), "bad_type", "rating", "Invalid 'rating': True (must be 1, -1 or 0)"),
    (ev("feedback", rating=1.0), "bad_type", "rating", "Invalid 'rating': 1.0 (must be 1, -1 or 0)"),
    (ev("feedback", rating="1"), "bad_type", "rating", "Invalid 'rating': '1' (must be 1, -1 or 0)"),
    # preference
    (ev("preference", model_a=DROP), "missing_field", "model_a", "Missing 'model_a' (required for type 'preference')"),
    (ev("preference", model_b=DROP), "missing_field", "model_b", "Missing 'model_b' (required for type 'preference')"),
    (ev("preference", winner=DROP), "missing_field", "winner", "Missing 'winner' (required for type 'preference')"),
    (ev("preference", winner="c"), "bad_value", "winner", "Invalid 'winner': 'c' (must be one of 'a', 'b', 'tie', 'both_bad')"),
    (ev("preference", model_b="m-5.1"), "bad_value", "model_b", "Invalid 'model_b': 'm-5.1' (same as 'model_a')"),
    (ev("preference", model_a=""), "bad_value", "model_a", "Invalid 'model_a': '' (must be a string of 1 to 128 characters)"),
    # risk_flag
    (ev("risk_flag", category=DROP), "missing_field", "category", "Missing 'category' (required for type 'risk_flag')"),
    (ev("risk_flag", severity=DROP), "missing_field", "severity", "Missing 'severity' (required for type 'risk_flag')"),
    (ev("risk_flag", category="anger"), "bad_value", "category", "Invalid 'category': 'anger' (must be one of 'self_harm', 'suicidal_ideation', 'mania', 'psychosis', 'delusion', 'emotional_dependence', 'sycophancy', 'other')"),
    (ev("risk_flag", severity="severe"), "bad_value", "severity", "Invalid 'severity': 'severe' (must be one of 'low', 'medium', 'high', 'critical')"),
    (ev("risk_flag", source="user"), "bad_value", "source", "Invalid 'source': 'user' (must be one of 'classifier', 'moderator', 'user_report')"),
    # a field of another type is checked by its own rule
    (ev("session_start", rating=5), "bad_value", "rating", "Invalid 'rating': 5 (must be 1, -1 or 0)"),
    # not an object
    ([1, 2], "not_object", None, "Not a JSON object: [1, 2] (an event is one)"),
    ("event", "not_object", None, "Not a JSON object: 'event' (an event is one)"),
]  # fmt: skip


@pytest.mark.parametrize(("event", "reason", "field", "message"), REJECTED)
def test_rejected_with_exact_reason_and_message(
    event: Any, reason: str, field: str | None, message: str
) -> None:
    expected = Rejection(reason=reason, message=message, field=field)
    assert validate(event, now=NOW) == expected
    if isinstance(event, dict):  # the same event as a record on the wire
        raw = json.dumps(event).encode()
        assert decode_record(raw, now=NOW) == ([], [msgspec.structs.replace(expected, raw=raw)])
        batch = b"[" + raw + b"]"
        assert decode_record(batch, now=NOW) == (
            [],
            [msgspec.structs.replace(expected, raw=raw, index=0)],
        )


def test_every_reason_code_is_pinned() -> None:
    reasons = {r for _, r, _, _ in REJECTED} | {
        "empty", "too_large", "not_utf8", "too_deep", "not_json", "bad_batch",
    }  # fmt: skip
    assert reasons == set(REASONS)


def test_every_type_accepted_normalised() -> None:
    for etype in BASE:
        event = decode_one(ev(etype))
        assert isinstance(event, Event)
        assert event.type == etype
        assert event.ts == datetime(2026, 8, 3, 18, 29, 59, 123000, tzinfo=UTC)
        assert event.ts.tzinfo is UTC


ACCEPTED_TS = [
    ("2026-08-03T18:29:59Z", datetime(2026, 8, 3, 18, 29, 59, tzinfo=UTC)),
    ("2026-08-03t18:29:59z", datetime(2026, 8, 3, 18, 29, 59, tzinfo=UTC)),
    ("2026-08-03 18:29:59-00:00", datetime(2026, 8, 3, 18, 29, 59, tzinfo=UTC)),
    ("2026-08-03T23:59:59+0530", datetime(2026, 8, 3, 18, 29, 59, tzinfo=UTC)),
    ("2026-08-03T18:29:59.1Z", datetime(2026, 8, 3, 18, 29, 59, 100000, tzinfo=UTC)),
    ("2026-08-03T18:29:59.1234564Z", datetime(2026, 8, 3, 18, 29, 59, 123456, tzinfo=UTC)),
    # rounded to the nearest microsecond, even across midnight
    ("2026-08-03T18:29:59.1234565Z", datetime(2026, 8, 3, 18, 29, 59, 123457, tzinfo=UTC)),
    ("2026-08-03T23:59:59.99999950Z", datetime(2026, 8, 4, tzinfo=UTC)),
    ("2026-08-04T00:30:00+01:00", datetime(2026, 8, 3, 23, 30, tzinfo=UTC)),
    # the lower bound, exactly, in every form (a fraction rounds before the bound is checked)
    ("2000-01-01T00:00:00Z", datetime(2000, 1, 1, tzinfo=UTC)),
    ("2000-01-01T01:00:00+01:00", datetime(2000, 1, 1, tzinfo=UTC)),
    ("1999-12-31T23:59:59.9999995Z", datetime(2000, 1, 1, tzinfo=UTC)),
    (946684800000, datetime(2000, 1, 1, tzinfo=UTC)),
    (946684800001, datetime(2000, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)),
    ("2026-08-05T12:00:00Z", datetime(2026, 8, 5, 12, tzinfo=UTC)),  # exactly 24 h ahead
    (1785931200000, datetime(2026, 8, 5, 12, tzinfo=UTC)),
    (1785888000123, datetime(2026, 8, 5, 0, 0, 0, 123000, tzinfo=UTC)),
]


@pytest.mark.parametrize(("ts", "expected"), ACCEPTED_TS)
def test_timestamps_normalised_to_utc_microseconds(ts: Any, expected: datetime) -> None:
    event = decode_one(ev(ts=ts))
    assert isinstance(event, Event)
    assert event.ts == expected
    assert event.ts.tzinfo is UTC
    assert validate(ev(ts=ts), now=NOW) == event


def test_python_datetimes_accepted_by_validate_only_when_aware() -> None:
    aware = datetime(2026, 8, 3, 23, 59, tzinfo=timezone(timedelta(hours=2)))
    event = validate(ev(ts=aware, received_at=aware), now=NOW)
    assert isinstance(event, Event)
    assert (event.ts, event.received_at) == (aware, aware)
    assert event.ts.tzinfo is UTC
    naive = datetime(2026, 8, 3, 23, 59)
    assert validate(ev(ts=naive), now=NOW) == Rejection(
        reason="bad_timestamp",
        field="ts",
        message="Invalid 'ts': datetime.datetime(2026, 8, 3, 23, 59) (no UTC offset; add 'Z' or "
        "'+HH:MM')",
    )


def test_unknown_fields_kept_verbatim_and_other_types_fields_kept() -> None:
    event = decode_one(ev("session_start", rating=1, extra={"a": [1, None]}, newer=True))
    assert isinstance(event, Event)
    assert event.rating == 1
    assert event.extra == {"extra": {"a": [1, None]}, "newer": True}
    assert encode_event(event).endswith(b',"extra":{"a":[1,null]},"newer":true}')


def test_nulls_are_absent_fields() -> None:
    event = decode_one(ev("message", model=None, platform=None, tokens=None))
    assert isinstance(event, Event)
    assert (event.model, event.platform, event.tokens) == (None, None, None)


def test_unicode_user_ids_are_legal() -> None:
    for user_id in ('he said "hi", then left', "用户-42", "🙂", " ", "a\u0000b"):
        event = decode_one(ev(user_id=user_id))
        assert isinstance(event, Event)
        assert event.user_id == user_id


def test_validate_rejects_what_json_cannot_carry() -> None:
    cases = [
        ({"k": float("nan")}, "bad_value", "Invalid 'properties': contains nan (numbers must be finite)"),
        ({"k": (1, 2)}, "bad_type", "Invalid 'properties': contains (1, 2) (not a JSON value)"),
        ({1: "x"}, "bad_type", "Invalid 'properties': contains 1 (keys must be strings)"),
        ({"k": "\ud800"}, "bad_value", "Invalid 'properties': contains '\\ud800' (not valid Unicode)"),
    ]  # fmt: skip
    for properties, reason, message in cases:
        assert validate(ev(properties=properties), now=NOW) == Rejection(
            reason=reason, message=message, field="properties"
        )
    assert validate(ev(user_id="a\udc00"), now=NOW) == Rejection(
        reason="bad_value",
        message="Invalid 'user_id': 'a\\udc00' (not valid Unicode)",
        field="user_id",
    )
    assert validate({1: 2}, now=NOW) == Rejection(
        reason="bad_type", message="Invalid field name: 1 (not a string)"
    )
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    assert validate(ev(properties=cyclic), now=NOW).reason == "too_deep"  # type: ignore[union-attr]


def test_properties_at_the_depth_limit_accepted() -> None:
    deepest: Any = 1
    for _ in range(8):
        deepest = {"x": deepest}
    event = decode_one(ev(properties={"top": deepest}, later=[deepest]))
    assert isinstance(event, Event)
    assert event.properties == {"top": deepest}


# ---------------------------------------------------------------------- whole records


def _record_rejection(raw: bytes | None, reason: str, message: str) -> None:
    events, rejections = decode_record(raw, now=NOW)
    assert events == []
    assert rejections == [Rejection(reason=reason, message=message, raw=raw or b"")]


RECORDS = [
    (None, "empty", "Empty record"),
    (b"", "empty", "Empty record"),
    (b"\xff\xfe{}", "not_utf8", "Not UTF-8: invalid start byte at byte 0"),
    (b'{"a": "\xed\xa0\x80"}', "not_utf8", "Not UTF-8: invalid continuation byte at byte 7"),
    (b"{", "not_json", "Not JSON: Input data was truncated"),
    (b"nope", "not_json", "Not JSON: JSON is malformed: invalid character (byte 4)"),
    (b"[1,]", "not_json", "Not JSON: JSON is malformed: trailing comma in array (byte 3)"),
    (b'"\\ud800"', "not_json", "Not JSON: Input data was truncated"),
    (b"42", "not_object", "Not a JSON object: 42 (an event is one)"),
    (b"null", "not_object", "Not a JSON object: None (an event is one)"),
    (b"[]", "bad_batch", "Empty batch (a batch holds 1 to 1000 events)"),
    (b" [ ] ", "bad_batch", "Empty batch (a batch holds 1 to 1000 events)"),
    (b"[" + b",".join([b"{}"] * 1001) + b"]", "bad_batch", "Batch of 1001 events (at most 1000)"),
    (b"[" * 100_000, "too_deep", "Record nested deeper than 64 levels"),
    (b"[" * 65 + b"]" * 65, "too_deep", "Record nested deeper than 64 levels"),
    (b'{"a":' * 65 + b"1" + b"}" * 65, "too_deep", "Record nested deeper than 64 levels"),
    (b" " * (MAX_RECORD_BYTES + 1), "too_large", "Record of 1048577 bytes (at most 1048576)"),
    (b"{" + b" " * MAX_EVENT_BYTES + b"}", "too_large", "Event of 32770 bytes (at most 32768)"),
]


@pytest.mark.parametrize(("raw", "reason", "message"), RECORDS)
def test_unreadable_record_is_one_rejection(raw: bytes | None, reason: str, message: str) -> None:
    _record_rejection(raw, reason, message)


@pytest.mark.parametrize(
    "raw", [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'[{"a":' + b"[" * 100_000]
)
def test_hundred_thousand_brackets_are_one_too_deep_rejection(raw: bytes) -> None:
    # found by the bracket scan before any parser recurses: one rejection of the whole
    # record, not a RecursionError turned into "Unreadable record" (how fast is make bench's)
    _record_rejection(raw, "too_deep", "Record nested deeper than 64 levels")


def test_one_deep_element_beside_valid_ones_rejects_the_whole_record() -> None:
    # the valid elements decode on the fast path; the nesting of the others still counts,
    # with the batch's own brackets as the first level
    good = json.dumps(ev("message")).encode()
    for depth, rejected in ((63, False), (64, True)):
        deep = b"[" * depth + b"]" * depth
        raw = b"[" + good + b"," + deep + b"," + good + b"]"
        events, rejections = decode_record(raw, now=NOW)
        if rejected:
            assert (events, [r.reason for r in rejections]) == ([], ["too_deep"])
            assert rejections[0].raw == raw
            assert rejections[0].index is None
        else:
            assert len(events) == 2
            assert [r.reason for r in rejections] == ["not_object"]


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    event = decode_one(ev(properties={"text": "[[[[{{{{" * 50, 'q"[': "\\[" * 100}))
    assert isinstance(event, Event)


def test_batch_elements_rejected_alone() -> None:
    good = json.dumps(ev("feedback")).encode()
    deep = json.dumps(ev(properties={"a": [[[[[[[[[]]]]]]]]]})).encode()
    big = json.dumps(ev(properties={"pad": "x" * MAX_EVENT_BYTES})).encode()
    raw = b"[" + b", ".join([good, b"1", deep, b"[2]", big, b'"s"', good]) + b"]"
    events, rejections = decode_record(raw, now=NOW)
    assert len(events) == 2
    too_deep = "Invalid 'properties': nested deeper than 8 levels"
    assert rejections == [
        Rejection(reason="not_object", message="Not a JSON object: 1 (an event is one)", index=1, raw=b"1"),
        Rejection(reason="too_deep", message=too_deep, field="properties", index=2, raw=deep),
        Rejection(reason="not_object", message="Not a JSON object: [2] (an event is one)", index=3, raw=b"[2]"),
        Rejection(reason="too_large", message=f"Event of {len(big)} bytes (at most 32768)", index=4, raw=big),
        Rejection(reason="not_object", message="Not a JSON object: 's' (an event is one)", index=5, raw=b'"s"'),
    ]  # fmt: skip


def test_three_numbers_are_three_rejections() -> None:
    events, rejections = decode_record(b"[1,2,3]", now=NOW)
    assert events == []
    assert [(r.reason, r.index, r.raw) for r in rejections] == [
        ("not_object", 0, b"1"),
        ("not_object", 1, b"2"),
        ("not_object", 2, b"3"),
    ]


def test_full_batch_of_large_events_accepted() -> None:
    events = [
        validate(ev(event_id=f"e-{i}", properties={"p": "x" * 800}), now=NOW)
        for i in range(MAX_BATCH)
    ]
    raw = encode_batch(events)  # type: ignore[arg-type]
    assert MAX_EVENT_BYTES < len(raw) <= MAX_RECORD_BYTES
    assert decode_record(raw, now=NOW) == (events, [])


def test_element_of_exactly_32_kib_accepted() -> None:
    event = ev()
    size = len(json.dumps(event, separators=(",", ":")).encode())
    event["properties"]["pad"] = "x" * (MAX_EVENT_BYTES - size - len(',"pad":""'))
    raw = json.dumps(event, separators=(",", ":")).encode()
    assert len(raw) == MAX_EVENT_BYTES
    assert len(decode_record(raw, now=NOW)[0]) == 1
    assert len(decode_record(b"[" + raw + b"," + raw + b"]", now=NOW)[0]) == 2


def test_default_now_is_the_clock() -> None:
    tomorrow = datetime.now(UTC) + timedelta(hours=23)
    assert isinstance(validate(ev(ts=tomorrow.isoformat())), Event)
    assert isinstance(validate(ev(ts=(tomorrow + timedelta(hours=2)).isoformat())), Rejection)


# ---------------------------------------------------------------------- encoding


def test_canonical_encoding() -> None:
    event = decode_one(ev("message", extra_field="kept"))
    assert encode_event(event) == (
        b'{"event_id":"e-1","type":"message","user_id":"u-1","ts":"2026-08-03T18:29:59.123000Z",'
        b'"session_id":"s-1","model":"m-5.2","platform":"web","properties":{"lang":"en"},'
        b'"role":"assistant","tokens":42,"message_id":"msg-1","extra_field":"kept"}'
    )
    assert (
        encode_batch([event, event])
        == b"[" + encode_event(event) + b"," + encode_event(event) + b"]"
    )


def test_hand_built_event_encodes_and_decodes() -> None:
    event = Event(
        event_id="e", type="session_end", user_id="u",
        ts=datetime(2026, 1, 1, tzinfo=UTC), duration_s=3.0,
        received_at=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        extra={"type": "shadowed, dropped", "x": 1},
    )  # fmt: skip
    assert encode_event(event) == (
        b'{"event_id":"e","type":"session_end","user_id":"u","ts":"2026-01-01T00:00:00.000000Z",'
        b'"duration_s":3.0,"received_at":"2026-01-01T00:00:01.000000Z","x":1}'
    )
    assert decode_record(encode_event(event), now=NOW) == (
        [msgspec.structs.replace(event, extra={"x": 1})],
        [],
    )


# ---------------------------------------------------------------------- errors and partitioner


def test_event_error_keeps_its_rejection() -> None:
    rejection = Rejection(reason="bad_value", message="Invalid 'rating': 2 (must be 1, -1 or 0)")
    error = EventError(rejection)
    assert isinstance(error, UsersignalsError)
    assert error.rejection is rejection
    assert str(error) == "Invalid 'rating': 2 (must be 1, -1 or 0)"
    assert error.retryable is False


# Partitions as kafka-python's default partitioner computes them (kafka.partitioner.default);
# the next test checks more keys live against kafka-python and aiokafka.
PARTITIONS = [
    ("u-1", 8, 7),
    ("", 8, 1),
    ("用户-42", 8, 4),
    ("🙂", 12, 3),
    ("user-123456789", 8, 5),
    ('he said "hi", then left', 3, 0),
]


@pytest.mark.parametrize(("key", "n", "expected"), PARTITIONS)
def test_partition_for_table(key: str, n: int, expected: int) -> None:
    assert partition_for(key, n) == expected


@pytest.mark.parametrize(
    "key", ["", "a", "ab", "abc", "abcd", "abcde", "u-1", "用户-42", "🙂", "x" * 1000, "\u0000"]
)
def test_partition_for_equals_kafka_clients(key: str) -> None:
    from aiokafka.partitioner import DefaultPartitioner
    from kafka.partitioner.default import murmur2 as kafka_murmur2

    data = key.encode()
    assert murmur2(data) == kafka_murmur2(data) & 0xFFFFFFFF
    for n in (1, 3, 8, 12, 64):
        expected = (kafka_murmur2(data) & 0x7FFFFFFF) % n
        assert partition_for(key, n) == expected
        partitions = list(range(n))
        assert DefaultPartitioner()(data, partitions, partitions) == expected


def test_partition_for_rejects_no_partitions() -> None:
    with pytest.raises(ConfigError) as exc:
        partition_for("u", 0)
    assert str(exc.value) == "Invalid partitions: 0 (must be at least 1)"
