"""One pipeline under test: its own embedded broker (restartable), its workers and their loader.

The broker is the suite's own (not the session's): restarting it empties it, which is the
new topic incarnation the suite checks. The main worker runs the loader as its child; a second
worker (no loader) joins and leaves for the rebalance. Workers are started and killed by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.faults.harness import (
    MARKER_VAR,
    CheckFailed,
    alive,
    cli_json,
    kill_group,
    loader_of,
    start_worker,
    wait_for,
)
from tests.streams.workerproc import WorkerProc
from usersignals.broker import EmbeddedBroker, ensure_topics, wait_for_port
from usersignals.cli.status import committed_offsets, end_offsets
from usersignals.config import Settings
from usersignals.warehouse.history import HISTORY_KEYS
from usersignals.warehouse.manifest import read_manifest

PARTITIONS = 8
LOADER_EXIT_TIMEOUT_S = 30.0
"""How long a loader may take to flush and exit after its worker was SIGKILLed."""


class Pipeline:
    """The broker, the main worker (with its loader) and, for a while, a second worker."""

    def __init__(self, tmp: Path, warehouse: Path, marker: str) -> None:
        self.tmp = tmp
        self.broker = EmbeddedBroker(partitions=PARTITIONS, topics=(), log_path=tmp / "broker.log")
        self.settings = Settings.load(
            environ={},
            bootstrap=self.broker.bootstrap,
            topic_prefix="faults",
            warehouse=warehouse,
            state_dir=tmp / "state",
            partitions=PARTITIONS,
        )
        self.env = {
            **os.environ,
            **self.settings.to_env(),
            MARKER_VAR: marker,
            "USERSIGNALS_STOP_GRACE_S": "15",
        }
        self.logs_dir = tmp / "logs"
        self.logs_dir.mkdir()
        self.started: list[WorkerProc] = []
        self.main: WorkerProc | None = None
        self.generation = 0

    # -- broker ---------------------------------------------------------------------------

    def start_broker(self) -> None:
        self.broker.start()
        ensure_topics(self.broker.bootstrap, PARTITIONS, self.settings.topics)

    def restart_broker_down(self) -> None:
        """SIGKILLs the broker (its memory storage goes with it)."""
        pid = self.broker.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.broker.stop()

    def restart_broker_up(self) -> None:
        """Starts a broker on the same port, empty (a new incarnation): no topics at all."""
        port = self.broker.port
        self.broker = EmbeddedBroker(
            port, partitions=PARTITIONS, topics=(), log_path=self.tmp / "broker.log"
        )
        wait_for(lambda: _port_free(port), 30, f"port {port} to be free again")
        self.broker.start()  # no topics: the running worker creates its own
        if not wait_for_port("127.0.0.1", port, 10):
            raise CheckFailed("restarted broker does not listen")

    def topic_partitions(self) -> dict[str, int]:
        """Partitions of each topic on the broker now."""
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.broker.bootstrap)
        try:
            names = list(admin.list_topics())
            return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
        finally:
            admin.close()

    # -- workers --------------------------------------------------------------------------

    def start_main(self) -> WorkerProc:
        self.generation += 1
        self.main = start_worker(self.env, self.logs_dir, f"main{self.generation}")
        self.started.append(self.main)
        return self.main

    def start_second(self) -> WorkerProc:
        w = start_worker(self.env, self.logs_dir, "second", loader=False)
        self.started.append(w)
        return w

    @property
    def worker(self) -> WorkerProc:
        if self.main is None:
            raise CheckFailed("no main worker")
        return self.main

    def revive(self) -> str | None:
        """Starts a new main worker if the current one exited by itself; says what happened."""
        w = self.worker
        if w.proc.poll() is None:
            return None
        code = w.proc.returncode
        self.kill_main()
        return f"{w.log.name} exited {code} by itself"

    def kill_main(self) -> str:
        """SIGKILLs the main worker, waits for its loader to exit, starts a new one.

        Returns a note when the orphaned loader had to be killed too."""
        w = self.worker
        loader = loader_of(w)
        w.kill()
        note = ""
        if loader is not None:
            deadline = time.monotonic() + LOADER_EXIT_TIMEOUT_S
            while alive(loader) and time.monotonic() < deadline:
                time.sleep(0.2)
            if alive(loader):
                os.kill(loader, signal.SIGKILL)
                note = f"loader {loader} outlived its worker by {LOADER_EXIT_TIMEOUT_S:.0f}s"
        self.start_main()
        return note

    def wait_loader(self, timeout: float, other_than: int | None = None) -> int:
        def found() -> int | None:
            pid = loader_of(self.worker)
            return pid if pid is not None and pid != other_than else None

        return int(wait_for(found, timeout, "the main worker's loader child"))

    def logs(self) -> list[Path]:
        return [*sorted(self.logs_dir.glob("*.log")), self.tmp / "broker.log"]

    def close(self) -> None:
        for w in self.started:
            kill_group(w.proc.pid)
            with contextlib.suppress(Exception):
                w.proc.wait(10)
        self.broker.stop()

    # -- progress -------------------------------------------------------------------------

    def holds_all(self, w: WorkerProc) -> bool:
        """Whether ``w`` is ready and holds every partition (fails at once if it exited)."""
        if w.proc.poll() is not None:
            raise CheckFailed(f"worker {w.log.name} exited {w.proc.returncode}")
        s = w.status()
        return bool(
            s
            and s.get("ready")
            and sorted(int(p) for p in s["partitions"]) == list(range(PARTITIONS))
        )

    def drained(self, epoch: int) -> tuple[bool, Any]:
        """Whether the main worker holds every partition and committed every end offset, and the
        loader loaded every record of the topic in ``epoch``."""
        s = self.settings
        ends = end_offsets(s.bootstrap, s.events_topic, PARTITIONS)
        group = committed_offsets(s.bootstrap, f"{s.topic_prefix}-worker", s.events_topic, 8)
        manifest = read_manifest(s.warehouse)
        loaded = manifest.committed()
        ok = (
            self.holds_all(self.worker)
            and manifest.epoch == epoch
            and all(
                group.get(p, 0) >= end and loaded.get(p, -1) >= end - 1
                for p, end in ends.items()
                if end > 0
            )
        )
        return ok, {"ends": ends, "worker": group, "loader": loaded, "epoch": manifest.epoch}

    def wait_drained(self, epoch: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                ok, last = self.drained(epoch)
            except CheckFailed:  # the worker exited: no use waiting
                raise
            except Exception as exc:  # the broker or the warehouse is between states
                ok, last = False, repr(exc)
            if ok:
                return
            time.sleep(0.5)
        raise CheckFailed(f"not drained within {timeout:.0f}s (epoch {epoch}): {last}")

    def live_report(self) -> dict[str, Any]:
        """``/v1/report`` without ``wellbeing_weekly``, a history key the worker serves for the
        weeks it holds whole (the suite compares the keys the oracle report has; tests/
        test_pipeline.py and tests/test_ranges.py compare it with history)."""
        report = dict(self.worker.get("/v1/report", timeout=30))
        report.pop("wellbeing_weekly", None)
        return report

    def warehouse_report(self) -> dict[str, Any]:
        """``report --json`` without the history-only engagement keys (the live report has
        none; tests/warehouse/test_history.py checks them against the oracle)."""
        report = dict(cli_json(self.env, "report", "--json"))
        return {k: v for k, v in report.items() if k not in HISTORY_KEYS}


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the broker binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
