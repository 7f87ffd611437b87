"""The whole pipeline, end to end, with real processes: live numbers equal history equal the oracle.

A generated data set full of client retries, disorder, late uploads, changed votes, odd user ids
and invalid lines goes through the SDK (and, for the invalid lines, a plain producer) to the real
broker; a real worker with its loader child processes it. Then ``report --live --json`` (the
worker's state), ``report --json`` (the Parquet warehouse) and the pure oracle must agree, row
for row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kafka import KafkaProducer

from tests.arena_reference import reference_arena, same_arena
from tests.conftest import Kafka
from tests.oracle import dedupe, event_day, oracle_report
from tests.oracle_history import oracle_history
from tests.streams.test_wellbeing_live import served
from tests.streams.workerproc import start_worker
from tests.wire import read_record
from usersignals.cli.status import committed_offsets, end_offsets
from usersignals.ingest.contract import Event
from usersignals.ingest.synthetic import GeneratorConfig, generate
from usersignals.ingest.tracker import Tracker
from usersignals.warehouse.history import HISTORY_KEYS
from usersignals.warehouse.layout import committed_offsets as loaded_offsets

DATA = GeneratorConfig(users=400, days=12, seed=11, end=date(2026, 9, 30), invalid_rate=0.01)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    out = subprocess.run(
        [sys.executable, "-m", "usersignals", *args],
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out


def _cli(env: dict[str, str], *args: str) -> Any:
    return json.loads(_run(env, *args).stdout)


def _send(kafka: Kafka, lines: list[bytes]) -> tuple[list[Event], Counter[str]]:
    """Valid lines through the SDK, the rest as-is; returns the oracle's input, as the oracle's
    own wire reader sees the lines (the SDK refuses a line the reader calls valid but the
    contract does not)."""
    events: list[Event] = []
    rejected: Counter[str] = Counter()
    raw = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    with Tracker(settings=kafka.settings, spool_fsync=False) as tracker:
        for n, line in enumerate(lines):
            wire = read_record(line)
            if wire.reasons:
                rejected.update(wire.reasons)
                raw.send(kafka.settings.events_topic, value=line, partition=n % 8)
                continue
            tracker.track(msgspec.json.decode(line))
            events.extend(wire.events)
        assert tracker.flush(60)
    raw.flush(30)
    raw.close()
    return events, rejected


def _wait_drained(kafka: Kafka, timeout: float = 180.0) -> None:
    s = kafka.settings
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ends = end_offsets(s.bootstrap, s.events_topic, s.partitions)
        worker = committed_offsets(s.bootstrap, f"{s.topic_prefix}-worker", s.events_topic, 8)
        loader = loaded_offsets(s.warehouse)
        if all(
            worker.get(p, 0) >= end and loader.get(p, -1) >= end - 1
            for p, end in ends.items()
            if end > 0
        ):
            return
        time.sleep(0.5)
    raise TimeoutError(f"not drained: ends {ends}, worker {worker}, loader {loader}")


def test_live_equals_history_equals_oracle(kafka: Kafka, tmp_path: Path) -> None:
    lines = list(generate(DATA))
    env = kafka.env()
    worker = start_worker(env, tmp_path, loader=True)
    try:
        events, rejected = _send(kafka, lines)
        _wait_drained(kafka)
        live = _cli({**env, "USERSIGNALS_WORKER_URL": worker.url}, "report", "--live", "--json")
    finally:
        assert worker.stop() == 0
    history = _cli(env, "report", "--json")

    expected = oracle_report(events, dict(rejected))
    counts = Counter(
        (e.model_a, e.model_b, e.winner) for e in dedupe(events) if e.type == "preference"
    )
    arena = reference_arena(counts)

    # The data set really has the hard cases in it.
    ids = Counter(e.event_id for e in events)
    assert max(ids.values()) > 1
    assert sum(rejected.values()) > 0
    assert len(expected["active_users"]) == DATA.days  # every day of the range, none beyond

    assert len(arena) >= 3  # every model version has votes
    # the live report has every key but the history ones, which need the whole history, and of
    # those the weekly flagged share of the weeks it holds whole (here 2026-09-21 .. 27)
    days = sorted({event_day(e) for e in dedupe(events)})
    wellbeing = served(history["wellbeing_weekly"], days[0], days[-1])
    assert {r["week"] for r in wellbeing} == {"2026-09-21"}
    assert sum(r["flagged_users"] for r in wellbeing) > 0
    assert live == {k: v for k, v in history.items() if k not in HISTORY_KEYS} | {
        "wellbeing_weekly": wellbeing
    }
    assert {k: history[k] for k in HISTORY_KEYS} == oracle_history(events)
    assert same_arena(history["arena"], arena)
    assert {k: history[k] for k in expected if k != "arena"} == {
        k: v for k, v in expected.items() if k != "arena"
    }


@pytest.mark.broker  # `run` starts a broker of its own
def test_run_prints_the_report_and_leaves_no_process(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    data.write_bytes(
        b"\n".join(generate(GeneratorConfig(users=150, days=6, seed=4, end=date(2026, 9, 30))))
    )
    marker = uuid.uuid4().hex
    env = {**os.environ, "USERSIGNALS_RUN_MARKER": marker, "USERSIGNALS_STATE_DIR": str(tmp_path)}
    out = _run(env, "run", str(data), "--json", "--warehouse", str(tmp_path / "wh"))
    report = json.loads(out.stdout)
    assert sum(r["events"] for r in report["events_by_day"]) > 0
    assert "live metrics and warehouse history agree" in out.stderr.decode()
    # The warehouse it leaves is the one `report` reads.
    assert (
        _cli({**env, "USERSIGNALS_WAREHOUSE": str(tmp_path / "wh")}, "report", "--json") == report
    )
    assert _processes_with(marker) == []


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(int(pid))
    return found
