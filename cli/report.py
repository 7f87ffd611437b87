"""``usersignals report``: the metric tables, from the warehouse or from a running worker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from usersignals.cli._options import (
    calendar_options,
    output_file,
    settings_from,
    warehouse_option,
)

__all__ = ["command"]


@click.command("report")
@warehouse_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--from", "day_from", type=click.DateTime(["%Y-%m-%d"]), help="First day shown.")
@click.option("--to", "day_to", type=click.DateTime(["%Y-%m-%d"]), help="Last day shown.")
@click.option("--live", is_flag=True, help="Ask the running worker instead of the warehouse.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=output_file,
    help="Also write a self-contained HTML page (KPI tiles, charts, tables) to FILE; "
    "from the warehouse without --by it breaks risk flags and the rest down by model.",
)
@click.option("--worker-url", default=None, help="Worker address for --live.")
@click.option(
    "--period",
    type=click.Choice(["day", "week"]),
    default="week",
    show_default=True,
    help="Period of retention and lifecycle (history only).",
)
@click.option(
    "--retention", "retention_only", is_flag=True, help="Print only the retention triangle."
)
@calendar_options
@click.option(
    "--by",
    default=None,
    metavar="FIELD",
    help="Also break DAU/WAU/MAU, thumbs and risk flags down by model, platform or "
    "properties.KEY (history only).",
)
@click.option(
    "--by-limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Values of --by kept; the others are counted together as (other).",
)
def command(
    warehouse: str | None,
    as_json: bool,
    day_from: Any,
    day_to: Any,
    live: bool,
    html_file: Path | None,
    worker_url: str | None,
    period: str,
    retention_only: bool,
    tz: str,
    week_start: str,
    by: str | None,
    by_limit: int,
) -> None:
    """Print the metric tables (metrics.md) from the warehouse, or live from a worker.

    --from/--to choose the days shown; WAU, MAU and weekly windows still count the days
    before --from. From the warehouse the report also has retention and lifecycle (by
    --period), days active per week, sessions per day, the weekly flagged share and flagged
    users by usage band; their cohorts count the whole history. Days are UTC days and weeks
    start on Monday unless --tz and --week-start say otherwise (the warehouse only: the
    worker keeps UTC days). --by adds the same series per value of a field; the totals do
    not change.

    \b
    Example:
      usersignals report --from 2026-09-01 --to 2026-09-30
      usersignals report --json | jq '.active_users[-1]'
      usersignals report --live --html report.html
      usersignals report --retention --period day
      usersignals report --tz Europe/Berlin --week-start sunday
      usersignals report --by platform --json | jq '.active_users_by[-5:]'
    """
    from usersignals.metrics.periods import DayRange, DayRangeError

    settings = settings_from(warehouse=warehouse, worker_url=worker_url)
    lo = day_from.date() if day_from is not None else None
    hi = day_to.date() if day_to is not None else None
    try:
        select = DayRange(lo, hi)
    except DayRangeError as exc:
        raise click.BadParameter(str(exc), param_hint="'--from' / '--to'") from None
    if live and retention_only:
        raise click.UsageError("--retention reads the warehouse: it cannot go with --live")
    if live and by is not None:
        raise click.UsageError("--by reads the warehouse: it cannot go with --live")
    if live and (tz != "UTC" or week_start != "monday"):
        raise click.UsageError(
            "the worker keeps UTC days and Monday weeks: --tz and "
            "--week-start read the warehouse, without --live"
        )
    page: dict[str, Any] | None = None  # the HTML page's report, when it has more rows
    if live:
        from usersignals.cli.live import fetch_live_report

        report = fetch_live_report(settings, select=select)
        source = f"worker at {settings.worker_url}"
    else:
        from usersignals.metrics.flattery import params_of
        from usersignals.warehouse.breakdown import breakdown_report
        from usersignals.warehouse.db import connect
        from usersignals.warehouse.report import warehouse_report

        con = connect(settings.warehouse, tz=tz, week_start=week_start)
        try:
            flattery = params_of(settings)
            report = warehouse_report(con, lo, hi, flattery=flattery, history_period=period)
            if by is not None:
                report |= breakdown_report(con, by, lo, hi, limit=by_limit)
            elif html_file is not None:  # the page draws risk flags per model
                page = report | breakdown_report(con, "model", lo, hi, limit=by_limit)
        finally:
            con.close()
        source = f"warehouse {settings.warehouse}"
    if html_file is not None:
        from usersignals.dashboards.htmlreport import html_report

        made = html_report(page if page is not None else report, source, datetime.now(UTC))
        html_file.write_text(made, encoding="utf-8")
    if retention_only:
        if as_json:
            shown = {k: report[k] for k in ("retention", "tz", "week_start")}
            click.echo(json.dumps(shown, ensure_ascii=False))
        else:
            from usersignals.warehouse.history import render_retention
            from usersignals.warehouse.report import calendar_line

            click.echo(calendar_line(report))
            render_retention(report["retention"], period)
    elif as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        from usersignals.warehouse.report import render_report

        render_report(report)
        if html_file is not None:
            click.echo(f"wrote {html_file}", err=True)
