"""Loader throughput (events/s into Parquet) beside a bare aiokafka consumer of the same topic.

Both read the same 100-event batch records from a fresh topic on the given broker; the bare
consumer only counts records, the loader decodes, writes zstd Parquet files and commits.

    .venv/bin/python tests/bench/bench_loader.py [N_EVENTS]   (starts its own broker)
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from usersignals.broker import EmbeddedBroker, ensure_topics
from usersignals.config import Settings
from usersignals.ingest.contract import Event, encode_batch, partition_for
from usersignals.warehouse.loader import Loader

__all__ = ["make_records", "run"]

BATCH = 100
_NOW = datetime(2026, 8, 4, tzinfo=UTC)


def make_records(
    n_events: int, partitions: int = 8, users: int = 20_000, seed: int = 7
) -> list[tuple[int, bytes]]:
    """(partition, value) records of up to 100 events whose users all belong to the partition."""
    rng = random.Random(seed)
    pending: dict[int, list[Event]] = {p: [] for p in range(partitions)}
    out: list[tuple[int, bytes]] = []
    for i in range(n_events):
        user = f"user-{rng.randrange(users)}"
        p = partition_for(user, partitions)
        kind = rng.choice(("session_start", "message", "message", "feedback", "risk_flag"))
        fields: dict[str, Any] = {}
        if kind == "message":
            fields = {"role": "user", "tokens": rng.randrange(2000)}
        elif kind == "feedback":
            fields = {"message_id": f"msg-{rng.randrange(10**6)}", "rating": 1}
        elif kind == "risk_flag":
            fields = {"category": "sycophancy", "severity": "high", "properties": {"s": 0.5}}
        pending[p].append(
            Event(
                event_id=f"{i:08x}-{rng.getrandbits(48):012x}",
                type=kind,
                user_id=user,
                ts=_NOW - timedelta(seconds=rng.randrange(7 * 86400)),
                session_id=f"s-{rng.randrange(10**6)}",
                model=rng.choice(("m-5.1", "m-5.2")),
                platform="web",
                **fields,
            )
        )
        if len(pending[p]) == BATCH:
            out.append((p, encode_batch(pending[p])))
            pending[p] = []
    out += [(p, encode_batch(evs)) for p, evs in pending.items() if evs]
    return out


def _produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_request_size=2 << 20
    )
    for p, value in records:
        producer.send(topic, value=value, partition=p)
    producer.flush()
    producer.close()


async def _bare_consumer(bootstrap: str, topic: str, n_records: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    start = time.perf_counter()
    await consumer.start()
    try:
        await consumer.topics()
        parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in parts])
        seen = 0
        while seen < n_records:
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            seen += sum(len(msgs) for msgs in batch.values())
    finally:
        await consumer.stop()
    return time.perf_counter() - start


def run(n_events: int, bootstrap: str, warehouse: Path | None = None) -> dict[str, Any]:
    """Produces ``n_events`` in 100-event records to a fresh topic, then times both readers.

    Returns:
        events, records, bare consumer and loader rates, their ratio, Parquet files and bytes.
    """
    prefix = f"bench-loader-{os.getpid()}-{time.time_ns()}"
    root = warehouse or Path(tempfile.mkdtemp(prefix="usersignals-bench-"))
    settings = Settings.load(environ={}, bootstrap=bootstrap, topic_prefix=prefix, warehouse=root)
    ensure_topics(bootstrap, settings.partitions, settings.topics)
    records = make_records(n_events, settings.partitions)
    _produce(bootstrap, settings.events_topic, records)
    bare_s = asyncio.run(_bare_consumer(bootstrap, settings.events_topic, len(records)))
    stats = asyncio.run(Loader(settings, drain=True).run())
    if stats.events != n_events:
        raise RuntimeError(f"loaded {stats.events} of {n_events} events")
    files = list(root.rglob("*.parquet"))
    return {
        "events": n_events,
        "records": len(records),
        "bare_consumer_records_per_s": round(len(records) / bare_s),
        "bare_consumer_events_per_s": round(n_events / bare_s),
        "loader_events_per_s": round(n_events / stats.seconds),
        "loader_vs_bare": round(bare_s / stats.seconds, 4),
        "parquet_files": len(files),
        "parquet_bytes": sum(f.stat().st_size for f in files),
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with EmbeddedBroker(partitions=8, topics=()) as broker:
        for key, value in run(n, broker.bootstrap).items():
            print(f"{key:30} {value}")
