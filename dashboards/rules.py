"""Prometheus rules of the live stickiness and flattery watch, and what they need from workers.

The rules themselves live in ``prometheus/rules.yml`` (loaded by ``prometheus/prometheus.yml``)
with their unit tests in ``prometheus/rules_test.yml``. This module names those files, lists
the live series the rules read (the contract with the worker's ``/metrics``), and runs
``promtool`` on them so that a deployment can check its rules the way the test suite does.
The alerts on the warehouse loader (down, or stalled with events waiting) are a file of their
own, ``prometheus/loader_rules.yml``, tested by ``prometheus/loader_rules_test.yml``.

The other alerts (risk-flag spike, users at risk, dead letters, consumer lag, event-time lag,
worker down; docs/alerts.md is their runbook) are ``prometheus/alerts.yml``. Their thresholds
are recording rules of constants, ``prometheus/alert_settings.yml``: :class:`AlertSettings`
names them with their defaults and :func:`alert_settings_yaml` writes the file, so that a
deployment sets them in one place that ``promtool`` checks (Prometheus rules have no
variables). ``prometheus/alerts_test.yml`` tests the alerts with the default settings,
``prometheus/alerts_unset_test.yml`` what happens without them.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path

from usersignals.errors import ConfigError, RulesError
from usersignals.streams.exposition import LAG_BUCKETS

__all__ = [
    "ALERTS",
    "ALERTS_FILE",
    "ALERTS_TEST_FILE",
    "ALERTS_UNSET_TEST_FILE",
    "ALERT_DASHBOARDS",
    "ALERT_LIVE_SERIES",
    "ALERT_RECORDED_SERIES",
    "ALERT_SETTINGS_FILE",
    "LIVE_SERIES",
    "LOADER_ALERTS",
    "LOADER_RULES_FILE",
    "LOADER_RULES_TEST_FILE",
    "RECORDED_SERIES",
    "RULES_FILE",
    "RULES_TEST_FILE",
    "WATCH_ALERTS",
    "WORKER_JOB",
    "AlertSettings",
    "LiveSeries",
    "RulesError",
    "alert_settings_yaml",
    "promtool_check",
    "promtool_test",
]

RULES_FILE = Path(__file__).with_name("prometheus") / "rules.yml"
RULES_TEST_FILE = Path(__file__).with_name("prometheus") / "rules_test.yml"
LOADER_RULES_FILE = Path(__file__).with_name("prometheus") / "loader_rules.yml"
LOADER_RULES_TEST_FILE = Path(__file__).with_name("prometheus") / "loader_rules_test.yml"
ALERTS_FILE = Path(__file__).with_name("prometheus") / "alerts.yml"
ALERTS_TEST_FILE = Path(__file__).with_name("prometheus") / "alerts_test.yml"
ALERTS_UNSET_TEST_FILE = Path(__file__).with_name("prometheus") / "alerts_unset_test.yml"
ALERT_SETTINGS_FILE = Path(__file__).with_name("prometheus") / "alert_settings.yml"

WORKER_JOB = "usersignals-worker"
"""The scrape job of the stream workers (``prometheus/prometheus.yml``), which
``UsersignalsWorkerDown`` watches."""


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


WATCH_ALERTS = (
    "UsersignalsRiskFlagSpike",
    "UsersignalsUsersAtRisk",
    "UsersignalsDeadLetters",
    "UsersignalsConsumerLagGrowing",
    "UsersignalsEventTimeLag",
    "UsersignalsWorkerDown",
    "UsersignalsAlertSettingsMissing",
)
"""Alerts of ``alerts.yml``, in file order."""

ALERT_DASHBOARDS = {
    "UsersignalsFlatteryRising": "/d/usersignals-wellbeing",
    "UsersignalsRiskFlagSpike": "/d/usersignals-wellbeing",
    "UsersignalsUsersAtRisk": "/d/usersignals-wellbeing",
    "UsersignalsDeadLetters": "/d/usersignals-pipeline",
    "UsersignalsConsumerLagGrowing": "/d/usersignals-pipeline",
    "UsersignalsEventTimeLag": "/d/usersignals-pipeline",
    "UsersignalsWorkerDown": "/d/usersignals-pipeline",
    "UsersignalsAlertSettingsMissing": "/d/usersignals-pipeline",
    "UsersignalsLoaderDown": "/d/usersignals-pipeline",
    "UsersignalsLoaderStalled": "/d/usersignals-pipeline",
}
"""The ``dashboard`` annotation of every alert: a Grafana path (``/d/<uid>``) relative to the
Grafana root, which a notification template or the reader prefixes (docs/alerts.md)."""

ALERT_LIVE_SERIES = (
    "usersignals_wellbeing_by_week_flagged_users",
    "usersignals_wellbeing_by_week_active_users",
    "usersignals_wellbeing_by_week_start_timestamp_seconds",
    "usersignals_first_event_day_timestamp_seconds",
    "usersignals_newest_event_day_timestamp_seconds",
    "usersignals_users_at_risk_weekly",
    "usersignals_rejects_seen_total",
    "usersignals_records_processed_total",
    "usersignals_consumer_lag",
    "usersignals_event_time_lag_seconds_bucket",
)
"""Series of the workers' ``/metrics`` that ``alerts.yml`` reads (besides Prometheus's ``up``)."""

ALERT_RECORDED_SERIES = (
    "week_category:usersignals_wellbeing_flagged_users:sum",
    "week:usersignals_wellbeing_active_users:sum",
    "week:usersignals_wellbeing_complete_week_start_timestamp_seconds",
    "usersignals:wellbeing_this_week_start_timestamp_seconds",
    "week:usersignals_wellbeing_trailing_week_start_timestamp_seconds",
    "week_category:usersignals_wellbeing_flagged_share:this_week",
    "category:usersignals_wellbeing_flagged_users:trailing_4w",
    "usersignals:wellbeing_active_users:trailing_4w",
    "category:usersignals_wellbeing_flagged_share:trailing_4w",
    "usersignals:consumer_lag",
)
"""Series the recording rules of ``alerts.yml`` write: the weekly flagged share over all workers
(this week's per category, the trailing four weeks' pooled), and the total consumer lag."""


@dataclass(frozen=True)
class AlertSettings:
    """The thresholds of ``alerts.yml``; each is the recording rule ``usersignals:alert_<name>``
    of ``alert_settings.yml``.

    Attributes:
        risk_spike_factor: How many times the trailing four weeks' flagged share of a category
            this week's must exceed (above 0).
        risk_spike_min_users: Flagged users of the category this week needs, at least.
        users_at_risk_max: Users with a high or critical flag in the trailing 7 days above
            which ``UsersignalsUsersAtRisk`` fires.
        dead_letter_ratio_max: Rejections per input record over 10 minutes above which
            ``UsersignalsDeadLetters`` fires (above 0).
        dead_letter_min: Rejections in the 10 minutes it needs, at least.
        consumer_lag_min: Records waiting above which a growing lag is an alert.
        event_time_lag_p99_max_seconds: The 99th percentile of the event-time lag over 10
            minutes above which ``UsersignalsEventTimeLag`` fires: a bound of the worker's
            histogram (:data:`~usersignals.streams.exposition.LAG_BUCKETS`), so that the
            estimated percentile is above it exactly when more than 1 % of the events took
            longer.

    Raises:
        ConfigError: A value is negative, or zero where it must be above 0, or the event-time
            lag is not a bound of the histogram.
    """

    risk_spike_factor: float = 2.0
    risk_spike_min_users: int = 10
    users_at_risk_max: int = 50
    dead_letter_ratio_max: float = 0.05
    dead_letter_min: int = 10
    consumer_lag_min: int = 1000
    event_time_lag_p99_max_seconds: float = 900.0

    def __post_init__(self) -> None:
        positive = {"risk_spike_factor", "dead_letter_ratio_max", "event_time_lag_p99_max_seconds"}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise ConfigError(f.name, value, "must be a number")
            if value < 0 or (f.name in positive and value == 0):
                raise ConfigError(
                    f.name, value, "must be above 0" if f.name in positive else "must be 0 or more"
                )
        if self.event_time_lag_p99_max_seconds not in LAG_BUCKETS:
            bounds = ", ".join(map(repr, LAG_BUCKETS))
            raise ConfigError(
                "event_time_lag_p99_max_seconds",
                self.event_time_lag_p99_max_seconds,
                f"must be a bound of the event-time lag histogram: {bounds}",
            )


def alert_settings_yaml(settings: AlertSettings | None = None) -> str:
    """The text of ``alert_settings.yml`` for ``settings`` (default :class:`AlertSettings`):
    one recording rule of a constant per setting."""
    chosen = settings or AlertSettings()
    lines = [
        "# The thresholds of alerts.yml, one recording rule of a constant each (Prometheus rules",
        "# have no variables). Written by usersignals.dashboards.rules.alert_settings_yaml; edit",
        "# the values here or write the file again with your own AlertSettings (docs/alerts.md).",
        "# Load it next to alerts.yml: without it UsersignalsAlertSettingsMissing fires.",
        "groups:",
        "  - name: usersignals-alert-settings",
        "    interval: 1m",
        "    rules:",
    ]
    for f in fields(chosen):
        lines += [
            f"      - record: usersignals:alert_{f.name}",
            f"        expr: vector({getattr(chosen, f.name)!r})",
        ]
    return "\n".join(lines) + "\n"


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
