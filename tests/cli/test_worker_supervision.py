"""The worker keeps its loader running: a killed loader is started again with backoff, and the
worker's own stop stops it for good."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kafka
from tests.streams.workerproc import WorkerProc, start_worker
from tests.warehouse.test_loader import (
    loaded_dead,
    loaded_positions,
    make_records,
    produce,
)
from usersignals.cli.status import end_offsets
from usersignals.warehouse.layout import committed_offsets
from usersignals.warehouse.loaderstate import Backoff

KILLS = 3


@pytest.mark.parametrize(
    ("runs", "delays"),
    [
        ([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
        ([0.0, 0.0, 59.9, 60.0, 0.0], [1.0, 2.0, 4.0, 1.0, 2.0]),  # healthy for 60 s: reset
        ([100.0, 100.0], [1.0, 1.0]),
    ],
)
def test_backoff_doubles_to_its_cap_and_starts_over_after_a_healthy_run(
    runs: list[float], delays: list[float]
) -> None:
    backoff = Backoff(base=1.0, cap=30.0, healthy=60.0)
    assert [backoff.next(ran_for) for ran_for in runs] == delays


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone too
        return f.read().split(")")[-1].split()[0] != "Z"


def loader_status(worker: WorkerProc) -> dict[str, Any]:
    status = worker.status()
    assert status is not None
    return dict(status["loader"])


def wait_for(worker: WorkerProc, check: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = worker.status()
        if status is not None and check(status["loader"]):
            return dict(status["loader"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"loader status {status and status['loader']}")
        time.sleep(0.05)


def wait_loaded(kafka: Kafka, timeout: float = 90) -> dict[int, int]:
    """Waits until the warehouse holds each partition up to the topic's end; returns it."""
    s = kafka.settings
    deadline = time.monotonic() + timeout
    while True:
        last = {p: end - 1 for p, end in end_offsets(s.bootstrap, s.events_topic, 8).items()}
        if committed_offsets(s.warehouse) == last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"committed {committed_offsets(s.warehouse)}, want {last}")
        time.sleep(0.5)


@pytest.mark.slow
def test_a_killed_loader_is_restarted_with_backoff_and_loads_everything_once(
    kafka: Kafka, tmp_path: Path
) -> None:
    root = kafka.settings.warehouse
    env = {
        **kafka.env(),
        "USERSIGNALS_LOADER_RESTART_S": "0.5",
        "USERSIGNALS_LOADER_BACKOFF_CAP_S": "1.5",
        "USERSIGNALS_STOP_GRACE_S": "20",
    }
    plan = produce(kafka, make_records(200, per_record=50))
    worker = start_worker(env, tmp_path, loader=True)
    pids: list[int] = []
    waits: list[float] = []
    try:
        first = wait_for(worker, lambda s: s["up"] and s["lag"])
        pids.append(first["pid"])
        for n in range(1, KILLS + 1):
            os.kill(pids[-1], 9)
            down = wait_for(worker, lambda s, n=n: s["restarts"] == n)
            assert (down["up"], down["last_exit"]) == (False, -9)
            waits.append(down["restart_delay"])
            up = wait_for(worker, lambda s: s["up"] and s["pid"] not in pids)
            pids.append(up["pid"])
        produce(kafka, make_records(100, per_record=50, seed=1), plan)
        last = wait_loaded(kafka)  # the topic's end moves on as the worker forwards events
        status = loader_status(worker)
        assert (status["up"], status["restarts"], status["errors"]) == (True, 3, {"crash": 3})
        done = wait_for(worker, lambda s: s["lag"] == {str(p): 0 for p in range(8)})
        assert done["committed"] == {str(p): o for p, o in last.items()}
        assert done["last_commit"] is not None
        assert abs(done["last_commit"] - time.time()) < 120
        metrics = worker.get("/metrics")
        assert "usersignals_loader_up 1.0" in metrics
        assert "usersignals_loader_restarts_total 3.0" in metrics
        assert 'usersignals_loader_errors_total{kind="crash"} 3.0' in metrics
        assert 'usersignals_loader_lag{partition="7"} 0.0' in metrics
        assert "usersignals_loader_paused 0.0" in metrics
        shown = subprocess.run(
            [sys.executable, "-m", "usersignals", "status", "--worker-url", worker.url],
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
        line = next(x for x in shown.splitlines() if x.startswith("  loader: "))
        assert line.startswith(f"  loader: up (pid {pids[-1]}); 3 restarts; last commit ")
        assert line.endswith(" s ago; lag 0; errors: crash 3")
    finally:
        code = worker.stop()
    assert code == 0, worker.log.read_text()[-3000:]
    assert [alive(pid) for pid in pids] == [False] * (KILLS + 1)  # and none started at the stop
    assert len(set(pids)) == KILLS + 1
    assert waits == [0.5, 1.0, 1.5]  # doubling, up to the cap
    loaded = loaded_positions(root)
    assert plan.events - loaded == Counter()  # none missing
    assert (loaded - plan.events).total() == plan.foreign == 2  # the worker's forwards
    assert max(loaded.values()) == 1
    assert loaded_dead(root) == plan.dead
