"""Collector throughput on its capture endpoints, beside the native ``POST /v1/events``.

One ``usersignals collector`` process (a child, on a free port, writing to the broker given)
takes the same chat events three ways, each as gzip bodies of 100 events sent by 4 concurrent
clients over keep-alive connections:

1. **native**: ``POST /v1/events``, JSON arrays of contract events, ``Authorization: Bearer``;
2. **posthog**: ``POST /batch/``, posthog-python's body ``{api_key, batch, sent_at}`` with
   ``Content-Encoding: gzip``, the events named as the capture mapping reads them
   (``session_started``, ``message_sent``, ``thumbs_up``, ``$pageview``, ...);
3. **segment**: ``POST /v1/batch``, analytics-python's body ``{batch, sentAt, writeKey}`` of
   ``track`` and ``page`` calls, the key also as the HTTP Basic user.

Before the clock starts, every body is checked against the pure mapping
(:mod:`usersignals.ingest.capture`): each capture body maps to exactly the contract events of
the matching native body, none rejected, so the three runs store the same events and a capture
endpoint cannot look fast by dead-lettering. Every answer must be a 200. The three alternate
for ``rounds`` rounds and the best time of each counts. Rate limits are off (0) for the run;
the write key is on. The figure is capture events/s over native events/s (target >= 0.8).

    .venv/bin/python tests/bench/bench_capture.py [N_EVENTS]
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

__all__ = ["make_bodies", "run"]

BATCH = 100
CLIENTS = 4
PARTITIONS = 8
KEY = "bench-capture-key"
START_TIMEOUT_S = 60.0
_NOW = datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _one(rng: random.Random, i: int) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A native contract event, and the same event as an app names it: (native, name, props).

    ``props`` are the properties the capture mapping reads (``$session_id``, ``model``, ...).
    """
    user = f"user-{rng.randrange(20_000)}"
    ts = _NOW - timedelta(seconds=rng.randrange(86_400), milliseconds=rng.randrange(1000))
    session = f"s-{rng.randrange(10**6)}"
    model = rng.choice(("m-5.1", "m-5.2"))
    native: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "user_id": user,
        "ts": _iso(ts),
        "session_id": session,
        "model": model,
    }
    props: dict[str, Any] = {"$session_id": session, "model": model}
    kind = rng.random()
    if kind < 0.6:
        role = rng.choice(("user", "assistant"))
        tokens = rng.randrange(2000)
        name = "message_sent" if role == "user" else "message_received"
        native.update(type="message", role=role, tokens=tokens, message_id=f"msg-{i}")
        props.update(role=role, tokens=tokens, message_id=f"msg-{i}")
    elif kind < 0.7:
        name = "session_started"
        native.update(type="session_start")
    elif kind < 0.85:
        rating = rng.choice((1, -1))
        message = f"msg-{rng.randrange(10**6)}"
        name = "thumbs_up" if rating == 1 else "thumbs_down"
        native.update(type="feedback", message_id=message, rating=rating)
        props.update(message_id=message)
    elif kind < 0.88:
        name = "risk_flagged"
        native.update(type="risk_flag", category="sycophancy", severity="high")
        props.update(category="sycophancy", severity="high")
    else:
        name = "$pageview"
        native.update(type="custom", name="$pageview")
    return native, name, props


def _posthog(native: dict[str, Any], name: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": name,
        "distinct_id": native["user_id"],
        "uuid": native["event_id"],
        "timestamp": native["ts"],
        "properties": {**props, "$lib": "posthog-python", "$lib_version": "7.91.1"},
    }


def _segment(native: dict[str, Any], name: str, props: dict[str, Any]) -> dict[str, Any]:
    common = {
        "messageId": native["event_id"],
        "timestamp": native["ts"],
        "userId": native["user_id"],
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
    }
    props = {k.removeprefix("$"): v for k, v in props.items()}  # session_id, not $session_id
    if name == "$pageview":
        return {**common, "type": "page", "name": "Chat", "properties": props}
    return {**common, "type": "track", "event": name, "properties": props}


def _gzip(obj: Any) -> bytes:
    return gzip.compress(json.dumps(obj, separators=(",", ":")).encode(), compresslevel=6)


def make_bodies(n_events: int, seed: int = 5) -> dict[str, list[bytes]]:
    """The same ``n_events`` events as gzip bodies of 100 for each endpoint."""
    rng = random.Random(seed)
    described = [_one(rng, i) for i in range(n_events)]
    sent_at = _iso(datetime.now(UTC))
    bodies: dict[str, list[bytes]] = {"native": [], "posthog": [], "segment": []}
    for start in range(0, n_events, BATCH):
        chunk = described[start : start + BATCH]
        bodies["native"].append(_gzip([native for native, _, _ in chunk]))
        bodies["posthog"].append(
            _gzip({"api_key": KEY, "batch": [_posthog(*d) for d in chunk], "sent_at": sent_at})
        )
        bodies["segment"].append(
            _gzip({"batch": [_segment(*d) for d in chunk], "sentAt": sent_at, "writeKey": KEY})
        )
    return bodies


ENDPOINTS: dict[str, tuple[str, dict[str, str]]] = {
    "native": (
        "/v1/events",
        {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
    ),
    "posthog": (
        "/batch/",
        {"Content-Type": "application/json", "User-Agent": "posthog-python/7.91.1"},
    ),
    "segment": (
        "/v1/batch",
        {
            "Content-Type": "application/json",
            "User-Agent": "analytics-python/2.4.0",
            "Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode(),
        },
    ),
}


NAMES = {"posthog": {}, "segment": {"$pageview": "page"}}
"""The name a ``custom`` event has on each endpoint (a Segment page view is the call ``page``)."""


def check_bodies(bodies: dict[str, list[bytes]]) -> None:
    """Every capture body maps to the native body's events (the contract's view), none rejected.

    Raises:
        RuntimeError: A body maps to other events, or the mapping rejects one of them.
    """
    from usersignals.ingest import capture, contract

    def key(e: contract.Event, names: dict[str, str]) -> tuple[Any, ...]:
        name = names.get(e.name, e.name) if e.name is not None else None
        return (e.event_id, e.type, e.user_id, e.session_id, e.model, e.role, e.message_id,
                e.rating, e.category, e.severity, name)  # fmt: skip

    now = datetime.now(UTC)
    mappers: dict[str, Callable[[Any], list[capture.Mapped]]] = {
        "posthog": lambda p: capture.map_posthog(p, received_at=now),
        "segment": lambda p: capture.map_segment(p, received_at=now),
    }
    for i, native_body in enumerate(bodies["native"]):
        native, rejected = contract.decode_record(gzip.decompress(native_body), now=now)
        if rejected:
            raise RuntimeError(f"native body {i}: {rejected[0].message}")
        for name, mapper in mappers.items():
            want = sorted(key(e, NAMES[name]) for e in native)
            mapped = mapper(json.loads(gzip.decompress(bodies[name][i])))
            bad = [m.rejection for m in mapped if m.event is None]
            if bad:
                raise RuntimeError(f"{name} body {i}: {bad[0]}")
            got = sorted(key(m.event, {}) for m in mapped if m.event is not None)
            if got != want:
                diff = next(g for g, w in zip(got, want, strict=True) if g != w)
                raise RuntimeError(f"{name} body {i} maps to other events, e.g. {diff}")


def _collector(bootstrap: str, prefix: str) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "USERSIGNALS_BOOTSTRAP": bootstrap,
        "USERSIGNALS_TOPIC_PREFIX": prefix,
        "USERSIGNALS_PARTITIONS": str(PARTITIONS),
        "USERSIGNALS_WRITE_KEYS": KEY,
        "USERSIGNALS_COLLECTOR_CLIENT_RATE": "0",
        "USERSIGNALS_COLLECTOR_KEY_RATE": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "usersignals", "collector", "--port", "0"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    stderr = proc.stderr

    def pump() -> None:
        for line in stderr:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if line.startswith("collector listening on "):
            return proc, line.removeprefix("collector listening on ")
    proc.kill()
    proc.wait()
    raise RuntimeError("the collector did not start: " + " | ".join(seen[-10:]))


def _send(url: str, name: str, bodies: list[bytes]) -> float:
    """Seconds for 4 clients to POST ``bodies`` (each its share, in turn) to ``name``."""
    path, headers = ENDPOINTS[name]
    headers = {**headers, "Content-Encoding": "gzip"}
    parts = urlsplit(url)
    start_gate = threading.Barrier(CLIENTS + 1)
    failures: list[str] = []

    def client(share: list[bytes]) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        try:
            conn.connect()
            start_gate.wait()
            for body in share:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    failures.append(f"{name}: {resp.status}")
                    return
        except OSError as exc:
            failures.append(f"{name}: {type(exc).__name__}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(bodies[i::CLIENTS],)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    start_gate.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"answers other than 200: {failures[:4]}")
    return elapsed


def run(n_events: int, bootstrap: str, rounds: int = 3) -> dict[str, float]:
    """Times the three endpoints over the same ``n_events`` events on one collector.

    Returns:
        ``native_events_per_s``, ``posthog_events_per_s``, ``segment_events_per_s``, the ratios
        ``posthog_ratio`` and ``segment_ratio`` (capture / native, target >= 0.8), ``events``,
        ``batch`` and ``clients``.
    """
    from usersignals.broker import ensure_topics
    from usersignals.config import Settings
    from usersignals.processes import terminate

    bodies = make_bodies(n_events)
    check_bodies(bodies)
    prefix = f"bench-capture-{os.getpid()}"
    settings = Settings.load(environ={}, topic_prefix=prefix, partitions=PARTITIONS)
    ensure_topics(bootstrap, PARTITIONS, settings.topics)
    proc, url = _collector(bootstrap, prefix)
    best: dict[str, float] = {}
    try:
        for name in ENDPOINTS:  # warm up: connections, the producer's metadata, caches
            _send(url, name, bodies[name][: CLIENTS * 4])
        for _ in range(rounds):
            for name in ENDPOINTS:
                elapsed = _send(url, name, bodies[name])
                best[name] = min(best.get(name, elapsed), elapsed)
    finally:
        code = terminate(proc, 30)  # type: ignore[arg-type]
    if code != 0:
        raise RuntimeError(f"the collector exited with {code}")
    rate = {name: n_events / seconds for name, seconds in best.items()}
    return {
        "events": float(n_events),
        "batch": float(BATCH),
        "clients": float(CLIENTS),
        "native_events_per_s": round(rate["native"], 1),
        "posthog_events_per_s": round(rate["posthog"], 1),
        "segment_events_per_s": round(rate["segment"], 1),
        "posthog_ratio": round(rate["posthog"] / rate["native"], 3),
        "segment_ratio": round(rate["segment"] / rate["native"], 3),
    }


def main() -> None:
    from usersignals.broker import EmbeddedBroker

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with EmbeddedBroker(partitions=PARTITIONS, topics=()) as broker:
        print(json.dumps(run(n, broker.bootstrap), indent=2))


if __name__ == "__main__":
    main()
