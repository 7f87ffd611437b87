"""Prometheus exposition of a worker's live state (``/metrics``).

Gauges are read from the partition states at scrape time (:func:`live_gauges`), so they are as
exact as the report. A worker exposes the partitions it holds; with several workers, sum over
instances in PromQL (users are disjoint across partitions, so sums stay exact).

Everything computed from held state is a gauge, never a counter: it falls when days are pruned
behind the retention horizon and moves between workers with their partitions, so ``rate()``
and ``increase()`` would misread it. A ``_total`` series is only ever a counter of this process
(:class:`ProcessCounters`: records processed, rejections seen), which starts at 0 with the
process and only grows.

The flattery watch (:mod:`usersignals.metrics.flattery`) is exported as its counts: per model
and ISO week ``week``, the week's own counts (``of="this"``) and the previous ISO week's
(``of="last"``), for every week from the oldest held to the one after the newest. Rates of
several workers cannot be added, counts can: the recording rules of
``dashboards/prometheus/rules.yml`` sum them and apply the same tests.

The weekly flagged share (:mod:`usersignals.metrics.wellbeing`) is exported for the latest
complete ISO week the worker holds whole (the one before the newest event day's, Monday at
``usersignals_wellbeing_week_start_timestamp_seconds``; no samples without one): per category
the share and share high over all models, and per model version for the ``max_models`` named
ones (a folded model has no series of its own; its users are in the all-models series), each
next to its counts (flagged users, flagged users high, active users). A worker's shares are
exact for the partitions it holds; with several workers, sum the counts over instances and
divide (shares cannot be added).

The counts of the flagged share are exported per ISO week too, over all models, for the alert
on a risk-flag spike (``dashboards/prometheus/alerts.yml``): for every ISO week from the first
Monday on or after the latest retention horizon of the partitions held to the newest event
day's week, ``usersignals_wellbeing_by_week_active_users{week}`` and
``usersignals_wellbeing_by_week_flagged_users{week, category}`` (every category of the
contract, zeros included) next to the week's Monday,
``usersignals_wellbeing_by_week_start_timestamp_seconds{week}``. Each partition counts only the
weeks it holds whole after its horizon, so the counts of disjoint partitions and workers add up;
which weeks are complete over all workers is the rules' to decide.

Label values are bounded: no user ids ever; model versions beyond ``max_models`` (the ones with
the most votes win, then by name) fold into ``other``; an event without a model is ``none``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from usersignals.ingest.contract import Event, Rejection
from usersignals.metrics.flattery import FlatteryParams, previous_week, week_monday, z_critical
from usersignals.metrics.periods import iso_week
from usersignals.metrics.wellbeing import CATEGORIES, served_weeks
from usersignals.streams.folds import PartitionState
from usersignals.streams.livereport import live_gauges

__all__ = [
    "LAG_BUCKETS",
    "EventTimeLag",
    "ProcessCounters",
    "WorkerCollector",
    "flattery_counts",
    "fold_models",
    "render",
]

LAG_BUCKETS: tuple[float, ...] = (
    1.0,
    5.0,
    15.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    6 * 3600.0,
    86400.0,
    7 * 86400.0,
    35 * 86400.0,
    365 * 86400.0,
)
"""Upper bounds (seconds) of the event-time lag histogram: seconds to a year (backfills)."""

OTHER = "other"
NONE = "none"


class EventTimeLag:
    """A histogram of seconds from an event's ``ts`` to its processing, filled per record."""

    def __init__(self, buckets: Sequence[float] = LAG_BUCKETS) -> None:
        self.bounds = list(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, events: Iterable[Event], now: datetime) -> None:
        """Adds the lag of each event (one bisect per event, no lock, no await)."""
        bounds, counts = self.bounds, self.counts
        now_s = now.timestamp()
        total = 0.0
        for e in events:
            lag = now_s - e.ts.timestamp()
            counts[bisect_left(bounds, lag)] += 1
            total += lag
        self.total += total

    def metric(self) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            buckets.append((repr(bound), running))
        running += self.counts[-1]
        buckets.append(("+Inf", running))
        return HistogramMetricFamily(
            "usersignals_event_time_lag_seconds",
            "Seconds from an event's ts to its processing by the worker.",
            buckets=buckets,
            sum_value=self.total,
        )


class ProcessCounters:
    """Counters of this worker process: monotonic from 0 at the start of the process.

    Attributes:
        records: Input records processed (a redelivered record counts again).
        rejects: Rejections seen, per reason (a redelivered bad record counts again).
        resets: Live state of a partition dropped because the events topic is a new
            incarnation (a restarted embedded broker, a recreated topic), per partition.
    """

    def __init__(self) -> None:
        self.records = 0
        self.rejects: dict[str, int] = {}
        self.resets: dict[int, int] = {}

    def record(self, rejections: Iterable[Rejection]) -> None:
        """Counts one processed input record and its rejections."""
        self.records += 1
        for r in rejections:
            self.rejects[r.reason] = self.rejects.get(r.reason, 0) + 1


def flattery_counts(states: Sequence[PartitionState]) -> dict[tuple[str, str], list[int]]:
    """{(model, ISO week): [up, down, active users, risk flags]} over every held day."""
    counts: dict[tuple[str, str], list[int]] = {}
    for s in states:
        for model, week, up, down, users, flags, _ in s.weekly(s.day_range())["flattery"]:
            acc = counts.setdefault((model, week), [0, 0, 0, 0])
            for i, v in enumerate((up, down, users, flags)):
                acc[i] += v
    return counts


def _midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def fold_models(
    votes: dict[tuple[str | None, int], int],
    max_models: int,
    models: Iterable[str] = (),
) -> dict[str | None, str]:
    """Label value of each model: the ``max_models`` most-voted keep their name, others fold.

    ``models`` adds models seen elsewhere (active users, risk flags) with no vote: they rank
    after the voted ones, by name.
    """
    per_model: dict[str | None, int] = dict.fromkeys(models, 0)
    for (model, _), n in votes.items():
        per_model[model] = per_model.get(model, 0) + n
    named = sorted((m for m in per_model if m is not None), key=lambda m: (-per_model[m], m))
    labels: dict[str | None, str] = {
        m: (m if i < max_models else OTHER) for i, m in enumerate(named)
    }
    labels[None] = NONE
    return labels


class WorkerCollector(Collector):
    """Collects the ``usersignals_*`` metrics of one worker at scrape time.

    Args:
        states: Returns the partition states the worker holds now.
        lag: Returns {partition: consumer lag in records} of the partitions it holds.
        event_lag: The event-time lag histogram the agent fills.
        max_models: Model label values before folding into ``other``.
        process: The process counters the agent fills (default: a fresh, unused one).
        flattery: The flattery watch's parameters, exported for the rules (default
            :class:`FlatteryParams`).
    """

    def __init__(
        self,
        states: Callable[[], Sequence[PartitionState]],
        lag: Callable[[], dict[int, int]],
        event_lag: EventTimeLag,
        max_models: int,
        *,
        process: ProcessCounters | None = None,
        flattery: FlatteryParams | None = None,
    ) -> None:
        self._states = states
        self._lag = lag
        self._event_lag = event_lag
        self._max_models = max_models
        self._process = process or ProcessCounters()
        self._flattery = flattery or FlatteryParams()

    def collect(self) -> Iterable[Metric]:
        states = list(self._states())
        g: dict[str, Any] = live_gauges(states, self._flattery)
        counts = flattery_counts(states)
        labels = fold_models(
            g["votes_total"],
            self._max_models,
            [*g["model_users_7d"], *g["risk_flags_by_model"], *(m for m, _ in counts)],
        )
        events = GaugeMetricFamily(
            "usersignals_events", "Distinct valid events held, by type.", labels=["type"]
        )
        for t, n in sorted(g["events_by_type"].items()):
            events.add_metric([t], n)
        yield events
        rejected = GaugeMetricFamily(
            "usersignals_events_rejected",
            "Rejected input held (each rejected record or element once), by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(g["rejected"].items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield CounterMetricFamily(
            "usersignals_records_processed",
            "Input records this process has processed (redeliveries count again).",
            value=self._process.records,
        )
        seen = CounterMetricFamily(
            "usersignals_rejects_seen",
            "Rejections this process has seen, by reason (redeliveries count again).",
            labels=["reason"],
        )
        for reason, n in sorted(self._process.rejects.items()):
            seen.add_metric([reason], n)
        yield seen
        resets = CounterMetricFamily(
            "usersignals_incarnation_resets",
            "Times this process dropped a partition's live state: a new incarnation of the "
            "events topic (offsets from 0 again), by partition.",
            labels=["partition"],
        )
        for p, n in sorted(self._process.resets.items()):
            resets.add_metric([str(p)], n)
        yield resets
        active = GaugeMetricFamily(
            "usersignals_active_users",
            "Distinct users active in the window ending on the newest event day.",
            labels=["window"],
        )
        for window, key in (("1d", "dau"), ("7d", "wau"), ("30d", "mau")):
            active.add_metric([window], g[key])
        yield active
        yield GaugeMetricFamily(
            "usersignals_stickiness", "DAU / MAU on the newest event day.", value=g["stickiness"]
        )
        day = g["day"]
        yield GaugeMetricFamily(
            "usersignals_newest_event_day_timestamp_seconds",
            "Midnight UTC of the newest event day the gauges refer to (0: no events).",
            value=_midnight(day) if day else 0.0,
        )
        yield _votes(
            g["votes_total"],
            labels,
            "usersignals_feedback_votes",
            "Latest thumbs votes held (metrics.md rule), by model version and rating.",
        )
        yield _votes(
            g["votes_7d"],
            labels,
            "usersignals_feedback_votes_7d",
            "Latest thumbs votes on the 7 event days ending on the newest, by model and rating.",
        )
        yield _active_by_model(states, g, labels)
        by_model = GaugeMetricFamily(
            "usersignals_risk_flags_by_model",
            "Risk flags held (each event_id once), by model version.",
            labels=["model"],
        )
        for label, n in sorted(_fold(g["risk_flags_by_model"], labels).items()):
            by_model.add_metric([label], n)
        yield by_model
        flags = GaugeMetricFamily(
            "usersignals_risk_flags",
            "Risk flags held, by category and severity.",
            labels=["category", "severity"],
        )
        for (category, severity), n in sorted(g["risk_flags"].items(), key=_none_first):
            flags.add_metric([category or NONE, severity or NONE], n)
        yield flags
        yield GaugeMetricFamily(
            "usersignals_users_at_risk_weekly",
            "Distinct users with a high or critical risk flag in the trailing 7 days.",
            value=g["users_at_risk_weekly"],
        )
        yield GaugeMetricFamily(
            "usersignals_late_events",
            "Events held partitions saw older than the retention horizon (not folded).",
            value=g["late"],
        )
        lag = GaugeMetricFamily(
            "usersignals_consumer_lag",
            "Records of the events topic not yet processed, per partition held.",
            labels=["partition"],
        )
        for p, n in sorted(self._lag().items()):
            lag.add_metric([str(p)], n)
        yield lag
        yield self._event_lag.metric()
        yield from self._flattery_metrics(states, counts, labels)
        yield from _wellbeing_metrics(g["wellbeing_week"], g["wellbeing"], labels)
        yield from _wellbeing_by_week(states)

    def _flattery_metrics(
        self,
        states: Sequence[PartitionState],
        counts: dict[tuple[str, str], list[int]],
        labels: dict[str | None, str],
    ) -> Iterable[Metric]:
        params = self._flattery
        yield GaugeMetricFamily(
            "usersignals_flattery_z_critical",
            "The z both one-sided flattery tests must exceed (the significance level's).",
            value=z_critical(params.level),
        )
        yield GaugeMetricFamily(
            "usersignals_flattery_min_votes",
            "Thumbs votes a model needs in each of the two weeks to be flagged.",
            value=params.min_votes,
        )
        yield GaugeMetricFamily(
            "usersignals_flattery_min_active_users",
            "Active users a model needs in each of the two weeks to be flagged.",
            value=params.min_users,
        )
        ranges = [r for r in (s.day_range() for s in states) if r is not None]
        first = GaugeMetricFamily(
            "usersignals_first_event_day_timestamp_seconds",
            "Midnight UTC of the oldest event day held (no sample: no events).",
        )
        if ranges:
            first.add_metric([], _midnight(min(r[0] for r in ranges)))
        yield first
        weeks: list[str] = []
        if ranges:
            monday = week_monday(iso_week(min(r[0] for r in ranges)))
            newest = max(r[1] for r in ranges)
            while monday <= newest + timedelta(days=7):
                weeks.append(iso_week(monday))
                monday += timedelta(days=7)
        start = GaugeMetricFamily(
            "usersignals_flattery_week_start_timestamp_seconds",
            "Midnight UTC of the Monday of each ISO week of the flattery series.",
            labels=["week"],
        )
        for week in weeks:
            start.add_metric([week], _midnight(week_monday(week)))
        yield start
        votes = GaugeMetricFamily(
            "usersignals_flattery_votes",
            'Latest thumbs votes of the ISO week (of="this") or of the week before (of="last").',
            labels=["model", "week", "of", "rating"],
        )
        users = GaugeMetricFamily(
            "usersignals_flattery_active_users",
            "Distinct users with an event carrying the model in the ISO week (of) held.",
            labels=["model", "week", "of"],
        )
        flags = GaugeMetricFamily(
            "usersignals_flattery_risk_flags",
            "Risk flags carrying the model in the ISO week (of) held.",
            labels=["model", "week", "of"],
        )
        models = sorted({m for m, _ in counts if labels.get(m) == m})
        for model in models:
            for week in weeks:
                for of, key in (("this", week), ("last", previous_week(week))):
                    up, down, active, risk = counts.get((model, key), (0, 0, 0, 0))
                    votes.add_metric([model, week, of, "up"], up)
                    votes.add_metric([model, week, of, "down"], down)
                    users.add_metric([model, week, of], active)
                    flags.add_metric([model, week, of], risk)
        yield votes
        yield users
        yield flags


_WELLBEING = (
    ("share", "flagged_share", "Share of the week's active users with a risk flag of the category"),
    (
        "share_high",
        "flagged_share_high",
        "Share of the week's active users with a high or critical risk flag of the category",
    ),
    ("flagged_users", "flagged_users", "Distinct users with a risk flag of the category"),
    (
        "flagged_users_high",
        "flagged_users_high",
        "Distinct users with a high or critical risk flag of the category",
    ),
)


def _wellbeing_metrics(
    week: date | None, rows: list[dict[str, Any]], labels: dict[str | None, str]
) -> Iterable[Metric]:
    """The weekly flagged share of the latest complete ISO week: all models, and per named
    model (``labels[m] == m``); a share that is None (no active user) has no sample."""
    start = GaugeMetricFamily(
        "usersignals_wellbeing_week_start_timestamp_seconds",
        "Midnight UTC of the Monday of the latest complete ISO week the flagged share is of "
        "(no sample: no such week held whole).",
    )
    if week is not None:
        start.add_metric([], _midnight(week))
    yield start
    every = GaugeMetricFamily(
        "usersignals_wellbeing_active_users",
        "Distinct users active in the latest complete ISO week (the flagged share's denominator).",
    )
    by_model = GaugeMetricFamily(
        "usersignals_wellbeing_active_users_by_model",
        "Distinct users with an event carrying the model in the latest complete ISO week.",
        labels=["model"],
    )
    for r in rows:
        if r["category"] != rows[0]["category"]:
            continue  # one row per (week, model) is enough for the active users
        if r["model"] is None:
            every.add_metric([], r["active_users"])
        elif labels.get(r["model"]) == r["model"]:
            by_model.add_metric([r["model"]], r["active_users"])
    yield every
    yield by_model
    for key, name, what in _WELLBEING:
        total = GaugeMetricFamily(
            f"usersignals_wellbeing_{name}",
            f"{what}, in the latest complete ISO week, over all models.",
            labels=["category"],
        )
        per_model = GaugeMetricFamily(
            f"usersignals_wellbeing_{name}_by_model",
            f"{what} attributed to the model, in the latest complete ISO week.",
            labels=["model", "category"],
        )
        for r in rows:
            value = r[key]
            if value is None:
                continue
            if r["model"] is None:
                total.add_metric([r["category"]], value)
            elif labels.get(r["model"]) == r["model"]:
                per_model.add_metric([r["model"], r["category"]], value)
        yield total
        yield per_model


def _wellbeing_by_week(states: Sequence[PartitionState]) -> Iterable[Metric]:
    """The flagged share's counts over all models per ISO week: the weeks from the first Monday
    on or after the latest horizon of ``states`` to the newest day's (no samples without
    events). A partition counts the weeks it holds whole after its own horizon, which is at or
    before the latest, so every partition counts every exported week and the counts add up."""
    start = GaugeMetricFamily(
        "usersignals_wellbeing_by_week_start_timestamp_seconds",
        "Midnight UTC of the Monday of each ISO week of the weekly flagged-share counts.",
        labels=["week"],
    )
    active = GaugeMetricFamily(
        "usersignals_wellbeing_by_week_active_users",
        "Distinct users active in the ISO week held (the flagged share's denominator).",
        labels=["week"],
    )
    flagged = GaugeMetricFamily(
        "usersignals_wellbeing_by_week_flagged_users",
        "Distinct users with a risk flag of the category in the ISO week held, over all models.",
        labels=["week", "category"],
    )
    ranges = [r for r in (s.day_range() for s in states) if r is not None]
    if ranges:
        horizons = [h for h in (s.horizon for s in states) if h is not None]
        lo = max(horizons) if horizons else min(r[0] for r in ranges)
        newest = max(r[1] for r in ranges)
        sunday = newest + timedelta(days=6 - newest.weekday())
        users: dict[str, int] = {}
        flags: dict[tuple[str, str], int] = {}
        for s in states:
            part = s.weekly((lo, sunday), wellbeing=True)
            for week, n in part["week_users"].items():
                users[week] = users.get(week, 0) + n
            for week, model, category, n, _ in part["wellbeing"]:
                if model is None:
                    flags[(week, category)] = flags.get((week, category), 0) + n
        for week in served_weeks(lo, sunday):
            start.add_metric([week], _midnight(week_monday(week)))
            active.add_metric([week], users.get(week, 0))
            for category in CATEGORIES:
                flagged.add_metric([week, category], flags.get((week, category), 0))
    yield start
    yield active
    yield flagged


def _none_first(item: tuple[tuple[Any, ...], int]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in item[0])


def _fold(counts: dict[str, int], labels: dict[str | None, str]) -> dict[str, int]:
    folded: dict[str, int] = {}
    for model, n in counts.items():
        label = labels[model]
        folded[label] = folded.get(label, 0) + n
    return folded


def _active_by_model(
    states: Sequence[PartitionState], g: dict[str, Any], labels: dict[str | None, str]
) -> GaugeMetricFamily:
    """Distinct users per model label; ``other`` is the union of its models' users in each
    partition (a user of two folded models counts once), summed over partitions."""
    users: dict[str, int] = g["model_users_7d"]
    named = {m: n for m, n in users.items() if labels[m] != OTHER}
    folded = [m for m in users if labels[m] == OTHER]
    family = GaugeMetricFamily(
        "usersignals_active_users_by_model",
        "Distinct users with an event carrying the model on the 7 event days ending on the newest.",
        labels=["model"],
    )
    if folded:
        named[OTHER] = sum(s.users_of_models(folded, g["day"]) for s in states)
    for label, n in sorted(named.items()):
        family.add_metric([label], n)
    return family


def _votes(
    votes: dict[tuple[str | None, int], int],
    labels: dict[str | None, str],
    name: str,
    documentation: str,
) -> GaugeMetricFamily:
    folded: dict[tuple[str, str], int] = {}
    for (model, rating), n in votes.items():
        key = (labels[model], "up" if rating == 1 else "down")
        folded[key] = folded.get(key, 0) + n
    family = GaugeMetricFamily(name, documentation, labels=["model", "rating"])
    for (label, thumb), count in sorted(folded.items()):
        family.add_metric([label, thumb], count)
    return family


def render(collector: WorkerCollector, *extra: Collector) -> bytes:
    """The text exposition format of the worker's collector and any ``extra`` ones (the
    processes the worker supervises, see :class:`usersignals.streams.app.Sidecar`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    for c in extra:
        registry.register(c)
    return generate_latest(registry)
