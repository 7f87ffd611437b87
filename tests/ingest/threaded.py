"""A real collector served on a thread of the test process, on a free port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from usersignals.config import Settings
from usersignals.ingest.collector import Collector, serve


@contextmanager
def collector_thread(
    collector: Collector, settings: Settings, name: str = "collector"
) -> Iterator[tuple[int, asyncio.AbstractEventLoop, asyncio.Event]]:
    """Serves ``collector`` until the block ends; yields its port, loop and stop event.

    An error while starting is raised here; one while serving fails the block's end.
    """
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        box.update(loop=loop, stop=stop)

        def on_ready(url: str) -> None:
            box["port"] = int(url.rsplit(":", 1)[1])
            ready.set()

        try:
            loop.run_until_complete(
                serve(settings, port=0, collector=collector, stop=stop, on_ready=on_ready)
            )
        except BaseException as exc:  # reported by the test thread
            box["error"] = exc
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    assert ready.wait(30), "the collector did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield box["port"], box["loop"], box["stop"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
    assert not thread.is_alive()
    assert "error" not in box
