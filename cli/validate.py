"""``usersignals validate FILE``: check JSON lines against the event contract, sending nothing."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

import click

from usersignals.config import Settings
from usersignals.errors import ConfigError
from usersignals.ingest.contract import decode_record, min_ts
from usersignals.ingest.timestamps import TimestampError, parse_rfc3339

__all__ = ["command", "min_ts_option"]

F = TypeVar("F", bound=Callable[..., Any])


def _parse_now(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        return parse_rfc3339(value)
    except TimestampError as exc:
        raise click.BadParameter(f"{value!r} ({exc.problem})") from None


def parse_min_ts(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime:
    """``--min-ts``, else the bound in force (``USERSIGNALS_MIN_TS``, else the default)."""
    if value is None:
        return min_ts()
    try:
        return Settings.load(environ={}, min_ts=value).min_ts
    except ConfigError as exc:
        raise click.BadParameter(f"{exc.value!r} ({exc.reason})") from None


def min_ts_option(f: F) -> F:
    """``--min-ts``: the earliest ``ts`` accepted (else ``USERSIGNALS_MIN_TS``)."""
    return click.option(
        "--min-ts",
        callback=parse_min_ts,
        metavar="RFC3339",
        help="Earliest 'ts' accepted [env USERSIGNALS_MIN_TS; default 2000-01-01T00:00:00Z].",
    )(f)


@click.command("validate")
@click.argument("file", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option(
    "--now",
    callback=_parse_now,
    metavar="RFC3339",
    help="Moment of receipt for the 24 h future limit of 'ts' [default: the clock].",
)
@min_ts_option
def command(file: IO[bytes], as_json: bool, now: datetime, min_ts: datetime) -> None:
    """Check a JSON-lines FILE (or - for stdin) against the event contract.

    Each non-blank line is one record value: an event object or a JSON array batch. Every
    rejected event is printed with its line number, index in the batch, reason code and
    message, then a summary. Exits 1 if anything was rejected, else 0.

    \b
    Example:
      usersignals validate events.jsonl
      cat events.jsonl | usersignals validate - --json
      usersignals validate backfill.jsonl --min-ts 1995-01-01T00:00:00Z
    """
    lines = events = 0
    rejected: list[dict[str, Any]] = []
    for number, line in enumerate(file, start=1):
        record = line.rstrip(b"\r\n")
        if not record.strip():
            continue
        lines += 1
        good, bad = decode_record(record, now=now, min_ts=min_ts)
        events += len(good)
        for r in bad:
            row = {"line": number, "index": r.index, "reason": r.reason, "field": r.field}
            rejected.append({**row, "message": r.message})
            if not as_json:
                where = f"line {number}" + ("" if r.index is None else f", index {r.index}")
                click.echo(f"{where}: {r.reason}: {r.message}")
    reasons = dict(sorted(Counter(r["reason"] for r in rejected).items()))
    if as_json:
        summary = {"lines": lines, "events": events, "rejected": len(rejected), "reasons": reasons}
        click.echo(json.dumps({**summary, "rejections": rejected}, ensure_ascii=False))
    else:
        detail = ", ".join(f"{reason} {count}" for reason, count in reasons.items())
        click.echo(
            f"{lines} lines: {events} events valid, {len(rejected)} rejected"
            + (f" ({detail})" if detail else "")
        )
    if rejected:
        # SystemExit, not click's Exit: the group runs with standalone_mode=False, where
        # click turns Exit into a return value and the exit code would be lost.
        sys.exit(1)
