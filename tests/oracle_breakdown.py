"""The oracle of the breakdowns (docs/metrics.md, "Breakdowns"): DAU/WAU/MAU, thumbs and risk
flags per value of ``model``, ``platform`` or ``properties.KEY``, with the values beyond the
limit folded into "(other)", in plain Python over the events in log order, written from the
definitions (a set per day, value and window) and not from the SQL."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from tests.oracle import attributed_models, counted, event_day, latest_votes
from usersignals.ingest.contract import Event

__all__ = ["OTHER", "oracle_breakdown", "value_of"]

OTHER = "(other)"


def value_of(event: Event, by: str) -> str | None:
    """The breakdown value an event carries, as text: a string as it is, any other JSON value
    as its compact JSON text; None when the event lacks it (or it is JSON null)."""
    if by == "model":
        return event.model
    if by == "platform":
        return event.platform
    assert by.startswith("properties.")
    value = (event.properties or {}).get(by.removeprefix("properties."))
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _order(value: str | None) -> tuple[int, str]:
    """NULL first, then the kept values as strings, then (other)."""
    if value is None:
        return (0, "")
    return (2, "") if value == OTHER else (1, value)


def oracle_breakdown(
    events_in_log_order: Iterable[Event],
    by: str,
    limit: int = 20,
    day_from: date | None = None,
    day_to: date | None = None,
) -> dict[str, Any]:
    """What ``breakdown_report(con, by, day_from, day_to, limit=limit)`` returns."""
    events = counted(events_in_log_order)

    def shown(d: date) -> bool:
        return (day_from is None or d >= day_from) and (day_to is None or d <= day_to)

    # rank the values by their distinct users over the days shown; ties: the smaller value
    users_of: dict[str, set[str]] = {}
    for e in events:
        v = value_of(e, by)
        if v is not None and v != OTHER and shown(event_day(e)):
            users_of.setdefault(v, set()).add(e.user_id)
    ranked = sorted(users_of, key=lambda v: (-len(users_of[v]), v))
    kept = set(ranked[:limit])

    def fold(v: str | None) -> str | None:
        return v if v is None or v in kept else OTHER

    out: dict[str, Any] = {
        "active_users_by": [],
        "feedback_by": [],
        "risk_flags_by": [],
        "breakdown": {"by": by, "limit": limit},
    }
    if not events:
        return out

    # (user, day, folded value) for every event
    marks = {(e.user_id, event_day(e), fold(value_of(e, by))) for e in events}
    first = min(event_day(e) for e in events)
    last = max(event_day(e) for e in events)
    values = sorted({m[2] for m in marks}, key=_order)
    d = first
    while d <= last:
        if shown(d):
            for v in values:

                def users(days: int, v: str | None = v, d: date = d) -> int:
                    lo = d - timedelta(days=days - 1)
                    return len({u for u, day, w in marks if w == v and lo <= day <= d})

                if users(30):
                    out["active_users_by"].append(
                        {
                            "day": d.isoformat(),
                            "key": v,
                            "dau": users(1),
                            "wau": users(7),
                            "mau": users(30),
                        }
                    )
        d += timedelta(days=1)

    model_of = attributed_models(events)

    def counted_under(e: Event) -> str | None:
        return fold(model_of[e.event_id] if by == "model" else value_of(e, by))

    votes: dict[tuple[date, str | None], list[int]] = {}
    for vote in latest_votes(events):
        if vote.rating in (1, -1) and shown(event_day(vote)):
            cell = votes.setdefault((event_day(vote), counted_under(vote)), [0, 0])
            cell[0 if vote.rating == 1 else 1] += 1
    for (day, v), (up, down) in sorted(votes.items(), key=lambda kv: (kv[0][0], _order(kv[0][1]))):
        out["feedback_by"].append(
            {"day": day.isoformat(), "key": v, "thumbs_up": up, "thumbs_down": down}
        )

    flags: dict[tuple[date, str | None, str | None, str | None], list[Event]] = {}
    for e in events:
        if e.type == "risk_flag" and shown(event_day(e)):
            cell_key = (event_day(e), counted_under(e), e.category, e.severity)
            flags.setdefault(cell_key, []).append(e)
    for (day, v, category, severity), here in sorted(
        flags.items(),
        key=lambda kv: (
            kv[0][0],
            _order(kv[0][1]),
            kv[0][2] or "",
            kv[0][2] is None,
            kv[0][3] or "",
            kv[0][3] is None,
        ),
    ):
        out["risk_flags_by"].append(
            {
                "day": day.isoformat(),
                "key": v,
                "category": category,
                "severity": severity,
                "flags": len(here),
                "users": len({f.user_id for f in here}),
            }
        )
    return out
