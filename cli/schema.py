"""``usersignals schema``: the JSON Schema of the event contract, for client teams."""

from __future__ import annotations

import json
from datetime import datetime

import click

from usersignals.cli.validate import min_ts_option
from usersignals.ingest.contract import json_schema

__all__ = ["command"]


@click.command("schema")
@min_ts_option
def command(min_ts: datetime) -> None:
    """Print the JSON Schema (draft 2020-12) of one event.

    The schema is generated from the contract the collector and the workers enforce; its
    description lists the few rules JSON Schema cannot express. The integer form of 'ts'
    has the lower bound in force as its minimum.

    \b
    Example:
      usersignals schema > usersignals-event.schema.json
      usersignals schema --min-ts 1995-01-01T00:00:00Z
    """
    click.echo(json.dumps(json_schema(min_ts), indent=2, ensure_ascii=False))
