"""``usersignals arena``: arena ratings of model versions from the warehouse's preference votes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from usersignals.cli._options import settings_from, warehouse_option
from usersignals.warehouse.arena import arena_report
from usersignals.warehouse.db import connect

__all__ = ["command", "format_table"]


def format_table(rows: list[dict[str, Any]]) -> str:
    """Arena rows as an aligned text table, best rank first (then rating, then model)."""
    if not rows:
        return "no preference votes"
    ordered = sorted(rows, key=lambda r: (r["rank"], -r["rating"], r["model"]))
    width = max(5, *(len(r["model"]) for r in rows))
    lines = [f"{'rank':>4}  {'model':<{width}}  {'rating':>8}  {'95% CI':>17}  {'votes':>7}"]
    for r in ordered:
        interval = f"{r['ci_low']:.1f} - {r['ci_high']:.1f}"
        lines.append(
            f"{r['rank']:>4}  {r['model']:<{width}}  {r['rating']:>8.1f}  {interval:>17}  "
            f"{r['votes']:>7}"
        )
    return "\n".join(lines)


@click.command("arena")
@warehouse_option
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    metavar="YYYY-MM-DD",
    help="Only votes of this day and later.",
)
@click.option(
    "--cap-per-user-day",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Only each user's first N votes of a day.",
)
@click.option(
    "--resamples",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Bootstrap resamples for the 95% intervals.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON array.")
def command(
    warehouse: str | None,
    since: datetime | None,
    cap_per_user_day: int | None,
    resamples: int,
    seed: int,
    as_json: bool,
) -> None:
    """Bradley-Terry ratings (Elo scale, mean 1000) with 95% bootstrap intervals.

    Ties and both_bad count half a win to each side. Models whose intervals overlap share a
    rank. The same votes, resamples and seed always give the same numbers.

    \b
    Example:
      usersignals arena --warehouse ./data/warehouse --since 2026-11-01 --cap-per-user-day 20
    """
    settings = settings_from(warehouse=warehouse)
    con = connect(settings.warehouse)
    try:
        rows = arena_report(
            con,
            since=since.date() if since is not None else None,
            cap_per_user_day=cap_per_user_day,
            resamples=resamples,
            seed=seed,
        )
    finally:
        con.close()
    click.echo(json.dumps(rows) if as_json else format_table(rows))
