"""Exactly once under faults: the real loader process killed at random moments and restarted;
writes failing as on a full or broken disk (paused, written again, nothing left behind)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kafka
from tests.warehouse.parquetfixtures import write_warehouse
from tests.warehouse.test_compact_kill import KILLED_DAY, check_every_read_path, log_of_events
from tests.warehouse.test_loader import (
    SMALL,
    loaded_dead,
    loaded_positions,
    make_records,
    produce,
    start_loader,
    wait_for_offsets,
)
from usersignals.cli.status import end_offsets
from usersignals.ingest.contract import Event
from usersignals.warehouse.compact import STEPS, compact_day
from usersignals.warehouse.layout import committed_offsets
from usersignals.warehouse.loader import Loader, run_loader
from usersignals.warehouse.loaderstate import STATE_FILE, read_state
from usersignals.warehouse.manifest import MANIFEST, read_manifest

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


# -- a full disk, an I/O error: pause, write again, go on ----------------------------------


class FailingDisk:
    """A ``write_range`` step that fails the first flushes as a full disk or a bad disk would.

    ``plan`` lists, per failure in order, the step after which it comes and its errno.
    """

    def __init__(self, root: Path, plan: list[tuple[str, int]]) -> None:
        self.root = root
        self.plan = list(plan)

    def __call__(self, name: str) -> None:
        if self.plan and name.startswith(self.plan[0][0]):
            _step, code = self.plan.pop(0)
            raise OSError(code, os.strerror(code))


def hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*") if p.name != ".manifest.lock")


def test_enospc_and_eio_pause_the_loader_which_then_commits_everything_once(
    kafka: Kafka,
) -> None:
    root = kafka.settings.warehouse
    plan = produce(kafka, make_records(40, per_record=20))
    disk = FailingDisk(
        root, [("written", errno.ENOSPC), ("written", errno.ENOSPC), ("renamed", errno.EIO)]
    )
    settings = dataclasses.replace(kafka.settings, loader_retry_s=0.01)
    loader = Loader(settings, roll=SMALL, drain=True, step=disk)
    stats = asyncio.run(loader.run())
    assert disk.plan == []
    assert stats.errors == {"enospc": 2, "eio": 1}
    assert (stats.records, stats.events, stats.rejected, stats.foreign) == (43, 798, 4, 1)
    loaded = loaded_positions(root)
    assert loaded == plan.events
    assert max(loaded.values()) == 1
    assert loaded_dead(root) == plan.dead
    assert hidden(root) == []  # no recovery ran since: each failed try cleaned up after itself
    state = read_state(kafka.settings.state_dir / STATE_FILE)
    assert state is not None
    assert (state["pid"], state["errors"], state["paused"]) == (
        os.getpid(),
        {"enospc": 2, "eio": 1},
        None,
    )
    assert state["lag"] == {str(p): 0 for p in range(8)}


def test_a_disk_error_while_stopping_leaves_the_range_to_the_next_run(kafka: Kafka) -> None:
    root = kafka.settings.warehouse
    plan = produce(kafka, make_records(8, per_record=5))
    always = FailingDisk(root, [("written", errno.ENOSPC)] * 1000)
    loader = Loader(
        dataclasses.replace(kafka.settings, loader_retry_s=0.01),
        roll=SMALL,
        drain=True,
        step=lambda name: (loader.stop(), always(name)),  # type: ignore[func-returns-value]
    )
    stats = asyncio.run(loader.run())
    assert stats.errors == {"enospc": 8}  # one try for each partition's buffer, then it stops
    assert stats.committed == {}
    assert hidden(root) == []
    again = run_loader(kafka.settings, roll=SMALL, drain=True)
    assert again.errors == {}
    assert loaded_positions(root) == plan.events


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Event]]:
    """A warehouse of many small files (as the compaction kill tests build it)."""
    root = tmp_path_factory.mktemp("small") / "warehouse"
    ordered = write_warehouse(
        root, log_of_events(), rejected=["not_json"], partitions=2, per_record=3, per_flush=2
    )
    return root, ordered


@pytest.mark.parametrize(
    ("after", "code"),
    [
        ("rollups written", errno.ENOSPC),  # before the commit point
        ("merged written", errno.ENOSPC),  # the merged file renamed in, not yet named
        ("week written", errno.EIO),  # after it: the day is compacted, its week not yet
    ],
)
def test_compaction_failing_on_the_disk_leaves_every_read_path_exact(
    small_files: tuple[Path, list[Event]], tmp_path: Path, after: str, code: int
) -> None:
    source, ordered = small_files
    k = STEPS.index(after) + 1
    root = tmp_path / "warehouse"
    shutil.copytree(source, root)
    before = (root / MANIFEST).read_bytes()
    done: list[str] = []

    def step(name: str) -> None:
        done.append(name)
        if len(done) == k:
            raise OSError(code, os.strerror(code))

    with pytest.raises(OSError, match=os.strerror(code)) as exc:
        compact_day(root, KILLED_DAY, step=step)
    assert exc.value.errno == code
    assert done == list(STEPS[:k])
    committed = k > STEPS.index("merged written") + 1
    assert ((root / MANIFEST).read_bytes() == before) == (not committed)
    assert [p.name for p in root.rglob(".*") if p.name != ".manifest.lock"] == []
    named = set(read_manifest(root).files)
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*.parquet")}
    assert on_disk - named == set()  # what the failure wrote and no manifest names is gone
    check_every_read_path(root, ordered)

    again = compact_day(root, KILLED_DAY)  # later, with space again
    assert (again.output is None) == committed
    check_every_read_path(root, ordered)
    day = root / "events" / f"day={KILLED_DAY}"
    assert [p.name[:2] for p in day.iterdir()] == ["c-"]


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only), unmounted however the test ends."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        reason = mounted.stderr.decode().strip()
        if os.geteuid() != 0 or "permission denied" in reason.lower():
            pytest.skip(f"cannot mount a tmpfs here (EPERM): {reason}")
        raise RuntimeError(f"mount failed: {reason}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path) -> Path:
    """Writes a file until the disk is full; returns it (delete it to free the space)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def loader_state(kafka: Kafka) -> dict[str, Any]:
    return read_state(kafka.settings.state_dir / STATE_FILE) or {}


def wait_state(kafka: Kafka, check: Callable[[dict[str, Any]], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check(loader_state(kafka)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"loader state {loader_state(kafka)}")
        time.sleep(0.05)


def test_a_full_disk_pauses_the_loader_until_there_is_space_again(kafka: Kafka) -> None:
    root = kafka.settings.warehouse
    with small_disk(root, "1m"):
        plan = produce(kafka, make_records(20, per_record=20))
        env = {**kafka.env(), "USERSIGNALS_LOADER_RETRY_S": "0.05"}
        env["USERSIGNALS_LOADER_BACKOFF_CAP_S"] = "0.2"
        proc = subprocess.Popen(
            [sys.executable, "-m", "usersignals", "loader", "--json", *ROLL],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_state(kafka, lambda s: s.get("last_commit") is not None)
            filler = fill(root)
            produce(kafka, make_records(40, per_record=20, seed=1)[20:], plan)
            wait_state(kafka, lambda s: s.get("paused") == "enospc")
            assert proc.poll() is None  # pausing, not crashed
            assert hidden(root) == []  # the failed writes took their temporary files along
            filler.unlink()
            wait_state(
                kafka, lambda s: s.get("paused") is None and s["lag"] and not any(s["lag"].values())
            )
            last = {
                p: end - 1
                for p, end in end_offsets(kafka.bootstrap, kafka.settings.events_topic, 8).items()
            }
            wait_for_offsets(root, last)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err
        stats = json.loads(out)
        assert list(stats["errors"]) == ["enospc"]
        assert stats["errors"] == loader_state(kafka)["errors"]
        loaded = loaded_positions(root)
        assert loaded == plan.events
        assert max(loaded.values()) == 1
        assert loaded_dead(root) == plan.dead
        assert hidden(root) == []
