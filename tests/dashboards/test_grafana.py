"""Grafana dashboards: valid for Grafana's own models, committed as generated, every query run.

Four dashboards, one per audience (engagement, feedback & arena, wellbeing, pipeline health),
each mixing live (Prometheus) and history (DuckDB) panels, linking to the other three.

Validity: each dashboard is loaded through the model classes of ``grafana-foundation-sdk`` (the
Grafana release of ``compose.yaml``), with the panel and query plugins registered; it must come
back out unchanged (a field the models do not know is dropped on the way, so it shows as a
difference) and every value must have the type its model declares.

SQL targets run in DuckDB over a warehouse written in the loader's layout, through the same
``initSql`` the provisioned datasource runs, with the dashboard's variables interpolated as
Grafana does and the plugin's macros expanded, and equal ``usersignals report --json``. PromQL
targets run in Debian's Prometheus over series backfilled with ``promtool``, the recording
rules backfilled from the real rules file (tests/streams/test_prometheus.py runs them against a
real worker too).
"""

from __future__ import annotations

import contextlib
import copy
import enum
import json
import os
import re
import signal
import subprocess
import sys
import time
import types
import typing
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.conftest import require_tool
from tests.oracle import oracle_report
from tests.warehouse.parquetfixtures import write_warehouse
from usersignals.broker import free_port
from usersignals.cli.supervisor import LoaderSupervisor
from usersignals.config import Settings
from usersignals.dashboards.grafana import (
    ALL,
    DUCKDB,
    GRAFANA_DIR,
    INCOMPLETE,
    PROMETHEUS,
    SqlQuery,
    build_dashboards,
    expand_macros,
    interpolate,
    panel_specs,
    queries,
)
from usersignals.dashboards.panels import BOARDS as TITLES
from usersignals.dashboards.panels import (
    ENGAGEMENT,
    FEEDBACK,
    MODEL,
    PIPELINE,
    PLATFORM,
    WELLBEING,
    variables,
)
from usersignals.dashboards.provisioning import duckdb_init_sql, rendered_files
from usersignals.dashboards.rules import (
    ALERT_RECORDED_SERIES,
    ALERT_SETTINGS_FILE,
    ALERTS_FILE,
    LIVE_SERIES,
    RECORDED_SERIES,
    RULES_FILE,
)
from usersignals.ingest.contract import Event
from usersignals.streams.exposition import EventTimeLag, WorkerCollector, render
from usersignals.warehouse.db import VIEWS, connect
from usersignals.warehouse.derived import refresh_arena_ratings
from usersignals.warehouse.report import flattery_rows

BOARDS = build_dashboards()
UIDS = (ENGAGEMENT, FEEDBACK, WELLBEING, PIPELINE)
ALL_VARIABLES = (MODEL, PLATFORM)
PROMETHEUS_BIN = "/usr/bin/prometheus"

register_default_plugins()  # panel options, field configs and Prometheus queries get their models


# ---------------------------------------------------------------- the JSON itself


def _lost(sent: Any, back: Any, path: str = "$") -> list[str]:
    """Where ``back`` (the JSON after Grafana's models) differs from ``sent``."""
    if isinstance(sent, dict):
        if not isinstance(back, dict):
            return [f"{path}: {sent!r} came back as {back!r}"]
        return [
            problem
            for key, value in sent.items()
            for problem in (
                _lost(value, back[key], f"{path}.{key}")
                if key in back
                else [f"{path}.{key}: unknown"]
            )
        ]
    if isinstance(sent, list):
        if not isinstance(back, list) or len(back) != len(sent):
            return [f"{path}: {sent!r} came back as {back!r}"]
        return [
            p
            for i, (a, b) in enumerate(zip(sent, back, strict=True))
            for p in _lost(a, b, f"{path}[{i}]")
        ]
    if type(sent) is not type(back) or sent != back:
        return [f"{path}: {sent!r} came back as {back!r}"]
    return []


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as the models' ``from_json`` keeps it) has the declared type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()
        )
    if isinstance(hint, type) and issubclass(hint, enum.Enum):  # kept as the raw value
        return isinstance(value, hint) or value in {m.value for m in hint}
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    raise TypeError(f"no rule for the annotation {hint!r}")


def _mistyped(model: Any, path: str = "$") -> list[str]:
    """Attributes of a decoded model tree whose value does not have the declared type."""
    if isinstance(model, list):
        return [p for i, v in enumerate(model) for p in _mistyped(v, f"{path}[{i}]")]
    if isinstance(model, dict):
        return [p for k, v in model.items() for p in _mistyped(v, f"{path}.{k}")]
    if isinstance(model, enum.Enum) or not callable(getattr(model, "to_json", None)):
        return []
    problems: list[str] = []
    for name, hint in typing.get_type_hints(type(model)).items():
        value = getattr(model, name, None)
        if not _fits(value, hint):
            problems.append(f"{path}.{name}: {value!r} is not {hint}")
        problems.extend(_mistyped(value, f"{path}.{name}"))
    return problems


def grafana_problems(board: dict[str, Any]) -> list[str]:
    """What Grafana's models refuse in a dashboard: unknown fields, mistyped values."""
    model = Dashboard.from_json(board)
    back = json.loads(json.dumps(model, cls=JSONEncoder))
    return _lost(board, back) + _mistyped(model)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_is_valid_for_grafanas_models(name: str) -> None:
    board = BOARDS[name]
    assert grafana_problems(board) == []
    panels = [p for p in Dashboard.from_json(board).panels if p.type_val != "row"]
    assert panels
    for panel in panels:  # every panel and query decoded by its plugin's model, not kept raw
        assert type(panel.options).__module__.endswith(f"models.{panel.type_val}"), panel.title
        source = panel.datasource.type_val if panel.datasource else None
        for target in panel.targets or []:
            decoded = type(target).__name__
            assert decoded == ("Dataquery" if source == "prometheus" else "UnknownDataquery")
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"] == panel["datasource"]


@pytest.mark.parametrize(
    ("board", "kind", "breaks", "problem"),
    [
        (
            "usersignals-engagement.json",
            "table",
            lambda p: p["options"].update(showHeadr=True),
            "$.panels[{i}].options.showHeadr: unknown",
        ),
        (
            "usersignals-engagement.json",
            "table",
            lambda p: p["options"].update(showHeader="yes"),
            "$.panels[{i}].options.show_header: 'yes' is not <class 'bool'>",
        ),
        (
            "usersignals-pipeline.json",
            "stat",
            lambda p: p["options"].update(colorMode="rainbow"),
            "$.panels[{i}].options.color_mode: 'rainbow' is not <enum 'BigValueColorMode'>",
        ),
        (
            "usersignals-pipeline.json",
            "stat",
            lambda p: p["targets"][0].update(exp=p["targets"][0]["expr"]),
            "$.panels[{i}].targets[0].exp: unknown",
        ),
        (
            "usersignals-pipeline.json",
            "stat",
            lambda p: p["gridPos"].update(w="12"),
            "$.panels[{i}].grid_pos.w: '12' is not <class 'int'>",
        ),
    ],
)
def test_a_broken_panel_is_refused(board: str, kind: str, breaks: Any, problem: str) -> None:
    broken = copy.deepcopy(BOARDS[board])
    i = next(n for n, p in enumerate(broken["panels"]) if p["type"] == kind)
    broken["panels"][i] = panel = copy.deepcopy(broken["panels"][i])  # shares no dict now
    breaks(panel)
    assert grafana_problems(broken) == [problem.format(i=i)]


def test_four_dashboards_with_stable_uids_linking_to_each_other() -> None:
    assert sorted(BOARDS) == sorted(f"{uid}.json" for uid in UIDS)
    assert UIDS == (
        "usersignals-engagement",
        "usersignals-feedback",
        "usersignals-wellbeing",
        "usersignals-pipeline",
    )
    for uid in UIDS:
        board = BOARDS[f"{uid}.json"]
        assert (board["uid"], board["title"], board["description"]) == (uid, *TITLES[uid])
        assert [link["url"] for link in board["links"]] == [f"/d/{u}" for u in UIDS if u != uid]
        for link in board["links"]:
            assert (link["type"], link["keepTime"], link["includeVars"]) == ("link", True, True)
            assert link["title"]
            assert link["tooltip"]


def test_layout_ids_datasources_and_descriptions() -> None:
    for board in BOARDS.values():
        ids = [p["id"] for p in board["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        sources = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24
            if panel["type"] != "row":
                assert panel["datasource"] in (PROMETHEUS.ref(), DUCKDB.ref())
                sources.add(panel["datasource"]["type"])
                assert len(panel["description"]) > 40, panel["title"]
        assert sources == {"prometheus", DUCKDB.type}, board["uid"]  # each mixes both
    rows = {
        uid: [p["title"] for p in BOARDS[f"{uid}.json"]["panels"] if p["type"] == "row"]
        for uid in UIDS
    }
    assert rows == {
        ENGAGEMENT: [
            "Live (Prometheus): now",
            "History (warehouse): active users",
            "History (warehouse): retention and lifecycle",
            "History (warehouse): sessions",
        ],
        FEEDBACK: ["Live (Prometheus)", "History (warehouse)"],
        WELLBEING: [
            "Live (Prometheus): now",
            "Live (Prometheus): flattery watch",
            "History (warehouse): flagged share",
            "History (warehouse): flattery watch and who carries the risk",
        ],
        PIPELINE: [
            "Live (Prometheus): now",
            "Live (Prometheus): throughput and rejections",
            "Live (Prometheus): lag",
            "History (warehouse)",
        ],
    }
    # the product point: approval and risk per model, side by side on one line
    side = {p["title"]: p["gridPos"] for p in BOARDS[f"{WELLBEING}.json"]["panels"]}
    risk = side["Risk flags per 1,000 active users by model, weekly"]
    up = side["Thumbs-up rate by model, weekly"]
    assert (risk["y"], risk["x"], up["y"], up["x"]) == (risk["y"], 0, risk["y"], 12)
    live_risk = side["Risk flags per 1,000 active users by model and ISO week (live)"]
    live_up = side["Thumbs-up rate by model and ISO week (live)"]
    assert (live_risk["x"], live_up["x"], live_up["y"]) == (0, 12, live_risk["y"])


def test_the_history_only_and_live_only_metrics_say_so() -> None:
    def described(uid: str, word: str) -> list[str]:
        panels = BOARDS[f"{uid}.json"]["panels"]
        return [p["title"] for p in panels if word in p.get("description", "")]

    assert described(ENGAGEMENT, "History only") == [
        "Active users by platform",
        "Lifecycle per week (dormant below zero)",
        "Retention of first-time cohorts, weekly",
        "Days active per week",
        "Sessions per day",
        "Session length",
        "Sessions over 60 minutes",
    ]
    assert described(PIPELINE, "Live only") == [
        "Events per second",
        "Consumer lag",
        "Loader lag",
        "Loaders up",
        "Since the last loader commit",
        "Records processed per second",
        "Consumer lag by partition",
        "Event-time lag",
        "Late events (held)",
        "Loader lag by partition",
        "Loader restarts and errors",
    ]


def test_the_variables_filter_both_datasources() -> None:
    for uid in UIDS:
        board = BOARDS[f"{uid}.json"]
        names = [v["name"] for v in board["templating"]["list"]]
        assert names == [v.name for v in variables(uid)]
        for v in board["templating"]["list"]:
            assert (v["multi"], v["includeAll"], v["allValue"]) == (True, True, ".*")
            assert v["current"]["value"] == [ALL]
        exprs = [t["expr"] for _, t in queries(board) if "expr" in t]
        sqls = [t["rawSql"] for _, t in queries(board) if "rawSql" in t]
        for v in variables(uid):  # every variable is read
            assert any(v.sql in t for t in sqls), (uid, v.name)
        for e in exprs:  # PromQL as $name (the Prometheus datasource escapes for PromQL)
            assert re.findall(r"\$(?!__)\{?(\w+)", e) == re.findall(r'=~"\$(\w+)"', e), e
        for t in sqls:  # SQL as ${name:regex} in a quoted literal
            assert re.findall(r"\$(?!__)\{?(\w+)", t) == re.findall(r"'\$\{(\w+):regex\}'", t)
    engagement = [t for _, t in queries(BOARDS[f"{ENGAGEMENT}.json"])]
    assert any(MODEL.promql in t.get("expr", "") for t in engagement)
    assert any(MODEL.sql in t.get("rawSql", "") for t in engagement)
    assert not any("$platform" in t.get("expr", "") for t in engagement)  # live has no platform


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        ({}, "x{model=~\".*\"} '.*' .*"),
        ({"model": [ALL]}, "x{model=~\".*\"} '.*' .*"),
        ({"model": ["m1"]}, "x{model=~\"m1\"} 'm1' .*"),
        # a PromQL string needs its backslashes escaped; a SQL literal does not
        (
            {"model": ["gpt-4.1", "m(2)"], "platform": ["ios"]},
            "x{model=~\"(gpt-4\\\\.1|m\\\\(2\\\\))\"} '(gpt-4\\.1|m\\(2\\))' ios",
        ),
        ({"model": ["a\\b"]}, "x{model=~\"a\\\\\\\\b\"} 'a\\\\b' .*"),
    ],
)
def test_interpolate(chosen: dict[str, list[str]], expected: str) -> None:
    text = "x{model=~\"$model\"} '${model:regex}' ${platform:regex}"
    assert interpolate(text, ALL_VARIABLES, chosen) == expected
    with pytest.raises(ValueError, match="only the regex format"):
        interpolate("${model:csv}", ALL_VARIABLES, chosen)
    assert interpolate("$__timeFrom() $since", ALL_VARIABLES, chosen) == "$__timeFrom() $since"


def test_every_day_series_marks_its_incomplete_days() -> None:
    marked = {
        uid: [
            p["title"]
            for p in BOARDS[f"{uid}.json"]["panels"]
            if p.get("fieldConfig", {}).get("overrides")
        ]
        for uid in UIDS
    }
    assert marked == {
        ENGAGEMENT: ["Active users", "Stickiness (DAU / MAU)"],
        FEEDBACK: [
            "Thumbs-up rate by model, weekly",
            "Feedback by model (latest vote per user and message)",
        ],
        WELLBEING: [
            "Risk flags per day by category and severity",
            "Users at risk, weekly",
            "Risk flags per 1,000 active users by model, weekly",
            "Thumbs-up rate by model, weekly",
        ],
        PIPELINE: ["Events per day"],
    }
    live = BOARDS[f"{ENGAGEMENT}.json"]["panels"]
    now = [p for p in live if p["type"] == "stat" and "active_users" in p["targets"][0]["expr"]]
    assert len(now) == 3
    for panel in now:
        assert "partial" in panel["title"]
        assert "never complete" in panel["description"]


def test_committed_files_are_the_generated_ones() -> None:
    for name, text in rendered_files().items():
        assert (GRAFANA_DIR / name).read_text(encoding="utf-8") == text, name
    committed = {str(p.relative_to(GRAFANA_DIR)) for p in GRAFANA_DIR.rglob("*") if p.is_file()}
    assert committed == set(rendered_files())


def test_provisioning_names_the_dashboards_datasources() -> None:
    sources = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources.yml").read_text())
    by_uid = {s["uid"]: s for s in sources["datasources"]}
    assert by_uid[PROMETHEUS.uid]["url"] == "http://prometheus:9090"
    assert by_uid[DUCKDB.uid]["type"] == "motherduck-duckdb-datasource"
    assert by_uid[DUCKDB.uid]["jsonData"]["path"] == ""
    assert by_uid[DUCKDB.uid]["jsonData"]["initSql"] == duckdb_init_sql()
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards.yml").read_text())
    assert providers["providers"][0]["options"] == {
        "path": "/var/lib/grafana/dashboards/usersignals"
    }


# ---------------------------------------------------------------- macros

START = datetime(2026, 3, 2, tzinfo=UTC)
END = datetime(2026, 3, 15, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        ("$__timeFrom()", "'2026-03-02T00:00:00Z'"),
        ("$__timeTo()", "'2026-03-15T23:59:59Z'"),
        (
            "WHERE $__timeFilter(day)",
            "WHERE day >= '2026-03-02T00:00:00Z' AND day <= '2026-03-15T23:59:59Z'",
        ),
        ("$__timeFilter( ts )", "ts >= '2026-03-02T00:00:00Z' AND ts <= '2026-03-15T23:59:59Z'"),
        ("$__timeFromX", "$__timeFromX"),
        ("$since", "$since"),
    ],
)
def test_expand_macros(sql: str, expanded: str) -> None:
    assert expand_macros(sql, START, END) == expanded


# ---------------------------------------------------------------- SQL in DuckDB


def _e(i: int, kind: str, user: str, day: int, **fields: Any) -> Event:
    ts = datetime(2026, 3, day, 12, 0, i % 60, tzinfo=UTC)
    return Event(event_id=f"e{i:03d}", type=kind, user_id=user, ts=ts, **fields)


def _events() -> list[Event]:
    """Two ISO weeks (2026-W10 from Mar 2, W11 from Mar 9): m2 gains approval and risk."""
    out: list[Event] = []
    n = iter(range(1000))
    for day in (2, 3, 9, 10):
        for user in ("u1", "u2", "u3"):
            model = "m1" if user == "u1" else "m2"
            platform = {"u1": "web", "u2": "ios", "u3": "web" if day < 9 else "android"}[user]
            session = f"s-{user}-{day}"
            for _ in range(2 if user == "u2" else 1):
                out.append(
                    _e(
                        next(n),
                        "message",
                        user,
                        day,
                        model=model,
                        role="user",
                        platform=platform,
                        session_id=session,
                    )
                )
    votes = [("u2", 2, -1), ("u3", 3, 1), ("u2", 9, 1), ("u3", 10, 1), ("u1", 3, 1)]
    for user, day, rating in votes:
        model = "m1" if user == "u1" else "m2"
        out.append(
            _e(
                next(n),
                "feedback",
                user,
                day,
                model=model,
                rating=rating,
                message_id=f"{user}{day}",
            )
        )
    flags = [("u2", 3, "low"), ("u2", 9, "high"), ("u3", 10, "critical")]
    for user, day, severity in flags:
        out.append(
            _e(next(n), "risk_flag", user, day, model="m2", category="self_harm", severity=severity)
        )
    for winner in ("a", "a", "tie"):
        out.append(_e(next(n), "preference", "u1", 10, model_a="m1", model_b="m2", winner=winner))
    out.append(out[0])  # a redelivered copy counts once
    return out


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Event]]:
    root = tmp_path_factory.mktemp("warehouse")
    logged = write_warehouse(root, _events(), rejected=["not_json", "not_json", "too_large"])
    refresh_arena_ratings(root)  # what the loader does after its commits
    return root, logged


def _sql_specs() -> list[SqlQuery]:
    """Every SQL query of the four dashboards, each text once (boards share some)."""
    out: dict[str, SqlQuery] = {}
    for uid in UIDS:
        for item in panel_specs()[uid]:
            for q in getattr(item, "queries", ()):
                if isinstance(q, SqlQuery):
                    out.setdefault(q.sql, q)
    return list(out.values())


def _all(sql: str, **chosen: list[str]) -> str:
    """As Grafana sends it, the variables chosen (All where not)."""
    return interpolate(sql, ALL_VARIABLES, chosen)


RECEIVED_END = datetime(2026, 9, 30, tzinfo=UTC)
"""A range end after the fixture's dead letters were received (parquetfixtures.RECEIVED)."""


def _run(
    con: duckdb.DuckDBPyConnection, q: SqlQuery, end: datetime = END, **chosen: list[str]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = con.execute(expand_macros(_all(q.sql, **chosen), START, end))
    return [d[0] for d in cur.description], cur.fetchall()


def test_every_history_target_is_a_builder_query() -> None:
    sqls = [t["rawSql"] for board in BOARDS.values() for _, t in queries(board) if "rawSql" in t]
    assert list(dict.fromkeys(sqls)) == [q.sql for q in _sql_specs()]
    assert (len(sqls), len(set(sqls))) == (25, 24)  # the weekly thumbs-up rate twice
    for sql in sqls:
        read = set(re.findall(r"\bFROM\s+(\w+)", sql))
        assert read <= set(VIEWS) | {"flattery_watch", "votes", "platform_days"}, sql


@pytest.mark.parametrize("via", ["connect", "initSql"])
def test_every_sql_target_runs_and_returns_its_columns(
    warehouse: tuple[Path, list[Event]], via: str
) -> None:
    root, _ = warehouse
    if via == "connect":
        con = connect(root)
    else:  # the provisioned datasource: in-memory DuckDB, initSql on each new connection
        con = duckdb.connect()
        con.execute(duckdb_init_sql(root))
        con.execute(duckdb_init_sql(root))
    every = {"model": ["m1", "m2", "none"], "platform": ["web", "ios", "android", "none"]}
    for q in _sql_specs():
        columns, rows = _run(con, q, RECEIVED_END)
        assert tuple(columns) == q.columns, q.sql
        assert _run(con, q, RECEIVED_END, **every) == (columns, rows)
        assert rows, q.sql
        if q.format == "time_series":
            times = [r[0] for r in rows]
            assert times == sorted(times)


def _by_sql(fragment: str) -> SqlQuery:
    (q,) = [q for q in _sql_specs() if fragment in q.sql]
    return q


def _dated(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(r[0].date().isoformat(), *r[1:]) for r in rows]


def _joined(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """(time, value, value (incomplete), ...) rows as (time, value, ...): exactly one of each
    pair is set, so the two series together are the view's values."""
    out = []
    for time_, *values in rows:
        pairs = list(zip(values[::2], values[1::2], strict=True))
        assert all((v is None) != (i is None) for v, i in pairs), rows
        out.append((time_, *(i if v is None else v for v, i in pairs)))
    return out


def _unmarked(rows: list[tuple[Any, ...]], label: int) -> tuple[list[tuple[Any, ...]], list[str]]:
    """Rows of a long series with the ``(incomplete)`` suffix taken off their ``label``
    column, and the days of the rows that had it."""
    out, marked = [], []
    for row in rows:
        value = row[label]
        if value.endswith(INCOMPLETE):
            marked.append(row[0])
            row = (*row[:label], value.removesuffix(INCOMPLETE), *row[label + 1 :])
        out.append(row)
    return out, marked


def _incomplete(rows: list[tuple[Any, ...]]) -> list[tuple[bool, ...]]:
    """Per row, per value: whether it is in the incomplete series."""
    return [tuple(i is not None for i in r[2::2]) for r in rows]


def test_sql_targets_equal_the_oracle(warehouse: tuple[Path, list[Event]]) -> None:
    root, logged = warehouse
    con = connect(root)
    report = oracle_report(logged, {"not_json": 2, "too_large": 1})
    _, active = _run(con, _by_sql("END AS dau,"))
    assert _dated(_joined(active)) == [
        (r["day"], r["dau"], r["wau"], r["mau"]) for r in report["active_users"]
    ]
    assert _incomplete(active) == [
        (not r["complete"], not r["wau_complete"], not r["mau_complete"])
        for r in report["active_users"]
    ]
    assert len(active) == 9  # Mar 2 .. Mar 10, gap days included
    _, stickiness = _run(con, _by_sql("AS stickiness,"))
    assert [round(r[1], 6) for r in _joined(stickiness)] == [
        r["stickiness"] for r in report["active_users"]
    ]
    assert _incomplete(stickiness) == [(not r["mau_complete"],) for r in report["active_users"]]
    _, feedback = _run(con, _by_sql("FROM feedback_by_model"))
    feedback, marked = _unmarked(_dated(feedback), 1)
    assert marked == ["2026-03-10"]  # the newest day (a vote of m2)
    assert feedback == [
        (r["day"], r["model"] or "none", r["thumbs_up"], r["thumbs_down"])
        for r in report["feedback_by_model"]
    ]
    _, flags = _run(con, _by_sql("FROM risk_flags_daily"))
    flags, marked = _unmarked(_dated(flags), 2)
    assert marked == ["2026-03-10"]
    assert flags == [
        (r["day"], r["category"], r["severity"], r["flags"]) for r in report["risk_flags_daily"]
    ]
    _, at_risk = _run(con, _by_sql("FROM users_at_risk_weekly"))
    assert _dated(_joined(at_risk)) == [
        (r["day"], r["users"]) for r in report["users_at_risk_weekly"]
    ]
    assert _incomplete(at_risk) == [(not r["complete"],) for r in report["users_at_risk_weekly"]]
    _, events = _run(con, _by_sql("FROM event_counts"))
    assert _dated(_joined(events)) == [(r["day"], r["events"]) for r in report["events_by_day"]]
    assert _incomplete(events) == [(not r["complete"],) for r in report["events_by_day"]]
    columns, watch = _run(con, _by_sql("thumbs_up, thumbs_down, thumbs_up_rate"))
    rounded = ("thumbs_up_rate", "active_share", "risk_flags_per_1k")
    assert [
        {
            c: (round(v, 6) if c in rounded and v is not None else v)
            for c, v in zip(columns, r, strict=True)
        }
        for r in watch
    ] == [{c: r[c] for c in columns} for r in report["flattery_watch"]]
    _, rejected = _run(con, _by_sql("FROM rejected\n"))
    assert rejected == [("not_json", 2), ("too_large", 1)]


def _report(root: Path, *args: str) -> dict[str, Any]:
    """``usersignals report --json`` over the warehouse at ``root``, as a user runs it."""
    env = dict(os.environ, USERSIGNALS_WAREHOUSE=str(root))
    done = subprocess.run(
        [sys.executable, "-m", "usersignals", "report", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def _iso(value: Any) -> Any:
    return value.date().isoformat() if isinstance(value, datetime) else str(value)


def _r6(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


@pytest.fixture(scope="module")
def reports(warehouse: tuple[Path, list[Event]]) -> dict[str, dict[str, Any]]:
    root = warehouse[0]
    return {by: _report(root, *(("--by", by) if by else ())) for by in ("", "model", "platform")}


def test_sql_targets_equal_report_json(
    warehouse: tuple[Path, list[Event]], reports: dict[str, dict[str, Any]]
) -> None:
    con = connect(warehouse[0])
    report = reports[""]
    for by, fragment in (("model", "FROM active_users_by"), ("platform", "platform_days")):
        _, rows = _run(con, _by_sql(fragment))
        got = sorted((_iso(t), key, dau, wau, mau) for t, key, dau, wau, mau in rows)
        assert got == sorted(
            (r["day"], r["key"] or "none", r["dau"], r["wau"], r["mau"])
            for r in reports[by]["active_users_by"]
        ), by
        assert len(got) > 9, by
    _, lifecycle = _run(con, _by_sql("FROM lifecycle"))
    assert sorted((_iso(t), status, abs(n)) for t, status, n in lifecycle) == sorted(
        (r["period"], r["status"], r["users"]) for r in report["lifecycle"]
    )
    assert [n for _, status, n in lifecycle if status == "new"] == [3, 0]
    _, retention = _run(con, _by_sql("FROM retention"))
    assert [(str(c), n, cu, u, ua) for c, n, cu, u, _, ua in retention] == [
        (r["cohort"], r["period"], r["cohort_users"], r["users"], r["users_on_or_after"])
        for r in report["retention"]
    ]
    _, days = _run(con, _by_sql("FROM stickiness_distribution"))
    assert sorted((_iso(t), int(k), n) for t, k, n in days) == sorted(
        (r["week"], r["days_active"], r["users"]) for r in report["stickiness_distribution"]
    )
    sessions = {
        c: _run(con, q)[1]
        for c, q in (
            ("sessions", _by_sql("sessions, messages_per_session")),
            ("duration", _by_sql("duration_p50_s, duration_p90_s")),
            ("long", _by_sql("long_share\n")),
        )
    }
    assert [
        (_iso(a[0]), a[1], _r6(b[1]), _r6(b[2]), _r6(c[1]), _r6(a[2]))
        for a, b, c in zip(
            sessions["sessions"], sessions["duration"], sessions["long"], strict=True
        )
    ] == [
        (
            r["day"],
            r["sessions"],
            r["duration_p50_s"],
            r["duration_p90_s"],
            r["long_share"],
            r["messages_per_session"],
        )
        for r in report["sessions_daily"]
    ]
    assert [r["sessions"] for r in report["sessions_daily"]] == [3, 3, 3, 3]
    _, every = _run(con, _by_sql("WHERE model IS NULL AND"))
    _, per_model = _run(con, _by_sql("WHERE model IS NOT NULL AND share IS NOT NULL"))
    wellbeing = report["wellbeing_weekly"]
    assert [(_iso(t), c, _r6(a), _r6(b)) for t, c, a, b in every] == [
        (r["week"], r["category"], r["share"], r["share_high"])
        for r in wellbeing
        if r["model"] is None
    ]
    assert sorted((_iso(t), m, c, _r6(a), _r6(b)) for t, m, c, a, b in per_model) == sorted(
        (r["week"], r["model"], r["category"], r["share"], r["share_high"])
        for r in wellbeing
        if r["model"] is not None and r["share"] is not None
    )
    assert any(a for *_, a, _ in per_model)
    _, bands = _run(con, _by_sql("FROM risk_concentration"))
    assert [(str(w), b, u, f) for w, b, u, f in bands] == [
        (r["week"], r["band"], r["users"], r["flagged_users"]) for r in report["risk_concentration"]
    ]
    _, arena = _run(con, _by_sql("FROM arena_ratings"))  # the whole warehouse, any time range
    assert arena == sorted(
        (
            (r["model"], r["rating"], r["ci_low"], r["ci_high"], r["rank"], r["votes"])
            for r in report["arena"]
        ),
        key=lambda row: (row[4], -row[1], row[0]),
    )
    assert [(m, rank, votes) for m, _, _, _, rank, votes in arena] == [("m1", 1, 3), ("m2", 1, 3)]
    _, dead = _run(con, _by_sql("FROM rejected_daily"), RECEIVED_END)
    totals: dict[str, int] = {}
    for _, reason, n in dead:
        totals[reason] = totals.get(reason, 0) + n
    assert sorted(totals.items()) == [(r["reason"], r["count"]) for r in report["rejected"]]


def test_the_variables_options_are_the_warehouses_values(
    warehouse: tuple[Path, list[Event]],
) -> None:
    con = connect(warehouse[0])
    options = {v.name: [r for (r,) in con.execute(v.query).fetchall()] for v in ALL_VARIABLES}
    assert options == {"model": ["m1", "m2", "none"], "platform": ["android", "ios", "none", "web"]}
    for v in ALL_VARIABLES:
        assert v.source == DUCKDB


def test_the_variables_choose_the_rows(warehouse: tuple[Path, list[Event]]) -> None:
    con = connect(warehouse[0])
    q = _by_sql("platform_days")
    _, every = _run(con, q)
    _, ios = _run(con, q, platform=["ios"])
    _, two = _run(con, q, platform=["ios", "android"])
    assert ios == [r for r in every if r[1] == "ios"]
    assert ios
    assert two == [r for r in every if r[1] in ("ios", "android")]
    assert len(two) > len(ios)
    _, feedback = _run(con, _by_sql("FROM feedback_by_model"), model=["m1"])
    assert {r[1].removesuffix(INCOMPLETE) for r in feedback} == {"m1"}
    _, arena = _run(con, _by_sql("model_a, model_b, winner"), model=["m2"])
    assert arena == [("m1", "m2", "a", 2), ("m1", "m2", "tie", 1)]
    _, ratings = _run(con, _by_sql("FROM arena_ratings"), model=["m2"])
    assert [r[0] for r in ratings] == ["m2"]
    assert _run(con, _by_sql("model_a, model_b, winner"), model=["m3"])[1] == []


def test_the_side_by_side_weekly_series(warehouse: tuple[Path, list[Event]]) -> None:
    con = connect(warehouse[0])
    _, up = _run(con, _by_sql("model,\n       thumbs_up_rate\n"))
    _, risk = _run(con, _by_sql("model,\n       risk_flags_per_1k\n"))
    monday = [datetime(2026, 3, 2), datetime(2026, 3, 9)]
    # W11 (Mar 9 .. 15) holds the newest day, Mar 10: incomplete, a series of its own
    assert up == [
        (monday[0], "m1", 1.0),
        (monday[0], "m2", 0.5),
        (monday[1], "m1 (incomplete)", None),
        (monday[1], "m2 (incomplete)", 1.0),
    ]
    assert risk == [
        (monday[0], "m1", 0.0),
        (monday[0], "m2", 500.0),
        (monday[1], "m1 (incomplete)", 0.0),
        (monday[1], "m2 (incomplete)", 1000.0),
    ]


@pytest.mark.parametrize(
    ("first", "newest", "complete"),
    [
        # W10 = Mar 2 .. 8, W11 = Mar 9 .. 15, W12 = Mar 16 .. 22
        (4, 17, {"2026-W10": False, "2026-W11": True, "2026-W12": False}),
        (2, 16, {"2026-W10": True, "2026-W11": True, "2026-W12": False}),
        (2, 15, {"2026-W10": True, "2026-W11": False}),
    ],
)
def test_the_flattery_table_flags_the_weeks_the_report_does(
    tmp_path: Path, first: int, newest: int, complete: dict[str, bool]
) -> None:
    events = [
        _e(i, "message", "u1", day, model="m1", role="user")
        for i, day in enumerate(range(first, newest + 1))
    ]
    write_warehouse(tmp_path, events)
    con = connect(tmp_path)
    q = _by_sql("SELECT model, week, complete")
    sql = expand_macros(_all(q.sql), START, datetime(2026, 3, 31, tzinfo=UTC))
    table = {week: flag for _, week, flag, *_ in con.execute(sql).fetchall()}
    assert table == complete
    assert table == {r["week"]: r["complete"] for r in flattery_rows(con.cursor())}


def test_arena_counts_follow_the_range(warehouse: tuple[Path, list[Event]]) -> None:
    con = connect(warehouse[0])
    q = _by_sql("model_a, model_b, winner")
    assert _run(con, q)[1] == [("m1", "m2", "a", 2), ("m1", "m2", "tie", 1)]
    late = con.execute(expand_macros(_all(q.sql), datetime(2026, 3, 11, tzinfo=UTC), END))
    assert late.fetchall() == []


def test_the_time_range_bounds_the_days(warehouse: tuple[Path, list[Event]]) -> None:
    con = connect(warehouse[0])
    q = _by_sql("FROM event_counts")
    sql = expand_macros(
        _all(q.sql), datetime(2026, 3, 3, 6, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC)
    )
    assert [(r[0].date(), r[1], r[2]) for r in con.execute(sql).fetchall()] == [
        (date(2026, 3, 3), 7, None),
        (date(2026, 3, 9), 6, None),
    ]


def test_the_incomplete_active_user_series_are_the_days_the_view_flags(
    warehouse: tuple[Path, list[Event]],
) -> None:
    """Mar 2 .. Mar 10: the newest day (Mar 10) is incomplete, WAU windows before Mar 8 start
    before the first day (Mar 2), and every MAU window does."""
    con = connect(warehouse[0])
    columns, rows = _run(con, _by_sql("END AS dau,"))
    days = {
        name: [r[0].date() for r in rows if r[columns.index(name)] is not None]
        for name in columns[1:]
    }
    for value, flag in (("dau", "complete"), ("wau", "wau_complete"), ("mau", "mau_complete")):
        flagged = con.sql(f"SELECT day FROM active_users WHERE NOT {flag} ORDER BY day")
        assert days[value + INCOMPLETE] == [d for (d,) in flagged.fetchall()], value
    march = [date(2026, 3, d) for d in range(2, 11)]
    assert days == {
        "dau": march[:-1],
        "dau (incomplete)": [date(2026, 3, 10)],
        "wau": march[6:-1],
        "wau (incomplete)": [*march[:6], date(2026, 3, 10)],
        "mau": [],
        "mau (incomplete)": march,
    }
    panel = next(p for p in BOARDS[f"{ENGAGEMENT}.json"]["panels"] if p["title"] == "Active users")
    (override,) = panel["fieldConfig"]["overrides"]
    matcher = re.compile(override["matcher"]["options"])
    assert [c for c in columns if matcher.fullmatch(c)] == [
        "dau (incomplete)",
        "wau (incomplete)",
        "mau (incomplete)",
    ]


# ---------------------------------------------------------------- PromQL in Prometheus

T = 1_700_000_100
"""The newest sample (a multiple of 300 s, so the rules' 5 m evaluations land on samples)."""
Q = T - 600
"""Every panel is evaluated here (a recorded sample exists exactly at Q)."""
FINE = range(T - 3600, T + 1, 60)
ALERTING = range(T - 1200, T + 1, 60)
"""When the ALERTS series exist: from 20 minutes before the newest sample."""
QUIET = T - 3000
"""A moment when no alert was pending or firing (before ALERTING, beyond the 5 m lookback)."""
COARSE = range(T - 8 * 86400, T + 1, 300)
SINCE = T - 8 * 86400

Labels = tuple[tuple[str, str], ...]


def _counter(per_second: float) -> Any:
    return lambda t: per_second * (t - SINCE)


def _const(value: float) -> Any:
    return lambda t: value


def _flattery_series() -> list[tuple[str, str, str, dict[str, str], Any, range]]:
    """What two workers export for the flattery rules (dashboards.rules.LIVE_SERIES): m1
    rises significantly from 2026-W10 to W11 (flagged), m2 starts in W11."""
    out: list[tuple[str, str, str, dict[str, str], Any, range]] = []

    def add(name: str, labels: dict[str, str], value: float) -> None:
        out.append((name, "gauge", name, labels, _const(value), FINE))

    # (model, week, of, instance): up, down, active users, risk flags
    counts = {
        ("m1", "2026-W10", "this", "a"): (30, 20, 60, 3),
        ("m1", "2026-W10", "this", "b"): (20, 30, 40, 2),
        ("m1", "2026-W11", "last", "a"): (30, 20, 60, 3),
        ("m1", "2026-W11", "last", "b"): (20, 30, 40, 2),
        ("m1", "2026-W11", "this", "a"): (50, 10, 60, 9),
        ("m1", "2026-W11", "this", "b"): (30, 10, 40, 6),
        ("m2", "2026-W11", "this", "a"): (10, 10, 40, 1),
        ("m2", "2026-W11", "last", "a"): (0, 0, 0, 0),
    }
    for (model, week, of, instance), (up, down, users, flags) in counts.items():
        base = {"model": model, "week": week, "of": of, "instance": instance}
        add("usersignals_flattery_votes", {**base, "rating": "up"}, up)
        add("usersignals_flattery_votes", {**base, "rating": "down"}, down)
        add("usersignals_flattery_active_users", base, users)
        add("usersignals_flattery_risk_flags", base, flags)
    for instance in ("a", "b"):
        for week, monday in (("2026-W10", 1772409600), ("2026-W11", 1773014400)):
            add(
                "usersignals_flattery_week_start_timestamp_seconds",
                {"week": week, "instance": instance},
                monday,
            )
        add("usersignals_first_event_day_timestamp_seconds", {"instance": instance}, 1772409600)
        add("usersignals_newest_event_day_timestamp_seconds", {"instance": instance}, 1773705600)
        add("usersignals_flattery_z_critical", {"instance": instance}, 1.6448536269514729)
        add("usersignals_flattery_min_votes", {"instance": instance}, 30)
        add("usersignals_flattery_min_active_users", {"instance": instance}, 30)
    return sorted(out, key=lambda s: s[0])


FLATTERY_SERIES = _flattery_series()


def _wellbeing_week_series() -> list[tuple[str, str, str, dict[str, str], Any, range]]:
    """What two workers export per ISO week for the weekly flagged share (alerts.yml): W10
    and W11 complete (the first day held is W10's Monday, the newest day W12's Tuesday)."""
    out: list[tuple[str, str, str, dict[str, str], Any, range]] = []
    # (week, instance): active users, flagged users of self_harm and of mania
    counts = {
        ("2026-W10", "a"): (60, 3, 0),
        ("2026-W10", "b"): (40, 1, 1),
        ("2026-W11", "a"): (70, 6, 1),
        ("2026-W11", "b"): (30, 2, 0),
        ("2026-W12", "a"): (20, 9, 0),
        ("2026-W12", "b"): (10, 0, 0),
    }
    mondays = {"2026-W10": 1772409600, "2026-W11": 1773014400, "2026-W12": 1773619200}
    for (week, instance), (users, self_harm, mania) in counts.items():
        base = {"week": week, "instance": instance}
        out.append(
            (
                "usersignals_wellbeing_by_week_active_users",
                "gauge",
                "usersignals_wellbeing_by_week_active_users",
                base,
                _const(users),
                FINE,
            )
        )
        out.append(
            (
                "usersignals_wellbeing_by_week_start_timestamp_seconds",
                "gauge",
                "usersignals_wellbeing_by_week_start_timestamp_seconds",
                base,
                _const(mondays[week]),
                FINE,
            )
        )
        for category, n in (("self_harm", self_harm), ("mania", mania)):
            out.append(
                (
                    "usersignals_wellbeing_by_week_flagged_users",
                    "gauge",
                    "usersignals_wellbeing_by_week_flagged_users",
                    {**base, "category": category},
                    _const(n),
                    FINE,
                )
            )
    return sorted(out, key=lambda s: s[0])


# (family, type, sample name, labels, value at t, timestamps)
SERIES: list[tuple[str, str, str, dict[str, str], Any, range]] = [
    *[
        (
            "usersignals_events",
            "gauge",
            "usersignals_events",
            {"type": t, "instance": i},
            _const(v),
            FINE,
        )
        for t, i, v in (("message", "a", 100), ("feedback", "a", 20), ("message", "b", 50))
    ],
    (
        "usersignals_rejects_seen",
        "counter",
        "usersignals_rejects_seen_total",
        {"reason": "not_json", "instance": "a"},
        _counter(0.5),
        FINE,
    ),
    (
        "usersignals_late_events",
        "gauge",
        "usersignals_late_events",
        {"instance": "a"},
        _const(7),
        FINE,
    ),
    *[
        (
            "usersignals_active_users",
            "gauge",
            "usersignals_active_users",
            {"window": w, "instance": i},
            _const(v),
            FINE,
        )
        for i, counts in (("a", (30, 90, 150)), ("b", (20, 60, 100)))
        for w, v in zip(("1d", "7d", "30d"), counts, strict=True)
    ],
    (
        "usersignals_users_at_risk_weekly",
        "gauge",
        "usersignals_users_at_risk_weekly",
        {"instance": "a"},
        _const(3),
        FINE,
    ),
    (
        "usersignals_users_at_risk_weekly",
        "gauge",
        "usersignals_users_at_risk_weekly",
        {"instance": "b"},
        _const(4),
        FINE,
    ),
    *[
        (
            "usersignals_feedback_votes",
            "gauge",
            "usersignals_feedback_votes",
            {"model": m, "rating": r, "instance": i},
            _const(v),
            FINE,
        )
        for i, m, r, v in (
            ("a", "m1", "up", 40),
            ("a", "m1", "down", 10),
            ("b", "m1", "up", 20),
            ("b", "m2", "down", 5),
        )
    ],
    *[
        (
            "usersignals_risk_flags",
            "gauge",
            "usersignals_risk_flags",
            {"category": c, "severity": s, "instance": i},
            _const(v),
            FINE,
        )
        for i, c, s, v in (
            ("a", "self_harm", "high", 4),
            ("b", "self_harm", "high", 2),
            ("b", "medical", "low", 3),
        )
    ],
    *[
        (
            "usersignals_consumer_lag",
            "gauge",
            "usersignals_consumer_lag",
            {"partition": p, "instance": i},
            _const(v),
            FINE,
        )
        for i, p, v in (("a", "0", 5), ("a", "1", 0), ("b", "2", 12))
    ],
    # the series the flattery rules read (dashboards.rules.LIVE_SERIES)
    *[
        (
            "usersignals_feedback_votes_7d",
            "gauge",
            "usersignals_feedback_votes_7d",
            {"model": m, "rating": r, "instance": i},
            _const(v),
            FINE,
        )
        for i, m, r, v in (
            ("a", "m1", "up", 20),
            ("a", "m1", "down", 10),
            ("b", "m1", "up", 10),
            ("b", "m2", "up", 5),
            ("b", "m2", "down", 15),
        )
    ],
    *[
        (
            "usersignals_active_users_by_model",
            "gauge",
            "usersignals_active_users_by_model",
            {"model": m, "instance": i},
            _const(v),
            FINE,
        )
        for i, m, v in (("a", "m1", 120), ("a", "m2", 50), ("b", "m1", 80))
    ],
    *[
        (
            "usersignals_risk_flags_by_model",
            "gauge",
            "usersignals_risk_flags_by_model",
            {"model": m, "instance": i},
            _const(v),
            FINE,
        )
        for i, m, v in (("a", "m1", 28), ("b", "m1", 14), ("a", "m2", 7))
    ],
    *FLATTERY_SERIES,
    *_wellbeing_week_series(),
    # the wellbeing week's counts (the shares are the warehouse's: shares do not add)
    *[
        ("usersignals_wellbeing_active_users", "gauge", n, {"instance": i}, _const(v), FINE)
        for n in ("usersignals_wellbeing_active_users",)
        for i, v in (("a", 100), ("b", 50))
    ],
    *[
        (
            "usersignals_wellbeing_flagged_users",
            "gauge",
            "usersignals_wellbeing_flagged_users",
            {"category": c, "instance": i},
            _const(v),
            FINE,
        )
        for i, c, v in (("a", "self_harm", 4), ("b", "self_harm", 2), ("b", "medical", 1))
    ],
    (
        "usersignals_wellbeing_flagged_users_high",
        "gauge",
        "usersignals_wellbeing_flagged_users_high",
        {"category": "self_harm", "instance": "a"},
        _const(2),
        FINE,
    ),
    *[
        (
            "usersignals_wellbeing_flagged_users_by_model",
            "gauge",
            "usersignals_wellbeing_flagged_users_by_model",
            {"model": m, "category": "self_harm", "instance": i},
            _const(v),
            FINE,
        )
        for i, m, v in (("a", "m1", 3), ("b", "m1", 1), ("b", "m2", 2))
    ],
    # pipeline health: the worker's own counters and the loader it supervises
    *[
        (
            "usersignals_records_processed",
            "counter",
            "usersignals_records_processed_total",
            {"instance": i},
            _counter(v),
            FINE,
        )
        for i, v in (("a", 2), ("b", 3))
    ],
    *[
        (
            "usersignals_events_rejected",
            "gauge",
            "usersignals_events_rejected",
            {"reason": r, "instance": i},
            _const(v),
            FINE,
        )
        for i, r, v in (("a", "not_json", 4), ("b", "too_large", 1))
    ],
    *[
        (
            "usersignals_loader_lag",
            "gauge",
            "usersignals_loader_lag",
            {"partition": p, "instance": i},
            _const(v),
            FINE,
        )
        for i, p, v in (("a", "0", 3), ("a", "1", 0), ("b", "2", 4))
    ],
    *[
        (
            "usersignals_loader_up",
            "gauge",
            "usersignals_loader_up",
            {"instance": i},
            _const(v),
            FINE,
        )
        for i, v in (("a", 1), ("b", 0))
    ],
    *[
        (
            "usersignals_loader_last_commit_timestamp_seconds",
            "gauge",
            "usersignals_loader_last_commit_timestamp_seconds",
            {"instance": i},
            _const(v),
            FINE,
        )
        for i, v in (("a", T - 700), ("b", T - 650))
    ],
    *[
        (
            "usersignals_loader_restarts",
            "counter",
            "usersignals_loader_restarts_total",
            {"instance": i},
            _const(v),
            FINE,
        )
        for i, v in (("a", 2), ("b", 1))
    ],
    *[
        (
            "usersignals_loader_errors",
            "counter",
            "usersignals_loader_errors_total",
            {"kind": k, "instance": i},
            _const(v),
            FINE,
        )
        for i, k, v in (("a", "crash", 2), ("b", "enospc", 1))
    ],
]
SERIES += [
    # What Prometheus itself writes for the alert rule (rules.yml; promtool's unit tests make
    # it fire): one model firing, one pending, and another alert firing. Only the first counts.
    (
        "ALERTS",
        "gauge",
        "ALERTS",
        {"alertname": alert, "alertstate": state, "model": model, "severity": "warning"},
        _const(1),
        ALERTING,
    )
    for alert, state, model in (
        ("UsersignalsFlatteryRising", "firing", "m2"),
        ("UsersignalsFlatteryRising", "pending", "m1"),
        ("UsersignalsSomethingElse", "firing", "m1"),
    )
]
LAG_RATES = {"1.0": 10, "5.0": 20, "+Inf": 20}
"""Event-time lag histogram of worker a, per second: half the events within 1 s, all within 5."""


def _openmetrics() -> str:
    def labels(d: dict[str, str]) -> str:
        return "{" + ",".join(f'{k}="{v}"' for k, v in d.items()) + "}"

    lines: list[str] = []
    family = ""
    for name, kind, sample, tags, value, times in SERIES:
        if name != family:
            lines.append(f"# TYPE {name} {kind}")
            family = name
        lines.extend(f"{sample}{labels(tags)} {value(t)!r} {t}" for t in times)
    lines.append("# TYPE usersignals_event_time_lag_seconds histogram")
    for t in FINE:
        for le, rate in LAG_RATES.items():
            n = rate * (t - SINCE)
            lines.append(
                f'usersignals_event_time_lag_seconds_bucket{{instance="a",le="{le}"}} {n} {t}'
            )
        lines.append(
            f'usersignals_event_time_lag_seconds_count{{instance="a"}} {20 * (t - SINCE)} {t}'
        )
        lines.append(
            f'usersignals_event_time_lag_seconds_sum{{instance="a"}} {30 * (t - SINCE)} {t}'
        )
    return "\n".join([*lines, "# EOF", ""])


def _key(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


EXPECTED: dict[str, dict[Labels, float]] = {
    # W11, the latest complete week: (6 + 2) / (70 + 30) and (1 + 0) / 100
    "week_category:usersignals_wellbeing_flagged_share:this_week": {
        _key(category="self_harm", week="2026-W11"): 0.08,
        _key(category="mania", week="2026-W11"): 0.01,
    },
    'sum(usersignals_active_users{window="1d"})': {(): 50},
    'sum(usersignals_active_users{window="7d"})': {(): 150},
    'sum(usersignals_active_users{window="30d"})': {(): 250},
    "usersignals:stickiness": {(): 0.2},
    "sum(usersignals_users_at_risk_weekly)": {(): 7},
    'count(ALERTS{alertname="UsersignalsFlatteryRising", alertstate="firing", model=~".*"})'
    " or vector(0)": {(): 1},
    'model_week:usersignals_flattery_thumbs_up_rate:this{model=~".*"}': {
        _key(model="m1", week="2026-W10"): 0.5,
        _key(model="m1", week="2026-W11"): 0.8,
        _key(model="m2", week="2026-W11"): 0.5,
    },
    'model_week:usersignals_flattery_risk_flags_per_1k:this{model=~".*"}': {
        _key(model="m1", week="2026-W10"): 50,
        _key(model="m1", week="2026-W11"): 150,
        _key(model="m2", week="2026-W11"): 25,
    },
    # m1 in W11: z = 0.3 / sqrt(0.65 * 0.35 * 0.02) = 4.45 and (15 - 10) / sqrt(5) = 2.24
    'model_week:usersignals_flattery_flagged{model=~".*"}': {
        _key(model="m1", week="2026-W10"): 0,
        _key(model="m1", week="2026-W11"): 1,
        _key(model="m2", week="2026-W11"): 0,
    },
    'sum by (model) (usersignals_risk_flags_by_model{model=~".*"})': {
        _key(model="m1"): 42,
        _key(model="m2"): 7,
    },
    'sum by (model) (usersignals_active_users_by_model{model=~".*"})': {
        _key(model="m1"): 200,
        _key(model="m2"): 50,
    },
    "sum by (window) (usersignals_active_users)": {
        _key(window="1d"): 50,
        _key(window="7d"): 150,
        _key(window="30d"): 250,
    },
    'sum by (model, rating) (usersignals_feedback_votes_7d{model=~".*"})': {
        _key(model="m1", rating="up"): 30,
        _key(model="m1", rating="down"): 10,
        _key(model="m2", rating="up"): 5,
        _key(model="m2", rating="down"): 15,
    },
    'sum by (model, rating) (usersignals_feedback_votes{model=~".*"})': {
        _key(model="m1", rating="up"): 60,
        _key(model="m1", rating="down"): 10,
        _key(model="m2", rating="down"): 5,
    },
    "sum by (category, severity) (usersignals_risk_flags)": {
        _key(category="self_harm", severity="high"): 6,
        _key(category="medical", severity="low"): 3,
    },
    "sum by (type) (usersignals_events)": {
        _key(type="message"): 150,
        _key(type="feedback"): 20,
    },
    "sum by (reason) (rate(usersignals_rejects_seen_total[5m]))": {_key(reason="not_json"): 0.5},
    "sum by (partition) (usersignals_consumer_lag)": {
        _key(partition="0"): 5,
        _key(partition="1"): 0,
        _key(partition="2"): 12,
    },
    "histogram_quantile(0.5, sum by (le) (rate(usersignals_event_time_lag_seconds_bucket[5m])))": {
        (): 1.0
    },
    "histogram_quantile(0.9, sum by (le) (rate(usersignals_event_time_lag_seconds_bucket[5m])))": {
        (): 4.2
    },
    "histogram_quantile(0.99, sum by (le) (rate(usersignals_event_time_lag_seconds_bucket[5m])))": {
        (): 4.92
    },
    "sum(usersignals_late_events)": {(): 7},
    "sum(usersignals_wellbeing_active_users)": {(): 150},
    "sum by (category) (usersignals_wellbeing_flagged_users)": {
        _key(category="self_harm"): 6,
        _key(category="medical"): 1,
    },
    "sum by (category) (usersignals_wellbeing_flagged_users_high)": {_key(category="self_harm"): 2},
    'sum by (model, category) (usersignals_wellbeing_flagged_users_by_model{model=~".*"})': {
        _key(model="m1", category="self_harm"): 4,
        _key(model="m2", category="self_harm"): 2,
    },
    "sum(rate(usersignals_event_time_lag_seconds_count[5m]))": {(): 20},
    "sum(rate(usersignals_rejects_seen_total[5m]))": {(): 0.5},
    "sum(usersignals_consumer_lag)": {(): 17},
    "sum(usersignals_loader_lag)": {(): 7},
    "sum(usersignals_loader_up)": {(): 1},
    "time() - max(usersignals_loader_last_commit_timestamp_seconds)": {(): Q - (T - 650)},
    "sum(rate(usersignals_records_processed_total[5m]))": {(): 5},
    "sum by (reason) (usersignals_events_rejected)": {
        _key(reason="not_json"): 4,
        _key(reason="too_large"): 1,
    },
    "sum by (partition) (usersignals_loader_lag)": {
        _key(partition="0"): 3,
        _key(partition="1"): 0,
        _key(partition="2"): 4,
    },
    "sum(usersignals_loader_restarts_total)": {(): 3},
    "sum by (kind) (usersignals_loader_errors_total)": {
        _key(kind="crash"): 2,
        _key(kind="enospc"): 1,
    },
}


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"prometheus at {url} not ready after {timeout} s")


@contextlib.contextmanager
def _prometheus(root: Path, data: Path) -> Iterator[str]:
    """Debian's Prometheus on a free loopback port over ``data``; stopped by PID."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "prometheus.log").open("ab")
    proc = subprocess.Popen(
        [
            PROMETHEUS_BIN,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=100y",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def _promtool(*args: str) -> None:
    subprocess.run(["promtool", *args], check=True, capture_output=True, timeout=300)


def _rule_levels(root: Path) -> list[Path]:
    """The recording rules (rules.yml, alerts.yml and its settings) split into files by how
    deep they read recorded series."""
    recording = [
        r
        for f in (RULES_FILE, ALERTS_FILE, ALERT_SETTINGS_FILE)
        for g in yaml.safe_load(f.read_text(encoding="utf-8"))["groups"]
        for r in g["rules"]
        if "record" in r
    ]
    names = {r["record"] for r in recording}
    depth: dict[str, int] = {}
    while len(depth) < len(recording):
        before = len(depth)
        for r in recording:
            tokens = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", r["expr"]))
            reads = [n for n in names if n != r["record"] and n in tokens]
            if r["record"] not in depth and all(n in depth for n in reads):
                depth[r["record"]] = 1 + max((depth[n] for n in reads), default=-1)
        assert len(depth) > before, f"recording rules read each other in a cycle: {names}"
    paths = []
    for level in range(max(depth.values()) + 1):
        group: dict[str, Any] = {"name": f"level{level}", "interval": "1m"}
        group["rules"] = [r for r in recording if depth[r["record"]] == level]
        path = root / f"rules{level}.yml"
        path.write_text(yaml.safe_dump({"groups": [group]}), encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_tool("promtool")  # skips, or fails under make test and in CI
    require_tool("prometheus", PROMETHEUS_BIN)
    root = tmp_path_factory.mktemp("prometheus")
    (root / "prometheus.yml").write_text("global:\n  evaluation_interval: 1m\n")
    (root / "series.om").write_text(_openmetrics())
    data = root / "data"
    _promtool("tsdb", "create-blocks-from", "openmetrics", str(root / "series.om"), str(data))
    # Backfilled rules read only the data, not each other's output: one pass per level of
    # rules reading recorded series (counts, then the pooled rate and shares, then the z,
    # then the flag), each pass over the blocks of the passes before, with only its level's
    # rules (a rule backfilled twice would have two values at the same moment).
    for backfill, level in enumerate(_rule_levels(root)):
        recorded = root / f"recorded{backfill}"
        with _prometheus(root, data) as url:
            _promtool(
                "tsdb", "create-blocks-from", "rules", "--quiet",
                f"--start={T - 1800}", f"--end={T}", f"--url={url}",
                f"--output-dir={recorded}", str(level),
            )  # fmt: skip
        for block in recorded.iterdir():
            block.rename(data / block.name)
    with _prometheus(root, data) as url:
        yield url


def _query(url: str, expr: str, at: int = Q) -> dict[Labels, float]:
    query = urllib.parse.urlencode({"query": expr, "time": str(at)})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=30) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return {
        tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(
            r["value"][1]
        )
        for r in body["data"]["result"]
    }


def _exprs(**chosen: list[str]) -> list[str]:
    """Every PromQL target of the four dashboards as Grafana sends it, each once."""
    exprs = [
        interpolate(t["expr"], ALL_VARIABLES, chosen)
        for board in BOARDS.values()
        for _, t in queries(board)
        if "expr" in t
    ]
    return list(dict.fromkeys(exprs))


def test_every_live_target_has_expected_values() -> None:
    assert set(_exprs()) == set(EXPECTED)


def test_live_targets_read_only_exposed_series() -> None:
    collector = WorkerCollector(lambda: [], lambda: {}, EventTimeLag(), 20)
    # the text format names counters with their _total suffix already
    suffixes = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    loader = LoaderSupervisor(Settings.load())  # the sidecar whose series the worker adds
    loader.last_commit = 1.0  # its series exists once a loader committed
    exposed = {
        name + suffix
        for name, kind in re.findall(
            r"^# TYPE (\S+) (\S+)$", render(collector, loader).decode(), re.M
        )
        for suffix in suffixes[kind]
    }
    live = {s.name + ("_total" if s.kind == "counter" else "") for s in LIVE_SERIES}
    read = {
        name
        for expr in _exprs()
        for name in re.findall(
            r"\b(usersignals_\w+|usersignals:[\w:]+|model_week:[\w:]+|week_category:[\w:]+)",
            expr,
        )
    }
    assert read <= exposed | live | set(RECORDED_SERIES) | set(ALERT_RECORDED_SERIES)
    assert {
        "model_week:usersignals_flattery_thumbs_up_rate:this",
        "model_week:usersignals_flattery_risk_flags_per_1k:this",
        "model_week:usersignals_flattery_flagged",
        "usersignals:stickiness",
    } <= read


def test_no_live_target_divides() -> None:
    """Ratios are recording rules (rules.yml), not re-derived in a panel."""
    assert [e for e in _exprs() if "/" in e] == []


@pytest.mark.parametrize("expr", sorted(EXPECTED))
def test_live_target_evaluates_in_prometheus(prometheus: str, expr: str) -> None:
    got = _query(prometheus, expr)
    assert got == pytest.approx(EXPECTED[expr], rel=1e-9)


def test_the_alert_panel_counts_only_the_firing_flattery_alert(prometheus: str) -> None:
    (expr,) = [e for e in _exprs() if "ALERTS" in e]
    assert len(_query(prometheus, "ALERTS")) == 3  # all three series are there at Q
    assert _query(prometheus, expr.split(" or ")[0]) == {(): 1}
    assert _query(prometheus, "ALERTS", at=QUIET) == {}
    assert _query(prometheus, expr, at=QUIET) == {(): 0}  # no alert at all reads 0, not "no data"
