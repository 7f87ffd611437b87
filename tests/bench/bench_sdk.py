"""How fast the SDK ships events, against a bare kafka-python producer sending the same records.

The Tracker validates every event at the call, groups events by partition into records of up to
1,000, and sends them with an idempotent ``acks=all`` producer. The bare producer gets the very
same record bytes, already encoded and grouped the same way (:func:`build_records` over the same
chunks), the same partitions and keys and the same producer settings, so the difference is the
SDK's own cost: validation, encoding, queueing and its sender thread.

    .venv/bin/python tests/bench/bench_sdk.py [N_EVENTS]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from usersignals.ingest.batching import build_records
from usersignals.ingest.contract import Event, validate
from usersignals.ingest.tracker import Tracker

__all__ = ["make_calls", "run"]

_NOW = datetime(2026, 8, 4, tzinfo=UTC)
PARTITIONS = 8
BATCH = 1000


def make_calls(n_events: int, seed: int = 11) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Typed-method calls (name, args, kwargs) with ids and times fixed, so bytes can be rebuilt."""
    rng = random.Random(seed)
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    for i in range(n_events):
        user = f"user-{rng.randrange(20_000)}"
        common: dict[str, Any] = {
            "event_id": f"{i:08x}-7c1e-4a8e-9b1f-{rng.getrandbits(48):012x}",
            "ts": _NOW - timedelta(seconds=rng.randrange(86400), microseconds=rng.randrange(10**6)),
            "session_id": f"s-{rng.randrange(10**6)}",
            "model": rng.choice(("m-5.1", "m-5.2")),
            "platform": rng.choice(("web", "ios", "android")),
        }
        kind = rng.random()
        if kind < 0.7:
            role = rng.choice(("user", "assistant"))
            calls.append(("message", (user, role), {**common, "tokens": rng.randrange(2000)}))
        elif kind < 0.85:
            calls.append(("session_start", (user,), common))
        elif kind < 0.97:
            msg = f"msg-{rng.randrange(10**6)}"
            calls.append(("feedback", (user, msg, rng.choice((1, -1))), common))
        else:
            calls.append(("risk_flag", (user, "sycophancy", "high"), common))
    return calls


def _events(calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> list[Event]:
    positional = {
        "message": ("user_id", "role"),
        "session_start": ("user_id",),
        "feedback": ("user_id", "message_id", "rating"),
        "risk_flag": ("user_id", "category", "severity"),
    }
    out: list[Event] = []
    for name, args, kwargs in calls:
        obj = {"type": name, **dict(zip(positional[name], args, strict=True)), **kwargs}
        event = validate(obj)
        if not isinstance(event, Event):
            raise ValueError(event.message)
        out.append(event)
    return out


def _bare(bootstrap: str, topic: str, records: list[Any]) -> float:
    from kafka import KafkaProducer

    from usersignals.ingest.contract import MAX_RECORD_BYTES

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        batch_size=MAX_RECORD_BYTES + (64 << 10),
        max_request_size=MAX_RECORD_BYTES + (64 << 10),
        allow_auto_create_topics=False,
    )
    try:
        producer.partitions_for(topic)
        start = time.perf_counter()
        for r in records:
            producer.send(topic, value=r.value, key=r.key, partition=r.partition)
        producer.flush()
        return time.perf_counter() - start
    finally:
        producer.close()


def _sdk(bootstrap: str, topic: str, calls: list[Any], spool: Path) -> float:
    with Tracker(bootstrap, topic=topic, spool_path=spool) as tracker:
        tracker.session_start("warm-up")  # connect before the clock starts
        if not tracker.flush(30):
            raise RuntimeError("the tracker could not reach Kafka")
        methods = {name: getattr(tracker, name) for name, _, _ in calls}
        start = time.perf_counter()
        for name, args, kwargs in calls:
            methods[name](*args, **kwargs)
        if not tracker.flush(600):
            raise RuntimeError("the tracker did not deliver everything")
        elapsed = time.perf_counter() - start
        stats = tracker.stats
    if stats.sent != len(calls) + 1 or stats.spooled or stats.failed:
        raise RuntimeError(f"unexpected counters: {stats}")
    return elapsed


def run(n_events: int, bootstrap: str, topic: str, rounds: int = 3) -> dict[str, float]:
    """Times the Tracker and a bare producer over the same ``n_events`` events.

    The two alternate for ``rounds`` rounds and the best time of each counts, so that a burst
    of load from other processes on the machine does not decide the ratio.

    Returns:
        ``sdk_events_per_s``, ``bare_events_per_s``, ``ratio`` (SDK / bare, target >= 0.8),
        ``events`` and ``records`` (records the bare producer sent per round).
    """
    calls = make_calls(n_events)
    events = _events(calls)
    chunk = BATCH * PARTITIONS  # the Tracker's sender takes chunks of this size under load
    records = [
        r
        for start in range(0, len(events), chunk)
        for r in build_records(events[start : start + chunk], PARTITIONS, BATCH)
    ]
    bare: list[float] = []
    sdk: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            bare.append(_bare(bootstrap, topic, records))
            sdk.append(_sdk(bootstrap, topic, calls, Path(tmp) / f"bench{i}.spool"))
    return {
        "events": float(n_events),
        "records": float(len(records)),
        "bare_events_per_s": round(n_events / min(bare), 1),
        "sdk_events_per_s": round(n_events / min(sdk), 1),
        "ratio": round(min(bare) / min(sdk), 3),
    }


def main() -> None:
    from usersignals.broker import EmbeddedBroker

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with EmbeddedBroker(partitions=PARTITIONS, topics=("bench.events",)) as broker:
        print(run(n, broker.bootstrap, "bench.events"))


if __name__ == "__main__":
    main()
