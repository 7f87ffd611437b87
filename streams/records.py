"""What one input record turns into: local events, events to forward, dead letters.

Pure functions of a record's bytes and its place in the log; the Faust agent only moves their
results to the state, the events topic and the dead-letter topic (``events.md``).

Nothing they return can be refused by the worker's producer, whatever the input: a record
larger than the producer's request size killed the worker a few seconds later, and again on
every restart. A forward carries its events' own bytes, packed into records of at most
:data:`~usersignals.ingest.event.MAX_RECORD_BYTES` and
:data:`~usersignals.ingest.event.MAX_BATCH` events (re-encoding could make a valid batch
larger than the limit); a dead letter is bounded by
:func:`~usersignals.ingest.event.dead_copy` (a prefix of an input over the limit, cut texts).
Both fit in :data:`~usersignals.ingest.event.MAX_MESSAGE_BYTES`.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from usersignals.ingest.contract import Event, Rejection, decode_record
from usersignals.ingest.event import MAX_BATCH, MAX_RECORD_BYTES, dead_copy, event_indexes
from usersignals.ingest.partitioner import partition_for

__all__ = [
    "DeadLetter",
    "Forward",
    "RecordOutcome",
    "dead_letter",
    "pack_batches",
    "split_record",
]

_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


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
    here: their own bytes are re-sent to their partition, keyed by the first one's
    ``user_id``, in as few records as :func:`pack_batches` allows, so that users stay disjoint
    across partitions. Users in ``known`` are taken to
    be of ``partition`` without hashing their id (the users this partition already holds).
    """
    events, rejections = decode_record(value, now=now)
    local: list[Event] = []
    foreign: dict[int, list[int]] = {}  # partition: positions in ``events``
    local_append = local.append
    for i, e in enumerate(events):
        uid = e.user_id
        if uid in known:
            local_append(e)
            continue
        p = partition_for(uid, partitions)
        if p == partition:
            local_append(e)
        else:
            foreign.setdefault(p, []).append(i)
    forward: list[Forward] = []
    if foreign and value:
        pieces = _event_bytes(value, len(events), rejections)
        for p, positions in sorted(foreign.items()):
            key = events[positions[0]].user_id.encode("utf-8", "surrogatepass")
            for batch in pack_batches(pieces[i] for i in positions):
                forward.append(Forward(p, key, batch))
    return RecordOutcome(local, forward, rejections)


def _event_bytes(value: bytes, n_events: int, rejections: list[Rejection]) -> list[bytes]:
    """The input's own JSON bytes of each valid event of a record, in order."""
    stripped = value.strip(b" \t\r\n")
    if stripped[:1] != b"[":
        return [stripped]
    elements = _RAW_LIST.decode(value)
    return [bytes(elements[i]) for i in event_indexes(n_events, rejections)]


def pack_batches(
    pieces: Iterable[bytes], max_bytes: int = MAX_RECORD_BYTES, max_events: int = MAX_BATCH
) -> list[bytes]:
    """JSON array records of the given event JSONs, in order, each of at most ``max_bytes``
    bytes and ``max_events`` events (a piece too large for any record goes alone)."""
    out: list[bytes] = []
    chunk: list[bytes] = []
    size = 1  # "[" (and "]" for the first, "," for each further piece)
    for piece in pieces:
        if chunk and (size + 1 + len(piece) > max_bytes or len(chunk) == max_events):
            out.append(b"[" + b",".join(chunk) + b"]")
            chunk, size = [], 1
        chunk.append(piece)
        size += 1 + len(piece)
    if chunk:
        out.append(b"[" + b",".join(chunk) + b"]")
    return out


def dead_letter(rejection: Rejection, topic: str, partition: int, offset: int) -> DeadLetter:
    """The dead-letter record of a rejection: its raw bytes (a prefix of an input over 1 MiB),
    the reason, origin, length and SHA-256 of the input in headers; every text is bounded."""
    kept, digest = dead_copy(rejection)
    headers = [
        ("reason", kept.reason.encode()),
        ("message", kept.message.encode("utf-8", "backslashreplace")),
    ]
    if kept.field is not None:
        headers.append(("field", kept.field.encode("utf-8", "backslashreplace")))
    headers += [
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
    ]
    if kept.index is not None:
        headers.append(("index", str(kept.index).encode()))
    headers += [("length", str(len(rejection.raw)).encode()), ("sha256", digest.encode())]
    return DeadLetter(kept.raw, headers)
