"""Exactly once under SIGKILL: the real loader process killed at random moments, restarted."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Kafka
from tests.warehouse.test_loader import (
    loaded_dead,
    loaded_positions,
    make_records,
    produce,
    start_loader,
    wait_for_offsets,
)
from usersignals.warehouse.layout import committed_offsets

KILLS = 6
ROLL = ("--roll-events", "200", "--roll-seconds", "0.3")


def wait_for_progress(
    root: Path, before: dict[int, int], done: dict[int, int], timeout: float = 60
) -> None:
    """Waits for the loader to commit something (it is loading), or to have finished."""
    deadline = time.monotonic() + timeout
    while committed_offsets(root) == before != done:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no commit after {before}")
        time.sleep(0.01)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_doubles_nothing(kafka: Kafka) -> None:
    root = kafka.settings.warehouse
    rng = random.Random(20261124)
    plan = produce(kafka, make_records(1000, per_record=100))
    # 1000 records of 100 events: 11 bad elements (one in a retry), 4 of other partitions
    assert sum(plan.events.values()) == 99_985
    ends = {p: max(o for q, o, _ in plan.events.elements() if q == p) for p in range(8)}
    last = {p: max([ends[p], *(o for q, o, _, _ in plan.dead if q == p)]) for p in range(8)}
    kills_mid_load = 0
    for _ in range(KILLS):
        before = committed_offsets(root)
        proc = start_loader(kafka, *ROLL)
        wait_for_progress(root, before, last)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        if committed_offsets(root) != last:
            kills_mid_load += 1
    proc = start_loader(kafka, *ROLL)
    try:
        wait_for_offsets(root, last, timeout=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert kills_mid_load >= 5
    loaded = loaded_positions(root)
    assert loaded.total() == sum(plan.events.values())
    assert loaded == plan.events  # none missing, none twice
    assert max(loaded.values()) == 1
    assert loaded_dead(root) == plan.dead
    assert sorted(Counter(reason for *_, reason in plan.dead.elements()).items()) == [
        ("bad_batch", 1),
        ("missing_field", 11),
        ("not_json", 1),
        ("not_utf8", 1),
    ]
    assert [p.name for p in root.rglob(".*")] == []
