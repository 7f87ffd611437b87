"""The SDK against the real broker: typed methods, validation at the call, batching, counters."""

from __future__ import annotations

import inspect
import json
import os
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Kafka
from usersignals.broker import free_port
from usersignals.config import Settings
from usersignals.ingest import typed as typed_module
from usersignals.ingest.batching import OPTIONAL_FIELDS, encode_call, encode_obj, new_event_id
from usersignals.ingest.contract import (
    CHOICES,
    Event,
    EventError,
    Rejection,
    decode_record,
    encode_event,
    partition_for,
    validate,
)
from usersignals.ingest.tracker import FlushResult, Tracker, TrackerClosedError, TrackerStats

TS = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def read_records(
    bootstrap: str, topic: str, expected_events: int, timeout: float = 60.0
) -> list[tuple[int, int, bytes | None, list[Event]]]:
    """Every record of ``topic`` as (partition, offset, key, events), in log order per partition.

    Reads until ``expected_events`` events arrived and one more second brought nothing new.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list[tuple[int, int, bytes | None, list[Event]]] = []
        seen = 0
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
            if not batch:
                if seen >= expected_events and time.monotonic() - quiet_since > 1.0:
                    break
                continue
            quiet_since = time.monotonic()
            for records in batch.values():
                for r in records:
                    events, rejections = decode_record(r.value)
                    assert rejections == []
                    out.append((r.partition, r.offset, r.key, events))
                    seen += len(events)
        return sorted(out, key=lambda rec: (rec[0], rec[1]))
    finally:
        consumer.close()


def events_of(records: list[tuple[int, int, bytes | None, list[Event]]]) -> list[Event]:
    return [e for _, _, _, events in records for e in events]


def make_tracker(kafka: Kafka, tmp_path: Path, **kw: Any) -> Tracker:
    return Tracker(settings=kafka.settings, spool_path=tmp_path / "t.spool", **kw)


def test_typed_methods_send_what_they_say(kafka: Kafka, tmp_path: Path) -> None:
    with make_tracker(kafka, tmp_path) as tracker:
        ids = [
            tracker.session_start("u1", session_id="s1", ts=TS, event_id="e1", platform="web"),
            tracker.message("u1", "user", tokens=12, message_id="m1", ts=TS, event_id="e2"),
            tracker.feedback("u1", "m1", -1, model="m-5", ts=TS, event_id="e3"),
            tracker.preference("u1", "m-a", "m-b", "tie", ts=TS, event_id="e4"),
            tracker.risk_flag("u1", "mania", "high", source="classifier", ts=TS, event_id="e5"),
            tracker.session_end("u1", duration_s=3.5, properties={"k": [1]}, ts=TS, event_id="e6"),
            tracker.track({"type": "message", "user_id": "u1", "role": "tool", "event_id": "e7"}),
        ]
        assert tracker.flush(30) == FlushResult(acknowledged=7)
        stats = tracker.stats
    assert ids == ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]
    assert stats == TrackerStats(accepted=7, sent=7)
    records = read_records(kafka.bootstrap, kafka.settings.events_topic, 7)
    assert [(p, k) for p, _, k, _ in records] == [(partition_for("u1", 8), b"u1")]
    events = events_of(records)
    assert [e.event_id for e in events] == ids
    assert [e.type for e in events] == [
        "session_start",
        "message",
        "feedback",
        "preference",
        "risk_flag",
        "session_end",
        "message",
    ]
    assert (events[1].role, events[1].tokens, events[1].message_id) == ("user", 12, "m1")
    assert (events[2].rating, events[2].model) == (-1, "m-5")
    assert (events[3].model_a, events[3].model_b, events[3].winner) == ("m-a", "m-b", "tie")
    assert (events[4].category, events[4].severity, events[4].source) == (
        "mania",
        "high",
        "classifier",
    )
    assert (events[5].duration_s, events[5].properties) == (3.5, {"k": [1]})
    assert all(e.ts == TS for e in events[:6])
    assert abs((events[6].ts - datetime.now(UTC)).total_seconds()) < 60


def test_a_decoded_event_is_sent_as_track_would_send_it(kafka: Kafka, tmp_path: Path) -> None:
    line = (
        b'{"event_id":"d1","type":"feedback","user_id":"u2","ts":1767225600000,'
        b'"message_id":"m","rating":1,"model":"m-5","later":{"x":1}}'
    )
    [event], rejections = decode_record(line)
    assert rejections == []
    with make_tracker(kafka, tmp_path) as tracker:
        assert tracker.track_event(event) == "d1"
        assert tracker.flush(30) == FlushResult(acknowledged=1)
        stats = tracker.stats
    assert stats == TrackerStats(accepted=1, sent=1)
    [(partition, _, key, events)] = read_records(kafka.bootstrap, kafka.settings.events_topic, 1)
    assert (partition, key, events) == (partition_for("u2", 8), b"u2", [event])
    # the very item track() queues for the same JSON, without a second validation
    assert encode_obj(json.loads(line)) == ("d1", ("u2", encode_event(event)))


def test_fills_event_id_and_ts(kafka: Kafka, tmp_path: Path) -> None:
    with make_tracker(kafka, tmp_path) as tracker:
        before = datetime.now(UTC)
        first = tracker.message("u2", "assistant")
        second = tracker.message("u2", "assistant")
        assert tracker.flush(30)
    events = events_of(read_records(kafka.bootstrap, kafka.settings.events_topic, 2))
    assert [e.event_id for e in events] == [first, second]
    assert first != second
    assert uuid.UUID(first).version == 4
    assert str(uuid.UUID(first)) == first
    assert all(before <= e.ts <= datetime.now(UTC) for e in events)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda t: t.message("u", "bot"),
            "Invalid 'role': 'bot' (must be one of 'user', 'assistant', 'system', 'tool')",
        ),
        (lambda t: t.feedback("u", "m", 2), "Invalid 'rating': 2 (must be 1, -1 or 0)"),
        (lambda t: t.preference("u", "x", "x", "a"), "Invalid 'model_b': 'x' (same as 'model_a')"),
        (
            lambda t: t.risk_flag("u", "mania", "huge"),
            "Invalid 'severity': 'huge' (must be one of 'low', 'medium', 'high', 'critical')",
        ),
        (
            lambda t: t.session_end("u", duration_s=-1),
            "Invalid 'duration_s': -1 (must be a finite number, 0 or more)",
        ),
        (
            lambda t: t.session_start(""),
            "Invalid 'user_id': '' (must be a string of 1 to 512 characters)",
        ),
        (
            lambda t: t.session_start(12345),
            "Invalid 'user_id': 12345 (must be a string of 1 to 512 characters)",
        ),
        (
            lambda t: t.session_start("u", platform="tv"),
            "Invalid 'platform': 'tv' (must be one of 'web', 'ios', 'android', 'desktop', 'api')",
        ),
        (
            lambda t: t.message("u", "user", ts="2099-01-01T00:00:00Z"),
            "Invalid 'ts': '2099-01-01T00:00:00Z' (more than 24 h after receipt)",
        ),
        (
            lambda t: t.track({"type": "message", "user_id": "u"}),
            "Missing 'role' (required for type 'message')",
        ),
        (
            lambda t: t.track({"type": "nope", "user_id": "u"}),
            "Invalid 'type': 'nope' (must be "
            "one of 'session_start', 'session_end', 'message', 'feedback', 'preference', "
            "'risk_flag', 'custom', 'identify')",
        ),
    ],
)
def test_invalid_events_raise_at_the_call(
    kafka: Kafka, tmp_path: Path, call: Any, message: str
) -> None:
    with make_tracker(kafka, tmp_path) as tracker:
        with pytest.raises(EventError) as err:
            call(tracker)
        tracker.message("u", "user", event_id="ok")
        assert tracker.flush(30)
        stats = tracker.stats
    assert str(err.value) == message
    assert err.value.rejection.message == message
    assert err.value.retryable is False
    assert stats == TrackerStats(accepted=1, sent=1)


def test_closed_tracker_refuses(kafka: Kafka, tmp_path: Path) -> None:
    tracker = make_tracker(kafka, tmp_path)
    assert tracker.close(10) is True
    with pytest.raises(TrackerClosedError) as err:
        tracker.message("u", "user", event_id="late")
    assert str(err.value) == "The tracker is closed; event 'late' was not accepted"
    assert tracker.close() is True


def test_four_threads_50k_events_exactly_once_in_their_partition(
    kafka: Kafka, tmp_path: Path
) -> None:
    per_thread, threads = 12_500, 4
    with make_tracker(kafka, tmp_path, linger_ms=20) as tracker:

        def produce(t: int) -> None:
            for i in range(per_thread):
                tracker.message(f"user-{(i * 7 + t) % 997}", "user", event_id=f"{t}-{i}", ts=TS)

        workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert tracker.flush(60).delivered
        stats = tracker.stats
    total = per_thread * threads
    assert stats == TrackerStats(accepted=total, sent=total)
    records = read_records(kafka.bootstrap, kafka.settings.events_topic, total)
    counts = Counter(e.event_id for e in events_of(records))
    assert len(counts) == total
    assert set(counts.values()) == {1}
    for partition, _, key, events in records:
        assert 1 <= len(events) <= 1000
        assert key == events[0].user_id.encode()
        assert {partition_for(e.user_id, 8) for e in events} == {partition}
    # each thread's events keep their order within a partition
    for t in range(threads):
        for p in range(8):
            seq = [
                int(e.event_id.split("-")[1])
                for part, _, _, events in records
                if part == p
                for e in events
                if e.event_id.startswith(f"{t}-")
            ]
            assert seq == sorted(seq)


# -- a typed call is checked and encoded exactly as the contract would ------------------------

NOW = datetime(2026, 8, 4, tzinfo=UTC)
_text = st.text(min_size=0, max_size=20) | st.sampled_from(["x" * 129, "x" * 257, "a\ud800", "ü"])
_odd = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats()
    | st.lists(st.integers(), max_size=2)
)
_ts = (
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(2026, 8, 6), timezones=st.just(UTC)
    )
    | st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]))
    | st.datetimes()  # naive: no offset
    | st.sampled_from(["2026-08-03T23:59:59.123+05:30", "2026-08-03", "2099-01-01T00:00:00Z"])
    | st.integers(-(10**13), 10**13)
    | _odd.filter(lambda v: v is not None)  # None: see test_a_typed_call_fills_event_id_and_ts
)
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "session_id": _text | _odd,
    "model": _text | _odd,
    "platform": st.sampled_from(["web", "ios", "tv", "WEB"]) | _odd,
    "properties": st.none() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    "role": st.sampled_from(["user", "assistant", "tool", "bot"]) | _odd,
    "tokens": st.none() | st.integers(-5, 2**70) | _odd,
    "message_id": _text | _odd,
    "name": _text | _odd,
    "rating": st.sampled_from([1, -1, 0, 2, True]) | _odd,
    "model_a": st.sampled_from(["m-a", "m-b", ""]) | _odd,
    "model_b": st.sampled_from(["m-a", "m-b", ""]) | _odd,
    "winner": st.sampled_from(["a", "b", "tie", "both_bad", "x"]) | _odd,
    "category": st.sampled_from(["mania", "other", "anger"]) | _odd,
    "severity": st.sampled_from(["low", "critical", "huge"]) | _odd,
    "source": st.sampled_from(["classifier", "moderator", "bot"]) | _odd,
    "duration_s": st.none() | st.floats() | st.integers(-3, 3) | st.just(10**400) | _odd,
}


_PLAIN_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **{
        name: st.text(min_size=1, max_size=20)
        for name in ("session_id", "model", "message_id", "name")
    },
    **{name: st.sampled_from(["m-a", "m-b", "m-c"]) for name in ("model_a", "model_b")},
    **{name: st.sampled_from(choices) for name, choices in CHOICES.items()},
    "tokens": st.integers(0, 2**63 - 1),
    "rating": st.sampled_from([1, -1, 0]),
    "duration_s": st.floats(min_value=0, allow_infinity=False),
    "properties": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
}


@st.composite
def typed_calls(
    draw: st.DrawFn, plain: bool
) -> tuple[str, Any, Any, Any, tuple[str, ...], tuple[Any, ...]]:
    """Typed calls with any arguments, or (``plain``) with mostly valid ones."""
    method = draw(st.sampled_from(sorted(typed_module.METHOD_FIELDS)))
    fields = typed_module.METHOD_FIELDS[method]
    if plain:
        values = tuple(draw(st.none() | _PLAIN_VALUES[name]) for name in fields)
        user_id = draw(st.text(min_size=1, max_size=30))
        event_id = draw(st.none() | st.text(min_size=1, max_size=40))
        ts = draw(st.datetimes(max_value=datetime(2026, 8, 5), timezones=st.just(UTC)))
    else:
        values = tuple(draw(_FIELD_VALUES[name]) for name in fields)
        user_id = draw(_text | _odd)
        event_id = draw(st.none() | _text | _odd)
        ts = draw(_ts)
    return method, user_id, event_id, ts, fields, values


@settings(max_examples=1500, deadline=None)
@given(call=typed_calls(plain=False) | typed_calls(plain=True))
def test_a_typed_call_is_what_validate_makes_of_it(call: Any) -> None:
    method, user_id, event_id, ts, fields, values = call
    try:
        got: Any = encode_call(method, user_id, event_id, ts, fields, values, now=NOW)
    except EventError as exc:
        got = exc
    obj = {"event_id": event_id, "type": method, "user_id": user_id, "ts": ts}
    if event_id is None:  # a new id was made (any valid id words an error the same way)
        obj["event_id"] = "id" if isinstance(got, EventError) else got[0]
    obj.update((f, v) for f, v in zip(fields, values, strict=True) if v is not None)
    expected = validate(obj, now=NOW)
    if isinstance(expected, Rejection):
        assert isinstance(got, EventError)
        assert got.rejection == expected
        assert str(got) == expected.message
    else:
        assert got == (expected.event_id, (expected.user_id, encode_event(expected)))


def test_a_typed_call_fills_event_id_and_ts() -> None:
    before = datetime.now(UTC)
    event_id, (user_id, data) = encode_call("message", "u", None, None, ("role",), ("user",))
    events, rejections = decode_record(data)
    assert (rejections, user_id, events[0].event_id) == ([], "u", event_id)
    assert before <= events[0].ts <= datetime.now(UTC)
    assert data == encode_event(events[0])
    assert uuid.UUID(event_id).version == 4
    assert str(uuid.UUID(event_id)) == event_id


def test_event_ids_are_unique_and_version_4() -> None:
    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert {uuid.UUID(i).version for i in ids} == {4}
    assert {uuid.UUID(i).variant for i in ids} == {uuid.RFC_4122}


def test_a_forked_child_makes_other_event_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_event_id()[:24].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_prefix = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child_prefix != new_event_id()[:24]


@pytest.mark.parametrize("method", sorted(typed_module.METHOD_FIELDS))
def test_method_fields_follow_the_signature_in_contract_order(method: str) -> None:
    params = inspect.signature(getattr(Tracker, method)).parameters
    assert typed_module.METHOD_FIELDS[method] == tuple(f for f in OPTIONAL_FIELDS if f in params)
    assert set(params) - set(OPTIONAL_FIELDS) == {"self", "user_id", "event_id", "ts"}


def test_flush_says_spooled_when_kafka_took_nothing(tmp_path: Path) -> None:
    down = Settings.load(
        environ={}, bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="down", state_dir=tmp_path
    )
    with Tracker(settings=down, connect_timeout_ms=200, backoff_max_ms=200) as tracker:
        for i in range(5):
            tracker.message("u", "user", event_id=f"s{i}", ts=TS)
        result = tracker.flush(30)
        again = tracker.flush(30)  # nothing new since: nothing happened
    assert result == FlushResult(spooled=5, spool_records=1)  # one batch of the five
    assert (bool(result), result.delivered, result.durable) == (False, False, True)
    assert again == FlushResult(spool_records=1)
    assert (again.delivered, again.durable) == (False, True)


@pytest.mark.parametrize(
    ("result", "delivered", "durable"),
    [
        (FlushResult(), True, True),
        (FlushResult(acknowledged=3), True, True),
        (FlushResult(acknowledged=3, spooled=1, spool_records=1), False, True),
        (FlushResult(acknowledged=3, spool_records=2), False, True),
        (FlushResult(acknowledged=3, failed=1), False, False),
        (FlushResult(acknowledged=3, timed_out=True), False, False),
    ],
)
def test_flush_result_says_what_happened(
    result: FlushResult, delivered: bool, durable: bool
) -> None:
    assert (result.delivered, result.durable, bool(result)) == (delivered, durable, delivered)
