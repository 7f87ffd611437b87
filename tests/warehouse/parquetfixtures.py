"""Warehouses made from lists of events, in the exact layout the loader writes.

Tests hand :func:`write_warehouse` the events of a log in order; it gives each one a log
position (source partition, offset, index in the record), writes the flushes with the loader's
own ``commit.write_range`` (a file per event day, then the commit marker) and returns the events
in log order, (partition, offset, index), which is the order the oracle wants.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from usersignals.ingest.contract import Event, partition_for
from usersignals.warehouse.commit import write_range
from usersignals.warehouse.layout import DEADLETTER_SCHEMA, EVENTS_SCHEMA, FileRange

__all__ = ["RECEIVED", "Positioned", "events_table", "position", "write_warehouse"]

RECEIVED = datetime(2026, 9, 1, tzinfo=UTC)
"""The arrival time stamped on events that carry none."""

Positioned = tuple[Event, int, int, int]
"""An event with its log position: (event, partition, offset, index in the record)."""

_encode = msgspec.json.Encoder(order="deterministic").encode


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else _encode(value).decode()


def events_table(rows: Sequence[Positioned]) -> pa.Table:
    """Rows of ``EVENTS_SCHEMA`` for positioned events (what the loader stores)."""
    columns: dict[str, list[Any]] = {name: [] for name in EVENTS_SCHEMA.names}
    for event, partition, offset, index in rows:
        record = msgspec.structs.asdict(event)
        record["day"] = event.ts.astimezone(UTC).date()
        record["properties"] = _json(event.properties)
        record["extra"] = _json(event.extra)
        record["received_at"] = event.received_at or RECEIVED
        record["source_partition"] = partition
        record["source_offset"] = offset
        record["batch_index"] = index
        for name in EVENTS_SCHEMA.names:
            columns[name].append(record[name])
    return pa.Table.from_pydict(columns, schema=EVENTS_SCHEMA)


def position(
    events: Sequence[Event], *, partitions: int = 1, per_record: int = 3
) -> list[Positioned]:
    """Log positions for events listed in the order each partition received them.

    With one partition the list order is the log order. With more, an event goes to its
    user's partition (the Kafka default partitioner), and the relative order of the events of
    one partition is kept. Consecutive events of a partition share records of ``per_record``.
    """
    counters = [0] * partitions
    out: list[Positioned] = []
    for event in events:
        p = 0 if partitions == 1 else partition_for(event.user_id, partitions)
        n = counters[p]
        counters[p] += 1
        out.append((event, p, n // per_record, n % per_record))
    out.sort(key=lambda row: row[1:])
    return out


def _dead_table(reasons: Sequence[str], partition: int, offset: int) -> pa.Table:
    rows = [
        {
            "reason": reason,
            "message": f"rejected for {reason!r}",
            "field": None,
            "source_topic": "usersignals.events",
            "source_partition": partition,
            "source_offset": offset,
            "batch_index": i,
            "record_key": None,
            "raw": b"not json",
            "received_at": RECEIVED,
        }
        for i, reason in enumerate(reasons)
    ]
    return pa.Table.from_pylist(rows, schema=DEADLETTER_SCHEMA)


def write_warehouse(
    root: Path,
    events: Sequence[Event],
    *,
    rejected: Sequence[str] = (),
    partitions: int = 1,
    per_record: int = 3,
    per_flush: int = 4,
) -> list[Event]:
    """Writes ``events`` (and rejections with the given reason codes) as the loader would.

    Args:
        root: The warehouse directory (created).
        events: The events, in the order their partitions received them.
        rejected: One dead-letter row per reason code, in a record after the events.
        partitions: Source partitions to spread users over.
        per_record: Events per Kafka record.
        per_flush: Records per loader flush (a flush writes a file per event day).

    Returns:
        The events in log order (source partition, offset, index).
    """
    root.mkdir(parents=True, exist_ok=True)
    rows = position(events, partitions=partitions, per_record=per_record)
    by_flush: dict[tuple[int, int], list[Positioned]] = {}
    for row in rows:
        by_flush.setdefault((row[1], row[2] // per_flush), []).append(row)
    last_offset = {p: -1 for p in range(partitions)}
    empty_dead = DEADLETTER_SCHEMA.empty_table()
    for (p, _), flush in sorted(by_flush.items()):
        r = FileRange(p, flush[0][2], flush[-1][2])
        write_range(root, r, events_table(flush), empty_dead)
        last_offset[p] = r.last
    if rejected:
        offset = last_offset[0] + 1
        dead = _dead_table(rejected, 0, offset)
        write_range(root, FileRange(0, offset, offset), events_table([]), dead)
    return [row[0] for row in rows]
