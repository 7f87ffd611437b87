"""The worker's pure parts: persisted deltas, rebuild, pruning, record splitting, dead letters,
Prometheus label folding. No broker: a dict stands in for the Faust table's storage."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.streams.test_wellbeing_live import oracle_live
from tests.test_oracle import ev, flag, vote
from usersignals.ingest.contract import Event, Rejection, decode_record, encode_batch
from usersignals.ingest.partitioner import partition_for
from usersignals.metrics.periods import DayRange
from usersignals.streams.changelog import (
    PartitionKeeper,
    decode_events,
    encode_events,
    event_key,
    late_key,
    rebuild_keepers,
    rejection_key,
)
from usersignals.streams.exposition import EventTimeLag, fold_models
from usersignals.streams.folds import PartitionState
from usersignals.streams.livereport import live_report
from usersignals.streams.records import dead_letter, split_record
from usersignals.streams.web import BadDayRangeError, day_range_of

EVENTS = [
    ev("e1", "用户", "09-01"),
    vote("e2", 'a"b', "2026-09-01T00:00:00+00:00", "m1", 1, model=None),
    flag("e3", "x,y", "2026-09-02T23:59:59.999000+00:00", "mania", "high", model="m-2"),
    ev("e4", "u" * 140, "09-03", "preference", model_a="m1", model_b="m2", winner="tie"),
    vote("e5", 'a"b', "09-04", "m1", 0),
]


def test_delta_encoding_keeps_every_metric_field_and_drops_the_rest() -> None:
    assert decode_events(encode_events(EVENTS)) == [
        msgspec.structs.replace(e, role=None) for e in EVENTS
    ]


def test_keys_name_partition_and_offset() -> None:
    assert event_key(3, 42) == b"3/e/00000000000000000042"
    assert rejection_key(7, 5) == b"7/r/00000000000000000005"


def test_one_key_per_record_and_rebuild_is_equal() -> None:
    table: dict[bytes, bytes] = {}
    keeper = PartitionKeeper(2, 35)
    keeper.fold(table, 10, EVENTS[:3])
    keeper.fold(table, 11, EVENTS[2:], [Rejection(reason="empty", message="m")])
    assert sorted(table) == [
        b"2/e/00000000000000000010",
        b"2/e/00000000000000000011",
        b"2/r/00000000000000000011",
    ]
    assert [e.event_id for e in decode_events(table[b"2/e/00000000000000000011"])] == [
        "e4",
        "e5",
    ]
    rebuilt = rebuild_keepers(table.items(), [2], 35)[2]
    assert live_report([rebuilt.state]) == live_report([keeper.state])
    assert rebuilt.state.rejected() == {"empty": 1}


def test_rejections_keep_the_day_they_were_received_across_a_rebuild() -> None:
    table: dict[bytes, bytes] = {}
    keeper = PartitionKeeper(2, 35)
    bad = [
        Rejection(reason="empty", message="m", index=0),
        Rejection(reason="bad_type", message="m", index=1),
    ]
    keeper.fold(table, 11, [], bad, date(2026, 3, 2))
    # a record persisted before rejections carried their day: counted, day unknown
    table[rejection_key(2, 12)] = msgspec.msgpack.encode([(None, "not_json")])
    rebuilt = rebuild_keepers(table.items(), [2], 35)[2]
    assert sorted(rebuilt.state.rejected_by_day(), key=str) == [
        ["2026-03-02", "bad_type", 1],
        ["2026-03-02", "empty", 1],
        [None, "not_json", 1],
    ]
    assert live_report([rebuilt.state], select=DayRange(date(2026, 3, 2), None))["rejected"] == [
        {"reason": "bad_type", "count": 1},
        {"reason": "empty", "count": 1},
    ]
    assert live_report([rebuilt.state])["rejected"] == [
        {"reason": "bad_type", "count": 1},
        {"reason": "empty", "count": 1},
        {"reason": "not_json", "count": 1},
    ]


def test_redelivered_record_writes_nothing() -> None:
    table: dict[bytes, bytes] = {}
    keeper = PartitionKeeper(0, 35)
    keeper.fold(table, 0, EVENTS, [Rejection(reason="empty", message="m")])
    before = dict(table)
    table.clear()
    keeper.fold(table, 0, EVENTS, [Rejection(reason="empty", message="m")])
    assert table == {}
    assert len(before) == 2


def test_prune_rewrites_keys_without_dropped_days_and_deletes_empty_ones() -> None:
    table: dict[bytes, bytes] = {}
    keeper = PartitionKeeper(0, 2)
    keeper.fold(table, 0, [ev("a", "u", "09-01"), ev("b", "u", "09-02")])
    keeper.fold(table, 1, [ev("z", "u", "08-30")])
    keeper.fold(table, 2, [ev("c", "u", "09-04")])
    assert sorted(table) == [
        b"0/e/00000000000000000000",
        b"0/e/00000000000000000002",
        b"0/l/00000000000000000001",  # the late event's count
    ]
    assert [e.event_id for e in decode_events(table[b"0/e/00000000000000000000"])] == ["b"]


def test_rebuild_after_a_shorter_retention_deletes_stale_keys_on_the_next_record() -> None:
    table: dict[bytes, bytes] = {}
    PartitionKeeper(0, 35).fold(table, 0, [ev("a", "u", "09-01"), ev("b", "u", "09-10")])
    keeper = rebuild_keepers(table.items(), [0, 1], 3)[0]
    assert keeper.state.day_range() == (datetime(2026, 9, 10).date(),) * 2
    assert len(decode_events(table[b"0/e/00000000000000000000"])) == 2
    keeper.fold(table, 1, [])
    assert list(table) == [b"0/e/00000000000000000000"]
    assert [e.event_id for e in decode_events(table[b"0/e/00000000000000000000"])] == ["b"]


def test_rebuild_ignores_other_partitions_keys() -> None:
    table: dict[bytes, bytes] = {}
    PartitionKeeper(1, 35).fold(table, 0, EVENTS)
    table[b"not-ours"] = b"x"
    keepers = rebuild_keepers(table.items(), [0], 35)
    assert keepers[0].state.day_range() is None


@settings(max_examples=40, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(EVENTS) - 1), max_size=20),
    cut=st.integers(0, 20),
)
def test_crash_and_replay_from_any_commit_equals_the_oracle(picks: list[int], cut: int) -> None:
    """A crash after `cut` records: rebuild from the table, replay from an earlier offset."""
    records = [[EVENTS[i]] for i in picks]
    table: dict[bytes, bytes] = {}
    first = PartitionKeeper(0, 35)
    for off, rec in enumerate(records[:cut]):
        first.fold(table, off, rec)
    second = rebuild_keepers(table.items(), [0], 35)[0]
    for off, rec in list(enumerate(records))[cut // 2 :]:
        second.fold(table, off, rec)
    flat = [e for rec in records for e in rec]
    assert live_report([second.state]) | {"arena": []} == oracle_live(flat)


def test_split_record_forwards_other_partitions_users_and_rejects_bad_elements() -> None:
    users = ["alice", "bob", "carol", "dave"]
    mine = partition_for("alice", 4)
    events = [ev(f"e{i}", u, "09-01") for i, u in enumerate(users)]
    value = encode_batch(events)[:-1] + b",7]"
    out = split_record(value, mine, 4)
    assert [e.user_id for e in out.local] == [u for u in users if partition_for(u, 4) == mine]
    forwarded = {f.partition: f for f in out.forward}
    for f in out.forward:
        assert f.partition != mine
    assert sorted(forwarded) == sorted({partition_for(u, 4) for u in users} - {mine})
    assert [(r.reason, r.index, r.raw) for r in out.rejections] == [("not_object", 4, b"7")]


def test_known_users_skip_the_partition_check() -> None:
    users = ["alice", "bob", "carol", "dave"]
    mine = partition_for("alice", 4)
    value = encode_batch([ev(f"e{i}", u, "09-01") for i, u in enumerate(users)])
    foreign = [u for u in users if partition_for(u, 4) != mine]
    out = split_record(value, mine, 4, known={foreign[0]})
    assert [e.user_id for e in out.local] == ["alice", foreign[0]]
    assert sum(len(decode_record(f.value)[0]) for f in out.forward) == len(foreign) - 1


def test_held_users_are_one_string_each_and_leave_with_their_days() -> None:
    state = PartitionState(retention_days=2)
    state.apply([ev("e1", "".join(["u", "1"]), "09-01"), ev("e2", "".join(["u", "1"]), "09-02")])
    first, second = (next(iter(d.users)) for d in state._days.values())
    assert first is second
    assert "u1" in state.users
    state.apply([ev("e3", "u2", "09-04")])
    state.prune()
    assert ("u1" in state.users, "u2" in state.users) == (True, True)
    state.apply([ev("e4", "u2", "09-06")])
    state.prune()
    assert ("u1" in state.users, "u2" in state.users) == (False, True)


def test_dead_letter_keeps_bytes_and_names_the_origin() -> None:
    rejection = Rejection(reason="bad_value", message="bad 'x'", field="role", index=3, raw=b"{}")
    letter = dead_letter(rejection, "p.events", 5, 1234)
    assert letter.value == b"{}"
    assert letter.headers == [
        ("reason", b"bad_value"),
        ("message", b"bad 'x'"),
        ("field", b"role"),
        ("source_topic", b"p.events"),
        ("source_partition", b"5"),
        ("source_offset", b"1234"),
        ("index", b"3"),
        ("length", b"2"),
        ("sha256", hashlib.sha256(b"{}").hexdigest().encode()),
    ]
    whole = dead_letter(Rejection(reason="empty", message="empty"), "t", 0, 0)
    assert [k for k, _ in whole.headers] == [
        "reason",
        "message",
        "source_topic",
        "source_partition",
        "source_offset",
        "length",
        "sha256",
    ]


@pytest.mark.parametrize(
    ("max_models", "expected"),
    [
        (3, {"a": "a", "b": "b", "c": "c", None: "none"}),
        (2, {"a": "a", "b": "b", "c": "other", None: "none"}),
        (1, {"a": "a", "b": "other", "c": "other", None: "none"}),
    ],
)
def test_models_beyond_the_bound_fold_into_other(
    max_models: int, expected: dict[str | None, str]
) -> None:
    votes = {("a", 1): 5, ("b", -1): 3, ("b", 1): 1, ("c", 1): 2, (None, 1): 9}
    assert fold_models(votes, max_models) == expected


def test_event_time_lag_buckets() -> None:
    lag = EventTimeLag([10.0, 100.0])
    now = datetime(2026, 9, 1, 12, tzinfo=UTC)
    events = [
        Event(
            event_id=str(s), type="message", user_id="u", ts=now - timedelta(seconds=s), role="user"
        )
        for s in (5, 50, 500)
    ]
    lag.observe(events, now)
    assert lag.counts == [1, 1, 1]
    assert lag.total == 555.0


@pytest.mark.parametrize(
    ("first", "last"),
    [
        ("2026-13-01", "2026-09-02"),
        ("20260901", "2026-09-02"),
        ("", "x"),
        ("2026-09-03", "2026-09-02"),
    ],
)
def test_bad_partial_day_ranges_are_refused(first: str, last: str) -> None:
    with pytest.raises(BadDayRangeError) as exc:
        day_range_of({"from": first, "to": last})
    assert str(exc.value) == (
        f"Bad day range: from={first!r} to={last!r} (expected YYYY-MM-DD, from <= to)"
    )
    assert (exc.value.first, exc.value.last, exc.value.retryable) == (first, last, False)


def test_partial_day_range() -> None:
    assert day_range_of({"from": "2026-09-01", "to": "2026-09-01"}) == (
        datetime(2026, 9, 1).date(),
        datetime(2026, 9, 1).date(),
    )


def test_late_events_count_once_per_record_and_survive_a_rebuild() -> None:
    table: dict[bytes, bytes] = {}
    keeper = PartitionKeeper(1, 2)
    keeper.fold(table, 0, [ev("e1", "u", "09-10")])
    late = [ev("e2", "u", "09-01"), ev("e3", "u", "09-02"), ev("e4", "u", "09-10")]
    keeper.fold(table, 1, late)
    keeper.fold(table, 1, late)  # redelivered
    keeper.fold(table, 2, late[:1])
    assert keeper.state.late == 3
    assert table[late_key(1, 1)] == msgspec.msgpack.encode(2)
    assert late_key(1, 1) == b"1/l/00000000000000000001"
    rebuilt = rebuild_keepers(table.items(), [1], 2)[1]
    assert rebuilt.state.late == 3
    rebuilt.fold(table, 1, late)
    assert rebuilt.state.late == 3


def test_seek_to_committed_rewinds_partitions_never_committed() -> None:
    """Records Faust dropped at a rebalance are read again even where nothing was committed."""
    import asyncio

    from faust.types import TP

    from usersignals.streams.app import rewind_uncommitted

    class Consumer:
        def __init__(self) -> None:
            self.seeks: list[tuple[TP, int]] = []

        async def seek_to_committed(self) -> dict[TP, int | None]:
            return {TP("ev", 0): None, TP("ev", 1): 0, TP("ev", 2): 17, TP("other", 0): None}

        async def seek(self, tp: TP, offset: int) -> None:
            self.seeks.append((tp, offset))

    consumer = Consumer()
    rewind_uncommitted(consumer, "ev")
    committed = asyncio.run(consumer.seek_to_committed())
    assert committed[TP("ev", 2)] == 17
    assert consumer.seeks == [(TP("ev", 0), 0), (TP("ev", 1), 0)]


def test_a_commit_waits_until_every_buffered_send_is_acknowledged() -> None:
    """Faust flushes its producer buffer before it commits offsets, but that flush gives up
    when no message went out for 0.1 s: under load, offsets were committed while changelog
    writes still sat in the buffer, and a SIGKILL then lost them (the live report came out
    short after the fault suite's worker kills). With the worker's flush, the commit waits
    until every message put before it is acknowledged, however slow each send is."""
    import asyncio

    from faust.transport.producer import ProducerBuffer

    from usersignals.streams.app import flush_every_send

    async def main() -> list[bool]:
        loop = asyncio.get_running_loop()
        buffer = ProducerBuffer(loop=loop)
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))

        async def slow_send(fut: asyncio.Future[None]) -> None:
            await asyncio.sleep(0.25)  # handed on, then acknowledged a little later
            loop.call_later(0.05, fut.set_result, None)

        buffer._send_pending = slow_send  # type: ignore[method-assign]
        flush_every_send(buffer)
        await buffer.start()
        try:
            futures: list[asyncio.Future[None]] = [loop.create_future() for _ in range(3)]
            for fut in futures:
                buffer.put(fut)  # type: ignore[arg-type]
            await buffer.flush()
            return [fut.done() for fut in futures]
        finally:
            await buffer.stop()

    assert asyncio.run(main()) == [True, True, True]


def test_the_worker_commits_only_what_its_producer_delivered(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from usersignals.config import Settings\n"
        "from usersignals.streams.app import LiveWorker\n"
        "worker = LiveWorker(Settings.load(environ={}, state_dir=sys.argv[1]), port=6066)\n"
        "print(worker.app.producer.buffer.flush.__qualname__)\n"
    )  # in a child: a Faust app leaves an event loop behind in the process that made it
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == "flush_every_send.<locals>.flush"
