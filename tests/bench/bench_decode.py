"""How fast the contract decodes 100-event batch records, against plain ``json.loads``.

The worker must keep up with ~125,000 events/s end to end, so decoding alone needs a wide
margin. Records are valid events of every type, prepared before timing; both decoders read
the same bytes.

    .venv/bin/python tests/bench/bench_decode.py [N_EVENTS]
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from usersignals.ingest.contract import decode_record

__all__ = ["make_records", "run"]

BATCH = 100
_NOW = datetime(2026, 8, 4, tzinfo=UTC)


def _event(rng: random.Random, i: int) -> dict[str, Any]:
    ts = _NOW - timedelta(seconds=rng.randrange(30 * 86400), microseconds=rng.randrange(10**6))
    event: dict[str, Any] = {
        "event_id": f"{i:08x}-7c1e-4a8e-9b1f-{rng.getrandbits(48):012x}",
        "type": rng.choice(("session_start", "message", "message", "feedback", "risk_flag")),
        "user_id": f"user-{rng.randrange(200_000)}",
        "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "session_id": f"s-{rng.randrange(10**6)}",
        "model": rng.choice(("m-5.1", "m-5.2")),
        "platform": rng.choice(("web", "ios", "android")),
    }
    if event["type"] == "message":
        event.update(role=rng.choice(("user", "assistant")), tokens=rng.randrange(2000))
    elif event["type"] == "feedback":
        event.update(message_id=f"msg-{rng.randrange(10**6)}", rating=rng.choice((1, -1, 0)))
    elif event["type"] == "risk_flag":
        event.update(category="sycophancy", severity="high", properties={"score": rng.random()})
    return event


def make_records(n_events: int, seed: int = 7) -> list[bytes]:
    """``n_events`` valid events as JSON-array records of 100 (the last may be shorter)."""
    rng = random.Random(seed)
    events = [_event(rng, i) for i in range(n_events)]
    return [
        json.dumps(events[i : i + BATCH], separators=(",", ":")).encode()
        for i in range(0, n_events, BATCH)
    ]


def run(n_events: int = 1_000_000) -> dict[str, float]:
    """Times :func:`decode_record` and ``json.loads`` over the same records.

    Returns:
        ``decode_events_per_s``, ``json_loads_events_per_s`` and their ``ratio``.
    """
    records = make_records(n_events)
    start = time.perf_counter()
    decoded = 0
    for record in records:
        events, rejections = decode_record(record, now=_NOW)
        decoded += len(events)
        if rejections:
            raise RuntimeError(f"benchmark data rejected: {rejections[0].message}")
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    for record in records:
        json.loads(record)
    loads_s = time.perf_counter() - start
    if decoded != n_events:
        raise RuntimeError(f"decoded {decoded} of {n_events} events")
    decode_rate = n_events / decode_s
    loads_rate = n_events / loads_s
    return {
        "decode_events_per_s": round(decode_rate),
        "json_loads_events_per_s": round(loads_rate),
        "ratio": round(decode_rate / loads_rate, 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000), indent=2))
