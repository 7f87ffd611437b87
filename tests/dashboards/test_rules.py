"""The Prometheus rules: promtool accepts them and their unit tests pass."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboards.flattery_scenario import definition_rows, rules_test_yaml
from usersignals.dashboards.rules import (
    ALERT_DASHBOARDS,
    ALERT_LIVE_SERIES,
    ALERT_RECORDED_SERIES,
    ALERT_SETTINGS_FILE,
    ALERTS,
    ALERTS_FILE,
    ALERTS_TEST_FILE,
    ALERTS_UNSET_TEST_FILE,
    LIVE_SERIES,
    LOADER_ALERTS,
    LOADER_RULES_FILE,
    LOADER_RULES_TEST_FILE,
    RECORDED_SERIES,
    RULES_FILE,
    RULES_TEST_FILE,
    WATCH_ALERTS,
    WORKER_JOB,
    AlertSettings,
    RulesError,
    alert_settings_yaml,
    promtool_check,
    promtool_test,
)
from usersignals.errors import ConfigError

PROMETHEUS_YML = RULES_FILE.with_name("prometheus.yml")


@pytest.mark.usefixtures("promtool")
def test_promtool_check_rules() -> None:
    assert promtool_check() == f"Checking {RULES_FILE}\n  SUCCESS: 19 rules found\n\n"


@pytest.mark.usefixtures("promtool")
def test_promtool_unit_tests_pass() -> None:
    assert promtool_test() == f"Unit Testing:  {RULES_TEST_FILE}\n  SUCCESS\n\n"


def test_the_unit_tests_expect_the_definition() -> None:
    assert RULES_TEST_FILE.read_text(encoding="utf-8") == rules_test_yaml()


def test_the_scenario_flags_warm_only() -> None:
    assert [(r["model"], r["week"]) for r in definition_rows() if r["flagged"]] == [
        ("warm", "2026-W11")
    ]


def test_rules_read_exactly_the_live_series() -> None:
    text = RULES_FILE.read_text(encoding="utf-8")
    rules = text.split("groups:", 1)[1]
    read = set(re.findall(r"(?<![:\w])(usersignals_[a-z0-9_]+)(?![\w:])", rules))
    assert read == {s.name for s in LIVE_SERIES}
    assert set(re.findall(r"record: (\S+)", rules)) == set(RECORDED_SERIES)
    assert re.findall(r"alert: (\S+)", rules) == list(ALERTS)


@pytest.mark.usefixtures("promtool")
def test_a_failing_rules_test_is_an_error(tmp_path: Path) -> None:
    broken = tmp_path / "rules_test.yml"
    broken.write_text(
        RULES_TEST_FILE.read_text(encoding="utf-8")
        .replace("  - rules.yml", f"  - {RULES_FILE}")
        .replace("value: 0.625", "value: 0.626"),
        encoding="utf-8",
    )
    with pytest.raises(RulesError) as exc:
        promtool_test(broken)
    assert exc.value.command == ("promtool", "test", "rules", str(broken))
    assert "FAILED" in exc.value.output
    assert 'model="steady", week="2026-W11"} 6.26E-01' in exc.value.output


def test_a_missing_promtool_is_an_error() -> None:
    with pytest.raises(RulesError) as exc:
        promtool_check(promtool="no-such-promtool")
    assert str(exc.value) == (
        f"'no-such-promtool check rules {RULES_FILE}' failed: "
        "'no-such-promtool' not found (install Debian's prometheus)"
    )


@pytest.mark.usefixtures("promtool")
def test_the_loader_alerts_pass_their_promtool_tests() -> None:
    assert promtool_check(LOADER_RULES_FILE) == (
        f"Checking {LOADER_RULES_FILE}\n  SUCCESS: 2 rules found\n\n"
    )
    assert promtool_test(LOADER_RULES_TEST_FILE) == (
        f"Unit Testing:  {LOADER_RULES_TEST_FILE}\n  SUCCESS\n\n"
    )
    text = LOADER_RULES_FILE.read_text(encoding="utf-8")
    assert re.findall(r"alert: (\S+)", text) == list(LOADER_ALERTS)
    read = set(re.findall(r"(?<![:\w])(usersignals_[a-z0-9_]+)(?![\w:])", text.split("groups:")[1]))
    assert read == {  # what the worker's loader supervisor exports
        "usersignals_loader_up",
        "usersignals_loader_lag",
        "usersignals_loader_last_commit_timestamp_seconds",
    }


@pytest.mark.usefixtures("promtool")
def test_a_loader_that_commits_again_is_not_stalled(tmp_path: Path) -> None:
    rules = tmp_path / "loader_rules.yml"
    rules.write_text(LOADER_RULES_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    case = tmp_path / "loader_rules_test.yml"
    case.write_text(
        LOADER_RULES_TEST_FILE.read_text(encoding="utf-8").replace(
            """last_commit_timestamp_seconds{instance="w1"}'
        values: '0x30'""",
            """last_commit_timestamp_seconds{instance="w1"}'
        values: '0+60x30'""",
        ),
        encoding="utf-8",
    )
    with pytest.raises(RulesError) as exc:  # w1 commits each minute: the expected alert is not
        promtool_test(case)
    assert "UsersignalsLoaderStalled" in str(exc.value)


# ---------------------------------------------------------------- alerts.yml and its settings


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alerts(path: Path) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in _load(path)["groups"] for r in g["rules"] if "alert" in r}


@pytest.mark.usefixtures("promtool")
def test_the_alerts_pass_their_promtool_tests() -> None:
    assert promtool_check(ALERTS_FILE) == f"Checking {ALERTS_FILE}\n  SUCCESS: 17 rules found\n\n"
    assert promtool_check(ALERT_SETTINGS_FILE) == (
        f"Checking {ALERT_SETTINGS_FILE}\n  SUCCESS: 7 rules found\n\n"
    )
    assert promtool_test(ALERTS_TEST_FILE) == f"Unit Testing:  {ALERTS_TEST_FILE}\n  SUCCESS\n\n"
    assert promtool_test(ALERTS_UNSET_TEST_FILE) == (
        f"Unit Testing:  {ALERTS_UNSET_TEST_FILE}\n  SUCCESS\n\n"
    )


def test_the_alerts_read_exactly_their_series() -> None:
    text = ALERTS_FILE.read_text(encoding="utf-8").split("groups:", 1)[1]
    read = set(re.findall(r"(?<![:\w])(usersignals_[a-z0-9_]+)(?![\w:])", text))
    assert read == set(ALERT_LIVE_SERIES)
    assert re.findall(r"record: (\S+)", text) == list(ALERT_RECORDED_SERIES)
    assert re.findall(r"alert: (\S+)", text) == list(WATCH_ALERTS)
    settings = set(re.findall(r"usersignals:alert_[a-z0-9_]+", text))
    assert settings == {f"usersignals:alert_{name}" for name in vars(AlertSettings())}
    assert set(re.findall(r'job="([^"]+)"', text)) == {WORKER_JOB}


def test_the_settings_file_is_the_generators() -> None:
    assert ALERT_SETTINGS_FILE.read_text(encoding="utf-8") == alert_settings_yaml()
    rules = _load(ALERT_SETTINGS_FILE)["groups"][0]["rules"]
    assert {r["record"]: r["expr"] for r in rules} == {
        "usersignals:alert_risk_spike_factor": "vector(2.0)",
        "usersignals:alert_risk_spike_min_users": "vector(10)",
        "usersignals:alert_users_at_risk_max": "vector(50)",
        "usersignals:alert_dead_letter_ratio_max": "vector(0.05)",
        "usersignals:alert_dead_letter_min": "vector(10)",
        "usersignals:alert_consumer_lag_min": "vector(1000)",
        "usersignals:alert_event_time_lag_p99_max_seconds": "vector(900.0)",
    }
    chosen = AlertSettings(risk_spike_factor=1.5, consumer_lag_min=0)
    assert "usersignals:alert_risk_spike_factor\n        expr: vector(1.5)\n" in (
        alert_settings_yaml(chosen)
    )


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("risk_spike_factor", 0.0, "must be above 0"),
        ("dead_letter_ratio_max", -0.1, "must be above 0"),
        ("risk_spike_min_users", -1, "must be 0 or more"),
        ("users_at_risk_max", True, "must be a number"),
        ("event_time_lag_p99_max_seconds", float("nan"), "must be a number"),
        (
            "event_time_lag_p99_max_seconds",
            1000.0,
            "must be a bound of the event-time lag histogram: 1.0, 5.0, 15.0, 60.0, 300.0, "
            "900.0, 3600.0, 21600.0, 86400.0, 604800.0, 3024000.0, 31536000.0",
        ),
    ],
)
def test_unusable_settings_are_refused(name: str, value: object, reason: str) -> None:
    with pytest.raises(ConfigError) as exc:
        AlertSettings(**{name: value})  # type: ignore[arg-type]
    assert (exc.value.name, exc.value.reason) == (name, reason)


def _run_with(tmp_path: Path, settings: AlertSettings) -> str:
    """alerts_test.yml over alerts.yml with ``settings``: promtool's output (SUCCESS or not)."""
    for path in (ALERTS_FILE, ALERTS_TEST_FILE):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / ALERT_SETTINGS_FILE.name).write_text(alert_settings_yaml(settings), "utf-8")
    try:
        return promtool_test(tmp_path / ALERTS_TEST_FILE.name)
    except RulesError as exc:
        return exc.output


@pytest.mark.usefixtures("promtool")
def test_the_settings_decide_the_risk_spike(tmp_path: Path) -> None:
    # self_harm's share is 4 times the trailing weeks' with 20 users: a factor of 5, or a
    # minimum of 21 users, and it does not fire; at 1.4 mania (1.5 times) fires too
    for settings in (AlertSettings(risk_spike_factor=5.0), AlertSettings(risk_spike_min_users=21)):
        out = _run_with(tmp_path, settings)
        failed = re.findall(r"alertname: (\w+), time: (\w+),", out)
        assert failed == [("UsersignalsRiskFlagSpike", "30m")], out
        assert out.rstrip().endswith("got:[]"), out
    out = _run_with(tmp_path, AlertSettings(risk_spike_factor=1.4))
    assert re.findall(r"alertname: (\w+), time: (\w+),", out) == [
        ("UsersignalsRiskFlagSpike", "30m")
    ]
    got = out.split("got:", 1)[1]
    assert re.findall(r'category="(\w+)"', got) == ["mania", "self_harm"]
    assert "SUCCESS" in _run_with(tmp_path, AlertSettings(risk_spike_factor=3.9))


@pytest.mark.usefixtures("promtool")
def test_the_settings_decide_the_pipeline_alerts(tmp_path: Path) -> None:
    # 5.5 % dead-lettered is under 6 %; 11000 records wait, under 20000; p99 19028 s < 6 h
    out = _run_with(
        tmp_path,
        AlertSettings(
            dead_letter_ratio_max=0.06,
            consumer_lag_min=20000,
            event_time_lag_p99_max_seconds=21600.0,
            users_at_risk_max=55,
        ),
    )
    assert sorted(re.findall(r"alertname: (\w+), time: (\w+),", out)) == [
        ("UsersignalsConsumerLagGrowing", "50m"),
        ("UsersignalsDeadLetters", "45m"),
        ("UsersignalsEventTimeLag", "45m"),
        ("UsersignalsUsersAtRisk", "50m"),
    ], out
    assert out.count("got:[]") == 4, out


def _cases(*paths: Path) -> dict[str, set[bool]]:
    """{alert: {whether it is expected to fire}} over the alert_rule_test cases of ``paths``."""
    seen: dict[str, set[bool]] = {}
    for path in paths:
        for test in _load(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                seen.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    return seen


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    seen = _cases(RULES_TEST_FILE, LOADER_RULES_TEST_FILE, ALERTS_TEST_FILE, ALERTS_UNSET_TEST_FILE)
    assert seen == {name: {True, False} for name in [*ALERTS, *LOADER_ALERTS, *WATCH_ALERTS]}


def test_every_alert_says_what_it_means_and_where_to_look() -> None:
    alerts = {
        **_alerts(RULES_FILE),
        **_alerts(LOADER_RULES_FILE),
        **_alerts(ALERTS_FILE),
    }
    assert list(alerts) == [*ALERTS, *LOADER_ALERTS, *WATCH_ALERTS]
    assert set(ALERT_DASHBOARDS) == set(alerts)
    uids = {"usersignals-engagement", "usersignals-feedback", "usersignals-wellbeing"}
    for name, rule in alerts.items():
        notes = rule["annotations"]
        assert set(notes) == {"summary", "description", "dashboard"}, name
        assert notes["dashboard"] == ALERT_DASHBOARDS[name]
        assert notes["dashboard"].removeprefix("/d/") in {*uids, "usersignals-pipeline"}
        assert len(notes["description"]) > 200, name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert "user_id" not in rule["expr"], name


def test_prometheus_loads_every_rule_file_and_the_worker_job() -> None:
    config = _load(PROMETHEUS_YML)
    assert config["rule_files"] == [
        RULES_FILE.name,
        LOADER_RULES_FILE.name,
        ALERTS_FILE.name,
        ALERT_SETTINGS_FILE.name,
    ]
    assert [job["job_name"] for job in config["scrape_configs"]] == [WORKER_JOB]
    assert _load(ALERTS_TEST_FILE)["rule_files"] == [ALERT_SETTINGS_FILE.name, ALERTS_FILE.name]
    assert _load(ALERTS_UNSET_TEST_FILE)["rule_files"] == [ALERTS_FILE.name]
