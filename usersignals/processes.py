"""Process lifecycle the same way everywhere: stopping children, children that die with their
parent, a bounded stop, and logs that stay readable while Kafka is gone.

- :func:`terminate`: SIGTERM, a grace period, then SIGKILL.
- :func:`die_with_parent`: a ``preexec_fn`` that has Linux send the child SIGTERM when its
  parent dies, even by SIGKILL (``prctl(PR_SET_PDEATHSIG)``).
- :class:`StopWatchdog`: once a stop is asked for, the process exits after a grace period
  whatever it is waiting on (Faust's shutdown waits on Kafka clients that never give up while
  the broker is gone).
- :class:`RepeatFilter`: the same warning or error at most once per interval, with a count of
  those left out (Kafka clients log a failed connection ~10 times a second).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

__all__ = [
    "RepeatFilter",
    "StopWatchdog",
    "die_with_parent",
    "exit_when_orphaned",
    "install_repeat_filter",
    "terminate",
]

PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal the calling process gets when its parent thread dies."""

WATCHDOG_EXIT_CODE = 1
"""Exit status of a process the watchdog stopped: it did not stop cleanly in time."""

log = logging.getLogger("usersignals.processes")


def terminate(proc: subprocess.Popen[bytes], timeout: float, *, group: bool = False) -> int:
    """Asks ``proc`` to stop (SIGTERM), waits ``timeout`` seconds, then kills it.

    Args:
        proc: A child process.
        timeout: Grace period for a clean exit (flushes, offset commits).
        group: Also SIGKILL the process group led by ``proc`` once it is gone, so that
            nothing it started outlives it (the child must have been started with
            ``start_new_session=True``).

    Returns:
        The exit code of ``proc``.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return int(proc.returncode)


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets ``sig`` when we die.

    The kernel delivers the signal however the parent ends, SIGKILL included, which a child
    polling ``getppid()`` would only notice late and not at all while it is blocked. SIGTERM
    (not SIGKILL) lets the child flush and stop by its own rules. The signal is tied to the
    *thread* that started the child, so start children from the main thread. If the parent
    is already gone when the child runs, the child exits at once.

    Returns:
        The function, or ``None`` where ``prctl`` does not exist (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: no locks, no imports
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(WATCHDOG_EXIT_CODE)

    return preexec


class StopWatchdog:
    """Ends the process ``grace`` seconds after a stop was asked for, if it is still running.

    Call :meth:`arm` when a stop begins (the first SIGTERM or SIGINT); a second call ends
    the process at once. At the end the ``before_exit`` callbacks run (stopping children,
    each bounded by its own timeout), log handlers and standard streams are flushed, and the
    process exits with :data:`WATCHDOG_EXIT_CODE` without waiting for anything else.

    Args:
        grace: Seconds a clean stop may take.
        before_exit: Called, in order, just before the exit; exceptions are logged.
        exit: How to end the process (``os._exit``; a test may pass its own).
    """

    def __init__(
        self,
        grace: float,
        *,
        before_exit: list[Callable[[], object]] | None = None,
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self.grace = grace
        self.before_exit = list(before_exit or [])
        self._exit = exit
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._fired = False

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def arm(self, reason: str) -> None:
        """Starts the grace period; when it is running already, ends the process now."""
        with self._lock:
            if self._timer is not None:
                again = True
            else:
                again = False
                self._timer = threading.Timer(self.grace, self.fire, args=("grace period over",))
                self._timer.daemon = True
                self._timer.name = "usersignals-stop-watchdog"
                self._timer.start()
        if again:
            self.fire(f"{reason} again")
        else:
            log.info("stopping (%s); exiting in %.0f s at the latest", reason, self.grace)

    def cancel(self) -> None:
        """The process stopped cleanly: no forced exit."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    def fire(self, why: str) -> None:
        """Runs the ``before_exit`` callbacks, flushes logs and exits (once)."""
        with self._lock:
            if self._fired:
                return
            self._fired = True
        log.error("did not stop cleanly (%s); exiting without waiting further", why)
        for callback in self.before_exit:
            try:
                callback()
            except Exception:
                log.exception("while stopping")
        _flush_logs()
        self._exit(WATCHDOG_EXIT_CODE)


def exit_when_orphaned(
    grace: float, *, poll: float = 0.5, watchdog: StopWatchdog | None = None
) -> StopWatchdog:
    """Arms a watchdog once the parent process is gone (the process became an orphan).

    A thread of its own compares ``getppid()`` with the parent at the call, so it notices
    even while the rest of the process is blocked; the watchdog then ends the process
    ``grace`` seconds later if it has not stopped by itself (with :func:`die_with_parent`
    it got SIGTERM and is stopping).

    Returns:
        The watchdog (armed later, by the thread).
    """
    parent = os.getppid()
    dog = watchdog or StopWatchdog(grace)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        dog.arm(f"parent process {parent} gone")

    threading.Thread(target=watch, name="usersignals-parent-watch", daemon=True).start()
    return dog


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


class RepeatFilter(logging.Filter):
    """Lets one record per ``interval`` seconds through for each kind of warning or error.

    A kind is (logger, level, message template): "Unable connect to node with id %s: %s" is
    one kind whatever the node and error. Records below ``level`` always pass. The first
    record of a kind let through after some were left out says how many, and
    :attr:`suppressed` counts them all, per kind.

    Attach it to handlers (a filter on a logger does not see its children's records); one
    instance may serve several handlers: each record is decided once.

    Args:
        interval: Seconds between two records of one kind.
        level: The lowest level that is rate-limited.
        clock: Monotonic seconds (for tests).
    """

    def __init__(
        self,
        interval: float,
        *,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.level = level
        self.clock = clock
        self.suppressed: dict[tuple[str, int, str], int] = {}
        self._pending: dict[tuple[str, int, str], int] = {}
        self._last: dict[tuple[str, int, str], float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        decided = getattr(record, "_usersignals_repeat", None)
        if decided is not None:
            return bool(decided)
        keep = self._decide(record)
        record._usersignals_repeat = keep
        return keep

    def _decide(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._pending[kind] = self._pending.get(kind, 0) + 1
                self.suppressed[kind] = self.suppressed.get(kind, 0) + 1
                return False
            self._last[kind] = now
            left_out = self._pending.pop(kind, 0)
        if left_out:
            record.msg = f"{record.getMessage()} [{left_out} more like this left out]"
            record.args = None
        return True


def install_repeat_filter(interval: float, logger: logging.Logger | None = None) -> RepeatFilter:
    """Adds one :class:`RepeatFilter` to every handler of ``logger`` (default: the root)."""
    target = logger or logging.getLogger()
    repeat = RepeatFilter(interval)
    for handler in target.handlers:
        handler.addFilter(repeat)
    return repeat
