"""Properties of the live folds on generated logs: they agree with the oracle and survive
redelivery, reordering, partitioning, restore and pruning."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.oracle import dedupe
from tests.streams.test_wellbeing_live import oracle_live
from usersignals.ingest.contract import Event, partition_for
from usersignals.streams.folds import PartitionState
from usersignals.streams.livereport import global_range, live_report, merge_partials, partial_of

# A Wednesday, so that generated logs cross ISO week boundaries at different points.
T0 = datetime(2026, 2, 25, tzinfo=UTC)
USERS = ["u0", "u1", "u2", "u3", "u4", 'quo"te, 中文', "u6"]
DAY_US = 86_400_000_000
TIME_OF_DAY = st.one_of(
    st.sampled_from([0, 1000, DAY_US - 1000, DAY_US - 1]), st.integers(0, DAY_US - 1)
)


@st.composite
def events(draw: st.DrawFn, span_days: int = 45) -> Event:
    kind = draw(
        st.sampled_from(
            ["message", "feedback", "feedback", "risk_flag", "preference", "custom", "identify"]
        )
    )
    ts = T0 + timedelta(days=draw(st.integers(0, span_days)), microseconds=draw(TIME_OF_DAY))
    fields: dict[str, Any] = {"model": draw(st.sampled_from([None, "m1", "m2"]))}
    if kind == "message":
        fields["role"] = "user"
    elif kind == "feedback":
        fields["message_id"] = draw(st.sampled_from(["x0", "x1", "x2"]))
        fields["rating"] = draw(st.sampled_from([-1, 0, 1]))
    elif kind == "risk_flag":
        fields["category"] = draw(st.sampled_from(["mania", "sycophancy"]))
        fields["severity"] = draw(st.sampled_from(["low", "medium", "high", "critical"]))
    elif kind in ("custom", "identify"):
        fields["name"] = draw(st.sampled_from(["$pageview", "$identify"]))
    else:
        fields["model_a"], fields["model_b"] = draw(st.permutations(["m1", "m2"]))
        fields["winner"] = draw(st.sampled_from(["a", "b", "tie", "both_bad"]))
    return Event(
        event_id=f"e{draw(st.integers(0, 40))}",
        type=kind,
        user_id=draw(st.sampled_from(USERS)),
        ts=ts,
        **fields,
    )


LOGS = st.lists(events(), max_size=60)
SETTINGS = settings(max_examples=150, deadline=None)


def report_of(log: list[Event], retention_days: int = 400) -> dict[str, Any]:
    state = PartitionState(retention_days)
    state.apply(log)
    return live_report([state])


@st.composite
def exact_copy_logs(draw: st.DrawFn) -> list[Event]:
    """A log whose duplicate event_ids are exact copies (so arrival order cannot matter)."""
    unique = dedupe(draw(LOGS))
    copies = draw(st.lists(st.sampled_from(unique), max_size=10)) if unique else []
    return unique + copies


@SETTINGS
@given(LOGS)
def test_live_equals_oracle(log: list[Event]) -> None:
    assert report_of(log) == oracle_live(log)


@SETTINGS
@given(LOGS, st.data())
def test_replaying_any_prefix_changes_nothing(log: list[Event], data: st.DataObject) -> None:
    state = PartitionState(400)
    state.apply(log)
    before = live_report([state])
    cut = data.draw(st.integers(0, len(log)))
    assert state.apply(log[:cut]) == []
    assert state.apply(log) == []
    assert live_report([state]) == before


@SETTINGS
@given(LOGS, st.data())
def test_batch_boundaries_do_not_matter(log: list[Event], data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(log)), max_size=6)))
    state = PartitionState(400)
    returned: list[Event] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(log)], strict=True):
        returned += state.apply(log[lo:hi])
    assert returned == dedupe(log)
    assert live_report([state]) == report_of(log)


@SETTINGS
@given(exact_copy_logs(), st.data())
def test_arrival_order_does_not_matter(log: list[Event], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(log))
    assert report_of(shuffled) == report_of(log)


@SETTINGS
@given(LOGS, st.sampled_from([1, 2, 3, 8]), st.data())
def test_partitions_merge_exactly(log: list[Event], n: int, data: st.DataObject) -> None:
    # Dedupe is per partition: an event_id reused by another user (so on another partition)
    # is another event live. Keep each id with one user, as every real redelivery does.
    owner_of: dict[str, str] = {}
    log = [e for e in log if owner_of.setdefault(e.event_id, e.user_id) == e.user_id]
    states = [PartitionState(400) for _ in range(n)]
    for p in range(n):
        states[p].apply([e for e in log if partition_for(e.user_id, n) == p])
    assert live_report(states) == report_of(log)
    # The same through the two-phase protocol, with the partitions spread over workers as JSON.
    owner = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    workers = [[s for s, w in zip(states, owner, strict=True) if w == k] for k in range(3)]
    rng = global_range(s.day_range() for s in states)
    answers = [json.loads(json.dumps(partial_of(w, rng))) for w in workers]
    assert merge_partials(answers) == report_of(log)


@SETTINGS
@given(LOGS, st.data())
def test_restore_from_deltas_rebuilds_the_report(log: list[Event], data: st.DataObject) -> None:
    state = PartitionState(400)
    deltas: list[Event] = []
    for i in range(0, len(log), 7):
        deltas += state.apply(log[i : i + 7])
    fresh = PartitionState(400)
    fresh.restore(data.draw(st.permutations(deltas)))
    assert live_report([fresh]) == live_report([state])
    # A crash after persisting some deltas: restore them, then the log is redelivered.
    crashed = PartitionState(400)
    crashed.restore(deltas[: data.draw(st.integers(0, len(deltas)))])
    crashed.apply(log)
    assert live_report([crashed]) == live_report([state])


def _inside(report: dict[str, Any], horizon: date, start: date) -> dict[str, Any]:
    """The rows a prune must not change: those whose inputs all lie inside the horizon.

    A flattery row also compares with the week before, so that week must be inside too, and
    from its Monday on held (a week is complete only from the first day held, ``start``). The
    active-user series after a prune starts at the first day still held (``start``).
    """

    def since(rows: list[dict[str, Any]], first: date) -> list[dict[str, Any]]:
        return [r for r in rows if date.fromisoformat(r["day"]) >= first]

    def later(days: int) -> date:
        return horizon + timedelta(days=days)

    weeks = {
        f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}"
        for d in (max(horizon, start) + timedelta(days=i) for i in range(7, 400))
        if d.weekday() == 0
    }
    active = since(report["active_users"], max(horizon, start))
    return {
        "events_by_day": since(report["events_by_day"], horizon),
        "feedback_by_model": since(report["feedback_by_model"], horizon),
        "risk_flags_daily": since(report["risk_flags_daily"], horizon),
        "dau": [(r["day"], r["dau"]) for r in active],
        "wau": [(r["day"], r["wau"]) for r in since(active, later(6))],
        "mau": [(r["day"], r["mau"], r["stickiness"]) for r in since(active, later(29))],
        # completeness flags may turn false: a window can now start before the first held day
        "at_risk": [
            (r["day"], r["users"])
            for r in since(report["users_at_risk_weekly"], max(later(6), start))
        ],
        "flattery": [r for r in report["flattery_watch"] if r["week"] in weeks],
    }


@SETTINGS
@given(st.lists(events(span_days=70), max_size=60), st.sampled_from([3, 10, 31]))
def test_prune_keeps_every_row_inside_the_horizon(log: list[Event], retention: int) -> None:
    log = dedupe(log) * 2  # exact copies: a forgotten id must not let other content in
    state = PartitionState(retention)
    state.apply(log)
    before = live_report([state])
    dropped = state.prune()
    horizon = state.horizon
    if horizon is None:
        assert dropped == []
        return
    assert all(d < horizon for d in dropped)
    after = live_report([state])
    held = state.day_range()
    start = held[0] if held else horizon
    assert _inside(after, horizon, start) == _inside(before, horizon, start)
    # Redelivery after the prune changes nothing either (the old events are late now).
    state.apply(log)
    assert live_report([state]) == after
