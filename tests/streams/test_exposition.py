"""The flattery watch's live series in ``/metrics`` (issue 6 item 3), over real partition states:
votes and active users per model on the trailing 7 event days, risk flags per model."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_oracle import ev, flag, vote
from usersignals.ingest.contract import Event
from usersignals.streams.exposition import EventTimeLag, WorkerCollector, render
from usersignals.streams.folds import PartitionState

SERIES = (
    "usersignals_feedback_votes_7d",
    "usersignals_active_users_by_model",
    "usersignals_risk_flags_by_model_total",
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
    flag("r3", "u7", "03-19", "mania", "low"),  # no model: in no model's series
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
            },
        ),
    ],
    ids=["empty", "one-partition", "two-partitions", "folded"],
)
def test_flattery_series(
    events: list[list[Event]], max_models: int, expected: dict[tuple[str, tuple[str, ...]], float]
) -> None:
    assert series(events, max_models) == expected
