"""The warehouse report equals the oracle's, on hand tables and on generated logs."""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle import oracle_report
from tests.warehouse.parquetfixtures import write_warehouse
from usersignals.ingest.contract import Event
from usersignals.metrics.periods import DayRangeError
from usersignals.warehouse.db import connect
from usersignals.warehouse.report import REPORT_KEYS, warehouse_report

DAY0 = datetime(2026, 8, 3, tzinfo=UTC)


def ev(eid: str, user: str, day: int, kind: str = "message", **fields: Any) -> Event:
    """An event ``day`` days after 2026-08-03, at noon unless ``seconds`` says otherwise."""
    seconds = fields.pop("seconds", 43_200)
    defaults: dict[str, Any] = {
        "message": {"role": "user"},
        "feedback": {"message_id": "m1", "rating": 1},
        "risk_flag": {"category": "sycophancy", "severity": "high"},
        "preference": {"model_a": "m-a", "model_b": "m-b", "winner": "a"},
    }.get(kind, {})
    ts = DAY0 + timedelta(days=day, seconds=seconds)
    return Event(event_id=eid, type=kind, user_id=user, ts=ts, **{**defaults, **fields})


def report_of(tmp: Path, events: list[Event], **kw: Any) -> tuple[dict[str, Any], list[Event]]:
    log = write_warehouse(tmp / "wh", events, **kw)
    con = connect(tmp / "wh")
    try:
        report = warehouse_report(con)
    finally:
        con.close()
    report["arena"] = []
    return report, log


def test_empty_warehouse_gives_empty_tables(tmp_path: Path) -> None:
    (tmp_path / "wh").mkdir()
    con = connect(tmp_path / "wh")
    assert warehouse_report(con) == {key: [] for key in REPORT_KEYS} | {
        "range": {"from": None, "to": None},
        "tz": "UTC",
        "week_start": "monday",
    }


def test_hand_table(tmp_path: Path) -> None:
    events = [
        ev("e1", "alice", 0, model="m-1"),
        ev("e2", "bob", 0),
        ev("e1", "carol", 5),  # a later copy of e1: ignored everywhere
        ev("e3", "alice", 2, "feedback", model="m-1", rating=1, seconds=10),
        ev("e4", "alice", 3, "feedback", model="m-2", rating=-1, seconds=10),  # replaces e3
        ev("e5", "bob", 3, "feedback", message_id="m9", rating=0),  # withdrawn: nowhere
        ev("e6", "bob", 9, "risk_flag", severity="critical"),
        ev("e7", "bob", 9, "risk_flag", severity="critical"),
        ev("e8", "dan", 9, "risk_flag", category="mania", severity="low"),
    ]
    report, _ = report_of(tmp_path, events, rejected=["not_json", "bad_value", "not_json"])
    assert report["events_by_day"] == [
        {"day": "2026-08-03", "events": 2, "complete": True},
        {"day": "2026-08-05", "events": 1, "complete": True},
        {"day": "2026-08-06", "events": 2, "complete": True},
        {"day": "2026-08-12", "events": 3, "complete": False},
    ]
    au = {r["day"]: (r["dau"], r["wau"], r["mau"], r["stickiness"]) for r in report["active_users"]}
    assert len(au) == 10
    assert au["2026-08-03"] == (2, 2, 2, 1.0)
    assert au["2026-08-04"] == (0, 2, 2, 0.0)  # a gap day keeps its windows
    assert au["2026-08-06"] == (2, 2, 2, 1.0)
    assert au["2026-08-09"] == (0, 2, 2, 0.0)
    assert au["2026-08-10"] == (0, 2, 2, 0.0)  # bob's 08-03 left the week, alice's 08-06 did not
    assert au["2026-08-12"] == (2, 3, 3, 0.666667)
    assert report["feedback_by_model"] == [
        {"day": "2026-08-06", "model": "m-2", "thumbs_up": 0, "thumbs_down": 1}
    ]
    assert report["risk_flags_daily"] == [
        {"day": "2026-08-12", "category": "mania", "severity": "low", "flags": 1, "users": 1},
        {
            "day": "2026-08-12",
            "category": "sycophancy",
            "severity": "critical",
            "flags": 2,
            "users": 1,
        },
    ]
    assert [r["users"] for r in report["users_at_risk_weekly"]] == [0] * 9 + [1]
    assert report["rejected"] == [
        {"reason": "bad_value", "count": 1},
        {"reason": "not_json", "count": 2},
    ]


def test_day_range_filters_rows_but_not_windows(tmp_path: Path) -> None:
    events = [ev("e1", "alice", 0), ev("e2", "bob", 4), ev("e3", "carol", 8)]
    write_warehouse(tmp_path / "wh", events)
    con = connect(tmp_path / "wh")
    report = warehouse_report(con, date(2026, 8, 7), date(2026, 8, 8))
    flags = {"complete": True, "wau_complete": False, "mau_complete": False}
    assert report["active_users"] == [
        {"day": "2026-08-07", "dau": 1, "wau": 2, "mau": 2, "stickiness": 0.5, **flags},
        {"day": "2026-08-08", "dau": 0, "wau": 2, "mau": 2, "stickiness": 0.0, **flags},
    ]
    assert report["events_by_day"] == [{"day": "2026-08-07", "events": 1, "complete": True}]
    assert report["users_at_risk_weekly"] == [
        {"day": "2026-08-07", "users": 0, "complete": False},
        {"day": "2026-08-08", "users": 0, "complete": False},
    ]
    assert report["range"] == {"from": "2026-08-07", "to": "2026-08-08"}


def test_a_reversed_range_is_an_error(tmp_path: Path) -> None:
    write_warehouse(tmp_path / "wh", [ev("e1", "alice", 0)])
    con = connect(tmp_path / "wh")
    with pytest.raises(DayRangeError) as exc:
        warehouse_report(con, date(2026, 8, 8), date(2026, 8, 7))
    assert str(exc.value) == ("Bad day range: from='2026-08-08' to='2026-08-07' (from is after to)")


def test_rejections_count_on_the_day_they_were_received(tmp_path: Path) -> None:
    write_warehouse(tmp_path / "wh", [ev("e1", "alice", 0)], rejected=["not_json", "empty"])
    con = connect(tmp_path / "wh")
    (received,) = con.execute(
        "SELECT DISTINCT CAST(received_at AS DATE) FROM deadletter"
    ).fetchone()
    assert warehouse_report(con, received, received)["rejected"] == [
        {"reason": "empty", "count": 1},
        {"reason": "not_json", "count": 1},
    ]
    assert warehouse_report(con, received + timedelta(days=1), None)["rejected"] == []
    assert warehouse_report(con, None, received - timedelta(days=1))["rejected"] == []


USERS = st.sampled_from(["alice", "bob", "carol", 'd"q, 李'])
MODELS = st.sampled_from([None, "m-1", "m-2"])


@st.composite
def events_(draw: st.DrawFn) -> Event:
    kind = draw(
        st.sampled_from(
            [
                "message",
                "feedback",
                "risk_flag",
                "session_start",
                "preference",
                "custom",
                "identify",
            ]
        )
    )
    fields: dict[str, Any] = {"model": draw(MODELS)}
    if kind in ("custom", "identify"):
        fields["name"] = draw(st.sampled_from(["$pageview", "identify"]))
    if kind == "feedback":
        fields["message_id"] = draw(st.sampled_from(["m1", "m2"]))
        fields["rating"] = draw(st.sampled_from([1, -1, 0]))
    if kind == "risk_flag":
        fields["category"] = draw(st.sampled_from(["sycophancy", "mania"]))
        fields["severity"] = draw(st.sampled_from(["low", "high", "critical"]))
    return ev(
        draw(st.sampled_from([f"e{i}" for i in range(30)])),
        draw(USERS),
        draw(st.integers(0, 45)),
        kind,
        seconds=draw(st.sampled_from([0, 1, 86_399])),
        **fields,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(events_(), max_size=25),
    partitions=st.sampled_from([1, 3]),
    rejected=st.lists(st.sampled_from(["not_json", "bad_value", "too_large"]), max_size=3),
)
def test_report_equals_oracle(events: list[Event], partitions: int, rejected: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report, log = report_of(Path(tmp), events, partitions=partitions, rejected=rejected)
    assert report == oracle_report(log, Counter(rejected))


@pytest.mark.parametrize("partitions", [1, 4])
def test_first_copy_in_log_order_wins(tmp_path: Path, partitions: int) -> None:
    events = [ev("same", "alice", 0, model="m-1"), ev("same", "bob", 1, model="m-2")]
    report, log = report_of(tmp_path, events, partitions=partitions)
    first = log[0]
    assert report["events_by_day"] == [
        {"day": first.ts.date().isoformat(), "events": 1, "complete": False}
    ]
    assert report == oracle_report(log)


def test_custom_events_are_activity_and_identity_calls_are_not(tmp_path: Path) -> None:
    """A page view makes its user active and counts as an event; an identity call does
    neither, and its id is still one event (a later copy of it under another type loses)."""
    events = [
        ev("e1", "alice", 0, "custom", name="$pageview"),
        ev("e2", "bob", 0, "identify", name="$identify", properties={"$set": {"plan": "pro"}}),
        ev("e2", "bob", 0, "message"),  # a copy of e2's id: the identity call came first
        ev("e3", "carol", 1, "identify", name="alias"),
    ]
    report, log = report_of(tmp_path, events)
    assert report == oracle_report(log)
    assert [(r["day"], r["dau"]) for r in report["active_users"]] == [("2026-08-03", 1)]
    assert [r["events"] for r in report["events_by_day"]] == [1]
    con = connect(tmp_path / "wh")
    try:
        rows = con.sql("SELECT event_id, user_id, name FROM identities ORDER BY event_id")
        assert rows.fetchall() == [("e2", "bob", "$identify"), ("e3", "carol", "alias")]
    finally:
        con.close()


@st.composite
def session_events_(draw: st.DrawFn) -> Event:
    """Sessions, their ends with or without a duration, messages of either role, flags."""
    kind = draw(st.sampled_from(["session_start", "session_end", "message", "risk_flag"]))
    fields: dict[str, Any] = {"session_id": draw(st.sampled_from([None, "s1", "s2"]))}
    if kind == "session_end":
        fields["duration_s"] = draw(st.sampled_from([None, 30.0, 3_601.5]))
    if kind == "message":
        fields["role"] = draw(st.sampled_from(["user", "assistant"]))
    return ev(
        draw(st.sampled_from([f"e{i}" for i in range(25)])),
        draw(st.sampled_from(["alice", "bob", "carol"])),
        draw(st.integers(0, 16)),
        kind,
        seconds=draw(st.sampled_from([0, 4_000, 86_399])),
        **fields,
    )
