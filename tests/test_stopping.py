"""Stopping always works: a bounded stop whatever Kafka does, children that never outlive their
parent, and repeated errors logged at a bounded rate.

The process tests run a real broker of their own (it is killed mid-test, so not the session
one), a real ``usersignals worker`` and its real ``loader`` child.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from usersignals.broker import EmbeddedBroker, free_port
from usersignals.config import Settings
from usersignals.processes import WATCHDOG_EXIT_CODE, RepeatFilter, StopWatchdog

GRACE_S = 3.0
"""``USERSIGNALS_STOP_GRACE_S`` of the processes under test."""

MARGIN_S = 20.0
"""What a process may take beyond its grace period (interpreter exit, the loader's SIGKILL)."""

START_TIMEOUT_S = 90.0

REPEATED = (
    "Unable connect to node",
    "Failed fetch messages",
    "Unable to update metadata",
    "Group Coordinator Request failed",
)
"""Errors the Kafka clients log about ten times a second while the broker is gone."""


# -- the pure parts -----------------------------------------------------------------------------


def _record(msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka") -> Any:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("steps", "passed"),
    [
        # (seconds since start, message template, args) -> passed or not
        ([(0, "Unable connect to node %s", (1,))], [True]),
        (
            [(0, "Unable connect to node %s", (1,)), (1, "Unable connect to node %s", (2,))],
            [True, False],
        ),
        (
            [(0, "Unable connect to node %s", (1,)), (10, "Unable connect to node %s", (1,))],
            [True, True],
        ),
        (
            [(0, "Unable connect to node %s", (1,)), (1, "Failed fetch from %s", (1,))],
            [True, True],
        ),
        (
            [(0, "a %s", (1,)), (2, "a %s", (1,)), (4, "a %s", (1,)), (11, "a %s", (1,))],
            [True, False, False, True],
        ),
    ],
)
def test_repeat_filter_lets_one_record_of_a_kind_through_per_interval(
    steps: list[tuple[float, str, tuple[object, ...]]], passed: list[bool]
) -> None:
    clock = Clock()
    repeat = RepeatFilter(10.0, clock=clock)
    got = []
    for at, msg, args in steps:
        clock.now = at
        got.append(repeat.filter(_record(msg, *args)))
    assert got == passed


def test_repeat_filter_counts_what_it_left_out_and_says_so_on_the_next_line() -> None:
    clock = Clock()
    repeat = RepeatFilter(10.0, clock=clock)
    for at in (0, 1, 2, 3):
        clock.now = at
        repeat.filter(_record("Unable connect to node %s", at))
    clock.now = 10
    record = _record("Unable connect to node %s", 10)
    assert repeat.filter(record) is True
    assert record.getMessage() == "Unable connect to node 10 [3 more like this left out]"
    assert repeat.suppressed == {("aiokafka", logging.ERROR, "Unable connect to node %s"): 3}


def test_repeat_filter_passes_info_and_decides_each_record_once() -> None:
    repeat = RepeatFilter(10.0, clock=Clock())
    info = [_record("Stopping...", level=logging.INFO) for _ in range(3)]
    assert [repeat.filter(r) for r in info] == [True, True, True]
    first = _record("boom")
    # one filter on two handlers sees each record twice: the second look must agree
    assert [repeat.filter(first), repeat.filter(first)] == [True, True]
    second = _record("boom")
    assert [repeat.filter(second), repeat.filter(second)] == [False, False]


def test_watchdog_runs_its_callbacks_then_exits_once() -> None:
    calls: list[object] = []
    dog = StopWatchdog(3600.0, before_exit=[lambda: calls.append("child")], exit=calls.append)
    dog.arm("SIGTERM")
    assert calls == []
    dog.arm("SIGTERM")  # a second signal: at once
    dog.arm("SIGINT")
    dog.cancel()
    assert calls == ["child", WATCHDOG_EXIT_CODE]


def test_watchdog_cancelled_in_time_does_nothing() -> None:
    calls: list[object] = []
    dog = StopWatchdog(0.05, exit=calls.append)
    dog.arm("SIGTERM")
    dog.cancel()
    time.sleep(0.3)  # well past the grace: a watchdog that was not cancelled has fired by now
    assert calls == []


def test_watchdog_not_cancelled_fires_after_its_grace() -> None:
    calls: list[object] = []
    dog = StopWatchdog(0.05, exit=calls.append)
    dog.arm("SIGTERM")
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == [WATCHDOG_EXIT_CODE]


# -- real processes -----------------------------------------------------------------------------


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}", False)
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (an orphan's is reaped by whoever adopted it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


class Pipeline:
    """A broker of its own and one worker (with its loader child), logging to one file."""

    def __init__(self, tmp_path: Path) -> None:
        self.broker = EmbeddedBroker(partitions=2, log_path=tmp_path / "tansu.log")
        self.log = tmp_path / "worker.log"
        self.tmp_path = tmp_path
        self.worker: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.broker.start()
        settings = Settings.load(
            environ={},
            bootstrap=self.broker.bootstrap,
            warehouse=self.tmp_path / "warehouse",
            state_dir=self.tmp_path / "state",
            partitions=2,
        )
        env = {
            **os.environ,
            **settings.to_env(),
            "USERSIGNALS_STOP_GRACE_S": str(GRACE_S),
            "USERSIGNALS_LOG_REPEAT_S": "3600",
        }
        port = str(free_port())
        with open(self.log, "wb") as out:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "usersignals", "worker", "-l", "info", "--port", port],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _wait_for("the worker", lambda: "Worker]: Ready" in self.text(), START_TIMEOUT_S)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def loader_pid(self) -> int:
        assert self.worker is not None
        children: list[int] = []

        def found() -> bool:
            children[:] = _children(self.worker.pid) if self.worker else []
            return len(children) == 1

        _wait_for("the loader child", found, START_TIMEOUT_S)
        return children[0]

    def close(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.kill()
            self.worker.wait()
        self.broker.stop()


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path)
    try:
        p.start()
        yield p
    finally:
        p.close()


@pytest.mark.broker
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_worker_and_its_loader_in_bounded_time_with_the_broker_gone(
    pipeline: Pipeline, sig: signal.Signals
) -> None:
    assert pipeline.worker is not None
    loader = pipeline.loader_pid()
    pipeline.broker.stop()
    # the worker's own fetches fail (its lines carry its pid; the loader's do not)
    failing = f"[{pipeline.worker.pid}] [ERROR] Failed fetch messages"
    _wait_for("the worker's failed fetches", lambda: failing in pipeline.text(), 60.0)
    os.kill(pipeline.worker.pid, sig)
    code = pipeline.worker.wait(GRACE_S + MARGIN_S)
    _wait_for("the loader to exit", lambda: _gone(loader), MARGIN_S)
    text = pipeline.text()
    assert code == 0  # stopped cleanly: the consumer's close no longer dies on the dead broker
    assert "Traceback" not in text
    # one line per kind and process (worker, loader) while the broker was gone
    counts = {kind: len(re.findall(re.escape(kind), text)) for kind in REPEATED}
    assert {k: n for k, n in counts.items() if n > 2} == {}


HANGS = """
import sys, time
from usersignals.processes import StopWatchdog
dog = StopWatchdog(float(sys.argv[1]), before_exit=[lambda: print("stopping children", flush=True)])
dog.arm("SIGTERM")
print("armed", flush=True)
time.sleep(3600)  # whatever a clean stop waits on, forever
"""


def test_the_watchdog_ends_a_process_whose_clean_stop_hangs() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HANGS, "0.5"],
        capture_output=True,
        text=True,
        timeout=MARGIN_S,
        check=False,
    )
    assert proc.returncode == WATCHDOG_EXIT_CODE
    assert proc.stdout == "armed\nstopping children\n"


ORPHAN = """
import signal, time
from usersignals.processes import exit_when_orphaned
signal.signal(signal.SIGTERM, signal.SIG_IGN)
exit_when_orphaned(0.5, poll=0.05)
print("watching", flush=True)
time.sleep(3600)  # deaf to SIGTERM and blocked: only the orphan watch can end it
"""

PARENT = """
import subprocess, sys
# stdout a pipe to read "watching", stderr nowhere: run() below does not wait for the child
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=-1, stderr=-3)
assert child.stdout.readline() == b"watching\\n"
print(child.pid, flush=True)
"""


def test_an_orphan_ends_itself_once_its_parent_is_gone() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PARENT, ORPHAN],
        capture_output=True,
        text=True,
        timeout=MARGIN_S,
        check=True,
    )
    pid = int(out.stdout)
    _wait_for("the orphan to end itself", lambda: _gone(pid), MARGIN_S)


@pytest.mark.broker
def test_the_loader_dies_with_a_killed_worker_even_with_the_broker_gone(pipeline: Pipeline) -> None:
    assert pipeline.worker is not None
    loader = pipeline.loader_pid()
    pipeline.broker.stop()
    pipeline.worker.kill()
    pipeline.worker.wait()
    _wait_for("the loader to exit", lambda: _gone(loader), GRACE_S + MARGIN_S)
    assert "Traceback" not in pipeline.text()


@pytest.mark.broker
def test_a_loader_with_buffered_events_stops_after_the_broker_is_gone(tmp_path: Path) -> None:
    """SIGTERM writes the buffers and exits 0 even though the offset commit after each write can
    no longer reach the broker (aiokafka would retry it forever)."""
    from kafka import KafkaProducer

    from usersignals.ingest.partitioner import partition_for
    from usersignals.warehouse.db import connect

    broker = EmbeddedBroker(partitions=2, log_path=tmp_path / "tansu.log")
    broker.start()
    try:
        settings = Settings.load(
            environ={},
            bootstrap=broker.bootstrap,
            warehouse=tmp_path / "warehouse",
            state_dir=tmp_path / "state",
            partitions=2,
        )
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        for i in range(6):
            event = {"event_id": f"e{i}", "type": "session_start", "user_id": f"u{i}"}
            value = json.dumps(event | {"ts": "2026-09-01T10:00:00Z"}).encode()
            partition = partition_for(event["user_id"], 2)  # the user's own partition
            producer.send(settings.events_topic, value=value, partition=partition)
        producer.flush(30)
        producer.close()
        env = {**os.environ, **settings.to_env(), "USERSIGNALS_KAFKA_TIMEOUT_S": "2"}
        log = tmp_path / "loader.log"
        with open(log, "wb") as out:
            loader = subprocess.Popen(
                [sys.executable, "-m", "usersignals", "loader", "--roll-seconds", "3600"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            _wait_for(
                "the loader to catch up",
                lambda: "caught up with the end offsets" in log.read_text(errors="replace"),
                START_TIMEOUT_S,
            )
            broker.stop()
            loader.send_signal(signal.SIGTERM)
            code = loader.wait(MARGIN_S)
        finally:
            if loader.poll() is None:
                loader.kill()
                loader.wait()
    finally:
        broker.stop()
    assert code == 0, log.read_text(errors="replace")[-3000:]
    con = connect(tmp_path / "warehouse")
    assert con.sql("SELECT count(*) FROM events").fetchall() == [(6,)]
