"""The report of ``metrics.md`` from live partition states, exact across several workers.

A worker holds only some partitions, so a report is built in two phases, and merging the
answers of every worker is exact because users are disjoint across partitions:

1. Ask every worker for the day range it holds (:meth:`PartitionState.day_range` of each of its
   partitions); :func:`global_range` combines them into the first and last day overall.
2. Ask every worker for its partial over that GLOBAL range (:func:`partial_of`, made of
   :meth:`PartitionState.partial`). A partition with no events on the last global days still
   has WAU/MAU there, and the active-user series must have one row per global day, so every
   partial carries a row for every day of the same range. :func:`merge_partials` adds the
   partials up and derives the ratios.

:func:`live_report` runs both phases in process. Partials are plain JSON.

The weekly flagged share (``wellbeing_weekly``, :mod:`usersignals.metrics.wellbeing`) is counted
per week inside each partition (a user flagged on two days of a week counts once) and the
counts added. It is served for the weeks whose seven days lie within the global range and on
or after the latest retention horizon of the partitions (each partial carries its
``horizon``): those weeks equal history's. A partial without these keys (an older worker)
leaves ``wellbeing_weekly`` empty rather than short.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from usersignals.errors import PartialMismatchError
from usersignals.metrics.activity import stickiness
from usersignals.metrics.flattery import FlatteryParams, WeekCounts, watch_rows
from usersignals.metrics.periods import (
    MONTH_DAYS,
    WEEK_DAYS,
    DayRange,
    completeness,
    iso_week,
    select_range,
)
from usersignals.metrics.wellbeing import served_weeks, wellbeing_rows
from usersignals.streams.folds import PartitionState

__all__ = [
    "PartialMismatchError",
    "global_range",
    "live_gauges",
    "live_report",
    "merge_partials",
    "partial_of",
    "preference_counts",
]

PrefKey = tuple["str | None", "str | None", "str | None"]


def global_range(ranges: Iterable[tuple[date, date] | None]) -> tuple[date, date] | None:
    """First and last day over the ranges of several partitions (None when all are empty)."""
    held = [r for r in ranges if r is not None]
    if not held:
        return None
    return min(r[0] for r in held), max(r[1] for r in held)


def partial_of(
    states: Iterable[PartitionState], day_range: tuple[date, date] | None
) -> dict[str, Any]:
    """One worker's answer to phase two: the partials of its partitions added up (plain JSON).

    A worker holding no partition answers an all-zero partial over the same range.
    """
    empty = PartitionState().partial(day_range)
    total = _sum_partials([empty, *(s.partial(day_range) for s in states)])
    for name in ("feedback", "risk", "flattery", "preferences", "rejected"):
        total[name] = [[*k, *v] for k, v in total[name].items()]
    if total["wellbeing"] is not None:
        total["wellbeing"] = [[*k, *v] for k, v in total["wellbeing"].items()]
    return total


def live_report(
    states: Sequence[PartitionState],
    arena: list[dict[str, Any]] | None = None,
    select: DayRange | None = None,
) -> dict[str, Any]:
    """The report JSON shape of the brief, over all the given partitions.

    Args:
        states: Partition states (of one or several workers, in process).
        arena: Arena rows (computed elsewhere from :func:`preference_counts` over the same
            ``select``); default [].
        select: The days the report shows (the rule of :mod:`usersignals.metrics.periods`);
            default every day.
    """
    rng = global_range(s.day_range() for s in states)
    return merge_partials([s.partial(rng) for s in states], arena, select)


def live_gauges(
    states: Sequence[PartitionState], params: FlatteryParams | None = None
) -> dict[str, Any]:
    """The gauges of several partitions at their common newest day, summed.

    Same keys as :meth:`PartitionState.gauges`, plus ``stickiness``, ``flattery`` (the
    flattery watch rows of the newest day's ISO week and the one before it, with ``params``,
    complete or not by the days held), ``wellbeing_week`` (the Monday of the latest complete
    ISO week, the one before the newest day's, when the states hold all of it; else None) and
    ``wellbeing`` (that week's ``wellbeing_weekly`` rows; [] without such a week).
    """
    newest = max((s.newest_day for s in states if s.newest_day is not None), default=None)
    total = PartitionState().gauges(newest)
    for s in states:
        for name, value in s.gauges(newest).items():
            if isinstance(value, dict):
                _add(total[name], value.items())
            elif name != "day":
                total[name] += value
    mau = total["mau"]
    total["stickiness"] = stickiness(total["dau"], mau)
    flattery: list[dict[str, Any]] = []
    wellbeing: list[dict[str, Any]] = []
    wellbeing_week: date | None = None
    if newest is not None:
        start = newest - timedelta(days=newest.weekday() + 7)
        counts: dict[tuple[Any, ...], list[int]] = {}
        week_users: dict[str, int] = {}
        flagged: dict[tuple[Any, ...], list[int]] = {}
        horizons: list[str | None] = []
        for s in states:
            part = s.weekly((start, newest), wellbeing=True)
            _add_rows(counts, part["flattery"], 2)
            _add(week_users, part["week_users"].items())
            _add_rows(flagged, part["wellbeing"], 3)
            horizons.append(part["horizon"])
        first = min(r[0] for r in (s.day_range() for s in states) if r is not None)
        flattery = _flattery(counts, week_users, (first, newest), params)
        week = iso_week(start)
        if week in served_weeks(first, newest - timedelta(days=1), _day(_latest(horizons))):
            wellbeing_week = start
            wellbeing = _wellbeing([week], counts, week_users, flagged)
    total["flattery"] = flattery
    total["wellbeing_week"] = wellbeing_week
    total["wellbeing"] = wellbeing
    return total


def preference_counts(
    partials: Iterable[dict[str, Any]], select: DayRange | None = None
) -> dict[PrefKey, int]:
    """The preference count table {(model_a, model_b, winner): count} the arena is fitted to:
    the votes whose day lies in ``select`` (default every day)."""
    rng = select or DayRange()
    counts: dict[PrefKey, int] = {}
    for p in partials:
        for day, a, b, w, n in p["preferences"]:
            if rng.contains(day):
                counts[(a, b, w)] = counts.get((a, b, w), 0) + n
    return counts


def _rejected(cells: dict[tuple[Any, ...], list[int]], rng: DayRange) -> list[dict[str, Any]]:
    """Rejections per reason received on a day of ``rng`` (a day not known: unbounded only)."""
    unbounded = rng.first is None and rng.last is None
    counts: dict[str, int] = {}
    for (day, reason), (n,) in cells.items():
        if (day is None and unbounded) or (day is not None and rng.contains(day)):
            counts[reason] = counts.get(reason, 0) + n
    return [{"reason": r, "count": n} for r, n in sorted(counts.items()) if n]


def merge_partials(
    partials: Sequence[dict[str, Any]],
    arena: list[dict[str, Any]] | None = None,
    select: DayRange | None = None,
    *,
    flattery: FlatteryParams | None = None,
) -> dict[str, Any]:
    """The report from the partials of disjoint partitions over one global day range.

    Args:
        partials: One partial per worker (or partition), all over the same global range.
        arena: Arena rows fitted to :func:`preference_counts` of the same ``select``.
        select: The days the report shows; default every day.
        flattery: Significance level and minimum volume of the flattery watch (default
            :class:`FlatteryParams`); its weeks are complete or not by the global range.

    Returns:
        The report (the keys of the warehouse report, ``range``), then ``wellbeing_weekly``:
        the rows of the ISO weeks whose seven days all lie within the global range and on or
        after every partition's retention horizon, those touching ``select``.

    Raises:
        PartialMismatchError: the partials cover different day ranges.
    """
    rng = select or DayRange()
    total = _sum_partials(partials)
    report: dict[str, Any] = {
        "active_users": [],
        "events_by_day": [],
        "feedback_by_model": [],
        "risk_flags_daily": [],
        "users_at_risk_weekly": [],
        "rejected": _rejected(total["rejected"], rng),
        "arena": list(arena) if arena is not None else [],
        "flattery_watch": [],
    }
    if total["range"] is None:
        return select_range(report, rng) | {"wellbeing_weekly": []}
    first = date.fromisoformat(total["range"][0])
    last = date.fromisoformat(total["range"][1])
    days = [(first + timedelta(days=i)).isoformat() for i in range(len(total["active"]))]
    flags = completeness(days, first, last, (WEEK_DAYS, MONTH_DAYS))
    for day, (dau, wau, mau, at_risk), (done, week_done, month_done) in zip(
        days, total["active"], flags, strict=True
    ):
        report["active_users"].append(
            {
                "day": day,
                "dau": dau,
                "wau": wau,
                "mau": mau,
                "stickiness": stickiness(dau, mau),
                "complete": done,
                "wau_complete": week_done,
                "mau_complete": month_done,
            }
        )
        report["users_at_risk_weekly"].append({"day": day, "users": at_risk, "complete": week_done})
    report["events_by_day"] = [
        {"day": d, "events": n, "complete": d < last.isoformat()}
        for d, n in sorted(total["events"].items())
    ]
    report["feedback_by_model"] = [
        {"day": d, "model": m, "thumbs_up": up, "thumbs_down": down}
        for (d, m), (up, down) in sorted(total["feedback"].items(), key=_null_last_key)
        if up + down
    ]
    report["risk_flags_daily"] = [
        {"day": d, "category": c, "severity": s, "flags": f, "users": u}
        for (d, c, s), (f, u) in sorted(total["risk"].items(), key=_null_last_key)
    ]
    report["flattery_watch"] = _flattery(
        total["flattery"], total["week_users"], (first, last), flattery
    )
    wellbeing: list[dict[str, Any]] = []
    if total["wellbeing"] is not None:
        weeks = [
            w for w in served_weeks(first, last, _day(total["horizon"])) if rng.overlaps_week(w)
        ]
        wellbeing = _wellbeing(weeks, total["flattery"], total["week_users"], total["wellbeing"])
    # after select_range: its rows are named by their Monday, not YYYY-Www (weeks chosen above)
    return select_range(report, rng) | {"wellbeing_weekly": wellbeing}


def _null_last_key(item: tuple[tuple[Any, ...], Any]) -> tuple[Any, ...]:
    """Sort key treating None as "" (and after a real "" so that the order is total)."""
    return tuple(x for v in item[0] for x in ("" if v is None else v, v is None))


def _sum_partials(partials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ranges = [p["range"] for p in partials]
    if any(r != ranges[0] for r in ranges):
        raise PartialMismatchError(ranges)
    total: dict[str, Any] = {
        "range": ranges[0] if ranges else None,
        "active": None,
        "events": {},
        "types": {},
        "feedback": {},
        "risk": {},
        "flattery": {},
        "week_users": {},
        "preferences": {},
        "rejected": {},
        "late": 0,
        "horizon": None,
        "wellbeing": {},
    }
    horizons: list[str | None] = []
    for p in partials:
        active = p["active"]
        if total["active"] is None:
            total["active"] = [list(row) for row in active]
        else:
            for acc, row in zip(total["active"], active, strict=True):
                for i, v in enumerate(row):
                    acc[i] += v
        for name in ("events", "types", "week_users"):
            _add(total[name], p[name].items())
        _add_rows(total["feedback"], p["feedback"], 2)
        _add_rows(total["risk"], p["risk"], 3)
        _add_rows(total["flattery"], p["flattery"], 2)
        _add_rows(total["preferences"], p["preferences"], 4)
        _add_rows(total["rejected"], p["rejected"], 2)
        total["late"] += p["late"]
        rows = p.get("wellbeing")
        if rows is None or total["wellbeing"] is None:  # an older worker: no wellbeing counts
            total["wellbeing"] = None
        else:
            _add_rows(total["wellbeing"], rows, 3)
            horizons.append(p.get("horizon"))
    total["active"] = total["active"] or []
    total["horizon"] = _latest(horizons)
    return total


def _latest(horizons: Iterable[str | None]) -> str | None:
    """The latest of several retention horizons (``YYYY-MM-DD``; None: no horizon)."""
    return max((h for h in horizons if h is not None), default=None)


def _day(iso: str | None) -> date | None:
    return date.fromisoformat(iso) if iso is not None else None


def _add(into: dict[Any, Any], items: Iterable[tuple[Any, Any]]) -> None:
    for k, v in items:
        into[k] = into.get(k, 0) + v


def _add_rows(into: dict[tuple[Any, ...], list[int]], rows: Iterable[list[Any]], key: int) -> None:
    """Adds the numeric tail of rows whose first ``key`` columns are the key."""
    for row in rows:
        k = tuple(row[:key])
        acc = into.get(k)
        if acc is None:
            into[k] = list(row[key:])
        else:
            for i, v in enumerate(row[key:]):
                acc[i] += v


def _flattery(
    counts: dict[tuple[Any, ...], list[int]],
    week_users: dict[str, int],
    data_range: tuple[date, date] | None,
    params: FlatteryParams | None,
) -> list[dict[str, Any]]:
    """Rows of the flattery watch: the summed counts through its one definition."""
    cells = [
        WeekCounts(model, week, up, down, users, flags, at_risk, week_users[week])
        for (model, week), (up, down, users, flags, at_risk) in counts.items()
    ]
    return watch_rows(cells, data_range, params or FlatteryParams())


def _wellbeing(
    weeks: Iterable[str],
    flattery: dict[tuple[Any, ...], list[int]],
    week_users: dict[str, int],
    flagged: dict[tuple[Any, ...], list[int]],
) -> list[dict[str, Any]]:
    """``wellbeing_weekly`` rows of ``weeks`` from the summed counts (a model's active users
    are the flattery watch's)."""
    model_users = {(m, w): counts[2] for (m, w), counts in flattery.items()}
    return wellbeing_rows(weeks, week_users, model_users, flagged)
