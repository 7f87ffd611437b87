"""Worker throughput against a bare aiokafka consumer on the same broker, in one run.

Three topics on one broker:

1. **traffic**: the synthetic generator's chat traffic (``usersignals generate``: heavy-tailed
   users, sessions, votes, flags, retries, late uploads, every ``ts`` wire form) over 30 days,
   validated and written by the SDK (:class:`~usersignals.ingest.tracker.Tracker`) as a busy
   client writes it: one record per partition of up to 1,000 events (the mean is reported).
   The headline figure.
2. **scattered**: 100-event records whose events each fall on a random one of 30 days, half of
   them votes, flags and preferences, 5 events per distinct user: the most work per event the
   folds can get, and the worker's memory per distinct user is measured here.
3. **singles**: one-event records, the reference of the issue's "2 %" remark (a plain Faust
   agent decoding one event per record).

A bare aiokafka consumer reads traffic and singles from the beginning (no decoding); a real
``usersignals worker`` process (no loader, fresh consumer group) then consumes traffic, and
another one scattered, through validation and every live metric, each timed from its first
processed record to its last (group join and recovery left out), polled on
``/v1/status?counts=0``. Memory: the worker's VmRSS growth from idle to caught up.

    .venv/bin/python tests/bench/bench_worker.py [N_EVENTS]
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from usersignals.broker import EmbeddedBroker, ensure_topics, free_port, wait_for_port
from usersignals.ingest.partitioner import partition_for
from usersignals.processes import terminate

__all__ = ["run"]

BATCH = 100
PARTITIONS = 8
USERS_PER_EVENT = 5  # one distinct user per 5 events
SINGLES = 100_000  # one-event records for the reference rate
TRAFFIC_DAYS = 30
LINES_PER_USER = 47  # what the generator emits per user over 30 days, about
_NOW = datetime.now(UTC).replace(microsecond=0)


def _events(n: int, seed: int) -> dict[int, list[bytes]]:
    """Wire events (JSON bytes) grouped by the partition of their user."""
    rng = random.Random(seed)
    users = max(n // USERS_PER_EVENT, 1)
    kinds = ("session_start", "message", "message", "feedback", "risk_flag", "preference")
    out: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for i in range(n):
        uid = f"user-{i % users}"
        kind = kinds[i % len(kinds)]
        ts = _NOW - timedelta(seconds=rng.randrange(30 * 86400))
        ev: dict[str, Any] = {
            "event_id": f"{i:010d}-{rng.getrandbits(40):010x}",
            "type": kind,
            "user_id": uid,
            "ts": ts.isoformat().replace("+00:00", "Z"),
            "model": rng.choice(("m-5.1", "m-5.2")),
        }
        if kind == "message":
            ev.update(role="user", tokens=rng.randrange(2000))
        elif kind == "feedback":
            ev.update(message_id=f"msg-{rng.randrange(10**6)}", rating=rng.choice((1, -1, 0)))
        elif kind == "risk_flag":
            ev.update(category="sycophancy", severity=rng.choice(("low", "high")))
        elif kind == "preference":
            ev.update(model_a="m-5.1", model_b="m-5.2", winner=rng.choice(("a", "b", "tie")))
        out[partition_for(uid, PARTITIONS)].append(json.dumps(ev, separators=(",", ":")).encode())
    return out


def _produce(bootstrap: str, topic: str, by_p: dict[int, list[bytes]], batch: int) -> int:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=20,
        batch_size=1 << 20,
        max_request_size=4 << 20,
    )
    records = 0
    for p, evs in by_p.items():
        for i in range(0, len(evs), batch):
            chunk = evs[i : i + batch]
            value = chunk[0] if batch == 1 else b"[" + b",".join(chunk) + b"]"
            producer.send(topic, value=value, partition=p)
            records += 1
    producer.flush(600)
    producer.close()
    return records


def _traffic(bootstrap: str, topic: str, n: int, seed: int) -> tuple[int, int]:
    """Writes ``n`` lines of generator traffic through the SDK; returns (events, records)."""
    import itertools
    import tempfile

    from usersignals.cli.status import end_offsets
    from usersignals.ingest.contract import decode_record
    from usersignals.ingest.synthetic import GeneratorConfig, generate
    from usersignals.ingest.tracker import Tracker

    config = GeneratorConfig(users=max(n // LINES_PER_USER, 1), days=TRAFFIC_DAYS, seed=seed)
    events = [e for line in itertools.islice(generate(config), n) for e in decode_record(line)[0]]
    with (
        tempfile.TemporaryDirectory() as spool,
        Tracker(
            bootstrap, topic=topic, partitions=PARTITIONS, spool_path=f"{spool}/bench.spool"
        ) as tracker,
    ):
        for event in events:
            tracker.track_event(event)
        if not tracker.flush(600):
            raise RuntimeError("the SDK did not deliver the traffic")
    return len(events), sum(end_offsets(bootstrap, topic, PARTITIONS).values())


async def _bare(bootstrap: str, topic: str, records: int) -> float:
    """Seconds for a bare aiokafka consumer to read ``records`` records from the beginning."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        seen = 0
        start = time.perf_counter()
        while seen < records:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for msgs in batch.values():
                seen += len(msgs)
        return time.perf_counter() - start
    finally:
        await consumer.stop()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _status(port: int) -> dict[str, Any] | None:
    try:
        url = f"http://127.0.0.1:{port}/v1/status?counts=0"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return dict(json.loads(resp.read()))
    except OSError:
        return None


def _worker(bootstrap: str, prefix: str, records: int, timeout: float) -> dict[str, float]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        USERSIGNALS_BOOTSTRAP=bootstrap,
        USERSIGNALS_TOPIC_PREFIX=prefix,
        USERSIGNALS_PARTITIONS=str(PARTITIONS),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "usersignals", "worker", "--no-loader", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port("127.0.0.1", port, 60):
            raise RuntimeError("worker did not start")
        deadline = time.monotonic() + timeout
        rss_idle = _rss_kib(proc.pid)
        first: tuple[float, int] | None = None
        while time.monotonic() < deadline:
            s = _status(port)
            now = time.perf_counter()
            if s is not None and s["records"] > 0 and first is None:
                first = (now, s["records"])
            elif s is not None and first is None:
                rss_idle = _rss_kib(proc.pid)
            if s is not None and s["records"] >= records and first is not None:
                seconds = now - first[0]
                return {
                    "seconds": seconds,
                    "records_timed": records - first[1],
                    "rss_idle_kib": rss_idle,
                    "rss_done_kib": _rss_kib(proc.pid),
                }
            time.sleep(0.05)
        raise RuntimeError("worker did not catch up in time")
    finally:
        terminate(proc, 60)


def run(n_events: int = 1_000_000, bootstrap: str | None = None, seed: int = 7) -> dict[str, Any]:
    """Runs the benchmark (on its own embedded broker unless ``bootstrap`` is given)."""
    if bootstrap is None:
        with EmbeddedBroker(partitions=PARTITIONS, topics=()) as broker:
            return run(n_events, broker.bootstrap, seed)
    prefix = f"bench{os.getpid()}-{int(time.time())}"
    traffic, scattered, singles = (f"{prefix}-{name}" for name in ("traffic", "scattered", "one"))
    ensure_topics(
        bootstrap,
        PARTITIONS,
        [f"{p}.events{dead}" for p in (traffic, scattered, singles) for dead in ("", ".dead")],
    )
    traffic_events, traffic_records = _traffic(bootstrap, f"{traffic}.events", n_events, seed)
    records = _produce(bootstrap, f"{scattered}.events", _events(n_events, seed), BATCH)
    single_records = _produce(bootstrap, f"{singles}.events", _events(SINGLES, seed + 1), 1)
    bare_s = asyncio.run(_bare(bootstrap, f"{traffic}.events", traffic_records))
    bare_single_s = asyncio.run(_bare(bootstrap, f"{singles}.events", single_records))
    timeout = max(120.0, n_events / 5_000)
    w = _worker(bootstrap, traffic, traffic_records, timeout)
    ws = _worker(bootstrap, scattered, records, timeout)
    per_record = traffic_events / traffic_records
    worker_eps = w["records_timed"] * per_record / w["seconds"]
    scattered_eps = ws["records_timed"] * (n_events / records) / ws["seconds"]
    bare_eps = traffic_events / bare_s
    bare_single_rps = single_records / bare_single_s
    users = max(n_events // USERS_PER_EVENT, 1)
    grown_kib = ws["rss_done_kib"] - ws["rss_idle_kib"]
    return {
        "events": traffic_events,
        "records": traffic_records,
        "events_per_record": round(per_record, 1),
        "bare_consumer_records_per_s": round(traffic_records / bare_s),
        "bare_consumer_events_per_s": round(bare_eps),
        "bare_consumer_one_event_records_per_s": round(bare_single_rps),
        "worker_events_per_s": round(worker_eps),
        "ratio_worker_events_to_bare_events": round(worker_eps / bare_eps, 4),
        "ratio_worker_events_to_bare_one_event_records": round(worker_eps / bare_single_rps, 4),
        "scattered_events": n_events,
        "scattered_events_per_record": BATCH,
        "scattered_worker_events_per_s": round(scattered_eps),
        "ratio_scattered_worker_events_to_bare_one_event_records": round(
            scattered_eps / bare_single_rps, 4
        ),
        "distinct_users": users,
        "worker_rss_idle_mib": round(ws["rss_idle_kib"] / 1024, 1),
        "worker_rss_done_mib": round(ws["rss_done_kib"] / 1024, 1),
        "worker_mib_per_million_users": round(grown_kib / 1024 / users * 1e6, 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000), indent=2))
