"""Attribution to a model in the live folds (docs/attribution.md): votes and flags without a
model are counted under the model of their message or session, whatever the arrival order,
through restore and pruning, and equal to the oracle."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.oracle import attributed_models, dedupe, event_day, oracle_report
from tests.test_oracle import ATTRIBUTION, MODEL_OF, ev, flag, start, vote
from usersignals.ingest.batching import Item
from usersignals.ingest.contract import Event, decode_record
from usersignals.ingest.typed import TypedEvents
from usersignals.streams.changelog import PartitionKeeper
from usersignals.streams.folds import PartitionState
from usersignals.streams.livereport import live_report


def folded(events: list[Event], retention_days: int = 400, batch: int = 1000) -> PartitionState:
    state = PartitionState(retention_days)
    for i in range(0, len(events), batch):
        state.apply(events[i : i + batch])
    return state


def flags_by_model(events: list[Event]) -> dict[str | None, int]:
    """The oracle's risk flags per attributed model."""
    events = dedupe(events)
    model_of = attributed_models(events)
    return dict(Counter(model_of[e.event_id] for e in events if e.type == "risk_flag"))


def votes_by_model(events: list[Event]) -> dict[tuple[str | None, int], int]:
    """The oracle's latest thumbs per (attributed model, rating), over every day."""
    counts: Counter[tuple[str | None, int]] = Counter()
    for row in oracle_report(events)["feedback_by_model"]:
        counts[(row["model"], 1)] += row["thumbs_up"]
        counts[(row["model"], -1)] += row["thumbs_down"]
    return {k: n for k, n in counts.items() if n}


def high_users_by_model(events: list[Event]) -> dict[str | None, dict[str, int]]:
    """The oracle's high or critical flags per attributed model and user, per day."""
    events = dedupe(events)
    model_of = attributed_models(events)
    out: dict[Any, Counter[str]] = {}
    for e in events:
        if e.type == "risk_flag" and e.severity in ("high", "critical"):
            out.setdefault((event_day(e), model_of[e.event_id]), Counter())[e.user_id] += 1
    return {k: dict(c) for k, c in out.items()}


def live_high_users(state: PartitionState) -> dict[Any, dict[str, int]]:
    return state.risk_high_by_model()


@pytest.mark.parametrize(
    ("events", "key", "expected"), [c[1:] for c in ATTRIBUTION], ids=[c[0] for c in ATTRIBUTION]
)
def test_every_arrival_order_of_the_table(
    events: list[Event], key: str, expected: list[dict[str, Any]]
) -> None:
    for order in itertools.permutations(events):
        assert live_report([folded(list(order))])[key] == expected, order


@pytest.mark.parametrize(
    ("events", "expected"), [c[1:] for c in MODEL_OF], ids=[c[0] for c in MODEL_OF]
)
@pytest.mark.parametrize("order", ["log", "reversed", "one by one"])
def test_flags_and_votes_under_their_attributed_model(
    events: list[Event], expected: dict[str, str | None], order: str
) -> None:
    log = events[::-1] if order == "reversed" else events
    state = folded(log, batch=1 if order == "one by one" else 1000)
    g = state.gauges()
    want_flags = Counter(expected[e.event_id] for e in events if e.type == "risk_flag")
    assert g["risk_flags_by_model"] == dict(want_flags)
    want_votes = Counter((expected[e.event_id], e.rating) for e in events if e.type == "feedback")
    assert g["votes_total"] == dict(want_votes)


def test_a_flag_without_model_or_session_counts_under_none() -> None:
    state = folded([flag("r1", "u1", "03-02", "mania", "high")])
    assert state.gauges()["risk_flags_by_model"] == {None: 1}
    assert live_high_users(state) == {(datetime(2026, 3, 2).date(), None): {"u1": 1}}


def test_a_session_start_arriving_last_moves_flags_and_votes() -> None:
    events = [
        flag("r1", "u1", "03-03", "mania", "high", session_id="s1"),
        flag("r2", "u1", "03-03", "mania", "critical", session_id="s1"),
        flag("r3", "u1", "03-04", "mania", "low", session_id="s1"),
        vote("v1", "u1", "03-04", "x1", -1, model=None, session_id="s1"),
    ]
    state = folded(events)
    assert state.gauges()["risk_flags_by_model"] == {None: 3}
    state.apply([start("s0", "u1", "03-02", "s1", model="m1")])
    g = state.gauges()
    assert (g["risk_flags_by_model"], g["votes_total"]) == ({"m1": 3}, {("m1", -1): 1})
    assert live_high_users(state) == {(datetime(2026, 3, 3).date(), "m1"): {"u1": 2}}
    # an earlier message of the session with another model takes over
    state.apply([ev("m0", "u1", "03-01", session_id="s1", model="m2")])
    g = state.gauges()
    assert (g["risk_flags_by_model"], g["votes_total"]) == ({"m2": 3}, {("m2", -1): 1})
    # the rated message's own model comes before the session's
    state.apply([ev("m1", "u1", "03-04", session_id="s1", message_id="x1", model="m3")])
    assert state.gauges()["votes_total"] == {("m3", -1): 1}


def test_pruning_the_session_start_falls_back_to_the_next_reference() -> None:
    events = [
        start("s0", "u1", "03-01", "s1", model="m1"),
        ev("m1", "u1", "03-05", session_id="s1", model="m2"),
        flag("r1", "u1", "03-06", "mania", "high", session_id="s1"),
        ev("m2", "u1", "03-01", message_id="x1", model="m1"),
        vote("v1", "u1", "03-06", "x1", 1, model=None, session_id="s1"),
        ev("e9", "u2", "03-09"),
    ]
    state = folded(events, retention_days=7)
    assert state.gauges()["votes_total"] == {("m1", 1): 1}
    assert state.prune() == [datetime(2026, 3, 1).date()]
    g = state.gauges()
    assert (g["risk_flags_by_model"], g["votes_total"]) == ({"m2": 1}, {("m2", 1): 1})
    kept = [e for e in events if e.ts.day > 1]
    assert _state_of(state) == _state_of(folded(kept, retention_days=7))


def test_restore_from_the_changelog_keeps_session_ids() -> None:
    events = [
        flag("r1", "u1", "03-03", "mania", "high", session_id="s1"),
        start("s0", "u1", "03-02", "s1", model="m1"),
    ]
    table: dict[bytes, bytes] = {}
    keeper = PartitionKeeper(0, 35)
    keeper.fold(table, 0, events[:1])
    keeper.fold(table, 1, events[1:])
    again = PartitionKeeper(0, 35)
    again.restore(reversed(list(table.items())))
    assert again.state.gauges()["risk_flags_by_model"] == {"m1": 1}


class _Recorder(TypedEvents):
    """The README's tracker calls, recorded as the bytes the SDK would send."""

    def __init__(self, bootstrap: str) -> None:
        self.sent: list[bytes] = []

    def _enqueue(self, event_id: str, item: Item) -> str:
        self.sent.append(item[1])
        return event_id

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def flush(self, timeout: float) -> bool:
        return True


def test_the_readme_example_flag_counts_for_its_sessions_model() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    code = next(b for b in readme.split("```python")[1:] if "Tracker(" in b).split("```")[0]
    code = code.replace("from usersignals.ingest.tracker import Tracker", "")
    recorded: list[_Recorder] = []

    def tracker(bootstrap: str) -> _Recorder:
        recorded.append(_Recorder(bootstrap))
        return recorded[-1]

    exec(compile(code, "README", "exec"), {"Tracker": tracker})
    events = [e for raw in recorded[0].sent for e in decode_record(raw)[0]]
    assert [e.model for e in events if e.type == "risk_flag"] == [None]
    assert folded(events).gauges()["risk_flags_by_model"] == {"m-5.2": 1}


# -- properties ----------------------------------------------------------------------------

T0 = datetime(2026, 2, 27, tzinfo=UTC)  # a Friday: sessions cross days and ISO weeks
HOURS = 24 * 12


@st.composite
def _events(draw: st.DrawFn) -> list[Event]:
    """A set of distinct events of few users, sessions and messages, models often missing."""
    n = draw(st.integers(0, 30))
    out = []
    for i in range(n):
        kind = draw(
            st.sampled_from(["session_start", "message", "message", "feedback", "risk_flag"])
        )
        fields: dict[str, Any] = {
            "model": draw(st.sampled_from([None, None, "m1", "m2"])),
            "session_id": draw(st.sampled_from([None, "s0", "s1", "s2"])),
        }
        if kind == "message":
            fields["role"] = "assistant"
            fields["message_id"] = draw(st.sampled_from([None, "x0", "x1", "x2"]))
        elif kind == "feedback":
            fields["message_id"] = draw(st.sampled_from(["x0", "x1", "x2"]))
            fields["rating"] = draw(st.sampled_from([-1, 0, 1, 1]))
        elif kind == "risk_flag":
            fields["category"] = "mania"
            fields["severity"] = draw(st.sampled_from(["low", "high", "critical"]))
        out.append(
            Event(
                event_id=f"e{i:02d}",
                type=kind,
                user_id=draw(st.sampled_from(["u0", "u1"])),
                ts=T0
                + timedelta(hours=draw(st.integers(0, HOURS)), seconds=draw(st.integers(0, 1))),
                **fields,
            )
        )
    return out


SETTINGS = settings(max_examples=100, deadline=None)


def _state_of(state: PartitionState) -> dict[str, Any]:
    """Everything a report or a scrape reads, over every held day."""
    g = state.gauges()
    partial = state.partial(state.day_range())
    return {
        "partial": {
            k: sorted(v, key=repr) if isinstance(v, list) else v for k, v in partial.items()
        },
        "votes_total": g["votes_total"],
        "risk_flags_by_model": g["risk_flags_by_model"],
        "high": live_high_users(state),
    }


@SETTINGS
@given(_events(), st.randoms(use_true_random=False), st.integers(1, 7))
def test_any_arrival_order_equals_the_oracle(events: list[Event], rnd: Any, batch: int) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    state = folded(shuffled, batch=batch)
    assert live_report([state])["feedback_by_model"] == oracle_report(events)["feedback_by_model"]
    g = state.gauges()
    assert g["risk_flags_by_model"] == flags_by_model(events)
    assert g["votes_total"] == votes_by_model(events)
    assert live_high_users(state) == high_users_by_model(events)
    assert _state_of(state) == _state_of(folded(events))
    restored = PartitionState(400)
    restored.restore(reversed(shuffled))
    assert _state_of(restored) == _state_of(state)


@SETTINGS
@given(_events(), st.randoms(use_true_random=False), st.sampled_from([1, 3, 6]))
def test_pruning_equals_folding_only_the_kept_days(
    events: list[Event], rnd: Any, retention: int
) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    state = PartitionState(retention)
    state.restore(shuffled)
    state.prune()
    horizon = state.horizon
    kept = [e for e in events if horizon is None or e.ts.date() >= horizon]
    fresh = PartitionState(retention)
    fresh.restore(kept)
    assert _state_of(state) == _state_of(fresh)
    assert state.gauges()["risk_flags_by_model"] == flags_by_model(kept)
