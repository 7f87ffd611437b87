"""A real Prometheus scrapes two real workers through a rebalance and a retention prune: every
``_total`` series only grows, the flattery rules and alert give the metric definition's
answer (``usersignals.metrics.flattery`` through the report) on the data held at each step, and
the weekly flagged-share rules of ``alerts.yml`` count each complete ISO week's flagged and
active users exactly (metrics.md), summed over the workers."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Kafka
from tests.oracle import oracle_report
from tests.streams.promproc import running_prometheus
from tests.streams.workerproc import (
    WorkerProc,
    batch_records,
    produce,
    start_worker,
    wait_caught_up,
)
from usersignals.dashboards.rules import ALERT_SETTINGS_FILE, ALERTS_FILE, RULES_FILE
from usersignals.ingest.contract import Event
from usersignals.metrics.flattery import WeekCounts, previous_week, rise
from usersignals.metrics.periods import iso_week
from usersignals.metrics.wellbeing import CATEGORIES

N = 8
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = pytest.mark.usefixtures("prometheus_bin")  # skips, or fails under make test

Key = tuple[str, str]

# ISO weeks 2026-W37 (Mon 09-07) and W38 are complete once an event of 09-21 (W39) is held
MONDAY = date(2026, 9, 7)
# (model, week offset): users, thumbs up, thumbs down, risk flags
WEEKS = {
    ("warm", 0): (100, 50, 50, 5),
    ("warm", 1): (100, 80, 20, 15),
    ("steady", 0): (100, 55, 45, 5),
    ("steady", 1): (100, 57, 43, 6),
    ("warm", 2): (20, 10, 5, 1),
    ("steady", 2): (20, 10, 10, 0),
}
FAR = date(2026, 11, 23)  # 35+ days later: every September day falls behind the horizon


def wire(day: date, user: str, kind: str, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{user}-{kind}-{n}",
        "type": kind,
        "user_id": user,
        "ts": f"{day.isoformat()}T12:00:{n:02d}Z",
        **fields,
    }


def traffic() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for (model, week), (users, up, down, flags) in WEEKS.items():
        day = MONDAY + timedelta(days=7 * week)
        for i in range(users):
            user = f"{model}-{week}-{i}"
            out.append(wire(day, user, "message", 0, model=model, role="assistant"))
            if i < up + down:
                rating = 1 if i < up else -1
                out.append(
                    wire(day, user, "feedback", 1, model=model, message_id="m", rating=rating)
                )
            if i < flags:
                out.append(
                    wire(day, user, "risk_flag", 2, model=model, category="other", severity="low")
                )
    return out


def far_traffic() -> list[dict[str, Any]]:
    return [
        wire(FAR, f"later-{i}", "message", 0, model="steady", role="assistant") for i in range(64)
    ]


# ---------------------------------------------------------------- Prometheus over HTTP


def api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def by_key(port: int, promql: str) -> dict[Key, float]:
    return {
        (r["metric"]["model"], r["metric"]["week"]): float(r["value"][1])
        for r in api(port, "query", query=promql)
    }


def eventually(read: Callable[[], Any], expected: Any, what: str, timeout: float = 90) -> Any:
    """The value of ``read()`` once it equals ``expected`` (Prometheus scrapes and evaluates
    every second); the last value read when the deadline passes."""
    deadline = time.monotonic() + timeout
    got = read()
    while got != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        got = read()
    return got


@contextmanager
def prometheus(tmp_path: Path, targets: list[int], binary: str) -> Iterator[int]:
    rules = tmp_path / "rules.yml"
    text = RULES_FILE.read_text(encoding="utf-8")
    assert "    interval: 1m\n" in text
    assert "        for: 15m\n" in text
    fast = text.replace("    interval: 1m\n", "    interval: 1s\n").replace(
        "        for: 15m\n", "        for: 0s\n"
    )
    groups = yaml.safe_load(fast)["groups"]
    for path in (ALERTS_FILE, ALERT_SETTINGS_FILE):  # the alerts' rules, every second too
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            groups.append({**group, "interval": "1s"})
    rules.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    with running_prometheus(binary, tmp_path, targets, rules) as port:
        yield port


# ---------------------------------------------------------------- the definition's answer


def definition(rows: list[dict[str, Any]]) -> dict[str, dict[Key, float]]:
    """What each recording rule and the alert must give, from the report's flattery rows."""
    cells = {
        (r["model"], r["week"]): WeekCounts(
            r["model"],
            r["week"],
            r["thumbs_up"],
            r["thumbs_down"],
            r["active_users"],
            r["risk_flags"],
            0,
            1,
        )
        for r in rows
    }
    out: dict[str, dict[Key, float]] = {"flagged": {}, "rate": {}, "z_up": {}, "z_risk": {}}
    for key, c in cells.items():
        row = next(r for r in rows if (r["model"], r["week"]) == key)
        out["flagged"][key] = 1.0 if row["flagged"] else 0.0
        if c.thumbs_up + c.thumbs_down:
            out["rate"][key] = c.thumbs_up / (c.thumbs_up + c.thumbs_down)
        last = cells.get((key[0], previous_week(key[1])))
        if last is not None:
            tests = rise(c, last)
            if tests.z_thumbs_up is not None:
                out["z_up"][key] = tests.z_thumbs_up
            if tests.z_risk is not None:
                out["z_risk"][key] = tests.z_risk
    return out


RULES = {
    "flagged": "model_week:usersignals_flattery_flagged",
    "rate": "model_week:usersignals_flattery_thumbs_up_rate:this",
    "z_up": "model_week:usersignals_flattery_thumbs_up_z",
    "z_risk": "model_week:usersignals_flattery_risk_z",
}
FIRING = 'ALERTS{alertname="UsersignalsFlatteryRising", alertstate="firing"}'


def check_rules(port: int, rows: list[dict[str, Any]], alerts: set[Key], step: str) -> None:
    expected = definition(rows)

    def read() -> tuple[dict[str, dict[Key, float]], set[Key]]:
        got = {name: by_key(port, promql) for name, promql in RULES.items()}
        return got, set(by_key(port, FIRING))

    got, firing = eventually(read, (expected, alerts), step)
    assert got == expected, step
    assert firing == alerts, step


COMPLETE = "week:usersignals_wellbeing_complete_week_start_timestamp_seconds"
FLAGGED = f"week_category:usersignals_wellbeing_flagged_users:sum and on (week) {COMPLETE}"
ACTIVE = f"week:usersignals_wellbeing_active_users:sum and on (week) {COMPLETE}"
SPIKE = 'ALERTS{alertname="UsersignalsRiskFlagSpike"}'

Weekly = tuple[dict[tuple[str, str], float], dict[str, float]]


def weekly_share_counts(events: list[dict[str, Any]], newest: date) -> Weekly:
    """The definition's flagged users per (ISO week, category) and active users per ISO week
    (metrics.md) of the weeks whose Sunday is before ``newest``, from the events themselves."""
    users: dict[str, set[str]] = {}
    flagged: dict[tuple[str, str], set[str]] = {}
    for e in events:
        day = date.fromisoformat(e["ts"][:10])
        if day + timedelta(days=7 - day.weekday()) > newest:
            continue  # the week is not complete
        week = iso_week(day)
        users.setdefault(week, set()).add(e["user_id"])
        if e["type"] == "risk_flag":
            flagged.setdefault((week, e["category"]), set()).add(e["user_id"])
    counts = {(w, c): float(len(flagged.get((w, c), ()))) for w in users for c in CATEGORIES}
    return counts, {w: float(len(u)) for w, u in users.items()}


def check_weekly_share(port: int, expected: Weekly, step: str) -> None:
    def read() -> tuple[Weekly, list[Any]]:
        flagged = {
            (r["metric"]["week"], r["metric"]["category"]): float(r["value"][1])
            for r in api(port, "query", query=FLAGGED)
        }
        active = {
            r["metric"]["week"]: float(r["value"][1]) for r in api(port, "query", query=ACTIVE)
        }
        return (flagged, active), api(port, "query", query=SPIKE)

    got, spikes = eventually(read, (expected, []), step)
    assert got == expected, step
    assert spikes == [], step  # two complete weeks: no trailing four to compare with


def held(port: int, worker: WorkerProc) -> float:
    """Distinct valid events the worker holds, as Prometheus scraped them last."""
    promql = f'sum(usersignals_events{{instance="127.0.0.1:{worker.port}"}})'
    return sum(float(r["value"][1]) for r in api(port, "query", query=promql))


def worker_rows(worker: WorkerProc) -> list[dict[str, Any]]:
    return list(worker.get("/v1/report")["flattery_watch"])


def test_rules_and_counters_across_a_rebalance_and_a_prune(kafka: Kafka, tmp_path: Path) -> None:
    started = time.time()
    topic, group = kafka.settings.events_topic, f"{kafka.settings.topic_prefix}-worker"
    records = [*batch_records(traffic(), N, 10), (0, None, b"{oops")]
    produced = produce(kafka.bootstrap, topic, records)
    a = start_worker(kafka.env(), tmp_path, name="a")
    b = start_worker(kafka.env(), tmp_path, name="b")
    try:
        with prometheus(tmp_path, [a.port, b.port], PROMETHEUS) as port:
            wait_caught_up([a, b], kafka.bootstrap, group, topic, produced.ends, N)
            assert (a.status() or {})["partitions"]
            assert (b.status() or {})["partitions"]
            rows = oracle_report(produced.events_in_log_order())["flattery_watch"]
            assert [(r["model"], r["week"]) for r in rows if r["flagged"]] == [("warm", "2026-W38")]
            check_rules(port, rows, {("warm", "2026-W38")}, "two workers")
            weekly = weekly_share_counts(traffic(), MONDAY + timedelta(days=14))
            assert weekly[1] == {"2026-W37": 200.0, "2026-W38": 200.0}
            assert {k: v for k, v in weekly[0].items() if v} == {
                ("2026-W37", "other"): 10.0,
                ("2026-W38", "other"): 21.0,
            }
            check_weekly_share(port, weekly, "two workers")

            a.stop()  # its partitions move to b
            wait_caught_up([b], kafka.bootstrap, group, topic, produced.ends, N)
            assert sorted(int(p) for p in (b.status() or {})["partitions"]) == list(range(N))
            check_rules(port, rows, {("warm", "2026-W38")}, "after the rebalance")
            check_weekly_share(port, weekly, "after the rebalance")

            everything = float(len(produced_events(produced)))
            held_before = eventually(lambda: held(port, b), everything, "held events")
            produce(kafka.bootstrap, topic, batch_records(far_traffic(), N, 4), produced)
            wait_caught_up([b], kafka.bootstrap, group, topic, produced.ends, N)
            pruned = worker_rows(b)
            assert [(r["model"], r["week"], r["complete"]) for r in pruned] == [
                ("steady", "2026-W48", False)
            ]
            check_rules(port, pruned, set(), "after the prune")
            check_weekly_share(port, ({}, {}), "after the prune")  # W48 runs: none complete
            held_after = eventually(lambda: held(port, b), 64.0, "held events after the prune")
            assert (held_before, held_after) == (everything, 64.0)

            end = time.time()
            series = api(
                port,
                "query_range",
                query='{__name__=~"usersignals_.+_total"}',
                start=str(started),
                end=str(end),
                step="1",
            )
            names = {s["metric"]["__name__"] for s in series}
            assert names == {
                "usersignals_records_processed_total",
                "usersignals_rejects_seen_total",
            }
            for s in series:
                values = [float(v) for _, v in s["values"]]
                assert values == sorted(values), s["metric"]
            assert {
                s["metric"]["instance"]
                for s in series
                if s["metric"]["__name__"] == "usersignals_records_processed_total"
            } == {
                f"127.0.0.1:{a.port}",
                f"127.0.0.1:{b.port}",
            }
    finally:
        a.stop()
        b.stop()


def produced_events(produced: Any) -> list[Event]:
    """The distinct valid events written before the prune (each event_id once)."""
    seen: dict[str, Event] = {}
    for e in produced.events_in_log_order():
        if e.ts.astimezone(UTC).date() < datetime(2026, 10, 1, tzinfo=UTC).date():
            seen.setdefault(e.event_id, e)
    return list(seen.values())
