"""The report's inputs: rollups of compacted days merged with the raw rows of everything else.

:func:`merge_inputs` makes, on a cursor of a :func:`~usersignals.warehouse.db.connect`
connection, temporary views and tables named like the rollup-shaped views of the metric SQL
(``user_days``, ``model_user_days``, ``events_by_day``, ``feedback_candidates``,
``flag_cells``, ``model_refs``, ``session_parts``, ``user_messages``, ``week_users``,
``model_week_users``) plus ``arena_daily``, the ``rolled_<kind>`` rows of whole compacted ISO
weeks (``rolled_weeks``, read instead of those weeks' user days), and
``feedback_latest`` and ``risk_cells`` once (attributed to models over every day's references,
docs/attribution.md).
Temporary names shadow the views, so every metric view then reads the merged tables, and the
metric SQL stays the one definition.

Exactness: a served day's rollup was computed from its compacted rows, each ``event_id`` once
within the day. A day is *dirty* when one of its ids (by 64-bit hash, so a collision only costs
time) also occurs in another compacted day (recorded at compaction in ``shared``) or in the tail
(checked here). Dirty days are read raw, together with the tail, and deduplicated by the views'
first-copy rule; the ids of the other served days occur nowhere else, so their rollups are their
first copies. Rollup rows of the other days are read as they are (temporary views over the
files); only days with both rollup and raw rows are combined (``DISTINCT``, or counts summed).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import duckdb

from usersignals.warehouse.arena import ARENA_DAILY_SQL
from usersignals.warehouse.plan import ROLLUP_RELATIONS, WEEK_ROLLUP_SCHEMAS
from usersignals.warehouse.rollup import UID_SQL

__all__ = ["RAW_COLUMNS", "merge_inputs"]

RAW_COLUMNS = (
    "event_id",
    "type",
    "user_id",
    "ts",
    "day",
    "model",
    "message_id",
    "session_id",
    "rating",
    "model_a",
    "model_b",
    "winner",
    "category",
    "severity",
    "role",
    "duration_s",
    "source_partition",
    "source_offset",
    "batch_index",
)
"""The columns of raw rows the rollup-shaped views read (and the log position)."""

_RAW_KINDS = (
    "user_days",
    "model_user_days",
    "events_by_day",
    "feedback_votes",
    "risk_cells",
    "model_refs",
    "session_parts",
    "user_messages",
)

_DISTINCT = "SELECT DISTINCT * FROM ({rows})"
_MERGED = (
    ("user_days", "user_id, day", _DISTINCT),
    ("model_user_days", "day, model, user_id", _DISTINCT),
    (
        "feedback_votes",
        "user_id, message_id, day, ts, model, rating, event_id, session_id",
        "{rows}",
    ),
    (
        "events_by_day",
        "day, events",
        "SELECT day, CAST(sum(events) AS BIGINT) AS events FROM ({rows}) GROUP BY day",
    ),
    (
        "risk_cells",
        "day, user_id, model, category, severity, flags, session_id",
        "SELECT day, user_id, model, category, severity, CAST(sum(flags) AS BIGINT) AS flags, "
        "session_id FROM ({rows}) GROUP BY ALL",
    ),
    (
        "model_refs",
        "kind, user_id, ref, day, ts, event_id, model",
        "SELECT * FROM ({rows}) QUALIFY row_number() OVER "
        "(PARTITION BY kind, user_id, ref, day ORDER BY ts, event_id) = 1",
    ),
    (
        "session_parts",
        "day, user_id, session_id, first_ts, last_ts, end_duration_s, messages",
        "SELECT day, user_id, session_id, min(first_ts) AS first_ts, max(last_ts) AS last_ts, "
        "max(end_duration_s) AS end_duration_s, CAST(sum(messages) AS BIGINT) AS messages "
        "FROM ({rows}) GROUP BY day, user_id, session_id",
    ),
    (
        "user_messages",
        "day, user_id, messages",
        "SELECT day, user_id, CAST(sum(messages) AS BIGINT) AS messages FROM ({rows}) "
        "GROUP BY day, user_id",
    ),
    (
        "arena_daily",
        "day, model_a, model_b, winner, votes",
        "SELECT day, model_a, model_b, winner, CAST(sum(votes) AS BIGINT) AS votes "
        "FROM ({rows}) GROUP BY ALL",
    ),
)
"""(rollup kind, its columns, how rollup and raw rows of the same day combine). The temporary
view is named after the kind's relation (``ROLLUP_RELATIONS``)."""


_HELD = frozenset({"user_days", "user_messages"})
"""Kinds read by several keys (active users, retention, lifecycle, the stickiness distribution,
the weekly counts, the usage bands): made once as temporary tables."""


def _among(column: str, days: Iterable[date], *, negate: bool = False) -> str:
    """``column IN (days)`` (or NOT IN) as SQL; an empty list gives false (or true)."""
    listed = ", ".join(f"DATE '{d.isoformat()}'" for d in sorted(days))
    if not listed:
        return "true" if negate else "false"
    return f"{column} {'NOT IN' if negate else 'IN'} ({listed})"


def _column(cur: duckdb.DuckDBPyConnection, sql: str) -> list[date]:
    return [row[0] for row in cur.execute(sql).fetchall()]


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def _tail_with_dirty_days(cur: duckdb.DuckDBPyConnection, cols: str) -> set[date]:
    """Makes ``events_raw`` (tail and dirty days, users as uids); returns the dirty days."""
    cur.execute(f"CREATE TEMP TABLE _tail AS SELECT {cols} FROM main.tail_raw")
    probe = ""
    if _column(cur, "SELECT 1 FROM _tail LIMIT 1"):
        probe = (
            "UNION SELECT DISTINCT day FROM main.rollup_ids "
            "SEMI JOIN (SELECT hash(event_id) AS h FROM _tail) USING (h)"
        )
    dirty = set(
        _column(
            cur,
            "SELECT day FROM main.rollup_shared UNION SELECT other_day FROM main.rollup_shared "
            + probe,
        )
    )
    source = "_tail"
    if dirty:
        cur.execute(
            f"CREATE TEMP TABLE _raw AS SELECT {cols} FROM _tail UNION ALL SELECT {cols} "
            f"FROM main.compacted_raw WHERE {_among('day', dirty)}"
        )
        source = "_raw"
    cur.execute(
        "CREATE TEMP TABLE events_raw AS "
        + UID_SQL.format(source=source, users="main.rollup_users")
    )
    return dirty


def merge_inputs(cur: duckdb.DuckDBPyConnection) -> None:
    """Creates the merged input tables on ``cur`` (a cursor of its own: they are temporary)."""
    cols = ", ".join(RAW_COLUMNS)
    dirty: set[date] = set()
    if not _column(cur, "SELECT 1 FROM main.rollup_users LIMIT 1"):
        # nothing compacted with rollups: the tail is everything, user ids stay as they are
        cur.execute(f"CREATE TEMP VIEW events_raw AS SELECT {cols} FROM main.tail_raw")
    else:
        dirty = _tail_with_dirty_days(cur, cols)
    cur.execute("CREATE TEMP TABLE events AS SELECT * FROM main.events")  # deduplicated once
    for kind in _RAW_KINDS:
        rel = ROLLUP_RELATIONS.get(kind, kind)
        cur.execute(f"CREATE TEMP TABLE _r_{kind} AS SELECT * FROM main.{rel}")
    cur.execute(f"CREATE TEMP TABLE _r_arena_daily AS {ARENA_DAILY_SQL}")
    raw_days = set(_column(cur, "SELECT day FROM _r_events_by_day"))
    excluded = dirty | raw_days
    mixed = raw_days - dirty
    ok_weeks = set(_column(cur, "SELECT DISTINCT monday FROM main.rollup_weeks"))
    ok_weeks -= {_monday(d) for d in excluded}
    served = set(_column(cur, "SELECT day FROM main.rollup_events_by_day"))
    needed = {d for d in served - excluded if _monday(d) not in ok_weeks}
    rolled = ok_weeks
    if _column(cur, "SELECT week_start_dow()") != [1]:
        # weeks not from Monday: the weekly rollups (ISO weeks) serve only the flattery watch,
        # and the weekly flagged share counts its model users from every day
        needed = served - excluded
        rolled = set()
    # the rows of whole compacted weeks come from their week rollups (a held table for the
    # users of a week, read by retention and lifecycle)
    listed = ", ".join(f"(DATE '{w.isoformat()}')" for w in sorted(rolled))
    weeks = (
        f"SELECT * FROM (VALUES {listed}) AS w(week)"
        if listed
        else "SELECT CAST(NULL AS DATE) AS week WHERE false"
    )
    cur.execute(f"CREATE TEMP VIEW rolled_weeks AS {weeks}")
    for kind, schema in WEEK_ROLLUP_SCHEMAS.items():
        made = "TABLE" if kind == "user_weeks" else "VIEW"
        cur.execute(
            f"CREATE TEMP {made} rolled_{kind} AS SELECT {', '.join(schema.names)} "
            f"FROM main.rollup_week_{kind} WHERE {_among('week', rolled)}"
        )

    for kind, keys, combine in _MERGED:
        if kind == "model_user_days":  # only for weeks without a weekly count
            served_rows = _among("day", needed)
        else:
            served_rows = _among("day", excluded, negate=True)
        merged = f"_r_{kind}"
        if mixed:  # days with rollup rows and raw rows: combine them
            merged = f"_m_{kind}"
            rows = (
                f"SELECT {keys} FROM main.rollup_{kind} WHERE {_among('day', mixed)} "
                f"UNION ALL SELECT {keys} FROM _r_{kind}"
            )
            cur.execute(f"CREATE TEMP TABLE {merged} AS {combine.format(rows=rows)}")
        # the relations several keys read are held in memory, the others read when needed
        made = "TABLE" if kind in _HELD else "VIEW"
        cur.execute(
            f"CREATE TEMP {made} {ROLLUP_RELATIONS.get(kind, kind)} AS SELECT {keys} "
            f"FROM main.rollup_{kind} WHERE {served_rows} UNION ALL SELECT {keys} FROM {merged}"
        )
    # read by feedback_by_model and flattery_watch: pick the latest votes once; attribute the
    # risk cells once (risk_flags_daily, users_at_risk_weekly and flattery_watch read them)
    cur.execute("CREATE TEMP TABLE feedback_latest AS SELECT * FROM main.feedback_latest")
    cur.execute("CREATE TEMP TABLE risk_cells AS SELECT * FROM main.risk_cells")
    week = "CAST(date_trunc('week', day) AS DATE)"
    ok = _among("monday", ok_weeks)
    # days of the weeks without a usable weekly count: counted from the day rows
    counted = sorted(d for d in served | raw_days if _monday(d) not in ok_weeks)
    cur.execute(
        "CREATE TEMP TABLE week_users AS "
        f"SELECT monday, users FROM main.rollup_weeks WHERE model IS NULL AND {ok} "
        f"UNION ALL SELECT {week} AS monday, count(DISTINCT user_id) AS users FROM user_days "
        f"WHERE {_among('day', counted)} GROUP BY monday"
    )
    cur.execute(
        "CREATE TEMP TABLE model_week_users AS "
        "SELECT model, monday, users AS active_users FROM main.rollup_weeks "
        f"WHERE model IS NOT NULL AND {ok} "
        f"UNION ALL SELECT model, {week} AS monday, count(DISTINCT user_id) AS active_users "
        "FROM model_user_days GROUP BY model, monday"
    )
