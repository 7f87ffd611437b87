"""Retention, lifecycle and the stickiness distribution (engagement.sql): a hand-made set
whose answers are written here, and the oracle on generated logs, raw and compacted."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle_engagement import oracle_engagement
from tests.warehouse.parquetfixtures import write_warehouse
from tests.warehouse.test_report import ev, events_
from usersignals.ingest.contract import Event
from usersignals.warehouse.compact import compact_day
from usersignals.warehouse.db import connect
from usersignals.warehouse.engagement import engagement_report

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
        return engagement_report(con, **kw)
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
        assert engagement_report(con) == {
            "retention": [],
            "lifecycle": [],
            "stickiness_distribution": [],
        }
    finally:
        con.close()


def test_an_unknown_period_is_refused(tmp_path: Path) -> None:
    (tmp_path / "wh").mkdir()
    con = connect(tmp_path / "wh")
    with pytest.raises(ValueError, match="period must be one of day, week, not 'month'"):
        engagement_report(con, period="month")


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
            assert engagement_report(con, period=period) == oracle_engagement(log, period)
        finally:
            con.close()


@pytest.mark.parametrize("period", ["day", "week"])
def test_compacted_days_are_read_from_their_rollups_with_the_same_answer(
    tmp_path: Path, period: str
) -> None:
    log = write_warehouse(tmp_path / "wh", HAND, partitions=2)
    con = connect(tmp_path / "wh")
    before = engagement_report(con, period=period)
    con.close()
    for day in sorted({e.ts.date().isoformat() for e in log})[:-1]:
        compact_day(tmp_path / "wh", day)
    con = connect(tmp_path / "wh")
    try:
        assert engagement_report(con, period=period) == before == oracle_engagement(log, period)
    finally:
        con.close()
