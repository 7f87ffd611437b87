"""Reports over compacted days (rollups) plus a raw tail equal the oracle, whatever the order:
every key, the history-only ones (tests/oracle_history.py) too."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle import oracle_report
from tests.oracle_history import oracle_history
from tests.warehouse.parquetfixtures import Positioned, events_table, position
from tests.warehouse.test_report import ev, events_, session_events_
from usersignals.ingest.contract import Event
from usersignals.warehouse.commit import write_range
from usersignals.warehouse.compact import compact, compact_day, days
from usersignals.warehouse.db import connect
from usersignals.warehouse.layout import DEADLETTER_SCHEMA, FileRange
from usersignals.warehouse.manifest import replace_manifest
from usersignals.warehouse.merge import merge_inputs
from usersignals.warehouse.plan import ROLLUPS_DIR, plan
from usersignals.warehouse.report import warehouse_report


def flushes(events: list[Event], partitions: int) -> list[list[Positioned]]:
    """The loader's flushes (two records of three events each), in log order."""
    by_flush: dict[tuple[int, int], list[Positioned]] = {}
    for row in position(events, partitions=partitions, per_record=3):
        by_flush.setdefault((row[1], row[2] // 2), []).append(row)
    return [by_flush[k] for k in sorted(by_flush)]


def write(root: Path, flush: list[Positioned]) -> None:
    r = FileRange(flush[0][1], flush[0][2], flush[-1][2])
    write_range(root, r, events_table(flush), DEADLETTER_SCHEMA.empty_table())


def report(root: Path) -> dict[str, Any]:
    con = connect(root)
    try:
        out = warehouse_report(con, history_period="week")
    finally:
        con.close()
    out["arena"] = []
    return out


def load_interleaved(root: Path, events: list[Event], partitions: int, rnd: random.Random) -> None:
    """Writes the flushes, partitions interleaved at random, compacting days in between."""
    pending: dict[int, list[list[Positioned]]] = {}
    for flush in flushes(events, partitions):
        pending.setdefault(flush[0][1], []).append(flush)
    root.mkdir(parents=True, exist_ok=True)
    while pending:
        p = rnd.choice(sorted(pending))
        write(root, pending[p].pop(0))
        if not pending[p]:
            del pending[p]
        loaded = days(root)
        if loaded and rnd.random() < 0.4:
            compact_day(root, rnd.choice(loaded))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.one_of(events_(), session_events_()), max_size=25),
    partitions=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**32 - 1),
    compact_all=st.booleans(),
)
def test_rollups_and_tail_equal_the_oracle(
    events: list[Event], partitions: int, seed: int, compact_all: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "wh"
        load_interleaved(root, events, partitions, random.Random(seed))
        if compact_all:
            compact(root)
        got = report(root)
    log = [row[0] for row in position(events, partitions=partitions, per_record=3)]
    assert got == oracle_report(log) | oracle_history(log)


def test_a_compacted_week_of_identity_calls_only_is_no_week_of_the_metrics(
    tmp_path: Path,
) -> None:
    """A week whose days hold only identity calls has no active users: compacted, it must not
    appear in the weekly flagged share (its week rollup had a row of 0 users)."""
    events = [ev("e1", "bob", 0, "identify", name="$identify"), ev("e2", "ann", 8, "message")]
    load_interleaved(tmp_path / "wh", events, 1, random.Random(1))
    compact(tmp_path / "wh")
    got = report(tmp_path / "wh")
    log = [row[0] for row in position(events, partitions=1, per_record=3)]
    assert got == oracle_report(log) | oracle_history(log)
    assert {r["week"] for r in got["wellbeing_weekly"]} == {"2026-08-10"}


def test_copies_across_days_and_in_the_tail(tmp_path: Path) -> None:
    root = tmp_path / "wh"
    first = [
        ev("e1", "alice", 0, model="m-1"),
        ev("e2", "bob", 0, model="m-1"),
        ev("e3", "carol", 1, model="m-2"),
        ev("e1", "dan", 8, model="m-2"),  # a copy of e1 on another day: not counted
    ]
    write(root, position(first, per_record=3))
    compact(root)
    p = plan(root)
    assert (sorted(p.served), p.tail, len(p.weeks)) == (
        ["2026-08-03", "2026-08-04", "2026-08-11"],
        [],
        2,
    )
    shared = pq.read_table(p.rollups["shared"][-1]).to_pylist()
    assert [(str(r["day"]), str(r["other_day"])) for r in shared] == [("2026-08-11", "2026-08-03")]
    assert report(root) == oracle_report(first) | oracle_history(first)
    # a later record repeats e3 (ignored) and brings erin to day 1
    later = [(ev("e3", "carol", 1, model="m-2"), 0, 2, 0), (ev("e4", "erin", 1), 0, 2, 1)]
    write(root, later)
    got = report(root)
    assert got == oracle_report([*first, later[1][0]]) | oracle_history([*first, later[1][0]])
    assert got["events_by_day"] == [
        {"day": "2026-08-03", "events": 2, "complete": True},
        {"day": "2026-08-04", "events": 2, "complete": False},
    ]
    # the user dictionary only grows; the previous version stays for readers that listed it
    assert sorted(f.name for f in (root / ROLLUPS_DIR).glob("users-*")) == [
        "users-000000000003.parquet",
        "users-000000000004.parquet",
    ]


def test_whole_compacted_weeks_are_read_from_their_week_rollups(tmp_path: Path) -> None:
    """Compaction writes each week's rows (users of the week, stickiness distribution, usage
    bands); a report reads them for whole compacted weeks, and counts a week from its days when
    they are missing (a week written by an older version) or a day of it is in the tail."""
    root = tmp_path / "wh"
    events = [
        ev("e1", "alice", 0),
        ev("e2", "alice", 1),
        ev("e3", "bob", 1),
        ev("e4", "bob", 2, "risk_flag", severity="critical"),
        ev("e5", "carol", 7),
        ev("e6", "alice", 8),
        ev("e7", "alice", 8, seconds=50_000),
    ]
    write(root, position(events, per_record=3))
    compact(root)
    want = oracle_report(events) | oracle_history(events)
    p = plan(root)
    assert {k: [f.parent.name for f in v] for k, v in p.week_rollups.items()} == {
        k: ["week=2026-08-03", "week=2026-08-10"]
        for k in ("user_weeks", "stickiness_distribution", "risk_concentration")
    }
    con = connect(root)
    try:
        cur = con.cursor()
        merge_inputs(cur)
        rolled = cur.execute("SELECT week FROM rolled_weeks ORDER BY week").fetchall()
        rows = cur.execute("SELECT * FROM rolled_stickiness_distribution ORDER BY ALL").fetchall()
    finally:
        con.close()
    assert [str(w) for (w,) in rolled] == ["2026-08-03", "2026-08-10"]
    assert [(str(w), k, n) for w, k, n in rows] == [
        ("2026-08-03", 2, 2),
        ("2026-08-10", 1, 2),
    ]
    assert report(root) == want
    # without the week rollups of the first week, its rows come from its days
    kinds = [str(f.relative_to(root)) for f in p.week_rollups["user_weeks"][:1]]
    replace_manifest(root, lambda cur: cur.with_files(remove=kinds))
    assert [f.parent.name for f in plan(root).weeks] == ["week=2026-08-10"]
    assert report(root) == want
    # a late event of the second week: that week is counted from its days and the tail
    late = [(ev("e8", "dan", 9, "risk_flag"), 0, 5, 0)]
    write(root, late)
    assert plan(root).weeks == []
    log = [*events, late[0][0]]
    assert report(root) == oracle_report(log) | oracle_history(log)
