"""A byte-count progress bar for commands that read a file: rich on a terminal, silent else."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["byte_progress"]


@contextlib.contextmanager
def byte_progress(enabled: bool, total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n_bytes)``; draws a transient bar only when ``enabled``."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

    with Progress(
        f"[bold]{label}", BarColumn(), DownloadColumn(), TimeElapsedColumn(), transient=True
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
