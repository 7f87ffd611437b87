"""How report numbers and column names are written for people (HTML page, terminal tables).

Counts get thousands separators (``12,345``), shares are percentages (``63.9 %``), ratings
have one decimal, intervals are written ``1,026.6 [1,004.2 - 1,048.9]`` (an en dash between
the bounds) and changes carry their sign (``+12``, ``-3`` with a minus sign, ``+0.4 pp``).
Columns are named by :func:`header` (``dau`` → ``DAU``, ``thumbs_up_rate`` →
``Thumbs-up rate``). Only the text changes: the numbers themselves stay those of ``report --json``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "HEADERS",
    "MINUS",
    "cell",
    "change",
    "count",
    "header",
    "interval",
    "kind_of",
    "p_value",
    "per_1k",
    "rate",
    "rating",
]

MINUS = "\u2212"
"""The minus sign of negative numbers and changes (not a hyphen)."""

HEADERS = {
    "day": "Day",
    "week": "Week",
    "model": "Model",
    "key": "Value",
    "dau": "DAU",
    "wau": "WAU",
    "mau": "MAU",
    "stickiness": "Stickiness (DAU/MAU)",
    "complete": "Day complete",
    "wau_complete": "WAU window complete",
    "mau_complete": "MAU window complete",
    "events": "Events",
    "thumbs_up": "Thumbs up",
    "thumbs_down": "Thumbs down",
    "thumbs_up_rate": "Thumbs-up rate",
    "category": "Category",
    "severity": "Severity",
    "flags": "Risk flags",
    "users": "Users",
    "reason": "Reason",
    "count": "Records",
    "rating": "Rating",
    "votes": "Votes",
    "rank": "Rank",
    "active_users": "Active users",
    "active_share": "Share of active users",
    "risk_flags": "Risk flags",
    "risk_flags_per_1k": "Risk flags per 1,000 users",
    "users_at_risk": "Users at risk",
    "p_thumbs_up_rise": "p (thumbs-up rise)",
    "p_risk_rise": "p (risk rise)",
    "flagged": "Flagged",
    "cohort": "Cohort",
    "period": "Period",
    "cohort_users": "Cohort users",
    "users_on_or_after": "Users then or later",
    "status": "Status",
    "days_active": "Days active",
    "sessions": "Sessions",
    "duration_p50_s": "Median length (s)",
    "duration_p90_s": "90th percentile length (s)",
    "long_share": "Share over 60 min",
    "messages_per_session": "Messages per session",
    "flagged_users": "Flagged users",
    "flagged_users_high": "Flagged users (high, critical)",
    "share": "Flagged share",
    "share_high": "Flagged share (high, critical)",
    "band": "Usage band",
}
"""Column headings of the report's keys; :func:`header` makes one for any other key."""

_COUNTS = frozenset(
    {
        "dau",
        "wau",
        "mau",
        "events",
        "thumbs_up",
        "thumbs_down",
        "flags",
        "users",
        "count",
        "votes",
        "rank",
        "active_users",
        "risk_flags",
        "users_at_risk",
        "cohort_users",
        "users_on_or_after",
        "days_active",
        "sessions",
        "flagged_users",
        "flagged_users_high",
        "band",
    }
)
_RATES = frozenset(
    {"stickiness", "thumbs_up_rate", "active_share", "long_share", "share", "share_high"}
)
_RATINGS = frozenset({"rating"})
_PER_1K = frozenset({"risk_flags_per_1k"})
_P_VALUES = frozenset({"p_thumbs_up_rise", "p_risk_rise"})
_DECIMALS = frozenset({"duration_p50_s", "duration_p90_s", "messages_per_session"})
_FLAGS = frozenset({"complete", "wau_complete", "mau_complete", "flagged"})


def header(key: str) -> str:
    """The heading of column ``key``: ``HEADERS[key]``, else the key in words."""
    if key in HEADERS:
        return HEADERS[key]
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def kind_of(key: str) -> str:
    """How column ``key`` is written: ``count``, ``rate``, ``rating``, ``per_1k``, ``p``,
    ``decimal``, ``flag`` or ``text``."""
    for kind, keys in (
        ("count", _COUNTS),
        ("rate", _RATES),
        ("rating", _RATINGS),
        ("per_1k", _PER_1K),
        ("p", _P_VALUES),
        ("decimal", _DECIMALS),
        ("flag", _FLAGS),
    ):
        if key in keys:
            return kind
    return "text"


def _signed(text: str) -> str:
    return MINUS + text[1:] if text.startswith("-") else text


def count(value: float) -> str:
    """``12345`` → ``12,345``."""
    return _signed(f"{value:,.0f}")


def rate(value: float, digits: int = 1) -> str:
    """A share as a percentage: ``0.638932`` → ``63.9 %``."""
    return _signed(f"{100 * value:,.{digits}f}") + " %"


def rating(value: float) -> str:
    """A rating, one decimal: ``1026.64`` → ``1,026.6``."""
    return _signed(f"{value:,.1f}")


def per_1k(value: float) -> str:
    """A rate per 1,000 users, one decimal: ``13.071895`` → ``13.1``."""
    return _signed(f"{value:,.1f}")


def p_value(value: float) -> str:
    """A p-value: three decimals, ``< 0.001`` below that."""
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _decimal(value: float) -> str:
    return _signed(f"{value:,.1f}")


_WRITERS = {
    "count": count,
    "rate": rate,
    "rating": rating,
    "per_1k": per_1k,
    "p": p_value,
    "decimal": _decimal,
}


def interval(value: float, low: float, high: float, kind: str = "rating") -> str:
    """A value and its interval: ``1,026.6 [1,004.2 - 1,048.9]``, an en dash between the
    bounds (``kind`` as :func:`kind_of`)."""
    write = _WRITERS[kind]
    if kind == "rate":
        return f"{rate(value)} [{rate(low)} \u2013 {rate(high)}]"
    return f"{write(value)} [{write(low)} \u2013 {write(high)}]"


def cell(key: str, value: Any) -> str:
    """The text of ``value`` in column ``key``: ``-`` for none, ``partial`` for an incomplete
    day (nothing for a complete one), ``yes``/``no`` for other flags, numbers by
    :func:`kind_of`."""
    if value is None:
        return "-"
    kind = kind_of(key)
    if kind == "flag" or isinstance(value, bool):
        if key in ("complete", "wau_complete", "mau_complete"):
            return "" if value else "partial"
        return "yes" if value else "no"
    if kind in _WRITERS and isinstance(value, int | float):
        return _WRITERS[kind](value)
    return str(value)


def change(value: float, kind: str) -> str:
    """A change with its sign: ``+12``, ``-3`` (a minus sign), ``+0.4 pp`` (a change of a rate, in
    percentage points), ``±0``."""
    if kind == "rate":
        text = f"{100 * value:+,.1f} pp"
    elif kind == "count":
        text = f"{value:+,.0f}"
    else:
        text = f"{value:+,.1f}"
    if text.lstrip("+-").rstrip(" p").strip("0.,") == "":
        return "\u00b1" + text[1:]
    return _signed(text)
