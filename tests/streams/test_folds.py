"""The live folds on hand-computed cases: the oracle's table, then retention, rejections, gauges."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from tests.streams.test_wellbeing_live import oracle_live
from tests.test_oracle import CASES, EMPTY, ev, flag, vote
from usersignals.config import ConfigError
from usersignals.ingest.contract import Event
from usersignals.metrics.periods import DayRange
from usersignals.streams.folds import PartitionState
from usersignals.streams.livereport import (
    PartialMismatchError,
    global_range,
    live_gauges,
    live_report,
    merge_partials,
    partial_of,
    preference_counts,
)


def folded(events: list[Event], retention_days: int = 35) -> PartitionState:
    state = PartitionState(retention_days)
    state.apply(events)
    return state


@pytest.mark.parametrize(
    ("events", "key", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_live_table(events: list[Event], key: str, expected: list[dict[str, Any]]) -> None:
    assert live_report([folded(events)])[key] == expected


@pytest.mark.parametrize("batch", [1, 2, 3], ids=["one-by-one", "pairs", "triples"])
@pytest.mark.parametrize(
    ("events", "key", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_live_table_in_batches(
    events: list[Event], key: str, expected: list[dict[str, Any]], batch: int
) -> None:
    state = PartitionState()
    for i in range(0, len(events), batch):
        state.apply(events[i : i + batch])
    assert live_report([state])[key] == expected


def test_empty_state_is_an_empty_report() -> None:
    state = PartitionState()
    assert state.apply([]) == []
    assert live_report([state]) == EMPTY | {"wellbeing_weekly": []}
    assert live_report([]) == EMPTY | {"wellbeing_weekly": []}
    assert state.newest_day is None
    assert state.day_range() is None


def test_apply_returns_only_new_events_in_order() -> None:
    e1, e2, e3 = ev("e1", "u1", "03-01"), ev("e2", "u1", "03-02"), ev("e3", "u2", "03-01")
    state = PartitionState()
    assert state.apply([e1, e2, e1]) == [e1, e2]
    assert state.apply([e2, e3, ev("e1", "u9", "03-09")]) == [e3]
    assert state.newest_day == date(2026, 3, 2)
    assert state.day_range() == (date(2026, 3, 1), date(2026, 3, 2))


def test_events_behind_the_horizon_are_late_and_not_folded() -> None:
    state = PartitionState(retention_days=3)
    new = state.apply(
        [
            ev("e1", "u1", "03-10"),
            ev("e2", "u2", "03-07"),  # 10 - 3: still inside
            ev("e3", "u3", "03-06"),  # late
            ev("e3", "u3", "03-06"),  # late again (a redelivery counts again)
        ]
    )
    assert [e.event_id for e in new] == ["e1", "e2"]
    assert state.late == 2
    assert state.horizon == date(2026, 3, 7)
    assert live_report([state])["events_by_day"] == [
        {"day": "2026-03-07", "events": 1, "complete": True},
        {"day": "2026-03-10", "events": 1, "complete": False},
    ]


def test_the_horizon_moves_within_one_batch() -> None:
    state = PartitionState(retention_days=3)
    new = state.apply([ev("e1", "u1", "03-01"), ev("e2", "u1", "03-10"), ev("e3", "u1", "03-01")])
    assert [e.event_id for e in new] == ["e1", "e2"]
    assert state.late == 1
    assert state.needs_prune


def test_prune_drops_old_days_ids_and_votes() -> None:
    state = PartitionState(retention_days=3)
    state.apply([vote("v1", "u1", "03-01", "x1", 1), ev("e1", "u2", "03-02")])
    state.apply([ev("e2", "u3", "03-09"), vote("v2", "u1", "03-09", "x2", -1)])
    assert state.needs_prune
    assert state.prune() == [date(2026, 3, 1), date(2026, 3, 2)]
    assert not state.needs_prune
    assert state.prune() == []
    report = live_report([state])
    assert report["events_by_day"] == [{"day": "2026-03-09", "events": 2, "complete": False}]
    assert report["feedback_by_model"] == [
        {"day": "2026-03-09", "model": "m1", "thumbs_up": 0, "thumbs_down": 1}
    ]
    # Forgotten ids behind the horizon stay out: they are late now.
    assert state.apply([ev("e1", "u2", "03-02")]) == []
    assert state.late == 1


def test_a_vote_changed_after_its_earlier_day_was_pruned_starts_fresh() -> None:
    state = PartitionState(retention_days=5)
    state.apply([vote("v1", "u1", "03-01", "x1", 1), ev("e1", "u1", "03-07")])
    state.prune()
    state.apply([vote("v2", "u1", "03-08", "x1", -1)])
    assert live_report([state])["feedback_by_model"] == [
        {"day": "2026-03-08", "model": "m1", "thumbs_up": 0, "thumbs_down": 1}
    ]


def test_restore_rebuilds_from_returned_events_in_any_order() -> None:
    state = PartitionState()
    deltas: list[Event] = []
    for event_batch in (
        [vote("v1", "u1", "03-01", "x1", 1)],
        [vote("v2", "u1", "03-02", "x1", -1)],
    ):
        deltas += state.apply(event_batch)
    fresh = PartitionState()
    fresh.restore(reversed(deltas))
    assert live_report([fresh]) == live_report([state])


def test_restore_ignores_the_horizon_until_pruned() -> None:
    state = PartitionState(retention_days=2)
    state.restore([ev("e1", "u1", "03-10"), ev("e2", "u1", "03-01")])
    assert state.late == 0
    assert state.day_range() == (date(2026, 3, 1), date(2026, 3, 10))
    assert state.prune() == [date(2026, 3, 1)]


def test_rejections_count_once_per_source_position() -> None:
    state = PartitionState()
    first = [((0, 5, None), "not_json"), ((0, 6, 0), "bad_type"), ((0, 6, 2), "bad_type")]
    assert state.add_rejections(first) == first
    assert state.add_rejections([((0, 6, 2), "bad_type"), ((0, 7, None), "empty")]) == [
        ((0, 7, None), "empty")
    ]
    assert state.rejected() == {"not_json": 1, "bad_type": 2, "empty": 1}
    assert live_report([state])["rejected"] == [
        {"reason": "bad_type", "count": 2},
        {"reason": "empty", "count": 1},
        {"reason": "not_json", "count": 1},
    ]


def test_retention_must_be_positive() -> None:
    with pytest.raises(ConfigError) as exc:
        PartitionState(0)
    assert str(exc.value) == "Invalid retention_days: 0 (must be at least 1)"


def test_partials_over_different_ranges_do_not_merge() -> None:
    a = folded([ev("e1", "u1", "03-01")])
    b = folded([ev("e2", "u2", "03-02")])
    with pytest.raises(PartialMismatchError) as exc:
        merge_partials([a.partial(a.day_range()), b.partial(b.day_range())])
    assert str(exc.value) == (
        "Partials cover different day ranges: "
        "[['2026-03-01', '2026-03-01'], ['2026-03-02', '2026-03-02']]"
    )
    assert exc.value.ranges == [["2026-03-01", "2026-03-01"], ["2026-03-02", "2026-03-02"]]


def test_two_phase_protocol_across_workers_through_json() -> None:
    a = folded([ev("e1", "u1", "03-01"), ev("e2", "u1", "03-02")])
    b = folded([ev("e3", "u2", "03-05")])
    c = PartitionState()
    rng = global_range([a.day_range(), b.day_range(), c.day_range()])
    assert rng == (date(2026, 3, 1), date(2026, 3, 5))
    answers = [json.loads(json.dumps(partial_of(w, rng))) for w in ([a, c], [b])]
    report = merge_partials(answers)
    assert report == live_report([a, b, c])
    assert [(r["day"], r["dau"], r["wau"]) for r in report["active_users"]] == [
        ("2026-03-01", 1, 1),
        ("2026-03-02", 1, 1),
        ("2026-03-03", 0, 1),
        ("2026-03-04", 0, 1),
        ("2026-03-05", 1, 2),
    ]


def test_arena_rows_are_passed_through() -> None:
    rows = [{"model": "m1", "rating": 1000.0, "ci_low": 990.0, "ci_high": 1010.0, "votes": 2}]
    assert live_report([folded([ev("e1", "u1", "03-01")])], arena=rows)["arena"] == rows


def test_day_range_restricts_rows_but_windows_look_back() -> None:
    state = folded([ev("e1", "u1", "03-01"), ev("e2", "u2", "03-03"), ev("e3", "u2", "03-04")])
    report = live_report([state], select=DayRange(date(2026, 3, 3), date(2026, 3, 4)))
    assert [(r["day"], r["dau"], r["wau"], r["mau"]) for r in report["active_users"]] == [
        ("2026-03-03", 1, 2, 2),
        ("2026-03-04", 1, 2, 2),
    ]
    assert report["events_by_day"] == [
        {"day": "2026-03-03", "events": 1, "complete": True},
        {"day": "2026-03-04", "events": 1, "complete": False},
    ]
    assert report["range"] == {"from": "2026-03-03", "to": "2026-03-04"}


PREFS = [
    ev("p1", "u1", "03-01", "preference", model_a="m1", model_b="m2", winner="a"),
    ev("p2", "u2", "03-01", "preference", model_a="m1", model_b="m2", winner="a"),
    ev("p3", "u2", "03-02", "preference", model_a="m2", model_b="m1", winner="both_bad"),
]


def test_preference_count_table() -> None:
    state = folded(PREFS)
    partial = state.partial(state.day_range())
    assert preference_counts([partial]) == {
        ("m1", "m2", "a"): 2,
        ("m2", "m1", "both_bad"): 1,
    }
    assert preference_counts([partial], DayRange(date(2026, 3, 2), None)) == {
        ("m2", "m1", "both_bad"): 1,
    }


def test_rejections_count_on_the_day_they_were_received() -> None:
    state = PartitionState()
    state.add_rejections([((0, 1, None), "not_json")], date(2026, 3, 1))
    state.add_rejections([((0, 2, 0), "bad_type"), ((0, 2, 1), "bad_type")], date(2026, 3, 2))
    state.add_rejections([((0, 3, None), "empty")])  # day unknown: only in unbounded reports
    assert live_report([state])["rejected"] == [
        {"reason": "bad_type", "count": 2},
        {"reason": "empty", "count": 1},
        {"reason": "not_json", "count": 1},
    ]
    assert live_report([state], select=DayRange(date(2026, 3, 2), None))["rejected"] == [
        {"reason": "bad_type", "count": 2}
    ]
    assert live_report([state], select=DayRange(None, date(2026, 3, 1)))["rejected"] == [
        {"reason": "not_json", "count": 1}
    ]


def test_gauges_at_the_newest_day() -> None:
    events = [
        ev("e1", "u1", "03-01", model="m1"),
        ev("e2", "u2", "03-05"),
        vote("v1", "u1", "03-09", "x1", 1),
        vote("v2", "u2", "03-09", "x1", -1, model="m2"),
        vote("v3", "u3", "03-02", "x1", 1),
        flag("r1", "u3", "03-04", "mania", "high"),
        flag("r2", "u3", "03-04", "mania", "high"),
        *PREFS,
    ]
    state = folded(events)
    g = live_gauges([state, PartitionState()])
    flattery = g.pop("flattery")
    # the latest complete ISO week is W10 (tests/streams/test_wellbeing_live.py has the rows)
    assert g.pop("wellbeing_week") == date(2026, 3, 2)
    assert [(r["model"], r["category"], r["flagged_users"]) for r in g.pop("wellbeing")][:3] == [
        (None, "delusion", 0),
        (None, "emotional_dependence", 0),
        (None, "mania", 1),
    ]
    assert g == {
        "day": date(2026, 3, 9),
        "dau": 2,
        "wau": 3,
        "mau": 3,
        "stickiness": 0.666667,
        "users_at_risk_weekly": 1,
        "events_by_type": {"message": 2, "feedback": 3, "risk_flag": 2, "preference": 3},
        "votes_day": {("m1", 1): 1, ("m2", -1): 1},
        "votes_total": {("m1", 1): 2, ("m2", -1): 1},
        "risk_flags": {("mania", "high"): 2},
        "preferences": {("m1", "m2", "a"): 2, ("m2", "m1", "both_bad"): 1},
        "late": 0,
        "rejected": {},
        "votes_7d": {("m1", 1): 1, ("m2", -1): 1},
        "model_users_7d": {"m1": 1, "m2": 1},
        "risk_flags_by_model": {None: 2},  # flags without a model or session: under None
    }
    assert [(r["model"], r["week"], r["thumbs_up"], r["thumbs_down"]) for r in flattery] == [
        ("m1", "2026-W10", 1, 0),
        ("m1", "2026-W11", 1, 0),
        ("m2", "2026-W11", 0, 1),
    ]


def test_gauges_of_nothing() -> None:
    g = live_gauges([])
    assert (g["day"], g["dau"], g["mau"], g["stickiness"], g["flattery"]) == (None, 0, 0, 0.0, [])


def test_live_equals_oracle_on_the_whole_table() -> None:
    events = [e for _, evs, _, _ in CASES for e in evs]
    assert live_report([folded(events, retention_days=400)]) == oracle_live(events)
