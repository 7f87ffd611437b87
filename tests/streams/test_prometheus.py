"""Debian's real Prometheus scrapes a real worker; PromQL gives back the exact DAU (issue 4, 6).

Every PromQL expression of the four Grafana dashboards (usersignals.dashboards.panels) is then
evaluated the same way, against a real worker with its loader, the recording and alert rules
of dashboards/prometheus/ loaded, and compared with the oracle, the warehouse the loader wrote
and the worker's own counters.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Kafka
from tests.oracle import dedupe, oracle_report
from tests.streams.promproc import running_prometheus
from tests.streams.workerproc import (
    BAD_RECORDS,
    WorkerProc,
    batch_records,
    generate_wire,
    produce,
    running_worker,
    wait_caught_up,
)
from usersignals.dashboards.grafana import build_dashboards, interpolate, queries
from usersignals.dashboards.panels import MODEL, PLATFORM
from usersignals.dashboards.rules import (
    ALERT_SETTINGS_FILE,
    ALERTS_FILE,
    LOADER_RULES_FILE,
    RULES_FILE,
)
from usersignals.ingest.contract import Event
from usersignals.metrics.wellbeing import CATEGORIES
from usersignals.streams.exposition import LAG_BUCKETS
from usersignals.warehouse.db import connect
from usersignals.warehouse.layout import committed_offsets
from usersignals.warehouse.report import warehouse_report

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
N = 8

pytestmark = pytest.mark.usefixtures("prometheus_bin")  # skips, or fails under make test


def query(port: int, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": promql} | ({} if at is None else {"time": f"{at:.3f}"})
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(params)
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


# ---------------------------------------------------------------- every dashboard expression

Labels = tuple[tuple[str, str], ...]
Values = dict[Labels, float]


def dashboard_exprs(*, raw: bool = False) -> list[str]:
    """Every PromQL target of the four dashboards, each once: as Grafana sends it with the
    variables at All, or ``raw`` as the dashboards hold it."""
    exprs = [
        t["expr"] if raw else interpolate(t["expr"], (MODEL, PLATFORM), {})
        for board in build_dashboards().values()
        for _, t in queries(board)
        if "expr" in t
    ]
    return list(dict.fromkeys(exprs))


def values(result: list[dict[str, Any]]) -> Values:
    return {
        tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(
            r["value"][1]
        )
        for r in result
    }


def key(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


def all_rules(tmp_path: Path) -> Path:
    """The rule files (rules.yml, loader_rules.yml, alerts.yml and its settings) as one file,
    groups evaluated every second."""
    groups = [
        {**g, "interval": "1s"}
        for f in (RULES_FILE, LOADER_RULES_FILE, ALERTS_FILE, ALERT_SETTINGS_FILE)
        for g in yaml.safe_load(f.read_text(encoding="utf-8"))["groups"]
    ]
    path = tmp_path / "all_rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    return path


def wait_loaded(kafka: Kafka, produced: Any, timeout: float = 120) -> None:
    """Until the warehouse holds every partition up to the end produced."""
    want = {p: end - 1 for p, end in produced.ends.items() if end > 0}
    deadline = time.monotonic() + timeout
    while committed_offsets(kafka.settings.warehouse) != want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"committed {committed_offsets(kafka.settings.warehouse)}")
        time.sleep(0.5)


def lag_quantile(q: float, lags: list[float]) -> float:
    """histogram_quantile of lags that all fall in one bucket of LAG_BUCKETS: linear in it."""
    bounds = (0.0, *LAG_BUCKETS)
    (i,) = {next(n for n, b in enumerate(LAG_BUCKETS) if lag <= b) for lag in lags}
    return bounds[i] + (bounds[i + 1] - bounds[i]) * q


def wait_scraped(port: int, worker: WorkerProc, timeout: float = 60) -> None:
    """Until Prometheus has scraped the worker once (a rate needs a sample before)."""
    target = {key(instance=f"127.0.0.1:{worker.port}", job="usersignals"): 1.0}
    deadline = time.monotonic() + timeout
    while values(query(port, "up")) != target:
        if time.monotonic() > deadline:
            raise TimeoutError("prometheus has not scraped the worker")
        time.sleep(0.5)


def caught_up(kafka: Kafka, worker: WorkerProc, produced: Any) -> None:
    group = f"{kafka.settings.topic_prefix}-worker"
    topic = kafka.settings.events_topic
    wait_caught_up([worker], kafka.bootstrap, group, topic, produced.ends, N)


def wait_for(port: int, promql: str, want: Values, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while values(query(port, promql)) != want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{promql}: {values(query(port, promql))}, want {want}")
        time.sleep(0.5)


def test_every_dashboard_expression_against_a_real_worker(kafka: Kafka, tmp_path: Path) -> None:
    """Prometheus scrapes before any event is produced, and the input comes in two halves
    (the bad records in each), so every rate's window sees its counter grow; the held state,
    the recorded rows and the loader's series are exact."""
    wire = generate_wire(seed=5)
    bad = [(0, None, v) for v in BAD_RECORDS]
    topic = kafka.settings.events_topic
    with (
        running_worker(kafka.env(), tmp_path, loader=True) as worker,
        running_prometheus(PROMETHEUS, tmp_path, [worker.port], all_rules(tmp_path)) as port,
    ):
        wait_scraped(port, worker)
        records = batch_records(wire, N, 10)
        half = len(records) // 2
        produced = produce(kafka.bootstrap, topic, [*bad, *records[:half]])
        caught_up(kafka, worker, produced)
        # every reason's counter has a sample before the second half: its rate sees it grow
        seen = float(sum(produced.rejected().values()))
        wait_for(port, "sum(usersignals_rejects_seen_total)", {(): seen})
        produce(kafka.bootstrap, topic, [*bad, *records[half:]], produced)
        caught_up(kafka, worker, produced)
        processed_at = time.time()
        wait_loaded(kafka, produced)
        events = produced.events_in_log_order()
        kept = dedupe(events)
        history = warehouse_report(connect(kafka.settings.warehouse), history_period="week")
        report = oracle_report(events, produced.rejected())
        (start,) = values(query(port, "max(usersignals_wellbeing_week_start_timestamp_seconds)"))
        start_value = values(
            query(port, "max(usersignals_wellbeing_week_start_timestamp_seconds)")
        )[start]
        monday = datetime.fromtimestamp(start_value, UTC).date()
        expected = expectations(report, history, kept, produced, processed_at, monday)
        exprs = dashboard_exprs()
        assert sorted(expected) == sorted(exprs)  # every expression has its answer

        def read() -> dict[str, Values]:
            return {e: values(query(port, e)) for e in exprs}

        deadline = time.monotonic() + 90
        got = read()
        while not all(check(got[e]) for e, check in expected.items()):
            if time.monotonic() > deadline:
                break
            time.sleep(1)
            got = read()
        for expr, check in expected.items():
            assert check(got[expr]), (expr, got[expr], getattr(check, "want", None))
        # the model variable, as the Prometheus datasource interpolates it (a dot escaped
        # for the regex, and the backslash for the PromQL string): the rows of those models
        for chosen in (["m-3.5"], ["m-1", "m-3.5"], ["none"]):
            for template in dashboard_exprs(raw=True):
                if MODEL.promql not in template:
                    continue
                everything = got[interpolate(template, (MODEL, PLATFORM), {})]
                only = values(
                    query(port, interpolate(template, (MODEL, PLATFORM), {"model": chosen}))
                )
                if "ALERTS" in template:
                    assert only == everything == {(): 0.0}
                    continue
                assert only == {k: v for k, v in everything.items() if dict(k)["model"] in chosen}
                assert only or chosen == ["none"], (template, chosen)
        # the one expression of wall-clock time: at any moment, that moment minus the latest
        # commit the loader reported
        at = time.time()
        commit = values(query(port, "max(usersignals_loader_last_commit_timestamp_seconds)", at))
        since = "time() - max(usersignals_loader_last_commit_timestamp_seconds)"
        assert values(query(port, since, at)) == {(): pytest.approx(at - commit[()], abs=1e-3)}


class Equals:
    """A check: the result is exactly ``want`` (floats to 9 significant digits)."""

    def __init__(self, want: Values) -> None:
        self.want = want

    def __call__(self, got: Values) -> bool:
        return bool(got.keys() == self.want.keys() and got == pytest.approx(self.want, rel=1e-9))


class Positive:
    """A check for a rate of a process counter (its value depends on when it is evaluated):
    exactly the series ``labels``, each above 0. The counters themselves are exact (the test
    above and test_prometheus_rules)."""

    def __init__(self, *labels: Labels) -> None:
        self.want = {label: "> 0" for label in labels}

    def __call__(self, got: Values) -> bool:
        return bool(got.keys() == self.want.keys() and all(v > 0 for v in got.values()))


def expectations(
    report: dict[str, Any],
    history: dict[str, Any],
    kept: list[Event],
    produced: Any,
    processed_at: float,
    monday: date,
) -> dict[str, Callable[[Values], bool]]:
    """What each dashboard expression must give once the worker and its loader caught up."""
    last = report["active_users"][-1]
    newest = max(e.ts.date() for e in kept)
    week_ago = (newest - timedelta(days=6)).isoformat()

    def votes(rows: Iterable[dict[str, Any]]) -> Values:
        out: Counter[Labels] = Counter()
        for r in rows:
            model = r["model"] or "none"
            out[key(model=model, rating="up")] += r["thumbs_up"]
            out[key(model=model, rating="down")] += r["thumbs_down"]
        return {k: float(v) for k, v in out.items() if v}

    flags: Counter[Labels] = Counter()
    for r in report["risk_flags_daily"]:
        flags[key(category=r["category"] or "none", severity=r["severity"] or "none")] += r["flags"]
    # the wellbeing week the worker exports (the latest complete ISO week it holds whole,
    # Monday ``monday``), from the warehouse the loader wrote
    assert monday <= newest - timedelta(days=newest.weekday() + 7)
    week = [r for r in history["wellbeing_weekly"] if r["week"] == monday.isoformat()]
    assert week, "the generated wire holds a complete week"
    every = [r for r in week if r["model"] is None]
    flagged = {r["category"]: r["flagged_users"] for r in every}
    year, number, _ = monday.isocalendar()
    iso_week = f"{year}-W{number:02d}"
    per_model = [r for r in week if r["model"] is not None and r["active_users"]]
    watch = [r for r in report["flattery_watch"]]
    lags = [processed_at - e.ts.timestamp() for e in kept]
    rejected = produced.rejected()
    by_type = Counter(e.type for e in kept if e.type != "identify")
    partitions = [key(partition=str(p)) for p in range(N)]

    def at_1k(r: dict[str, Any]) -> float:
        return 1000 * r["risk_flags"] / r["active_users"]

    out: dict[str, Callable[[Values], bool]] = {
        'sum(usersignals_active_users{window="1d"})': Equals({(): last["dau"]}),
        'sum(usersignals_active_users{window="7d"})': Equals({(): last["wau"]}),
        'sum(usersignals_active_users{window="30d"})': Equals({(): last["mau"]}),
        "usersignals:stickiness": Equals({(): last["dau"] / last["mau"]}),
        "sum by (window) (usersignals_active_users)": Equals(
            {
                key(window="1d"): last["dau"],
                key(window="7d"): last["wau"],
                key(window="30d"): last["mau"],
            }
        ),
        'sum by (model) (usersignals_active_users_by_model{model=~".*"})': Equals(
            {key(model=m): v for m, v in active_by_model(kept).items()}
        ),
        'model_week:usersignals_flattery_thumbs_up_rate:this{model=~".*"}': Equals(
            {
                key(model=r["model"], week=r["week"]): r["thumbs_up"]
                / (r["thumbs_up"] + r["thumbs_down"])
                for r in watch
                if r["thumbs_up"] + r["thumbs_down"]
            }
        ),
        'model_week:usersignals_flattery_risk_flags_per_1k:this{model=~".*"}': Equals(
            {key(model=r["model"], week=r["week"]): at_1k(r) for r in watch if r["active_users"]}
        ),
        'model_week:usersignals_flattery_flagged{model=~".*"}': Equals(
            {
                key(model=r["model"], week=r["week"]): float(r["flagged"])
                for r in watch
                if r["active_users"]
            }
        ),
        'sum by (model, rating) (usersignals_feedback_votes_7d{model=~".*"})': Equals(
            votes(r for r in report["feedback_by_model"] if r["day"] >= week_ago)
        ),
        'sum by (model, rating) (usersignals_feedback_votes{model=~".*"})': Equals(
            votes(report["feedback_by_model"])
        ),
        "sum(usersignals_users_at_risk_weekly)": Equals(
            {(): report["users_at_risk_weekly"][-1]["users"]}
        ),
        'count(ALERTS{alertname="UsersignalsFlatteryRising", alertstate="firing", '
        'model=~".*"}) or vector(0)': Equals({(): 0}),  # for: 15m, and nothing rising
        "sum(usersignals_wellbeing_active_users)": Equals({(): every[0]["active_users"]}),
        # every category of the week, zeros included (the workers export each one)
        "week_category:usersignals_wellbeing_flagged_share:this_week": Equals(
            {
                key(category=c, week=iso_week): flagged.get(c, 0) / every[0]["active_users"]
                for c in CATEGORIES
            }
        ),
        "sum by (category) (usersignals_wellbeing_flagged_users)": Equals(
            {key(category=r["category"]): r["flagged_users"] for r in every}
        ),
        "sum by (category) (usersignals_wellbeing_flagged_users_high)": Equals(
            {key(category=r["category"]): r["flagged_users_high"] for r in every}
        ),
        'sum by (model, category) (usersignals_wellbeing_flagged_users_by_model{model=~".*"})': (
            Equals(
                {
                    key(model=r["model"], category=r["category"]): r["flagged_users"]
                    for r in per_model
                }
            )
        ),
        'sum by (model) (usersignals_risk_flags_by_model{model=~".*"})': Equals(
            {key(model=m): v for m, v in flags_by_model(report).items()}
            | ({key(model="none"): none} if (none := none_flags(report, kept)) else {})
        ),
        "sum by (category, severity) (usersignals_risk_flags)": Equals(
            {k: float(v) for k, v in flags.items()}
        ),
        "sum(rate(usersignals_event_time_lag_seconds_count[5m]))": Positive(()),
        "sum(rate(usersignals_rejects_seen_total[5m]))": Positive(()),
        "sum(usersignals_consumer_lag)": Equals({(): 0}),
        "sum(usersignals_loader_lag)": Equals({(): 0}),
        "sum(usersignals_loader_up)": Equals({(): 1}),
        "time() - max(usersignals_loader_last_commit_timestamp_seconds)": Positive(()),
        "sum(rate(usersignals_records_processed_total[5m]))": Positive(()),
        "sum by (reason) (rate(usersignals_rejects_seen_total[5m]))": Positive(
            *(key(reason=r) for r in rejected)
        ),
        "sum by (reason) (usersignals_events_rejected)": Equals(
            {key(reason=r): n for r, n in rejected.items()}
        ),
        "sum by (type) (usersignals_events)": Equals({key(type=t): n for t, n in by_type.items()}),
        "sum by (partition) (usersignals_consumer_lag)": Equals(dict.fromkeys(partitions, 0)),
        "sum(usersignals_late_events)": Equals({(): 0}),
        "sum by (partition) (usersignals_loader_lag)": Equals(dict.fromkeys(partitions, 0)),
        "sum(usersignals_loader_restarts_total)": Equals({(): 0}),
        "sum by (kind) (usersignals_loader_errors_total)": Equals({}),
    }
    for q in (0.5, 0.9, 0.99):
        expr = (
            f"histogram_quantile({q}, sum by (le) "
            "(rate(usersignals_event_time_lag_seconds_bucket[5m])))"
        )
        out[expr] = Equals({(): lag_quantile(q, lags)})
    return out


def none_flags(report: dict[str, Any], kept: list[Event]) -> float:
    """Risk flags of no model (after attribution): all flags less those of a model."""
    total = sum(r["flags"] for r in report["risk_flags_daily"])
    return float(total - sum(flags_by_model(report).values()))
