"""``usersignals loader``: the warehouse loader on its own (the worker runs it as a child)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

import click

from usersignals.cli._kafka import close_fetches_quietly, require_kafka
from usersignals.cli._options import (
    bootstrap_option,
    kafka_timeout_option,
    settings_from,
    warehouse_option,
)
from usersignals.processes import exit_when_orphaned, install_repeat_filter
from usersignals.warehouse.loader import RollPolicy, run_loader

__all__ = ["command"]

_DEFAULT = RollPolicy()


@click.command("loader")
@bootstrap_option
@kafka_timeout_option
@warehouse_option
@click.option(
    "--exit-with-parent", is_flag=True, help="Flush and exit when the parent process dies."
)
@click.option("--drain", is_flag=True, help="Exit once caught up with the topic's end at start.")
@click.option(
    "--roll-events",
    type=int,
    default=_DEFAULT.max_events,
    show_default=True,
    help="Write a partition's file after this many events.",
)
@click.option(
    "--roll-bytes",
    type=int,
    default=_DEFAULT.max_bytes,
    show_default=True,
    help="Write a partition's file after this many record bytes.",
)
@click.option(
    "--roll-seconds",
    type=float,
    default=_DEFAULT.max_seconds,
    show_default=True,
    help="Write a partition's file when its oldest record is this old.",
)
@click.option(
    "--compact-after",
    type=float,
    default=_DEFAULT.compact_after,
    show_default=True,
    help="Compact an event day once no flush wrote to it for this many seconds (0: never).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run's counts as JSON at exit.")
def command(
    bootstrap: str | None,
    kafka_timeout: float | None,
    warehouse: str | None,
    exit_with_parent: bool,
    drain: bool,
    roll_events: int,
    roll_bytes: int,
    roll_seconds: float,
    compact_after: float,
    as_json: bool,
) -> None:
    """Load the events topic into Parquet under the warehouse, exactly once.

    Resumes after the last committed range (from the warehouse's manifest.json); a topic
    that starts again at offset 0 (recreated, or a restarted embedded broker) is loaded from
    its beginning under a new epoch, never skipped. SIGTERM writes what is buffered and
    exits 0.

    \b
    Example:
      usersignals loader --bootstrap 127.0.0.1:9092 --warehouse ./data/warehouse --drain
    """
    settings = settings_from(
        bootstrap=bootstrap, warehouse=warehouse, kafka_timeout_s=kafka_timeout
    )
    require_kafka(settings)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    install_repeat_filter(settings.log_repeat_s)
    close_fetches_quietly()
    if exit_with_parent:
        exit_when_orphaned(settings.stop_grace_s)
    roll = RollPolicy(
        max_events=roll_events,
        max_bytes=roll_bytes,
        max_seconds=roll_seconds,
        compact_after=compact_after or None,
    )
    stats = run_loader(settings, roll=roll, exit_with_parent=exit_with_parent, drain=drain)
    if as_json:
        click.echo(json.dumps(asdict(stats), sort_keys=True))
    else:
        click.echo(
            f"loaded {stats.events} events, {stats.rejected} rejected, "
            f"{stats.foreign} of other partitions, from {stats.records} records "
            f"in {stats.flushes} ranges ({stats.seconds:.1f} s)",
            err=True,
        )
