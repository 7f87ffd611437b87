"""The rules' promtool scenarios, with their expectations from the one definition.

``dashboards/prometheus/rules_test.yml`` is :func:`rules_test_yaml` (a test keeps them equal;
``python -m tests.dashboards.flattery_scenario`` rewrites the file): the input series are the
counts two workers would export, and every expected sample is what
:mod:`usersignals.metrics.flattery` says of the summed counts. A second scenario checks the
stickiness rule: DAU / MAU of the summed gauges (metrics.md), 0 once MAU is 0 (the
definition's value), and no sample once the gauges are gone.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime

import yaml

from usersignals.dashboards.rules import RULES_FILE, RULES_TEST_FILE
from usersignals.metrics.flattery import (
    FlatteryParams,
    WeekCounts,
    previous_week,
    rise,
    watch_rows,
    week_monday,
    z_critical,
)

FIRST = date(2026, 3, 2)  # Monday of 2026-W10
NEWEST = date(2026, 3, 17)  # Tuesday of 2026-W12: W10 and W11 are complete
WEEKS = ("2026-W10", "2026-W11", "2026-W12", "2026-W13")
SAMPLES = 40  # one a minute
EVAL = "30m"

# (model, week): per worker (up, down, active users, risk flags); users are disjoint across
# the two workers, so every count adds up
COUNTS: dict[tuple[str, str], tuple[tuple[int, int, int, int], ...]] = {
    # both rise clearly: flagged in W11
    ("warm", "2026-W10"): ((60, 40, 120, 6), (40, 60, 80, 4)),
    ("warm", "2026-W11"): ((90, 30, 120, 18), (60, 20, 80, 12)),
    ("warm", "2026-W12"): ((6, 3, 12, 1), (4, 2, 8, 0)),
    # a small rise of both: not significant
    ("steady", "2026-W10"): ((120, 80, 200, 10), (0, 0, 0, 0)),
    ("steady", "2026-W11"): ((125, 75, 200, 12), (0, 0, 0, 0)),
    # both rise, but too few votes and users
    ("small", "2026-W10"): ((2, 3, 5, 0), (3, 2, 5, 0)),
    ("small", "2026-W11"): ((5, 0, 5, 3), (5, 0, 5, 2)),
}
MODELS = ("small", "steady", "warm")

# per worker: (DAU, MAU) while users are active; both 0 afterwards. Stickiness over all users
# is 40 / 210, not the mean of the workers' own ratios (0.2 and 1/6)
ACTIVE = {"w1": (30, 150), "w2": (10, 60)}
ACTIVE_UNTIL = 20  # minutes: the gauges are 0 from minute 21, gone after minute 41


def _midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def summed(model: str, week: str) -> WeekCounts:
    parts = COUNTS.get((model, week), ())
    up, down, users, flags = (sum(p[i] for p in parts) for i in range(4))
    return WeekCounts(model, week, up, down, users, flags, 0, max(users, 1))


def definition_rows() -> list[dict[str, object]]:
    cells = [summed(m, w) for m in MODELS for w in WEEKS]
    return watch_rows(cells, (FIRST, NEWEST), FlatteryParams())


def _series(name: str, labels: dict[str, str], value: float) -> list[str]:
    body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return [f"      - series: '{name}{{{body}}}'", f"        values: '{value!r}x{SAMPLES}'"]


def _input() -> list[str]:
    lines: list[str] = []
    for i, instance in enumerate(("w1", "w2")):
        lines += _series(
            "usersignals_first_event_day_timestamp_seconds",
            {"instance": instance},
            _midnight(FIRST),
        )
        lines += _series(
            "usersignals_newest_event_day_timestamp_seconds",
            {"instance": instance},
            _midnight(NEWEST) if i == 0 else _midnight(date(2026, 3, 16)),
        )
        for name, value in (
            ("usersignals_flattery_z_critical", z_critical(0.05)),
            ("usersignals_flattery_min_votes", 30),
            ("usersignals_flattery_min_active_users", 30),
        ):
            lines += _series(name, {"instance": instance}, value)
        for week in WEEKS:
            lines += _series(
                "usersignals_flattery_week_start_timestamp_seconds",
                {"week": week, "instance": instance},
                _midnight(week_monday(week)),
            )
        for model in MODELS:
            for week in WEEKS:
                for of, key in (("this", week), ("last", previous_week(week))):
                    parts = COUNTS.get((model, key), ())
                    up, down, users, flags = parts[i] if parts else (0, 0, 0, 0)
                    base = {"model": model, "week": week, "of": of, "instance": instance}
                    lines += _series("usersignals_flattery_votes", {**base, "rating": "up"}, up)
                    lines += _series("usersignals_flattery_votes", {**base, "rating": "down"}, down)
                    lines += _series("usersignals_flattery_active_users", base, users)
                    lines += _series("usersignals_flattery_risk_flags", base, flags)
    return lines


def _expect(expr: str, samples: list[tuple[dict[str, str], float]], at: str = EVAL) -> list[str]:
    lines = [f"      - expr: {expr}", f"        eval_time: {at}"]
    if not samples:
        return [*lines, "        exp_samples: []"]
    lines.append("        exp_samples:")
    for labels, value in samples:
        body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
        lines += [f"          - labels: '{expr}{{{body}}}'", f"            value: {value!r}"]
    return lines


def _stickiness_test() -> list[str]:
    lines = ["  - interval: 1m", "    input_series:"]
    for instance, counts in ACTIVE.items():
        for window, value in zip(("1d", "30d"), counts, strict=True):
            lines += [
                f'      - series: \'usersignals_active_users{{window="{window}", '
                f'instance="{instance}"}}\'',
                f"        values: '{value}x{ACTIVE_UNTIL} 0x{ACTIVE_UNTIL}'",
            ]
    dau, mau = (sum(c[i] for c in ACTIVE.values()) for i in range(2))
    return [
        *lines,
        "",
        "    promql_expr_test:",
        *_expect("usersignals:stickiness", [({}, dau / mau)], at="10m"),
        *_expect("usersignals:stickiness", [({}, 0.0)], at="30m"),
        *_expect("usersignals:stickiness", [], at="50m"),
    ]


def rules_test_yaml() -> str:
    rows = definition_rows()
    flagged, rates, per_1k, z_up, z_risk = [], [], [], [], []
    for row in rows:
        model, week = str(row["model"]), str(row["week"])
        key = {"model": model, "week": week}
        flagged.append((key, 1 if row["flagged"] else 0))
        this = summed(model, week)
        if this.thumbs_up + this.thumbs_down:
            rates.append((key, this.thumbs_up / (this.thumbs_up + this.thumbs_down)))
        per_1k.append((key, 1000 * this.risk_flags / this.active_users))
        tests = rise(this, summed(model, previous_week(week)))
        if tests.z_thumbs_up is not None:
            z_up.append((key, tests.z_thumbs_up))
        if tests.z_risk is not None:
            z_risk.append((key, tests.z_risk))
    alerts = [r for r in rows if r["flagged"] and r["week"] == "2026-W11"]
    lines = [
        "# promtool unit tests of rules.yml (tests/dashboards/test_rules.py runs them and checks",
        "# that this file is tests/dashboards/flattery_scenario.py's: regenerate it with",
        "#   python -m tests.dashboards.flattery_scenario",
        "# ). Two workers export the counts of three model versions for ISO weeks 2026-W10 to",
        "# W13; the newest event day is Tuesday 2026-03-17 (W12), the first Monday 2026-03-02, so",
        "# W10 and W11 are complete. warm rises clearly (flagged in W11: the alert), steady a",
        "# little (not significant), small a lot on too few votes. Every expected sample is what",
        "# usersignals.metrics.flattery gives for the summed counts. The second test: stickiness",
        "# of two workers' DAU and MAU gauges: their sums' ratio, 0 once MAU is 0, none without.",
        "rule_files:",
        "  - rules.yml",
        "",
        "evaluation_interval: 1m",
        "",
        "tests:",
        "  - interval: 1m",
        "    input_series:",
        *_input(),
        "",
        "    promql_expr_test:",
        *_expect("model_week:usersignals_flattery_flagged", flagged),
        *_expect("model_week:usersignals_flattery_thumbs_up_rate:this", rates),
        *_expect("model_week:usersignals_flattery_risk_flags_per_1k:this", per_1k),
        *_expect("model_week:usersignals_flattery_thumbs_up_z", z_up),
        *_expect("model_week:usersignals_flattery_risk_z", z_risk),
        *_expect(
            "usersignals:flattery_current_week_start_timestamp_seconds",
            [({}, _midnight(week_monday("2026-W12")))],
        ),
        "",
        "    alert_rule_test:",
        "      - alertname: UsersignalsFlatteryRising",
        "        eval_time: 10m",
        "        exp_alerts: []",
        "      - alertname: UsersignalsFlatteryRising",
        f"        eval_time: {EVAL}",
        "        exp_alerts:" if alerts else "        exp_alerts: []",
    ]
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    (alert,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert")]
    for row in alerts:
        lines += [
            "          - exp_labels:",
            f"              model: {row['model']}",
            f"              week: {row['week']}",
            "              severity: warning",
            "            exp_annotations:",
        ]
        for name, text in alert["annotations"].items():
            filled = text.replace("{{ $labels.model }}", str(row["model"]))
            filled = filled.replace("{{ $labels.week }}", str(row["week"]))
            lines.append(f"              {name}: {json.dumps(filled)}")
    lines += ["", *_stickiness_test()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    RULES_TEST_FILE.write_text(rules_test_yaml(), encoding="utf-8")
    sys.stdout.write(f"wrote {RULES_TEST_FILE}\n")
