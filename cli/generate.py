"""``usersignals generate``: a realistic synthetic chat-traffic data set as JSON lines."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import BinaryIO

import click

from usersignals.ingest.synthetic import GeneratorConfig, generate

__all__ = ["command"]


@click.command("generate")
@click.option("--users", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--days", type=click.IntRange(1), default=14, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--invalid-rate",
    type=click.FloatRange(0, 1),
    default=0.002,
    show_default=True,
    help="Share of extra lines that break the event contract.",
)
@click.option(
    "--end",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Last day (UTC) of the data set [default: yesterday].",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=Path("-"),
    show_default=True,
    help="Output file ('-' for standard output).",
)
def command(users: int, days: int, seed: int, invalid_rate: float, end: object, out: Path) -> None:
    """Write a realistic synthetic chat-traffic data set (JSON lines, one event a line).

    Heavy-tailed activity, sessions across midnight, three model versions (one "warm" version
    earns more thumbs up and more risk flags), preference votes, changed votes, client
    retries, late uploads and a small share of invalid records. Seeded and streamed.

    \b
    Example:
      usersignals generate --users 3000 --days 21 --seed 7 --out events.jsonl
    """
    end_day: date | None = end.date() if end is not None else None  # type: ignore[attr-defined]
    config = GeneratorConfig(
        users=users, days=days, end=end_day, seed=seed, invalid_rate=invalid_rate
    )
    if str(out) == "-":
        count = _write(config, sys.stdout.buffer)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as fh:
            count = _write(config, fh, progress=sys.stderr.isatty())
    click.echo(f"wrote {count:,} lines to {out}", err=True)


def _write(config: GeneratorConfig, fh: BinaryIO, *, progress: bool = False) -> int:
    count = 0
    lines = generate(config)
    if progress:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(
            SpinnerColumn(), TextColumn("{task.completed:,} lines"), TimeElapsedColumn()
        ) as bar:
            task = bar.add_task("generate", total=None)
            for line in lines:
                fh.write(line + b"\n")
                count += 1
                if count % 10_000 == 0:
                    bar.update(task, completed=count)
            bar.update(task, completed=count)
        return count
    for line in lines:
        fh.write(line + b"\n")
        count += 1
    return count
