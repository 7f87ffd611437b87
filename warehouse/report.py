"""The report of ``metrics.md`` from the warehouse views, in the one report JSON shape.

:func:`warehouse_report` reads the views of :mod:`usersignals.warehouse.db` and returns the
same object the worker's ``GET /v1/report`` returns: days as ``YYYY-MM-DD``, rows sorted by
their key columns, ratios rounded with Python's ``round(x, 6)`` exactly as the live path does.

The report works on a cursor of its own, where :func:`~usersignals.warehouse.merge.merge_inputs`
puts temporary tables in place of the rollup-shaped views: per-day rollups that compaction wrote
for compacted days, merged with the raw rows of the rest (deduplicated once). The views bind
their names when they run, so every metric reads those tables; the caller's connection is left
as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import duckdb
from rich.console import Console
from rich.table import Table

from usersignals.metrics.flattery import FlatteryParams, WeekCounts, watch_rows
from usersignals.metrics.periods import DayRange, select_range
from usersignals.warehouse.arena import fit_arena
from usersignals.warehouse.breakdown import BREAKDOWN_KEYS, BREAKDOWN_TITLES
from usersignals.warehouse.db import WEEK_STARTS
from usersignals.warehouse.derived import count_table
from usersignals.warehouse.history import HISTORY_KEYS, HISTORY_TITLES, history_rows
from usersignals.warehouse.merge import RAW_COLUMNS, merge_inputs

__all__ = [
    "COMPLETENESS_FLAGS",
    "REPORT_COLUMNS",
    "REPORT_KEYS",
    "TITLES",
    "breakdown_titles",
    "calendar_line",
    "calendar_of",
    "flattery_rows",
    "render_report",
    "warehouse_report",
]

REPORT_KEYS = (
    "active_users",
    "events_by_day",
    "feedback_by_model",
    "risk_flags_daily",
    "users_at_risk_weekly",
    "rejected",
    "arena",
    "flattery_watch",
)
"""Keys of the report object, in order."""

TITLES = {
    "active_users": "Active users (DAU, WAU, MAU, stickiness = DAU/MAU)",
    "events_by_day": "Events per day",
    "feedback_by_model": "Feedback by model (latest vote per user and message)",
    "risk_flags_daily": "Risk flags per day",
    "users_at_risk_weekly": "Users with a high or critical flag in the last 7 days",
    "rejected": "Rejected input by reason",
    "arena": "Arena ratings (Elo scale, 95 % interval)",
    "flattery_watch": "Flattery watch (per model and ISO week)",
}
"""Headings of the report's tables when printed."""

REPORT_COLUMNS = RAW_COLUMNS[: RAW_COLUMNS.index("source_partition")]
"""The columns of ``events`` that the report's views read."""

_IN_RANGE = (
    "(CAST($lo AS DATE) IS NULL OR day >= CAST($lo AS DATE)) "
    "AND (CAST($hi AS DATE) IS NULL OR day <= CAST($hi AS DATE))"
)

# key -> (query over the views, columns whose floats are rounded); $lo / $hi bound the days
_QUERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "active_users": (
        "SELECT day, dau, wau, mau, stickiness, complete, wau_complete, mau_complete "
        f"FROM active_users WHERE {_IN_RANGE} ORDER BY day",
        ("stickiness",),
    ),
    "events_by_day": (
        f"SELECT day, events, complete FROM event_counts WHERE {_IN_RANGE} ORDER BY day",
        (),
    ),
    "feedback_by_model": (
        "SELECT day, model, thumbs_up, thumbs_down FROM feedback_by_model "
        f"WHERE {_IN_RANGE} "
        "ORDER BY day, coalesce(model, ''), model IS NULL",
        (),
    ),
    "risk_flags_daily": (
        "SELECT day, category, severity, flags, users FROM risk_flags_daily "
        f"WHERE {_IN_RANGE} "
        "ORDER BY day, coalesce(category, ''), category IS NULL, "
        "coalesce(severity, ''), severity IS NULL",
        (),
    ),
    "users_at_risk_weekly": (
        f"SELECT day, users, complete FROM users_at_risk_weekly WHERE {_IN_RANGE} ORDER BY day",
        (),
    ),
    "rejected": (
        "SELECT reason, CAST(sum(count) AS BIGINT) AS count FROM rejected_daily "
        f"WHERE {_IN_RANGE} GROUP BY reason ORDER BY reason",
        (),
    ),
}


def _rows(
    cur: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any], rounded: Sequence[str]
) -> list[dict[str, Any]]:
    rel = cur.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})
    names = [d[0] for d in rel.description or ()]
    out = []
    for values in rel.fetchall():
        row = dict(zip(names, values, strict=True))
        for name, value in row.items():
            if isinstance(value, date):
                row[name] = value.isoformat()
            elif name in rounded and value is not None:
                row[name] = round(value, 6)
        out.append(row)
    return out


def _has_view(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = cur.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = $name AND NOT internal",
        {"name": name},
    ).fetchone()
    return bool(found and found[0])


def _arena(cur: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> list[dict[str, Any]]:
    return fit_arena(count_table(cur, _IN_RANGE, params))


def flattery_rows(
    cur: duckdb.DuckDBPyConnection, params: FlatteryParams | None = None
) -> list[dict[str, Any]]:
    """The flattery watch of the views behind ``cur``: the counts of ``flattery_counts``
    (``flattery.sql``) through its one definition (:func:`usersignals.metrics.flattery.watch_rows`),
    its weeks complete or not by every day with data."""
    counts = [
        WeekCounts(*row)
        for row in cur.execute(
            "SELECT model, week, thumbs_up, thumbs_down, active_users, risk_flags, "
            "users_at_risk, week_users FROM flattery_counts"
        ).fetchall()
    ]
    span = cur.execute("SELECT min(day), max(day) FROM events_by_day").fetchone()
    data_range = (span[0], span[1]) if span and span[0] is not None else None
    return watch_rows(counts, data_range, params or FlatteryParams())


def calendar_of(cur: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The calendar the report's days and weeks are in: ``{"tz": ..., "week_start": ...}``."""
    row = cur.execute("SELECT current_setting('TimeZone'), week_start_dow()").fetchone()
    row = row or ("UTC", 1)
    starts = {n: name for name, n in WEEK_STARTS.items()}
    return {"tz": str(row[0]), "week_start": starts[int(row[1])]}


def breakdown_titles(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, heading) of the breakdown tables a report has (``report --by``)."""
    if "breakdown" not in report:
        return []
    by = report["breakdown"]["by"]
    return [(key, BREAKDOWN_TITLES[key].replace("by value", f"by {by}")) for key in BREAKDOWN_KEYS]


def calendar_line(report: dict[str, Any]) -> str:
    """The line stating a report's calendar: ``Days in UTC, weeks from Monday.``"""
    tz = report.get("tz", "UTC")
    start = str(report.get("week_start", "monday")).capitalize()
    return f"Days in {tz}, weeks from {start}."


def warehouse_report(
    con: duckdb.DuckDBPyConnection,
    day_from: date | None = None,
    day_to: date | None = None,
    *,
    flattery: FlatteryParams | None = None,
    history_period: str | None = None,
) -> dict[str, Any]:
    """The report JSON object of the warehouse behind ``con`` (made by ``db.connect``).

    The days shown follow the one rule of :mod:`usersignals.metrics.periods`, as the live
    report does: day rows in the range, ISO-week rows touching it (whole weeks), arena ratings
    fitted to the votes of the range, rejections received in it; windows (WAU, MAU, users at
    risk) still count the days before ``day_from``.

    Args:
        con: A connection with the warehouse views.
        day_from: First day to show (inclusive); None: from the first day.
        day_to: Last day to show (inclusive); None: to the last day.
        flattery: Significance level and minimum volume of the flattery watch (default
            :class:`FlatteryParams`); its weeks are complete or not by all the data.
        history_period: When given (``day`` or ``week``), the keys only history has
            (:data:`~usersignals.warehouse.history.HISTORY_KEYS`, retention and lifecycle by
            that period) follow, from the same merged inputs: what ``report --json`` prints.

    Returns:
        A dict with the keys of :data:`REPORT_KEYS`, ``range``, ``tz`` and ``week_start``
        (the connection's calendar, :func:`calendar_of`), and the history keys.

    Raises:
        DayRangeError: ``day_from`` is after ``day_to``.
        ValueError: ``history_period`` is neither ``day`` nor ``week``.
    """
    select = DayRange(day_from, day_to)
    params = {"lo": day_from, "hi": day_to}
    cur = con.cursor()
    try:
        merge_inputs(cur)
        report: dict[str, Any] = {}
        for key in REPORT_KEYS:
            if key == "arena":
                report[key] = _arena(cur, params)
            elif key == "flattery_watch":
                has = _has_view(cur, "flattery_counts")
                report[key] = flattery_rows(cur, flattery) if has else []
            else:
                sql, rounded = _QUERIES[key]
                report[key] = _rows(cur, sql, params, rounded)
        out = select_range(report, select)
        if history_period is not None:
            out |= history_rows(cur, day_from, day_to, period=history_period)
        return out | calendar_of(cur)
    finally:
        cur.close()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


COMPLETENESS_FLAGS = ("complete", "wau_complete", "mau_complete")
"""Row flags printed as "partial" where false (the day, or its window, is not whole yet)."""


def render_report(report: dict[str, Any], console: Console | None = None) -> None:
    """Prints the report's tables (rich tables on a terminal, plain text when piped), those
    of :data:`~usersignals.warehouse.history.HISTORY_KEYS` too when it has them.

    Header lines state the day range and the calendar (time zone, first day of the week);
    an incomplete day or window is marked "partial".
    """
    out = console or Console()
    if console is None and not out.is_terminal:
        out = Console(width=240)  # piped: keep wide tables on one line each
    rng = report.get("range") or {}
    out.print(DayRange.parse(rng.get("from"), rng.get("to")).describe())
    out.print(calendar_line(report) + "\n")
    titles = [(key, TITLES[key]) for key in REPORT_KEYS]
    titles += [(key, HISTORY_TITLES[key]) for key in HISTORY_KEYS if key in report]
    titles += breakdown_titles(report)
    for key, title in titles:
        rows = report.get(key, [])
        if not rows:
            out.print(f"[bold]{title}[/bold]: no rows\n")
            continue
        out.print(f"[bold]{title}[/bold]")
        table = Table()
        for name, value in rows[0].items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            table.add_column(name, justify="right" if numeric else "left")
        for row in rows:
            table.add_row(
                *(
                    ("" if v else "partial") if k in COMPLETENESS_FLAGS else _cell(v)
                    for k, v in row.items()
                )
            )
        out.print(table)
        out.print()
