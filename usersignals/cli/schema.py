"""``usersignals schema``: the JSON Schema of the event contract, for client teams."""

from __future__ import annotations

import json

import click

from usersignals.ingest.contract import json_schema

__all__ = ["command"]


@click.command("schema")
def command() -> None:
    """Print the JSON Schema (draft 2020-12) of one event.

    The schema is generated from the contract the collector and the workers enforce; its
    description lists the few rules JSON Schema cannot express.

    \b
    Example:
      usersignals schema > usersignals-event.schema.json
    """
    click.echo(json.dumps(json_schema(), indent=2, ensure_ascii=False))
