"""``usersignals worker``: the Faust stream worker, with the warehouse loader as its child.

Several workers share the partitions of the events topic (Faust consumer group
``<prefix>-worker``); give each its own ``--port``. Each worker's ``/v1/report`` answers for the
partitions it holds. ``usersignals report --live`` gives the global numbers by merging on the
client: it asks every worker listed in ``USERSIGNALS_WORKER_URL`` (comma-separated) for its
partitions and day range, then for its partial over the global range, and adds them up
(exact: users are disjoint across partitions). See :mod:`usersignals.cli.live`.

The loader runs as a child process (``usersignals loader --exit-with-parent``). The worker
terminates it on exit; if the worker is killed (SIGKILL), the loader notices that its parent
died and flushes and exits by itself.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import click

from usersignals.cli._options import bootstrap_option, settings_from, warehouse_option
from usersignals.config import Settings
from usersignals.processes import terminate

__all__ = ["arena_function", "command"]

LOG_LEVELS = ("crit", "error", "warn", "info", "debug")
PY_LEVELS = {
    "crit": "CRITICAL",
    "error": "ERROR",
    "warn": "WARNING",
    "info": "INFO",
    "debug": "DEBUG",
}
LOADER_STOP_TIMEOUT_S = 30.0


def arena_function() -> Any:
    """``fit_arena`` of the warehouse arena module when it is installed, else ``None``."""
    try:
        module = importlib.import_module("usersignals.warehouse.arena")
    except ImportError:
        return None
    return getattr(module, "fit_arena", None)


@contextlib.contextmanager
def _loader(settings: Settings, enabled: bool) -> Iterator[subprocess.Popen[bytes] | None]:
    if not enabled:
        yield None
        return
    proc = subprocess.Popen(
        [sys.executable, "-m", "usersignals", "loader", "--exit-with-parent"],
        env={**os.environ, **settings.to_env()},
        stdin=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        terminate(proc, LOADER_STOP_TIMEOUT_S)


@click.command("worker")
@bootstrap_option
@warehouse_option
@click.option("--port", type=int, default=None, help="Web port [default 6066].")
@click.option("--no-loader", is_flag=True, help="Do not run the warehouse loader.")
@click.option(
    "-l",
    "--loglevel",
    type=click.Choice(LOG_LEVELS),
    default="warn",
    show_default=True,
    help="Log level (Faust's names).",
)
def command(
    bootstrap: str | None,
    warehouse: str | None,
    port: int | None,
    no_loader: bool,
    loglevel: str,
) -> None:
    """Run the stream worker (live metrics, dead letters) and the warehouse loader.

    Serves GET /v1/report, /v1/partial, /v1/status and /metrics on its web port. SIGTERM
    commits offsets, flushes the changelog and exits 0. With several workers on one machine,
    give each its own --port.

    \b
    Example:
      usersignals worker --port 6066
      usersignals worker --port 6067 --no-loader   # a second worker sharing the partitions
    """
    from faust.worker import Worker

    from usersignals.streams import heap
    from usersignals.streams.app import LiveWorker

    settings = settings_from(bootstrap=bootstrap, warehouse=warehouse, worker_port=port)
    heap.configure()
    live = LiveWorker(settings, port=settings.worker_port, arena_fn=arena_function())
    worker = Worker(live.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    if not sys.stdout.isatty():
        worker.spinner = None
    logging.getLogger("usersignals").setLevel(PY_LEVELS[loglevel])
    with _loader(settings, not no_loader):
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
