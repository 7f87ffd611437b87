"""The flattery watch of the warehouse (flattery.sql counts through metrics.flattery) against
hand-counted weeks and against the naive oracle."""

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
from usersignals.warehouse.report import flattery_rows


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
    """The warehouse's flattery watch rows, as the report gives them."""
    return flattery_rows(con.cursor())


def view_rows(con: duckdb.DuckDBPyConnection, view: str) -> list[dict[str, Any]]:
    """A view's rows (floats rounded as the report JSON does)."""
    cursor = con.execute(f"SELECT * FROM {view}")
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


COUNTS = ("model", "week", "complete", "thumbs_up", "thumbs_down", "active_users",
          "active_share", "risk_flags", "users_at_risk", "flagged")  # fmt: skip


def test_two_weeks_by_hand() -> None:
    con = memory_warehouse(TWO_WEEKS)
    rows = watch_rows(con)
    # W10 starts on the first day and W11 holds the newest day: only W10 is complete
    assert [tuple(r[k] for k in COUNTS) for r in rows] == [
        ("base", "2026-W10", True, 1, 0, 1, 0.25, 0, 0, False),
        ("base", "2026-W11", False, 0, 0, 1, 0.25, 0, 0, False),
        ("warm", "2026-W10", True, 1, 1, 2, 0.5, 1, 0, False),
        ("warm", "2026-W11", False, 3, 0, 3, 0.75, 2, 1, False),
    ]
    assert rows == oracle_report(TWO_WEEKS)["flattery_watch"]
    assert view_rows(con, "flattery_watch")[3] == {
        "model": "warm", "week": "2026-W11", "thumbs_up": 3, "thumbs_down": 0,
        "thumbs_up_rate": 1.0, "active_users": 3, "active_share": 0.75, "risk_flags": 2,
        "risk_flags_per_1k": 666.666667, "users_at_risk": 1, "complete": False,
    }  # fmt: skip
    # the view's week flag is the definition's (the rows above come from metrics.flattery)
    assert [r["complete"] for r in view_rows(con, "flattery_watch")] == [
        r["complete"] for r in rows
    ]


def crowd(day: int, model: str, users: int, up: int, down: int, flags: int) -> list[Event]:
    """``users`` users of ``model`` on ``day``: the first ``up`` vote up, the next ``down``
    vote down, and the first ``flags`` of them are flagged once."""
    out = []
    for i in range(users):
        user = f"{model}-{day}-{i}"
        out.append(ev("message", user, day, model=model, role="assistant"))
        if i < up + down:
            out.append(up_(user, day, model, f"x{i}", 1 if i < up else -1))
        if i < flags:
            out.append(flag(user, day, model, "low"))
    return out


def up_(user: str, day: int, model: str, message: str, rating: int) -> Event:
    return up(user, day, model, message, rating=rating)


NEXT_MONDAY = [ev("session_start", "late", 14)]  # makes W11 complete


@pytest.mark.parametrize(
    ("week2", "tail", "flagged"),
    [
        # W10: 50 users, 25 up 25 down, 5 flags (rate 0.5, 100 per 1k)
        pytest.param(crowd(7, "m", 50, 40, 10, 15), NEXT_MONDAY, True, id="both-rise"),
        pytest.param(crowd(7, "m", 50, 40, 10, 15), [], False, id="week-not-complete"),
        pytest.param(crowd(7, "m", 50, 28, 22, 15), NEXT_MONDAY, False, id="rate-noise"),
        pytest.param(crowd(7, "m", 50, 40, 10, 7), NEXT_MONDAY, False, id="flags-noise"),
        pytest.param(crowd(7, "m", 50, 10, 40, 15), NEXT_MONDAY, False, id="rate-falls"),
        pytest.param(crowd(7, "m", 29, 25, 4, 15), NEXT_MONDAY, False, id="below-min-volume"),
    ],
)
def test_flagged_needs_both_rises_significant(
    week2: list[Event], tail: list[Event], flagged: bool
) -> None:
    log = crowd(0, "m", 50, 25, 25, 5) + week2 + tail
    rows = watch_rows(memory_warehouse(log))
    assert [r["flagged"] for r in rows] == [False, flagged]
    assert rows == oracle_report(log)["flattery_watch"]


def test_a_gap_week_resets_the_comparison() -> None:
    log = crowd(0, "m", 50, 25, 25, 5) + crowd(14, "m", 50, 40, 10, 15) + [ev("message", "z", 21)]
    rows = watch_rows(memory_warehouse(log))
    assert [(r["week"], r["complete"], r["flagged"]) for r in rows] == [
        ("2026-W10", True, False),
        ("2026-W12", True, False),
    ]


def test_iso_week_across_the_new_year() -> None:
    # 2026-12-31 is a Thursday of ISO week 2026-W53; 2027-01-04 a Monday of 2027-W01
    sunday = datetime(2027, 1, 3, 23, 59, tzinfo=UTC)
    events = [
        Event(event_id="n1", type="message", user_id="u", ts=sunday, model="m", role="user"),
        Event(event_id="n2", type="message", user_id="u", ts=sunday + timedelta(minutes=2),
              model="m", role="user"),
    ]  # fmt: skip
    rows = view_rows(memory_warehouse(events), "flattery_counts")
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
