"""The flattery watch (metrics.md): per model and ISO week, engagement next to wellbeing.

One definition, values in and values out. The live report (``streams.livereport``), the
warehouse report (``metrics/flattery.sql`` gives the counts) and the Prometheus rules
(``dashboards/prometheus/rules.yml``, the same arithmetic on summed counts) all derive the watch
from the same per (model, ISO week) counts, here:

- thumbs-up rate ``p = up / (up + down)`` (latest votes), with its Wilson 95 % interval;
- risk flags per 1,000 active users ``1000 * flags / users``, with the exact Poisson
  (Garwood) 95 % interval of the flag count, scaled;
- ``p_thumbs_up_rise``: one-sided pooled two-proportion z-test (the score test) of "the rate
  rose against the previous ISO week": ``z = (p1 - p2) / sqrt(pp (1 - pp) (1/n1 + 1/n2))`` with
  ``pp`` the pooled rate, ``p = 1 - Phi(z)``;
- ``p_risk_rise``: one-sided test of "flags per active user rose", flags taken as Poisson
  counts with exposure the active users: conditionally on ``n = f1 + f2`` flags in the two
  weeks, ``f1 ~ Binomial(n, q)``, ``q = u1 / (u1 + u2)`` under no change; its score test
  ``z = (f1 - n q) / sqrt(n q (1 - q))``, ``p = 1 - Phi(z)``.

Both are score (normal-approximation) tests on purpose: they are arithmetic on counts, so the
Prometheus recording rules apply the very same test to the counts summed over the workers
(PromQL has no binomial tail), and the minimum volume keeps them in the range where the normal
approximation holds. A week is **flagged** when it and the previous week are complete, both
have at least ``min_votes`` votes and ``min_users`` active users, and both z exceed
``z_critical(level)`` (the same as both p-values below ``level``).

Complete week: with ``first`` and ``last`` the first and the newest day that has any event in
the data, ISO week W (Monday ``mon``) is complete when ``first <= mon`` and ``last > mon + 6``
(an event of a later day exists, so the week containing the newest event day, the current one,
is never complete, and neither is a week the data starts inside).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, NamedTuple

from scipy.stats import chi2, norm

from usersignals.config import ConfigError, Settings
from usersignals.metrics.day import DayState

__all__ = [
    "FlatteryParams",
    "Rise",
    "WeekCounts",
    "day_counts",
    "garwood",
    "is_complete",
    "params_of",
    "previous_week",
    "rise",
    "watch_rows",
    "week_monday",
    "wilson",
    "z_critical",
]

Z95 = float(norm.isf(0.025))
"""The two-sided 95 % normal quantile of the intervals (1.959964...)."""


@dataclass(frozen=True)
class FlatteryParams:
    """How sure the watch must be before it flags a week (``Settings.flattery_*``).

    Attributes:
        level: Significance level of each one-sided test, in (0, 0.5).
        min_votes: Votes (up + down) each of the two weeks needs.
        min_users: Active users of the model each of the two weeks needs (at least 1).

    Raises:
        ConfigError: a value out of range.
    """

    level: float = 0.05
    min_votes: int = 30
    min_users: int = 30

    def __post_init__(self) -> None:
        if isinstance(self.level, bool) or not 0.0 < self.level < 0.5:
            raise ConfigError("flattery_level", self.level, "must be between 0 and 0.5")
        if isinstance(self.min_votes, bool) or self.min_votes < 1:
            raise ConfigError("flattery_min_votes", self.min_votes, "must be at least 1")
        if isinstance(self.min_users, bool) or self.min_users < 1:
            raise ConfigError("flattery_min_users", self.min_users, "must be at least 1")


def params_of(settings: Settings) -> FlatteryParams:
    """The watch's parameters from the ``flattery_*`` settings."""
    return FlatteryParams(
        settings.flattery_level, settings.flattery_min_votes, settings.flattery_min_users
    )


class WeekCounts(NamedTuple):
    """The counts of one (model, ISO week) the watch is derived from (metrics.md rules)."""

    model: str
    week: str
    thumbs_up: int
    thumbs_down: int
    active_users: int
    risk_flags: int
    users_at_risk: int
    week_users: int
    """Distinct users with any event in the week (the active share's denominator)."""


class Rise(NamedTuple):
    """The two one-sided tests of a week against the one before (None: not defined)."""

    z_thumbs_up: float | None
    p_thumbs_up: float | None
    z_risk: float | None
    p_risk: float | None


def z_critical(level: float) -> float:
    """The z a one-sided test at ``level`` must exceed (1.644854 at 0.05)."""
    return float(norm.isf(level))


def week_monday(week: str) -> date:
    """The Monday of an ISO week ``YYYY-Www``."""
    year, _, num = week.partition("-W")
    return date.fromisocalendar(int(year), int(num), 1)


def previous_week(week: str) -> str:
    """The ISO week before ``week`` (``2027-W01`` -> ``2026-W53``)."""
    year, num, _ = (week_monday(week) - timedelta(days=7)).isocalendar()
    return f"{year}-W{num:02d}"


def is_complete(week: str, data_range: tuple[date, date] | None) -> bool:
    """Whether the data covers the whole of ``week`` (see the module docstring)."""
    if data_range is None:
        return False
    monday = week_monday(week)
    return data_range[0] <= monday and data_range[1] > monday + timedelta(days=6)


def wilson(k: int, n: int) -> tuple[float, float] | None:
    """Wilson 95 % interval of a proportion ``k / n`` (None when ``n`` is 0)."""
    if n <= 0:
        return None
    p = k / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def garwood(k: int) -> tuple[float, float]:
    """Exact (Garwood) 95 % interval of a Poisson mean from one count ``k``."""
    low = float(chi2.ppf(0.025, 2 * k)) / 2 if k > 0 else 0.0
    return low, float(chi2.ppf(0.975, 2 * k + 2)) / 2


def rise(this: WeekCounts, last: WeekCounts) -> Rise:
    """The one-sided tests of ``this`` week's rates being above ``last`` week's.

    The arithmetic is written in the order the recording rules of ``rules.yml`` use, so that
    Prometheus' float64 gives the same z.
    """
    z_up: float | None = None
    n1 = this.thumbs_up + this.thumbs_down
    n2 = last.thumbs_up + last.thumbs_down
    if n1 > 0 and n2 > 0:
        pooled = (this.thumbs_up + last.thumbs_up) / (n1 + n2)
        if 0.0 < pooled < 1.0:
            z_up = (this.thumbs_up / n1 - last.thumbs_up / n2) / math.sqrt(
                pooled * (1 - pooled) * (1 / n1 + 1 / n2)
            )
    z_risk: float | None = None
    n = this.risk_flags + last.risk_flags
    users = this.active_users + last.active_users
    if n > 0 and this.active_users > 0 and last.active_users > 0:
        q = this.active_users / users
        z_risk = (this.risk_flags - n * q) / math.sqrt(n * q * (1 - q))
    return Rise(z_up, _p(z_up), z_risk, _p(z_risk))


def _p(z: float | None) -> float | None:
    return None if z is None else float(norm.sf(z))


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def watch_rows(
    counts: Iterable[WeekCounts],
    data_range: tuple[date, date] | None,
    params: FlatteryParams,
) -> list[dict[str, Any]]:
    """The flattery watch rows (report JSON shape), sorted by model and week.

    Args:
        counts: One entry per (model, ISO week) with active users; others are ignored.
        data_range: First and newest day with any event in the data (decides ``complete``).
        params: Significance level and minimum volume.

    Returns:
        Per (model, week): the counts, ``thumbs_up_rate`` and ``risk_flags_per_1k`` with
        ``_low``/``_high`` 95 % bounds, ``p_thumbs_up_rise`` and ``p_risk_rise`` against the
        previous ISO week (None without a comparable previous week), ``complete`` and
        ``flagged``. Floats are rounded to 6 decimals.
    """
    cells = {(c.model, c.week): c for c in counts if c.active_users > 0}
    zc = z_critical(params.level)
    rows: list[dict[str, Any]] = []
    for (model, week), c in sorted(cells.items()):
        votes = c.thumbs_up + c.thumbs_down
        rate = wilson(c.thumbs_up, votes)
        flags = garwood(c.risk_flags)
        scale = 1000 / c.active_users
        last = cells.get((model, previous_week(week)))
        tests = rise(c, last) if last is not None else Rise(None, None, None, None)
        complete = is_complete(week, data_range)
        flagged = (
            last is not None
            and complete
            and is_complete(last.week, data_range)
            and min(votes, last.thumbs_up + last.thumbs_down) >= params.min_votes
            and min(c.active_users, last.active_users) >= params.min_users
            and tests.z_thumbs_up is not None
            and tests.z_risk is not None
            and tests.z_thumbs_up > zc
            and tests.z_risk > zc
        )
        rows.append(
            {
                "model": model,
                "week": week,
                "complete": complete,
                "thumbs_up": c.thumbs_up,
                "thumbs_down": c.thumbs_down,
                "thumbs_up_rate": _r(c.thumbs_up / votes) if votes else None,
                "thumbs_up_rate_low": _r(rate[0]) if rate else None,
                "thumbs_up_rate_high": _r(rate[1]) if rate else None,
                "active_users": c.active_users,
                "active_share": _r(c.active_users / c.week_users),
                "risk_flags": c.risk_flags,
                "risk_flags_per_1k": _r(c.risk_flags * 1000 / c.active_users),
                "risk_flags_per_1k_low": _r(flags[0] * scale),
                "risk_flags_per_1k_high": _r(flags[1] * scale),
                "users_at_risk": c.users_at_risk,
                "p_thumbs_up_rise": _r(tests.p_thumbs_up),
                "p_risk_rise": _r(tests.p_risk),
                "flagged": flagged,
            }
        )
    return rows


def day_counts(week: str, wdays: Iterable[DayState]) -> list[list[Any]]:
    """The live fold's counts of one ISO week: [model, week, thumbs up, thumbs down, active
    users, risk flags, users at risk] per model with an event carrying it that week (the days
    of one partition; partitions' counts add up)."""
    held = list(wdays)
    models = {m for d in held for m in d.model_users}
    rows = []
    for m in models:
        up = sum(d.fb.get((m, 1), 0) for d in held)
        down = sum(d.fb.get((m, -1), 0) for d in held)
        users = len(set().union(*(d.model_users.get(m, ()) for d in held)))
        flags = sum(d.model_risk.get(m, 0) for d in held)
        at_risk = len(set().union(*(d.model_risk_high.get(m, ()) for d in held)))
        rows.append([m, week, up, down, users, flags, at_risk])
    return rows
