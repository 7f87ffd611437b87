"""Prometheus rules of the live stickiness and flattery watch, and what they need from workers.

The rules themselves live in ``prometheus/rules.yml`` (loaded by ``prometheus/prometheus.yml``)
with their unit tests in ``prometheus/rules_test.yml``. This module names those files, lists
the live series the rules read (the contract with the worker's ``/metrics``), and runs
``promtool`` on them so that a deployment can check its rules the way the test suite does.
The alerts on the warehouse loader (down, or stalled with events waiting) are a file of their
own, ``prometheus/loader_rules.yml``, tested by ``prometheus/loader_rules_test.yml``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from usersignals.errors import RulesError

__all__ = [
    "ALERTS",
    "LIVE_SERIES",
    "LOADER_ALERTS",
    "LOADER_RULES_FILE",
    "LOADER_RULES_TEST_FILE",
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
LOADER_RULES_FILE = Path(__file__).with_name("prometheus") / "loader_rules.yml"
LOADER_RULES_TEST_FILE = Path(__file__).with_name("prometheus") / "loader_rules_test.yml"


@dataclass(frozen=True)
class LiveSeries:
    """One series the rules read from every worker's ``/metrics``."""

    name: str
    kind: str
    labels: tuple[str, ...]
    meaning: str


_COUNTS = "per model and ISO week: of the week itself (of=this) or of the week before (of=last)"

LIVE_SERIES: tuple[LiveSeries, ...] = (
    LiveSeries(
        "usersignals_flattery_votes",
        "gauge",
        ("model", "week", "of", "rating"),
        f"latest thumbs votes (metrics.md rule) with rating up or down, {_COUNTS}",
    ),
    LiveSeries(
        "usersignals_flattery_active_users",
        "gauge",
        ("model", "week", "of"),
        f"distinct users with an event carrying the model, {_COUNTS}",
    ),
    LiveSeries(
        "usersignals_flattery_risk_flags",
        "gauge",
        ("model", "week", "of"),
        f"risk_flag events carrying the model, each event_id once, {_COUNTS}",
    ),
    LiveSeries(
        "usersignals_flattery_week_start_timestamp_seconds",
        "gauge",
        ("week",),
        "midnight UTC of the Monday of each ISO week exported",
    ),
    LiveSeries(
        "usersignals_first_event_day_timestamp_seconds",
        "gauge",
        (),
        "midnight UTC of the oldest event day the worker holds",
    ),
    LiveSeries(
        "usersignals_newest_event_day_timestamp_seconds",
        "gauge",
        (),
        "midnight UTC of the newest event day the worker holds (0: none)",
    ),
    LiveSeries(
        "usersignals_flattery_z_critical",
        "gauge",
        (),
        "the z both one-sided tests must exceed (USERSIGNALS_FLATTERY_LEVEL)",
    ),
    LiveSeries(
        "usersignals_flattery_min_votes",
        "gauge",
        (),
        "votes each week needs (USERSIGNALS_FLATTERY_MIN_VOTES)",
    ),
    LiveSeries(
        "usersignals_flattery_min_active_users",
        "gauge",
        (),
        "active users each week needs (USERSIGNALS_FLATTERY_MIN_USERS)",
    ),
    LiveSeries(
        "usersignals_active_users",
        "gauge",
        ("window",),
        "distinct users active in the window (1d, 7d, 30d) ending on the newest event day",
    ),
)
"""Series the rules read. Each worker exposes its own partitions' counts; the rules sum them
and apply the definitions' arithmetic: stickiness as DAU / MAU of the sums, and the tests of
:mod:`usersignals.metrics.flattery` (rules.yml says why)."""

RECORDED_SERIES = (
    "usersignals:stickiness",
    "model_week:usersignals_flattery_thumbs_up:this",
    "model_week:usersignals_flattery_votes:this",
    "model_week:usersignals_flattery_thumbs_up:last",
    "model_week:usersignals_flattery_votes:last",
    "model_week:usersignals_flattery_active_users:this",
    "model_week:usersignals_flattery_active_users:last",
    "model_week:usersignals_flattery_risk_flags:this",
    "model_week:usersignals_flattery_risk_flags:last",
    "model_week:usersignals_flattery_thumbs_up_rate:this",
    "model_week:usersignals_flattery_risk_flags_per_1k:this",
    "model_week:usersignals_flattery_thumbs_up_pooled",
    "model_week:usersignals_flattery_thumbs_up_z",
    "model_week:usersignals_flattery_users_share",
    "model_week:usersignals_flattery_risk_flags:both",
    "model_week:usersignals_flattery_risk_z",
    "usersignals:flattery_current_week_start_timestamp_seconds",
    "model_week:usersignals_flattery_flagged",
)
"""Series the recording rules write: stickiness over all workers, and the flattery watch rows per
(model, week), for the alert and the dashboards."""

ALERTS = ("UsersignalsFlatteryRising",)

LOADER_ALERTS = ("UsersignalsLoaderDown", "UsersignalsLoaderStalled")
"""Alerts of ``loader_rules.yml``: no loader running for 5 minutes; or events waiting and no
commit for 10 minutes (for 5 more)."""


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
