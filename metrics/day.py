"""What the live folds hold for one UTC day of one partition.

A :class:`DayState` is the per-day state of every metric unit at once (one object per day, so
that the worker's hot loop looks a day up once and dropping a day past the retention horizon is
dropping its object). Each field belongs to one unit, which alone writes it:

- activity (:mod:`usersignals.metrics.activity`): ``ids``, ``users``, ``types``, ``model_users``
- feedback (:mod:`usersignals.metrics.feedback`): ``votes``, ``fb``
- risk (:mod:`usersignals.metrics.risk`): ``risk_flags``, ``risk_users``, ``risk_high``,
  ``model_risk``, ``model_risk_high``, ``model_flagged``, ``model_flagged_high``
- attribution (:mod:`usersignals.metrics.attribution`): ``msg_refs``, ``sess_refs``
- arena (preference counts): ``prefs``
"""

from __future__ import annotations

from typing import Any

__all__ = ["HIGH_SEVERITIES", "DayState", "add_counts"]

HIGH_SEVERITIES = frozenset({"high", "critical"})
"""Severities that make a user "at risk"."""


class DayState:
    """Everything folded for one UTC day of one partition."""

    __slots__ = (
        "fb",
        "ids",
        "model_flagged",
        "model_flagged_high",
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
        # (model, category) -> {user: flags} and {user: high/critical flags}: the weekly
        # flagged share (usersignals.metrics.wellbeing); multisets too, so one flag can move
        # exactly (ints, not lists: containers the garbage collector need not track)
        self.model_flagged: dict[tuple[str | None, str | None], dict[str, int]] = {}
        self.model_flagged_high: dict[tuple[str | None, str | None], dict[str, int]] = {}
        # The day's earliest model-carrying event per (user_id, message_id) (``message``) and
        # per (user_id, session_id) (``session_start`` or ``message``): (ts, event_id, model)
        self.msg_refs: dict[tuple[str, str | None], tuple[Any, str, str]] = {}
        self.sess_refs: dict[tuple[str, str], tuple[Any, str, str]] = {}
        self.prefs: dict[tuple[str | None, str | None, str | None], int] = {}


def add_counts(into: dict[Any, int], counts: dict[Any, int]) -> None:
    """Adds the counts of one table into another."""
    for k, n in counts.items():
        into[k] = into.get(k, 0) + n
