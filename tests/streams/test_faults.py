"""Exact under faults (issue 4, item 4 b and c): real worker processes killed with SIGKILL
while records stream in, on the real broker; the live report must equal the oracle."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kafka
from tests.streams.test_wellbeing_live import oracle_live
from tests.streams.workerproc import (
    Produced,
    WorkerProc,
    batch_records,
    generate_wire,
    produce,
    start_worker,
    wait_caught_up,
)
from usersignals.cli.live import fetch_live_report

pytestmark = pytest.mark.slow

N = 8
CHUNK = 40


def no_arena(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "arena"}


class Streamer(threading.Thread):
    """Writes records chunk by chunk, a pause between chunks, like live traffic."""

    def __init__(self, kafka: Kafka, records: list[Any], produced: Produced, pause: float) -> None:
        super().__init__(daemon=True)
        self.kafka, self.records, self.produced, self.pause = kafka, records, produced, pause
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(0, len(self.records), CHUNK):
                chunk = self.records[i : i + CHUNK]
                produce(
                    self.kafka.bootstrap, self.kafka.settings.events_topic, chunk, self.produced
                )
                self.sent += len(chunk)
                time.sleep(self.pause)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


def interleaved(records: list[Any]) -> list[Any]:
    """Round-robin over partitions, keeping each partition's order (traffic on all at once)."""
    by_p: dict[int, list[Any]] = {}
    for r in records:
        by_p.setdefault(r[0], []).append(r)
    out: list[Any] = []
    while any(by_p.values()):
        for p in sorted(by_p):
            if by_p[p]:
                out.append(by_p[p].pop(0))
    return out


def group(kafka: Kafka) -> str:
    return f"{kafka.settings.topic_prefix}-worker"


@pytest.mark.parametrize(
    "kill_after",
    [
        pytest.param(20, id="before-the-first-commit"),
        pytest.param(150, id="after-commits"),
    ],
)
def test_sigkill_mid_stream_and_restart_is_exact(
    kafka: Kafka, tmp_path: Path, kill_after: int
) -> None:
    records = interleaved(batch_records(generate_wire(seed=21, users=300), N, batch_size=4))
    produced = Produced()
    first = start_worker(kafka.env(), tmp_path, name="first")
    second: WorkerProc | None = None
    try:
        wait_for(lambda: (first.status() or {}).get("ready"), 60, "first worker ready")
        streamer = Streamer(kafka, records, produced, pause=0.4)
        streamer.start()
        wait_for(lambda: (first.status() or {}).get("records", 0) >= kill_after, 60, "mid-stream")
        first.kill()
        assert streamer.is_alive(), "the stream should still be flowing when the worker dies"
        second = start_worker(kafka.env(), tmp_path, name="second")
        streamer.join(120)
        assert streamer.error is None
        assert streamer.sent == len(records)
        wait_caught_up(
            [second], kafka.bootstrap, group(kafka), kafka.settings.events_topic, produced.ends, N
        )
        report = second.get("/v1/report")
        assert no_arena(report) == no_arena(oracle_live(produced.events_in_log_order()))
        assert second.stop() == 0
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_two_workers_one_killed_the_other_takes_over_exactly(kafka: Kafka, tmp_path: Path) -> None:
    records = interleaved(batch_records(generate_wire(seed=33, users=300), N, batch_size=4))
    half = len(records) // 2
    produced = produce(kafka.bootstrap, kafka.settings.events_topic, records[:half])
    a = start_worker(kafka.env(), tmp_path, name="a")
    b = start_worker(kafka.env(), tmp_path, name="b")
    try:
        wait_caught_up(
            [a, b],
            kafka.bootstrap,
            group(kafka),
            kafka.settings.events_topic,
            produced.ends,
            N,
            timeout=120,
        )
        held_a = (a.status() or {})["partitions"]
        held_b = (b.status() or {})["partitions"]
        assert held_a, "both workers should hold partitions"
        assert held_b, "both workers should hold partitions"
        expected_half = no_arena(oracle_live(produced.events_in_log_order()))
        merged = fetch_live_report(kafka.settings.with_(worker_url=f"{a.url},{b.url}"))
        assert no_arena(merged) == expected_half
        streamer = Streamer(kafka, records[half:], produced, pause=0.4)
        streamer.start()
        wait_for(lambda: produced_count(produced) > half + CHUNK, 60, "second half flowing")
        a.kill()
        streamer.join(120)
        assert streamer.error is None
        wait_caught_up(
            [b],
            kafka.bootstrap,
            group(kafka),
            kafka.settings.events_topic,
            produced.ends,
            N,
            timeout=120,
        )
        report = b.get("/v1/report")
        assert no_arena(report) == no_arena(oracle_live(produced.events_in_log_order()))
        assert sorted(int(p) for p in (b.status() or {})["partitions"]) == list(range(N))
    finally:
        a.stop()
        b.stop()


def produced_count(produced: Produced) -> int:
    return sum(len(v) for v in produced.values.values())
