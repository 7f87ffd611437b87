"""The SDK against the real broker: typed methods, validation at the call, batching, counters."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Kafka
from usersignals.ingest.contract import Event, EventError, decode_record, partition_for
from usersignals.ingest.tracker import Tracker, TrackerClosedError, TrackerStats

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
        assert tracker.flush(30) is True
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
            "'risk_flag')",
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
        assert tracker.flush(60) is True
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


# -- the fast path of the typed methods is the contract, byte for byte -----------------------

_text = st.text(min_size=0, max_size=20)
_maybe = lambda s: st.none() | s  # noqa: E731


@settings(max_examples=300, deadline=None)
@given(
    type_and_fields=st.one_of(
        st.tuples(st.just("session_start"), st.fixed_dictionaries({})),
        st.tuples(
            st.just("session_end"),
            st.fixed_dictionaries(
                {"duration_s": _maybe(st.floats() | st.integers(min_value=-3, max_value=3))}
            ),
        ),
        st.tuples(
            st.just("message"),
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "assistant", "bot"]),
                    "tokens": _maybe(st.integers(min_value=-5, max_value=2**70)),
                    "message_id": _maybe(_text),
                }
            ),
        ),
        st.tuples(
            st.just("preference"),
            st.fixed_dictionaries(
                {"model_a": _text, "model_b": _text, "winner": st.sampled_from(["a", "tie", "x"])}
            ),
        ),
    ),
    user_id=_text,
    session_id=_maybe(_text),
    platform=_maybe(st.sampled_from(["web", "ios", "tv"])),
    ts=st.datetimes(timezones=st.just(UTC)) | st.integers(min_value=-(10**13), max_value=10**13),
)
def test_fast_check_equals_the_contract(  # type: ignore[no-untyped-def]
    type_and_fields, user_id, session_id, platform, ts
) -> None:
    from usersignals.ingest.contract import encode_event, validate
    from usersignals.ingest.tracker import _canonical_ts, _fast_check

    type_, fields = type_and_fields
    exact = isinstance(ts, datetime)
    obj = {"event_id": "e1", "type": type_, "user_id": user_id}
    obj["ts"] = _canonical_ts(ts) if exact else ts
    for name, value in [("session_id", session_id), ("platform", platform), *fields.items()]:
        if value is not None:
            obj[name] = value
    obj = {k: obj[k] for k in Event.__struct_fields__ if k in obj}  # the contract's order
    expected = validate(dict(obj))
    fast = _fast_check(dict(obj), exact)
    if fast is None:
        return  # the slow path (validate) decides
    event, data = fast
    assert event == expected
    assert data == encode_event(event)


@pytest.mark.parametrize(
    ("obj", "fast"),
    [
        ({"event_id": "e", "type": "message", "user_id": "u", "ts": 1, "role": "user"}, True),
        (
            {"event_id": "e", "type": "session_end", "user_id": "u", "ts": 1, "duration_s": 2.5},
            True,
        ),
        ({"event_id": "e", "type": "session_end", "user_id": "u", "ts": 1, "duration_s": 2}, False),
        ({"event_id": "e", "type": "message", "user_id": "u", "ts": 1, "role": "bot"}, False),
        (
            {"event_id": "e", "type": "session_start", "user_id": "u", "ts": 1, "properties": {}},
            False,
        ),
    ],
)
def test_fast_check_takes_plain_calls(obj: dict[str, object], fast: bool) -> None:
    from usersignals.ingest.tracker import _fast_check

    assert (_fast_check(dict(obj), False) is not None) is fast
