"""The oracle of engagement in depth (docs/metrics.md): retention, lifecycle, stickiness
distribution, in plain Python over the events in log order, written from the definitions and
not from the SQL. The whole history, no range."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from tests.oracle import dedupe, event_day
from usersignals.ingest.contract import Event


def period_of(day: date, period: str) -> date:
    """The first day of the UTC day or ISO week (Monday) holding ``day``."""
    return day if period == "day" else day - timedelta(days=day.weekday())


def _periods(first: date, last: date, step: int) -> list[date]:
    out = [first]
    while out[-1] < last:
        out.append(out[-1] + timedelta(days=step))
    return out


def oracle_engagement(events_in_log_order: Iterable[Event], period: str = "week") -> dict[str, Any]:
    step = 1 if period == "day" else 7
    active: dict[date, set[str]] = {}  # period -> users active in it
    days: dict[tuple[date, str], set[date]] = {}  # (ISO week, user) -> days active
    for e in dedupe(events_in_log_order):
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
