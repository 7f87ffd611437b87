"""Breakdowns of the report by one field: ``report --by model|platform|properties.KEY``.

:func:`breakdown_report` gives DAU/WAU/MAU, thumbs up/down and risk flags per value of the
field, from the warehouse, as rows of the report's JSON (days ``YYYY-MM-DD``, rows sorted by
their key columns). The definitions are those of ``docs/metrics.md`` ("Breakdowns") and live
in one place, ``metrics/breakdown.sql`` (views ``active_users_by``, ``feedback_by_key``,
``risk_flags_by_key``); this module only chooses the field and the number of values kept.

The report's own keys (``active_users``, ``feedback_by_model``, ``risk_flags_daily``) are the
totals and are not touched: a user active on two platforms counts once there and once under
each platform here.

The breakdown needs every event's value of the field, which the rollups of compacted days do
not keep, so it reads the warehouse's ``events`` relation (every live file, each ``event_id``
once, the event's ``day`` as the connection gives it) on a cursor of its own, where it puts
a temporary table in place of ``events`` (deduplicated once; ``model_refs`` too for
``--by model``), a temporary ``event_keys`` over it, and sets the variables ``breakdown.sql``
reads: the connection is left as it was, apart from the views and
macros of ``breakdown.sql``, which it creates once when the connection does not have them.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any, Literal

import duckdb

from usersignals.errors import ConfigError
from usersignals.metrics.periods import DayRange
from usersignals.warehouse.history import json_rows
from usersignals.warehouse.merge import RAW_COLUMNS

__all__ = [
    "BREAKDOWN_KEYS",
    "BREAKDOWN_TITLES",
    "BY_CHOICES",
    "DEFAULT_LIMIT",
    "OTHER",
    "By",
    "breakdown_report",
    "breakdown_sql",
    "parse_by",
]

BY_CHOICES = ("model", "platform", "properties.KEY")
"""What ``--by`` takes; KEY is a top-level key of ``properties`` (letters, digits, ``_``,
``-``, ``.``; a dot is part of the key's name, not a path)."""

DEFAULT_LIMIT = 20
"""Values kept by default (``--by-limit``); the others fold into :data:`OTHER`."""

OTHER = "(other)"
"""The value the folded values are counted under, together."""

BREAKDOWN_KEYS = ("active_users_by", "feedback_by", "risk_flags_by")
"""Keys of the rows :func:`breakdown_report` returns, in order (``breakdown`` besides)."""

BREAKDOWN_TITLES = {
    "active_users_by": "Active users by value (DAU, WAU, MAU)",
    "feedback_by": "Feedback by value (latest vote per user and message)",
    "risk_flags_by": "Risk flags per day by value",
}
"""Headings of the breakdown's tables when printed."""

_PROPERTIES = "properties."
_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
_SHOWN = 64
"""At most this many characters of a refused ``--by`` value are echoed."""

# the value of the field per event, by field; $path is bound, never formatted in
_KEY_SQL = {
    "model": "model",
    "platform": "platform",
    "properties": "json_extract_string(properties, $path)",
}

_IN_RANGE = (
    "(CAST($lo AS DATE) IS NULL OR day >= CAST($lo AS DATE)) "
    "AND (CAST($hi AS DATE) IS NULL OR day <= CAST($hi AS DATE))"
)
_BY_KEY = f"key IS NOT NULL, key = '{OTHER}', key"
"""Order of values: NULL first, then the kept values (as strings), then (other)."""

_QUERIES = {
    "active_users_by": (
        f"SELECT day, key, dau, wau, mau FROM active_users_by WHERE {_IN_RANGE} "
        f"ORDER BY day, {_BY_KEY}"
    ),
    "feedback_by": (
        "SELECT day, key, thumbs_up, thumbs_down FROM feedback_by_key "
        f"WHERE {_IN_RANGE} ORDER BY day, {_BY_KEY}"
    ),
    "risk_flags_by": (
        "SELECT day, key, category, severity, flags, users FROM risk_flags_by_key "
        f"WHERE {_IN_RANGE} ORDER BY day, {_BY_KEY}, coalesce(category, ''), "
        "category IS NULL, coalesce(severity, ''), severity IS NULL"
    ),
}

_create_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class By:
    """A breakdown field: ``model``, ``platform`` or ``properties`` with its ``key``."""

    field: Literal["model", "platform", "properties"]
    key: str | None = None

    @property
    def name(self) -> str:
        """As ``--by`` spells it: ``model``, ``platform``, ``properties.plan``."""
        return self.field if self.key is None else f"{_PROPERTIES}{self.key}"

    @property
    def attributed(self) -> bool:
        """Votes and flags count under their attributed model (docs/attribution.md), as in
        ``feedback_by_model``; for the other fields, under the value of their own event."""
        return self.field == "model"

    @property
    def json_path(self) -> str | None:
        """The JSON path of the key in ``properties`` (a top-level member), else None."""
        return None if self.key is None else f'$."{self.key}"'


def _refuse(value: object, reason: str) -> ConfigError:
    shown = value if isinstance(value, str) else repr(value)
    if len(shown) > _SHOWN:
        shown = shown[:_SHOWN] + "…"
    return ConfigError("--by", shown, reason)


def parse_by(value: object) -> By:
    """The field ``--by`` names.

    Raises:
        ConfigError: not one of :data:`BY_CHOICES`, or a KEY with other characters than
            letters, digits, ``_``, ``-`` and ``.`` (the message shows the value given, cut
            at 64 characters, on one line).
    """
    if isinstance(value, By):
        return value
    if value == "model":
        return By("model")
    if value == "platform":
        return By("platform")
    if isinstance(value, str) and value.startswith(_PROPERTIES):
        key = value[len(_PROPERTIES) :]
        if not key:
            raise _refuse(value, "properties. needs a key: properties.KEY")
        if not _KEY.fullmatch(key):
            raise _refuse(value, "a properties key has only letters, digits, _, - and .")
        return By("properties", key)
    raise _refuse(value, "choose model, platform or properties.KEY")


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError("--by-limit", limit, "a whole number of at least 1")
    return limit


def breakdown_sql() -> str:
    """The SQL of the breakdown views (``metrics/breakdown.sql``)."""
    return resources.files("usersignals.metrics").joinpath("breakdown.sql").read_text("utf-8")


def _has_view(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = cur.execute(
        "SELECT count(*) FROM duckdb_views() "
        "WHERE view_name = $name AND NOT internal AND NOT temporary",
        {"name": name},
    ).fetchone()
    return bool(found and found[0])


def breakdown_report(
    con: duckdb.DuckDBPyConnection,
    by: str | By,
    day_from: date | None = None,
    day_to: date | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The breakdown of the warehouse behind ``con`` (made by ``db.connect``) by ``by``.

    Args:
        con: A connection with the warehouse views (any cursor of it: the breakdown runs on a
            cursor of its own, so one where ``merge_inputs`` ran does as well).
        by: ``model``, ``platform`` or ``properties.KEY`` (:func:`parse_by`), or a :class:`By`.
        day_from: First day shown (inclusive); None: from the first day.
        day_to: Last day shown (inclusive); None: to the last day.
        limit: Values kept, ranked by their distinct users over the days shown (ties: the
            smaller value); the others are counted together under :data:`OTHER`. NULL (events
            without the value) is always its own row and does not count against it.

    Returns:
        ``active_users_by`` (rows ``{day, key, dau, wau, mau}``), ``feedback_by``
        (``{day, key, thumbs_up, thumbs_down}``), ``risk_flags_by`` (``{day, key, category,
        severity, flags, users}``) and ``breakdown``: ``{"by": "platform", "limit": 20}``.
        Windows (WAU, MAU) still count the days before ``day_from``, as in the report.

    Raises:
        ConfigError: ``by`` or ``limit`` cannot be used.
        DayRangeError: ``day_from`` is after ``day_to``.
    """
    field = parse_by(by)
    kept = _check_limit(limit)
    DayRange(day_from, day_to)
    cur = con.cursor()
    try:
        with _create_lock:
            if not _has_view(cur, "active_users_by"):
                cur.execute(breakdown_sql())
        cols = ", ".join(RAW_COLUMNS)
        key_params = {} if field.json_path is None else {"path": field.json_path}
        cur.execute(
            f"CREATE TEMP TABLE events AS SELECT {cols}, {_KEY_SQL[field.field]} AS breakdown_key "
            "FROM main.events",
            key_params,
        )
        if field.attributed:  # read by feedback_latest and risk_cells: found once
            cur.execute("CREATE TEMP TABLE model_refs AS SELECT * FROM main.model_refs")
        cur.execute(
            "CREATE TEMP VIEW event_keys AS "
            "SELECT event_id, user_id, day, type, breakdown_key AS key FROM events"
        )
        for sql, value in (
            ("SET VARIABLE usersignals_breakdown_limit = CAST($v AS BIGINT)", kept),
            ("SET VARIABLE usersignals_breakdown_first_day = CAST($v AS DATE)", day_from),
            ("SET VARIABLE usersignals_breakdown_last_day = CAST($v AS DATE)", day_to),
            (
                "SET VARIABLE usersignals_breakdown_attributed = CAST($v AS BOOLEAN)",
                field.attributed,
            ),
        ):
            cur.execute(sql, {"v": value})
        params = {"lo": day_from, "hi": day_to}
        out: dict[str, Any] = {key: json_rows(cur, _QUERIES[key], params) for key in BREAKDOWN_KEYS}
        out["breakdown"] = {"by": field.name, "limit": kept}
        return out
    finally:
        cur.close()
