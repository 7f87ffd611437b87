"""``usersignals topics ensure``: the project's topics on any Kafka."""

from __future__ import annotations

import click

from usersignals.broker import ensure_topics
from usersignals.cli._options import bootstrap_option, kafka_timeout_option, settings_from

__all__ = ["command"]


@click.group("topics")
def command() -> None:
    """Manage the project's topics.

    \b
    Example:
      usersignals topics ensure --bootstrap kafka:9092 --partitions 16
    """


@command.command("ensure")
@bootstrap_option
@kafka_timeout_option
@click.option("--partitions", type=int, default=None, help="Partitions per topic [default 8].")
def ensure(bootstrap: str | None, kafka_timeout: float | None, partitions: int | None) -> None:
    """Create the project's topics where they are missing (existing ones are left alone).

    Created topics take records of up to 1,114,112 bytes (max.message.bytes: a 1 MiB record
    with its headers); give topics you create yourself at least that.

    \b
    Example:
      usersignals topics ensure --bootstrap 127.0.0.1:9092
    """
    settings = settings_from(
        bootstrap=bootstrap, partitions=partitions, kafka_timeout_s=kafka_timeout
    )
    created = ensure_topics(
        settings.bootstrap, settings.partitions, settings.topics, timeout=settings.kafka_timeout_s
    )
    for name in created:
        click.echo(f"created {name} ({settings.partitions} partitions)")
    if not created:
        click.echo("all topics exist")
