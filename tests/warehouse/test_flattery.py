"""The flattery_watch view against hand-counted weeks and against the naive oracle."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from tests.oracle import oracle_report
from usersignals.ingest.contract import Event
from usersignals.warehouse.db import views_sql
from usersignals.warehouse.layout import DEADLETTER_SCHEMA, EVENTS_SCHEMA


def event_table(events: Iterable[Event]) -> pa.Table:
    """Events as rows of the warehouse's ``events`` files, in log order (offset = position)."""
    rows = []
    for i, e in enumerate(events):
        row: dict[str, Any] = {f: getattr(e, f, None) for f in EVENTS_SCHEMA.names}
        row.update(
            day=e.ts.date(),
            properties=None if e.properties is None else json.dumps(e.properties),
            extra=None,
            source_partition=0,
            source_offset=i,
            batch_index=0,
        )
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)


def memory_warehouse(events: Iterable[Event]) -> duckdb.DuckDBPyConnection:
    """DuckDB with the warehouse's views (flattery.sql included) over events held in memory.

    The events become ``events_raw`` in log order, so the ``events`` view's deduplication
    keeps the first copy, as over Parquet.
    """
    con = duckdb.connect()
    for name, table in (
        ("events_raw", event_table(events)),
        ("deadletter_raw", DEADLETTER_SCHEMA.empty_table()),
    ):
        con.register("_arrow", table)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM _arrow")
        con.unregister("_arrow")
    con.execute(views_sql())
    return con


def watch_rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The view as report rows (floats rounded as the report JSON does)."""
    cursor = con.execute("SELECT * FROM flattery_watch")
    names = [d[0] for d in cursor.description]
    out = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        for key, value in row.items():
            if isinstance(value, float):
                row[key] = round(value, 6)
        out.append(row)
    return out


MONDAY = datetime(2026, 3, 2, 12, tzinfo=UTC)  # ISO week 2026-W10
_ids = iter(range(10**9))


def ev(type_: str, user: str, day: int, **fields: Any) -> Event:
    """An event ``day`` days after Monday 2026-03-02 (noon UTC)."""
    seconds = fields.pop("seconds", 0)
    when = MONDAY + timedelta(days=day, seconds=seconds)
    return Event(event_id=f"e{next(_ids):06d}", type=type_, user_id=user, ts=when, **fields)


def up(user: str, day: int, model: str, message: str, rating: int = 1, **kw: Any) -> Event:
    return ev("feedback", user, day, model=model, message_id=message, rating=rating, **kw)


def flag(user: str, day: int, model: str | None, severity: str) -> Event:
    return ev("risk_flag", user, day, model=model, category="sycophancy", severity=severity)


TWO_WEEKS = [
    # week 2026-W10: warm 1 up 1 down, 1 low flag over 2 users; base: 1 up; u9 active without model
    up("u1", 0, "warm", "x1"),
    up("u2", 1, "warm", "x2", rating=-1),
    flag("u2", 1, "warm", "low"),
    up("u3", 2, "base", "x3"),
    ev("session_start", "u9", 3),
    # a vote changed later counts once, in the week and under the model of the latest vote
    up("u3", 3, "base", "x4", rating=-1),
    up("u3", 8, "warm", "x4", rating=1),
    # week 2026-W11: warm 3 up (x4 moved here) 0 down, 2 flags (1 critical) over 3 users
    up("u1", 7, "warm", "y1"),
    up("u4", 9, "warm", "y2"),
    flag("u4", 9, "warm", "critical"),
    flag("u1", 10, "warm", "medium"),
    # a withdrawn vote counts nowhere
    up("u5", 11, "base", "y3", rating=0),
    ev("message", "u5", 11, model="base", role="assistant"),
]


def test_two_weeks_by_hand() -> None:
    con = memory_warehouse(TWO_WEEKS)
    assert watch_rows(con) == [
        {"model": "base", "week": "2026-W10", "thumbs_up": 1, "thumbs_down": 0,
         "thumbs_up_rate": 1.0, "active_users": 1, "active_share": 0.25, "risk_flags": 0,
         "risk_flags_per_1k": 0.0, "users_at_risk": 0, "flag": False},
        {"model": "base", "week": "2026-W11", "thumbs_up": 0, "thumbs_down": 0,
         "thumbs_up_rate": None, "active_users": 1, "active_share": 0.25, "risk_flags": 0,
         "risk_flags_per_1k": 0.0, "users_at_risk": 0, "flag": False},
        {"model": "warm", "week": "2026-W10", "thumbs_up": 1, "thumbs_down": 1,
         "thumbs_up_rate": 0.5, "active_users": 2, "active_share": 0.5, "risk_flags": 1,
         "risk_flags_per_1k": 500.0, "users_at_risk": 0, "flag": False},
        {"model": "warm", "week": "2026-W11", "thumbs_up": 3, "thumbs_down": 0,
         "thumbs_up_rate": 1.0, "active_users": 3, "active_share": 0.75, "risk_flags": 2,
         "risk_flags_per_1k": 666.666667, "users_at_risk": 1, "flag": True},
    ]  # fmt: skip
    assert watch_rows(con) == oracle_report(TWO_WEEKS)["flattery_watch"]


@pytest.mark.parametrize(
    ("week2", "expected_flag"),
    [
        pytest.param([up("a", 7, "m", "2"), flag("a", 7, "m", "low")], True, id="both-rise"),
        pytest.param([up("a", 7, "m", "2", rating=-1), flag("a", 7, "m", "low")], False,
                     id="rate-falls"),
        pytest.param([up("a", 7, "m", "2")], False, id="flags-fall-to-zero"),
        pytest.param([up("a", 7, "m", "2"), up("b", 7, "m", "3", rating=-1),
                      flag("a", 7, "m", "low")], False, id="rate-equal"),
        pytest.param([ev("message", "a", 7, model="m", role="user"), flag("a", 7, "m", "low")],
                     False, id="no-votes-this-week"),
    ],
)  # fmt: skip
def test_flag_needs_both_to_rise(week2: list[Event], expected_flag: bool) -> None:
    # week 1: 1 up, 1 down, one flag over 2 users (rate 0.5, 500 per 1k)
    week1 = [
        up("a", 0, "m", "0"),
        up("b", 0, "m", "1", rating=-1),
        flag("b", 0, "m", "low"),
    ]
    rows = watch_rows(memory_warehouse(week1 + week2))
    assert [r["flag"] for r in rows] == [False, expected_flag]
    assert rows == oracle_report(week1 + week2)["flattery_watch"]


def test_a_gap_week_resets_the_comparison() -> None:
    events = [up("a", 0, "m", "0", rating=-1), up("a", 14, "m", "1"), flag("a", 14, "m", "high")]
    rows = watch_rows(memory_warehouse(events))
    assert [(r["week"], r["flag"]) for r in rows] == [("2026-W10", False), ("2026-W12", False)]


def test_iso_week_across_the_new_year() -> None:
    # 2026-12-31 is a Thursday of ISO week 2026-W53; 2027-01-04 a Monday of 2027-W01
    sunday = datetime(2027, 1, 3, 23, 59, tzinfo=UTC)
    events = [
        Event(event_id="n1", type="message", user_id="u", ts=sunday, model="m", role="user"),
        Event(event_id="n2", type="message", user_id="u", ts=sunday + timedelta(minutes=2),
              model="m", role="user"),
    ]  # fmt: skip
    rows = watch_rows(memory_warehouse(events))
    assert [r["week"] for r in rows] == ["2026-W53", "2027-W01"]


_users = st.sampled_from(["u1", "u2", "u3", "u4"])
_models = st.sampled_from(["m1", "m2", None])


@st.composite
def _events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(["message", "feedback", "risk_flag"]))
    fields: dict[str, Any] = {"model": draw(_models)}
    if kind == "message":
        fields["role"] = "assistant"
    elif kind == "feedback":
        fields["message_id"] = draw(st.sampled_from(["x", "y", "z"]))
        fields["rating"] = draw(st.sampled_from([1, -1, 0]))
    else:
        fields["category"] = "other"
        fields["severity"] = draw(st.sampled_from(["low", "medium", "high", "critical"]))
    day = draw(st.integers(0, 24))
    return ev(kind, draw(_users), day, seconds=draw(st.integers(0, 3)), **fields)


@settings(max_examples=60, deadline=None)
@given(st.lists(_events(), max_size=40), st.lists(st.tuples(st.integers(0, 39), _models)))
def test_matches_the_oracle(events: list[Event], resent: list[tuple[int, str | None]]) -> None:
    # a resent event_id (even with other fields) is the first copy only
    log = events + [replace(events[i], model=m) for i, m in resent if i < len(events)]
    assert watch_rows(memory_warehouse(log)) == oracle_report(log)["flattery_watch"]
