"""The suite's traffic: generated batches streamed in the background, and the poison records.

Records are written with a plain producer straight to their partitions (as the SDK would
batch them), and the same bytes give the oracle its input (:class:`Produced`).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.streams.workerproc import FIRST_DAY, Produced, produce
from usersignals.ingest.partitioner import partition_for

Record = tuple[int, bytes | None, bytes]

NOT_JSON_BYTES = 1_000_000
"""A record of this many bytes that is not JSON."""
OVER_LIMIT_BYTES = (1 << 20) + 1
"""One byte over the contract's record limit (1 MiB)."""
VALID_BATCH_BYTES = 995_758
"""A valid batch of 1,000 events this size, written to a partition its user does not map to."""


class Streamer(threading.Thread):
    """Writes records chunk by chunk with a pause between chunks, like live traffic."""

    def __init__(
        self, bootstrap: str, topic: str, records: list[Record], produced: Produced, pause: float
    ) -> None:
        super().__init__(daemon=True, name="fault-traffic")
        self.bootstrap, self.topic, self.records = bootstrap, topic, records
        self.produced, self.pause = produced, pause
        self.sent = 0
        self.error: BaseException | None = None
        self.chunk = 20

    def run(self) -> None:
        try:
            for i in range(0, len(self.records), self.chunk):
                chunk = self.records[i : i + self.chunk]
                produce(self.bootstrap, self.topic, chunk, self.produced)
                self.sent += len(chunk)
                time.sleep(self.pause)
        except BaseException as exc:  # surfaced by the suite
            self.error = exc


def not_json_record(partition: int) -> Record:
    """1,000,000 bytes that are not JSON, shaped as a batch (a record read as one event would
    be ``too_large`` over 32 KiB before it is parsed, docs/events.md)."""
    return partition, None, b"[" + b"z" * (NOT_JSON_BYTES - 1)


def over_limit_record(partition: int) -> Record:
    """A record of 1 MiB + 1."""
    return partition, None, b"[" + b"x" * (OVER_LIMIT_BYTES - 1)


def valid_batch_elsewhere(partitions: int) -> tuple[Record, str]:
    """A valid 1,000-event batch of exactly :data:`VALID_BATCH_BYTES`, on another partition than
    its one user's (the worker forwards its events, re-encoded, to the user's partition).
    Returns the record and the user id."""
    user = "poison-batch-user"
    home = partition_for(user, partitions)
    start = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC)

    def event(i: int, pad: int) -> dict[str, Any]:
        moment = start + timedelta(days=i % 20, seconds=i * 37)
        return {
            "event_id": f"poison-{i:04d}",
            "type": "message",
            "role": "user",
            "user_id": user,
            "ts": moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "properties": {"pad": "p" * pad},
        }

    events = [event(i, 830) for i in range(1000)]
    size = len(json.dumps(events).encode())
    events[-1] = event(999, 830 + VALID_BATCH_BYTES - size)
    value = json.dumps(events).encode()
    if len(value) != VALID_BATCH_BYTES:
        raise ValueError(f"valid batch of {len(value)} bytes, not {VALID_BATCH_BYTES}")
    return ((home + 1) % partitions, user.encode(), value), user
