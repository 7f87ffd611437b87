"""Attribution to a model in the warehouse (docs/attribution.md): votes and flags without a model
are counted under their message's or session's model across days, raw and compacted alike, and
equal to the oracle."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle import oracle_report
from tests.streams.test_attribution import _events, flags_by_model
from tests.test_oracle import ATTRIBUTION, MODEL_OF, ev, flag, start, vote
from tests.warehouse.parquetfixtures import position
from tests.warehouse.test_rollup import load_interleaved, report, write
from usersignals.ingest.contract import Event
from usersignals.warehouse.compact import compact
from usersignals.warehouse.db import connect
from usersignals.warehouse.merge import merge_inputs


def load(root: Path, events: list[Event], how: str) -> None:
    """The events as loaded (``raw``), every day compacted, or compacted at random between loads."""
    if how == "interleaved":
        load_interleaved(root, events, 1, random.Random(7))
        return
    root.mkdir(parents=True, exist_ok=True)
    write(root, position(events, per_record=3))
    if how == "compacted":
        compact(root)


def merged_flags(root: Path) -> dict[str | None, int]:
    """Risk flags per attributed model as the report reads them (rollups merged with the tail)."""
    con = connect(root)
    try:
        cur = con.cursor()
        merge_inputs(cur)
        rows = cur.execute(
            "SELECT model, CAST(sum(flags) AS BIGINT) FROM risk_cells GROUP BY model"
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


HOW = ["raw", "compacted", "interleaved"]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    ("events", "key", "expected"), [c[1:] for c in ATTRIBUTION], ids=[c[0] for c in ATTRIBUTION]
)
def test_feedback_table(
    tmp_path: Path, events: list[Event], key: str, expected: list[dict[str, Any]], how: str
) -> None:
    load(tmp_path / "wh", events, how)
    assert report(tmp_path / "wh")[key] == expected


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    ("events", "expected"), [c[1:] for c in MODEL_OF], ids=[c[0] for c in MODEL_OF]
)
def test_flags_under_their_attributed_model(
    tmp_path: Path, events: list[Event], expected: dict[str, str | None], how: str
) -> None:
    load(tmp_path / "wh", events, how)
    want: dict[str | None, int] = {}
    for e in events:
        if e.type == "risk_flag":
            want[expected[e.event_id]] = want.get(expected[e.event_id], 0) + 1
    assert merged_flags(tmp_path / "wh") == want


def test_views_name_message_and_session_models(tmp_path: Path) -> None:
    events = [
        start("s0", "u1", "03-02", "s1", model="m2"),
        ev("m1", "u1", "2026-03-01T10:00:00+00:00", session_id="s1", message_id="x1"),
        ev("m2", "u1", "2026-03-01T11:00:00+00:00", session_id="s1", message_id="x1", model="m1"),
        ev("m3", "u2", "03-01", session_id="s1", message_id="x1", model="m3"),
    ]
    load(tmp_path / "wh", events, "raw")
    con = connect(tmp_path / "wh")
    try:
        messages = con.sql("SELECT * FROM message_models ORDER BY ALL").fetchall()
        sessions = con.sql("SELECT * FROM session_models ORDER BY ALL").fetchall()
    finally:
        con.close()
    assert messages == [("u1", "x1", "m1"), ("u2", "x1", "m3")]
    assert sessions == [("u1", "s1", "m1"), ("u2", "s1", "m3")]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=_events(),
    seed=st.integers(0, 2**32 - 1),
    partitions=st.sampled_from([1, 2]),
    compact_all=st.booleans(),
)
def test_any_load_and_compaction_order_equals_the_oracle(
    events: list[Event], seed: int, partitions: int, compact_all: bool
) -> None:
    rnd = random.Random(seed)
    shuffled = list(events)
    rnd.shuffle(shuffled)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "wh"
        load_interleaved(root, shuffled, partitions, rnd)
        if compact_all:
            compact(root)
        got = report(root)
        flags = merged_flags(root)
    want = oracle_report(events)
    assert got["feedback_by_model"] == want["feedback_by_model"]
    assert flags == flags_by_model(events)


def test_a_late_earlier_reference_on_a_compacted_day_names_the_model(tmp_path: Path) -> None:
    """A day served by rollups that later gets raw rows (no shared ids): the day holds two
    references of one message, and the earlier one (by ts) names the model of its bare vote."""
    root = tmp_path / "wh"
    root.mkdir()
    write(root, position([ev("m1", "u1", "2026-03-01T11:00:00+00:00", message_id="x1", model="a")]))
    compact(root)
    late = [
        ev("m0", "u1", "2026-03-01T10:00:00+00:00", message_id="x1", model="b"),
        vote("v1", "u1", "03-02", "x1", 1, model=None),
        flag("f1", "u1", "2026-03-01T12:00:00+00:00", "mania", "high", session_id="s1"),
        start("s0", "u1", "2026-03-01T11:30:00+00:00", "s1", model="c"),
    ]
    write(root, position(late, per_record=1))
    got = report(root)
    assert [(r["model"], r["thumbs_up"]) for r in got["feedback_by_model"]] == [("b", 1)]
    assert merged_flags(root) == {"c": 1}
