"""Reading the dead-letter table back, and replaying it (through the send seam)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from usersignals.ingest.contract import MAX_RECORD_BYTES, Rejection, partition_for
from usersignals.ingest.event import dead_copy
from usersignals.warehouse.commit import write_range
from usersignals.warehouse.deadletter import (
    read_deadletter,
    replay,
    replay_key,
    replayed_positions,
    summary,
)
from usersignals.warehouse.layout import DEADLETTER_SCHEMA, EVENTS_SCHEMA, FileRange

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def dead(rows: list[tuple[str, int, int, int | None, bytes]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "reason": reason,
                "message": f"{reason}!",
                "source_topic": "x.events",
                "source_partition": p,
                "source_offset": o,
                "batch_index": i,
                "record_key": b"k",
                "raw": raw,
                "received_at": T0,
            }
            for reason, p, o, i, raw in rows
        ],
        schema=DEADLETTER_SCHEMA,
    )


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    empty = EVENTS_SCHEMA.empty_table()
    write_range(
        tmp_path,
        FileRange(1, 0, 9),
        empty,
        dead(
            [
                ("not_json", 1, 3, None, b"{oops"),
                ("missing_field", 1, 2, 4, b'{"user_id": "alice"}'),
            ]
        ),
    )
    write_range(tmp_path, FileRange(0, 0, 4), empty, dead([("bad_value", 0, 4, 0, b'{"a": 1}')]))
    # a range that was never committed: not part of the table
    (tmp_path / "deadletter" / "p002-000000000000-000000000001.parquet").write_bytes(b"x")
    return tmp_path


def test_read_in_log_order_and_by_reason(warehouse: Path) -> None:
    table = read_deadletter(warehouse)
    assert table.select(["source_partition", "source_offset", "batch_index"]).to_pylist() == [
        {"source_partition": 0, "source_offset": 4, "batch_index": 0},
        {"source_partition": 1, "source_offset": 2, "batch_index": 4},
        {"source_partition": 1, "source_offset": 3, "batch_index": None},
    ]
    assert read_deadletter(warehouse, "not_json").column("raw").to_pylist() == [b"{oops"]
    assert read_deadletter(warehouse / "nothing").num_rows == 0


def test_summary(warehouse: Path) -> None:
    assert summary(warehouse) == [
        {"reason": "bad_value", "count": 1},
        {"reason": "missing_field", "count": 1},
        {"reason": "not_json", "count": 1},
    ]


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        (b'{"user_id": "alice"}', b"k", b"alice"),
        (b'{"user_id": ""}', b"k", b"k"),
        (b'{"user_id": 12345}', None, None),
        (b"{oops", b"k", b"k"),
        (b"\xff", None, None),
        (b"[1]", b"k", b"k"),
    ],
)
def test_replay_key(raw: bytes, key: bytes | None, expected: bytes | None) -> None:
    assert replay_key(raw, key) == expected


def test_replay_sends_each_row_once(warehouse: Path) -> None:
    sent: list[tuple[bytes, bytes | None, int]] = []

    def send(value: bytes, key: bytes | None, partition: int) -> None:
        sent.append((value, key, partition))

    dry = replay(warehouse, send, 8, dry_run=True)
    assert (dry.sent, dry.skipped, sent) == (3, 0, [])
    first = replay(warehouse, send, 8, reason="missing_field")
    assert (first.sent, first.skipped) == (1, 0)
    assert sent == [(b'{"user_id": "alice"}', b"alice", partition_for("alice", 8))]
    rest = replay(warehouse, send, 8)
    assert (rest.sent, rest.skipped) == (2, 1)
    assert sent[1:] == [
        (b'{"a": 1}', b"k", partition_for("k", 8)),
        (b"{oops", b"k", partition_for("k", 8)),
    ]
    assert replayed_positions(warehouse) == {(1, 2, 4), (0, 4, 0), (1, 3, None)}
    again = replay(warehouse, send, 8, again=True)
    assert (again.sent, again.skipped, len(sent)) == (3, 0, 6)


def test_replay_leaves_out_a_row_that_kept_only_a_prefix(tmp_path: Path) -> None:
    """A record over 1 MiB is dead-lettered as its first bytes: sending them again would only
    make another dead letter of a fragment, so replay counts such a row as ``cut``, unsent."""
    big = b"x" * (MAX_RECORD_BYTES + 1)
    kept, _ = dead_copy(Rejection(reason="too_large", message="Record too big", raw=big))
    table = dead([("too_large", 0, 7, None, kept.raw), ("not_json", 0, 8, None, b"{oops")])
    rows = table.to_pylist()
    rows[0]["message"] = kept.message
    write_range(
        tmp_path,
        FileRange(0, 0, 9),
        EVENTS_SCHEMA.empty_table(),
        pa.Table.from_pylist(rows, schema=DEADLETTER_SCHEMA),
    )
    sent: list[bytes] = []
    result = replay(tmp_path, lambda value, key, partition: sent.append(value), 8)
    assert (result.sent, result.skipped, result.cut, sent) == (1, 0, 1, [b"{oops"])
    assert replayed_positions(tmp_path) == {(0, 8, None)}
