"""The weekly flagged share (docs/metrics.md, "Weekly flagged share (wellbeing)"), live: the
form of ``wellbeing.sql`` beside this file that the worker serves.

Per ISO week (its Monday, ``YYYY-MM-DD``), risk category and model version: distinct users with
a ``risk_flag`` of the category in the week (any severity; ``high`` or ``critical``) over the
week's active users. The all-models row (model None) counts every flag over every active user;
a model's row counts the flags attributed to it (:mod:`usersignals.metrics.attribution`) over
the users with an event carrying it that week. Every category of the contract has a row, zeros
included; share and share_high are rounded to 6 decimals, None when no user is active.

Two steps, so that partitions add up exactly:

1. :func:`week_flags`: within one partition, the distinct flagged users of one week from its
   days (:class:`~usersignals.metrics.day.DayState` ``risk_users``, ``model_flagged`` and
   ``model_flagged_high``). A
   user flagged on two days of the week counts once; users are disjoint across partitions, so
   the counts of several partitions simply add.
2. :func:`wellbeing_rows`: the summed counts, with the week's active users (the flattery
   watch's counts, :func:`usersignals.metrics.flattery.day_counts`, and ``week_users``), into
   the report rows.

Which weeks are served (:func:`served_weeks`): those whose seven days all lie within what the
states hold, ``[max(first, horizon), last]``, with ``first`` and ``last`` the first and last day
held and ``horizon`` the latest retention horizon of the partitions (events before a horizon are
no longer folded, so a week that starts before it may miss some). Such a week holds every event
of its days, so its rows equal history's; a week cut by a horizon or still running is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from usersignals.ingest.rules import CHOICES
from usersignals.metrics.day import HIGH_SEVERITIES, DayState
from usersignals.metrics.periods import WEEK_DAYS, iso_week, week_days

__all__ = ["CATEGORIES", "served_weeks", "week_flags", "wellbeing_rows"]

CATEGORIES: tuple[str, ...] = tuple(sorted(CHOICES["category"]))
"""The risk categories of the event contract, in row order (``risk_categories`` in the SQL)."""

FlagKey = tuple[str, "str | None", str]
"""(ISO week ``YYYY-Www``, model or None for all models, category)."""


def served_weeks(first: date, last: date, horizon: date | None = None) -> list[str]:
    """The ISO weeks (``YYYY-Www``) whose seven days all lie in ``[max(first, horizon), last]``,
    oldest first."""
    lo = first if horizon is None else max(first, horizon)
    monday = lo + timedelta(days=(-lo.weekday()) % WEEK_DAYS)  # the first Monday on or after
    weeks: list[str] = []
    while monday + timedelta(days=WEEK_DAYS - 1) <= last:
        weeks.append(iso_week(monday))
        monday += timedelta(days=WEEK_DAYS)
    return weeks


def week_flags(week: str, wdays: Iterable[DayState]) -> list[list[Any]]:
    """The distinct flagged users of one ISO week in one partition: [week, model, category,
    flagged users, flagged users high] rows with a flagged user (model None: all models; a
    model's rows count the flags attributed to it). ``wdays``: the partition's days of the
    week (all of them)."""
    held = list(wdays)
    every: dict[str, set[str]] = {}
    every_high: dict[str, set[str]] = {}
    for d in held:
        for (category, severity), users in d.risk_users.items():
            if category is None:
                continue
            every.setdefault(category, set()).update(users)
            if severity in HIGH_SEVERITIES:
                every_high.setdefault(category, set()).update(users)
    rows: list[list[Any]] = [
        [week, None, c, len(users), len(every_high.get(c, ()))] for c, users in every.items()
    ]
    per_model: dict[tuple[str, str], set[str]] = {}
    per_model_high: dict[tuple[str, str], set[str]] = {}
    for d in held:
        for (model, category), cells in d.model_flagged.items():
            if model is None or category is None:
                continue  # no model known: in the all-models rows only
            per_model.setdefault((model, category), set()).update(cells)
        for (model, category), cells in d.model_flagged_high.items():
            if model is not None and category is not None:
                per_model_high.setdefault((model, category), set()).update(cells)
    rows += [
        [week, m, c, len(users), len(per_model_high.get((m, c), ()))]
        for (m, c), users in per_model.items()
    ]
    return rows


def wellbeing_rows(
    weeks: Iterable[str],
    week_users: Mapping[str, int],
    model_users: Mapping[tuple[str, str], int],
    flagged: Mapping[FlagKey, Sequence[int]],
) -> list[dict[str, Any]]:
    """The ``wellbeing_weekly`` rows of ``weeks`` (report JSON shape, the SQL's row set).

    Args:
        weeks: ISO weeks (``YYYY-Www``) to give rows for; a week without an active user has none
            (history has rows for the weeks with data only).
        week_users: {week: distinct users with any event in it}.
        model_users: {(model, week): distinct users with an event carrying the model in it}.
        flagged: {(week, model or None for all models, category): (flagged users, flagged
            users high)}; missing cells are zeros.

    Returns:
        Per week, the all-models row and each model active in the week or with a flag
        attributed to it, each with every category of the contract; ordered by week, model
        (all models first), category.
    """
    models_of: dict[str, set[str]] = {}  # week -> models active in it or with a flag
    for m, w in model_users:
        models_of.setdefault(w, set()).add(m)
    for w, fm, _ in flagged:
        if fm is not None:
            models_of.setdefault(w, set()).add(fm)
    rows: list[dict[str, Any]] = []
    for week in sorted(set(weeks)):
        total = week_users.get(week, 0)
        if not total:
            continue
        monday = week_days(week)[0].isoformat()
        for model in [None, *sorted(models_of.get(week, ()))]:
            n = total if model is None else model_users.get((model, week), 0)
            for category in CATEGORIES:
                users, high = flagged.get((week, model, category), (0, 0))
                rows.append(
                    {
                        "week": monday,
                        "model": model,
                        "category": category,
                        "flagged_users": users,
                        "flagged_users_high": high,
                        "active_users": n,
                        "share": round(users / n, 6) if n else None,
                        "share_high": round(high / n, 6) if n else None,
                    }
                )
    return rows
