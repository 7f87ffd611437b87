"""``usersignals schema``: the JSON Schema of the event contract, for client teams, and the Iglu
schemas of the event types, for Snowplow trackers."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
from click.core import ParameterSource

from usersignals.cli.validate import min_ts_option
from usersignals.ingest.contract import json_schema
from usersignals.ingest.iglu import VENDOR, build_iglu_schemas, repository_files

__all__ = ["command"]


@click.command("schema")
@click.option(
    "--iglu",
    is_flag=True,
    help="Print the Iglu self-describing JSON Schemas of the event types instead (a JSON "
    "array, one per type), for Snowplow trackers.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="With --iglu: write DIR/io.usersignals/<type>/jsonschema/1-0-0 instead of printing "
    "(DIR: the schemas/ folder of an Iglu static repository).",
)
@min_ts_option
def command(iglu: bool, out: Path | None, min_ts: datetime) -> None:
    """Print the JSON Schema (draft 2020-12) of one event.

    The schema is generated from the contract the collector and the workers enforce; its
    description lists the few rules JSON Schema cannot express. The integer form of 'ts'
    has the lower bound in force as its minimum.

    With --iglu, the Iglu self-describing JSON Schemas (draft 4) of the event types instead:
    iglu:io.usersignals/<type>/jsonschema/1-0-0, the data of a Snowplow self-describing
    event, which is the event without event_id, user_id, ts, type and received_at (the
    tracker's eid, uid or duid, dtm; the schema's name; the collector's clock).

    \b
    Example:
      usersignals schema > usersignals-event.schema.json
      usersignals schema --min-ts 1995-01-01T00:00:00Z
      usersignals schema --iglu --out iglu-repo/schemas
    """
    ctx = click.get_current_context()
    if not iglu:
        if out is not None:
            raise click.UsageError("--out writes the Iglu schemas: add --iglu")
        click.echo(json.dumps(json_schema(min_ts), indent=2, ensure_ascii=False))
        return
    if ctx.get_parameter_source("min_ts") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--min-ts does not apply to --iglu (the Iglu schemas have no 'ts')")
    if out is None:
        click.echo(json.dumps(build_iglu_schemas(), indent=2, ensure_ascii=False))
        return
    files = {out / path: text for path, text in repository_files().items()}
    for path, text in files.items():  # a published schema version never changes
        if path.exists() and path.read_text(encoding="utf-8") != text:
            raise click.ClickException(
                f"{str(path)!r} exists and differs: an Iglu schema version never changes "
                "once published (publish a new version, or remove the file)"
            )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {len(files)} Iglu schemas to {out / VENDOR}")
