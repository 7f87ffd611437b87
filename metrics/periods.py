"""The report's periods: one day-range rule for every key, and which rows are complete.

Both report paths (live from the workers, history from the warehouse) build every table over
all the data, then hand it to :func:`select_range`; the rule therefore lives here only:

- A row keyed by a ``day`` is kept when that day lies in ``[from, to]``.
- A row keyed by an ISO ``week`` is kept when any day of the week lies in ``[from, to]``; its
  numbers are those of the whole week.
- Trailing windows (WAU, MAU, users at risk in the last 7 days) keep counting the days before
  ``from``, as their definitions say.
- ``arena`` is fitted to the preference votes whose day lies in the range, and ``rejected``
  counts the input received on a day in the range: both paths take the range before they
  compute those two (:meth:`DayRange.contains`), because their rows have no day to filter by.

The report carries the range it was made for as ``"range": {"from": …, "to": …}`` (``null``:
unbounded on that side).

Completeness (:func:`completeness`): the newest day with data is never complete (its events may
still be arriving: the "collapse" at the right edge of every chart), and a trailing window is
complete only when the day is and the window starts on or after the first day with data.
The warehouse computes the same flags in SQL (``active_users``, ``events_by_day`` and
``users_at_risk_weekly`` in ``activity.sql`` and ``risk.sql``); the live path calls this function.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from usersignals.errors import DayRangeError

__all__ = [
    "DayRange",
    "DayRangeError",
    "completeness",
    "iso_week",
    "select_range",
    "week_days",
]

WEEK_DAYS = 7
MONTH_DAYS = 30


def _day(value: object, first: object, last: object) -> date | None:
    if value is None or isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise DayRangeError(first, last, "expected YYYY-MM-DD")


@dataclass(frozen=True, slots=True)
class DayRange:
    """Days ``[first, last]``, each side inclusive; ``None`` leaves that side open."""

    first: date | None = None
    last: date | None = None

    def __post_init__(self) -> None:
        if self.first is not None and self.last is not None and self.first > self.last:
            raise DayRangeError(self.first.isoformat(), self.last.isoformat(), "from is after to")

    @classmethod
    def parse(cls, first: object, last: object) -> DayRange:
        """The range of two optional days given as ``date`` or ``YYYY-MM-DD`` strings.

        Raises:
            DayRangeError: a day is malformed, or ``first`` is after ``last``.
        """
        return cls(_day(first, first, last), _day(last, first, last))

    def contains(self, day: date | str) -> bool:
        """Whether ``day`` (a date or ``YYYY-MM-DD``) lies in the range."""
        d = day.isoformat() if isinstance(day, date) else day
        return (self.first is None or d >= self.first.isoformat()) and (
            self.last is None or d <= self.last.isoformat()
        )

    def overlaps_week(self, week: str) -> bool:
        """Whether any day of the ISO week ``YYYY-Www`` lies in the range."""
        monday, sunday = week_days(week)
        return (self.first is None or sunday >= self.first) and (
            self.last is None or monday <= self.last
        )

    def as_json(self) -> dict[str, str | None]:
        """``{"from": …, "to": …}`` as the report carries it."""
        return {
            "from": self.first.isoformat() if self.first else None,
            "to": self.last.isoformat() if self.last else None,
        }

    def describe(self) -> str:
        """One line for the head of a printed report."""
        if self.first is None and self.last is None:
            return "Range: every day with data"
        lo = self.first.isoformat() if self.first else "the first day"
        hi = self.last.isoformat() if self.last else "the last day"
        return (
            f"Range: {lo} to {hi} (days in the range; weeks touching it, whole; "
            "WAU/MAU windows count the days before it)"
        )


def iso_week(day: date) -> str:
    """The ISO week of a day as ``YYYY-Www``."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_days(week: str) -> tuple[date, date]:
    """Monday and Sunday of the ISO week ``YYYY-Www``."""
    year, _, num = week.partition("-W")
    monday = date.fromisocalendar(int(year), int(num), 1)
    return monday, monday + timedelta(days=WEEK_DAYS - 1)


def select_range(report: dict[str, Any], rng: DayRange) -> dict[str, Any]:
    """The report with the rows of day- and week-keyed tables outside ``rng`` left out.

    ``arena`` and ``rejected`` are left as they are (they were computed for the range).
    Sets ``report["range"]``, and the calendar ``"tz"`` / ``"week_start"`` when the report has
    none (UTC days, Monday weeks: the live calendar).
    """
    out: dict[str, Any] = {}
    for key, rows in report.items():
        if key == "range" or not isinstance(rows, list):
            out[key] = rows
        elif rows and isinstance(rows[0], dict) and "day" in rows[0]:
            out[key] = [r for r in rows if rng.contains(r["day"])]
        elif rows and isinstance(rows[0], dict) and "week" in rows[0]:
            out[key] = [r for r in rows if rng.overlaps_week(r["week"])]
        else:
            out[key] = rows
    out["range"] = rng.as_json()
    out.setdefault("tz", "UTC")
    out.setdefault("week_start", "monday")
    return out


def completeness(
    days: Iterable[str], first: date | None, last: date | None, windows: Iterable[int] = ()
) -> list[list[bool]]:
    """For each day (``YYYY-MM-DD``): [day complete, then one flag per window width].

    A day is complete when it is before ``last`` (the newest day with data); a trailing window
    of ``n`` days is complete when the day is and the window's first day is not before
    ``first``.
    """
    widths = list(windows)
    out: list[list[bool]] = []
    for iso in days:
        d = date.fromisoformat(iso)
        done = last is not None and d < last
        row = [done]
        for n in widths:
            row.append(done and first is not None and d - timedelta(days=n - 1) >= first)
        out.append(row)
    return out
