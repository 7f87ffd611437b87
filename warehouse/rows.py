"""Kafka records of one partition to Arrow tables: the loader's pure core.

A :class:`PartitionBuffer` takes the records of one source partition in offset order, decodes
each with the contract, and keeps three kinds of outcome: valid events of the partition (rows of
``events``), rejections (rows of ``deadletter``), and valid events whose user belongs to another
partition (counted and skipped: the stream worker forwards them to their own partition, where
they are loaded). A rejection's row is its dead letter as the worker sends it
(:func:`~usersignals.ingest.event.dead_copy`: an input over 1 MiB keeps a prefix and names its
length and hash), so the warehouse and the dead-letter topic agree. Nothing here touches Kafka
or disk, and the output depends only on the records, so loading the same range twice gives the
same rows.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pyarrow as pa

from usersignals.ingest.contract import Event, decode_record, partition_for
from usersignals.ingest.event import dead_copy, event_indexes
from usersignals.warehouse.layout import DEADLETTER_SCHEMA, EVENTS_SCHEMA

__all__ = ["PartitionBuffer", "SourceRecord", "event_indexes"]

_PLAIN = (
    "event_id",
    "type",
    "user_id",
    "ts",
    "session_id",
    "model",
    "platform",
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
)
_get_plain = operator.attrgetter(*_PLAIN)
_encode_json = msgspec.json.Encoder(order="deterministic").encode
_EVENT_COLUMNS = (*_PLAIN, "day", "properties", "extra", "received_at")
_POSITION = ("source_partition", "source_offset", "batch_index")


@dataclass(frozen=True)
class SourceRecord:
    """The parts of a Kafka record the loader uses."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


@functools.lru_cache(maxsize=1 << 20)
def _partition_of(user_id: str, partitions: int) -> int:
    # users recur across records; hashing each event again is most of the decode cost
    return partition_for(user_id, partitions)


def _json_text(value: dict[str, Any] | None) -> str | None:
    return None if value is None else _encode_json(value).decode()


class PartitionBuffer:
    """Decoded records of one source partition waiting to be written.

    Args:
        topic: The source topic (kept in dead-letter rows).
        partition: The source partition.
        partitions: How many partitions the topic has (to spot events of other partitions).
    """

    def __init__(self, topic: str, partition: int, partitions: int) -> None:
        self.topic = topic
        self.partition = partition
        self.partitions = partitions
        self.first: int | None = None
        self.last: int | None = None
        self.records = 0
        self.bytes = 0
        self.foreign = 0
        self._rows: list[tuple[Any, ...]] = []
        self._dead: list[tuple[Any, ...]] = []

    @property
    def events(self) -> int:
        return len(self._rows)

    @property
    def rejected(self) -> int:
        return len(self._dead)

    def add(self, record: SourceRecord) -> None:
        """Decodes one record (of this partition, next in offset order) into the buffer."""
        if self.first is None:
            self.first = record.offset
        self.last = record.offset
        self.records += 1
        self.bytes += len(record.value or b"")
        # a record without a timestamp (-1) is judged at the moment it is read, as the worker
        # does, instead of as if received in 1969
        received = (
            datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
            if record.timestamp_ms > 0
            else datetime.now(UTC)
        )
        events, rejections = decode_record(record.value, now=received)
        for rejected in rejections:
            rejection, _ = dead_copy(rejected)  # as the worker dead-letters it
            self._dead.append(
                (
                    rejection.reason,
                    rejection.message,
                    rejection.field,
                    self.topic,
                    self.partition,
                    record.offset,
                    rejection.index,
                    record.key,
                    rejection.raw,
                    received,
                )
            )
        if not events:
            return
        for event, index in zip(events, event_indexes(len(events), rejections), strict=True):
            if _partition_of(event.user_id, self.partitions) != self.partition:
                self.foreign += 1
                continue
            self._rows.append(self._row(event, record.offset, index, received))

    def _row(self, event: Event, offset: int, index: int, received: datetime) -> tuple[Any, ...]:
        ts: datetime = event.ts
        return (
            *_get_plain(event),
            ts.date(),
            _json_text(event.properties),
            _json_text(event.extra),
            event.received_at or received,
            self.partition,
            offset,
            index,
        )

    def events_table(self) -> pa.Table:
        """The buffered valid events as a table of :data:`EVENTS_SCHEMA`."""
        names = (*_EVENT_COLUMNS, *_POSITION)
        columns = list(zip(*self._rows, strict=True)) if self._rows else [() for _ in names]
        by_name = dict(zip(names, columns, strict=True))
        arrays = [pa.array(by_name[f.name], type=f.type) for f in EVENTS_SCHEMA]
        return pa.Table.from_arrays(arrays, schema=EVENTS_SCHEMA)

    def deadletter_table(self) -> pa.Table:
        """The buffered rejections as a table of :data:`DEADLETTER_SCHEMA`."""
        columns = list(zip(*self._dead, strict=True)) if self._dead else [() for _ in range(10)]
        arrays = [
            pa.array(col, type=f.type) for col, f in zip(columns, DEADLETTER_SCHEMA, strict=True)
        ]
        return pa.Table.from_arrays(arrays, schema=DEADLETTER_SCHEMA)
