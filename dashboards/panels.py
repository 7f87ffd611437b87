"""The panels of usersignals' four Grafana dashboards, one per audience, with the builder of
:mod:`.grafana`.

* ``usersignals-engagement`` (product): DAU, WAU, MAU, stickiness, retention, lifecycle,
  sessions; per model version and per platform.
* ``usersignals-feedback`` (model teams): thumbs-up rate per model, the arena's ratings with
  their intervals (the loader's ratings file) and votes, feedback votes.
* ``usersignals-wellbeing`` (safety): flagged share per category and model, users at risk, the
  flattery watch, risk concentration.
* ``usersignals-pipeline`` (operators): events per second, rejections by reason, consumer lag,
  event-time lag, late events, the loader's lag, the dead-letter rate.

Each dashboard holds its live panels (the workers' series in Prometheus) and its history panels
(the warehouse views in DuckDB) where the metric has both; a description says so where it has
only one. Each links to the other three; the variables ``model`` and ``platform`` (a regex,
*All* by default) filter the panels whose data has that label. Each panel says only what it
shows; layout, JSON and files are the builder's business. The definitions are docs/metrics.md.
"""

from __future__ import annotations

from typing import Any

from usersignals.dashboards.grafana import (
    DUCKDB,
    INCOMPLETE,
    Panel,
    PromQuery,
    Row,
    SqlQuery,
    Variable,
    dashboard,
    link,
)
from usersignals.warehouse.arena import ARENA_COUNTS_SQL

__all__ = [
    "BOARDS",
    "ENGAGEMENT",
    "FEEDBACK",
    "MODEL",
    "PIPELINE",
    "PLATFORM",
    "WELLBEING",
    "build_dashboards",
    "panel_specs",
    "variables",
]

ENGAGEMENT = "usersignals-engagement"
FEEDBACK = "usersignals-feedback"
WELLBEING = "usersignals-wellbeing"
PIPELINE = "usersignals-pipeline"

BOARDS: dict[str, tuple[str, str]] = {
    ENGAGEMENT: (
        "usersignals: engagement",
        "Who uses the product and how often: DAU, WAU, MAU, stickiness, retention, lifecycle "
        "and sessions, per model version and platform. Live panels read Prometheus, history "
        "panels the warehouse.",
    ),
    FEEDBACK: (
        "usersignals: feedback & arena",
        "What users think of each model version: thumbs-up rate, feedback votes and the "
        "arena's head-to-head votes. Live panels read Prometheus, history panels the warehouse.",
    ),
    WELLBEING: (
        "usersignals: wellbeing",
        "Users showing signs of risk: flagged share per category and model, users at risk, the "
        "flattery watch (approval rising with risk) and who carries the risk.",
    ),
    PIPELINE: (
        "usersignals: pipeline health",
        "Whether the numbers are current: events per second, rejections and dead letters, "
        "consumer and event-time lag, late events and the warehouse loader.",
    ),
}
"""Title and description of each dashboard, by uid (the order of their links)."""

MODEL = Variable(
    "model",
    "Model version",
    "Model versions shown (a regex; All: every one). Live series name at most max_models "
    "versions, the others are 'other'; 'none' is events without a model.",
    "SELECT DISTINCT coalesce(model, 'none') AS model FROM events ORDER BY model",
    DUCKDB,
)
PLATFORM = Variable(
    "platform",
    "Platform",
    "Platforms shown (a regex; All: every one); 'none' is events without a platform. Only "
    "the warehouse has platforms: live series carry no platform label.",
    "SELECT DISTINCT coalesce(platform, 'none') AS platform FROM events ORDER BY platform",
    DUCKDB,
)

_M = MODEL.promql
"""The model variable in PromQL (``model=~"$model"``)."""
_P = PLATFORM.sql
"""The platform variable in SQL (only the warehouse has platforms)."""


def _model_is(column: str = "model") -> str:
    """SQL: the row's model (``none`` for NULL) is one of the variable's."""
    return f"regexp_full_match(coalesce({column}, 'none'), '{MODEL.sql}')"


_LIVE = "Live (Prometheus)"
_HISTORY = "History (warehouse)"
_RATE = "5m"
_PARTIAL = (
    "The newest event day is never complete: its events may still arrive, so this is a "
    "partial day (history panels mark such days; a window starting before the first day held "
    "is short too)."
)
_HELD = (
    "Held: over the days the workers keep (the retention horizon), falling when old days are "
    "pruned; the warehouse keeps every day."
)
_ONLY_LIVE = "Live only: the warehouse keeps no such series."
_ONLY_HISTORY = (
    "History only: it needs each user's whole history, more than a worker keeps "
    "(docs/metrics.md, Engagement in depth)."
)


def _stat(title: str, expr: str, description: str, unit: str = "", width: int = 6) -> Panel:
    return Panel(title, "stat", (PromQuery(expr),), description=description, unit=unit, width=width)


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


def _weeks_of(column: str) -> str:
    """SQL: the week starting on the date ``column`` touches the dashboard's range."""
    return f"{column} + 6 >= CAST($__timeFrom() AS DATE) AND {column} <= CAST($__timeTo() AS DATE)"


# ---------------------------------------------------------------- engagement


def _engagement() -> list[Panel | Row]:
    return [
        Row(f"{_LIVE}: now"),
        _stat(
            "DAU (newest day, partial)",
            'sum(usersignals_active_users{window="1d"})',
            f"Distinct users active on the newest event day. {_PARTIAL}",
        ),
        _stat(
            "WAU (7 days to the newest, partial)",
            'sum(usersignals_active_users{window="7d"})',
            f"Distinct users active in the 7 days ending on the newest event day. {_PARTIAL}",
        ),
        _stat(
            "MAU (30 days to the newest, partial)",
            'sum(usersignals_active_users{window="30d"})',
            f"Distinct users active in the 30 days ending on the newest event day. {_PARTIAL}",
        ),
        _stat(
            "Stickiness (DAU / MAU, newest day, partial)",
            "usersignals:stickiness",
            "DAU / MAU over all workers, 0 when MAU is 0 (recording rule "
            "usersignals:stickiness: the ratio of the summed gauges, users being disjoint "
            f"across partitions). {_PARTIAL}",
            unit="percentunit",
        ),
        Panel(
            "Active users (live windows)",
            "timeseries",
            (PromQuery("sum by (window) (usersignals_active_users)", "{{window}}"),),
            description="DAU (1d), WAU (7d) and MAU (30d): at each moment, the windows ending on "
            f"the newest event day then. {_PARTIAL}",
        ),
        Panel(
            "Active users by model, 7 days to the newest (live)",
            "timeseries",
            (
                PromQuery(
                    f'sum by (model) (usersignals_active_users_by_model{{model=~"{_M}"}})',
                    "{{model}}",
                ),
            ),
            description="Distinct users with an event carrying the model version in the 7 event "
            "days ending on the newest (a user of two models counts under each). Follows the "
            f"model variable. {_PARTIAL}",
        ),
        Row(f"{_HISTORY}: active users"),
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
            description="DAU, WAU and MAU per day (report --json: active_users). " + _MARKED,
            marks_incomplete=True,
        ),
        Panel(
            "Stickiness (DAU / MAU)",
            "timeseries",
            (_daily("active_users", ("stickiness", "mau_complete")),),
            description="DAU / MAU per day, 0 when MAU is 0 (report --json: "
            f"active_users.stickiness). Incomplete when its MAU window is. {_MARKED}",
            unit="percentunit",
            marks_incomplete=True,
        ),
        Panel(
            "Active users by model",
            "timeseries",
            (
                SqlQuery(
                    f"SELECT {_TIME}, coalesce(key, 'none') AS model, dau, wau, mau\n"
                    f"FROM active_users_by\nWHERE {_DAYS} AND {_model_is('key')}\n"
                    "ORDER BY time, model",
                    ("time", "model", "dau", "wau", "mau"),
                    "time_series",
                ),
            ),
            description="DAU, WAU and MAU per model version: a user counts under each model "
            "their events carry (report --by model --json: active_users_by; the 20 models with "
            "the most users over all days, the others together as (other)). Follows the model "
            "variable.",
        ),
        Panel(
            "Active users by platform",
            "timeseries",
            (SqlQuery(_BY_PLATFORM, ("time", "platform", "dau", "wau", "mau"), "time_series"),),
            description="DAU, WAU and MAU per platform: a user counts under each platform their "
            "events of the window carry (report --by platform --json: active_users_by, while "
            "there are at most 20 platforms). History only: live series carry no platform. "
            "Follows the platform variable.",
        ),
        Row(f"{_HISTORY}: retention and lifecycle"),
        Panel(
            "Lifecycle per week (dormant below zero)",
            "timeseries",
            (
                SqlQuery(
                    "SELECT CAST(period AS TIMESTAMP) AS time, status,\n"
                    "       CASE WHEN status = 'dormant' THEN -users ELSE users END AS users\n"
                    f"FROM lifecycle\nWHERE {_weeks_of('period')}\n"
                    "ORDER BY time, status",
                    ("time", "status", "users"),
                    "time_series",
                ),
            ),
            description="New: first week with an event ever; returning: active the week "
            "before too; resurrecting: back after a gap; dormant: active the week before, not "
            "this one (drawn negative). Cohorts count the whole history (report --json: "
            f"lifecycle). {_ONLY_HISTORY}",
        ),
        Panel(
            "Retention of first-time cohorts, weekly",
            "table",
            (
                SqlQuery(
                    "SELECT cohort, period AS weeks_after, cohort_users, users,\n"
                    "       round(users / cohort_users, 4) AS share, users_on_or_after\n"
                    f"FROM retention\nWHERE {_weeks_of('cohort')}\n"
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
            description="A row per cohort (the week of a user's first event) and week after "
            "it: users active then, their share of the cohort, and users active then or later "
            f"(report --json: retention; report --retention prints the triangle). {_ONLY_HISTORY}",
        ),
        Panel(
            "Days active per week",
            "timeseries",
            (
                SqlQuery(
                    "SELECT CAST(week AS TIMESTAMP) AS time,\n"
                    "       CAST(days_active AS VARCHAR) AS days_active, users\n"
                    f"FROM stickiness_distribution\nWHERE {_weeks_of('week')}\n"
                    "ORDER BY time, days_active",
                    ("time", "days_active", "users"),
                    "time_series",
                ),
            ),
            description="Per week, the users active on exactly 1 to 7 of its days (report "
            f"--json: stickiness_distribution). {_ONLY_HISTORY}",
        ),
        Row(f"{_HISTORY}: sessions"),
        Panel(
            "Sessions per day",
            "timeseries",
            (_sessions("sessions", "messages_per_session"),),
            description="Sessions (user and session_id) by the day of their first event, and "
            "message events per session (report --json: sessions_daily). History only: the "
            "workers keep no sessions.",
            width=8,
        ),
        Panel(
            "Session length",
            "timeseries",
            (_sessions("duration_p50_s", "duration_p90_s"),),
            description="Median and 90th percentile session length in seconds: the largest "
            "duration_s of its session_end events, else last minus first event (report --json: "
            "sessions_daily). History only.",
            unit="s",
            width=8,
        ),
        Panel(
            "Sessions over 60 minutes",
            "timeseries",
            (_sessions("long_share"),),
            description="Share of the day's sessions longer than 3,600 s (report --json: "
            "sessions_daily.long_share). History only.",
            unit="percentunit",
            width=8,
        ),
    ]


_BY_PLATFORM = (
    "WITH platform_days AS (\n"
    "    SELECT DISTINCT coalesce(platform, 'none') AS platform, user_id, day\n"
    f"    FROM events\n    WHERE regexp_full_match(coalesce(platform, 'none'), '{_P}')\n"
    ")\n"
    "SELECT CAST(r.day AS TIMESTAMP) AS time, p.platform,\n"
    "       count(DISTINCT p.user_id) FILTER (WHERE p.day = r.day) AS dau,\n"
    "       count(DISTINCT p.user_id) FILTER (WHERE p.day > r.day - 7) AS wau,\n"
    "       count(DISTINCT p.user_id) AS mau\n"
    "FROM report_days AS r\n"
    "JOIN platform_days AS p ON p.day BETWEEN r.day - 29 AND r.day\n"
    "WHERE $__timeFilter(r.day)\n"
    "GROUP BY r.day, p.platform\n"
    "ORDER BY time, p.platform"
)
"""Per day and platform, the definition of docs/metrics.md (Breakdowns) for ``--by platform``
with no value folded: distinct users of the day, of [d-6, d] and of [d-29, d]."""


def _sessions(*columns: str) -> SqlQuery:
    return SqlQuery(
        f"SELECT {_TIME}, {', '.join(columns)}\nFROM sessions_daily\nWHERE {_DAYS}\nORDER BY time",
        ("time", *columns),
        "time_series",
    )


# ---------------------------------------------------------------- feedback and arena


def _feedback() -> list[Panel | Row]:
    return [
        Row(_LIVE),
        Panel(
            "Thumbs-up rate by model and ISO week (live)",
            "timeseries",
            (
                PromQuery(
                    f'model_week:usersignals_flattery_thumbs_up_rate:this{{model=~"{_M}"}}',
                    "{{model}} {{week}}",
                ),
            ),
            description="Latest votes up / (up + down) per model version and ISO week, over all "
            "workers (recording rule). The running week is partial. Follows the model variable.",
            unit="percentunit",
        ),
        Panel(
            "Feedback votes by model, 7 days to the newest (live)",
            "timeseries",
            (
                PromQuery(
                    f'sum by (model, rating) (usersignals_feedback_votes_7d{{model=~"{_M}"}})',
                    "{{model}} {{rating}}",
                ),
            ),
            description="Latest thumbs votes (one per user and message) on the 7 event days "
            f"ending on the newest, by model version and rating. {_PARTIAL}",
        ),
        Panel(
            "Feedback votes by model (held, live)",
            "timeseries",
            (
                PromQuery(
                    f'sum by (model, rating) (usersignals_feedback_votes{{model=~"{_M}"}})',
                    "{{model}} {{rating}}",
                ),
            ),
            description=f"Latest thumbs votes by model version and rating. {_HELD}",
            width=24,
        ),
        Row(_HISTORY),
        Panel(
            "Thumbs-up rate by model, weekly",
            "timeseries",
            (_flattery("thumbs_up_rate"),),
            description="Latest votes up / (up + down) per model version and ISO week "
            f"(report --json: flattery_watch.thumbs_up_rate). {_WEEKS_MARKED}",
            unit="percentunit",
            marks_incomplete=True,
        ),
        Panel(
            "Feedback by model (latest vote per user and message)",
            "timeseries",
            (
                SqlQuery(
                    f"SELECT {_TIME}, {_labelled('model')},\n       thumbs_up, thumbs_down\n"
                    f"FROM feedback_by_model\n{_FLAGGED}\nWHERE {_DAYS} AND {_model_is()}\n"
                    "ORDER BY time, model",
                    ("time", "model", "thumbs_up", "thumbs_down"),
                    "time_series",
                ),
            ),
            description="Thumbs up and down per day under the attributed model (report --json: "
            f"feedback_by_model). Series of model labels ending in{INCOMPLETE}: {_MARKED_DAY}",
            marks_incomplete=True,
        ),
        Panel(
            "Arena ratings (Elo scale, 95 % interval, whole warehouse)",
            "table",
            (
                SqlQuery(
                    "SELECT model, rating, ci_low, ci_high, rank, votes\n"
                    f"FROM arena_ratings\nWHERE {_model_is()}\n"
                    "ORDER BY rank, rating DESC, model",
                    ("model", "rating", "ci_low", "ci_high", "rank", "votes"),
                ),
            ),
            description="Bradley-Terry ratings of every preference vote in the warehouse (mean "
            "1000), their 95 % bootstrap intervals and ranks (1 + the models whose interval lies "
            "wholly above): report --json, key arena, exactly, whatever the time range. The fit "
            "runs in Python, not SQL: the loader writes it to derived/arena_ratings.parquet "
            "(view arena_ratings, column generation: the manifest it was fitted at) after a "
            "commit that changed the vote counts, checking at most every 10 s and when it "
            "stops. Ranks are among all models; the model variable only picks rows. History "
            "only.",
            width=24,
        ),
        Panel(
            "Arena votes (the count table the ratings are fitted to)",
            "table",
            (SqlQuery(_arena_sql(), ("model_a", "model_b", "winner", "votes")),),
            description="Preference votes per pair and winner from the range's first day, "
            "every vote as the fit counts them (no cap per user), where either side matches "
            "the model variable; over the whole warehouse they are the table the ratings above "
            "are fitted to. History only.",
            width=24,
        ),
    ]


def _arena_sql() -> str:
    """The arena count table exactly as the ratings are fitted, from the range's first day,
    the pairs with a side of the model variable."""
    counts = (
        ARENA_COUNTS_SQL.strip()
        .replace("$since", "$__timeFrom()")
        .replace("CAST($cap AS BIGINT)", "CAST(NULL AS BIGINT)")
    )
    return (
        f"SELECT * FROM (\n{counts}\n) AS counts\n"
        f"WHERE {_model_is('model_a')} OR {_model_is('model_b')}\n"
        "ORDER BY model_a, model_b, winner"
    )


# ---------------------------------------------------------------- wellbeing


def _wellbeing() -> list[Panel | Row]:
    up_rate = "model_week:usersignals_flattery_thumbs_up_rate:this"
    per_1k = "model_week:usersignals_flattery_risk_flags_per_1k:this"
    return [
        Row(f"{_LIVE}: now"),
        _stat(
            "Users at risk (7 days to the newest, partial)",
            "sum(usersignals_users_at_risk_weekly)",
            "Distinct users with a high or critical risk flag in the 7 days ending on the "
            f"newest event day. {_PARTIAL}",
            width=8,
        ),
        _stat(
            "Flattery alerts firing",
            'count(ALERTS{alertname="UsersignalsFlatteryRising", alertstate="firing", '
            f'model=~"{_M}"}}) or vector(0)',
            "Model versions whose thumbs-up rate and risk flags per active user both rose "
            "significantly in the last complete ISO week (alert UsersignalsFlatteryRising).",
            width=8,
        ),
        _stat(
            "Active users, latest complete week (live)",
            "sum(usersignals_wellbeing_active_users)",
            "Distinct users active in the latest complete ISO week the workers hold whole: the "
            "flagged share's denominator.",
            width=8,
        ),
        Panel(
            "Flagged share by category, latest complete week (live)",
            "timeseries",
            (
                PromQuery(
                    "week_category:usersignals_wellbeing_flagged_share:this_week",
                    "{{category}} {{week}}",
                ),
            ),
            description="Share of the latest complete ISO week's active users with a risk flag "
            "of the category, all models: the workers' weekly counts summed, then divided (a "
            "recording rule of alerts.yml, the share the risk-flag spike alert compares). Equals "
            "report --json, key wellbeing_weekly, flagged_share of that week (model null).",
            unit="percentunit",
        ),
        Panel(
            "Flagged users by category, latest complete week (live)",
            "timeseries",
            (
                PromQuery(
                    "sum by (category) (usersignals_wellbeing_flagged_users)", "{{category}}"
                ),
                PromQuery(
                    "sum by (category) (usersignals_wellbeing_flagged_users_high)",
                    "{{category}} high",
                ),
            ),
            description="Distinct users with a risk flag of the category (and with a high or "
            "critical one) in the latest complete ISO week, all models. The flagged share is "
            "these over the week's active users; with several workers the counts add, the "
            "shares do not, so the share is the history panel's.",
        ),
        Panel(
            "Flagged users by model and category, latest complete week (live)",
            "timeseries",
            (
                PromQuery(
                    "sum by (model, category) "
                    f'(usersignals_wellbeing_flagged_users_by_model{{model=~"{_M}"}})',
                    "{{model}} {{category}}",
                ),
            ),
            description="Distinct users with a risk flag of the category attributed to the "
            "model version, in the latest complete ISO week (the max_models named versions).",
        ),
        Row(f"{_LIVE}: flattery watch"),
        Panel(
            "Risk flags per 1,000 active users by model and ISO week (live)",
            "timeseries",
            (PromQuery(f'{per_1k}{{model=~"{_M}"}}', "{{model}} {{week}}"),),
            description="Risk flags under the model version per 1,000 of its active users, "
            "per ISO week (recording rule). Read beside the thumbs-up rate: both rising "
            "significantly is the alert.",
        ),
        Panel(
            "Thumbs-up rate by model and ISO week (live)",
            "timeseries",
            (PromQuery(f'{up_rate}{{model=~"{_M}"}}', "{{model}} {{week}}"),),
            description="Latest votes up / (up + down) per model version and ISO week "
            "(recording rule).",
            unit="percentunit",
        ),
        Panel(
            "Flagged weeks by model (live)",
            "timeseries",
            (
                PromQuery(
                    f'model_week:usersignals_flattery_flagged{{model=~"{_M}"}}',
                    "{{model}} {{week}}",
                ),
            ),
            description="1: the week is flagged by the flattery watch (docs/metrics.md); 0: it "
            "is not.",
        ),
        Panel(
            "Risk flags by model (held, live)",
            "timeseries",
            (
                PromQuery(
                    f'sum by (model) (usersignals_risk_flags_by_model{{model=~"{_M}"}})',
                    "{{model}}",
                ),
            ),
            description=f"Risk flags (each event_id once) by model version. {_HELD}",
        ),
        Panel(
            "Risk flags by category and severity (held, live)",
            "timeseries",
            (
                PromQuery(
                    "sum by (category, severity) (usersignals_risk_flags)",
                    "{{category}} {{severity}}",
                ),
            ),
            description=f"Risk flag events by category and severity. {_HELD}",
        ),
        Panel(
            "Users at risk, weekly (live)",
            "timeseries",
            (PromQuery("sum(usersignals_users_at_risk_weekly)", "users"),),
            description="At each moment, the 7 days ending on the newest event day then. "
            + _PARTIAL,
        ),
        Row(f"{_HISTORY}: flagged share"),
        Panel(
            "Weekly flagged share of active users, by category (all models)",
            "timeseries",
            (
                SqlQuery(
                    "SELECT CAST(week AS TIMESTAMP) AS time, category, share, share_high\n"
                    "FROM wellbeing_weekly\n"
                    f"WHERE model IS NULL AND {_weeks_of('week')}\n"
                    "ORDER BY time, category",
                    ("time", "category", "share", "share_high"),
                    "time_series",
                ),
            ),
            description="Distinct users with a risk flag of the category in the ISO week (and "
            "with a high or critical one), over the week's active users: the form of the "
            "figure published for large chat products (report --json: wellbeing_weekly, "
            "model null).",
            unit="percentunit",
        ),
        Panel(
            "Weekly flagged share by model and category",
            "timeseries",
            (
                SqlQuery(
                    "SELECT CAST(week AS TIMESTAMP) AS time, model, category, share, share_high\n"
                    "FROM wellbeing_weekly\n"
                    f"WHERE model IS NOT NULL AND share IS NOT NULL AND {_model_is()}\n"
                    f"  AND {_weeks_of('week')}\n"
                    "ORDER BY time, model, category",
                    ("time", "model", "category", "share", "share_high"),
                    "time_series",
                ),
            ),
            description="Users with a flag of the category attributed to the model version, "
            "over the users with an event carrying it in the week (report --json: "
            "wellbeing_weekly; weeks where the model has no active user left out). Follows "
            "the model variable.",
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
            description="Risk flag events per day (report --json: risk_flags_daily). Series of "
            f"severity labels ending in{INCOMPLETE}: {_MARKED_DAY}",
            marks_incomplete=True,
        ),
        Panel(
            "Users at risk, weekly",
            "timeseries",
            (_daily("users_at_risk_weekly", ("users", "complete")),),
            description="Distinct users with a high or critical flag in the 7 days to each day "
            f"(report --json: users_at_risk_weekly). {_MARKED}",
            marks_incomplete=True,
        ),
        Row(f"{_HISTORY}: flattery watch and who carries the risk"),
        Panel(
            "Risk flags per 1,000 active users by model, weekly",
            "timeseries",
            (_flattery("risk_flags_per_1k"),),
            description="Risk flags under the model version per 1,000 of its active users "
            f"(report --json: flattery_watch.risk_flags_per_1k). {_WEEKS_MARKED}",
            marks_incomplete=True,
        ),
        Panel(
            "Thumbs-up rate by model, weekly",
            "timeseries",
            (_flattery("thumbs_up_rate"),),
            description="Latest votes up / (up + down) per model version and ISO week, beside "
            f"its risk (report --json: flattery_watch.thumbs_up_rate). {_WEEKS_MARKED}",
            unit="percentunit",
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
                    f"FROM flattery_watch\nWHERE {_WEEKS} AND {_model_is()}\n"
                    "ORDER BY model, week",
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
            description="Counts and plain ratios per model version and ISO week (report "
            "--json: flattery_watch); the 95 % intervals, the tests and the flag: usersignals "
            "report (metrics.flattery). complete: the week's 7-day window as report_days flags "
            "it on the week's Sunday (false while the week is the newest day's or begins "
            "before the first day with data).",
            width=24,
            height=10,
        ),
        Panel(
            "Who carries the risk: users and flagged users by usage band",
            "table",
            (
                SqlQuery(
                    "SELECT week, band, users, flagged_users\n"
                    f"FROM risk_concentration\nWHERE {_weeks_of('week')}\n"
                    "ORDER BY week, band",
                    ("week", "band", "users", "flagged_users"),
                ),
            ),
            description="Per ISO week, its active users in ten bands by messages sent that week "
            "(band 10: the heaviest-use decile) and how many of each band have a risk flag "
            f"(report --json: risk_concentration). {_ONLY_HISTORY}",
            width=24,
            height=10,
        ),
    ]


# ---------------------------------------------------------------- pipeline health


def _pipeline() -> list[Panel | Row]:
    return [
        Row(f"{_LIVE}: now"),
        _stat(
            "Events per second",
            f"sum(rate(usersignals_event_time_lag_seconds_count[{_RATE}]))",
            f"Valid events the workers processed per second over {_RATE} (redeliveries count "
            f"again). {_ONLY_LIVE}",
            unit="ops",
            width=4,
        ),
        _stat(
            "Dead-letter rate",
            f"sum(rate(usersignals_rejects_seen_total[{_RATE}]))",
            f"Rejected input (records or batch elements sent to the dead-letter topic) per "
            f"second over {_RATE}, as the worker processes saw it. Per day: the history panel.",
            unit="ops",
            width=4,
        ),
        _stat(
            "Consumer lag",
            "sum(usersignals_consumer_lag)",
            f"Records of the events topic not yet processed, all partitions. {_ONLY_LIVE}",
            width=4,
        ),
        _stat(
            "Loader lag",
            "sum(usersignals_loader_lag)",
            "Records of the events topic not yet in the warehouse, all partitions (the "
            f"loaders' own count). {_ONLY_LIVE}",
            width=4,
        ),
        _stat(
            "Loaders up",
            "sum(usersignals_loader_up)",
            "Workers whose warehouse loader child is running (alert UsersignalsLoaderDown when "
            f"one is not for 5 minutes). {_ONLY_LIVE}",
            width=4,
        ),
        _stat(
            "Since the last loader commit",
            "time() - max(usersignals_loader_last_commit_timestamp_seconds)",
            "Seconds since a loader last committed a range to the warehouse (alert "
            f"UsersignalsLoaderStalled past 600 s while events wait). {_ONLY_LIVE}",
            unit="s",
            width=4,
        ),
        Row(f"{_LIVE}: throughput and rejections"),
        Panel(
            "Records processed per second",
            "timeseries",
            (PromQuery(f"sum(rate(usersignals_records_processed_total[{_RATE}]))", "records"),),
            description="Input records of the events topic the workers processed per second "
            f"(a record holds one event or a batch; redeliveries count again). {_ONLY_LIVE}",
            unit="ops",
        ),
        Panel(
            "Rejections per second by reason",
            "timeseries",
            (
                PromQuery(
                    f"sum by (reason) (rate(usersignals_rejects_seen_total[{_RATE}]))",
                    "{{reason}}",
                ),
            ),
            description="Counted by each worker process (a redelivered bad record again): the "
            "dead-letter rate by reason.",
            unit="ops",
        ),
        Panel(
            "Rejected input held by reason",
            "timeseries",
            (PromQuery("sum by (reason) (usersignals_events_rejected)", "{{reason}}"),),
            description=f"Each rejected record or element once, by reason. {_HELD}",
        ),
        Panel(
            "Events held by type",
            "timeseries",
            (PromQuery("sum by (type) (usersignals_events)", "{{type}}"),),
            description=f"Distinct valid events in the workers' state. {_HELD}",
        ),
        Row(f"{_LIVE}: lag"),
        Panel(
            "Consumer lag by partition",
            "timeseries",
            (PromQuery("sum by (partition) (usersignals_consumer_lag)", "{{partition}}"),),
            description=f"Records of the events topic not yet processed. {_ONLY_LIVE}",
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
            description="Seconds from an event's ts to its processing (quantiles of the "
            f"events of the last {_RATE}). {_ONLY_LIVE}",
            unit="s",
        ),
        Panel(
            "Late events (held)",
            "timeseries",
            (PromQuery("sum(usersignals_late_events)", "late"),),
            description="Events older than the retention horizon on arrival: counted in the "
            f"warehouse only, not in the live numbers. {_ONLY_LIVE}",
        ),
        Panel(
            "Loader lag by partition",
            "timeseries",
            (PromQuery("sum by (partition) (usersignals_loader_lag)", "{{partition}}"),),
            description="Records of the events topic not yet loaded into the warehouse "
            f"(docs/operating-the-loader.md). {_ONLY_LIVE}",
        ),
        Panel(
            "Loader restarts and errors",
            "timeseries",
            (
                PromQuery("sum(usersignals_loader_restarts_total)", "restarts"),
                PromQuery("sum by (kind) (usersignals_loader_errors_total)", "{{kind}}"),
            ),
            description="Times a worker started its loader again, and loader failures by kind "
            "(enospc, eio: paused and went on; kafka, crash: it exited), since each worker "
            f"started. {_ONLY_LIVE}",
            width=24,
        ),
        Row(_HISTORY),
        Panel(
            "Events per day",
            "timeseries",
            (_daily("event_counts", ("events", "complete")),),
            description="Distinct valid events per day of their ts (report --json: "
            f"events_by_day). {_MARKED}",
            marks_incomplete=True,
        ),
        Panel(
            "Dead letters per day by reason",
            "timeseries",
            (
                SqlQuery(
                    "SELECT CAST(day AS TIMESTAMP) AS time, reason, count\n"
                    f"FROM rejected_daily\nWHERE {_DAYS}\nORDER BY time, reason",
                    ("time", "reason", "count"),
                    "time_series",
                ),
            ),
            description="Rejections loaded into the warehouse, once per input position, by the "
            "day the input was received (report --json --from --to: rejected sums them).",
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
            description="Every rejection the warehouse holds, by reason (report --json: rejected).",
            width=24,
        ),
    ]


# ---------------------------------------------------------------- the dashboards

_ITEMS = {
    ENGAGEMENT: _engagement,
    FEEDBACK: _feedback,
    WELLBEING: _wellbeing,
    PIPELINE: _pipeline,
}

_VARIABLES = {
    ENGAGEMENT: (MODEL, PLATFORM),
    FEEDBACK: (MODEL,),
    WELLBEING: (MODEL,),
    PIPELINE: (),
}

_TIME_FROM = {ENGAGEMENT: "now-30d", FEEDBACK: "now-30d", WELLBEING: "now-30d", PIPELINE: "now-6h"}


def variables(uid: str) -> tuple[Variable, ...]:
    """The variables of the dashboard ``uid``."""
    return _VARIABLES[uid]


def panel_specs() -> dict[str, list[Panel | Row]]:
    """The panels and rows of each dashboard, by dashboard uid, as the builder's values."""
    return {uid: items() for uid, items in _ITEMS.items()}


def _links(uid: str) -> list[dict[str, Any]]:
    return [
        link(other, title.removeprefix("usersignals: ").capitalize(), description)
        for other, (title, description) in BOARDS.items()
        if other != uid
    ]


def build_dashboards() -> dict[str, dict[str, Any]]:
    """The dashboards, by file name: ``<uid>.json``."""
    specs = panel_specs()
    boards = [
        dashboard(
            uid,
            title,
            description,
            specs[uid],
            time_from=_TIME_FROM[uid],
            refresh="1m",
            variables=_VARIABLES[uid],
            links=_links(uid),
        )
        for uid, (title, description) in BOARDS.items()
    ]
    return {f"{d['uid']}.json": d for d in boards}
