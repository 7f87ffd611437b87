"""A real worker process on the real broker: report equal to the oracle, dead letters, forwards,
the live client merge and clean SIGTERM (issue 4, items 1, 4a, 5)."""

from __future__ import annotations

import hashlib
import json
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from tests.arena_reference import reference_arena, same_arena
from tests.conftest import Kafka
from tests.oracle import dedupe
from tests.streams.test_wellbeing_live import oracle_live
from tests.streams.workerproc import (
    BAD_RECORDS,
    Produced,
    batch_records,
    generate_wire,
    produce,
    running_worker,
    wait_caught_up,
)
from usersignals.cli.live import fetch_live_report
from usersignals.ingest.partitioner import partition_for

N = 8


def without_arena(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "arena"}


def preference_table(produced: Produced) -> dict[tuple[str, str, str], int]:
    counts: dict[tuple[str, str, str], int] = {}
    for e in dedupe(produced.events_in_log_order()):
        if e.type == "preference":
            key = (str(e.model_a), str(e.model_b), str(e.winner))
            counts[key] = counts.get(key, 0) + 1
    return counts


def read_dead(kafka: Kafka, expected: int) -> list[Any]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        kafka.settings.dead_topic,
        bootstrap_servers=kafka.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    records = []
    for r in consumer:
        records.append(r)
        if len(records) >= expected:
            break
    consumer.close()
    return records


def test_worker_report_equals_oracle_and_dead_letters_every_reject(
    kafka: Kafka, tmp_path: Path
) -> None:
    wire = generate_wire(seed=11)
    records = batch_records(wire, N, batch_size=20)
    bad = [(i % N, None, v) for i, v in enumerate(BAD_RECORDS)]
    # a foreign producer's mixed batch on partition 0: others' users are forwarded
    mixed_users = ["mix-a", "mix-b", "mix-c", "mix-d", "mix-e"]
    mixed = [
        {"event_id": f"mx{i}", "type": "session_start", "user_id": u, "ts": 1788000000000 + i}
        for i, u in enumerate(mixed_users)
    ]
    produced = produce(kafka.bootstrap, kafka.settings.events_topic, [*records, *bad])
    produce(
        kafka.bootstrap,
        kafka.settings.events_topic,
        [(0, b"mix-a", json.dumps(mixed).encode())],
        produced,
    )
    forwarded_parts = {partition_for(u, N) for u in mixed_users} - {0}
    with running_worker(kafka.env(), tmp_path) as worker:
        ends = dict(produced.ends)
        for p in forwarded_parts:  # one forwarded record each, after what we wrote
            ends[p] = ends.get(p, 0) + 1
        wait_caught_up(
            [worker],
            kafka.bootstrap,
            f"{kafka.settings.topic_prefix}-worker",
            kafka.settings.events_topic,
            ends,
            N,
        )
        report = worker.get("/v1/report")
        status = worker.get("/v1/status")
        live = fetch_live_report(kafka.settings.with_(worker_url=worker.url))
        expected = oracle_live(produced.events_in_log_order(), produced.rejected())
        assert without_arena(report) == without_arena(expected)
        assert report["arena"]
        assert same_arena(report["arena"], reference_arena(preference_table(produced)))
        assert live == report
        rejected_total = sum(produced.rejected().values())
        assert rejected_total == 9
        assert status["rejected"] == produced.rejected()
        assert status["accepted"] == sum(r["events"] for r in expected["events_by_day"])
        dead = read_dead(kafka, rejected_total)
        assert len(dead) == rejected_total
        empty = next(r for r in dead if dict(r.headers)["reason"] == b"empty")
        assert empty.value in (b"", None)
        assert dict(empty.headers) == {
            "reason": b"empty",
            "message": b"Empty record",
            "source_topic": kafka.settings.events_topic.encode(),
            "source_partition": b"0",
            "source_offset": str(produced.values[0].index(b"")).encode(),
            "length": b"0",
            "sha256": hashlib.sha256(b"").hexdigest().encode(),
        }
        assert sorted(r.value for r in dead if dict(r.headers)["reason"] == b"not_object") == [
            b"1",
            b"2",
            b"3",
        ]
        with pytest.raises(urllib.error.HTTPError) as refused:
            worker.get("/v1/partial?from=2026-02-30&to=2026-03-01")
        assert refused.value.code == 400
        assert json.loads(refused.value.read()) == {
            "error": "Bad day range: from='2026-02-30' to='2026-03-01' "
            "(expected YYYY-MM-DD, from <= to)"
        }
        stopped = worker.stop()
    assert stopped == 0
