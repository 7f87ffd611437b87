"""``usersignals warehouse compact``: merge a day's small files, each event once."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

import click

from usersignals.cli._options import existing_warehouse, settings_from, warehouse_option
from usersignals.warehouse.compact import compact

__all__ = ["command"]


@click.group("warehouse")
def command() -> None:
    """Warehouse maintenance.

    \b
    Example:
      usersignals warehouse compact --day 2026-11-24
    """


@command.command("compact")
@warehouse_option
@click.option(
    "--day",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    metavar="YYYY-MM-DD",
    help="Only this event day.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per day.")
def compact_command(warehouse: str | None, day: datetime | None, as_json: bool) -> None:
    """Merge each day's loader files into one file, dropping duplicate event_ids.

    Also writes the day's rollups, which `usersignals report` reads instead of the day's
    rows (the loader does all this by itself for days quiet for --compact-after seconds).
    Atomic and idempotent: readers see the day before or after, through the manifest;
    safe while the loader runs (it only takes committed files).

    \b
    Example:
      usersignals warehouse compact --warehouse ./data/warehouse --day 2026-11-24 --json
    """
    root = existing_warehouse(settings_from(warehouse=warehouse))
    for result in compact(root, None if day is None else day.date().isoformat()):
        if as_json:
            click.echo(json.dumps({**asdict(result), "duplicates": result.duplicates}))
        elif result.output is None:
            click.echo(f"{result.day}: nothing to do ({result.rows_out} rows)")
        else:
            click.echo(
                f"{result.day}: {result.inputs} files, {result.rows_in} rows -> "
                f"{result.output}, {result.rows_out} rows ({result.duplicates} duplicates dropped)"
            )
