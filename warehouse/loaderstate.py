"""What a running loader tells whoever supervises it, and the pauses both take after a failure.

The loader replaces a small JSON file (``loader.json`` under the state directory, not the
warehouse: a full warehouse disk must not silence it) after each commit, each failure and once a
second: its PID, when it last committed, its position and lag per partition, and its errors by
kind. The worker's supervisor reads it for ``/v1/status`` and ``/metrics``. The file is written
to a temporary name and renamed, so a reader sees a whole one; it is advisory, and a failure to
write it is never the loader's failure.

:class:`Backoff` is the one rule for pauses: doubling from ``base`` up to ``cap``, and starting
over once things went well for ``healthy`` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

__all__ = [
    "DISK_ERRNOS",
    "STATE_FILE",
    "Backoff",
    "LoaderState",
    "error_kind",
    "is_disk_error",
    "read_state",
    "write_state",
]

STATE_FILE = "loader.json"
"""The state file's name in the settings' state directory."""

DISK_ERRNOS = {errno.ENOSPC: "enospc", errno.EIO: "eio", errno.EDQUOT: "enospc"}
"""Errors of the disk that a pause may cure, by the kind they are counted as."""


def is_disk_error(exc: BaseException) -> bool:
    """True for an ``OSError`` of :data:`DISK_ERRNOS` (retryable: pause and write again)."""
    return isinstance(exc, OSError) and exc.errno in DISK_ERRNOS


def error_kind(exc: BaseException) -> str:
    """The kind an error is counted as: ``enospc``, ``eio``, ``kafka`` or ``crash``."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        return DISK_ERRNOS[exc.errno]
    if isinstance(exc, KafkaError | TimeoutError):
        return "kafka"
    return "crash"


@dataclass
class Backoff:
    """Pauses that double from ``base`` to at most ``cap``; reset once ``healthy`` went by.

    Args:
        base: The first pause (seconds).
        cap: The longest pause.
        healthy: A run at least this long before the failure starts the doubling over.
    """

    base: float
    cap: float
    healthy: float
    failures: int = 0

    def next(self, ran_for: float = 0.0) -> float:
        """The pause before the next attempt, after a failure ``ran_for`` seconds into a run."""
        if ran_for >= self.healthy:
            self.failures = 0
        delay = min(self.cap, self.base * 2.0 ** min(self.failures, 62))
        self.failures += 1
        return delay

    def reset(self) -> None:
        """An attempt succeeded: the next failure pauses ``base`` again."""
        self.failures = 0


@dataclass
class LoaderState:
    """A loader's state as its supervisor sees it (times are Unix seconds)."""

    pid: int
    started: float
    epoch: int = 0
    last_commit: float | None = None
    committed: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    paused: str | None = None
    """The kind of error the loader is pausing on, None while it loads."""
    failed: str | None = None
    """The kind of error that ended the run, if one did."""
    events: int = 0
    updated: float = 0.0

    def count(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def write_state(path: Path, state: LoaderState) -> None:
    """Replaces the state file with ``state``; an error (a full disk too) is ignored."""
    temp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(OSError):
        try:
            temp.write_bytes(json.dumps(asdict(state), sort_keys=True).encode())
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)


def read_state(path: Path) -> dict[str, Any] | None:
    """The state file's content, or None when there is none (or it cannot be read)."""
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
