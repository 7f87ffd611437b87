"""Stopping child processes the same way everywhere: SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

__all__ = ["terminate"]


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
