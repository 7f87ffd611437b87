"""Live state persisted in a key-value table that Faust changelogs to Kafka.

A partition's :class:`~usersignals.streams.folds.PartitionState` is rebuilt from what
:meth:`PartitionState.apply` returned (the events that were new), so only those are stored:
one table key per (partition, event day, input offset), holding a compact msgpack list of the
fields the metrics read. That is at most one changelog message per input record and event
day, and a day behind the retention horizon is dropped by deleting its keys. Rejections are
stored the same way under one key per rejected input record.

Every key starts with its partition number: Faust writes a table update to the changelog
partition of the record being processed, and keys of partition ``p`` are only ever written
while a record of ``p`` is processed, so each changelog partition holds exactly the state of
its input partition and a worker that takes the partition over restores exactly that.

The table is any ``MutableMapping[bytes, bytes]`` here (a Faust table in the worker, a dict in
tests), so this module has no Kafka in it.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec

from usersignals.ingest.contract import Event, Rejection
from usersignals.streams.folds import PartitionState

__all__ = [
    "PartitionKeeper",
    "decode_events",
    "encode_events",
    "event_key",
    "rebuild_keepers",
    "rejection_key",
]

Table = MutableMapping[bytes, bytes]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class _Slim(msgspec.Struct, array_like=True, frozen=True):
    """The fields of an event that some metric reads; ``ts`` in epoch microseconds."""

    event_id: str
    type: str
    user_id: str
    ts: int
    model: str | None = None
    message_id: str | None = None
    rating: int | None = None
    model_a: str | None = None
    model_b: str | None = None
    winner: str | None = None
    category: str | None = None
    severity: str | None = None


_ENCODER = msgspec.msgpack.Encoder()
_EVENTS_DECODER = msgspec.msgpack.Decoder(list[_Slim])
_REJECTIONS_DECODER = msgspec.msgpack.Decoder(list[tuple[int | None, str]])


def encode_events(events: Sequence[Event]) -> bytes:
    """Compact bytes of the metric fields of ``events`` (other fields are left out)."""
    return _ENCODER.encode(
        [
            _Slim(
                e.event_id,
                e.type,
                e.user_id,
                (e.ts - _EPOCH) // _ONE_US,
                e.model,
                e.message_id,
                e.rating,
                e.model_a,
                e.model_b,
                e.winner,
                e.category,
                e.severity,
            )
            for e in events
        ]
    )


def decode_events(data: bytes) -> list[Event]:
    """Events back from :func:`encode_events` (only the metric fields are set)."""
    return [
        Event(
            event_id=s.event_id,
            type=s.type,
            user_id=s.user_id,
            ts=_EPOCH + timedelta(microseconds=s.ts),
            model=s.model,
            message_id=s.message_id,
            rating=s.rating,
            model_a=s.model_a,
            model_b=s.model_b,
            winner=s.winner,
            category=s.category,
            severity=s.severity,
        )
        for s in _EVENTS_DECODER.decode(data)
    ]


def event_key(partition: int, day: date, offset: int) -> bytes:
    """Table key of the new events of one input record on one event day."""
    return f"{partition}/e/{day.isoformat()}/{offset:020d}".encode()


def rejection_key(partition: int, offset: int) -> bytes:
    """Table key of the rejections of one input record."""
    return f"{partition}/r/{offset:020d}".encode()


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
        self._day_keys: dict[date, list[bytes]] = {}
        self._stale: list[bytes] = []  # keys of pruned days not deleted from the table yet

    def fold(
        self,
        table: Table,
        offset: int,
        events: Sequence[Event],
        rejections: Sequence[Rejection] = (),
    ) -> list[Event]:
        """Folds one input record's valid local events and rejections; persists what is new.

        Returns:
            The events that were new (duplicates and late events left out).
        """
        p = self.partition
        if self._stale:
            for key in self._stale:
                table.pop(key, None)
            self._stale = []
        if rejections:
            keys = [((p, offset, r.index), r.reason) for r in rejections]
            if self.state.add_rejections(keys):
                table[rejection_key(p, offset)] = _ENCODER.encode(
                    [(r.index, r.reason) for r in rejections]
                )
        delta = self.state.apply(events) if events else []
        if delta:
            by_day: dict[date, list[Event]] = {}
            for e in delta:
                by_day.setdefault(e.ts.date(), []).append(e)
            for day, evs in by_day.items():
                key = event_key(p, day, offset)
                table[key] = encode_events(evs)
                self._day_keys.setdefault(day, []).append(key)
        if self.state.needs_prune:
            self.prune(table)
        self.position = offset + 1
        return delta

    def prune(self, table: Table) -> list[date]:
        """Drops the days behind the retention horizon, in the state and in the table."""
        dropped = self.state.prune()
        for day in dropped:
            for key in self._day_keys.pop(day, ()):
                table.pop(key, None)
        return dropped

    def restore(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Rebuilds the state from this partition's table items (any order)."""
        p = self.partition
        batches: list[list[Event]] = []
        rejections: list[tuple[tuple[int, int, int | None], str]] = []
        for key, value in items:
            parts = key.decode().split("/")
            if parts[1] == "e":
                day = date.fromisoformat(parts[2])
                self._day_keys.setdefault(day, []).append(key)
                batches.append(decode_events(value))
            elif parts[1] == "r":
                offset = int(parts[2])
                rejections.extend(
                    ((p, offset, index), reason)
                    for index, reason in _REJECTIONS_DECODER.decode(value)
                )
        self.state.restore(e for batch in batches for e in batch)
        self.state.add_rejections(rejections)
        for day in self.state.prune():
            self._stale.extend(self._day_keys.pop(day, ()))


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
