"""Breakdowns by model, platform and properties.KEY (breakdown.sql): a hand-made set whose
answers are written here, the oracle on generated logs (raw, and loaded with compactions in
between), and the refusal of bad --by values."""

from __future__ import annotations

import random
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle_breakdown import oracle_breakdown
from tests.warehouse.parquetfixtures import position, write_warehouse
from tests.warehouse.test_report import ev, events_, session_events_
from tests.warehouse.test_rollup import load_interleaved
from usersignals.errors import ConfigError, DayRangeError
from usersignals.ingest.contract import Event
from usersignals.warehouse.breakdown import (
    BREAKDOWN_KEYS,
    BY_CHOICES,
    By,
    breakdown_report,
    parse_by,
)
from usersignals.warehouse.compact import compact
from usersignals.warehouse.db import connect
from usersignals.warehouse.report import warehouse_report

# 2026-08-03 is day 0; the last day with data is day 3.
HAND = [
    ev("b1", "alice", 0, platform="web", properties={"plan": "pro"}),
    ev("b2", "alice", 0, platform="ios", properties={"plan": "pro"}),  # alice on two platforms
    ev("b3", "bob", 0),  # neither platform nor properties: counted under null
    ev("b4", "bob", 1, platform="web", properties={"plan": "free"}),
    ev(
        "b0",
        "carol",
        1,
        "session_start",
        session_id="s1",
        model="m-2",
        platform="android",
        properties={"plan": "team"},
    ),
    ev("b5", "carol", 1, platform="android", properties={"plan": "team"}),
    ev(
        "b6",
        "alice",
        2,
        "feedback",
        model="m-1",
        platform="ios",
        rating=-1,
        properties={"plan": "pro"},
    ),
    ev("b7", "alice", 2, platform="desktop", properties={"plan": "team"}),
    ev(
        "b8",
        "carol",
        2,
        "risk_flag",
        session_id="s1",
        platform="android",
        category="mania",
        severity="high",
        properties={"plan": "team"},
    ),
    ev("b9", "bob", 3, "feedback", message_id="m2", platform="web", rating=1),
    ev("b1", "dan", 3, platform="api", properties={"plan": "gold"}),  # a later copy: ignored
]

D0, D1, D2, D3 = "2026-08-03", "2026-08-04", "2026-08-05", "2026-08-06"


def _breakdown(root: Path, by: str, **kw: Any) -> dict[str, Any]:
    con = connect(root)
    try:
        return breakdown_report(con, by, **kw)
    finally:
        con.close()


def _activity(out: dict[str, Any]) -> dict[str, list[tuple[Any, int, int, int]]]:
    """day -> [(key, dau, wau, mau)] in row order."""
    days: dict[str, list[tuple[Any, int, int, int]]] = {}
    for r in out["active_users_by"]:
        days.setdefault(r["day"], []).append((r["key"], r["dau"], r["wau"], r["mau"]))
    return days


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("breakdown") / "wh"
    write_warehouse(root, HAND)
    return root


def test_a_user_on_two_platforms_counts_once_under_each(hand: Path) -> None:
    out = _breakdown(hand, "platform")
    assert _activity(out) == {
        D0: [(None, 1, 1, 1), ("ios", 1, 1, 1), ("web", 1, 1, 1)],  # alice twice, bob null
        D1: [(None, 0, 1, 1), ("android", 1, 1, 1), ("ios", 0, 1, 1), ("web", 1, 2, 2)],
        D2: [
            (None, 0, 1, 1),
            ("android", 1, 1, 1),
            ("desktop", 1, 1, 1),
            ("ios", 1, 1, 1),
            ("web", 0, 2, 2),
        ],
        D3: [
            (None, 0, 1, 1),
            ("android", 0, 1, 1),
            ("desktop", 0, 1, 1),
            ("ios", 0, 1, 1),
            ("web", 1, 2, 2),
        ],
    }
    # thumbs and flags under the platform of the vote or flag itself
    assert out["feedback_by"] == [
        {"day": D2, "key": "ios", "thumbs_up": 0, "thumbs_down": 1},
        {"day": D3, "key": "web", "thumbs_up": 1, "thumbs_down": 0},
    ]
    assert out["risk_flags_by"] == [
        {
            "day": D2,
            "key": "android",
            "category": "mania",
            "severity": "high",
            "flags": 1,
            "users": 1,
        }
    ]
    assert out["breakdown"] == {"by": "platform", "limit": 20}
    assert out == oracle_breakdown(HAND, "platform")


def test_the_totals_are_unchanged_by_a_breakdown(hand: Path) -> None:
    con = connect(hand)
    try:
        before = warehouse_report(con, history_period="week")
        for by in ("platform", "model", "properties.plan"):
            breakdown_report(con, by, limit=2)
        after = warehouse_report(con, history_period="week")
    finally:
        con.close()
    assert after == before
    # alice (web and ios on day 0) is one user of the total
    assert [(r["dau"], r["wau"], r["mau"]) for r in after["active_users"]] == [
        (2, 2, 2),
        (2, 3, 3),
        (2, 3, 3),
        (1, 3, 3),
    ]


def test_folding_counts_a_user_of_two_folded_values_once(hand: Path) -> None:
    # users: web 2 (alice, bob); android, desktop, ios 1 each: android wins the tie by value
    out = _breakdown(hand, "platform", limit=2)
    assert _activity(out) == {
        D0: [(None, 1, 1, 1), ("web", 1, 1, 1), ("(other)", 1, 1, 1)],
        D1: [(None, 0, 1, 1), ("android", 1, 1, 1), ("web", 1, 2, 2), ("(other)", 0, 1, 1)],
        # alice on ios and on desktop: one user of (other), not two
        D2: [(None, 0, 1, 1), ("android", 1, 1, 1), ("web", 0, 2, 2), ("(other)", 1, 1, 1)],
        D3: [(None, 0, 1, 1), ("android", 0, 1, 1), ("web", 1, 2, 2), ("(other)", 0, 1, 1)],
    }
    assert out["feedback_by"] == [
        {"day": D2, "key": "(other)", "thumbs_up": 0, "thumbs_down": 1},
        {"day": D3, "key": "web", "thumbs_up": 1, "thumbs_down": 0},
    ]
    assert out["breakdown"] == {"by": "platform", "limit": 2}
    assert out == oracle_breakdown(HAND, "platform", limit=2)


def test_properties_plan(hand: Path) -> None:
    out = _breakdown(hand, "properties.plan")
    assert _activity(out) == {
        D0: [(None, 1, 1, 1), ("pro", 1, 1, 1)],
        D1: [(None, 0, 1, 1), ("free", 1, 1, 1), ("pro", 0, 1, 1), ("team", 1, 1, 1)],
        D2: [(None, 0, 1, 1), ("free", 0, 1, 1), ("pro", 1, 1, 1), ("team", 2, 2, 2)],
        D3: [(None, 1, 1, 1), ("free", 0, 1, 1), ("pro", 0, 1, 1), ("team", 0, 2, 2)],
    }
    assert out["feedback_by"] == [
        {"day": D2, "key": "pro", "thumbs_up": 0, "thumbs_down": 1},
        {"day": D3, "key": None, "thumbs_up": 1, "thumbs_down": 0},
    ]
    assert [r["key"] for r in out["risk_flags_by"]] == ["team"]
    assert out == oracle_breakdown(HAND, "properties.plan")
    # team 2 users, free and pro 1 each: free kept by value, pro folded
    folded = _breakdown(hand, "properties.plan", limit=2)
    assert _activity(folded)[D2] == [
        (None, 0, 1, 1),
        ("free", 0, 1, 1),
        ("team", 2, 2, 2),
        ("(other)", 1, 1, 1),
    ]
    assert folded == oracle_breakdown(HAND, "properties.plan", limit=2)


def test_by_model_counts_votes_and_flags_under_their_attributed_model(hand: Path) -> None:
    out = _breakdown(hand, "model")
    # activity: the model each event carries (most carry none)
    assert _activity(out) == {
        D0: [(None, 2, 2, 2)],
        D1: [(None, 2, 3, 3), ("m-2", 1, 1, 1)],
        D2: [(None, 2, 3, 3), ("m-1", 1, 1, 1), ("m-2", 0, 1, 1)],
        D3: [(None, 1, 3, 3), ("m-1", 0, 1, 1), ("m-2", 0, 1, 1)],
    }
    assert out["feedback_by"] == [
        {"day": D2, "key": "m-1", "thumbs_up": 0, "thumbs_down": 1},
        {"day": D3, "key": None, "thumbs_up": 1, "thumbs_down": 0},
    ]
    # carol's flag has no model; its session began with m-2
    assert [(r["key"], r["flags"], r["users"]) for r in out["risk_flags_by"]] == [("m-2", 1, 1)]
    assert out == oracle_breakdown(HAND, "model")


def test_a_range_shows_its_days_and_ranks_over_them(hand: Path) -> None:
    out = _breakdown(hand, "platform", day_from=date(2026, 8, 5), day_to=date(2026, 8, 6), limit=1)
    # over days 2 and 3: android, desktop, ios, web one user each; android kept
    assert _activity(out) == {
        D2: [(None, 0, 1, 1), ("android", 1, 1, 1), ("(other)", 1, 2, 2)],
        D3: [(None, 0, 1, 1), ("android", 0, 1, 1), ("(other)", 1, 2, 2)],
    }
    assert out["feedback_by"] == [
        {"day": D2, "key": "(other)", "thumbs_up": 0, "thumbs_down": 1},
        {"day": D3, "key": "(other)", "thumbs_up": 1, "thumbs_down": 0},
    ]
    assert out == oracle_breakdown(HAND, "platform", 1, date(2026, 8, 5), date(2026, 8, 6))
    with pytest.raises(DayRangeError):
        _breakdown(hand, "platform", day_from=date(2026, 8, 6), day_to=date(2026, 8, 5))


def test_property_values_as_text(tmp_path: Path) -> None:
    props = [
        {"plan": 3},
        {"plan": True},
        {"plan": None},  # JSON null: as if absent
        {"plan": {"tier": "x", "seats": [1, 2]}},
        {"plan": ""},
        {"plan": "ünïcode"},
        {"other": "pro"},
        {"app.version": "2.1", "app": {"version": "9"}},  # a dotted key is a name, not a path
    ]
    events = [ev(f"p{i}", f"u{i}", 0, properties=p) for i, p in enumerate(props)]
    write_warehouse(tmp_path / "wh", events)
    plan = _breakdown(tmp_path / "wh", "properties.plan")["active_users_by"]
    assert [(r["key"], r["dau"]) for r in plan] == [
        (None, 3),
        ("", 1),
        ("3", 1),
        ("true", 1),
        ('{"seats":[1,2],"tier":"x"}', 1),  # values sort as strings
        ("ünïcode", 1),
    ]
    version = _breakdown(tmp_path / "wh", "properties.app.version")["active_users_by"]
    assert [(r["key"], r["dau"]) for r in version] == [(None, 7), ("2.1", 1)]
    for by in ("properties.plan", "properties.app.version"):
        assert _breakdown(tmp_path / "wh", by) == oracle_breakdown(events, by)


def test_a_value_named_other_folds_with_the_others(tmp_path: Path) -> None:
    events = [
        ev("o1", "u1", 0, properties={"plan": "(other)"}),
        ev("o2", "u1", 0, properties={"plan": "x"}),
        ev("o3", "u2", 0, properties={"plan": "(other)"}),
    ]
    write_warehouse(tmp_path / "wh", events)
    out = _breakdown(tmp_path / "wh", "properties.plan", limit=5)
    assert [(r["key"], r["dau"]) for r in out["active_users_by"]] == [("x", 1), ("(other)", 2)]
    assert out == oracle_breakdown(events, "properties.plan", limit=5)


def test_an_empty_warehouse_has_no_rows(tmp_path: Path) -> None:
    (tmp_path / "wh").mkdir()
    assert _breakdown(tmp_path / "wh", "properties.plan", limit=3) == {
        "active_users_by": [],
        "feedback_by": [],
        "risk_flags_by": [],
        "breakdown": {"by": "properties.plan", "limit": 3},
    }


def test_the_breakdown_runs_again_on_the_same_connection(hand: Path) -> None:
    con = connect(hand)
    try:
        first = breakdown_report(con, "platform")
        breakdown_report(con, "properties.plan", limit=1)
        assert breakdown_report(con, By("platform")) == first
        # the connection keeps no temporary input of the breakdown
        temps = con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()
        assert temps == (0,)
    finally:
        con.close()


# ---------------------------------------------------------------- refusals


def test_the_choices() -> None:
    assert BY_CHOICES == ("model", "platform", "properties.KEY")
    assert parse_by("model") == By("model")
    assert parse_by("platform").name == "platform"
    assert parse_by("properties.app-version_2.x") == By("properties", "app-version_2.x")
    assert parse_by("properties.plan").json_path == '$."plan"'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("colour", "Invalid --by: 'colour' (choose model, platform or properties.KEY)"),
        ("Model", "Invalid --by: 'Model' (choose model, platform or properties.KEY)"),
        ("", "Invalid --by: '' (choose model, platform or properties.KEY)"),
        (
            "properties.",
            "Invalid --by: 'properties.' (properties. needs a key: properties.KEY)",
        ),
        (
            "properties.a b",
            "Invalid --by: 'properties.a b' "
            "(a properties key has only letters, digits, _, - and .)",
        ),
        (
            "properties.x'); DROP TABLE events; --",
            'Invalid --by: "properties.x\'); DROP TABLE events; --" '
            "(a properties key has only letters, digits, _, - and .)",
        ),
        (
            'properties.a"b',
            "Invalid --by: 'properties.a\"b' "
            "(a properties key has only letters, digits, _, - and .)",
        ),
        (
            "properties.a\nb",
            "Invalid --by: 'properties.a\\nb' "
            "(a properties key has only letters, digits, _, - and .)",
        ),
    ],
)
def test_a_bad_by_is_refused_on_one_line(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_by(value)
    assert str(exc.value) == message
    assert "\n" not in str(exc.value)


def test_a_long_bad_by_is_cut(tmp_path: Path) -> None:
    (tmp_path / "wh").mkdir()
    with pytest.raises(ConfigError) as exc:
        _breakdown(tmp_path / "wh", "properties." + "x" * 500 + "!")
    text = str(exc.value)
    assert "\n" not in text
    assert len(text) < 160
    assert "properties.xxxx" in text


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_a_bad_limit_is_refused(tmp_path: Path, limit: Any) -> None:
    (tmp_path / "wh").mkdir()
    with pytest.raises(ConfigError, match="Invalid --by-limit"):
        _breakdown(tmp_path / "wh", "platform", limit=limit)


# ---------------------------------------------------------------- generated logs

PLATFORMS = st.sampled_from([None, "web", "ios", "android"])
PROPERTIES = st.sampled_from(
    [
        None,
        {},
        {"plan": "free"},
        {"plan": "pro"},
        {"plan": "pro", "app.version": "1"},
        {"plan": 3},
        {"plan": True},
        {"plan": None},
        {"plan": {"tier": "x"}},
        {"plan": "(other)"},
        {"app.version": "2"},
    ]
)
BYS = st.sampled_from(["model", "platform", "properties.plan", "properties.app.version"])
LIMITS = st.sampled_from([1, 2, 20])


@st.composite
def keyed_events_(draw: st.DrawFn) -> Event:
    """The report's and the sessions' generated events, with a platform and properties, and
    messages and sessions that votes and flags without a model are attributed through."""
    base = draw(st.one_of(events_(), session_events_()))
    fields: dict[str, Any] = {"platform": draw(PLATFORMS), "properties": draw(PROPERTIES)}
    if base.session_id is None:
        fields["session_id"] = draw(st.sampled_from([None, "s1"]))
    if base.type == "message":
        fields["message_id"] = draw(st.sampled_from([None, "m1", "m2"]))
        fields["model"] = draw(st.sampled_from([None, "m-1", "m-2"]))
    if base.type in ("feedback", "risk_flag"):
        fields["model"] = draw(st.sampled_from([None, None, "m-2"]))  # mostly attributed
    return msgspec.structs.replace(base, **fields)


def _day(n: int | None) -> date | None:
    return None if n is None else date(2026, 8, 3) + timedelta(days=n)


@st.composite
def ranges_(draw: st.DrawFn) -> tuple[date | None, date | None]:
    if draw(st.booleans()):
        return None, None
    lo = draw(st.one_of(st.none(), st.integers(0, 45)))
    hi = draw(st.one_of(st.none(), st.integers(lo or 0, 46)))
    return _day(lo), _day(hi)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(keyed_events_(), max_size=30),
    partitions=st.sampled_from([1, 3]),
    by=BYS,
    limit=LIMITS,
    shown=ranges_(),
)
def test_breakdown_equals_the_oracle(
    events: list[Event],
    partitions: int,
    by: str,
    limit: int,
    shown: tuple[date | None, date | None],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = write_warehouse(Path(tmp) / "wh", events, partitions=partitions)
        got = _breakdown(Path(tmp) / "wh", by, day_from=shown[0], day_to=shown[1], limit=limit)
    assert got == oracle_breakdown(log, by, limit, *shown)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(keyed_events_(), max_size=25),
    partitions=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**32 - 1),
    compact_all=st.booleans(),
    by=BYS,
    limit=LIMITS,
)
def test_breakdown_of_compacted_days_equals_the_oracle(
    events: list[Event], partitions: int, seed: int, compact_all: bool, by: str, limit: int
) -> None:
    """Loads with compactions in between (rollups serve the report's totals); the breakdown
    reads every event's value all the same, and each total lies between the largest value's
    count and the sum over the values."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "wh"
        load_interleaved(root, events, partitions, random.Random(seed))
        if compact_all:
            compact(root)
        con = connect(root)
        try:
            got = breakdown_report(con, by, limit=limit)
            totals = warehouse_report(con)["active_users"]
        finally:
            con.close()
    log = [row[0] for row in position(events, partitions=partitions, per_record=3)]
    assert got == oracle_breakdown(log, by, limit)
    assert set(got) == {*BREAKDOWN_KEYS, "breakdown"}
    for total in totals:
        here = [r for r in got["active_users_by"] if r["day"] == total["day"]]
        for n in ("dau", "wau", "mau"):
            parts = [r[n] for r in here]
            assert max(parts, default=0) <= total[n] <= sum(parts)


def test_the_views_alone_break_down_by_model(hand: Path) -> None:
    """What ``usersignals sql`` reads once breakdown.sql is among the metric SQL: the views
    with their defaults (--by model, 20 values, every day)."""
    con = connect(hand)
    try:
        expected = breakdown_report(con, "model")  # creates the views when connect did not
        rows = con.execute(
            "SELECT strftime(day, '%Y-%m-%d'), key, dau, wau, mau FROM active_users_by "
            "ORDER BY day, key IS NOT NULL, key = '(other)', key"
        ).fetchall()
        flags = con.execute("SELECT key, flags FROM risk_flags_by_key").fetchall()
    finally:
        con.close()
    assert rows == [tuple(r.values()) for r in expected["active_users_by"]]
    assert flags == [("m-2", 1)]
