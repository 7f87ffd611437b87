"""Live metric state of one Kafka partition: exact, idempotent folds of valid events.

Every metric of ``metrics.md`` is kept as sets and last-writer-wins registers per UTC day of the
event's ``ts`` (architecture.md, "Exact numbers under at-least-once delivery"): folding an event
twice, or any prefix of the log again, changes nothing. Users are disjoint across partitions
(the topic is keyed by ``user_id``), so one :class:`PartitionState` per partition holds
everything about its users and distinct counts of several partitions simply add up.

The state is pure: no Kafka, no I/O. The worker persists what :meth:`PartitionState.apply`
returns (the events that were new) and rebuilds a state with :meth:`PartitionState.restore`.

Retention is measured in event time: days more than ``retention_days`` before the newest day
seen are no longer folded (counted in :attr:`PartitionState.late`) and :meth:`prune` drops
them. After pruning, DAU, events, feedback and risk rows of the kept days are unchanged;
WAU/MAU of a kept day are exact once the day is 29 days (WAU: 6) past the horizon. The weekly
flagged share is given only for ISO weeks held whole, none starting before the horizon
(:mod:`usersignals.metrics.wellbeing`).

Decisions the spec leaves open, taken here:

- Dedupe is per partition. An event_id reused by another user lands on another partition and
  counts there too; every real redelivery carries the same user, so this never matters.
- An id is forgotten when its day is pruned: a copy with other content on a later day would
  then count (a client reusing ids across more than the retention; nothing else).
- ``late`` is a plain counter here (a redelivered late event counts again); the worker's
  keeper counts each input record's late events once and persists them. It is a health
  signal for the stream, not a metric of ``metrics.md``.
- Gauges give latest votes both on the newest day and over all held days (``votes_day``,
  ``votes_total``); risk flags and preferences over all held days.
- ``ts`` is UTC (the contract normalises it): the day is ``ts.toordinal()``.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from usersignals.errors import ConfigError
from usersignals.metrics.activity import at, windows
from usersignals.metrics.attribution import ModelRefs
from usersignals.metrics.day import DayState, add_counts
from usersignals.metrics.feedback import Feedback, feedback_rows
from usersignals.metrics.flattery import day_counts
from usersignals.metrics.periods import WEEK_DAYS, iso_week
from usersignals.metrics.risk import Risk
from usersignals.metrics.wellbeing import served_weeks, week_flags

if TYPE_CHECKING:
    from usersignals.ingest.contract import Event

__all__ = ["PartitionState", "RejectionKey"]

RejectionKey = tuple[int, int, "int | None"]
"""Where a rejection came from: (partition, offset, index in the batch or None)."""


class PartitionState:
    """All live metric state of one Kafka partition.

    Args:
        retention_days: Days of event time kept behind the newest day seen.

    Raises:
        ConfigError: ``retention_days`` is below 1.
    """

    def __init__(self, retention_days: int = 35) -> None:
        if isinstance(retention_days, bool) or retention_days < 1:
            raise ConfigError("retention_days", retention_days, "must be at least 1")
        self.retention_days = retention_days
        self.late = 0
        """Events older than the horizon when they arrived (not folded; redeliveries count)."""
        self._newest = 0  # ordinal of the newest day seen (0: none)
        self._days: dict[int, DayState] = {}
        self._seen: set[str] = set()
        self._users: dict[str, str] = {}  # one string per user held (shared by every day)
        self._identity_ids: dict[int, list[str]] = {}  # day -> ids of its identity calls
        # the metric units that fold more than the day's sets (docs/metrics.md)
        self._refs = ModelRefs(self._days)
        self._feedback = Feedback(self._days, self._refs)
        self._risk = Risk(self._days, self._refs)
        self._refs.bind(self._feedback, self._risk)
        self._rejected: dict[RejectionKey, tuple[str, int]] = {}  # reason, day received (0: ?)

    # -- folding -----------------------------------------------------------------------------

    def apply(self, events: Sequence[Event]) -> list[Event]:
        """Folds valid events, in log order, into the state.

        Returns:
            The events that were new (not a duplicate ``event_id``, not older than the
            horizon), in order: replaying them into a fresh state rebuilds this one.
        """
        return self._fold(events, check_late=True)

    def restore(self, events: Iterable[Event]) -> None:
        """Rebuilds state from events :meth:`apply` returned, in any order, ignoring the horizon.

        Call :meth:`prune` afterwards to drop what has fallen behind the horizon.
        """
        self._fold(events, check_late=False)

    def _fold(self, events: Iterable[Event], *, check_late: bool) -> list[Event]:
        # The hot loop of the worker: plain set/dict operations, the current day's containers
        # bound to locals, and a day looked up only when it changes.
        new: list[Event] = []
        new_append = new.append
        seen = self._seen
        seen_add = seen.add
        users = self._users
        users_get = users.get
        days = self._days
        cur = -1
        day = DayState()
        ids_append = day.ids.append
        users_add = day.users.add
        types = day.types
        model_users = day.model_users
        refs_add = self._refs.add
        vote_add = self._feedback.add
        flag_add = self._risk.add
        identity_ids = self._identity_ids
        for ev in events:
            eid = ev.event_id
            if eid in seen:
                continue
            o = ev.ts.toordinal()
            if ev.type == "identify":
                # an identity call is no activity: only its id is held (one id is one event,
                # whatever its type), until its day passes the horizon
                if check_late and o < self._newest - self.retention_days:
                    continue
                seen_add(eid)
                identity_ids.setdefault(o, []).append(eid)
                new_append(ev)
                continue
            if o != cur:
                if o > self._newest:
                    self._newest = o
                elif check_late and o < self._newest - self.retention_days:
                    self.late += 1
                    continue
                found = days.get(o)
                if found is None:
                    found = days[o] = DayState()
                day = found
                cur = o
                ids_append = day.ids.append
                users_add = day.users.add
                types = day.types
                model_users = day.model_users
            seen_add(eid)
            ids_append(eid)
            uid = ev.user_id
            known = users_get(uid)
            if known is None:
                users[uid] = uid
            else:
                uid = known
            users_add(uid)
            t = ev.type
            types[t] = types.get(t, 0) + 1
            model = ev.model
            if model is not None:
                mu = model_users.get(model)
                if mu is None:
                    mu = model_users[model] = set()
                mu.add(uid)
                if t == "message" or t == "session_start":
                    refs_add(ev, uid, o, day)  # a model reference (attribution)
            if t == "feedback":
                vote_add(ev, uid, o, day)
            elif t == "risk_flag":
                flag_add(ev, uid, o, day)
            elif t == "preference":
                pk = (ev.model_a, ev.model_b, ev.winner)
                day.prefs[pk] = day.prefs.get(pk, 0) + 1
            new_append(ev)
        return new

    def add_rejections(
        self, rejections: Iterable[tuple[RejectionKey, str]], received: date | None = None
    ) -> list[tuple[RejectionKey, str]]:
        """Counts rejected input once per (partition, offset, index), whatever the redelivery.

        Args:
            rejections: ``((partition, offset, index), reason)`` pairs.
            received: The UTC day the input record was received (its Kafka timestamp), by
                which a report's day range selects rejections; None when unknown (counted
                only by reports over every day).

        Returns:
            The pairs that were new (persist them; pass them here again to restore).
        """
        day = received.toordinal() if received is not None else 0
        new: list[tuple[RejectionKey, str]] = []
        for key, reason in rejections:
            if key not in self._rejected:
                self._rejected[key] = (reason, day)
                new.append((key, reason))
        return new

    # -- retention ---------------------------------------------------------------------------

    @property
    def newest_day(self) -> date | None:
        """The newest event day seen (it never moves back, even when that day is pruned)."""
        return date.fromordinal(self._newest) if self._newest else None

    @property
    def horizon(self) -> date | None:
        """The oldest day still folded: events before it are late."""
        return date.fromordinal(self._newest - self.retention_days) if self._newest else None

    @property
    def needs_prune(self) -> bool:
        """Whether some held day is behind the horizon."""
        return bool(self._days) and min(self._days) < self._newest - self.retention_days

    def prune(self) -> list[date]:
        """Drops the days behind the horizon, their event ids and the votes whose latest is there.

        Returns:
            The dropped days, oldest first (the worker deletes their persisted events).
        """
        cutoff = self._newest - self.retention_days
        dropped = sorted(o for o in self._days if o < cutoff)
        for o in dropped:
            day = self._days.pop(o)
            self._seen.difference_update(day.ids)
            self._feedback.drop_day(day)
            self._risk.drop_day(o)
            self._refs.drop_day(o, day)
        if dropped:
            held: set[str] = set().union(*(d.users for d in self._days.values()))
            self._users = {u: u for u in held}
        for o in [o for o in self._identity_ids if o < cutoff]:
            self._seen.difference_update(self._identity_ids.pop(o))
            if o not in dropped:
                dropped.append(o)
        return [date.fromordinal(o) for o in sorted(dropped)]

    # -- reading -----------------------------------------------------------------------------

    @property
    def users(self) -> Container[str]:
        """The users with an event held (all of this partition: a record's events of these
        users need no partition check)."""
        return self._users

    def day_range(self) -> tuple[date, date] | None:
        """First and last day with events held (phase one of the partial protocol)."""
        if not self._days:
            return None
        return date.fromordinal(min(self._days)), date.fromordinal(max(self._days))

    def rejected(self) -> dict[str, int]:
        """Rejections counted per reason."""
        counts: dict[str, int] = {}
        for reason, _ in self._rejected.values():
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    def rejected_by_day(self) -> list[list[Any]]:
        """[day received (``YYYY-MM-DD``, or None when unknown), reason, rejections] rows."""
        counts: dict[tuple[int, str], int] = {}
        for cell in self._rejected.values():
            key = (cell[1], cell[0])
            counts[key] = counts.get(key, 0) + 1
        return [
            [date.fromordinal(o).isoformat() if o else None, reason, n]
            for (o, reason), n in counts.items()
        ]

    def partial(self, day_range: tuple[date, date] | None) -> dict[str, Any]:
        """This partition's share of a report over a GLOBAL day range (JSON-serialisable).

        Rows cover the days of ``day_range`` (None: no days); trailing windows (WAU, MAU,
        users at risk weekly) also look at held days before it. Distinct counts are this
        partition's own: partials of disjoint partitions add up (``livereport.merge_partials``);
        the weekly ones (flattery, ``week_users``, ``wellbeing``) are distinct per week here.
        """
        days = self._days
        lo, hi = (day_range[0].toordinal(), day_range[1].toordinal()) if day_range else (1, 0)
        kept = sorted(o for o in days if lo <= o <= hi)
        active = windows(days, lo, hi)
        events: dict[str, int] = {}
        feedback: list[list[Any]] = []
        risk: list[list[Any]] = []
        preferences: list[list[Any]] = []
        types: dict[str, int] = {}
        for o in kept:
            d = days[o]
            iso = date.fromordinal(o).isoformat()
            events[iso] = len(d.ids)
            feedback.extend(feedback_rows(iso, d.fb))
            for rk, flags in d.risk_flags.items():
                risk.append([iso, rk[0], rk[1], flags, len(d.risk_users[rk])])
            preferences.extend([iso, *k, n] for k, n in d.prefs.items())
            add_counts(types, d.types)
        return {
            "range": [day_range[0].isoformat(), day_range[1].isoformat()] if day_range else None,
            "active": active,
            "events": events,
            "types": types,
            "feedback": feedback,
            "risk": risk,
            **self.weekly(day_range, wellbeing=True),
            "preferences": preferences,
            "rejected": self.rejected_by_day(),
            "late": self.late,
        }

    def weekly(
        self, day_range: tuple[date, date] | None, *, wellbeing: bool = False
    ) -> dict[str, Any]:
        """The weekly parts of :meth:`partial` alone (the flattery watch is cheap enough for
        every scrape).

        Returns:
            ``flattery``: [model, week, thumbs up, thumbs down, active users, risk flags, users
            at risk] rows; ``week_users``: {week: distinct users active in it} (the shares'
            denominator). Only days of ``day_range`` count. With ``wellbeing``, also
            ``horizon`` (:attr:`horizon`, ``YYYY-MM-DD`` or None) and ``wellbeing``: [week,
            model (None: all models), category, flagged users, flagged users high] rows with a
            flagged user (:func:`usersignals.metrics.wellbeing.week_flags`), for the weeks of
            ``day_range`` this partition holds whole: seven days in the range, none before the
            horizon (:func:`~usersignals.metrics.wellbeing.served_weeks`; the merge takes the
            latest horizon of all partitions).
        """
        lo, hi = (day_range[0].toordinal(), day_range[1].toordinal()) if day_range else (1, 0)
        weeks: dict[str, list[DayState]] = {}
        for o in sorted(o for o in self._days if lo <= o <= hi):
            weeks.setdefault(iso_week(date.fromordinal(o)), []).append(self._days[o])
        flattery: list[list[Any]] = []
        week_users: dict[str, int] = {}
        for week, wdays in weeks.items():
            week_users[week] = len(set().union(*(d.users for d in wdays)))
            flattery.extend(day_counts(week, wdays))
        out: dict[str, Any] = {"flattery": flattery, "week_users": week_users}
        if wellbeing:
            horizon = self.horizon
            rows: list[list[Any]] = []
            if day_range is not None:
                for week in served_weeks(day_range[0], day_range[1], horizon):
                    if week in weeks:
                        rows.extend(week_flags(week, weeks[week]))
            out["horizon"] = horizon.isoformat() if horizon else None
            out["wellbeing"] = rows
        return out

    def gauges(self, day: date | None = None) -> dict[str, Any]:
        """What the Prometheus exposition needs, at ``day`` (default: the newest day).

        Window counts at ``day`` are exact when ``day`` is at or after :attr:`newest_day`
        (sum them over partitions at one common day). Totals cover every held day.

        Returns:
            ``dau``/``wau``/``mau``/``users_at_risk_weekly`` at the day; ``events_by_type``
            {type: distinct events}; ``votes_day`` and ``votes_total`` {(model, rating): latest
            votes} on the day / over the held days (rating 1 or -1); ``risk_flags``
            {(category, severity): flags}; ``preferences`` {(model_a, model_b, winner): votes};
            ``late``; ``rejected`` {reason: count}. Per model version (the flattery watch's
            live series): ``votes_7d`` {(model, rating): latest votes} on the 7 days ending at
            the day; ``model_users_7d`` {model: distinct users with an event carrying it} on
            those days; ``risk_flags_by_model`` {model: risk flags} over the held days.
        """
        ref = day.toordinal() if day is not None else self._newest
        days = self._days
        dau, wau, mau, at_risk = at(days, ref)

        types: dict[str, int] = {}
        votes: dict[tuple[str | None, int], int] = {}
        risk: dict[tuple[str | None, str | None], int] = {}
        prefs: dict[tuple[str | None, str | None, str | None], int] = {}
        model_risk: dict[str, int] = {}
        for d in days.values():
            add_counts(types, d.types)
            add_counts(votes, d.fb)
            add_counts(risk, d.risk_flags)
            add_counts(prefs, d.prefs)
            add_counts(model_risk, d.model_risk)
        week = self._week(ref)
        votes_7d: dict[tuple[str | None, int], int] = {}
        for d in week:
            add_counts(votes_7d, d.fb)
        models = {m for d in week for m in d.model_users}
        today = days.get(ref)
        return {
            "day": date.fromordinal(ref) if ref else None,
            "dau": dau,
            "wau": wau,
            "mau": mau,
            "users_at_risk_weekly": at_risk,
            "events_by_type": types,
            "votes_day": dict(today.fb) if today else {},
            "votes_total": votes,
            "risk_flags": risk,
            "preferences": prefs,
            "late": self.late,
            "rejected": self.rejected(),
            "votes_7d": votes_7d,
            "model_users_7d": {m: self.users_of_models([m], day) for m in models},
            "risk_flags_by_model": model_risk,
        }

    def risk_high_by_model(self) -> dict[tuple[date, str | None], dict[str, int]]:
        """{(day, attributed model): {user: high or critical flags}} over the held days."""
        return {
            (date.fromordinal(o), model): dict(users)
            for o, d in self._days.items()
            for model, users in d.model_risk_high.items()
        }

    def users_of_models(self, models: Iterable[str], day: date | None = None) -> int:
        """Distinct users with an event carrying any of ``models`` on the 7 days ending at
        ``day`` (default: the newest day): the ``other`` label of folded models."""
        ref = day.toordinal() if day is not None else self._newest
        wanted = list(models)
        week = self._week(ref)
        return len(set().union(*(d.model_users.get(m, ()) for d in week for m in wanted)))

    def _week(self, ref: int) -> list[DayState]:
        days = self._days
        return [days[o] for o in range(ref - WEEK_DAYS + 1, ref + 1) if o in days]
