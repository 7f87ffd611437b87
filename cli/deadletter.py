"""``usersignals deadletter list|replay``: rejected input from the warehouse."""

from __future__ import annotations

import json
from typing import Any

import click

from usersignals.broker import NO_AUTO_CREATE, refuse_auto_create
from usersignals.cli._kafka import client_timeouts, kafka_errors
from usersignals.cli._options import (
    bootstrap_option,
    existing_warehouse,
    kafka_timeout_option,
    settings_from,
    warehouse_option,
)
from usersignals.config import Settings
from usersignals.errors import ReplayUnconfirmedError
from usersignals.ingest.event import REASONS
from usersignals.warehouse.deadletter import read_deadletter, replay, summary

__all__ = ["ReplayUnconfirmedError", "command"]


@click.group("deadletter")
def command() -> None:
    """Inspect and replay rejected records.

    \b
    Example:
      usersignals deadletter list --summary
      usersignals deadletter replay --reason bad_timestamp
    """


_REASON = click.Choice(REASONS)


@command.command("list")
@warehouse_option
@click.option("--reason", type=_REASON, default=None, help="Only rows of this reason code.")
@click.option("--summary", "totals", is_flag=True, help="Counts per reason instead of rows.")
@click.option("--limit", type=int, default=50, show_default=True, help="Rows to show (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_command(
    warehouse: str | None, reason: str | None, totals: bool, limit: int, as_json: bool
) -> None:
    """Show dead-letter rows (reason, message, source position, the rejected bytes).

    \b
    Example:
      usersignals deadletter list --reason not_json --limit 10 --json
    """
    root = existing_warehouse(settings_from(warehouse=warehouse))
    if totals:
        for row in summary(root):
            click.echo(json.dumps(row) if as_json else f"{row['reason']}\t{row['count']}")
        return
    table = read_deadletter(root, reason)
    if limit:
        table = table.slice(0, limit)
    for row in table.to_pylist():
        raw = row["raw"].decode("utf-8", "replace")
        position = f"{row['source_partition']}:{row['source_offset']}:{row['batch_index']}"
        if as_json:
            row.update(raw=raw, record_key=None, received_at=row["received_at"].isoformat())
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(f"{position}\t{row['reason']}\t{row['message']}\t{raw[:80]!r}")


@command.command("replay")
@bootstrap_option
@kafka_timeout_option
@warehouse_option
@click.option("--reason", type=_REASON, default=None, help="Only rows of this reason code.")
@click.option("--again", is_flag=True, help="Also rows that were replayed before.")
@click.option("--dry-run", is_flag=True, help="Count what would be sent; send nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def replay_command(
    bootstrap: str | None,
    kafka_timeout: float | None,
    warehouse: str | None,
    reason: str | None,
    again: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Send rejected bytes to the events topic again (after fixing the producer or contract).

    \b
    Example:
      usersignals deadletter replay --reason bad_timestamp --dry-run
    """
    from kafka import KafkaProducer

    settings = settings_from(
        bootstrap=bootstrap, warehouse=warehouse, kafka_timeout_s=kafka_timeout
    )
    root = existing_warehouse(settings)
    topic = settings.events_topic
    partitions = settings.partitions
    producer = None
    if not dry_run:
        with kafka_errors(settings):
            producer = KafkaProducer(
                bootstrap_servers=settings.bootstrap,
                acks="all",
                **NO_AUTO_CREATE,
                **client_timeouts(settings.kafka_timeout_s, producer=True),
            )
            refuse_auto_create(producer)
            partitions = len(producer.partitions_for(topic) or ()) or partitions

    def send(value: bytes, key: bytes | None, partition: int) -> None:
        if producer is not None:
            producer.send(topic, value=value, key=key, partition=partition)

    try:
        with kafka_errors(settings):
            result = replay(root, send, partitions, reason=reason, again=again, dry_run=dry_run)
        if producer is not None:
            _flush(producer, settings)
    finally:
        if producer is not None:
            producer.close(timeout=0)
    if as_json:
        click.echo(json.dumps({"sent": result.sent, "skipped": result.skipped, "cut": result.cut}))
    else:
        verb = "would send" if dry_run else "sent"
        click.echo(f"{verb} {result.sent} records to {topic} ({result.skipped} replayed before)")
        if result.cut:
            click.echo(f"left out {result.cut} records over 1 MiB: their rows keep only a prefix")


def _flush(producer: Any, settings: Settings) -> None:
    from kafka.errors import KafkaError

    try:
        producer.flush(settings.kafka_timeout_s)
    except KafkaError:
        raise ReplayUnconfirmedError(settings.bootstrap, settings.kafka_timeout_s) from None
