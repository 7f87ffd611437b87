"""``usersignals report``: the metric tables, from the warehouse or from a running worker."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from usersignals.cli._options import (
    calendar_options,
    output_file,
    settings_from,
    warehouse_option,
)

__all__ = ["command", "html_report"]

_SEVERITY_COLOURS = {
    "low": "#9ecae1",
    "medium": "#fdae6b",
    "high": "#e6550d",
    "critical": "#a50f15",
}
_SERIES_COLOURS = {"dau": "#1f77b4", "wau": "#2ca02c", "mau": "#9467bd"}


def _svg_frame(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">{"".join(body)}</svg></figure>'
    )


def _nice_step(top: float) -> int:
    """A round tick step (1, 2 or 5 times a power of ten) giving about four ticks up to top."""
    raw = max(top / 4, 1.0)
    power: int = 10 ** (len(str(int(raw))) - 1)
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power  # pragma: no cover - the loop always returns


def _axes(
    days: Sequence[str], top: float, width: int, height: int, *, bars: bool = False
) -> tuple[list[str], Any, Any]:
    """Grid, labels and the two scale functions of a chart over ``days``."""
    left, right, bottom, upper = 60, width - 20, height - 40, 24
    step = _nice_step(top)
    top = step * max(1, -(-int(top) // step))
    slots = max(len(days), 1) if bars else max(len(days) - 1, 1)

    def x(i: float) -> float:
        return left + (right - left) * (i + (0.5 if bars else 0.0)) / slots

    def y(v: float) -> float:
        return bottom - (bottom - upper) * v / top

    parts = [f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    for value in range(0, int(top) + 1, step):
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="#dddddd"/><text x="{left - 6}" y="{y(value) + 4:.1f}" '
            f'text-anchor="end" font-size="11">{value:,}</text>'
        )
    every = max(1, len(days) // 10)
    for i in range(0, len(days), every):
        parts.append(
            f'<text x="{x(i):.1f}" y="{bottom + 16}" text-anchor="middle" '
            f'font-size="11">{html.escape(days[i][5:])}</text>'
        )
    return parts, x, y


def _legend(names: Sequence[tuple[str, str]], width: int) -> list[str]:
    parts = []
    for n, (name, colour) in enumerate(names):
        x = width - 20 - 90 * (len(names) - n)
        parts.append(
            f'<rect x="{x}" y="4" width="12" height="12" fill="{colour}"/>'
            f'<text x="{x + 16}" y="14" font-size="12">{html.escape(name)}</text>'
        )
    return parts


def active_users_svg(rows: Sequence[dict[str, Any]], width: int = 1200, height: int = 320) -> str:
    """A line chart of DAU, WAU and MAU per day."""
    days = [r["day"] for r in rows]
    top = max((r["mau"] for r in rows), default=1)
    parts, x, y = _axes(days, top, width, height)
    step = (x(1) - x(0)) if len(rows) > 1 else 20.0
    for i, r in enumerate(rows):
        if not r.get("complete", True):  # the newest day is still filling up
            parts.append(
                f'<rect class="incomplete" x="{x(i) - step / 2:.1f}" y="{y(top):.1f}" '
                f'width="{step:.1f}" height="{y(0) - y(top):.1f}" fill="#eeeeee">'
                f"<title>{html.escape(r['day'])}: incomplete (data still arriving)</title></rect>"
            )
    for name, colour in _SERIES_COLOURS.items():
        points = " ".join(f"{x(i):.1f},{y(r[name]):.1f}" for i, r in enumerate(rows))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
        )
    parts += _legend([(n.upper(), c) for n, c in _SERIES_COLOURS.items()], width)
    return _svg_frame(
        width, height, "Active users per day (shaded: incomplete day, data still arriving)", parts
    )


def risk_flags_svg(
    rows: Sequence[dict[str, Any]], days: Sequence[str], width: int = 1200, height: int = 320
) -> str:
    """Stacked bars of risk flags per day by severity."""
    per_day: dict[str, dict[str, int]] = {d: {} for d in days}
    for r in rows:
        cell = per_day.setdefault(r["day"], {})
        cell[r["severity"]] = cell.get(r["severity"], 0) + r["flags"]
    ordered = sorted(per_day)
    top = max((sum(v.values()) for v in per_day.values()), default=1)
    parts, x, y = _axes(ordered, top, width, height, bars=True)
    bar = max(2.0, (width - 80) / max(len(ordered), 1) * 0.7)
    for i, day in enumerate(ordered):
        base = 0
        for severity, colour in _SEVERITY_COLOURS.items():
            n = per_day[day].get(severity, 0)
            if n:
                parts.append(
                    f'<rect x="{x(i) - bar / 2:.1f}" y="{y(base + n):.1f}" width="{bar:.1f}" '
                    f'height="{y(base) - y(base + n):.1f}" fill="{colour}">'
                    f"<title>{html.escape(day)} {severity}: {n}</title></rect>"
                )
            base += n
    parts += _legend(list(_SEVERITY_COLOURS.items()), width)
    return _svg_frame(width, height, "Risk flags per day, by severity", parts)


_COHORT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def retention_svg(rows: Sequence[dict[str, Any]], width: int = 1200, height: int = 320) -> str:
    """Retention curves: per cohort (the newest six), the share of its users active in each
    period after its first, in per cent."""
    cohorts: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        cohorts.setdefault(r["cohort"], []).append(r)
    shown = sorted(cohorts)[-len(_COHORT_COLOURS) :]
    offsets = max((r["period"] for r in rows), default=0) + 1
    parts, x, y = _axes([f"     {n}" for n in range(offsets)], 100, width, height)
    names = []
    for colour, cohort in zip(_COHORT_COLOURS, shown, strict=False):
        cells = sorted(cohorts[cohort], key=lambda r: int(r["period"]))
        size = cells[0]["cohort_users"]
        points = " ".join(f"{x(c['period']):.1f},{y(100 * c['users'] / size):.1f}" for c in cells)
        parts.append(
            f'<polyline class="cohort" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{points}"><title>{html.escape(cohort)}: {size:,} users</title></polyline>'
        )
        names.append((cohort[5:], colour))
    parts += _legend(names, width)
    return _svg_frame(
        width, height, "Retention: % of each first-time cohort active n periods later", parts
    )


def _html_table(title: str, rows: Sequence[dict[str, Any]]) -> str:
    from usersignals.warehouse.report import COMPLETENESS_FLAGS

    if not rows:
        return f"<h2>{html.escape(title)}</h2><p>No rows.</p>"
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(_flag_text(v) if k in COMPLETENESS_FLAGS else _text(v))}</td>"
            for k, v in r.items()
        )
        + "</tr>"
        for r in rows
    )
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def _flag_text(complete: bool) -> str:
    return "" if complete else "partial"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


_STYLE = (
    "body{font-family:sans-serif;margin:24px;color:#222}"
    "table{border-collapse:collapse;margin-bottom:24px;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f2f2f2}figure{margin:0 0 24px 0}figcaption{font-weight:bold}"
)


def html_report(report: dict[str, Any], source: str) -> str:
    """The report as one self-contained HTML page: charts (inline SVG) and every table."""
    from usersignals.warehouse.report import REPORT_KEYS, TITLES

    days = [r["day"] for r in report.get("active_users", [])]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>usersignals report</title><style>{_STYLE}</style></head><body>",
        f"<h1>usersignals report</h1><p>Source: {html.escape(source)}</p>",
        f"<p>{html.escape(_range_line(report))}</p>",
        active_users_svg(report.get("active_users", [])),
        risk_flags_svg(report.get("risk_flags_daily", []), days),
    ]
    parts += [_html_table(TITLES[key], report.get(key, [])) for key in REPORT_KEYS]
    if "retention" in report:  # history only
        from usersignals.warehouse.history import HISTORY_KEYS, HISTORY_TITLES

        parts.append(retention_svg(report["retention"]))
        parts += [_html_table(HISTORY_TITLES[k], report.get(k, [])) for k in HISTORY_KEYS]
    from usersignals.warehouse.report import breakdown_titles

    parts += [_html_table(title, report[key]) for key, title in breakdown_titles(report)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _range_line(report: dict[str, Any]) -> str:
    from usersignals.metrics.periods import DayRange
    from usersignals.warehouse.report import calendar_line

    rng = report.get("range") or {}
    return DayRange.parse(rng.get("from"), rng.get("to")).describe() + " " + calendar_line(report)


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
    help="Also write a self-contained HTML report (tables and charts) to FILE.",
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
    if live:
        from usersignals.cli.live import fetch_live_report

        report = fetch_live_report(settings, select=select)
        source = f"worker at {settings.worker_url}"
    else:
        from usersignals.metrics.flattery import params_of
        from usersignals.warehouse.db import connect
        from usersignals.warehouse.report import warehouse_report

        con = connect(settings.warehouse, tz=tz, week_start=week_start)
        try:
            flattery = params_of(settings)
            report = warehouse_report(con, lo, hi, flattery=flattery, history_period=period)
            if by is not None:
                from usersignals.warehouse.breakdown import breakdown_report

                report |= breakdown_report(con, by, lo, hi, limit=by_limit)
        finally:
            con.close()
        source = f"warehouse {settings.warehouse}"
    if html_file is not None:
        html_file.write_text(html_report(report, source), encoding="utf-8")
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
