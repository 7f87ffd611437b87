"""``usersignals export feedback|preferences``: training data out of the warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import click

from usersignals.cli._options import output_file, settings_from, warehouse_option
from usersignals.warehouse.db import connect
from usersignals.warehouse.export import FORMATS, KINDS, SEVERITIES, export

__all__ = ["SUFFIXES", "command", "export_format"]

SUFFIXES = {"parquet": (".parquet",), "jsonl": (".jsonl", ".json")}
"""The file name suffixes of each export format."""


def export_format(out: str, fmt: str | None) -> str:
    """The format to write ``out`` in: ``fmt``, else the one its suffix names.

    A name without a suffix is Parquet unless ``fmt`` says otherwise.

    Raises:
        click.BadParameter: the suffix names another format than ``fmt``, or none we write
            (a ``.csv`` name would get Parquet bytes).
    """
    suffix = Path(out).suffix.lower()
    named = next((f for f, suffixes in SUFFIXES.items() if suffix in suffixes), None)
    if suffix and named is None:
        choices = "; ".join(f"{f}: {', '.join(s)}" for f, s in SUFFIXES.items())
        raise click.BadParameter(
            f"{out!r} has the suffix {suffix!r}, not one of a format export writes ({choices})",
            param_hint="'--out'",
        )
    if fmt is not None and named is not None and named != fmt:
        raise click.BadParameter(
            f"{out!r} names a {named} file, but --format is {fmt}", param_hint="'--out'"
        )
    return fmt or named or "parquet"


@click.command("export")
@click.argument("kind", type=click.Choice(KINDS))
@warehouse_option
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    callback=output_file,
    required=True,
    help="File to write (.parquet, .jsonl or .json).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="File format [default: from the --out suffix; parquet without one].",
)
@click.option(
    "--exclude-risk",
    type=click.Choice(SEVERITIES),
    default=None,
    metavar="SEVERITY",
    help="Leave out every session with a risk flag of this severity or above "
    "(low < medium < high < critical).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(
    kind: str,
    warehouse: str | None,
    out: str,
    fmt: str | None,
    exclude_risk: str | None,
    as_json: bool,
) -> None:
    """Export feedback labels or preference pairs for training.

    feedback: the latest thumbs up/down per user and message (message_id, session_id, model,
    label = 1 or -1). preferences: every pairwise vote (session_id, model_a, model_b, winner).
    Users who refused consent (properties.consent = false on any event) are always left out;
    no user id is written.

    \b
    Example:
      usersignals export feedback --out labels.parquet --exclude-risk high
      usersignals export preferences --out pairs.jsonl --json
    """
    fmt = export_format(out, fmt)
    settings = settings_from(warehouse=warehouse)
    con = connect(settings.warehouse)
    try:
        summary = export(con, kind, out, fmt=fmt, exclude_risk=exclude_risk)
    finally:
        con.close()
    if as_json:
        click.echo(json.dumps({**summary, "out": out}))
    else:
        click.echo(
            f"wrote {summary['rows']} {kind} rows to {out} ({fmt}); left out "
            f"{summary['dropped_consent']} without consent, "
            f"{summary['dropped_risk']} in flagged sessions"
        )
