"""The keys only the history report has: retention, lifecycle, the stickiness distribution
(engagement in depth) and the weekly flagged share (wellbeing).

The definitions are those of ``docs/metrics.md`` and live in one place each, ``engagement.sql``
(relations ``retention_by(p)``, ``lifecycle_by(p)``, ``stickiness_distribution``) and
``wellbeing.sql`` (``wellbeing_weekly``); this module
reads them on a cursor where :func:`~usersignals.warehouse.merge.merge_inputs` put the merged
inputs, as the report does, so a compacted day is read from its rollups. They are history
only: the worker keeps too few days for a cohort's first period (the weekly flagged share is
to be served live too).

Periods are named by their first day (``YYYY-MM-DD``); a week starts on Monday (ISO).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb
from rich.console import Console
from rich.table import Table

from usersignals.warehouse.merge import merge_inputs

__all__ = [
    "HISTORY_KEYS",
    "HISTORY_TITLES",
    "PERIODS",
    "history_report",
    "history_rows",
    "json_rows",
    "render_retention",
]

PERIODS = ("day", "week")
"""Periods of retention and lifecycle (``--period``)."""

HISTORY_KEYS = (
    "retention",
    "lifecycle",
    "stickiness_distribution",
    "sessions_daily",
    "wellbeing_weekly",
    "risk_concentration",
)
"""Keys the history report adds to the report object (after the keys live and history share)."""

HISTORY_TITLES = {
    "retention": "Retention of first-time cohorts",
    "lifecycle": "Lifecycle (new, returning, resurrecting, dormant)",
    "stickiness_distribution": "Days active per ISO week (stickiness distribution)",
    "sessions_daily": "Sessions per day (length in seconds, share over 60 minutes)",
    "wellbeing_weekly": "Weekly flagged share per category and model (wellbeing)",
    "risk_concentration": "Flagged users per usage band (deciles of messages sent, ISO week)",
}

_STEP = {"day": 1, "week": 7}


def _overlaps(start: str, days: str) -> str:
    """SQL: the period starting at ``start`` (``days`` long) touches [$lo, $hi]."""
    return (
        f"(CAST($lo AS DATE) IS NULL OR {start} + ({days} - 1) >= CAST($lo AS DATE)) "
        f"AND (CAST($hi AS DATE) IS NULL OR {start} <= CAST($hi AS DATE))"
    )


def _value(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6)  # as every ratio of the report
    return value


def json_rows(
    cur: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """The rows of ``sql`` as report JSON: dates ``YYYY-MM-DD``, floats ``round(x, 6)``."""
    rel = cur.execute(sql, params)
    names = [d[0] for d in rel.description or ()]
    return [{k: _value(v) for k, v in zip(names, values, strict=True)} for values in rel.fetchall()]


def history_report(
    con: duckdb.DuckDBPyConnection,
    day_from: date | None = None,
    day_to: date | None = None,
    *,
    period: str = "week",
) -> dict[str, list[dict[str, Any]]]:
    """The keys of the history report that the live one lacks (:data:`HISTORY_KEYS`).

    Cohorts, lifecycle statuses and the days active of a week count the whole history (a
    user's cohort is their first period ever); ``day_from``/``day_to`` choose the periods shown:
    those touching the range, and retention cells whose period c + n does not start after
    ``day_to``.

    Args:
        con: A connection with the warehouse views (``db.connect``).
        day_from: First day shown (inclusive); None: from the first day.
        day_to: Last day shown (inclusive); None: to the last day.
        period: ``day`` or ``week`` for retention and lifecycle; the distribution and the
            flagged share are weekly.

    Raises:
        ValueError: ``period`` is not one of :data:`PERIODS`.
    """
    cur = con.cursor()
    try:
        merge_inputs(cur)
        return history_rows(cur, day_from, day_to, period=period)
    finally:
        cur.close()


def history_rows(
    cur: duckdb.DuckDBPyConnection,
    day_from: date | None = None,
    day_to: date | None = None,
    *,
    period: str = "week",
) -> dict[str, list[dict[str, Any]]]:
    """:func:`history_report` on a cursor where :func:`merge_inputs` ran already (the report
    computes its keys and these on one cursor, merging once).

    Raises:
        ValueError: ``period`` is not one of :data:`PERIODS`.
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    step = _STEP[period]
    params = {"lo": day_from, "hi": day_to}
    retention = json_rows(
        cur,
        "SELECT cohort, period, cohort_users, users, users_on_or_after "
        f"FROM retention_by('{period}') "
        f"WHERE {_overlaps('cohort', str(step))} "
        "AND (CAST($hi AS DATE) IS NULL "
        f"OR cohort + CAST(period * {step} AS INTEGER) <= CAST($hi AS DATE)) "
        "ORDER BY cohort, period",
        params,
    )
    lifecycle = json_rows(
        cur,
        f"SELECT period, status, users FROM lifecycle_by('{period}') "
        f"WHERE {_overlaps('period', str(step))} ORDER BY period, rank",
        params,
    )
    distribution = json_rows(
        cur,
        "SELECT week, days_active, users FROM stickiness_distribution "
        f"WHERE {_overlaps('week', '7')} ORDER BY week, days_active",
        params,
    )
    sessions = json_rows(
        cur,
        "SELECT day, sessions, duration_p50_s, duration_p90_s, long_share, "
        f"messages_per_session FROM sessions_daily WHERE {_overlaps('day', '1')} "
        "ORDER BY day",
        params,
    )
    concentration = json_rows(
        cur,
        "SELECT week, band, users, flagged_users FROM risk_concentration "
        f"WHERE {_overlaps('week', '7')} ORDER BY week, band",
        params,
    )
    wellbeing = json_rows(
        cur,
        "SELECT week, model, category, flagged_users, flagged_users_high, active_users, "
        "share, share_high FROM wellbeing_weekly "
        f"WHERE {_overlaps('week', '7')} ORDER BY week, model NULLS FIRST, category",
        params,
    )
    return {
        "retention": retention,
        "lifecycle": lifecycle,
        "stickiness_distribution": distribution,
        "sessions_daily": sessions,
        "wellbeing_weekly": wellbeing,
        "risk_concentration": concentration,
    }


def render_retention(
    rows: list[dict[str, Any]], period: str = "week", console: Console | None = None
) -> None:
    """Prints the retention triangle: a row per cohort, a column per offset, each cell the
    users active in that period and their share of the cohort."""
    out = console or Console()
    if console is None and not out.is_terminal:
        out = Console(width=240)
    if not rows:
        out.print(f"[bold]{HISTORY_TITLES['retention']}[/bold]: no rows")
        return
    width = max(r["period"] for r in rows) + 1
    table = Table(title=f"{HISTORY_TITLES['retention']}, by {period} (cell: users, share)")
    table.add_column("cohort")
    table.add_column("users", justify="right")
    for n in range(width):
        table.add_column(f"{period} {n}", justify="right")
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault(r["cohort"], {})[r["period"]] = r
    for cohort, by_n in cells.items():
        size = next(iter(by_n.values()))["cohort_users"]
        line = [cohort, f"{size:,}"]
        for n in range(width):
            cell = by_n.get(n)
            line.append("" if cell is None else f"{cell['users']:,} ({cell['users'] / size:.0%})")
        table.add_row(*line)
    out.print(table)
