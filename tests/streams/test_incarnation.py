"""A restarted embedded broker is a new incarnation of every topic (memory storage: offsets
from 0 again, no changelog, no consumer group). The worker sees it per partition, drops its
live state of the old incarnation and says so (log, ``/metrics``, ``/v1/status``): its report
is then the oracle's of the new traffic alone. A worker killed and restarted on the same
incarnation replays records below its position and resets nothing.

The restarted broker has no topics at all: the running worker creates its own (events, dead
letters, changelog) with the configured partitions, and no client lets the broker create one
with its default of 4 (a changelog of 4 partitions under the 8-partition table stopped the
worker)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.streams.test_wellbeing_live import oracle_live
from tests.streams.workerproc import (
    Produced,
    WorkerProc,
    batch_records,
    generate_wire,
    produce,
    start_worker,
)
from usersignals.broker import EmbeddedBroker, free_port
from usersignals.config import Settings

pytestmark = [pytest.mark.broker, pytest.mark.slow]

N = 8


def no_arena(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "arena"}


def env_of(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings.to_env())
    return env


def traffic(seed: int) -> list[tuple[int, bytes, bytes]]:
    return batch_records(generate_wire(seed=seed, users=40), N, batch_size=8)


def partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(topics)}
    finally:
        admin.close()


def wait_topics(bootstrap: str, topics: list[str], timeout: float) -> dict[str, int]:
    from kafka.admin import KafkaAdminClient

    deadline = time.monotonic() + timeout
    listed: set[str] = set()
    while time.monotonic() < deadline:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            listed = set(admin.list_topics())
        finally:
            admin.close()
        if set(topics) <= listed:
            return partition_counts(bootstrap, topics)
        time.sleep(0.5)
    raise AssertionError(f"topics not created: {sorted(set(topics) - listed)}")


def wait_report(worker: WorkerProc, produced: Produced, timeout: float) -> dict[str, Any]:
    expected = no_arena(oracle_live(produced.events_in_log_order()))
    deadline = time.monotonic() + timeout
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            report = no_arena(worker.get("/v1/report"))
        except OSError:
            report = {}
        if report == expected:
            return report
        time.sleep(1.0)
    raise AssertionError(
        f"report not the oracle's: {report.get('events_by_day')} vs {expected['events_by_day']}"
    )


def test_a_restarted_broker_resets_the_live_state(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings.load(
        environ={},
        bootstrap=f"127.0.0.1:{port}",
        topic_prefix="incarnation",
        warehouse=tmp_path / "warehouse",
        state_dir=tmp_path / "state",
        partitions=N,
    )
    broker = EmbeddedBroker(
        port, partitions=N, topics=settings.topics, log_path=tmp_path / "b1.log"
    ).start()
    worker = start_worker(env_of(settings), tmp_path, name="first")
    try:
        a = produce(settings.bootstrap, settings.events_topic, traffic(1))
        wait_report(worker, a, 90)
        worker.kill()  # same incarnation: the next worker replays and resets nothing
        worker = start_worker(env_of(settings), tmp_path, name="second")
        wait_report(worker, a, 90)
        assert worker.get("/v1/status")["incarnation_resets"] == {}
        changelog = f"{settings.topic_prefix}-worker-state-changelog"
        ours = [settings.events_topic, settings.dead_topic, changelog]
        assert partition_counts(settings.bootstrap, ours) == dict.fromkeys(ours, N)
        broker.stop()
        broker = EmbeddedBroker(port, partitions=N, topics=(), log_path=tmp_path / "b2.log")
        broker.start()
        assert wait_topics(settings.bootstrap, ours, 60) == dict.fromkeys(ours, N)
        b = produce(settings.bootstrap, settings.events_topic, traffic(2))
        wait_report(worker, b, 150)
        assert worker.proc.poll() is None, "the worker exited"
        assert partition_counts(settings.bootstrap, ours) == dict.fromkeys(ours, N)
        status = worker.get("/v1/status")
        assert status["incarnation_resets"] == {str(p): 1 for p in range(N)}
        metrics = worker.get("/metrics")
        for p in range(N):
            assert f'usersignals_incarnation_resets_total{{partition="{p}"}} 1.0' in metrics
        # said once at least (repeated warnings pass once per USERSIGNALS_LOG_REPEAT_S)
        said = worker.log.read_text()
        assert "is a new incarnation of the topic" in said
        assert "were missing (a restarted or emptied broker): created with 8 partitions" in said
    finally:
        worker.stop()
        broker.stop()
