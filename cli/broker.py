"""``usersignals broker``: the embedded broker in the foreground."""

from __future__ import annotations

import signal
import threading

import click

from usersignals.broker import EmbeddedBroker
from usersignals.cli._options import settings_from

__all__ = ["command"]


@click.command("broker")
@click.option("--port", type=int, default=9092, show_default=True, help="TCP port on 127.0.0.1.")
@click.option("--partitions", type=int, default=None, help="Partitions per topic [default 8].")
def command(port: int, partitions: int | None) -> None:
    """Run the embedded Kafka-compatible broker with the project's topics.

    Memory storage: stopping the broker forgets every record. SIGTERM or Ctrl-C stops it.

    \b
    Example:
      usersignals broker --port 9092
    """
    settings = settings_from(partitions=partitions)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedBroker(port, partitions=settings.partitions) as broker:
        click.echo(
            f"broker ready on {broker.bootstrap} (pid {broker.pid}); "
            f"topics created with {settings.partitions} partitions",
            err=True,
        )
        while not stop.is_set() and broker.process is not None and broker.process.poll() is None:
            stop.wait(0.5)
    click.echo("broker stopped", err=True)
