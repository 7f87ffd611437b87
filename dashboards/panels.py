"""The panels of usersignals' two Grafana dashboards, declared with the builder of :mod:`.grafana`.

* ``usersignals-live``: the stream workers' series in Prometheus (events, rejections, active
  users, votes, risk flags, lag) and the flattery watch's recording rules.
* ``usersignals-history``: the warehouse views through Grafana's DuckDB datasource, one query
  over the warehouse's own views per panel, with the plugin's time macros.

Each panel says only what it shows; layout, JSON and files are the builder's business.
"""

from __future__ import annotations

from typing import Any

from usersignals.dashboards.grafana import (
    INCOMPLETE,
    Panel,
    PromQuery,
    Row,
    SqlQuery,
    dashboard,
)
from usersignals.warehouse.arena import ARENA_COUNTS_SQL

__all__ = ["build_dashboards", "panel_specs"]

# ---------------------------------------------------------------- live (Prometheus)

_RATE = "5m"
_PARTIAL = (
    "The newest event day is never complete: its events may still arrive, so this is a "
    "partial day (the history dashboard marks such days; a window starting before the "
    "first day held is short too)."
)


def _live_items() -> list[Panel | Row]:
    up_rate = "model_week:usersignals_flattery_thumbs_up_rate:this"
    per_1k = "model_week:usersignals_flattery_risk_flags_per_1k:this"
    items: list[Panel | Row] = [
        Row("Now"),
        Panel(
            "DAU (newest day, partial)",
            "stat",
            (PromQuery('sum(usersignals_active_users{window="1d"})'),),
            description=f"Distinct users active on the newest event day. {_PARTIAL}",
            width=4,
        ),
        Panel(
            "WAU (7 days to the newest, partial)",
            "stat",
            (PromQuery('sum(usersignals_active_users{window="7d"})'),),
            description=f"Distinct users active in the 7 days ending on the newest event day. "
            f"{_PARTIAL}",
            width=4,
        ),
        Panel(
            "MAU (30 days to the newest, partial)",
            "stat",
            (PromQuery('sum(usersignals_active_users{window="30d"})'),),
            description=f"Distinct users active in the 30 days ending on the newest event day. "
            f"{_PARTIAL}",
            width=4,
        ),
        Panel(
            "Stickiness (DAU / MAU, newest day, partial)",
            "stat",
            (PromQuery("usersignals:stickiness"),),
            description="DAU / MAU over all workers, 0 when MAU is 0 (recording rule "
            "usersignals:stickiness: the ratio of the summed gauges, users being disjoint "
            f"across partitions). {_PARTIAL}",
            unit="percentunit",
            width=4,
        ),
        Panel(
            "Users at risk (7 days to the newest, partial)",
            "stat",
            (PromQuery("sum(usersignals_users_at_risk_weekly)"),),
            description="Distinct users with a high or critical risk flag in the 7 days ending on "
            f"the newest event day. {_PARTIAL}",
            width=4,
        ),
        Panel(
            "Flattery alerts firing",
            "stat",
            (
                PromQuery(
                    'count(ALERTS{alertname="UsersignalsFlatteryRising", alertstate="firing"})'
                    " or vector(0)"
                ),
            ),
            description="Model versions whose thumbs-up rate and risk flags per active user "
            "both rose significantly in the last complete ISO week.",
            width=4,
        ),
        Row("Engagement and wellbeing per model version (ISO weeks)"),
        Panel(
            "Thumbs-up rate by model and ISO week",
            "timeseries",
            (PromQuery(up_rate, "{{model}} {{week}}"),),
            description="Latest votes up / (up + down) per model and ISO week (recording rule).",
            unit="percentunit",
        ),
        Panel(
            "Risk flags per 1,000 active users by model and ISO week",
            "timeseries",
            (PromQuery(per_1k, "{{model}} {{week}}"),),
            description="Read beside the thumbs-up rate: both rising significantly is the alert.",
        ),
        Panel(
            "Active users by model",
            "timeseries",
            (PromQuery("sum by (model) (usersignals_active_users_by_model)", "{{model}}"),),
        ),
        Panel(
            "Flagged weeks by model",
            "timeseries",
            (PromQuery("model_week:usersignals_flattery_flagged", "{{model}} {{week}}"),),
            description="1: the week is flagged (metrics.flattery); 0: it is not.",
        ),
        Panel(
            "Risk flags by model (held)",
            "timeseries",
            (PromQuery("sum by (model) (usersignals_risk_flags_by_model)", "{{model}}"),),
        ),
        Row("Users"),
        Panel(
            "Active users",
            "timeseries",
            (PromQuery("sum by (window) (usersignals_active_users)", "{{window}}"),),
            description="At each moment, the windows ending on the newest event day then. "
            + _PARTIAL,
        ),
        Panel(
            "Feedback votes by model (held)",
            "timeseries",
            (
                PromQuery(
                    "sum by (model, rating) (usersignals_feedback_votes)", "{{model}} {{rating}}"
                ),
            ),
        ),
        Panel(
            "Risk flags by category and severity (held)",
            "timeseries",
            (
                PromQuery(
                    "sum by (category, severity) (usersignals_risk_flags)",
                    "{{category}} {{severity}}",
                ),
            ),
        ),
        Panel(
            "Users at risk, weekly",
            "timeseries",
            (PromQuery("sum(usersignals_users_at_risk_weekly)", "users"),),
            description="At each moment, the 7 days ending on the newest event day then. "
            + _PARTIAL,
        ),
        Row("Pipeline"),
        Panel(
            "Events held by type",
            "timeseries",
            (PromQuery("sum by (type) (usersignals_events)", "{{type}}"),),
            description="Distinct valid events in the workers' state (falls when days are pruned).",
        ),
        Panel(
            "Rejections seen per second by reason",
            "timeseries",
            (
                PromQuery(
                    f"sum by (reason) (rate(usersignals_rejects_seen_total[{_RATE}]))",
                    "{{reason}}",
                ),
            ),
            description="Counted by each worker process (a redelivered bad record again).",
            unit="ops",
        ),
        Panel(
            "Consumer lag by partition",
            "timeseries",
            (PromQuery("sum by (partition) (usersignals_consumer_lag)", "{{partition}}"),),
            description="Records of the events topic not yet processed.",
        ),
        Panel(
            "Event-time lag",
            "timeseries",
            tuple(
                PromQuery(
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(usersignals_event_time_lag_seconds_bucket[{_RATE}])))",
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.9, 0.99)
            ),
            description="Seconds from an event's ts to its processing (quantiles).",
            unit="s",
        ),
        Panel(
            "Late events (held)",
            "timeseries",
            (PromQuery("sum(usersignals_late_events)", "late"),),
            description="Older than the retention horizon on arrival: in the warehouse only.",
        ),
    ]
    return items


# ---------------------------------------------------------------- history (DuckDB)

_DAYS = "$__timeFilter(day)"
_TIME = "CAST(day AS TIMESTAMP) AS time"
_MONDAY = "CAST(strptime(week || '-1', '%G-W%V-%u') AS DATE)"
_WEEKS = f"{_MONDAY} + 6 >= CAST($__timeFrom() AS DATE) AND {_MONDAY} <= CAST($__timeTo() AS DATE)"


def _split(value: str, flag: str) -> tuple[str, tuple[str, str]]:
    """``value`` as two columns: on the days the view's ``flag`` says complete, and on the
    others (named ``value (incomplete)``, the series the panel draws dashed)."""
    sql = (
        f"CASE WHEN {flag} THEN {value} END AS {value},\n"
        f'       CASE WHEN NOT {flag} THEN {value} END AS "{value}{INCOMPLETE}"'
    )
    return sql, (value, value + INCOMPLETE)


def _daily(view: str, *values: tuple[str, str], description: str = "") -> SqlQuery:
    """A day series of a view, each (value, completeness flag) split by the view's flag."""
    parts = [_split(v, flag) for v, flag in values]
    select = ",\n       ".join(sql for sql, _ in parts)
    return SqlQuery(
        f"SELECT {_TIME},\n       {select}\nFROM {view}\nWHERE {_DAYS}\nORDER BY time",
        ("time", *(c for _, cols in parts for c in cols)),
        "time_series",
    )


_MARKED = (
    "Grey dashed points: incomplete days (the newest day with data, whose events may still "
    "arrive) or windows starting before the first day with data, as the view flags them."
)


_FLAGGED = "JOIN report_days AS r USING (day)"
_MARKED_DAY = (
    "the newest day with data, incomplete (its events may still arrive), as report_days "
    "flags it; drawn dashed, grey, with points."
)


def _labelled(column: str) -> str:
    """A label column of a long day series (joined with ``_FLAGGED``), suffixed on the days
    report_days flags incomplete, so that those days are series of their own."""
    return (
        f"coalesce({column}, 'none')"
        f" || CASE WHEN r.complete THEN '' ELSE '{INCOMPLETE}' END AS {column}"
    )


def _arena_sql() -> str:
    """The arena count table exactly as the ratings are fitted, from the range's first day."""
    return (
        ARENA_COUNTS_SQL.strip()
        .replace("$since", "$__timeFrom()")
        .replace("CAST($cap AS BIGINT)", "CAST(NULL AS BIGINT)")
    )


_WEEKS_MARKED = (
    f"Series of model labels ending in{INCOMPLETE}: weeks not complete (the newest day's, or "
    "one beginning before the first day with data); drawn dashed, grey, with points."
)


def _flattery(column: str) -> SqlQuery:
    return SqlQuery(
        f"SELECT CAST({_MONDAY} AS TIMESTAMP) AS time,\n"
        f"       model || CASE WHEN complete THEN '' ELSE '{INCOMPLETE}' END AS model,\n"
        f"       {column}\n"
        f"FROM flattery_watch\nWHERE {_WEEKS}\nORDER BY time, model",
        ("time", "model", column),
        "time_series",
    )


def _history_items() -> list[Panel | Row]:
    items: list[Panel | Row] = [
        Row("Flattery watch: engagement and wellbeing per model version and ISO week"),
        Panel(
            "Thumbs-up rate by model, weekly",
            "timeseries",
            (_flattery("thumbs_up_rate"),),
            description=_WEEKS_MARKED,
            unit="percentunit",
            marks_incomplete=True,
        ),
        Panel(
            "Risk flags per 1,000 active users by model, weekly",
            "timeseries",
            (_flattery("risk_flags_per_1k"),),
            description=_WEEKS_MARKED,
            marks_incomplete=True,
        ),
        Panel(
            "Flattery watch",
            "table",
            (
                SqlQuery(
                    "SELECT model, week, complete,\n"
                    "       thumbs_up, thumbs_down, thumbs_up_rate, active_users,\n"
                    "       active_share, risk_flags, risk_flags_per_1k, users_at_risk\n"
                    f"FROM flattery_watch\nWHERE {_WEEKS}\nORDER BY model, week",
                    (
                        "model",
                        "week",
                        "complete",
                        "thumbs_up",
                        "thumbs_down",
                        "thumbs_up_rate",
                        "active_users",
                        "active_share",
                        "risk_flags",
                        "risk_flags_per_1k",
                        "users_at_risk",
                    ),
                ),
            ),
            description="Counts and plain ratios; the 95 % intervals, the tests and the flag: "
            "usersignals report (metrics.flattery). complete: the week's 7-day window as "
            "report_days flags it on the week's Sunday (false while the week is the newest "
            "day's or begins before the first day with data).",
            width=24,
            height=10,
        ),
        Row("Users"),
        Panel(
            "Active users",
            "timeseries",
            (
                _daily(
                    "active_users",
                    ("dau", "complete"),
                    ("wau", "wau_complete"),
                    ("mau", "mau_complete"),
                ),
            ),
            description=_MARKED,
            marks_incomplete=True,
        ),
        Panel(
            "Stickiness (DAU / MAU)",
            "timeseries",
            (_daily("active_users", ("stickiness", "mau_complete")),),
            description=f"Incomplete when its MAU window is. {_MARKED}",
            unit="percentunit",
            marks_incomplete=True,
        ),
        Panel(
            "Feedback by model (latest vote per user and message)",
            "timeseries",
            (
                SqlQuery(
                    f"SELECT {_TIME}, {_labelled('model')},\n       thumbs_up, thumbs_down\n"
                    f"FROM feedback_by_model\n{_FLAGGED}\nWHERE {_DAYS}\nORDER BY time, model",
                    ("time", "model", "thumbs_up", "thumbs_down"),
                    "time_series",
                ),
            ),
            description=f"Series of model labels ending in{INCOMPLETE}: {_MARKED_DAY}",
            marks_incomplete=True,
        ),
        Panel(
            "Events per day",
            "timeseries",
            (_daily("event_counts", ("events", "complete")),),
            description=_MARKED,
            marks_incomplete=True,
        ),
        Panel(
            "Lifecycle per ISO week (dormant below zero)",
            "timeseries",
            (
                SqlQuery(
                    "SELECT CAST(period AS TIMESTAMP) AS time, status,\n"
                    "       CASE WHEN status = 'dormant' THEN -users ELSE users END AS users\n"
                    "FROM lifecycle\n"
                    "WHERE period + 6 >= CAST($__timeFrom() AS DATE)"
                    " AND period <= CAST($__timeTo() AS DATE)\n"
                    "ORDER BY time, status",
                    ("time", "status", "users"),
                    "time_series",
                ),
            ),
            description="New: first week with an event ever; returning: active the week "
            "before too; resurrecting: back after a gap; dormant: active the week before, not "
            "this one (drawn negative). Cohorts count the whole history.",
        ),
        Panel(
            "Retention of first-time cohorts, weekly",
            "table",
            (
                SqlQuery(
                    "SELECT cohort, period AS weeks_after, cohort_users, users,\n"
                    "       round(users / cohort_users, 4) AS share, users_on_or_after\n"
                    "FROM retention\n"
                    "WHERE cohort + 6 >= CAST($__timeFrom() AS DATE)"
                    " AND cohort <= CAST($__timeTo() AS DATE)\n"
                    "ORDER BY cohort, weeks_after",
                    (
                        "cohort",
                        "weeks_after",
                        "cohort_users",
                        "users",
                        "share",
                        "users_on_or_after",
                    ),
                ),
            ),
            description="A row per cohort (the ISO week of a user's first event) and week "
            "after it: users active then, their share of the cohort, and users active then "
            "or later (usersignals report --retention prints the triangle).",
        ),
        Row("Wellbeing"),
        Panel(
            "Weekly flagged share of active users, by category (all models)",
            "timeseries",
            (
                SqlQuery(
                    "SELECT CAST(week AS TIMESTAMP) AS time, category, share, share_high\n"
                    "FROM wellbeing_weekly\n"
                    "WHERE model IS NULL AND week + 6 >= CAST($__timeFrom() AS DATE)"
                    " AND week <= CAST($__timeTo() AS DATE)\n"
                    "ORDER BY time, category",
                    ("time", "category", "share", "share_high"),
                    "time_series",
                ),
            ),
            description="Distinct users with a risk flag of the category in the ISO week (and "
            "with a high or critical one), over the week's active users: the form of the "
            "figure published for large chat products. Per model: usersignals report --json, "
            "key wellbeing_weekly.",
            unit="percentunit",
        ),
        Panel(
            "Risk flags per day by category and severity",
            "timeseries",
            (
                SqlQuery(
                    f"SELECT {_TIME}, coalesce(category, 'none') AS category,\n"
                    f"       {_labelled('severity')}, flags\n"
                    f"FROM risk_flags_daily\n{_FLAGGED}\n"
                    f"WHERE {_DAYS}\nORDER BY time, category, severity",
                    ("time", "category", "severity", "flags"),
                    "time_series",
                ),
            ),
            description=f"Series of severity labels ending in{INCOMPLETE}: {_MARKED_DAY}",
            marks_incomplete=True,
        ),
        Panel(
            "Users at risk, weekly",
            "timeseries",
            (_daily("users_at_risk_weekly", ("users", "complete")),),
            description="Distinct users with a high or critical flag in the 7 days to each day. "
            + _MARKED,
            marks_incomplete=True,
        ),
        Row("Arena and input"),
        Panel(
            "Arena votes (the count table the ratings are fitted to)",
            "table",
            (SqlQuery(_arena_sql(), ("model_a", "model_b", "winner", "votes")),),
            description="Ratings with intervals: usersignals arena (a fit, not SQL).",
        ),
        Panel(
            "Rejected input by reason (whole warehouse)",
            "table",
            (
                SqlQuery(
                    "SELECT reason, count\nFROM rejected\nWHERE count > 0\nORDER BY reason",
                    ("reason", "count"),
                ),
            ),
        ),
    ]
    return items


def panel_specs() -> dict[str, list[Panel | Row]]:
    """The panels and rows of each dashboard, by dashboard uid, as the builder's values."""
    return {"usersignals-live": _live_items(), "usersignals-history": _history_items()}


def build_dashboards() -> dict[str, dict[str, Any]]:
    """The dashboards, by file name (``usersignals-live.json``, ``usersignals-history.json``)."""
    specs = panel_specs()
    live = dashboard(
        "usersignals-live",
        "usersignals: live",
        "Stream workers' exact live metrics: engagement and wellbeing per model version.",
        specs["usersignals-live"],
        time_from="now-6h",
        refresh="30s",
    )
    history = dashboard(
        "usersignals-history",
        "usersignals: history",
        "The warehouse's metric views: per model version, approval beside risk, week by week.",
        specs["usersignals-history"],
        time_from="now-90d",
    )
    return {f"{d['uid']}.json": d for d in (live, history)}
