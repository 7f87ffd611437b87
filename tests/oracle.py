"""A deliberately naive reading of metrics.md: the yardstick for the live and warehouse paths.

It shares no code with either path. Every number is recomputed from the list of events by the
most literal reading of its definition (a set comprehension per day and window), so it is slow
and obviously correct. "arena" is always [] (the arena has its own tests).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from scipy.stats import chi2, norm

from usersignals.ingest.contract import Event

__all__ = [
    "attributed_models",
    "calendar",
    "counted",
    "dedupe",
    "event_day",
    "latest_votes",
    "oracle_report",
    "week_start_of",
]


_CALENDAR: dict[str, Any] = {"zone": UTC, "week_start": 0}
"""The oracle's calendar: the zone of its days and the weekday its weeks start on (Monday 0)."""


@contextmanager
def calendar(tz: str = "UTC", week_start: str = "monday") -> Iterator[None]:
    """Days in zone ``tz`` and weeks starting on ``week_start`` inside the block (``--tz``,
    ``--week-start``); UTC days and Monday weeks otherwise."""
    before = dict(_CALENDAR)
    _CALENDAR.update(zone=ZoneInfo(tz), week_start={"monday": 0, "sunday": 6}[week_start])
    try:
        yield
    finally:
        _CALENDAR.update(before)


def week_start_of(day: date) -> date:
    """The first day of the calendar week (Monday unless :func:`calendar` says) of ``day``."""
    return day - timedelta(days=(day.weekday() - _CALENDAR["week_start"]) % 7)


def event_day(event: Event) -> date:
    """The calendar day of the event's ts: UTC unless :func:`calendar` says otherwise."""
    return event.ts.astimezone(_CALENDAR["zone"]).date()


def dedupe(events_in_log_order: Iterable[Event]) -> list[Event]:
    """Each event_id once: the first copy in log order wins."""
    first: dict[str, Event] = {}
    for event in events_in_log_order:
        if event.event_id not in first:
            first[event.event_id] = event
    return list(first.values())


def counted(events_in_log_order: Iterable[Event]) -> list[Event]:
    """What the metrics count: :func:`dedupe`, then every event but identity calls
    (``identify`` is no activity; ``custom`` is activity and nothing else)."""
    return [e for e in dedupe(events_in_log_order) if e.type != "identify"]


def _days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _users_in(events: list[Event], first: date, last: date) -> set[str]:
    return {e.user_id for e in events if first <= event_day(e) <= last}


def _iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def latest_votes(events: list[Event]) -> list[Event]:
    """For each (user_id, message_id), the feedback event with the greatest (ts, event_id)."""
    latest: dict[tuple[str, str | None], Event] = {}
    for e in events:
        if e.type != "feedback":
            continue
        key = (e.user_id, e.message_id)
        if key not in latest or (e.ts, e.event_id) > (latest[key].ts, latest[key].event_id):
            latest[key] = e
    return list(latest.values())


def _earliest_model(candidates: list[Event]) -> str | None:
    """The model of the candidate with the smallest (ts, event_id) among those carrying one."""
    carrying = [e for e in candidates if e.model is not None]
    if not carrying:
        return None
    return min(carrying, key=lambda e: (e.ts, e.event_id)).model


def attributed_models(events: list[Event]) -> dict[str, str | None]:
    """event_id -> model of every feedback and risk_flag event (docs/attribution.md).

    A feedback event's own model, else the model of the message it rates (the earliest
    ``message`` event of that user and message_id carrying a model), else the model of its
    session (the earliest ``session_start`` or ``message`` event of that user and session_id
    carrying a model); a risk flag's own model, else its session's; else None. ``events`` are
    deduplicated already.
    """

    def of_message(e: Event) -> str | None:
        if e.message_id is None:
            return None
        return _earliest_model(
            [
                m
                for m in events
                if m.type == "message" and m.user_id == e.user_id and m.message_id == e.message_id
            ]
        )

    def of_session(e: Event) -> str | None:
        if e.session_id is None:
            return None
        return _earliest_model(
            [
                s
                for s in events
                if s.type in ("session_start", "message")
                and s.user_id == e.user_id
                and s.session_id == e.session_id
            ]
        )

    out: dict[str, str | None] = {}
    for e in events:
        if e.type == "feedback":
            model = e.model
            if model is None:
                model = of_message(e)
            if model is None:
                model = of_session(e)
            out[e.event_id] = model
        elif e.type == "risk_flag":
            out[e.event_id] = e.model if e.model is not None else of_session(e)
    return out


def oracle_report(
    events_in_log_order: Iterable[Event],
    rejected: Mapping[str, int] | None = None,
    day_from: date | None = None,
    day_to: date | None = None,
) -> dict[str, Any]:
    """The report JSON shape (see the brief) of a log of valid events, "arena" left empty.

    ``rejected`` is taken as it is (already counted for the range); ``day_from``/``day_to``
    choose the days shown.
    """
    events = counted(events_in_log_order)
    model_of = attributed_models(events)
    votes = [v for v in latest_votes(events) if v.rating in (1, -1)]
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
        return _in_range(report, day_from, day_to)

    all_days = sorted({event_day(e) for e in events})
    series = _days_between(all_days[0], all_days[-1])
    at_risk_events = [
        e for e in events if e.type == "risk_flag" and e.severity in ("high", "critical")
    ]
    first_day, last_day = all_days[0], all_days[-1]
    for d in series:
        # the newest day with data is still filling up; a window is whole once it starts
        # on or after the first day with data
        complete = d != last_day
        wau_complete = complete and d - timedelta(days=6) >= first_day
        mau_complete = complete and d - timedelta(days=29) >= first_day
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
                "complete": complete,
                "wau_complete": wau_complete,
                "mau_complete": mau_complete,
            }
        )
        at_risk = len(_users_in(at_risk_events, d - timedelta(days=6), d))
        report["users_at_risk_weekly"].append(
            {"day": d.isoformat(), "users": at_risk, "complete": wau_complete}
        )

    for d in all_days:
        count = len({e.event_id for e in events if event_day(e) == d})
        report["events_by_day"].append(
            {"day": d.isoformat(), "events": count, "complete": d != last_day}
        )

    feedback_keys = sorted(
        {(event_day(v), model_of[v.event_id]) for v in votes},
        key=lambda k: (k[0], k[1] or "", k[1] is None),
    )
    for d, model in feedback_keys:
        here = [v for v in votes if event_day(v) == d and model_of[v.event_id] == model]
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

    report["flattery_watch"] = _flattery(events, votes, model_of)
    return _in_range(report, day_from, day_to)


def _in_range(report: dict[str, Any], day_from: date | None, day_to: date | None) -> dict[str, Any]:
    """Day rows on a day of [day_from, day_to]; week rows of a week with a day in it."""

    def shown(d: date) -> bool:
        return (day_from is None or d >= day_from) and (day_to is None or d <= day_to)

    for key, rows in report.items():
        if key in ("arena", "rejected"):
            continue
        kept = []
        for row in rows:
            if "day" in row:
                days = [date.fromisoformat(row["day"])]
            else:
                year, num = row["week"].split("-W")
                monday = date.fromisocalendar(int(year), int(num), 1)
                days = [monday + timedelta(days=i) for i in range(7)]
            if any(shown(d) for d in days):
                kept.append(row)
        report[key] = kept
    report["range"] = {
        "from": day_from.isoformat() if day_from else None,
        "to": day_to.isoformat() if day_to else None,
    }
    report["tz"] = str(_CALENDAR["zone"])
    report["week_start"] = "monday" if _CALENDAR["week_start"] == 0 else "sunday"
    return report


def _flattery(
    events: list[Event], votes: list[Event], model_of: dict[str, str | None]
) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    cells = sorted({(e.model, _iso_week(event_day(e))) for e in events if e.model is not None})
    for model, week in cells:
        in_week = [e for e in events if _iso_week(event_day(e)) == week]
        with_model = [e for e in in_week if e.model == model]
        active = len({e.user_id for e in with_model})
        cast = [
            v for v in votes if model_of[v.event_id] == model and _iso_week(event_day(v)) == week
        ]
        up = sum(1 for v in cast if v.rating == 1)
        down = sum(1 for v in cast if v.rating == -1)
        risk = [e for e in in_week if e.type == "risk_flag" and model_of[e.event_id] == model]
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
    first_day = min(event_day(e) for e in events)
    last_day = max(event_day(e) for e in events)

    def whole(week: str) -> bool:
        year, num = week.split("-W")
        monday = date.fromisocalendar(int(year), int(num), 1)
        return first_day <= monday and monday + timedelta(days=6) < last_day

    out = []
    for (model, week), row in rows.items():
        year, num = week.split("-W")
        before = date.fromisocalendar(int(year), int(num), 1) - timedelta(days=7)
        prev = rows.get((model, _iso_week(before)))
        up, down = row["thumbs_up"], row["thumbs_down"]
        users, flags = row["active_users"], row["risk_flags"]
        p_up = p_risk = None
        if prev is not None:
            p_up = _p_rate_rose(
                up, up + down, prev["thumbs_up"], prev["thumbs_up"] + prev["thumbs_down"]
            )
            p_risk = _p_flags_rose(flags, users, prev["risk_flags"], prev["active_users"])
        rising = (
            prev is not None
            and whole(week)
            and whole(_iso_week(before))
            and up + down >= FLATTERY_MIN_VOTES
            and prev["thumbs_up"] + prev["thumbs_down"] >= FLATTERY_MIN_VOTES
            and users >= FLATTERY_MIN_USERS
            and prev["active_users"] >= FLATTERY_MIN_USERS
            and p_up is not None
            and p_risk is not None
            and p_up < FLATTERY_LEVEL
            and p_risk < FLATTERY_LEVEL
        )
        rate_ci = _wilson(up, up + down)
        flags_ci = (
            chi2.ppf(0.025, 2 * flags) / 2 if flags else 0.0,
            chi2.ppf(0.975, 2 * flags + 2) / 2,
        )
        out.append(
            {
                "model": model,
                "week": week,
                "complete": whole(week),
                "thumbs_up": up,
                "thumbs_down": down,
                "thumbs_up_rate": round(float(row["rate"]), 6) if row["rate"] is not None else None,
                "thumbs_up_rate_low": _round(rate_ci[0]) if rate_ci else None,
                "thumbs_up_rate_high": _round(rate_ci[1]) if rate_ci else None,
                "active_users": users,
                "active_share": row["active_share"],
                "risk_flags": flags,
                "risk_flags_per_1k": round(float(row["per_1k"]), 6),
                "risk_flags_per_1k_low": _round(flags_ci[0] * 1000 / users),
                "risk_flags_per_1k_high": _round(flags_ci[1] * 1000 / users),
                "users_at_risk": row["users_at_risk"],
                "p_thumbs_up_rise": _round(p_up),
                "p_risk_rise": _round(p_risk),
                "flagged": rising,
            }
        )
    return sorted(out, key=lambda r: (r["model"], r["week"]))


FLATTERY_LEVEL = 0.05
FLATTERY_MIN_VOTES = 30
FLATTERY_MIN_USERS = 30
"""The flattery watch's default settings (metrics.md; Settings.flattery_*)."""


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def _wilson(k: int, n: int) -> tuple[float, float] | None:
    """Wilson score interval, 95 %."""
    if not n:
        return None
    z = norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _p_rate_rose(k1: int, n1: int, k2: int, n2: int) -> float | None:
    """One-sided pooled two-proportion z-test of k1/n1 > k2/n2."""
    if not n1 or not n2 or k1 + k2 in (0, n1 + n2):
        return None
    pooled = (k1 + k2) / (n1 + n2)
    z = (k1 / n1 - k2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(norm.sf(z))


def _p_flags_rose(f1: int, u1: int, f2: int, u2: int) -> float | None:
    """One-sided score test of f1 | f1 + f2 ~ Binomial(f1 + f2, u1 / (u1 + u2)), upper tail."""
    n = f1 + f2
    if not n or not u1 or not u2:
        return None
    q = u1 / (u1 + u2)
    z = (f1 - n * q) / math.sqrt(n * q * (1 - q))
    return float(norm.sf(z))
