"""Live state persisted in a key-value table that Faust changelogs to Kafka.

A partition's :class:`~usersignals.streams.folds.PartitionState` is rebuilt from what
:meth:`PartitionState.apply` returned (the events that were new), so only those are stored:
one table key per (partition, input offset), holding a compact msgpack list of the
fields the metrics read: one changelog message per input record with new events (a Faust
table write costs far more than folding a batch, so not one per event or per day). A day
behind the retention horizon is dropped by rewriting the keys holding its events without
them (deleting a key left empty); live traffic puts a record's events on one or two days, so
that is mostly deletes. Rejections are stored under one key per rejected input record, and
the count of late events under one key per input record that had some (so a redelivered
record counts its late events once, across restarts too).

Every key starts with its partition number: Faust writes a table update to the changelog
partition of the record being processed, and keys of partition ``p`` are only ever written
while a record of ``p`` is processed, so each changelog partition holds exactly the state of
its input partition and a worker that takes the partition over restores exactly that.

The table is any ``MutableMapping[bytes, bytes]`` here (a Faust table in the worker, a dict in
tests), so this module has no Kafka in it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, MutableMapping, Sequence
from datetime import date, datetime
from typing import Any

import msgspec
import pyarrow

from usersignals.ingest.contract import Event, Rejection
from usersignals.streams.folds import PartitionState

__all__ = [
    "PartitionKeeper",
    "decode_events",
    "encode_events",
    "event_key",
    "first_key",
    "late_key",
    "rebuild_keepers",
    "record_fingerprint",
    "rejection_key",
]

Table = MutableMapping[bytes, bytes]


class _Slim(msgspec.Struct, array_like=True, frozen=True):
    """The fields of an event that some metric reads (``ts`` as a msgpack timestamp)."""

    event_id: str
    type: str
    user_id: str
    ts: datetime
    model: str | None = None
    message_id: str | None = None
    rating: int | None = None
    model_a: str | None = None
    model_b: str | None = None
    winner: str | None = None
    category: str | None = None
    severity: str | None = None
    session_id: str | None = None  # last: values written before it was kept still decode


_ENCODER = msgspec.msgpack.Encoder()
_LZ4 = b"\x01"  # tag of a compressed value (a msgpack array never starts with 0x01)
_CODEC = "lz4"
_SIZE = struct.Struct("<I")
_EVENTS_DECODER = msgspec.msgpack.Decoder(list[_Slim])
# [(index, reason)] per rejected record, then its day received (an ordinal; 0 unknown) last
_REJECTIONS_DECODER = msgspec.msgpack.Decoder(list[tuple[int | None, str] | int])


def encode_events(events: Sequence[Event]) -> bytes:
    """Compact bytes of the metric fields of ``events`` (other fields are left out).

    The msgpack is LZ4-compressed (about half the size for a few microseconds): the values
    stay in the table's memory and go to the changelog, so their size is memory and bytes on
    the wire.
    """
    packed = _pack(events)
    compressed: bytes = pyarrow.compress(packed, _CODEC, asbytes=True)
    return _LZ4 + _SIZE.pack(len(packed)) + compressed


def _pack(events: Sequence[Event]) -> bytes:
    return _ENCODER.encode(
        [
            (
                e.event_id,
                e.type,
                e.user_id,
                e.ts,
                e.model,
                e.message_id,
                e.rating,
                e.model_a,
                e.model_b,
                e.winner,
                e.category,
                e.severity,
                e.session_id,
            )
            for e in events
        ]
    )


def decode_events(data: bytes) -> list[Event]:
    """Events back from :func:`encode_events` (only the metric fields are set)."""
    if data[:1] == _LZ4:
        (size,) = _SIZE.unpack_from(data, 1)
        data = pyarrow.decompress(data[1 + _SIZE.size :], size, _CODEC, asbytes=True)
    return [
        Event(
            event_id=s.event_id,
            type=s.type,
            user_id=s.user_id,
            ts=s.ts,
            model=s.model,
            message_id=s.message_id,
            rating=s.rating,
            model_a=s.model_a,
            model_b=s.model_b,
            winner=s.winner,
            category=s.category,
            severity=s.severity,
            session_id=s.session_id,
        )
        for s in _EVENTS_DECODER.decode(data)
    ]


def event_key(partition: int, offset: int) -> bytes:
    """Table key of the new events of one input record."""
    return f"{partition}/e/{offset:020d}".encode()


def rejection_key(partition: int, offset: int) -> bytes:
    """Table key of the rejections of one input record."""
    return f"{partition}/r/{offset:020d}".encode()


def late_key(partition: int, offset: int) -> bytes:
    """Table key of the count of late events of one input record (kept: late records are
    rare, and the count must survive restarts)."""
    return f"{partition}/l/{offset:020d}".encode()


def first_key(partition: int) -> bytes:
    """Table key of the offset and fingerprint of the first input record folded (the mark of
    the topic's incarnation the state belongs to)."""
    return f"{partition}/f/first".encode()


def record_fingerprint(value: bytes | None, timestamp_ms: int | None) -> bytes:
    """A short digest of a record's value and timestamp: another record at the same offset
    has another fingerprint (its time differs even when its bytes do not)."""
    digest = hashlib.blake2b(value or b"", digest_size=16)
    digest.update(str(timestamp_ms).encode())
    return digest.digest()


def key_partition(key: bytes) -> int | None:
    """The partition a table key belongs to (None for a key this module did not make)."""
    head, _, _ = key.partition(b"/")
    return int(head) if head.isdigit() else None


class PartitionKeeper:
    """One partition's live state and the table keys that rebuild it.

    Args:
        partition: The input partition.
        retention_days: Days of event time kept behind the newest day seen.
    """

    def __init__(self, partition: int, retention_days: int) -> None:
        self.partition = partition
        self.state = PartitionState(retention_days)
        self.position = -1
        """The offset after the last input record folded in this process (-1: none yet)."""
        self._day_keys: dict[date, set[bytes]] = {}
        self._pending: set[date] = set()  # pruned days whose keys are not rewritten yet
        self._late: dict[int, int] = {}  # late events per input offset (persisted)
        self.first: tuple[int, bytes] | None = None
        """Offset and fingerprint of the first input record folded (persisted)."""
        self._last: tuple[int, bytes] | None = None  # of the last one, in this process

    def incarnation_changed(self, offset: int, fingerprint: bytes) -> str | None:
        """Why the record at ``offset`` is not of the topic incarnation this state is of
        (None: it may be). A replay of records below the position (a restart after a crash)
        is no change: offsets are only compared with the first and last records folded."""
        first = self.first
        if first is None:
            return None
        if offset < first[0]:
            return f"offset {offset} is before {first[0]}, the first offset folded"
        if offset == first[0] and fingerprint != first[1]:
            return f"another record at offset {offset}, the first folded"
        last = self._last
        if last is not None and offset == last[0] and fingerprint != last[1]:
            return f"another record at offset {offset}, the last folded"
        return None

    def mark(self, table: Table, offset: int, fingerprint: bytes) -> None:
        """Notes the record at ``offset`` as folded (the first one is persisted)."""
        if self.first is None:
            self.first = (offset, fingerprint)
            table[first_key(self.partition)] = _ENCODER.encode([offset, fingerprint])
        self._last = (offset, fingerprint)

    def fold(
        self,
        table: Table,
        offset: int,
        events: Sequence[Event],
        rejections: Sequence[Rejection] = (),
        received: date | None = None,
    ) -> list[Event]:
        """Folds one input record's valid local events and rejections; persists what is new.

        ``received`` is the UTC day of the input record's Kafka timestamp (the day a report's
        range counts its rejections on).

        Returns:
            The events that were new (duplicates and late events left out).
        """
        p = self.partition
        if self._pending:
            self._drop(table, self._pending)
            self._pending = set()
        if rejections:
            keys = [((p, offset, r.index), r.reason) for r in rejections]
            if self.state.add_rejections(keys, received):
                table[rejection_key(p, offset)] = _ENCODER.encode(
                    [
                        *((r.index, r.reason) for r in rejections),
                        received.toordinal() if received is not None else 0,
                    ]
                )
        late_before = self.state.late
        delta = self.state.apply(events) if events else []
        late = self.state.late - late_before
        if late:
            self._count_late(table, offset, late)
        if delta:
            key = event_key(p, offset)
            table[key] = encode_events(delta)
            day_keys = self._day_keys
            for day in {e.ts.date() for e in delta}:
                found = day_keys.get(day)
                if found is None:
                    found = day_keys[day] = set()
                found.add(key)
        if self.state.needs_prune:
            self.prune(table)
        self.position = offset + 1
        return delta

    def _count_late(self, table: Table, offset: int, late: int) -> None:
        """Counts a record's late events once, however often the record is redelivered."""
        old = self._late.get(offset, 0)
        self.state.late -= old
        if old != late:
            self._late[offset] = late
            table[late_key(self.partition, offset)] = _ENCODER.encode(late)

    def prune(self, table: Table) -> list[date]:
        """Drops the days behind the retention horizon, in the state and in the table."""
        dropped = self.state.prune()
        self._drop(table, set(dropped))
        return dropped

    def _drop(self, table: Table, days: set[date]) -> None:
        """Deletes the dropped days' events from their keys (a key left empty is deleted)."""
        keys: set[bytes] = set()
        for day in days:
            keys |= self._day_keys.pop(day, set())
        for key in sorted(keys):
            value = table.get(key)
            if value is None:
                continue
            kept = [e for e in decode_events(value) if e.ts.date() not in days]
            if kept:
                table[key] = encode_events(kept)
            else:
                del table[key]

    def restore(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Rebuilds the state from this partition's table items (any order)."""
        p = self.partition
        events: list[Event] = []
        for key, value in items:
            kind, _, rest = key.decode().split("/", 1)[1].partition("/")
            if kind == "f":
                offset, fingerprint = msgspec.msgpack.decode(value, type=tuple[int, bytes])
                self.first = (offset, fingerprint)
            elif kind == "e":
                record = decode_events(value)
                events.extend(record)
                for day in {e.ts.date() for e in record}:
                    self._day_keys.setdefault(day, set()).add(key)
            elif kind == "l":
                self._late[int(rest)] = msgspec.msgpack.decode(value, type=int)
            elif kind == "r":
                offset = int(rest)
                cells = _REJECTIONS_DECODER.decode(value)
                received = cells[-1] if cells and isinstance(cells[-1], int) else 0
                self.state.add_rejections(
                    (((p, offset, c[0]), c[1]) for c in cells if not isinstance(c, int)),
                    date.fromordinal(received) if received else None,
                )
        self.state.restore(events)
        self.state.late = sum(self._late.values())
        self._pending = set(self.state.prune())


def rebuild_keepers(
    items: Iterable[tuple[bytes, Any]], partitions: Iterable[int], retention_days: int
) -> dict[int, PartitionKeeper]:
    """Keepers of ``partitions`` rebuilt from a table's items (other partitions' keys ignored).

    Days behind the retention horizon are left out of the state at once; their keys are
    deleted from the table when the partition's next record is folded (a key of partition
    ``p`` may only be written while a record of ``p`` is processed).
    """
    wanted = {p: PartitionKeeper(p, retention_days) for p in partitions}
    grouped: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in wanted}
    for key, value in items:
        p = key_partition(key)
        if p in grouped and value:
            grouped[p].append((key, value))
    for p, keeper in wanted.items():
        keeper.restore(grouped[p])
    return wanted
