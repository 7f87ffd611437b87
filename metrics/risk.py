"""Risk flags, live (docs/metrics.md): flags and flagged users per day, category and severity;
users at risk (a high or critical flag) per day and per attributed model; flagged users per day,
attributed model and category (the weekly flagged share).

:class:`Risk` counts each new ``risk_flag`` event into its day (``DayState.risk_flags``,
``risk_users``, ``risk_high``, ``model_risk``, ``model_risk_high``, ``model_flagged``,
``model_flagged_high``). A flag
without a model of its own counts under its session's (:mod:`usersignals.metrics.attribution`)
and moves when that changes: the session index keeps its flags per day and category, so the
per-model multisets of users move exactly. Users at risk in the trailing week are read by
:func:`usersignals.metrics.activity.windows`, the weekly flagged share by
:func:`usersignals.metrics.wellbeing.week_flags`. The same metrics from history are
``risk.sql`` and ``wellbeing.sql`` beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from usersignals.metrics.attribution import Key, ModelRefs
from usersignals.metrics.day import HIGH_SEVERITIES, DayState

if TYPE_CHECKING:
    from usersignals.ingest.contract import Event

__all__ = ["Risk", "count_user"]

K = TypeVar("K")


class Risk:
    """The risk-flag counts of one partition, into the days of ``days``."""

    def __init__(self, days: Mapping[int, DayState], refs: ModelRefs) -> None:
        self.days = days
        self.refs = refs
        # flags without a model of their own, by session:
        # {day: {category: [flags, high or critical]}}
        self.sess_flags: dict[Key, dict[int, dict[str | None, list[int]]]] = {}

    def add(self, ev: Event, uid: str, o: int, day: DayState) -> None:
        """A ``risk_flag`` event on day ``o`` (``uid``: its user, interned)."""
        category = ev.category
        rk = (category, ev.severity)
        day.risk_flags[rk] = day.risk_flags.get(rk, 0) + 1
        ru = day.risk_users.get(rk)
        if ru is None:
            ru = day.risk_users[rk] = set()
        ru.add(uid)
        model = ev.model
        high = 1 if ev.severity in HIGH_SEVERITIES else 0
        if model is None:
            sid = ev.session_id
            if sid is not None:
                sk = (uid, sid)
                model = self.refs.session_model(sk)
                per_day = self.sess_flags.get(sk)
                if per_day is None:
                    per_day = self.sess_flags[sk] = {}
                cats = per_day.get(o)
                if cats is None:
                    cats = per_day[o] = {}
                cell = cats.get(category)
                if cell is None:
                    cats[category] = [1, high]
                else:
                    cell[0] += 1
                    cell[1] += high
        day.model_risk[model] = day.model_risk.get(model, 0) + 1
        fk = (model, category)
        flagged = day.model_flagged.get(fk)
        if flagged is None:
            day.model_flagged[fk] = {uid: 1}
        else:
            flagged[uid] = flagged.get(uid, 0) + 1
        if high:
            day.risk_high.add(uid)
            count_user(day.model_risk_high, model, uid, 1)
            count_user(day.model_flagged_high, fk, uid, 1)

    def move(self, sk: Key, before: str | None, after: str | None) -> None:
        """A session's model changed: its flags without a model of their own follow."""
        per_day = self.sess_flags.get(sk)
        if per_day is None:
            return
        uid = sk[0]
        for o, cats in per_day.items():
            day = self.days[o]
            flags = high = 0
            for category, (n, n_high) in cats.items():
                flags += n
                high += n_high
                count_user(day.model_flagged, (before, category), uid, -n)
                count_user(day.model_flagged, (after, category), uid, n)
                if n_high:
                    count_user(day.model_flagged_high, (before, category), uid, -n_high)
                    count_user(day.model_flagged_high, (after, category), uid, n_high)
            risk = day.model_risk
            left = risk[before] - flags
            if left:
                risk[before] = left
            else:
                del risk[before]
            risk[after] = risk.get(after, 0) + flags
            if high:
                count_user(day.model_risk_high, before, uid, -high)
                count_user(day.model_risk_high, after, uid, high)

    def drop_day(self, o: int) -> None:
        """Forgets the session index of a pruned day's flags."""
        for sk in [sk for sk, per_day in self.sess_flags.items() if o in per_day]:
            per_day = self.sess_flags[sk]
            del per_day[o]
            if not per_day:
                del self.sess_flags[sk]


def count_user(counts: dict[K, dict[str, int]], key: K, uid: str, n: int) -> None:
    """Adds ``n`` to a user's count in a multiset of users per key (dropping zeros)."""
    users = counts.get(key)
    if users is None:
        users = counts[key] = {}
    left = users.get(uid, 0) + n
    if left:
        users[uid] = left
    else:
        del users[uid]
        if not users:
            del counts[key]
