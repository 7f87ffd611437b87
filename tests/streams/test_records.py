"""What one record turns into, at and beyond the limits: every forward and dead letter fits in
the worker's producer request, forwards carry the events unchanged, oversized input keeps a
bounded prefix with its length and hash; a partition state tells a new incarnation of the topic
from a replay. Pure: no broker."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from usersignals.broker import MAX_MESSAGE_BYTES
from usersignals.ingest.contract import decode_record, encode_batch
from usersignals.ingest.event import (
    DEAD_PREFIX_BYTES,
    DEAD_TEXT_BYTES,
    MAX_BATCH,
    MAX_EVENT_BYTES,
    MAX_RECORD_BYTES,
    Rejection,
    dead_copy,
)
from usersignals.ingest.partitioner import partition_for
from usersignals.streams.changelog import PartitionKeeper, rebuild_keepers, record_fingerprint
from usersignals.streams.records import dead_letter, pack_batches, split_record

N = 8
NOW = datetime(2026, 9, 2, tzinfo=UTC)


def wire_event(i: int, user: str, pad: int = 0) -> dict[str, object]:
    out: dict[str, object] = {
        "event_id": f"e{i}",
        "type": "session_start",
        "user_id": user,
        "ts": 1788220800000 + i,  # epoch ms: re-encoded as RFC 3339 it grows by 14 bytes
    }
    if pad:
        out["properties"] = {"p": "x" * pad}
    return out


def user_of(partition: int, n: int) -> list[str]:
    """``n`` user ids of ``partition``."""
    found: list[str] = []
    i = 0
    while len(found) < n:
        uid = f"u{i}"
        if partition_for(uid, N) == partition:
            found.append(uid)
        i += 1
    return found


def request_size(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    """The size aiokafka's producer checks against ``max_request_size``."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


def test_limits_line_up() -> None:
    assert (MAX_RECORD_BYTES, MAX_MESSAGE_BYTES, MAX_BATCH) == (1_048_576, 1_114_112, 1000)
    assert (DEAD_PREFIX_BYTES, DEAD_TEXT_BYTES) == (4096, 1024)
    # the largest dead letter the worker builds: a whole record of the limit, texts at theirs
    worst = dead_letter(
        Rejection(
            reason="bad_value",
            message="m" * 10_000,
            field="f" * 10_000,
            index=999,
            raw=b"x" * MAX_RECORD_BYTES,
        ),
        "p" * 249,
        2**31 - 1,
        2**63 - 1,
    )
    assert request_size(None, worst.value, worst.headers) < MAX_MESSAGE_BYTES


@pytest.mark.parametrize(
    ("sizes", "max_bytes", "max_events", "expected"),
    [
        pytest.param([], 100, 10, [], id="nothing"),
        pytest.param([3, 3, 3], 100, 10, [3], id="one-record"),
        pytest.param([3, 3, 3], 100, 2, [2, 1], id="event-bound"),
        pytest.param([4, 4, 4], 11, 10, [2, 1], id="byte-bound-exact"),  # [aaaa,bbbb] is 11
        pytest.param([4, 4, 4], 10, 10, [1, 1, 1], id="byte-bound-one-short"),
        pytest.param([50, 1], 20, 10, [1, 1], id="too-large-piece-alone"),
    ],
)
def test_pack_batches(
    sizes: list[int], max_bytes: int, max_events: int, expected: list[int]
) -> None:
    pieces = [str(i % 10).encode() * n for i, n in enumerate(sizes)]
    batches = pack_batches(pieces, max_bytes, max_events)
    assert [b.count(b",") + 1 for b in batches] == expected
    assert b",".join(b[1:-1] for b in batches) == b",".join(pieces)
    assert all(len(b) <= max_bytes for b, n in zip(batches, expected, strict=True) if n > 1)


def big_foreign_batch() -> bytes:
    """A valid 1,000-event batch just under 1 MiB, of users of partition 1, and its events:
    re-encoded it would be over the record limit."""
    users = user_of(1, 10)
    events = [wire_event(i, users[i % 10], pad=942) for i in range(MAX_BATCH)]
    value = json.dumps(events, separators=(",", ":")).encode()
    assert 1_000_000 < len(value) <= MAX_RECORD_BYTES
    assert len(encode_batch(decode_record(value, now=NOW)[0])) > MAX_RECORD_BYTES
    return value


def test_a_valid_batch_near_the_limit_is_forwarded_in_records_that_fit() -> None:
    value = big_foreign_batch()
    out = split_record(value, 0, N, now=NOW)
    assert (out.local, out.rejections) == ([], [])
    assert [f.partition for f in out.forward] == [1]
    (fwd,) = out.forward
    assert len(fwd.value) == len(value)  # the events' own bytes
    assert request_size(fwd.key, fwd.value, []) < MAX_MESSAGE_BYTES
    assert decode_record(fwd.value, now=NOW) == decode_record(value, now=NOW)


def test_forwards_split_by_partition_keep_order_and_bytes() -> None:
    mine, other = user_of(0, 2), user_of(3, 2)
    events = [wire_event(i, u) for i, u in enumerate([mine[0], other[0], mine[1], other[1]])]
    value = json.dumps(events).encode()
    out = split_record(value[:-1] + b", 7]", 0, N, now=NOW)
    assert [e.event_id for e in out.local] == ["e0", "e2"]
    assert [(r.reason, r.index) for r in out.rejections] == [("not_object", 4)]
    (fwd,) = out.forward
    assert (fwd.partition, fwd.key) == (3, other[0].encode())
    assert json.loads(fwd.value) == [events[1], events[3]]
    single = json.dumps(events[1]).encode()
    (one,) = split_record(b"  " + single + b"\n", 0, N, now=NOW).forward
    assert one.value == b"[" + single + b"]"


def rejection_of(value: bytes) -> Rejection:
    _, (rejection,) = decode_record(value, now=NOW)
    return rejection


BIG = b"[" + b"x" * MAX_RECORD_BYTES
"""A record of 1 MiB + 1 byte."""


@pytest.mark.parametrize(
    ("value", "reason", "kept"),
    [
        pytest.param(b"[" + b"y" * 999_999, "not_json", 1_000_000, id="1000000-not-json-whole"),
        pytest.param(b"y" * 1_000_000, "too_large", 1_000_000, id="1000000-not-an-event"),
        pytest.param(b"[" * MAX_RECORD_BYTES, "too_deep", MAX_RECORD_BYTES, id="1MiB-whole"),
        pytest.param(BIG, "too_large", DEAD_PREFIX_BYTES, id="1MiB+1-prefix"),
        pytest.param(b"z" * (20 << 20), "too_large", DEAD_PREFIX_BYTES, id="20MiB-prefix"),
    ],
)
def test_dead_letters_of_large_records_fit_and_name_the_input(
    value: bytes, reason: str, kept: int
) -> None:
    rejection = rejection_of(value)
    assert rejection.reason == reason
    letter = dead_letter(rejection, "p.events", 4, 77)
    headers = dict(letter.headers)
    assert letter.value == value[:kept]
    assert headers["length"] == str(len(value)).encode()
    assert headers["sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["source_offset"] == b"77"
    assert request_size(None, letter.value, letter.headers) < MAX_MESSAGE_BYTES


def test_an_oversized_input_keeps_its_prefix_and_says_so() -> None:
    kept, digest = dead_copy(rejection_of(BIG))
    assert digest == hashlib.sha256(BIG).hexdigest()
    assert kept.raw == BIG[:DEAD_PREFIX_BYTES]
    assert kept.message == (
        f"Record of 1048577 bytes (at most 1048576); first 4096 bytes kept, sha256 {digest}"
    )


def test_long_texts_are_cut_to_whole_characters() -> None:
    rejection = Rejection(reason="bad_value", message="é" * 600, field="ü" * 600, raw=b"{}")
    kept, _ = dead_copy(rejection)
    assert kept.message == "é" * 510 + "..."
    assert kept.field == "ü" * 510 + "..."
    assert len(kept.message.encode()) == 1023
    small = Rejection(reason="empty", message="Empty record")
    assert dead_copy(small)[0] is small


def test_an_event_at_its_limit_is_forwarded_unchanged() -> None:
    (user,) = user_of(5, 1)
    obj = wire_event(1, user, pad=1)
    raw = json.dumps(obj).encode()
    obj["properties"] = {"p": "x" * (MAX_EVENT_BYTES - len(raw) + 1)}
    raw = json.dumps(obj).encode()
    assert len(raw) == MAX_EVENT_BYTES
    (fwd,) = split_record(raw, 0, N, now=NOW).forward
    assert decode_record(fwd.value, now=NOW)[1] == []


@pytest.mark.parametrize(
    ("offset", "same", "expected"),
    [
        pytest.param(3, True, None, id="first-again"),
        pytest.param(5, True, None, id="replay-below-position"),
        pytest.param(9, True, None, id="last-again"),
        pytest.param(12, False, None, id="new-offset"),
        pytest.param(2, False, "offset 2 is before 3, the first offset folded", id="before"),
        pytest.param(3, False, "another record at offset 3, the first folded", id="first"),
        pytest.param(9, False, "another record at offset 9, the last folded", id="last"),
    ],
)
def test_a_new_incarnation_is_told_by_the_first_and_last_records(
    offset: int, same: bool, expected: str | None
) -> None:
    table: dict[bytes, bytes] = {}
    keeper = PartitionKeeper(1, 35)
    prints = {o: record_fingerprint(f"v{o}".encode(), 1000 + o) for o in range(3, 10)}
    for o, fp in prints.items():
        assert keeper.incarnation_changed(o, fp) is None
        keeper.mark(table, o, fp)
    fp = prints.get(offset, b"") if same else record_fingerprint(b"other", 1)
    assert keeper.incarnation_changed(offset, fp) == expected
    (rebuilt,) = rebuild_keepers(table.items(), [1], 35).values()
    assert rebuilt.first == (3, prints[3])  # persisted: a restarted worker still knows it


def test_the_warehouse_row_of_an_oversized_record_is_its_dead_letter() -> None:
    from usersignals.warehouse.rows import PartitionBuffer, SourceRecord

    buffer = PartitionBuffer("p.events", 4, N)
    buffer.add(SourceRecord(4, 77, int(NOW.timestamp() * 1000), None, BIG))
    (row,) = buffer.deadletter_table().to_pylist()
    letter = dead_letter(rejection_of(BIG), "p.events", 4, 77)
    headers = dict(letter.headers)
    assert (row["reason"], row["message"].encode(), row["raw"]) == (
        "too_large",
        headers["message"],
        letter.value,
    )
    assert (row["source_partition"], row["source_offset"]) == (4, 77)
    assert len(row["raw"]) == DEAD_PREFIX_BYTES
