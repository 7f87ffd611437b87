"""No record stops the worker: records at and over the size limits, and a valid batch whose
forward would not fit in one record, produced to a real worker process on the real broker.
The worker stays up (the same process, no restart), counts and dead-letters each with its
reason, length, hash and source offset, forwards the batch's events, and counts the good
traffic after them exactly."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from tests.conftest import Kafka
from tests.streams.test_wellbeing_live import oracle_live
from tests.streams.test_worker import read_dead
from tests.streams.workerproc import (
    batch_records,
    generate_wire,
    produce,
    running_worker,
)
from usersignals.ingest.contract import decode_record, encode_batch
from usersignals.ingest.event import DEAD_PREFIX_BYTES, MAX_BATCH, MAX_RECORD_BYTES
from usersignals.ingest.partitioner import partition_for

N = 8
NOT_JSON = b"[" + b"y" * 999_999
"""1,000,000 bytes, not JSON: its whole dead letter was over Faust's 1,000,000-byte request."""
TOO_LARGE = b"[" + b"x" * MAX_RECORD_BYTES
"""1 MiB + 1 byte."""
TOO_DEEP = b"[" * MAX_RECORD_BYTES
"""Exactly 1 MiB (read, too deep): dead-lettered whole, with its headers."""


def users_of(partition: int, n: int) -> list[str]:
    found: list[str] = []
    i = 0
    while len(found) < n:
        if partition_for(f"big{i}", N) == partition:
            found.append(f"big{i}")
        i += 1
    return found


def big_batch(partition: int) -> bytes:
    """A valid 1,000-event batch under 1 MiB of users of ``partition``, whose re-encoding is
    over 1 MiB."""
    users = users_of(partition, 10)
    events = [
        {
            "event_id": f"big-{i}",
            "type": "session_start",
            "user_id": users[i % 10],
            "ts": 1788220800000 + i * 1000,
            "properties": {"p": "x" * 942},
        }
        for i in range(MAX_BATCH)
    ]
    value = json.dumps(events, separators=(",", ":")).encode()
    assert len(value) <= MAX_RECORD_BYTES < len(encode_batch(decode_record(value)[0]))
    return value


def wait_counted(worker: Any, accepted: int, rejected: dict[str, int], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = worker.status()
        if status and status["accepted"] == accepted and status["rejected"] == rejected:
            return status
        time.sleep(0.5)
    raise TimeoutError(f"not counted: {status}")


def test_no_record_stops_the_worker(kafka: Kafka, tmp_path: Path) -> None:
    topic = kafka.settings.events_topic
    poison = [(0, None, NOT_JSON), (1, None, TOO_LARGE), (2, None, TOO_DEEP)]
    poison.append((2, b"big", big_batch(5)))  # on another partition than its users'
    good = batch_records(generate_wire(seed=5, users=40), N, batch_size=10)
    with running_worker(kafka.env(), tmp_path) as worker:
        pid = worker.proc.pid
        produced = produce(kafka.bootstrap, topic, poison)
        produce(kafka.bootstrap, topic, good, produced)
        expected = oracle_live(produced.events_in_log_order(), produced.rejected())
        assert produced.rejected() == {"not_json": 1, "too_deep": 1, "too_large": 1}
        accepted = sum(r["events"] for r in expected["events_by_day"])
        status = wait_counted(worker, accepted, produced.rejected(), timeout=120)
        report = worker.get("/v1/report")
        assert {k: v for k, v in report.items() if k != "arena"} == {
            k: v for k, v in expected.items() if k != "arena"
        }
        assert status["records"] == len(poison) + len(good) + 1  # and the one forward
        metrics = worker.get("/metrics")
        for reason in ("not_json", "too_deep", "too_large"):
            assert f'usersignals_events_rejected{{reason="{reason}"}} 1.0' in metrics
        dead = sorted(read_dead(kafka, 3), key=lambda r: dict(r.headers)["reason"])
        for record, (reason, value, partition) in zip(
            dead,
            [("not_json", NOT_JSON, 0), ("too_deep", TOO_DEEP, 2), ("too_large", TOO_LARGE, 1)],
            strict=True,
        ):
            headers = dict(record.headers)
            assert headers["reason"] == reason.encode()
            assert headers["length"] == str(len(value)).encode()
            assert headers["sha256"] == hashlib.sha256(value).hexdigest().encode()
            assert headers["source_partition"] == str(partition).encode()
            assert headers["source_offset"] == b"0"
            kept = DEAD_PREFIX_BYTES if reason == "too_large" else len(value)
            assert record.value == value[:kept]
        assert worker.proc.poll() is None
        assert worker.proc.pid == pid
        assert "MessageSizeTooLarge" not in worker.log.read_text()
        assert worker.stop() == 0
