"""What one input record turns into: local events, events to forward, dead letters.

Pure functions of a record's bytes and its place in the log; the Faust agent only moves their
results to the state, the events topic and the dead-letter topic (``events.md``).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from datetime import datetime

from usersignals.ingest.contract import Event, Rejection, decode_record, encode_batch
from usersignals.ingest.partitioner import partition_for

__all__ = ["DeadLetter", "Forward", "RecordOutcome", "dead_letter", "split_record"]


@dataclass(frozen=True)
class Forward:
    """A batch of events that belongs to another partition of the events topic."""

    partition: int
    key: bytes
    value: bytes


@dataclass(frozen=True)
class DeadLetter:
    """A rejected input, ready for the dead-letter topic."""

    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class RecordOutcome:
    """One input record, sorted: what this partition folds, forwards and dead-letters."""

    local: list[Event] = field(default_factory=list)
    forward: list[Forward] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def split_record(
    value: bytes | None,
    partition: int,
    partitions: int,
    *,
    now: datetime | None = None,
    known: Container[str] = frozenset(),
) -> RecordOutcome:
    """Validates a record and sorts its events by the partition their user belongs to.

    Events of users of another partition (a foreign producer's mixed batch) are not counted
    here: they are re-sent to their own partition, keyed by ``user_id``, one record per
    partition, so that users stay disjoint across partitions. Users in ``known`` are taken to
    be of ``partition`` without hashing their id (the users this partition already holds).
    """
    events, rejections = decode_record(value, now=now)
    local: list[Event] = []
    foreign: dict[int, list[Event]] = {}
    local_append = local.append
    for e in events:
        uid = e.user_id
        if uid in known:
            local_append(e)
            continue
        p = partition_for(uid, partitions)
        if p == partition:
            local_append(e)
        else:
            foreign.setdefault(p, []).append(e)
    forward = [
        Forward(p, evs[0].user_id.encode("utf-8", "surrogatepass"), encode_batch(evs))
        for p, evs in sorted(foreign.items())
    ]
    return RecordOutcome(local, forward, rejections)


def dead_letter(rejection: Rejection, topic: str, partition: int, offset: int) -> DeadLetter:
    """The dead-letter record of a rejection: its raw bytes, the reason and origin in headers."""
    headers = [
        ("reason", rejection.reason.encode()),
        ("message", rejection.message.encode("utf-8", "backslashreplace")),
    ]
    if rejection.field is not None:
        headers.append(("field", rejection.field.encode("utf-8", "backslashreplace")))
    headers += [
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
    ]
    if rejection.index is not None:
        headers.append(("index", str(rejection.index).encode()))
    return DeadLetter(rejection.raw, headers)
