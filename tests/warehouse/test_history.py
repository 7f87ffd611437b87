"""Retention, lifecycle, the stickiness distribution (engagement.sql) and the weekly flagged
share (wellbeing.sql): hand-made sets whose answers are written here, and the oracle on
generated logs, raw and compacted."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle_history import oracle_history
from tests.warehouse.parquetfixtures import write_warehouse
from tests.warehouse.test_report import ev, events_, session_events_
from usersignals.ingest.contract import Event
from usersignals.ingest.rules import CHOICES
from usersignals.warehouse.compact import compact_day
from usersignals.warehouse.db import connect
from usersignals.warehouse.history import history_report
from usersignals.warehouse.manifest import read_manifest
from usersignals.warehouse.plan import plan

# 2026-08-03 (day 0) is a Monday: weeks start on days 0, 7, 14, 21.
HAND = [
    ev("a0", "alice", 0),
    ev("a1", "alice", 1),
    ev("a2", "alice", 2, "feedback"),
    ev("a3", "alice", 8),  # alice: weeks 0 and 1
    ev("b0", "bob", 0),
    ev("b1", "bob", 15),  # bob: weeks 0 and 2 (resurrecting in 2)
    ev("c0", "carol", 9),
    ev("c1", "carol", 10),
    ev("c2", "carol", 23),  # carol: first in week 1, back in week 3
    ev("a0", "dan", 22),  # a later copy of a0: not an event of dan's
    ev("d0", "dan", 21, "risk_flag"),  # dan: week 3 only
]


def _report(tmp: Path, events: list[Event], **kw: Any) -> dict[str, Any]:
    write_warehouse(tmp / "wh", events)
    con = connect(tmp / "wh")
    try:
        return history_report(con, **kw)
    finally:
        con.close()


def _triangle(rows: list[dict[str, Any]]) -> dict[str, list[tuple[int, int, int]]]:
    out: dict[str, list[tuple[int, int, int]]] = {}
    for r in rows:
        assert r["period"] == len(out.setdefault(r["cohort"], []))
        out[r["cohort"]].append((r["cohort_users"], r["users"], r["users_on_or_after"]))
    return out


def test_weekly_retention_of_the_hand_set(tmp_path: Path) -> None:
    report = _report(tmp_path, HAND)
    # 2026-08-03: alice and bob; week 1 alice; week 2 bob; week 3 nobody.
    # 2026-08-10: carol; away in week 2, back in week 3. No cohort starts on 2026-08-17.
    assert _triangle(report["retention"]) == {
        "2026-08-03": [(2, 2, 2), (2, 1, 2), (2, 1, 1), (2, 0, 0)],
        "2026-08-10": [(1, 1, 1), (1, 0, 1), (1, 1, 1)],
        "2026-08-24": [(1, 1, 1)],
    }


def test_weekly_lifecycle_of_the_hand_set(tmp_path: Path) -> None:
    report = _report(tmp_path, HAND)
    by_week: dict[str, dict[str, int]] = {}
    for r in report["lifecycle"]:
        by_week.setdefault(r["period"], {})[r["status"]] = r["users"]
    assert by_week == {
        "2026-08-03": {"new": 2, "returning": 0, "resurrecting": 0, "dormant": 0},
        "2026-08-10": {"new": 1, "returning": 1, "resurrecting": 0, "dormant": 1},
        "2026-08-17": {"new": 0, "returning": 0, "resurrecting": 1, "dormant": 2},
        "2026-08-24": {"new": 1, "returning": 0, "resurrecting": 1, "dormant": 1},
    }
    # every status of every week, in this order
    assert [r["status"] for r in report["lifecycle"][:4]] == [
        "new",
        "returning",
        "resurrecting",
        "dormant",
    ]


def test_stickiness_distribution_of_the_hand_set(tmp_path: Path) -> None:
    report = _report(tmp_path, HAND)
    assert [
        (r["week"], r["days_active"], r["users"]) for r in report["stickiness_distribution"]
    ] == [
        ("2026-08-03", 1, 1),  # bob
        ("2026-08-03", 3, 1),  # alice: days 0, 1, 2
        ("2026-08-10", 1, 1),  # alice
        ("2026-08-10", 2, 1),  # carol
        ("2026-08-17", 1, 1),  # bob
        ("2026-08-24", 1, 2),  # carol, dan
    ]


def test_daily_periods_of_the_hand_set(tmp_path: Path) -> None:
    report = _report(tmp_path, HAND, period="day")
    cohorts = _triangle(report["retention"])
    assert list(cohorts) == [
        "2026-08-03",  # alice, bob
        "2026-08-12",  # carol
        "2026-08-24",  # dan
    ]
    first = cohorts["2026-08-03"]
    assert len(first) == 24  # offsets 0..23: the last day with data is day 23
    assert first[:3] == [(2, 2, 2), (2, 1, 2), (2, 1, 2)]
    assert first[8] == (2, 1, 2)
    assert first[9] == (2, 0, 1)
    assert first[15] == (2, 1, 1)
    assert first[16] == (2, 0, 0)
    statuses = {(r["period"], r["status"]): r["users"] for r in report["lifecycle"]}
    assert len(statuses) == 24 * 4
    assert statuses[("2026-08-04", "returning")] == 1  # alice
    assert statuses[("2026-08-04", "dormant")] == 1  # bob
    assert statuses[("2026-08-11", "resurrecting")] == 1  # alice on day 8
    assert statuses[("2026-08-18", "resurrecting")] == 1  # bob on day 15


def test_a_range_shows_its_periods_and_keeps_whole_history_cohorts(tmp_path: Path) -> None:
    report = _report(tmp_path, HAND, day_from=date(2026, 8, 12), day_to=date(2026, 8, 18))
    # weeks touching 08-12..08-18: 08-10 and 08-17; cells after 08-18 left out
    assert _triangle(report["retention"]) == {"2026-08-10": [(1, 1, 1), (1, 0, 1)]}
    assert {r["period"] for r in report["lifecycle"]} == {"2026-08-10", "2026-08-17"}
    # bob is resurrecting in 08-17, not new: his first week is before the range
    assert {
        r["status"]: r["users"] for r in report["lifecycle"] if r["period"] == "2026-08-17"
    } == {"new": 0, "returning": 0, "resurrecting": 1, "dormant": 2}
    assert {r["week"] for r in report["stickiness_distribution"]} == {"2026-08-10", "2026-08-17"}


def test_an_empty_warehouse_has_no_rows(tmp_path: Path) -> None:
    (tmp_path / "wh").mkdir()
    con = connect(tmp_path / "wh")
    try:
        assert history_report(con) == {
            "retention": [],
            "lifecycle": [],
            "stickiness_distribution": [],
            "sessions_daily": [],
            "wellbeing_weekly": [],
            "risk_concentration": [],
        }
    finally:
        con.close()


def test_an_unknown_period_is_refused(tmp_path: Path) -> None:
    (tmp_path / "wh").mkdir()
    con = connect(tmp_path / "wh")
    with pytest.raises(ValueError, match="period must be one of day, week, not 'month'"):
        history_report(con, period="month")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(events_(), max_size=30),
    partitions=st.sampled_from([1, 3]),
    period=st.sampled_from(["day", "week"]),
)
def test_engagement_equals_the_oracle(events: list[Event], partitions: int, period: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = write_warehouse(Path(tmp) / "wh", events, partitions=partitions)
        con = connect(Path(tmp) / "wh")
        try:
            assert history_report(con, period=period) == oracle_history(log, period)
        finally:
            con.close()


@pytest.mark.parametrize("period", ["day", "week"])
def test_compacted_days_are_read_from_their_rollups_with_the_same_answer(
    tmp_path: Path, period: str
) -> None:
    log = write_warehouse(tmp_path / "wh", HAND + WELL + SESS, partitions=2)
    con = connect(tmp_path / "wh")
    before = history_report(con, period=period)
    con.close()
    compacted = sorted({e.ts.date().isoformat() for e in log})[:-1]
    for day in compacted:
        compact_day(tmp_path / "wh", day)
    served = plan(tmp_path / "wh", read_manifest(tmp_path / "wh")).served
    assert sorted(served) == compacted  # read from their rollups, not their rows
    con = connect(tmp_path / "wh")
    try:
        assert history_report(con, period=period) == before == oracle_history(log, period)
    finally:
        con.close()


# Week 2026-08-03: u1 and u4 with m-1, u2 with m-2, u3 without a model. Week 2026-08-10: u1
# flagged in the session they began with m-1 the week before, u2 flagged under m-3.
WELL = [
    ev("w1", "u1", 0, "session_start", session_id="s1", model="m-1"),
    ev("w2", "u1", 0, model="m-1", session_id="s1"),
    ev("w3", "u1", 1, "risk_flag", session_id="s1", category="mania", severity="low"),
    ev("w4", "u2", 2, model="m-2"),
    ev("w5", "u2", 2, "risk_flag", model="m-2", category="mania", severity="critical"),
    ev("w6", "u2", 3, "risk_flag", model="m-2", category="sycophancy", severity="high"),
    ev("w7", "u3", 4),
    ev("w8", "u3", 4, "risk_flag", category="mania", severity="high"),  # no model, no session
    ev("w9", "u4", 5, model="m-1"),
    ev("w10", "u2", 8, "risk_flag", model="m-3", category="psychosis", severity="medium"),
    ev("w11", "u1", 9, "risk_flag", session_id="s1", category="self_harm", severity="high"),
]


def _cells(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None, str], tuple[Any, ...]]:
    """(week, model, category) -> (flagged, flagged high, active, share, share high), for the
    rows with a flag; the others must be zeros."""
    out = {}
    for r in rows:
        values = (
            r["flagged_users"],
            r["flagged_users_high"],
            r["active_users"],
            r["share"],
            r["share_high"],
        )
        if r["flagged_users"]:
            out[(r["week"], r["model"], r["category"])] = values
        else:
            assert r["flagged_users_high"] == 0
            assert r["share"] == (0.0 if r["active_users"] else None)
    return out


def test_weekly_flagged_share_of_the_hand_set(tmp_path: Path) -> None:
    rows = _report(tmp_path, WELL)["wellbeing_weekly"]
    # every category, for all models and each model of the week (m-1 in the second week
    # through u1's session only)
    assert [(r["week"], r["model"]) for r in rows[::8]] == [
        ("2026-08-03", None),
        ("2026-08-03", "m-1"),
        ("2026-08-03", "m-2"),
        ("2026-08-10", None),
        ("2026-08-10", "m-1"),
        ("2026-08-10", "m-3"),
    ]
    assert [r["category"] for r in rows[:8]] == sorted(CHOICES["category"])
    active = {(r["week"], r["model"]): r["active_users"] for r in rows}
    assert active == {
        ("2026-08-03", None): 4,
        ("2026-08-03", "m-1"): 2,
        ("2026-08-03", "m-2"): 1,
        ("2026-08-10", None): 2,
        ("2026-08-10", "m-1"): 0,
        ("2026-08-10", "m-3"): 1,
    }
    assert _cells(rows) == {
        ("2026-08-03", None, "mania"): (3, 2, 4, 0.75, 0.5),
        ("2026-08-03", None, "sycophancy"): (1, 1, 4, 0.25, 0.25),
        ("2026-08-03", "m-1", "mania"): (1, 0, 2, 0.5, 0.0),  # attributed through s1
        ("2026-08-03", "m-2", "mania"): (1, 1, 1, 1.0, 1.0),
        ("2026-08-03", "m-2", "sycophancy"): (1, 1, 1, 1.0, 1.0),
        ("2026-08-10", None, "psychosis"): (1, 0, 2, 0.5, 0.0),
        ("2026-08-10", None, "self_harm"): (1, 1, 2, 0.5, 0.5),
        ("2026-08-10", "m-1", "self_harm"): (1, 1, 0, None, None),  # no event carries m-1
        ("2026-08-10", "m-3", "psychosis"): (1, 0, 1, 1.0, 0.0),
    }
    assert rows == oracle_history(WELL)["wellbeing_weekly"]


def test_the_sql_has_the_contracts_risk_categories(tmp_path: Path) -> None:
    (tmp_path / "wh").mkdir()
    con = connect(tmp_path / "wh")
    try:
        listed = [r[0] for r in con.sql("SELECT category FROM risk_categories").fetchall()]
    finally:
        con.close()
    assert sorted(listed) == sorted(CHOICES["category"])


# 2026-08-03 (day 0): four sessions, one ending after midnight; u5 sends five messages
# without a session.
SESS = [
    ev("s1a", "u1", 0, "session_start", session_id="s1", seconds=36_000),
    ev("s1b", "u1", 0, session_id="s1", seconds=36_060),
    ev("s1c", "u1", 0, session_id="s1", seconds=36_120, role="assistant"),
    ev("s1d", "u1", 0, "session_end", session_id="s1", seconds=36_600, duration_s=900.0),
    ev("s2a", "u2", 0, "session_start", session_id="s2", seconds=85_800),
    ev("s2b", "u2", 1, session_id="s2", seconds=1_200),  # 00:20 the next day
    ev("s3a", "u3", 0, session_id="s3", seconds=43_200),
    ev("s3b", "u3", 0, session_id="s3", seconds=50_400),
    ev("s4a", "u4", 1, "session_start", session_id="s4"),
    ev("s4b", "u4", 1, "session_end", session_id="s4", duration_s=4_000.0),
    ev("s4c", "u4", 1, "risk_flag", category="mania", severity="low"),
    *(ev(f"u5m{i}", "u5", 2, seconds=i) for i in range(5)),
    ev("u5f", "u5", 2, "risk_flag", category="self_harm", severity="critical"),
]


def test_sessions_per_day_of_the_hand_set(tmp_path: Path) -> None:
    rows = _report(tmp_path, SESS)["sessions_daily"]
    assert rows == [
        # lengths 900 (its session_end says so), 1,800 (after midnight), 7,200
        {
            "day": "2026-08-03",
            "sessions": 3,
            "duration_p50_s": 1800.0,
            "duration_p90_s": 6120.0,  # 1,800 + 0.8 * (7,200 - 1,800)
            "long_share": 0.333333,
            "messages_per_session": 1.666667,  # 2 + 1 + 2 messages, any role
        },
        {
            "day": "2026-08-04",
            "sessions": 1,
            "duration_p50_s": 4000.0,
            "duration_p90_s": 4000.0,
            "long_share": 1.0,
            "messages_per_session": 0.0,
        },
    ]


def test_who_carries_the_risk_in_the_hand_set(tmp_path: Path) -> None:
    rows = _report(tmp_path, SESS)["risk_concentration"]
    assert [r["band"] for r in rows] == list(range(1, 11))
    # messages sent: u4 0, u1 1, u2 1, u3 2, u5 5; a band is 1 + floor(10 * fewer / 5)
    assert {r["band"]: (r["users"], r["flagged_users"]) for r in rows if r["users"]} == {
        1: (1, 1),  # u4, flagged
        3: (2, 0),  # u1 and u2 tie
        7: (1, 0),  # u3
        9: (1, 1),  # u5, flagged: with 5 users nobody is in band 10
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(session_events_(), max_size=30), partitions=st.sampled_from([1, 2]))
def test_sessions_and_usage_bands_equal_the_oracle(events: list[Event], partitions: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = write_warehouse(Path(tmp) / "wh", events, partitions=partitions)
        con = connect(Path(tmp) / "wh")
        try:
            assert history_report(con) == oracle_history(log)
        finally:
            con.close()
