"""Every way untrusted bytes become events, checked on one input: the fuzzers' shared oracle.

:func:`check_record` hands one record value to each reader of untrusted bytes — the
contract's :func:`~usersignals.ingest.contract.decode_record`, the stream worker's
:func:`~usersignals.streams.records.split_record` and the loader's
:class:`~usersignals.warehouse.rows.PartitionBuffer` — and checks what every outcome must
satisfy, whatever the input: nothing raises, every element of the batch is accounted for
exactly once (or the record is one whole rejection), every reason is a known code, the same
bytes decode the same way twice, the worker and the loader keep what the contract kept, and
an object is read alike alone (as a record) and in brackets (as the collector reads a body).
The hypothesis properties (``test_fuzz_contract.py``) and the coverage-guided fuzzer both call
it.

Run as a script, it is an atheris (libFuzzer) harness over a corpus directory::

    python tests/faults/fuzz_contract.py -max_total_time=20 -timeout=10 CORPUS_DIR

libFuzzer's flags apply; the corpus directory is written to (new inputs are added), so give
it a copy of ``tests/faults/corpus``.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_instrumented: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
if __name__ == "__main__":  # run as a script from anywhere: the checkout's packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import atheris

    # coverage of the package only: instrumenting pyarrow and the rest costs a minute
    _instrumented = atheris.instrument_imports(include=["usersignals"])

with _instrumented:
    from usersignals.ingest.collector import batch_of
    from usersignals.ingest.contract import (
        REASONS,
        Event,
        Rejection,
        decode_record,
        encode_event,
        partition_for,
    )
    from usersignals.streams.records import split_record
    from usersignals.warehouse.rows import PartitionBuffer, SourceRecord, event_indexes

__all__ = ["MIN_TS", "NOW", "PARTITIONS", "Outcome", "check_record"]

NOW = datetime(2026, 8, 4, 12, 0, tzinfo=UTC)
"""The moment of receipt every fuzzed record is judged at (fixed: decoding is deterministic)."""
MIN_TS = datetime(2000, 1, 1, tzinfo=UTC)
"""The lower bound of ``ts`` (the default), given explicitly so no setting can change it."""
PARTITIONS = 4
_NOW_MS = int(NOW.timestamp() * 1000)


@dataclass(frozen=True)
class Outcome:
    """One record as the contract read it: its valid events, rejections and their positions."""

    events: list[Event]
    rejections: list[Rejection]
    indexes: list[int]
    """The batch position of each valid event."""

    @property
    def whole(self) -> bool:
        """Whether the record was rejected as a whole (unreadable, or a single bad event)."""
        return any(r.index is None for r in self.rejections)


def check_record(value: bytes) -> Outcome:
    """Decodes ``value`` through every reader of untrusted bytes and checks the invariants.

    Raises:
        AssertionError: An invariant does not hold (the message says which).
    """
    events, rejections = decode_record(value, now=NOW, min_ts=MIN_TS)
    _require(all(isinstance(e, Event) for e in events), "an event that is not an Event")
    _require(all(isinstance(r, Rejection) for r in rejections), "a rejection of another type")
    for r in rejections:
        _require(r.reason in REASONS, f"unknown reason {r.reason!r}")
        # the decoder's last-resort net words it so; reaching it means an unexpected exception
        _require(not r.message.startswith("Unreadable"), f"caught internally: {r.message!r}")
    for e in events:
        _require(e.ts.tzinfo is UTC and e.ts >= MIN_TS, f"ts not normalised: {e.ts!r}")
    again = decode_record(value, now=NOW, min_ts=MIN_TS)
    _require(again == (events, rejections), "decoding the same bytes twice differs")
    indexes = _accounting(value, events, rejections)
    outcome = Outcome(events, rejections, indexes)
    _check_worker(value, outcome)
    _check_loader(value, outcome)
    _check_batch_of_one(value, outcome)
    return outcome


def _accounting(value: bytes, events: list[Event], rejections: list[Rejection]) -> list[int]:
    """The position of each valid event, once every element is shown accounted for once."""
    whole = [r for r in rejections if r.index is None]
    if whole:
        _require(len(rejections) == 1, f"a whole-record rejection among {len(rejections)}")
        _require(not events, "a whole-record rejection beside valid events")
        _require(whole[0].raw == value, "a whole-record rejection without the record's bytes")
        return []
    if value.lstrip(b" \t\r\n")[:1] != b"[":
        _require(len(events) == 1, f"a single event read as {len(events)}")
        return [0]
    named = [r.index for r in rejections if r.index is not None]
    _require(named == sorted(set(named)), f"rejection indexes not distinct and in order: {named}")
    total = len(events) + len(rejections)
    _require(total >= 1 and all(0 <= i < total for i in named), f"indexes {named} of {total}")
    _require(all(r.raw and r.raw in value for r in rejections), "an element rejection's bytes")
    return event_indexes(len(events), rejections)


def _check_worker(value: bytes, outcome: Outcome) -> None:
    """The stream worker folds or forwards every valid event once and dead-letters the rest."""
    for partition in range(PARTITIONS):
        split = split_record(value, partition, PARTITIONS, now=NOW)
        _require(split.rejections == outcome.rejections, "the worker rejects otherwise")
        forwarded: list[Event] = []
        for forward in split.forward:
            got, bad = decode_record(forward.value, now=NOW, min_ts=MIN_TS)
            _require(not bad, f"a forwarded record is rejected: {bad[:1]!r}")
            _require(forward.partition != partition, "forwarded to its own partition")
            _require(
                all(partition_for(e.user_id, PARTITIONS) == forward.partition for e in got),
                "an event forwarded to a partition not its user's",
            )
            forwarded += got
        _require(
            sorted(map(_key, split.local + forwarded)) == sorted(map(_key, outcome.events)),
            "the worker's local and forwarded events are not the contract's",
        )


def _check_loader(value: bytes, outcome: Outcome) -> None:
    """The loader keeps every rejection and every valid event of its partition, at its index."""
    mine = 0
    buffer = PartitionBuffer("fuzz", mine, PARTITIONS)
    buffer.add(SourceRecord(mine, 7, _NOW_MS, b"k", value))
    _require(buffer.rejected == len(outcome.rejections), "the loader drops a rejection")
    local = [
        i
        for e, i in zip(outcome.events, outcome.indexes, strict=True)
        if partition_for(e.user_id, PARTITIONS) == mine
    ]
    _require(buffer.events + buffer.foreign == len(outcome.events), "the loader loses events")
    rows = buffer.events_table()
    _require(rows.column("batch_index").to_pylist() == local, "rows at the wrong batch index")
    dead = buffer.deadletter_table()
    _require(
        dead.column("reason").to_pylist() == [r.reason for r in outcome.rejections],
        "dead-letter rows are not the rejections",
    )


def _check_batch_of_one(value: bytes, outcome: Outcome) -> None:
    """An object read in brackets, as the collector reads a body that is one object
    (:func:`~usersignals.ingest.collector.batch_of`), is the same event or the same rejection
    as the object alone (the worker's reading of it)."""
    body = batch_of(value)
    if body == value:
        return
    events, rejections = decode_record(body, now=NOW, min_ts=MIN_TS)
    if [r.reason for r in rejections] == ["too_deep"] and not outcome.events:
        return  # the brackets are one level more: an unreadable object of 64 levels is too deep
    _require(events == outcome.events, "an object alone and in brackets give other events")
    _require(
        [r.reason for r in rejections] == [r.reason for r in outcome.rejections]
        and all(r.index in (None, 0) for r in rejections),
        "an object alone and in brackets are rejected otherwise",
    )


def _key(e: Event) -> bytes:
    return encode_event(e)


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise AssertionError(problem)


def main(argv: list[str]) -> None:  # pragma: no cover - runs under atheris in a subprocess
    import atheris

    atheris.Setup(argv, lambda data: check_record(bytes(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
