"""The worker's loader child, kept running: restarted with backoff whenever it exits.

A loader that dies (SIGKILL, a crash) would otherwise leave the warehouse silently behind
while the worker runs on. :class:`LoaderSupervisor` starts ``usersignals loader
--exit-with-parent`` from a thread of its own that lives as long as the child (the child's
``PR_SET_PDEATHSIG`` is tied to the thread that started it), waits for it, and starts it again
after a pause that doubles with each quick exit in a row (``loader_restart_s`` up to
``loader_backoff_cap_s``) and starts over after a run of ``loader_healthy_s``. Once the worker
stops (:meth:`LoaderSupervisor.ask_to_stop`, :meth:`LoaderSupervisor.stop`) it never starts one
again.

It is a sidecar of the worker (:class:`usersignals.streams.app.Sidecar`): ``/v1/status`` shows
its state under ``loader`` and ``/metrics`` its ``usersignals_loader_*`` series, from what the
child writes to its state file (:mod:`usersignals.warehouse.loaderstate`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from usersignals.config import Settings
from usersignals.processes import die_with_parent, terminate
from usersignals.warehouse.loaderstate import STATE_FILE, Backoff, read_state

__all__ = ["LoaderSupervisor", "loader_command"]

log = logging.getLogger("usersignals.worker")

POLL_S = 0.2
"""How often the supervising thread looks at its child."""


def loader_command() -> list[str]:
    """The loader child's command line."""
    return [sys.executable, "-m", "usersignals", "loader", "--exit-with-parent"]


class LoaderSupervisor(Collector):
    """Runs the loader child and restarts it; a sidecar of the worker named ``loader``.

    Args:
        settings: Passed to the child (as its environment) and the pauses' settings.
        start: Starts one child (default: :func:`loader_command` with ``settings``' env).
    """

    name = "loader"

    def __init__(
        self,
        settings: Settings,
        *,
        start: Callable[[], subprocess.Popen[bytes]] | None = None,
    ) -> None:
        self.settings = settings
        self._start = start or self._popen
        self.backoff = Backoff(
            settings.loader_restart_s, settings.loader_backoff_cap_s, settings.loader_healthy_s
        )
        self.state_path = settings.state_dir / STATE_FILE
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.errors: dict[str, int] = {}
        """Errors of the loader runs that ended, by kind (the running one adds its own)."""
        self.last_commit: float | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._next_start: float | None = None
        self.last_delay: float | None = None
        """The pause chosen before the latest restart."""

    def _popen(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            loader_command(),
            env={**os.environ, **self.settings.to_env()},
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),
        )

    def begin(self) -> None:
        """Starts the first child now, and the thread that keeps it running."""
        self.proc = self._start()
        self._thread = threading.Thread(
            target=self._supervise, name="usersignals-loader-supervisor", daemon=True
        )
        self._thread.start()

    def _supervise(self) -> None:
        while True:
            proc = self.proc
            if proc is None:
                return
            started = time.monotonic()
            while proc.poll() is None:
                time.sleep(POLL_S)
            ran_for = time.monotonic() - started
            self._ended(proc)
            if self._stopping.is_set():
                return
            delay = self.backoff.next(ran_for)
            with self._lock:
                self.restarts += 1
                self.last_delay = delay
                self._next_start = time.monotonic() + delay
            log.warning(
                "the loader (pid %d) exited with %s after %.1f s; starting it again in %.1f s",
                proc.pid,
                proc.returncode,
                ran_for,
                delay,
            )
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.proc = self._start()
                self._next_start = None

    def _ended(self, proc: subprocess.Popen[bytes]) -> None:
        """Folds the ended run's errors into the totals; a run that failed counts once more."""
        state = self._state(proc)
        with self._lock:
            self.last_exit = proc.returncode
            for kind, n in (state or {}).get("errors", {}).items():
                self.errors[kind] = self.errors.get(kind, 0) + int(n)
            if proc.returncode != 0 and not self._stopping.is_set():
                kind = (state or {}).get("failed") or "crash"
                self.errors[kind] = self.errors.get(kind, 0) + 1
            self._note_commit(state)

    def _state(self, proc: subprocess.Popen[bytes] | None) -> dict[str, Any] | None:
        state = read_state(self.state_path)
        if proc is None or state is None or state.get("pid") != proc.pid:
            return None
        return state

    def _note_commit(self, state: dict[str, Any] | None) -> None:
        commit = (state or {}).get("last_commit")
        if commit is not None and (self.last_commit is None or commit > self.last_commit):
            self.last_commit = float(commit)

    def ask_to_stop(self) -> None:
        """The worker is stopping: no more restarts, and the child gets SIGTERM now."""
        with self._lock:
            self._stopping.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)

    def stop(self, timeout: float) -> None:
        """Stops the child (SIGTERM, ``timeout``, SIGKILL) and never starts another."""
        self.ask_to_stop()
        with self._lock:
            proc = self.proc
        if proc is not None:
            terminate(proc, timeout)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout + 1.0)

    def status(self) -> dict[str, Any]:
        """The ``loader`` section of the worker's ``/v1/status``."""
        with self._lock:
            proc = self.proc
            up = proc is not None and proc.poll() is None
            state = self._state(proc) if up else None
            self._note_commit(state)
            errors = dict(self.errors)
            for kind, n in (state or {}).get("errors", {}).items():
                errors[kind] = errors.get(kind, 0) + int(n)
            next_start = self._next_start
            return {
                "up": up,
                "pid": proc.pid if up and proc is not None else None,
                "restarts": self.restarts,
                "last_exit": self.last_exit,
                "restart_delay": self.last_delay,
                "restart_in": (
                    None if next_start is None else max(0.0, next_start - time.monotonic())
                ),
                "paused": (state or {}).get("paused"),
                "last_commit": self.last_commit,
                "committed": (state or {}).get("committed", {}),
                "lag": (state or {}).get("lag", {}),
                "errors": dict(sorted(errors.items())),
            }

    def collect(self) -> Iterator[Any]:
        """``usersignals_loader_*``: up, restarts, last commit, lag per partition, errors."""
        s = self.status()
        yield GaugeMetricFamily(
            "usersignals_loader_up", "1 while the worker's loader child runs", value=int(s["up"])
        )
        yield CounterMetricFamily(
            "usersignals_loader_restarts",
            "Times the worker started its loader again after it exited",
            value=s["restarts"],
        )
        yield GaugeMetricFamily(
            "usersignals_loader_paused",
            "1 while the loader pauses on a full disk or an I/O error",
            value=int(s["paused"] is not None),
        )
        if s["last_commit"] is not None:
            yield GaugeMetricFamily(
                "usersignals_loader_last_commit_timestamp_seconds",
                "When the loader last committed a range to the warehouse (Unix time)",
                value=s["last_commit"],
            )
        lag = GaugeMetricFamily(
            "usersignals_loader_lag",
            "Records of the events topic not loaded yet, per partition",
            labels=["partition"],
        )
        for partition, n in sorted(s["lag"].items(), key=lambda kv: int(kv[0])):
            lag.add_metric([partition], n)
        yield lag
        errors = CounterMetricFamily(
            "usersignals_loader_errors",
            "Loader failures by kind (enospc, eio: paused and went on; kafka, crash: it exited)",
            labels=["kind"],
        )
        for kind, n in s["errors"].items():
            errors.add_metric([kind], n)
        yield errors
