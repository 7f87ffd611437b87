"""The Prometheus rules: promtool accepts them and their unit tests pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.dashboards.flattery_scenario import definition_rows, rules_test_yaml
from usersignals.dashboards.rules import (
    ALERTS,
    LIVE_SERIES,
    LOADER_ALERTS,
    LOADER_RULES_FILE,
    LOADER_RULES_TEST_FILE,
    RECORDED_SERIES,
    RULES_FILE,
    RULES_TEST_FILE,
    RulesError,
    promtool_check,
    promtool_test,
)


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
