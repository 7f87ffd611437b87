"""Events into Kafka records, without I/O: each event's canonical bytes, then records of them.

A typed :class:`~usersignals.ingest.tracker.Tracker` call becomes one :data:`Item` (its
``user_id`` and canonical JSON) in the caller's thread (:func:`encode_call`); the sender
groups items by partition into :class:`Record`\\ s (:func:`records_of`). :func:`build_records`
does the same for :class:`Event` objects; the SDK benchmark uses it, so that the bare producer
it is compared with sends the very same records.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from usersignals.ingest.contract import (
    CHOICES,
    MAX_BATCH,
    MAX_FUTURE,
    MAX_RECORD_BYTES,
    MAX_TOKENS,
    RATINGS,
    REQUIRED_BY_TYPE,
    TEXT_LIMITS,
    Event,
    EventError,
    Rejection,
    decode_record,
    encode_event,
    partition_for,
    validate,
)
from usersignals.ingest.contract import min_ts as _min_ts
from usersignals.ingest.spool import SpooledRecord

__all__ = [
    "OPTIONAL_FIELDS",
    "RECORD_BYTES_LIMIT",
    "UNKNOWN",
    "Item",
    "Record",
    "build_records",
    "encode_call",
    "event_ids",
    "new_event_id",
    "records_from_spool",
    "records_of",
]

log = logging.getLogger(__name__)

RECORD_BYTES_LIMIT = MAX_RECORD_BYTES - 1024
"""A record value is split above this, so the whole Kafka batch stays under 1 MiB."""

UNKNOWN = -1
"""Partition of an event whose topic's partition count is not known yet."""

Item = tuple[str, bytes]
"""One queued event: its ``user_id`` and its canonical JSON (:func:`encode_event` bytes)."""

OPTIONAL_FIELDS = tuple(
    f
    for f in Event.__struct_fields__
    if f not in ("event_id", "type", "user_id", "ts", "received_at", "extra")
)
"""The fields a typed call may pass besides ``event_id``, ``user_id`` and ``ts``, in order."""


# -- one call, one event ---------------------------------------------------------------------


def encode_call(
    type_: str,
    user_id: Any,
    event_id: Any,
    ts: Any,
    fields: Sequence[str],
    values: Sequence[Any],
    now: datetime | None = None,
    min_ts: datetime | None = None,
) -> tuple[str, Item]:
    """The ``event_id`` and :data:`Item` of one typed call, or the contract's own error.

    Plain values, nearly every call, are checked here by the contract's rules at a fraction of
    the cost of :func:`validate`; anything else (``properties``, a ``ts`` that is not a UTC
    ``datetime``, an integer ``duration_s``, any broken value) goes to :func:`validate`, which
    also words the error. Either way the bytes are :func:`encode_event` of the event that
    :func:`validate` makes of the same arguments (a property test pins both).

    Args:
        type_: The event type.
        user_id: The call's ``user_id``.
        event_id: The call's ``event_id``; a new one (:func:`new_event_id`) when ``None``.
        ts: The call's ``ts``; the current time when ``None``.
        fields: The call's other event fields, in the contract's order (a subset of
            :data:`OPTIONAL_FIELDS`).
        values: Their values, ``None`` for absent.
        now: The moment of the call, for the 24 h future limit of ``ts`` (default: the clock).
        min_ts: The earliest ``ts`` accepted (default: the contract's :func:`min_ts`).

    Raises:
        EventError: the event breaks the contract (:func:`validate`'s message).
    """
    required = REQUIRED_BY_TYPE.get(type_)
    if event_id is None:
        event_id = new_event_id()
    elif not _text_ok(event_id, *TEXT_LIMITS["event_id"]):
        required = None
    if ts is None:
        ts = moment = datetime.now(UTC)
    elif (
        type(ts) is not datetime
        or ts.tzinfo is not UTC
        or ts > (now or datetime.now(UTC)) + MAX_FUTURE
        or ts < (min_ts or _min_ts())
    ):
        required = None
    else:
        moment = ts
    if required is None or not _text_ok(user_id, *TEXT_LIMITS["user_id"]):
        return _by_contract(type_, user_id, event_id, ts, fields, values, now, min_ts)
    # msgspec writes a UTC datetime as format_ts does, except that it leaves out ".000000"
    obj: dict[str, Any] = {
        "event_id": event_id,
        "type": type_,
        "user_id": user_id,
        "ts": moment if moment.microsecond else f"{moment.isoformat()[:-6]}.000000Z",
    }
    for name, value in zip(fields, values, strict=True):
        if value is None:
            continue
        kind, a, b = _RULES[name]
        if not (
            (kind == _TEXT and _text_ok(value, a, b))
            or (kind == _CHOICE and type(value) is str and value in a)
            or (kind == _COUNT and type(value) is int and 0 <= value <= MAX_TOKENS)
            or (kind == _RATING and type(value) is int and value in _RATINGS)
            or (kind == _SECONDS and type(value) is float and 0.0 <= value < math.inf)
        ):
            return _by_contract(type_, user_id, event_id, ts, fields, values, now, min_ts)
        obj[name] = value
    for name in required:
        if name not in obj:
            return _by_contract(type_, user_id, event_id, ts, fields, values, now, min_ts)
    model_a = obj.get("model_a")
    if model_a is not None and model_a == obj.get("model_b"):
        return _by_contract(type_, user_id, event_id, ts, fields, values, now, min_ts)
    return event_id, (user_id, _encode_json(obj))


def _by_contract(
    type_: str,
    user_id: Any,
    event_id: Any,
    ts: Any,
    fields: Sequence[str],
    values: Sequence[Any],
    now: datetime | None,
    min_ts: datetime | None,
) -> tuple[str, Item]:
    """:func:`encode_call` by :func:`validate` itself (it names the problem, if any)."""
    obj = {"event_id": event_id, "type": type_, "user_id": user_id, "ts": ts}
    obj.update(
        (name, value) for name, value in zip(fields, values, strict=True) if value is not None
    )
    return encode_obj(obj, now, min_ts)


def encode_obj(
    obj: Mapping[str, Any], now: datetime | None = None, min_ts: datetime | None = None
) -> tuple[str, Item]:
    """The ``event_id`` and :data:`Item` of one event given as a dict shaped like its JSON.

    Raises:
        EventError: the event breaks the contract (:func:`validate`'s message).
    """
    result = validate(obj, now=now, min_ts=min_ts)
    if isinstance(result, Rejection):
        raise EventError(result)
    return result.event_id, (result.user_id, encode_event(result))


_TEXT, _CHOICE, _COUNT, _RATING, _SECONDS, _OTHER = range(6)


def _rule(name: str) -> tuple[int, Any, Any]:
    if name in TEXT_LIMITS:
        return (_TEXT, *TEXT_LIMITS[name])
    if name in CHOICES:
        return _CHOICE, frozenset(CHOICES[name]), None
    return {"tokens": _COUNT, "rating": _RATING, "duration_s": _SECONDS}.get(name, _OTHER), 0, 0


_RULES = {name: _rule(name) for name in OPTIONAL_FIELDS}
_RATINGS = frozenset(RATINGS)
_SURROGATE = re.compile("[\ud800-\udfff]")  # as the contract: JSON cannot carry them
_encode_json = msgspec.json.Encoder().encode


def _text_ok(value: Any, low: int, high: int) -> bool:
    return (
        type(value) is str
        and low <= len(value) <= high
        and (value.isascii() or not _SURROGATE.search(value))
    )


def new_event_id() -> str:
    """A fresh event id: a version 4 UUID string, unique in this process and beyond.

    Not :func:`uuid.uuid4` per event: its ``os.urandom`` system call releases the GIL every
    time, and winning it back from the sender threads costs a caller up to the interpreter's
    switch interval (5 ms). Each process (forked children included) draws 122 random bits once
    and counts up in the last 48; event ids need uniqueness, not secrecy.
    """
    return f"{_id_prefix}{next(_id_counter) & 0xFFFFFFFFFFFF:012x}"


def _new_id_space() -> None:
    global _id_prefix, _id_counter
    rng = random.SystemRandom()
    h = f"{rng.getrandbits(72):018x}"
    _id_prefix = f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[rng.getrandbits(2)]}{h[15:]}-"
    _id_counter = itertools.count(rng.getrandbits(48))


_id_prefix = ""
_id_counter = itertools.count()
_new_id_space()
os.register_at_fork(after_in_child=_new_id_space)


# -- events into records ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record: a JSON array of events that all belong to ``partition``.

    ``partition`` is :data:`UNKNOWN` (and ``partitions`` 0) when the record was cut before the
    topic's partition count was known; such a record is only ever spooled, and regrouped when it
    is read back.
    """

    partition: int
    key: bytes
    value: bytes
    events: int
    partitions: int

    def spooled(self) -> SpooledRecord:
        return SpooledRecord(
            value=self.value,
            events=self.events,
            key=self.key,
            partition=self.partition,
            partitions=self.partitions,
        )


def build_records(
    events: Iterable[Event], partitions: int, batch_size: int = MAX_BATCH
) -> list[Record]:
    """Groups ``events`` by partition into records of at most ``batch_size`` events.

    The record values are :func:`encode_batch` of their events. Order is kept within each
    partition; records come out partition by partition in the order the partitions first
    appear. A record whose value would pass :data:`RECORD_BYTES_LIMIT` is split.

    Args:
        events: Valid events, oldest first.
        partitions: The topic's partition count, or 0 when unknown (then records are cut in
            arrival order, and marked :data:`UNKNOWN`).
        batch_size: Most events per record (at most ``MAX_BATCH``).
    """
    return records_of([(e.user_id, encode_event(e)) for e in events], partitions, batch_size)


def records_of(items: Iterable[Item], partitions: int, batch_size: int = MAX_BATCH) -> list[Record]:
    """:func:`build_records` for events already encoded one by one.

    A JSON array of :func:`encode_event` objects joined by commas is byte for byte
    :func:`encode_batch` of the same events, so each event is encoded once, at the call.
    """
    size = max(1, min(batch_size, MAX_BATCH))
    groups: dict[int, list[Item]] = {}
    if partitions > 0:
        cache = _partition_cache(partitions)
        for item in items:
            p = cache.get(item[0])
            if p is None:
                p = cache[item[0]] = partition_for(item[0], partitions)
            group = groups.get(p)
            if group is None:
                groups[p] = [item]
            else:
                group.append(item)
    else:
        groups[UNKNOWN] = list(items)
    out: list[Record] = []
    for p, group in groups.items():
        for start in range(0, len(group), size):
            _pack(out, group[start : start + size], p, partitions)
    return out


_CACHES: dict[int, dict[str, int]] = {}
_CACHE_USERS = 1 << 17


def _partition_cache(partitions: int) -> dict[str, int]:
    """user_id -> partition for one partition count (a plain dict beats an lru_cache call)."""
    cache = _CACHES.get(partitions)
    if cache is None or len(cache) > _CACHE_USERS:
        cache = _CACHES[partitions] = {}
    return cache


def _pack(out: list[Record], items: Sequence[Item], p: int, partitions: int) -> None:
    value = b"[" + b",".join([data for _, data in items]) + b"]"
    if len(value) > RECORD_BYTES_LIMIT and len(items) > 1:
        half = len(items) // 2
        _pack(out, items[:half], p, partitions)
        _pack(out, items[half:], p, partitions)
        return
    out.append(Record(p, items[0][0].encode("utf-8"), value, len(items), partitions))


class _EventId(msgspec.Struct):
    event_id: str


_EVENT_IDS = msgspec.json.Decoder(list[_EventId])


def event_ids(value: bytes) -> list[str]:
    """The ``event_id``\\ s of a record value (a JSON array of events), in order."""
    return [e.event_id for e in _EVENT_IDS.decode(value)]


def records_from_spool(
    spooled: SpooledRecord, partitions: int, batch_size: int = MAX_BATCH
) -> tuple[list[Record], int]:
    """The records to send for one spooled record, with the current partition count.

    A record cut with the same partition count is sent as it was spooled; any other is decoded
    and regrouped. Returns the records and the number of events that could not be decoded
    (always 0 unless the spool held bytes the contract no longer accepts).
    """
    if spooled.partitions == partitions and spooled.partition >= 0:
        record = Record(spooled.partition, spooled.key, spooled.value, spooled.events, partitions)
        return [record], 0
    events, rejections = decode_record(spooled.value)
    for rejection in rejections:  # the message quotes the value: reason and field only
        log.error(
            "Dropping a spooled event the contract rejects: %s (field %s)",
            rejection.reason,
            rejection.field,
        )
    return build_records(events, partitions, batch_size), len(rejections)
