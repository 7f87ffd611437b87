"""``usersignals send FILE``: events from a JSON-lines file (or stdin) through the SDK."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from usersignals.cli._options import bootstrap_option, settings_from
from usersignals.cli._progress import byte_progress
from usersignals.ingest.contract import Rejection, decode_record
from usersignals.ingest.tracker import Tracker

__all__ = ["command"]


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, start=1):
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield number, line


def _rejection_row(line: int, rejection: Rejection) -> dict[str, Any]:
    return {
        "line": line,
        "index": rejection.index,
        "reason": rejection.reason,
        "field": rejection.field,
        "message": rejection.message,
    }


@click.command("send")
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path)
)
@bootstrap_option
@click.option(
    "--topic-prefix", default=None, help="Prefix of the topic names [default usersignals]."
)
@click.option(
    "--spool",
    "spool_path",
    default=None,
    type=click.Path(path_type=Path),
    help="Spool file for events Kafka cannot take yet [default <state_dir>/spool/].",
)
@click.option(
    "--timeout",
    default=120.0,
    show_default=True,
    help="Seconds to wait for Kafka (or the spool) to take every event.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
def command(
    file: Path,
    bootstrap: str | None,
    topic_prefix: str | None,
    spool_path: Path | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Send events from a JSON-lines FILE (or - for stdin) through the SDK.

    Each line holds one event object or a JSON array of them. Every line is checked against
    the event contract first; valid events are sent, rejected ones are listed with their line,
    index in the batch, reason and message. Exits 1 when any line was rejected or not every
    event could be delivered (or spooled), else 0.

    \b
    Example:
      usersignals send events.jsonl --bootstrap 127.0.0.1:9092
      usersignals generate --users 100 | usersignals send - --json
    """
    settings = settings_from(bootstrap=bootstrap, topic_prefix=topic_prefix)
    rejected: list[dict[str, Any]] = []
    accepted = lines = 0
    source = sys.stdin.buffer if str(file) == "-" else open(file, "rb")  # noqa: SIM115
    show = not as_json and sys.stderr.isatty()
    with source, Tracker(settings=settings, spool_path=spool_path) as tracker:
        total = file.stat().st_size if str(file) != "-" else None
        with byte_progress(show, total, "sending") as advance:
            for number, raw in _lines(source):
                lines += 1
                events, rejections = decode_record(raw)
                rejected += [_rejection_row(number, r) for r in rejections]
                for event in events:
                    tracker.track_event(event)
                accepted += len(events)
                advance(len(raw) + 1)
        flushed = tracker.flush(timeout)
        stats = tracker.stats
    summary = {
        "lines": lines,
        "sent": stats.sent,
        "spooled": stats.spooled,
        "failed": stats.failed,
        "accepted": accepted,
        "rejected": len(rejected),
        "rejections": rejected,
        "acknowledged": flushed.acknowledged,
        "delivered": flushed.delivered,
        "durable": flushed.durable,
        "timed_out": flushed.timed_out,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for row in rejected:
            where = f"line {row['line']}" + (
                f", index {row['index']}" if row["index"] is not None else ""
            )
            click.echo(f"{where}: {row['reason']}: {row['message']}")
        click.echo(
            f"sent {stats.sent}, spooled {stats.spooled}, failed {stats.failed}, "
            f"rejected {len(rejected)} (from {lines} lines)"
        )
        if flushed.timed_out:
            click.echo(f"not every event was settled within {timeout:g}s", err=True)
        elif flushed.durable and not flushed.delivered:
            click.echo(
                "Kafka did not take every event: the rest are in the spool and are resent "
                "by the next send (or Tracker) using it",
                err=True,
            )
    if rejected or not flushed.durable:
        sys.exit(1)
