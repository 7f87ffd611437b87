"""``usersignals worker``: the Faust stream worker, with the warehouse loader as its child.

Several workers share the partitions of the events topic (Faust consumer group
``<prefix>-worker``); give each its own ``--port``. Each worker's ``/v1/report`` answers for the
partitions it holds. ``usersignals report --live`` gives the global numbers by merging on the
client: it asks every worker listed in ``USERSIGNALS_WORKER_URL`` (comma-separated) for its
partitions and day range, then for its partial over the global range, and adds them up
(exact: users are disjoint across partitions). See :mod:`usersignals.cli.live`.

The loader runs as a child process (``usersignals loader --exit-with-parent``), kept running
by :class:`usersignals.cli.supervisor.LoaderSupervisor`: a loader that exits (killed, crashed)
is started again after a backoff, and its state is the ``loader`` section of ``/v1/status`` and
the ``usersignals_loader_*`` series of ``/metrics``. The worker passes its SIGTERM or SIGINT on
to it at once, so both stop together, and restarts none after that; if the worker is killed
(SIGKILL), the kernel sends the loader SIGTERM (``PR_SET_PDEATHSIG``, see
:func:`usersignals.processes.die_with_parent`), and the loader flushes and exits by itself.

Stopping is bounded. With the broker gone, Faust's shutdown waited a minute or more on its
consumer thread, which had died in aiokafka's ``consumer.stop()`` (a stray ``CancelledError``,
fixed by :func:`usersignals.cli._kafka.close_fetches_quietly`). Whatever else it may wait on,
a :class:`StopWatchdog`
armed by the first signal ends the worker ``stop_grace_s`` seconds later (default 30), after
stopping the loader; a second signal ends it at once. Repeated warnings and errors (the
Kafka clients log a failed connection ~10 times a second) pass once per ``log_repeat_s``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from usersignals.cli._kafka import close_fetches_quietly, require_kafka
from usersignals.cli._options import (
    bootstrap_option,
    kafka_timeout_option,
    settings_from,
    warehouse_option,
)
from usersignals.cli.supervisor import LoaderSupervisor
from usersignals.config import Settings
from usersignals.processes import StopWatchdog, install_repeat_filter

__all__ = ["arena_function", "command"]

LOG_LEVELS = ("crit", "error", "warn", "info", "debug")
PY_LEVELS = {
    "crit": "CRITICAL",
    "error": "ERROR",
    "warn": "WARNING",
    "info": "INFO",
    "debug": "DEBUG",
}
LOADER_KILL_TIMEOUT_S = 1.0
"""How long the watchdog waits for the loader after a last SIGTERM, before SIGKILL."""


def arena_function() -> Any:
    """``fit_arena`` of the warehouse arena module when it is installed, else ``None``."""
    try:
        module = importlib.import_module("usersignals.warehouse.arena")
    except ImportError:
        return None
    return getattr(module, "fit_arena", None)


@contextlib.contextmanager
def _loader(settings: Settings, enabled: bool) -> Iterator[LoaderSupervisor | None]:
    if not enabled:
        yield None
        return
    supervisor = LoaderSupervisor(settings)
    supervisor.begin()
    try:
        yield supervisor
    finally:
        supervisor.stop(settings.stop_grace_s)


def _stop_child(loader: LoaderSupervisor | None, timeout: float) -> Callable[[], object]:
    def stop() -> None:
        if loader is not None:
            loader.stop(timeout)

    return stop


def _ask_to_stop(loader: LoaderSupervisor | None) -> None:
    if loader is not None:
        loader.ask_to_stop()


def worker_class() -> type[Any]:
    """``faust.Worker`` with a bounded stop and rate-limited repeated log lines.

    Instances need ``watchdog`` (a :class:`StopWatchdog`), ``repeat_s`` (seconds) and
    ``ask_children_to_stop`` (called at the first signal) set before ``execute_from_commandline``.
    """
    from faust.worker import Worker

    class BoundedWorker(Worker):
        watchdog: StopWatchdog
        repeat_s: float
        ask_children_to_stop: Callable[[], object]

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            install_repeat_filter(self.repeat_s, logger)

        def _schedule_shutdown(self, signum: signal.Signals) -> None:
            self.watchdog.arm(signal.Signals(signum).name)
            self.ask_children_to_stop()
            super()._schedule_shutdown(signum)

    return BoundedWorker


@click.command("worker")
@bootstrap_option
@kafka_timeout_option
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
    kafka_timeout: float | None,
    warehouse: str | None,
    port: int | None,
    no_loader: bool,
    loglevel: str,
) -> None:
    """Run the stream worker (live metrics, dead letters) and the warehouse loader.

    Serves GET /v1/report, /v1/partial, /v1/status and /metrics on its web port. SIGTERM
    commits offsets, flushes the changelog and exits 0; a stop that takes longer than
    USERSIGNALS_STOP_GRACE_S (30 s) exits 1 without waiting further, a second SIGTERM or
    Ctrl-C at once. Exits 2 when Kafka does not answer at start (--timeout). With several
    workers on one machine, give each its own --port.

    \b
    Example:
      usersignals worker --port 6066
      usersignals worker --port 6067 --no-loader   # a second worker sharing the partitions
    """
    settings = settings_from(
        bootstrap=bootstrap, warehouse=warehouse, worker_port=port, kafka_timeout_s=kafka_timeout
    )
    require_kafka(settings)  # Faust would retry forever at start

    from usersignals.streams import heap
    from usersignals.streams.app import LiveWorker

    heap.configure()
    close_fetches_quietly()
    live = LiveWorker(settings, port=settings.worker_port, arena_fn=arena_function())
    worker = worker_class()(live.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    if not sys.stdout.isatty():
        worker.spinner = None
    logging.getLogger("usersignals").setLevel(PY_LEVELS[loglevel])
    with _loader(settings, not no_loader) as loader:
        if loader is not None:
            live.sidecars.append(loader)
        watchdog = StopWatchdog(
            settings.stop_grace_s, before_exit=[_stop_child(loader, LOADER_KILL_TIMEOUT_S)]
        )
        worker.watchdog = watchdog
        worker.repeat_s = settings.log_repeat_s
        worker.ask_children_to_stop = lambda: _ask_to_stop(loader)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
    watchdog.cancel()
