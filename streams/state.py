"""Per-day live state of one partition, and the reads a report needs from it.

A :class:`DayState` holds the sets and counters of one UTC day; dropping a day past the
retention horizon is dropping its object. The functions here turn day states into the
partition-local numbers of a partial report (see ``folds.PartitionState.partial``).
"""

from __future__ import annotations

from datetime import date
from typing import Any

__all__ = [
    "HIGH_SEVERITIES",
    "DayState",
    "add_counts",
    "feedback_rows",
    "flattery_rows",
    "iso_week",
    "windows",
]

HIGH_SEVERITIES = frozenset({"high", "critical"})
"""Severities that make a user "at risk"."""

WEEK_DAYS = 7
MONTH_DAYS = 30


def iso_week(day: date) -> str:
    """The ISO week of a day as ``YYYY-Www`` (the flattery watch's week key)."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


class DayState:
    """Everything folded for one UTC day of one partition."""

    __slots__ = (
        "fb",
        "ids",
        "model_risk",
        "model_risk_high",
        "model_users",
        "msg_refs",
        "prefs",
        "risk_flags",
        "risk_high",
        "risk_users",
        "sess_refs",
        "types",
        "users",
        "votes",
    )

    def __init__(self) -> None:
        self.ids: list[str] = []  # event_ids first seen on this day (events = len)
        self.users: set[str] = set()
        self.types: dict[str, int] = {}
        self.model_users: dict[str, set[str]] = {}
        self.votes: set[tuple[str, str | None]] = set()  # vote keys whose latest vote is today
        # Models are the attributed ones (docs/attribution.md): None when nothing names one.
        self.fb: dict[tuple[str | None, int], int] = {}  # (model, +1/-1) -> latest votes
        self.risk_flags: dict[tuple[str | None, str | None], int] = {}
        self.risk_users: dict[tuple[str | None, str | None], set[str]] = {}
        self.risk_high: set[str] = set()
        self.model_risk: dict[str | None, int] = {}  # model -> flags
        # model -> {user: high/critical flags} (a multiset, so one flag can move exactly)
        self.model_risk_high: dict[str | None, dict[str, int]] = {}
        # The day's earliest model-carrying event per (user_id, message_id) (``message``) and
        # per (user_id, session_id) (``session_start`` or ``message``): (ts, event_id, model)
        self.msg_refs: dict[tuple[str, str | None], tuple[Any, str, str]] = {}
        self.sess_refs: dict[tuple[str, str], tuple[Any, str, str]] = {}
        self.prefs: dict[tuple[str | None, str | None, str | None], int] = {}


def windows(days: dict[int, DayState], lo: int, hi: int) -> list[list[int]]:
    """[dau, wau, mau, users at risk weekly] for every day ordinal in [lo, hi].

    One pass over the user-days: each user's last active day so far, and a histogram of those
    last days, so that a trailing window is the sum of the histogram over the window.
    """
    rows: list[list[int]] = []
    last: dict[str, int] = {}
    hist: dict[int, int] = {}
    last_risk: dict[str, int] = {}
    hist_risk: dict[int, int] = {}
    for o in range(lo - MONTH_DAYS + 1, hi + 1):
        d = days.get(o)
        if d is not None:
            advance(last, hist, d.users, o)
            advance(last_risk, hist_risk, d.risk_high, o)
        if o >= lo:
            wau = sum(hist.get(x, 0) for x in range(o - WEEK_DAYS + 1, o + 1))
            mau = sum(hist.get(x, 0) for x in range(o - MONTH_DAYS + 1, o + 1))
            at_risk = sum(hist_risk.get(x, 0) for x in range(o - WEEK_DAYS + 1, o + 1))
            rows.append([len(d.users) if d else 0, wau, mau, at_risk])
    return rows


def advance(last: dict[str, int], hist: dict[int, int], users: set[str], o: int) -> None:
    hist[o] = hist.get(o, 0) + len(users)
    for u in users:
        prev = last.get(u)
        if prev is not None:
            hist[prev] -= 1
        last[u] = o


def feedback_rows(iso: str, fb: dict[tuple[str | None, int], int]) -> list[list[Any]]:
    models = {m for m, _ in fb}
    return [[iso, m, fb.get((m, 1), 0), fb.get((m, -1), 0)] for m in models]


def flattery_rows(week: str, wdays: list[DayState]) -> list[list[Any]]:
    """[model, week, up, down, active users, risk flags, users at risk] for one week."""
    models = {m for d in wdays for m in d.model_users}
    rows = []
    for m in models:
        up = sum(d.fb.get((m, 1), 0) for d in wdays)
        down = sum(d.fb.get((m, -1), 0) for d in wdays)
        users = len(set().union(*(d.model_users.get(m, ()) for d in wdays)))
        flags = sum(d.model_risk.get(m, 0) for d in wdays)
        at_risk = len(set().union(*(d.model_risk_high.get(m, ()) for d in wdays)))
        rows.append([m, week, up, down, users, flags, at_risk])
    return rows


def add_counts(into: dict[Any, int], counts: dict[Any, int]) -> None:
    for k, n in counts.items():
        into[k] = into.get(k, 0) + n
