"""A deliberately naive reading of metrics.md: the yardstick for the live and warehouse paths.

It shares no code with either path. Every number is recomputed from the list of events by the
most literal reading of its definition (a set comprehension per day and window), so it is slow
and obviously correct. "arena" is always [] (the arena has its own tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, timedelta
from fractions import Fraction
from typing import Any

from usersignals.ingest.contract import Event

__all__ = ["dedupe", "event_day", "oracle_report"]


def event_day(event: Event) -> date:
    """The UTC calendar day of the event's ts."""
    return event.ts.astimezone(UTC).date()


def dedupe(events_in_log_order: Iterable[Event]) -> list[Event]:
    """Each event_id once: the first copy in log order wins."""
    first: dict[str, Event] = {}
    for event in events_in_log_order:
        if event.event_id not in first:
            first[event.event_id] = event
    return list(first.values())


def _days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _users_in(events: list[Event], first: date, last: date) -> set[str]:
    return {e.user_id for e in events if first <= event_day(e) <= last}


def _iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _latest_votes(events: list[Event]) -> list[Event]:
    """For each (user_id, message_id), the feedback event with the greatest (ts, event_id)."""
    latest: dict[tuple[str, str | None], Event] = {}
    for e in events:
        if e.type != "feedback":
            continue
        key = (e.user_id, e.message_id)
        if key not in latest or (e.ts, e.event_id) > (latest[key].ts, latest[key].event_id):
            latest[key] = e
    return list(latest.values())


def oracle_report(
    events_in_log_order: Iterable[Event], rejected: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The report JSON shape (see the brief) of a log of valid events, "arena" left empty."""
    events = dedupe(events_in_log_order)
    votes = [v for v in _latest_votes(events) if v.rating in (1, -1)]
    report: dict[str, Any] = {
        "active_users": [],
        "events_by_day": [],
        "feedback_by_model": [],
        "risk_flags_daily": [],
        "users_at_risk_weekly": [],
        "rejected": [
            {"reason": reason, "count": count}
            for reason, count in sorted((rejected or {}).items())
            if count
        ],
        "arena": [],
        "flattery_watch": [],
    }
    if not events:
        return report

    all_days = sorted({event_day(e) for e in events})
    series = _days_between(all_days[0], all_days[-1])
    at_risk_events = [
        e for e in events if e.type == "risk_flag" and e.severity in ("high", "critical")
    ]
    for d in series:
        dau = len(_users_in(events, d, d))
        wau = len(_users_in(events, d - timedelta(days=6), d))
        mau = len(_users_in(events, d - timedelta(days=29), d))
        report["active_users"].append(
            {
                "day": d.isoformat(),
                "dau": dau,
                "wau": wau,
                "mau": mau,
                "stickiness": round(dau / mau, 6) if mau else 0.0,
            }
        )
        at_risk = len(_users_in(at_risk_events, d - timedelta(days=6), d))
        report["users_at_risk_weekly"].append({"day": d.isoformat(), "users": at_risk})

    for d in all_days:
        count = len({e.event_id for e in events if event_day(e) == d})
        report["events_by_day"].append({"day": d.isoformat(), "events": count})

    feedback_keys = sorted(
        {(event_day(v), v.model) for v in votes}, key=lambda k: (k[0], k[1] or "", k[1] is None)
    )
    for d, model in feedback_keys:
        here = [v for v in votes if event_day(v) == d and v.model == model]
        report["feedback_by_model"].append(
            {
                "day": d.isoformat(),
                "model": model,
                "thumbs_up": sum(1 for v in here if v.rating == 1),
                "thumbs_down": sum(1 for v in here if v.rating == -1),
            }
        )

    flags = [e for e in events if e.type == "risk_flag"]
    flag_keys = sorted(
        {(event_day(f), f.category, f.severity) for f in flags},
        key=lambda k: (k[0], k[1] or "", k[1] is None, k[2] or "", k[2] is None),
    )
    for d, category, severity in flag_keys:
        here = [
            f for f in flags if (event_day(f), f.category, f.severity) == (d, category, severity)
        ]
        report["risk_flags_daily"].append(
            {
                "day": d.isoformat(),
                "category": category,
                "severity": severity,
                "flags": len({f.event_id for f in here}),
                "users": len({f.user_id for f in here}),
            }
        )

    report["flattery_watch"] = _flattery(events, votes)
    return report


def _flattery(events: list[Event], votes: list[Event]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    cells = sorted({(e.model, _iso_week(event_day(e))) for e in events if e.model is not None})
    for model, week in cells:
        in_week = [e for e in events if _iso_week(event_day(e)) == week]
        with_model = [e for e in in_week if e.model == model]
        active = len({e.user_id for e in with_model})
        cast = [v for v in votes if v.model == model and _iso_week(event_day(v)) == week]
        up = sum(1 for v in cast if v.rating == 1)
        down = sum(1 for v in cast if v.rating == -1)
        risk = [e for e in with_model if e.type == "risk_flag"]
        rows[(model, week)] = {
            "model": model,
            "week": week,
            "thumbs_up": up,
            "thumbs_down": down,
            "rate": Fraction(up, up + down) if up + down else None,
            "active_users": active,
            "active_share": round(active / len({e.user_id for e in in_week}), 6),
            "risk_flags": len(risk),
            "per_1k": Fraction(len(risk) * 1000, active),
            "users_at_risk": len({e.user_id for e in risk if e.severity in ("high", "critical")}),
        }
    out = []
    for (model, week), row in rows.items():
        year, num = week.split("-W")
        before = date.fromisocalendar(int(year), int(num), 1) - timedelta(days=7)
        prev = rows.get((model, _iso_week(before)))
        rising = (
            prev is not None
            and row["rate"] is not None
            and prev["rate"] is not None
            and row["rate"] > prev["rate"]
            and row["per_1k"] > prev["per_1k"]
        )
        out.append(
            {
                "model": model,
                "week": week,
                "thumbs_up": row["thumbs_up"],
                "thumbs_down": row["thumbs_down"],
                "thumbs_up_rate": round(float(row["rate"]), 6) if row["rate"] is not None else None,
                "active_users": row["active_users"],
                "active_share": row["active_share"],
                "risk_flags": row["risk_flags"],
                "risk_flags_per_1k": round(float(row["per_1k"]), 6),
                "users_at_risk": row["users_at_risk"],
                "flag": rising,
            }
        )
    return sorted(out, key=lambda r: (r["model"], r["week"]))
