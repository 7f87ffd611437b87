"""The oracle of the history-only keys (docs/metrics.md): retention, lifecycle, stickiness
distribution and the weekly flagged share, in plain Python over the events in log order,
written from the definitions and not from the SQL. The whole history, no range."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from tests.oracle import attributed_models, counted, event_day, week_start_of
from usersignals.ingest.contract import Event
from usersignals.ingest.rules import CHOICES


def period_of(day: date, period: str) -> date:
    """The first day of the day or week holding ``day`` (weeks start on Monday unless
    :func:`tests.oracle.calendar` says otherwise)."""
    return day if period == "day" else week_start_of(day)


def _periods(first: date, last: date, step: int) -> list[date]:
    out = [first]
    while out[-1] < last:
        out.append(out[-1] + timedelta(days=step))
    return out


def oracle_engagement(events_in_log_order: Iterable[Event], period: str = "week") -> dict[str, Any]:
    step = 1 if period == "day" else 7
    active: dict[date, set[str]] = {}  # period -> users active in it
    days: dict[tuple[date, str], set[date]] = {}  # (ISO week, user) -> days active
    for e in counted(events_in_log_order):
        d = event_day(e)
        active.setdefault(period_of(d, period), set()).add(e.user_id)
        days.setdefault((period_of(d, "week"), e.user_id), set()).add(d)
    if not active:
        return {"retention": [], "lifecycle": [], "stickiness_distribution": []}
    all_periods = _periods(min(active), max(active), step)
    seen: set[str] = set()
    cohorts: dict[date, set[str]] = {}
    for q in all_periods:
        new = active.get(q, set()) - seen
        if new:
            cohorts[q] = new
        seen |= new

    retention = []
    for c, members in sorted(cohorts.items()):
        later = [q for q in all_periods if q >= c]
        for n, q in enumerate(later):
            retention.append(
                {
                    "cohort": c.isoformat(),
                    "period": n,
                    "cohort_users": len(members),
                    "users": len(members & active.get(q, set())),
                    "users_on_or_after": len(
                        {u for u in members if any(u in active.get(r, set()) for r in later[n:])}
                    ),
                }
            )

    lifecycle = []
    for i, q in enumerate(all_periods):
        now = active.get(q, set())
        before = active.get(all_periods[i - 1], set()) if i else set()
        new = cohorts.get(q, set())
        counts = {
            "new": len(new),
            "returning": len(now & before),
            "resurrecting": len(now - before - new),
            "dormant": len(before - now),
        }
        lifecycle += [{"period": q.isoformat(), "status": s, "users": n} for s, n in counts.items()]

    histogram: dict[tuple[date, int], int] = {}
    for (week, _user), active_days in days.items():
        key = (week, len(active_days))
        histogram[key] = histogram.get(key, 0) + 1
    distribution = [
        {"week": w.isoformat(), "days_active": k, "users": n}
        for (w, k), n in sorted(histogram.items())
    ]
    return {"retention": retention, "lifecycle": lifecycle, "stickiness_distribution": distribution}


def oracle_wellbeing(events_in_log_order: Iterable[Event]) -> list[dict[str, Any]]:
    events = counted(events_in_log_order)
    attributed = attributed_models(events)
    active: dict[date, set[str]] = {}
    with_model: dict[tuple[date, str], set[str]] = {}
    flags: list[tuple[date, str | None, str, str, bool]] = []
    for e in events:
        week = period_of(event_day(e), "week")
        active.setdefault(week, set()).add(e.user_id)
        if e.model is not None:
            with_model.setdefault((week, e.model), set()).add(e.user_id)
        if e.type == "risk_flag":
            assert e.category is not None
            high = e.severity in ("high", "critical")
            flags.append((week, attributed[e.event_id], e.category, e.user_id, high))
    rows = []
    for week in sorted(active):
        models = {m for w, m in with_model if w == week}
        models |= {m for w, m, *_ in flags if w == week and m is not None}
        for model in [None, *sorted(models)]:
            users = active[week] if model is None else with_model.get((week, model), set())
            for category in sorted(CHOICES["category"]):
                mine = [
                    f
                    for f in flags
                    if f[0] == week and f[2] == category and (model is None or f[1] == model)
                ]
                flagged = {f[3] for f in mine}
                high = {f[3] for f in mine if f[4]}
                n = len(users)
                rows.append(
                    {
                        "week": week.isoformat(),
                        "model": model,
                        "category": category,
                        "flagged_users": len(flagged),
                        "flagged_users_high": len(high),
                        "active_users": n,
                        "share": round(len(flagged) / n, 6) if n else None,
                        "share_high": round(len(high) / n, 6) if n else None,
                    }
                )
    return rows


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def oracle_sessions(events_in_log_order: Iterable[Event]) -> list[dict[str, Any]]:
    sessions: dict[tuple[str, str], list[Event]] = {}
    for e in counted(events_in_log_order):
        if e.session_id is not None:
            sessions.setdefault((e.user_id, e.session_id), []).append(e)
    by_day: dict[date, list[tuple[float, int]]] = {}
    for evs in sessions.values():
        ends = [e.duration_s for e in evs if e.type == "session_end" and e.duration_s is not None]
        first, last = min(e.ts for e in evs), max(e.ts for e in evs)
        length = max(ends) if ends else (last - first).total_seconds()
        messages = sum(1 for e in evs if e.type == "message")
        by_day.setdefault(min(event_day(e) for e in evs), []).append((length, messages))
    rows = []
    for day, cells in sorted(by_day.items()):
        lengths = [c[0] for c in cells]
        rows.append(
            {
                "day": day.isoformat(),
                "sessions": len(cells),
                "duration_p50_s": round(_quantile(lengths, 0.5), 6),
                "duration_p90_s": round(_quantile(lengths, 0.9), 6),
                "long_share": round(sum(1 for x in lengths if x > 3600) / len(cells), 6),
                "messages_per_session": round(sum(c[1] for c in cells) / len(cells), 6),
            }
        )
    return rows


def oracle_concentration(events_in_log_order: Iterable[Event]) -> list[dict[str, Any]]:
    sent: dict[date, dict[str, int]] = {}  # week -> user -> messages sent
    flagged: dict[date, set[str]] = {}
    for e in counted(events_in_log_order):
        week = period_of(event_day(e), "week")
        users = sent.setdefault(week, {})
        users[e.user_id] = users.get(e.user_id, 0) + (e.type == "message" and e.role == "user")
        if e.type == "risk_flag":
            flagged.setdefault(week, set()).add(e.user_id)
    rows = []
    for week, users in sorted(sent.items()):
        n = len(users)
        bands: dict[int, list[str]] = {b: [] for b in range(1, 11)}
        for user, messages in users.items():
            fewer = sum(1 for m in users.values() if m < messages)
            bands[1 + 10 * fewer // n].append(user)
        for band, members in bands.items():
            rows.append(
                {
                    "week": week.isoformat(),
                    "band": band,
                    "users": len(members),
                    "flagged_users": len(set(members) & flagged.get(week, set())),
                }
            )
    return rows


def oracle_history(events_in_log_order: Iterable[Event], period: str = "week") -> dict[str, Any]:
    """Every key of :data:`usersignals.warehouse.history.HISTORY_KEYS`."""
    events = list(events_in_log_order)
    return oracle_engagement(events, period) | {
        "sessions_daily": oracle_sessions(events),
        "wellbeing_weekly": oracle_wellbeing(events),
        "risk_concentration": oracle_concentration(events),
    }
