"""The synthetic data set: seeded, streamed, and full of what real clients send."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from datetime import date
from itertools import islice

from usersignals.ingest.synthetic import GeneratorConfig, generate

END = date(2026, 8, 31)


def _lines(**kw: object) -> list[bytes]:
    return list(generate(GeneratorConfig(end=END, **kw)))  # type: ignore[arg-type]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    assert _lines(users=200, days=5, seed=3) == _lines(users=200, days=5, seed=3)
    assert _lines(users=200, days=5, seed=3) != _lines(users=200, days=5, seed=4)


def test_it_has_what_real_traffic_has() -> None:
    lines = _lines(users=1500, days=14, seed=1, invalid_rate=0.01)
    parsed, invalid = [], 0
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            invalid += 1
    ids = Counter(e.get("event_id") for e in parsed)
    types = Counter(e.get("type") for e in parsed)
    assert invalid > 0  # not JSON at all
    assert types["thumbs"] > 0  # an unknown type
    assert any(n > 1 for n in ids.values())  # client retries
    assert {
        "session_start",
        "message",
        "feedback",
        "preference",
        "risk_flag",
        "session_end",
    } <= set(types)
    forms = Counter(type(e.get("ts")).__name__ for e in parsed)
    assert forms["int"] > 0
    assert any(isinstance(e.get("ts"), str) and e["ts"].endswith("+05:30") for e in parsed)
    assert any(isinstance(e.get("user_id"), str) and "用户" in e["user_id"] for e in parsed)
    assert any(e.get("properties", {}).get("consent") is False for e in parsed)


def test_warm_model_earns_more_thumbs_up_and_more_risk_flags() -> None:
    parsed = [json.loads(x) for x in _lines(users=3000, days=14, seed=2, invalid_rate=0.0)]
    up: Counter[str] = Counter()
    votes: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    sessions: Counter[str] = Counter()
    for e in parsed:
        if e["type"] == "feedback" and e["rating"] != 0:
            votes[e["model"]] += 1
            up[e["model"]] += e["rating"] == 1
        elif e["type"] == "risk_flag":
            flags[e["model"]] += 1
        elif e["type"] == "session_start":
            sessions[e["model"]] += 1
    rate = {m: up[m] / votes[m] for m in votes}
    risk = {m: flags[m] / sessions[m] for m in sessions}
    assert rate["m-5.2-warm"] > max(rate["m-5.0"], rate["m-5.1"])
    assert risk["m-5.2-warm"] > max(risk["m-5.0"], risk["m-5.1"])


def test_late_uploads_arrive_after_newer_days() -> None:
    days = [
        e["ts"][:10]
        for e in map(json.loads, _lines(users=800, days=10, seed=5, invalid_rate=0.0))
        if isinstance(e["ts"], str) and e["ts"].endswith("Z")
    ]
    newest = ""
    late = 0
    for d in days:
        late += d < newest and (date.fromisoformat(newest) - date.fromisoformat(d)).days >= 1
        newest = max(newest, d)
    assert late > 0


def test_memory_stays_flat_while_streaming() -> None:
    def peak(days: int) -> int:
        tracemalloc.start()
        for _ in islice(generate(GeneratorConfig(users=2000, days=days, end=END)), 10**9):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    assert peak(20) < 1.5 * peak(5)
