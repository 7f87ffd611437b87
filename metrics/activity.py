"""Activity, live (docs/metrics.md): events per day, DAU, WAU, MAU, stickiness, users at risk.

The fold adds each new event's id and user to its day (``DayState.ids``, ``users``,
``types``, ``model_users``: the four lines of the worker's hot loop in
:meth:`usersignals.streams.folds.PartitionState.apply`); the results are read here, by one
definition for the report's series (:func:`windows`), the Prometheus gauges (:func:`at`) and
every ratio (:func:`stickiness`). The same metrics from history are ``activity.sql`` beside this
file; both are checked against the test oracle.

Distinct counts of disjoint partitions add up (users are keyed to partitions); the ratio is
taken after summing (:func:`stickiness` of the sums).
"""

from __future__ import annotations

from collections.abc import Mapping

from usersignals.metrics.day import DayState
from usersignals.metrics.periods import MONTH_DAYS, WEEK_DAYS

__all__ = ["at", "stickiness", "windows"]


def windows(days: Mapping[int, DayState], lo: int, hi: int) -> list[list[int]]:
    """[dau, wau, mau, users at risk weekly] for every day ordinal in [lo, hi].

    One pass over the user-days: each user's last active day so far, and a histogram of those
    last days, so that a trailing window is the sum of the histogram over the window.
    """
    rows: list[list[int]] = []
    last: dict[str, int] = {}
    hist: dict[int, int] = {}
    last_risk: dict[str, int] = {}
    hist_risk: dict[int, int] = {}
    for o in range(lo - MONTH_DAYS + 1, hi + 1):
        d = days.get(o)
        if d is not None:
            _advance(last, hist, d.users, o)
            _advance(last_risk, hist_risk, d.risk_high, o)
        if o >= lo:
            wau = sum(hist.get(x, 0) for x in range(o - WEEK_DAYS + 1, o + 1))
            mau = sum(hist.get(x, 0) for x in range(o - MONTH_DAYS + 1, o + 1))
            at_risk = sum(hist_risk.get(x, 0) for x in range(o - WEEK_DAYS + 1, o + 1))
            rows.append([len(d.users) if d else 0, wau, mau, at_risk])
    return rows


def at(days: Mapping[int, DayState], ref: int) -> list[int]:
    """[dau, wau, mau, users at risk weekly] of the one day ordinal ``ref``."""
    return windows(days, ref, ref)[0]


def stickiness(dau: int, mau: int) -> float:
    """DAU / MAU, 0 when MAU is 0, rounded as every report rounds its ratios."""
    return round(dau / mau, 6) if mau else 0.0


def _advance(last: dict[str, int], hist: dict[int, int], users: set[str], o: int) -> None:
    hist[o] = hist.get(o, 0) + len(users)
    for u in users:
        prev = last.get(u)
        if prev is not None:
            hist[prev] -= 1
        last[u] = o
