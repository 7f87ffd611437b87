"""The weekly flagged share, live (docs/metrics.md, "Weekly flagged share (wellbeing)"): the
worker's ``wellbeing_weekly`` equals the oracle for the weeks it holds whole, whatever the
arrival order, duplicates, partitioning or retention, and ``/metrics`` exports the latest
complete week."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.oracle import counted, dedupe, event_day, oracle_report
from tests.oracle_history import oracle_wellbeing
from tests.test_oracle import ev, flag, start
from usersignals.ingest.contract import Event, partition_for
from usersignals.ingest.rules import CHOICES
from usersignals.metrics.periods import DayRange, iso_week
from usersignals.streams.exposition import EventTimeLag, WorkerCollector, render
from usersignals.streams.folds import PartitionState
from usersignals.streams.livereport import (
    global_range,
    live_gauges,
    live_report,
    merge_partials,
    partial_of,
)

CATEGORIES = sorted(CHOICES["category"])


def served(rows: list[dict[str, Any]], first: date, last: date) -> list[dict[str, Any]]:
    """The rows of the weeks whose seven days all lie in [first, last] (what the worker
    serves when it holds every day from ``first`` to ``last``)."""
    return [
        r
        for r in rows
        if first <= date.fromisoformat(r["week"])
        and date.fromisoformat(r["week"]) + timedelta(days=6) <= last
    ]


def oracle_live(
    log: Iterable[Event],
    rejected: Mapping[str, int] | None = None,
    day_from: date | None = None,
    day_to: date | None = None,
) -> dict[str, Any]:
    """The live report the oracle expects of ``log`` when the worker holds all of it:
    :func:`oracle_report` and the rows of :func:`oracle_wellbeing` of the weeks whose seven
    days lie within the log's first and last event day, those touching the range."""
    events = list(log)
    days = [event_day(e) for e in counted(events)]
    rows = served(oracle_wellbeing(events), min(days), max(days)) if days else []
    shown = DayRange(day_from, day_to)
    rows = [r for r in rows if shown.overlaps_week(iso_week(date.fromisoformat(r["week"])))]
    return oracle_report(events, rejected, day_from, day_to) | {"wellbeing_weekly": rows}


def folded(events: list[Event], retention_days: int = 400, batch: int = 1000) -> PartitionState:
    state = PartitionState(retention_days)
    for i in range(0, len(events), batch):
        state.apply(events[i : i + batch])
    return state


# -- (a) a hand-made set ---------------------------------------------------------------------

# Week 2026-03-02 (W10): u1 with m1, u2 with m2 (the model of session s2, named by a message
# after the flag in s2), u3 without a model. Week 2026-03-09 (W11): u1 and u4 with m1, u2
# flagged in s2 (m2, no event of u2 carries m2 that week). 03-16 (W12): the newest day.
HAND = [
    ev("a1", "u1", "03-02", model="m1"),
    flag("a2", "u1", "03-03", "mania", "high", model="m1"),
    start("a3", "u2", "03-04", "s2"),  # no model: s2 has none yet
    flag("a4", "u2", "03-04", "mania", "low", session_id="s2"),  # under no model for now
    ev("a5", "u2", "03-05", model="m2", session_id="s2"),  # s2 is m2 now: a4 moves to m2
    ev("a6", "u3", "03-06"),
    flag("a7", "u3", "03-06", "self_harm", "critical"),  # no model, no session: all models only
    flag("a8", "u1", "03-07", "self_harm", "low", model="m1"),
    flag("b1", "u2", "03-10", "self_harm", "high", session_id="s2"),  # m2 through s2
    ev("b2", "u1", "03-11", model="m1"),
    flag("b3", "u1", "03-11", "mania", "low", model="m1"),
    flag("b4", "u1", "03-12", "mania", "critical", model="m1"),  # u1 again: counts once
    ev("b5", "u4", "03-15", model="m1"),
    ev("c1", "u5", "03-16"),
]

# (week, model) -> active users; (week, model, category) -> (flagged, flagged high, share,
# share high) where someone is flagged; every other category of a (week, model) is zeros.
HAND_ACTIVE: dict[tuple[str, str | None], int] = {
    ("2026-03-02", None): 3,
    ("2026-03-02", "m1"): 1,
    ("2026-03-02", "m2"): 1,
    ("2026-03-09", None): 3,
    ("2026-03-09", "m1"): 2,
    ("2026-03-09", "m2"): 0,
}
HAND_FLAGGED: dict[tuple[str, str | None, str], tuple[int, int, float | None, float | None]] = {
    ("2026-03-02", None, "mania"): (2, 1, 0.666667, 0.333333),
    ("2026-03-02", None, "self_harm"): (2, 1, 0.666667, 0.333333),
    ("2026-03-02", "m1", "mania"): (1, 1, 1.0, 1.0),
    ("2026-03-02", "m1", "self_harm"): (1, 0, 1.0, 0.0),
    ("2026-03-02", "m2", "mania"): (1, 0, 1.0, 0.0),  # a4, moved to s2's model
    ("2026-03-09", None, "mania"): (1, 1, 0.333333, 0.333333),
    ("2026-03-09", None, "self_harm"): (1, 1, 0.333333, 0.333333),
    ("2026-03-09", "m1", "mania"): (1, 1, 0.5, 0.5),
    ("2026-03-09", "m2", "self_harm"): (1, 1, None, None),  # no event carries m2 that week
}


def hand_rows() -> list[dict[str, Any]]:
    rows = []
    for (week, model), n in HAND_ACTIVE.items():
        for c in CATEGORIES:
            zero = (0, 0, 0.0 if n else None, 0.0 if n else None)
            users, high, share, share_high = HAND_FLAGGED.get((week, model, c), zero)
            rows.append(
                {
                    "week": week,
                    "model": model,
                    "category": c,
                    "flagged_users": users,
                    "flagged_users_high": high,
                    "active_users": n,
                    "share": share,
                    "share_high": share_high,
                }
            )
    return rows


def test_the_hand_set_rows() -> None:
    rows = live_report([folded(HAND)])["wellbeing_weekly"]
    assert rows[:2] == [
        {
            "week": "2026-03-02",
            "model": None,
            "category": "delusion",
            "flagged_users": 0,
            "flagged_users_high": 0,
            "active_users": 3,
            "share": 0.0,
            "share_high": 0.0,
        },
        {
            "week": "2026-03-02",
            "model": None,
            "category": "emotional_dependence",
            "flagged_users": 0,
            "flagged_users_high": 0,
            "active_users": 3,
            "share": 0.0,
            "share_high": 0.0,
        },
    ]
    # W12 (03-16 .. 03-22) is still running: not served
    assert rows == hand_rows()
    assert all(isinstance(r["share"], float) for r in rows if r["share"] is not None)
    assert rows == served(oracle_wellbeing(HAND), date(2026, 3, 2), date(2026, 3, 16))


@pytest.mark.parametrize("order", ["log", "reversed", "one by one", "interleaved"])
def test_the_hand_set_in_any_order_and_partitioning(order: str) -> None:
    events = {
        "log": HAND,
        "reversed": HAND[::-1],
        "one by one": HAND,
        "interleaved": HAND[1::2] + HAND[::2],
    }[order]
    batch = 1 if order == "one by one" else 1000
    assert live_report([folded(events, batch=batch)])["wellbeing_weekly"] == hand_rows()
    # the same users over two partitions, through the JSON partials
    parts = [
        folded([e for e in events if e.user_id in ("u1", "u4")], batch=batch),
        folded([e for e in events if e.user_id not in ("u1", "u4")], batch=batch),
    ]
    rng = global_range(s.day_range() for s in parts)
    answers = [json.loads(json.dumps(partial_of([s], rng))) for s in parts]
    assert merge_partials(answers)["wellbeing_weekly"] == hand_rows()
    restored = PartitionState(400)
    restored.restore(reversed(events))
    assert live_report([restored])["wellbeing_weekly"] == hand_rows()


def test_a_range_shows_the_weeks_touching_it() -> None:
    state = folded(HAND)
    weeks = {
        (lo, hi): sorted(
            {r["week"] for r in live_report([state], select=DayRange(lo, hi))["wellbeing_weekly"]}
        )
        for lo, hi in [
            (date(2026, 3, 8), date(2026, 3, 8)),
            (date(2026, 3, 8), date(2026, 3, 9)),
            (date(2026, 3, 10), None),
            (None, date(2026, 3, 1)),
        ]
    }
    assert weeks == {
        (date(2026, 3, 8), date(2026, 3, 8)): ["2026-03-02"],
        (date(2026, 3, 8), date(2026, 3, 9)): ["2026-03-02", "2026-03-09"],
        (date(2026, 3, 10), None): ["2026-03-09"],
        (None, date(2026, 3, 1)): [],
    }


def test_a_week_cut_by_the_retention_horizon_is_not_served() -> None:
    # newest day 03-16, retention 10: the horizon is 03-06, inside W10
    state = folded(HAND, retention_days=10)
    assert state.horizon == date(2026, 3, 6)
    rows = live_report([state])["wellbeing_weekly"]
    assert {r["week"] for r in rows} == {"2026-03-09"}
    assert rows == [r for r in hand_rows() if r["week"] == "2026-03-09"]
    # pruned, s2's model (named on 03-05) is gone: b1 counts under no model (attribution.md)
    state.prune()
    kept = [e for e in HAND if event_day(e) >= date(2026, 3, 6)]
    pruned = live_report([state])["wellbeing_weekly"]
    assert pruned == [r for r in rows if r["model"] != "m2"]
    assert pruned == served(oracle_wellbeing(kept), date(2026, 3, 6), date(2026, 3, 16))
    # another partition's later horizon (03-15) cuts W11 for the report of both
    late = folded([ev("z1", "z9", "03-25")], retention_days=10)
    both = live_report([state, late])["wellbeing_weekly"]
    assert {r["week"] for r in both} == {"2026-03-16"}


def test_partials_of_an_older_worker_serve_no_week() -> None:
    state = folded(HAND)
    partial = state.partial(state.day_range())
    old = {k: v for k, v in partial.items() if k not in ("wellbeing", "horizon")}
    assert merge_partials([partial])["wellbeing_weekly"] == hand_rows()
    assert merge_partials([old])["wellbeing_weekly"] == []
    assert merge_partials([])["wellbeing_weekly"] == []


def test_a_week_without_events_has_no_rows() -> None:
    events = [ev("e1", "u1", "03-02", model="m1"), ev("e2", "u1", "03-23")]
    rows = live_report([folded(events)])["wellbeing_weekly"]
    assert {r["week"] for r in rows} == {"2026-03-02"}  # W11 and W12: no event, no rows
    assert rows == served(oracle_wellbeing(events), date(2026, 3, 2), date(2026, 3, 23))


# -- (b) generated logs against the oracle -----------------------------------------------------

T0 = datetime(2026, 2, 26, tzinfo=UTC)  # a Thursday: logs start and end inside weeks
USERS = ["u0", "u1", "u2", 'quo"te, 中文', "u4"]
DAY_S = 86_400


@st.composite
def wellbeing_events(draw: st.DrawFn, span_days: int = 30) -> Event:
    """Messages, session starts and flags of few users and sessions, models often missing."""
    kind = draw(st.sampled_from(["message", "session_start", "risk_flag", "risk_flag"]))
    fields: dict[str, Any] = {
        "model": draw(st.sampled_from([None, None, "m1", "m2"])),
        "session_id": draw(st.sampled_from([None, "s0", "s1"])),
    }
    if kind == "message":
        fields["role"] = "user"
    elif kind == "risk_flag":
        fields["category"] = draw(st.sampled_from(["mania", "self_harm"]))
        fields["severity"] = draw(st.sampled_from(["low", "medium", "high", "critical"]))
    seconds = draw(st.integers(0, span_days * DAY_S - 1))
    return Event(
        event_id=f"e{draw(st.integers(0, 10_000))}",
        type=kind,
        user_id=draw(st.sampled_from(USERS)),
        ts=T0 + timedelta(seconds=seconds),
        **fields,
    )


@st.composite
def logs(draw: st.DrawFn, span_days: int = 30) -> list[Event]:
    """Distinct events (one id, one content), then exact copies of some (redeliveries)."""
    unique = dedupe(draw(st.lists(wellbeing_events(span_days), max_size=50)))
    copies = draw(st.lists(st.sampled_from(unique), max_size=10)) if unique else []
    return unique + copies


def partitioned(log: list[Event], n: int, retention_days: int = 400) -> list[PartitionState]:
    states = [PartitionState(retention_days) for _ in range(n)]
    for p, state in enumerate(states):
        state.apply([e for e in log if partition_for(e.user_id, n) == p])
    return states


SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(logs(), st.sampled_from([1, 2, 3, 8]), st.data())
def test_generated_logs_equal_the_oracle(log: list[Event], n: int, data: st.DataObject) -> None:
    expected = oracle_live(log)["wellbeing_weekly"]
    states = partitioned(log, n)
    assert live_report(states)["wellbeing_weekly"] == expected
    # another arrival order, in other batches, with the copies again: nothing changes
    shuffled = data.draw(st.permutations(log))
    again = partitioned(shuffled + shuffled[: data.draw(st.integers(0, len(log)))], n)
    assert live_report(again)["wellbeing_weekly"] == expected
    # the two-phase protocol, partitions spread over workers, as JSON
    owner = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    workers = [[s for s, w in zip(states, owner, strict=True) if w == k] for k in range(3)]
    rng = global_range(s.day_range() for s in states)
    answers = [json.loads(json.dumps(partial_of(w, rng))) for w in workers]
    assert merge_partials(answers)["wellbeing_weekly"] == expected


@SETTINGS
@given(logs(span_days=45), st.sampled_from([3, 9, 16]), st.booleans())
def test_weeks_behind_the_horizon_are_not_served(
    log: list[Event], retention: int, prune: bool
) -> None:
    state = folded(log, retention_days=retention)
    if prune:
        state.prune()
    rows = live_report([state])["wellbeing_weekly"]
    held = state.day_range()
    horizon = state.horizon
    if held is None or horizon is None:
        assert rows == []
        return
    lo = max(held[0], horizon)
    weeks = {r["week"] for r in rows}
    assert weeks == {r["week"] for r in served(oracle_wellbeing(log), lo, held[1])}
    assert all(date.fromisoformat(w) >= horizon for w in weeks)
    if prune:  # (unpruned days before the horizon can still name a session's model)
        # from the horizon on, the state holds every event of its days, and nothing else
        kept = [e for e in log if event_day(e) >= horizon]
        assert rows == served(oracle_wellbeing(kept), lo, held[1])


# -- (c) the gauges of the latest complete week ------------------------------------------------


def scrape(
    states: list[PartitionState], max_models: int
) -> dict[str, dict[tuple[str, ...], float]]:
    collector = WorkerCollector(lambda: states, dict, EventTimeLag(), max_models)
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(render(collector).decode()):
        if family.name.startswith("usersignals_wellbeing_"):
            for s in family.samples:
                key = tuple(s.labels[k] for k in ("model", "category") if k in s.labels)
                out.setdefault(s.name, {})[key] = s.value
    return out


def test_the_gauges_are_the_latest_complete_week() -> None:
    # newest day 03-16 (W12): the latest complete week is W11, 03-09 .. 03-15
    expected_week = date(2026, 3, 9)
    parts = [
        folded([e for e in HAND if e.user_id in ("u1", "u4")]),
        folded([e for e in HAND if e.user_id not in ("u1", "u4")]),
    ]
    g = live_gauges(parts)
    assert g["wellbeing_week"] == expected_week
    assert g["wellbeing"] == [r for r in hand_rows() if r["week"] == "2026-03-09"]
    got = scrape(parts, 20)
    midnight = datetime(2026, 3, 9, tzinfo=UTC).timestamp()
    assert got["usersignals_wellbeing_week_start_timestamp_seconds"] == {(): midnight}
    zeros = dict.fromkeys(((c,) for c in CATEGORIES), 0.0)
    assert got["usersignals_wellbeing_flagged_share"] == zeros | {
        ("mania",): 0.333333,
        ("self_harm",): 0.333333,
    }
    assert got["usersignals_wellbeing_flagged_share_high"] == zeros | {
        ("mania",): 0.333333,
        ("self_harm",): 0.333333,
    }
    assert got["usersignals_wellbeing_flagged_users"] == zeros | {("mania",): 1, ("self_harm",): 1}
    assert got["usersignals_wellbeing_active_users"] == {(): 3}
    assert got["usersignals_wellbeing_active_users_by_model"] == {("m1",): 2, ("m2",): 0}
    m1 = {("m1", c): 0.0 for c in CATEGORIES}
    # m2 has no active user in W11: no share, but its counts
    assert got["usersignals_wellbeing_flagged_share_by_model"] == m1 | {("m1", "mania"): 0.5}
    assert got["usersignals_wellbeing_flagged_share_high_by_model"] == m1 | {("m1", "mania"): 0.5}
    m2 = {("m2", c): 0.0 for c in CATEGORIES}
    assert got["usersignals_wellbeing_flagged_users_high_by_model"] == m1 | m2 | {
        ("m1", "mania"): 1,
        ("m2", "self_harm"): 1,
    }
    # one model label: m1 (no votes: by name) keeps its name, m2 folds and has no series
    folded_models = scrape(parts, 1)
    assert {k[0] for k in folded_models["usersignals_wellbeing_flagged_users_by_model"]} == {"m1"}
    assert (
        folded_models["usersignals_wellbeing_flagged_share"]
        == got["usersignals_wellbeing_flagged_share"]
    )
    # the same from one partition holding every user
    assert scrape([folded(HAND)], 20) == got


def test_no_complete_week_no_samples() -> None:
    # the newest day's week is running and the one before starts before the first day held
    got = scrape([folded(HAND[5:])], 20)  # from 03-05 on: W10 is not held whole
    assert got["usersignals_wellbeing_week_start_timestamp_seconds"] == {(): midnight(3, 9)}
    cut = folded(HAND, retention_days=8)  # horizon 03-08: W11 is held whole, W10 not
    assert live_gauges([cut])["wellbeing_week"] == date(2026, 3, 9)
    running = folded(HAND[:9])  # newest day 03-10: W10 complete and held from 03-02
    assert live_gauges([running])["wellbeing_week"] == date(2026, 3, 2)
    late = folded([e for e in HAND if event_day(e) >= date(2026, 3, 10)])
    assert live_gauges([late])["wellbeing_week"] is None
    assert live_gauges([])["wellbeing"] == []
    empty = scrape([late], 20)
    assert "usersignals_wellbeing_week_start_timestamp_seconds" not in empty
    assert "usersignals_wellbeing_flagged_share" not in empty


def midnight(month: int, day: int) -> float:
    return datetime(2026, month, day, tzinfo=UTC).timestamp()
