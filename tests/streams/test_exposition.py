"""The live series per model in ``/metrics``, over real partition states:
votes and active users per model on the trailing 7 event days, risk flags per model."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_oracle import ev, flag, vote
from usersignals.ingest.contract import Event, Rejection
from usersignals.ingest.rules import CHOICES
from usersignals.streams.exposition import EventTimeLag, ProcessCounters, WorkerCollector, render
from usersignals.streams.folds import PartitionState

SERIES = (
    "usersignals_feedback_votes_7d",
    "usersignals_active_users_by_model",
    "usersignals_risk_flags_by_model",
)

# Newest event day 03-20: the 7 days are 03-14 .. 03-20.
P0 = [
    vote("v1", "u1", "03-20", "x1", 1, model="m1"),
    vote("v2", "u1", "03-20", "x2", -1, model="m1"),
    vote("v3", "u2", "03-14", "x1", 1, model="m1"),
    vote("v4", "u2", "03-13", "x2", 1, model="m1"),  # a day before the 7
    vote("v5", "u3", "03-15", "x1", 1, model="m1"),
    vote("v6", "u3", "03-16", "x1", 0, model="m1"),  # withdrawn: the latest vote counts nowhere
    vote("v7", "u4", "03-18", "x1", -1, model="m2"),
    vote("v8", "u4", "03-19", "x9", 1, model=None),
    ev("e1", "u5", "03-17", model="m2"),
    ev("e2", "u5", "03-17", model="m3"),
    ev("e3", "u6", "03-18", model="m3"),
    ev("e4", "u7", "03-10", model="m3"),  # before the 7 days
    flag("r1", "u6", "03-18", "mania", "high", model="m3"),
    flag("r1", "u6", "03-18", "mania", "high", model="m3"),  # the same event_id again
    flag("r2", "u7", "03-01", "mania", "low", model="m2"),  # held, outside the 7 days
    flag("r3", "u7", "03-19", "mania", "low"),  # no model, no session: the "none" label
]
P1 = [
    vote("w1", "z1", "03-19", "x1", 1, model="m2"),
    ev("f1", "z2", "03-14", model="m3"),
    ev("f2", "z2", "03-15", model="m1"),
    flag("s1", "z2", "03-15", "mania", "critical", model="m1"),
]


def series(events: list[list[Event]], max_models: int) -> dict[tuple[str, tuple[str, ...]], float]:
    states = []
    for evs in events:
        state = PartitionState()
        state.apply(evs)
        states.append(state)
    collector = WorkerCollector(lambda: states, dict, EventTimeLag(), max_models)
    out: dict[tuple[str, tuple[str, ...]], float] = {}
    for family in text_string_to_metric_families(render(collector).decode()):
        for s in family.samples:
            if s.name in SERIES:
                out[(s.name, tuple(v for _, v in sorted(s.labels.items())))] = s.value
    return out


V7, AU, RF = SERIES


@pytest.mark.parametrize(
    ("events", "max_models", "expected"),
    [
        ([[]], 20, {}),
        (
            [P0],
            20,
            {
                (V7, ("m1", "down")): 1,
                (V7, ("m1", "up")): 2,
                (V7, ("m2", "down")): 1,
                (V7, ("none", "up")): 1,
                (AU, ("m1",)): 3,
                (AU, ("m2",)): 2,
                (AU, ("m3",)): 2,
                (RF, ("m2",)): 1,
                (RF, ("m3",)): 1,
                (RF, ("none",)): 1,
            },
        ),
        (
            [P0, P1],
            20,
            {
                (V7, ("m1", "down")): 1,
                (V7, ("m1", "up")): 2,
                (V7, ("m2", "down")): 1,
                (V7, ("m2", "up")): 1,
                (V7, ("none", "up")): 1,
                (AU, ("m1",)): 4,
                (AU, ("m2",)): 3,
                (AU, ("m3",)): 3,
                (RF, ("m1",)): 1,
                (RF, ("m2",)): 1,
                (RF, ("m3",)): 1,
                (RF, ("none",)): 1,
            },
        ),
        (
            # m1 has the most votes; m2 and m3 fold into "other", where u5 (both) counts once
            [P0, P1],
            1,
            {
                (V7, ("m1", "down")): 1,
                (V7, ("m1", "up")): 2,
                (V7, ("other", "down")): 1,
                (V7, ("other", "up")): 1,
                (V7, ("none", "up")): 1,
                (AU, ("m1",)): 4,
                (AU, ("other",)): 5,
                (RF, ("m1",)): 1,
                (RF, ("other",)): 2,
                (RF, ("none",)): 1,
            },
        ),
    ],
    ids=["empty", "one-partition", "two-partitions", "folded"],
)
def test_flattery_series(
    events: list[list[Event]], max_models: int, expected: dict[tuple[str, tuple[str, ...]], float]
) -> None:
    assert series(events, max_models) == expected


def samples(states: list[PartitionState], collector: WorkerCollector) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(render(collector).decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(sorted(s.labels.items())), s.value))
    return out


def test_flattery_counts_per_model_week_and_of() -> None:
    # P0 holds 03-01 (W09) .. 03-20 (W12), P1 03-14 .. 03-19: weeks W09 .. W13 (the one after)
    states = []
    for evs in (P0, P1):
        state = PartitionState()
        state.apply(evs)
        states.append(state)
    got = samples(states, WorkerCollector(lambda: states, dict, EventTimeLag(), 20))
    assert got["usersignals_first_event_day_timestamp_seconds"] == [({}, 1772323200.0)]
    assert [
        (labels["week"], value)
        for labels, value in got["usersignals_flattery_week_start_timestamp_seconds"]
    ] == [
        ("2026-W09", 1771804800.0),
        ("2026-W10", 1772409600.0),
        ("2026-W11", 1773014400.0),
        ("2026-W12", 1773619200.0),
        ("2026-W13", 1774224000.0),
    ]
    m1 = {
        (labels["week"], labels["of"], labels["rating"]): value
        for labels, value in got["usersignals_flattery_votes"]
        if labels["model"] == "m1" and value
    }
    # m1: W11 (03-09 .. 03-15) u2 up twice; W12 u1 up and down, u3's vote withdrawn on 03-16
    assert m1 == {
        ("2026-W11", "this", "up"): 2,
        ("2026-W12", "last", "up"): 2,
        ("2026-W12", "this", "up"): 1,
        ("2026-W12", "this", "down"): 1,
        ("2026-W13", "last", "up"): 1,
        ("2026-W13", "last", "down"): 1,
    }
    users = {
        (labels["model"], labels["week"], labels["of"]): value
        for labels, value in got["usersignals_flattery_active_users"]
        if value and labels["week"] == "2026-W12"
    }
    # W12 (03-16 .. 03-22): m1 u1, u3; m2 u4, u5, z1; m3 u5, u6. W11: m1 u2, u3, z2; m3 u7, z2
    assert users == {
        ("m1", "2026-W12", "this"): 2,
        ("m1", "2026-W12", "last"): 3,
        ("m2", "2026-W12", "this"): 3,
        ("m3", "2026-W12", "this"): 2,
        ("m3", "2026-W12", "last"): 2,
    }
    assert got["usersignals_flattery_z_critical"] == [({}, 1.6448536269514729)]
    assert got["usersignals_flattery_min_votes"] == [({}, 30.0)]


def test_only_process_counters_are_counters() -> None:
    state = PartitionState()
    state.apply(P0)
    state.add_rejections([((0, 1, None), "not_json")])
    process = ProcessCounters()
    process.record([])
    process.record([Rejection(reason="not_json", message="x")])
    collector = WorkerCollector(lambda: [state], dict, EventTimeLag(), 20, process=process)
    families = text_string_to_metric_families(render(collector).decode())
    kinds = {f.name: f.type for f in families}
    assert {n for n, k in kinds.items() if k == "counter"} == {
        "usersignals_records_processed",
        "usersignals_rejects_seen",
        "usersignals_incarnation_resets",
    }
    got = samples([state], collector)
    assert got["usersignals_records_processed_total"] == [({}, 2.0)]
    assert got["usersignals_rejects_seen_total"] == [({"reason": "not_json"}, 1.0)]
    assert got["usersignals_events_rejected"] == [({"reason": "not_json"}, 1.0)]
    assert kinds["usersignals_events"] == "gauge"


def by_week(states: list[PartitionState]) -> dict[str, Any]:
    got = samples(states, WorkerCollector(lambda: states, dict, EventTimeLag(), 20))
    flagged = {
        (labels["week"], labels["category"]): value
        for labels, value in got.get("usersignals_wellbeing_by_week_flagged_users", [])
    }
    return {
        "start": [
            (labels["week"], value)
            for labels, value in got.get(
                "usersignals_wellbeing_by_week_start_timestamp_seconds", []
            )
        ],
        "active": [
            (labels["week"], value)
            for labels, value in got.get("usersignals_wellbeing_by_week_active_users", [])
        ],
        "categories": sorted({c for _, c in flagged}),
        "flagged": {key: value for key, value in flagged.items() if value},
    }


def held(*partitions: list[Event], retention_days: int = 35) -> list[PartitionState]:
    states = []
    for evs in partitions:
        state = PartitionState(retention_days)
        state.apply(evs)
        states.append(state)
    return states


def test_wellbeing_counts_per_week_add_up_across_workers() -> None:
    # newest day 03-20 (W12), horizon 03-20 - 35 = 02-13: the weeks W08 (02-16) .. W12. Flagged
    # (mania): u7 on 03-01 (W09); z2 on 03-15 (W11); u6 and u7 in W12 (r1 twice: once)
    expected = {
        "start": [
            ("2026-W08", 1771200000.0),
            ("2026-W09", 1771804800.0),
            ("2026-W10", 1772409600.0),
            ("2026-W11", 1773014400.0),
            ("2026-W12", 1773619200.0),
        ],
        # W09 u7; W11 u2, u3, u7 and z2; W12 u1, u3, u4, u5, u6, u7 and z1
        "active": [
            ("2026-W08", 0.0),
            ("2026-W09", 1.0),
            ("2026-W10", 0.0),
            ("2026-W11", 4.0),
            ("2026-W12", 7.0),
        ],
        "categories": sorted(CHOICES["category"]),
        "flagged": {
            ("2026-W09", "mania"): 1.0,
            ("2026-W11", "mania"): 1.0,
            ("2026-W12", "mania"): 2.0,
        },
    }
    assert by_week(held(P0, P1)) == expected
    # two workers, one partition each: their counts add up to the one worker's
    a, b = by_week(held(P0)), by_week(held(P1))
    assert a["start"] == b["start"] == expected["start"]
    assert [(w, n + m) for (w, n), (_, m) in zip(a["active"], b["active"], strict=True)] == (
        expected["active"]
    )
    summed = {
        k: a["flagged"].get(k, 0) + b["flagged"].get(k, 0) for k in {*a["flagged"], *b["flagged"]}
    }
    assert summed == expected["flagged"]


def test_wellbeing_counts_per_week_start_at_the_horizon() -> None:
    # 10 days kept behind 03-20: horizon 03-10, so W11 (03-09 ..) is cut and W12 alone is held
    got = by_week(held(P0, P1, retention_days=10))
    assert got["start"] == [("2026-W12", 1773619200.0)]
    assert got["active"] == [("2026-W12", 7.0)]
    assert got["flagged"] == {("2026-W12", "mania"): 2.0}
    assert by_week(held([])) == {"start": [], "active": [], "categories": [], "flagged": {}}
