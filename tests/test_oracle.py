"""The oracle against hand-computed numbers; the same table checks the live folds.

``CASES`` is one row per metric situation: events in log order, the report key, and the exact
rows expected (computed by hand from metrics.md). ``tests/streams/test_folds.py`` runs the same
table through the live path.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest
from scipy.stats import chi2

from tests.oracle import attributed_models, dedupe, oracle_report
from usersignals.ingest.contract import Event

EMPTY = {
    "active_users": [],
    "events_by_day": [],
    "feedback_by_model": [],
    "risk_flags_daily": [],
    "users_at_risk_weekly": [],
    "rejected": [],
    "arena": [],
    "flattery_watch": [],
    "range": {"from": None, "to": None},
    "tz": "UTC",
    "week_start": "monday",
}


def ev(eid: str, user: str, when: str, kind: str = "message", **fields: Any) -> Event:
    """An event; ``when`` is ``MM-DD`` (noon of that day in 2026) or a full UTC timestamp."""
    ts = datetime.fromisoformat(when if "T" in when else f"2026-{when}T12:00:00+00:00")
    if kind == "message":
        fields.setdefault("role", "user")
    return Event(event_id=eid, type=kind, user_id=user, ts=ts, **fields)


def vote(
    eid: str, user: str, when: str, msg: str, rating: int, model: str | None = "m1", **fields: Any
) -> Event:
    return ev(eid, user, when, "feedback", message_id=msg, rating=rating, model=model, **fields)


def flag(eid: str, user: str, when: str, category: str, severity: str, **fields: Any) -> Event:
    return ev(eid, user, when, "risk_flag", category=category, severity=severity, **fields)


def start(eid: str, user: str, when: str, session: str, model: str | None = None) -> Event:
    return ev(eid, user, when, "session_start", session_id=session, model=model)


def au(day: str, dau: int, wau: int, mau: int) -> dict[str, Any]:
    """An active_users row (stickiness computed as the report rounds it)."""
    stickiness = round(dau / mau, 6) if mau else 0.0
    return {"day": f"2026-{day}", "dau": dau, "wau": wau, "mau": mau, "stickiness": stickiness}


def fb(day: str, model: str | None, up: int, down: int) -> dict[str, Any]:
    return {"day": f"2026-{day}", "model": model, "thumbs_up": up, "thumbs_down": down}


def risk(day: str, category: str, severity: str, flags: int, users: int) -> dict[str, Any]:
    return {
        "day": f"2026-{day}",
        "category": category,
        "severity": severity,
        "flags": flags,
        "users": users,
    }


def days(key: str, *pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"day": f"2026-{d}", key: n} for d, n in pairs]


def fw(model: str, week: str, up: int, down: int, rate: float | None, users: int, share: float,
       flags: int, per_1k: float, at_risk: int, flagged: bool, *, complete: bool = False,
       p_up: float | None = None, p_risk: float | None = None) -> dict[str, Any]:  # fmt: skip
    """A flattery_watch row; the 95 % bounds from their formulas (Wilson; Garwood, exact)."""
    z = 1.959963984540054
    n = up + down
    rate_low = rate_high = None
    if n:
        p = up / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        rate_low, rate_high = round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6)
    flags_low = chi2.ppf(0.025, 2 * flags) / 2 if flags else 0.0
    flags_high = chi2.ppf(0.975, 2 * flags + 2) / 2
    return {
        "model": model,
        "week": week,
        "complete": complete,
        "thumbs_up": up,
        "thumbs_down": down,
        "thumbs_up_rate": rate,
        "thumbs_up_rate_low": rate_low,
        "thumbs_up_rate_high": rate_high,
        "active_users": users,
        "active_share": share,
        "risk_flags": flags,
        "risk_flags_per_1k": per_1k,
        "risk_flags_per_1k_low": round(float(flags_low) * 1000 / users, 6),
        "risk_flags_per_1k_high": round(float(flags_high) * 1000 / users, 6),
        "users_at_risk": at_risk,
        "p_thumbs_up_rise": p_up,
        "p_risk_rise": p_risk,
        "flagged": flagged,
    }


# Weeks used below: 2026-W10 = Mon 03-02 .. Sun 03-08, W11 = 03-09 .. 03-15, W12, W13 = 03-23..
FLATTERY_RISING = [
    # W10: m1 used by u1, u2 (u3 has no model); 1 up, 1 down; one high flag by u1.
    ev("a1", "u1", "03-02", model="m1"),
    ev("a2", "u2", "03-03", model="m1"),
    ev("a3", "u3", "03-03"),
    vote("a4", "u1", "03-04", "x1", 1),
    vote("a5", "u2", "03-04", "x2", -1),
    flag("a6", "u1", "03-05", "sycophancy", "high", model="m1"),
    # W11: 2 up, 0 down (rate 1.0 > 0.5); two low flags by u1 (1000 per 1k > 500): alert.
    vote("b1", "u1", "03-09", "x3", 1),
    vote("b2", "u2", "03-10", "x4", 1),
    flag("b3", "u1", "03-11", "delusion", "low", model="m1"),
    flag("b4", "u1", "2026-03-15T23:59:59.999+00:00", "delusion", "low", model="m1"),
    # W12: rate 1.0 (not strictly greater), flags rise: no alert.
    vote("c1", "u1", "03-16", "x5", 1),
    flag("c2", "u1", "03-17", "mania", "critical", model="m1"),
    flag("c3", "u1", "03-17", "mania", "critical", model="m1"),
    flag("c4", "u1", "03-17", "mania", "critical", model="m1"),
    # W13: rate falls to 0.0: no alert; m2 appears (first week: no alert, no votes: null rate).
    vote("d1", "u1", "2026-03-23T00:00:00.000+00:00", "x6", -1),
    ev("d2", "u2", "03-24", model="m2"),
]

CASES: list[tuple[str, list[Event], str, list[dict[str, Any]]]] = [
    ("active: one user one day", [ev("e1", "u1", "03-01")], "active_users", [au("03-01", 1, 1, 1)]),
    (
        "active: gap days keep their trailing windows",
        [ev("e1", "u1", "03-01"), ev("e2", "u2", "03-03"), ev("e3", "u1", "03-10")],
        "active_users",
        [
            au("03-01", 1, 1, 1),
            au("03-02", 0, 1, 1),
            au("03-03", 1, 2, 2),
            au("03-04", 0, 2, 2),
            au("03-05", 0, 2, 2),
            au("03-06", 0, 2, 2),
            au("03-07", 0, 2, 2),
            au("03-08", 0, 1, 2),
            au("03-09", 0, 1, 2),
            au("03-10", 1, 1, 2),
        ],
    ),
    (
        "active: midnight boundaries are UTC days",
        [
            ev("e1", "u1", "2026-03-01T23:59:59.999+00:00"),
            ev("e2", "u2", "2026-03-02T00:00:00.000+00:00"),
            ev("e3", "u2", "2026-03-02T23:59:59.999999+00:00"),
        ],
        "active_users",
        [au("03-01", 1, 1, 1), au("03-02", 1, 2, 2)],
    ),
    (
        "active: a user active on several days counts once in the windows",
        [ev("e1", "u1", "03-01"), ev("e2", "u1", "03-02"), ev("e3", "u2", "03-02")],
        "active_users",
        [au("03-01", 1, 1, 1), au("03-02", 2, 2, 2)],
    ),
    (
        "active: MAU keeps day d-29 and drops day d-30",
        [ev("e1", "u1", "03-01"), ev("e2", "u2", "03-30"), ev("e3", "u3", "03-31")],
        "active_users",
        [au("03-01", 1, 1, 1)]
        + [au(f"03-{d:02d}", 0, 1, 1) for d in range(2, 8)]
        + [au(f"03-{d:02d}", 0, 0, 1) for d in range(8, 30)]
        + [au("03-30", 1, 1, 2), au("03-31", 1, 2, 2)],
    ),
    (
        "events: distinct event ids per day, duplicates once",
        [
            ev("e1", "u1", "03-01"),
            ev("e1", "u1", "03-01"),
            ev("e2", "u1", "03-01"),
            ev("e3", "u2", "03-03"),
        ],
        "events_by_day",
        days("events", ("03-01", 2), ("03-03", 1)),
    ),
    (
        "duplicate id with different content: the first copy wins",
        [ev("e1", "u1", "03-01"), ev("e1", "u2", "03-02")],
        "active_users",
        [au("03-01", 1, 1, 1)],
    ),
    (
        "feedback: one up and one down",
        [vote("f1", "u1", "03-01", "x1", 1), vote("f2", "u2", "03-01", "x1", -1)],
        "feedback_by_model",
        [fb("03-01", "m1", 1, 1)],
    ),
    (
        "feedback: vote changed the same day",
        [
            vote("f1", "u1", "2026-03-01T10:00:00+00:00", "x1", 1),
            vote("f2", "u1", "2026-03-01T11:00:00+00:00", "x1", -1),
        ],
        "feedback_by_model",
        [fb("03-01", "m1", 0, 1)],
    ),
    (
        "feedback: vote changed the next day under another model, the earlier day loses it",
        [vote("f1", "u1", "03-01", "x1", 1), vote("f2", "u1", "03-02", "x1", -1, model="m2")],
        "feedback_by_model",
        [fb("03-02", "m2", 0, 1)],
    ),
    (
        "feedback: a withdrawn vote counts nowhere",
        [vote("f1", "u1", "03-01", "x1", 1), vote("f2", "u1", "03-02", "x1", 0)],
        "feedback_by_model",
        [],
    ),
    (
        "feedback: withdrawn then cast again",
        [
            vote("f1", "u1", "03-01", "x1", 1),
            vote("f2", "u1", "03-02", "x1", 0),
            vote("f3", "u1", "03-03", "x1", 1),
        ],
        "feedback_by_model",
        [fb("03-03", "m1", 1, 0)],
    ),
    (
        "feedback: equal ts, the greater event_id wins",
        [vote("f2", "u1", "03-01", "x1", -1), vote("f1", "u1", "03-01", "x1", 1)],
        "feedback_by_model",
        [fb("03-01", "m1", 0, 1)],
    ),
    (
        "feedback: an older vote arriving later loses",
        [
            vote("f1", "u1", "2026-03-01T11:00:00+00:00", "x1", 1),
            vote("f2", "u1", "2026-03-01T10:00:00+00:00", "x1", -1),
        ],
        "feedback_by_model",
        [fb("03-01", "m1", 1, 0)],
    ),
    (
        "feedback: votes are per user and message; null model sorts first",
        [
            vote("f1", "u1", "03-01", "x1", 1),
            vote("f2", "u1", "03-01", "x2", 1),
            vote("f3", "u2", "03-01", "x1", 1),
            vote("f4", "u2", "03-01", "x3", -1, model=None),
        ],
        "feedback_by_model",
        [fb("03-01", None, 0, 1), fb("03-01", "m1", 3, 0)],
    ),
    (
        "feedback: a duplicate vote id keeps the first rating",
        [vote("f1", "u1", "03-01", "x1", 1), vote("f1", "u1", "03-01", "x1", -1)],
        "feedback_by_model",
        [fb("03-01", "m1", 1, 0)],
    ),
    (
        "risk: flags are events, users are distinct users",
        [
            flag("r1", "u1", "03-01", "mania", "high"),
            flag("r2", "u1", "03-01", "mania", "high"),
            flag("r3", "u2", "03-01", "mania", "high"),
            flag("r3", "u2", "03-01", "mania", "high"),
            flag("r4", "u1", "03-01", "other", "low"),
            flag("r5", "u1", "03-01", "mania", "critical"),
            flag("r6", "u3", "03-02", "mania", "high"),
        ],
        "risk_flags_daily",
        [
            risk("03-01", "mania", "critical", 1, 1),
            risk("03-01", "mania", "high", 3, 2),
            risk("03-01", "other", "low", 1, 1),
            risk("03-02", "mania", "high", 1, 1),
        ],
    ),
    (
        "risk: users at risk over the trailing 7 days, high and critical only",
        [
            flag("r1", "u1", "03-01", "mania", "high"),
            flag("r2", "u2", "03-03", "psychosis", "critical"),
            flag("r3", "u3", "03-03", "mania", "medium"),
            flag("r4", "u2", "03-04", "mania", "high"),
            ev("e1", "u4", "03-10"),
        ],
        "users_at_risk_weekly",
        days(
            "users",
            ("03-01", 1),
            ("03-02", 1),
            ("03-03", 2),
            ("03-04", 2),
            ("03-05", 2),
            ("03-06", 2),
            ("03-07", 2),
            ("03-08", 1),
            ("03-09", 1),
            ("03-10", 1),
        ),
    ),
    (
        "flattery: rising, flat and falling weeks",
        FLATTERY_RISING,
        "flattery_watch",
        [
            # both rise in W11, but two votes are far below the minimum volume: not flagged;
            # z = 0.5 / sqrt(3/4 * 1/4 * (1/2 + 1/2)) and (2 - 3/2) / sqrt(3 * 1/2 * 1/2)
            fw("m1", "2026-W10", 1, 1, 0.5, 2, 0.666667, 1, 500.0, 1, False, complete=True),
            fw(
                "m1",
                "2026-W11",
                2,
                0,
                1.0,
                2,
                1.0,
                2,
                1000.0,
                0,
                False,
                complete=True,
                p_up=0.124107,
                p_risk=0.281851,
            ),
            # every vote an up in both weeks: no thumbs test; q = 1/3 of 5 flags
            fw(
                "m1",
                "2026-W12",
                1,
                0,
                1.0,
                1,
                1.0,
                3,
                3000.0,
                1,
                False,
                complete=True,
                p_risk=0.102952,
            ),
            # the week of the newest day is not complete
            fw(
                "m1", "2026-W13", 0, 1, 0.0, 1, 0.5, 0, 0.0, 0, False, p_up=0.92135, p_risk=0.958368
            ),
            fw("m2", "2026-W13", 0, 0, None, 1, 0.5, 0, 0.0, 0, False),
        ],
    ),
    (
        "flattery: a week without the model breaks the comparison",
        [
            vote("g1", "u1", "03-02", "x1", -1),
            flag("g2", "u1", "03-02", "other", "low", model="m1"),
            vote("g3", "u2", "03-02", "x2", 1, model=None),
            vote("g4", "u1", "03-16", "x3", 1),
            flag("g5", "u1", "03-16", "other", "low", model="m1"),
            flag("g6", "u1", "03-16", "other", "low", model="m1"),
        ],
        "flattery_watch",
        [
            fw("m1", "2026-W10", 0, 1, 0.0, 1, 0.5, 1, 1000.0, 0, False, complete=True),
            fw("m1", "2026-W12", 1, 0, 1.0, 1, 1.0, 2, 2000.0, 0, False),
        ],
    ),
    (
        "flattery: a vote moved to the next week counts there only",
        [vote("h1", "u1", "03-08", "x1", 1), vote("h2", "u1", "03-09", "x1", -1)],
        "flattery_watch",
        [
            fw("m1", "2026-W10", 0, 0, None, 1, 1.0, 0, 0.0, 0, False),
            fw("m1", "2026-W11", 0, 1, 0.0, 1, 1.0, 0, 0.0, 0, False),
        ],
    ),
]


def _completed(events: list[Event], key: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the completeness flags the cases leave out: the newest day with events is not
    complete; a 7-day (30-day) window is once the day is and it starts on the first day or later.
    """
    if key not in ("active_users", "users_at_risk_weekly", "events_by_day") or not events:
        return rows
    days = sorted({e.ts.date().isoformat() for e in dedupe(events)})
    first, last = datetime.fromisoformat(days[0]), datetime.fromisoformat(days[-1])
    out = []
    for row in rows:
        d = datetime.fromisoformat(row["day"])
        done = d < last
        week, month = done and (d - first).days >= 6, done and (d - first).days >= 29
        extra = {
            "active_users": {"complete": done, "wau_complete": week, "mau_complete": month},
            "users_at_risk_weekly": {"complete": week},
            "events_by_day": {"complete": done},
        }[key]
        out.append(row | extra)
    return out


CASES[:] = [(name, evs, key, _completed(evs, key, rows)) for name, evs, key, rows in CASES]

COMPLETENESS = [
    # day, dau, complete, wau_complete, mau_complete: one user on 03-01 and on 04-05
    ("03-01", 1, True, False, False),
    ("03-06", 0, True, False, False),
    ("03-07", 0, True, True, False),
    ("03-30", 0, True, True, True),
    ("04-04", 0, True, True, True),
    ("04-05", 1, False, False, False),
]


@pytest.mark.parametrize(("day", "dau", "done", "week", "month"), COMPLETENESS)
def test_completeness_of_active_user_rows(
    day: str, dau: int, done: bool, week: bool, month: bool
) -> None:
    rows = oracle_report([ev("e1", "u1", "03-01"), ev("e2", "u1", "04-05")])["active_users"]
    row = next(r for r in rows if r["day"] == f"2026-{day}")
    assert (row["dau"], row["complete"], row["wau_complete"], row["mau_complete"]) == (
        dau,
        done,
        week,
        month,
    )


# Attribution to a model (docs/attribution.md): a vote or flag without a model takes the model
# of the message it rates, else of its session. Each row lists the events in log order.
ATTRIBUTION: list[tuple[str, list[Event], str, list[dict[str, Any]]]] = [
    (
        "attribution: a vote without a model takes its message's, the message arriving later",
        [
            vote("v1", "u1", "03-02", "x1", 1, model=None),
            ev("m1", "u1", "03-01", message_id="x1", model="m2"),
        ],
        "feedback_by_model",
        [fb("03-02", "m2", 1, 0)],
    ),
    (
        "attribution: the earliest message event carrying a model names the message's model",
        [
            ev("m2", "u1", "2026-03-01T11:00:00+00:00", message_id="x1", model="m3"),
            ev("m1", "u1", "2026-03-01T11:00:00+00:00", message_id="x1", model="m2"),
            ev("m0", "u1", "2026-03-01T10:00:00+00:00", message_id="x1"),
            vote("v1", "u1", "03-02", "x1", -1, model=None),
        ],
        "feedback_by_model",
        [fb("03-02", "m2", 0, 1)],
    ),
    (
        "attribution: the message's model before the session's",
        [
            start("s0", "u1", "03-01", "s1", model="m3"),
            ev("m1", "u1", "03-01", message_id="x1", session_id="s1", model="m2"),
            vote("v1", "u1", "03-01", "x1", 1, model=None),
        ],
        "feedback_by_model",
        [fb("03-01", "m2", 1, 0)],
    ),
    (
        "attribution: a vote without a message model takes its session's",
        [
            vote("v1", "u1", "03-02", "x1", 1, model=None, session_id="s1"),
            ev("m1", "u1", "03-01", message_id="x1", session_id="s1"),
            start("s0", "u1", "03-01", "s1", model="m3"),
        ],
        "feedback_by_model",
        [fb("03-02", "m3", 1, 0)],
    ),
    (
        "attribution: a vote's own model wins over its message's and session's",
        [
            start("s0", "u1", "03-01", "s1", model="m3"),
            ev("m1", "u1", "03-01", message_id="x1", session_id="s1", model="m2"),
            vote("v1", "u1", "03-01", "x1", 1, model="m1", session_id="s1"),
        ],
        "feedback_by_model",
        [fb("03-01", "m1", 1, 0)],
    ),
    (
        "attribution: models are per user; nothing found is model null",
        [
            ev("m1", "u2", "03-01", message_id="x1", session_id="s1", model="m2"),
            start("s0", "u2", "03-01", "s1", model="m2"),
            vote("v1", "u1", "03-01", "x1", 1, model=None, session_id="s1"),
        ],
        "feedback_by_model",
        [fb("03-01", None, 1, 0)],
    ),
    (
        "attribution: the latest vote is attributed, not the first",
        [
            vote("v1", "u1", "03-01", "x1", 1),
            vote("v2", "u1", "03-02", "x1", -1, model=None, session_id="s1"),
            start("s0", "u1", "03-01", "s1", model="m2"),
        ],
        "feedback_by_model",
        [fb("03-02", "m2", 0, 1)],
    ),
]
CASES += ATTRIBUTION

# The model each feedback and risk_flag event is counted under (attributed_models), per rule.
MODEL_OF: list[tuple[str, list[Event], dict[str, str | None]]] = [
    (
        "a flag takes its session's model, across days",
        [
            flag("r1", "u1", "03-09", "mania", "high", session_id="s1"),
            ev("m1", "u1", "03-09", session_id="s1", model="m2"),
            start("s0", "u1", "03-08", "s1", model="m1"),
        ],
        {"r1": "m1"},
    ),
    (
        "a session's earliest session_start or message carrying a model",
        [
            ev("m1", "u1", "2026-03-02T10:00:00+00:00", session_id="s1", model="m2"),
            start("s0", "u1", "2026-03-02T11:00:00+00:00", "s1", model="m1"),
            ev("m2", "u1", "2026-03-02T09:00:00+00:00", session_id="s1"),
            flag("r1", "u1", "03-03", "other", "critical", session_id="s1"),
        ],
        {"r1": "m2"},
    ),
    (
        "equal ts: the smaller event_id names the session's model",
        [
            start("s2", "u1", "03-02", "s1", model="m2"),
            ev("s1", "u1", "03-02", session_id="s1", model="m1"),
            flag("r1", "u1", "03-03", "other", "low", session_id="s1"),
        ],
        {"r1": "m1"},
    ),
    (
        "a flag's own model wins; without a session it stays null",
        [
            start("s0", "u1", "03-02", "s1", model="m1"),
            flag("r1", "u1", "03-02", "other", "high", session_id="s1", model="m2"),
            flag("r2", "u1", "03-02", "other", "high"),
        ],
        {"r1": "m2", "r2": None},
    ),
    (
        "a flag does not look at messages of its message_id, nor at other users' sessions",
        [
            start("s0", "u2", "03-02", "s1", model="m1"),
            ev("m1", "u1", "03-02", message_id="x1", model="m2"),
            flag("r1", "u1", "03-02", "other", "low", session_id="s1", message_id="x1"),
        ],
        {"r1": None},
    ),
    (
        "a vote: own, else message, else session; feedback and flags are no references",
        [
            start("s0", "u1", "03-02", "s1", model="m1"),
            ev("m1", "u1", "03-02", message_id="x1", model="m2"),
            vote("v0", "u1", "03-01", "x9", 1, model="m3", session_id="s9"),
            flag("r0", "u1", "03-01", "other", "low", model="m3", session_id="s9"),
            vote("v1", "u1", "03-02", "x1", 1, model=None, session_id="s1"),
            vote("v2", "u1", "03-02", "x2", 1, model=None, session_id="s1"),
            vote("v3", "u1", "03-02", "x3", 1, model="m4", session_id="s1"),
            vote("v4", "u1", "03-02", "x8", 1, model=None, session_id="s9"),
            flag("r1", "u1", "03-02", "other", "low", session_id="s9"),
        ],
        {
            "v0": "m3",
            "r0": "m3",
            "v1": "m2",
            "v2": "m1",
            "v3": "m4",
            "v4": None,
            "r1": None,
        },
    ),
]


@pytest.mark.parametrize(
    ("events", "key", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_oracle_table(events: list[Event], key: str, expected: list[dict[str, Any]]) -> None:
    assert oracle_report(events)[key] == expected


@pytest.mark.parametrize(
    ("events", "expected"), [c[1:] for c in MODEL_OF], ids=[c[0] for c in MODEL_OF]
)
def test_attributed_models_table(events: list[Event], expected: dict[str, str | None]) -> None:
    assert attributed_models(events) == expected


def test_empty_log_is_an_empty_report() -> None:
    assert oracle_report([]) == EMPTY


def test_rejected_counts_are_sorted_and_zeros_dropped() -> None:
    report = oracle_report([], {"not_json": 2, "bad_type": 1, "empty": 0})
    assert report["rejected"] == [
        {"reason": "bad_type", "count": 1},
        {"reason": "not_json", "count": 2},
    ]


def test_dedupe_keeps_the_first_copy() -> None:
    first, second = ev("e1", "u1", "03-01"), ev("e1", "u2", "03-02")
    assert dedupe([first, second, ev("e2", "u1", "03-01")]) == [first, ev("e2", "u1", "03-01")]
