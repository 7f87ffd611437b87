"""Days and weeks in a time zone (``--tz``) and weeks from Sunday (``--week-start``), from
history: hand-made sets across both changes of Europe/Berlin and America/New_York (days of 23
and 25 hours) whose answers are written here, and the oracle on generated logs, raw and
compacted."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle import calendar, oracle_report
from tests.oracle_history import oracle_history
from tests.warehouse.parquetfixtures import write_warehouse
from tests.warehouse.test_report import events_, session_events_
from usersignals.errors import ConfigError
from usersignals.ingest.contract import Event
from usersignals.warehouse.compact import compact_day
from usersignals.warehouse.db import connect
from usersignals.warehouse.manifest import read_manifest
from usersignals.warehouse.plan import plan
from usersignals.warehouse.report import warehouse_report


def at(eid: str, user: str, ts: str, kind: str = "message", **fields: Any) -> Event:
    """An event at the UTC instant ``ts`` (``YYYY-MM-DDTHH:MM``)."""
    moment = datetime.fromisoformat(ts).replace(tzinfo=UTC)
    if kind == "message":
        fields.setdefault("role", "user")
    return Event(event_id=eid, type=kind, user_id=user, ts=moment, **fields)


# Europe/Berlin: 2026-03-29 has 23 hours (CET -> CEST at 01:00 UTC), 2026-10-25 has 25 (CEST ->
# CET at 01:00 UTC). Local midnights: 2026-03-28T23:00Z, 2026-03-29T22:00Z, 2026-10-24T22:00Z,
# 2026-10-25T23:00Z.
BERLIN = [
    at("b1", "u1", "2026-03-28T22:59"),  # 23:59 on the 28th
    at("b2", "u2", "2026-03-28T23:00"),  # 00:00 on the 29th (UTC: still the 28th)
    at("b3", "u3", "2026-03-29T21:59"),  # 23:59 CEST on the 29th
    at("b4", "u4", "2026-03-29T22:00"),  # 00:00 on the 30th (UTC: the 29th)
    at("b5", "u5", "2026-10-24T21:59"),  # 23:59 CEST on the 24th
    at("b6", "u6", "2026-10-24T22:00"),  # 00:00 on the 25th (UTC: the 24th)
    at("b7", "u7", "2026-10-25T22:59"),  # 23:59 CET on the 25th
    at("b8", "u8", "2026-10-25T23:00"),  # 00:00 on the 26th (UTC: the 25th)
    # a session through the repeated hour: 02:30 CEST to 02:30 CET is one hour, not zero
    at("s1", "u9", "2026-10-25T00:30", "session_start", session_id="night"),
    at("s2", "u9", "2026-10-25T01:30", "session_end", session_id="night"),
]

# America/New_York: 2026-03-08 has 23 hours (EST -> EDT at 07:00 UTC), 2026-11-01 has 25 (EDT ->
# EST at 06:00 UTC). Local midnights: 2026-03-08T05:00Z, 2026-03-09T04:00Z, 2026-11-01T04:00Z,
# 2026-11-02T05:00Z.
NEW_YORK = [
    at("n1", "u1", "2026-03-08T04:59"),  # 23:59 EST on the 7th (UTC: the 8th)
    at("n2", "u2", "2026-03-08T05:00"),  # 00:00 on the 8th
    at("n3", "u3", "2026-03-09T03:59"),  # 23:59 EDT on the 8th (UTC: the 9th)
    at("n4", "u4", "2026-03-09T04:00"),  # 00:00 on the 9th
    at("n5", "u5", "2026-11-01T03:59"),  # 23:59 EDT on October 31st (UTC: November 1st)
    at("n6", "u6", "2026-11-01T04:00"),  # 00:00 on the 1st
    at("n7", "u7", "2026-11-02T04:59"),  # 23:59 EST on the 1st (UTC: the 2nd)
    at("n8", "u8", "2026-11-02T05:00"),  # 00:00 on the 2nd
]


def _report(root: Path, events: Sequence[Event], **kw: Any) -> dict[str, Any]:
    write_warehouse(root, events)
    con = connect(root, **kw)
    try:
        return warehouse_report(con, history_period="week")
    finally:
        con.close()


def _active_days(report: dict[str, Any]) -> dict[str, int]:
    return {r["day"]: r["dau"] for r in report["active_users"] if r["dau"]}


def test_berlin_days_of_23_and_25_hours(tmp_path: Path) -> None:
    report = _report(tmp_path / "wh", BERLIN, tz="Europe/Berlin")
    assert report["tz"] == "Europe/Berlin"
    assert report["week_start"] == "monday"
    assert _active_days(report) == {
        "2026-03-28": 1,  # u1
        "2026-03-29": 2,  # u2, u3: the 23-hour day
        "2026-03-30": 1,  # u4
        "2026-10-24": 1,  # u5
        "2026-10-25": 3,  # u6, u7, u9: the 25-hour day
        "2026-10-26": 1,  # u8
    }
    assert report["sessions_daily"] == [
        {
            "day": "2026-10-25",
            "sessions": 1,
            "duration_p50_s": 3600.0,
            "duration_p90_s": 3600.0,
            "long_share": 0.0,
            "messages_per_session": 0.0,
        }
    ]
    assert [r["day"] for r in report["events_by_day"]] == [
        "2026-03-28",
        "2026-03-29",
        "2026-03-30",
        "2026-10-24",
        "2026-10-25",
        "2026-10-26",
    ]


def test_a_session_over_days_lasts_its_real_seconds_in_any_zone(tmp_path: Path) -> None:
    # 2026-10-24 12:00 UTC to 2026-10-26 12:00 UTC: 48 hours, though Berlin's clocks show 49
    events = [
        at("l1", "u1", "2026-10-24T12:00", "session_start", session_id="long"),
        at("l2", "u1", "2026-10-26T12:00", "message", session_id="long"),
    ]
    for tz in ("UTC", "Europe/Berlin", "America/New_York"):
        report = _report(tmp_path / tz.replace("/", "-"), events, tz=tz)
        assert [(r["day"], r["duration_p50_s"]) for r in report["sessions_daily"]] == [
            ("2026-10-24", 172_800.0)
        ]
        con = connect(tmp_path / tz.replace("/", "-"), tz=tz)
        try:
            assert con.execute("SELECT duration_s FROM sessions").fetchall() == [(172_800.0,)]
        finally:
            con.close()


def test_the_same_events_in_utc(tmp_path: Path) -> None:
    report = _report(tmp_path / "wh", BERLIN)
    assert report["tz"] == "UTC"
    assert _active_days(report) == {
        "2026-03-28": 2,  # u1, u2
        "2026-03-29": 2,  # u3, u4
        "2026-10-24": 2,  # u5, u6
        "2026-10-25": 3,  # u7, u8, u9
    }


def test_new_york_days_of_23_and_25_hours(tmp_path: Path) -> None:
    report = _report(tmp_path / "wh", NEW_YORK, tz="America/New_York")
    assert report["tz"] == "America/New_York"
    assert _active_days(report) == {
        "2026-03-07": 1,  # u1
        "2026-03-08": 2,  # u2, u3: the 23-hour day
        "2026-03-09": 1,  # u4
        "2026-10-31": 1,  # u5
        "2026-11-01": 2,  # u6, u7: the 25-hour day
        "2026-11-02": 1,  # u8
    }


def test_weeks_from_sunday(tmp_path: Path) -> None:
    # Sunday 2026-03-29 and Monday 2026-03-30 (UTC): one Sunday week, two Monday weeks
    events = [
        at("w1", "u1", "2026-03-29T12:00"),
        at("w2", "u1", "2026-03-30T12:00"),
        at("w3", "u2", "2026-03-30T12:00", "risk_flag", category="mania", severity="high"),
    ]
    monday = _report(tmp_path / "a", events)
    sunday = _report(tmp_path / "b", events, week_start="sunday")
    assert sunday["week_start"] == "sunday"
    assert [
        (r["week"], r["days_active"], r["users"]) for r in monday["stickiness_distribution"]
    ] == [
        ("2026-03-23", 1, 1),
        ("2026-03-30", 1, 2),
    ]
    assert [
        (r["week"], r["days_active"], r["users"]) for r in sunday["stickiness_distribution"]
    ] == [
        ("2026-03-29", 1, 1),  # u2
        ("2026-03-29", 2, 1),  # u1
    ]
    mania = [r for r in sunday["wellbeing_weekly"] if r["category"] == "mania"]
    assert mania == [
        {
            "week": "2026-03-29",
            "model": None,
            "category": "mania",
            "flagged_users": 1,
            "flagged_users_high": 1,
            "active_users": 2,
            "share": 0.5,
            "share_high": 0.5,
        }
    ]
    assert [r["period"] for r in sunday["lifecycle"]] == ["2026-03-29"] * 4
    # daily windows do not depend on the week's first day
    assert sunday["active_users"] == monday["active_users"]


@pytest.mark.parametrize(
    ("kw", "name"),
    [({"tz": "Mars/Olympus"}, "tz"), ({"week_start": "friday"}, "week_start")],
)
def test_an_unknown_zone_or_week_start_is_refused(tmp_path: Path, kw: Any, name: str) -> None:
    (tmp_path / "wh").mkdir()
    with pytest.raises(ConfigError, match=f"Invalid {name}"):
        connect(tmp_path / "wh", **kw)


ZONES = st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"])
# the generated days start on these (their 46 days cover both DST changes of Berlin and New York)
STARTS = st.sampled_from([date(2026, 3, 1), date(2026, 10, 20)])


def _moved(events: list[Event], start: date) -> list[Event]:
    shift = start - date(2026, 8, 3)
    return [msgspec.structs.replace(e, ts=e.ts + shift) for e in events]


def _expected(log: list[Event], tz: str, week_start: str) -> dict[str, Any]:
    with calendar(tz, week_start):
        return oracle_report(log) | oracle_history(log, "week")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.one_of(events_(), session_events_()), max_size=30),
    tz=ZONES,
    week_start=st.sampled_from(["monday", "sunday"]),
    start=STARTS,
    compacted=st.booleans(),
)
def test_zoned_report_equals_the_oracle(
    events: list[Event], tz: str, week_start: str, start: date, compacted: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "wh"
        log = write_warehouse(root, _moved(events, start), partitions=2)
        if compacted:  # compacted days hold UTC days: a zoned report reads their rows
            for day in sorted({e.ts.date().isoformat() for e in log})[:-1]:
                compact_day(root, day)
        con = connect(root, tz=tz, week_start=week_start)
        try:
            report = warehouse_report(con, history_period="week")
        finally:
            con.close()
    report["arena"] = []
    assert report == _expected(log, tz, week_start)


def test_a_sunday_week_over_compacted_days_reads_their_rollups(tmp_path: Path) -> None:
    root = tmp_path / "wh"
    events = [e for e in _moved(_GRID, date(2026, 3, 1))]
    log = write_warehouse(root, events, partitions=2)
    days = sorted({e.ts.date().isoformat() for e in log})[:-1]
    for day in days:
        compact_day(root, day)
    assert sorted(plan(root, read_manifest(root)).served) == days
    con = connect(root, week_start="sunday")
    try:
        report = warehouse_report(con, history_period="week")
    finally:
        con.close()
    report["arena"] = []
    assert report == _expected(log, "UTC", "sunday")


def _grid() -> list[Event]:
    out = []
    for d in range(21):
        for u in range(d % 4 + 1):
            model = ("m-1", "m-2", None)[(d + u) % 3]
            out.append(_at_day(f"g{d}-{u}", f"user{u}", d, model=model))
        if d % 5 == 0:
            out.append(
                _at_day(f"f{d}", f"user{d % 3}", d, "risk_flag", category="mania", severity="high")
            )
    return out


def _at_day(eid: str, user: str, day: int, kind: str = "message", **fields: Any) -> Event:
    if kind == "message":
        fields.setdefault("role", "user")
    ts = datetime(2026, 8, 3, 12, tzinfo=UTC) + timedelta(days=day)
    return Event(event_id=eid, type=kind, user_id=user, ts=ts, **fields)


_GRID = _grid()
