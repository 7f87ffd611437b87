"""The same ``ts`` rule at every door: the worker's and the loader's decoding of a record, and
a real collector process started with ``USERSIGNALS_MIN_TS`` (the SDK and the JSON Schema:
``test_timestamps.py``; all four forms on generated events: ``test_contract_agreement.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import Kafka
from tests.ingest.test_collector import AUTH, KEYS, Running, _corner, post, start_collector
from usersignals.broker import EmbeddedBroker
from usersignals.ingest.partitioner import partition_for
from usersignals.streams.records import split_record
from usersignals.warehouse.rows import PartitionBuffer, SourceRecord

NOW = datetime(2026, 8, 4, 12, 0, tzinfo=UTC)
SECONDS = "Invalid 'ts': 1764650000 (looks like seconds; send milliseconds)"
BEFORE = "Invalid 'ts': '1999-12-31T23:59:59Z' (before the lower bound 2000-01-01T00:00:00Z)"


def _event(event_id: str, ts: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": "session_start", "user_id": "u-1", "ts": ts}


RECORD = json.dumps(
    [
        _event("seconds", 1764650000),
        _event("before", "1999-12-31T23:59:59Z"),
        _event("bound", "2000-01-01T00:00:00Z"),
        _event("ms", 1764650000000),
    ]
).encode()
PARTITION = partition_for("u-1", 8)


def test_the_worker_rejects_epoch_seconds_and_the_past() -> None:
    outcome = split_record(RECORD, PARTITION, 8, now=NOW)
    assert [e.event_id for e in outcome.local] == ["bound", "ms"]
    assert [(r.index, r.reason, r.message) for r in outcome.rejections] == [
        (0, "bad_timestamp", SECONDS),
        (1, "bad_timestamp", BEFORE),
    ]


def test_the_loader_dead_letters_epoch_seconds_and_the_past() -> None:
    buffer = PartitionBuffer("usersignals.events", PARTITION, 8)
    received_ms = int(NOW.timestamp() * 1000)
    buffer.add(SourceRecord(PARTITION, 7, received_ms, b"u-1", RECORD))
    assert buffer.events_table().column("event_id").to_pylist() == ["bound", "ms"]
    dead = buffer.deadletter_table()
    assert dead.column("message").to_pylist() == [SECONDS, BEFORE]
    assert dead.column("batch_index").to_pylist() == [0, 1]


@pytest.fixture(scope="module")
def backfill_collector(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """A collector whose lower bound is lowered for a backfill, through its environment."""
    corner: Kafka = _corner(broker, tmp_path_factory.mktemp("backfill"))
    env = {**corner.env(), "USERSIGNALS_WRITE_KEYS": KEYS}
    running = start_collector({**env, "USERSIGNALS_MIN_TS": "1990-01-01T00:00:00Z"})
    yield running
    assert running.stop() == 0


def test_the_collector_applies_the_bound_of_its_environment(backfill_collector: Running) -> None:
    payload = [
        _event("seconds", 1764650000),
        _event("old", "1995-06-01T00:00:00Z"),
        _event("older", "1989-12-31T23:59:59Z"),
    ]
    answer = post(backfill_collector.url, payload, AUTH)
    assert answer.status == 207
    assert answer.body["accepted"] == ["old"]
    assert [(r["index"], r["reason"], r["message"]) for r in answer.body["rejected"]] == [
        (0, "bad_timestamp", SECONDS),
        (
            2,
            "bad_timestamp",
            "Invalid 'ts': '1989-12-31T23:59:59Z' (before the lower bound 1990-01-01T00:00:00Z)",
        ),
    ]
