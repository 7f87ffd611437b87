"""The one day-range rule of every report and the completeness of day rows (pure)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from usersignals.metrics.periods import DayRange, DayRangeError, completeness, select_range

D = date.fromisoformat


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-03-05", "2026-03-01", "from='2026-03-05' to='2026-03-01' (from is after to)"),
        ("2026-3-05", None, "from='2026-3-05' to=None (expected YYYY-MM-DD)"),
        (None, "2026-13-01", "from=None to='2026-13-01' (expected YYYY-MM-DD)"),
        ("yesterday", "2026-03-01", "from='yesterday' to='2026-03-01' (expected YYYY-MM-DD)"),
        (20260301, None, "from=20260301 to=None (expected YYYY-MM-DD)"),
    ],
)
def test_a_reversed_or_malformed_range_is_an_error(
    first: object, last: object, message: str
) -> None:
    with pytest.raises(DayRangeError) as exc:
        DayRange.parse(first, last)
    assert str(exc.value) == f"Bad day range: {message}"
    assert (exc.value.first, exc.value.last) == (first, last)
    assert exc.value.retryable is False


@pytest.mark.parametrize(
    ("rng", "day", "inside"),
    [
        (DayRange(), "1999-01-01", True),
        (DayRange(D("2026-03-02"), None), "2026-03-01", False),
        (DayRange(D("2026-03-02"), None), "2026-03-02", True),
        (DayRange(None, D("2026-03-02")), "2026-03-02", True),
        (DayRange(None, D("2026-03-02")), "2026-03-03", False),
        (DayRange(D("2026-03-02"), D("2026-03-02")), "2026-03-02", True),
    ],
)
def test_days_are_inclusive_on_both_sides(rng: DayRange, day: str, inside: bool) -> None:
    assert rng.contains(day) is inside
    assert rng.contains(D(day)) is inside


@pytest.mark.parametrize(
    ("rng", "week", "kept"),
    [
        # 2026-W10 is Monday 03-02 .. Sunday 03-08
        (DayRange(D("2026-03-08"), None), "2026-W10", True),
        (DayRange(D("2026-03-09"), None), "2026-W10", False),
        (DayRange(None, D("2026-03-02")), "2026-W10", True),
        (DayRange(None, D("2026-03-01")), "2026-W10", False),
        (DayRange(D("2026-03-04"), D("2026-03-04")), "2026-W10", True),
        (DayRange(D("2026-12-31"), D("2026-12-31")), "2026-W53", True),
        (DayRange(D("2027-01-03"), D("2027-01-03")), "2026-W53", True),
        (DayRange(D("2027-01-04"), None), "2026-W53", False),
    ],
)
def test_a_week_is_kept_when_one_of_its_days_is_in_range(
    rng: DayRange, week: str, kept: bool
) -> None:
    assert rng.overlaps_week(week) is kept


def test_select_keeps_day_rows_in_range_whole_weeks_and_states_the_range() -> None:
    report: dict[str, Any] = {
        "events_by_day": [{"day": d, "events": 1} for d in ("2026-03-01", "2026-03-09")],
        "flattery_watch": [{"model": "m", "week": w} for w in ("2026-W09", "2026-W10")],
        "arena": [{"model": "m", "rating": 1000.0}],
        "rejected": [{"reason": "empty", "count": 1}],
        "feedback_by_model": [],
    }
    got = select_range(report, DayRange(D("2026-03-02"), D("2026-03-09")))
    assert got == {
        "events_by_day": [{"day": "2026-03-09", "events": 1}],
        "flattery_watch": [{"model": "m", "week": "2026-W10"}],
        "arena": [{"model": "m", "rating": 1000.0}],
        "rejected": [{"reason": "empty", "count": 1}],
        "feedback_by_model": [],
        "range": {"from": "2026-03-02", "to": "2026-03-09"},
        "tz": "UTC",  # the live calendar, when the report names none
        "week_start": "monday",
    }
    assert select_range(report, DayRange())["range"] == {"from": None, "to": None}


@pytest.mark.parametrize(
    ("day", "flags"),
    [
        ("2026-03-01", [True, False, False]),
        ("2026-03-06", [True, False, False]),
        ("2026-03-07", [True, True, False]),
        ("2026-03-29", [True, True, False]),
        ("2026-03-30", [True, True, True]),
        ("2026-04-04", [True, True, True]),
        ("2026-04-05", [False, False, False]),
    ],
)
def test_completeness_of_a_day_and_its_windows(day: str, flags: list[bool]) -> None:
    assert completeness([day], D("2026-03-01"), D("2026-04-05"), (7, 30)) == [flags]


def test_no_data_means_nothing_is_complete() -> None:
    assert completeness(["2026-03-01"], None, None, (7,)) == [[False, False]]


def test_describe_says_what_the_range_does() -> None:
    assert DayRange().describe() == "Range: every day with data"
    assert DayRange(D("2026-03-02"), None).describe() == (
        "Range: 2026-03-02 to the last day (days in the range; weeks touching it, whole; "
        "WAU/MAU windows count the days before it)"
    )
