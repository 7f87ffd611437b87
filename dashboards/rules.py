"""Prometheus rules of the live flattery watch, and what they need from the stream workers.

The rules themselves live in ``prometheus/rules.yml`` (loaded by ``prometheus/prometheus.yml``)
with their unit tests in ``prometheus/rules_test.yml``. This module names those files, lists
the live series the rules read (the contract with the worker's ``/metrics``), and runs
``promtool`` on them so that a deployment can check its rules the way the test suite does.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from usersignals.config import UsersignalsError

__all__ = [
    "ALERTS",
    "LIVE_SERIES",
    "RECORDED_SERIES",
    "RULES_FILE",
    "RULES_TEST_FILE",
    "LiveSeries",
    "RulesError",
    "promtool_check",
    "promtool_test",
]

RULES_FILE = Path(__file__).with_name("prometheus") / "rules.yml"
RULES_TEST_FILE = Path(__file__).with_name("prometheus") / "rules_test.yml"


@dataclass(frozen=True)
class LiveSeries:
    """One series the rules read from every worker's ``/metrics``."""

    name: str
    kind: str
    labels: tuple[str, ...]
    meaning: str


LIVE_SERIES: tuple[LiveSeries, ...] = (
    LiveSeries(
        "usersignals_feedback_votes_7d",
        "gauge",
        ("model", "rating"),
        'latest votes (metrics.md rule) with rating="up" or "down" whose day is in the '
        "trailing 7 event days, per model",
    ),
    LiveSeries(
        "usersignals_active_users_by_model",
        "gauge",
        ("model",),
        "distinct users with an event carrying the model in the trailing 7 event days",
    ),
    LiveSeries(
        "usersignals_risk_flags_by_model_total",
        "counter",
        ("model",),
        "risk_flag events carrying the model, each event_id once",
    ),
)
"""Series the rules read. Each worker exposes its own partitions; the rules sum over them."""

RECORDED_SERIES = (
    "model:usersignals_thumbs_up_rate:7d",
    "model:usersignals_risk_flags:increase7d",
    "model:usersignals_risk_flags_per_1k:7d",
)
"""Series the recording rules write (for dashboards)."""

ALERTS = ("UsersignalsFlatteryRising",)


class RulesError(UsersignalsError):
    """``promtool`` found the rules broken, failed their tests, or is not installed."""

    def __init__(self, command: tuple[str, ...], output: str) -> None:
        self.command = command
        self.output = output
        super().__init__(f"{' '.join(command)!r} failed: {output.strip()}")


def _promtool(promtool: str, *args: str) -> str:
    exe = shutil.which(promtool)
    command = (promtool, *args)
    if exe is None:
        raise RulesError(command, f"{promtool!r} not found (install Debian's prometheus)")
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RulesError(command, output)
    return output


def promtool_check(path: Path = RULES_FILE, *, promtool: str = "promtool") -> str:
    """``promtool check rules``: syntax and PromQL of a rules file; returns its output.

    Raises:
        RulesError: The rules are invalid or promtool is missing.
    """
    return _promtool(promtool, "check", "rules", str(path))


def promtool_test(path: Path = RULES_TEST_FILE, *, promtool: str = "promtool") -> str:
    """``promtool test rules``: the unit tests of the rules; returns its output.

    Raises:
        RulesError: A test failed or promtool is missing.
    """
    return _promtool(promtool, "test", "rules", str(path))
