"""Debian's real Prometheus scrapes a real worker; PromQL gives back the exact DAU (issue 4, 6)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kafka
from tests.oracle import dedupe, oracle_report
from tests.streams.promproc import running_prometheus
from tests.streams.workerproc import (
    BAD_RECORDS,
    batch_records,
    generate_wire,
    produce,
    running_worker,
    wait_caught_up,
)
from usersignals.ingest.contract import Event

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
N = 8

pytestmark = pytest.mark.usefixtures("prometheus_bin")  # skips, or fails under make test


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success"
    return list(body["data"]["result"])


def by_model(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"]["model"]: float(r["value"][1]) for r in result}


def flags_by_model(report: dict[str, Any]) -> dict[str, float]:
    """Risk flags per model over every week of the oracle's flattery watch (all within the
    retention horizon)."""
    out: dict[str, float] = {}
    for row in report["flattery_watch"]:
        if row["risk_flags"]:
            out[row["model"]] = out.get(row["model"], 0.0) + row["risk_flags"]
    return out


def active_by_model(events: Iterable[Event]) -> dict[str, float]:
    """Distinct users per model on the newest event day and the 6 before it."""
    kept = dedupe(events)
    newest = max(e.ts.date() for e in kept)
    users: dict[str, set[str]] = {}
    for e in kept:
        if e.model is not None and (newest - e.ts.date()).days < 7:
            users.setdefault(e.model, set()).add(e.user_id)
    return {m: float(len(u)) for m, u in users.items()}


def test_prometheus_scrapes_the_exact_dau(kafka: Kafka, tmp_path: Path) -> None:
    wire = generate_wire(seed=5)
    bad = [(0, None, v) for v in BAD_RECORDS]
    produced = produce(
        kafka.bootstrap, kafka.settings.events_topic, [*batch_records(wire, N, 10), *bad]
    )
    expected = oracle_report(produced.events_in_log_order(), produced.rejected())
    last = expected["active_users"][-1]
    with running_worker(kafka.env(), tmp_path) as worker:
        wait_caught_up(
            [worker],
            kafka.bootstrap,
            f"{kafka.settings.topic_prefix}-worker",
            kafka.settings.events_topic,
            produced.ends,
            N,
        )
        text = worker.get("/metrics")
        assert "user_id" not in text
        assert "u001" not in text
        with running_prometheus(PROMETHEUS, tmp_path, [worker.port]) as port:
            deadline = time.monotonic() + 60
            result: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                result = query(port, 'usersignals_active_users{window="1d"}')
                if result:
                    break
                time.sleep(0.5)
            assert [float(r["value"][1]) for r in result] == [float(last["dau"])]
            mau = query(port, 'usersignals_active_users{window="30d"}')
            assert [float(r["value"][1]) for r in mau] == [float(last["mau"])]
            rejected = query(port, "sum(usersignals_events_rejected)")
            assert [float(r["value"][1]) for r in rejected] == [
                float(sum(produced.rejected().values()))
            ]
            lag = query(port, "sum(usersignals_consumer_lag)")
            assert [float(r["value"][1]) for r in lag] == [0.0]
            flags = query(port, 'sum by (model) (usersignals_risk_flags_by_model{model!="none"})')
            assert by_model(flags) == flags_by_model(expected)
            active = query(port, "sum by (model) (usersignals_active_users_by_model)")
            assert by_model(active) == active_by_model(produced.events_in_log_order())
            events = query(port, "usersignals_event_time_lag_seconds_count")
            assert [float(r["value"][1]) for r in events] == [
                float(sum(r["events"] for r in expected["events_by_day"]))
            ]
