"""The flattery watch's one definition: intervals, tests, complete weeks and the flag."""

from __future__ import annotations

import math
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usersignals.config import ConfigError, Settings
from usersignals.metrics.flattery import (
    FlatteryParams,
    WeekCounts,
    garwood,
    is_complete,
    params_of,
    previous_week,
    rise,
    watch_rows,
    wilson,
    z_critical,
)

# 2026-W10 is Monday 03-02 .. Sunday 03-08; 2026-W11 is 03-09 .. 03-15
D = date.fromisoformat


def wc(week: str, up: int, down: int, users: int, flags: int, model: str = "m") -> WeekCounts:
    return WeekCounts(model, week, up, down, users, flags, 0, users)


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [(8, 10, (0.490162, 0.943318)), (0, 10, (0.0, 0.277533)), (10, 10, (0.722467, 1.0)),
     (50, 100, (0.403832, 0.596168))],
)  # fmt: skip
def test_wilson(k: int, n: int, expected: tuple[float, float]) -> None:
    interval = wilson(k, n)
    assert interval is not None
    assert (round(interval[0], 6), round(interval[1], 6)) == expected


def test_wilson_without_votes() -> None:
    assert wilson(0, 0) is None


@pytest.mark.parametrize(
    ("k", "expected"),
    [(0, (0.0, 3.688879)), (1, (0.025318, 5.571643)), (10, (4.795389, 18.390356))],
)
def test_garwood(k: int, expected: tuple[float, float]) -> None:
    low, high = garwood(k)
    assert (round(low, 6), round(high, 6)) == expected


@pytest.mark.parametrize(
    ("this", "last", "z_up", "z_risk"),
    [
        # pooled 0.55: z = 0.1 / sqrt(0.55 * 0.45 * 0.02); flags 30 of 40, q = 1/2
        (wc("2026-W11", 60, 40, 100, 30), wc("2026-W10", 50, 50, 100, 10), 1.421338, 3.162278),
        # q = 300 / 400; the rate fell: negative z
        (wc("2026-W11", 40, 60, 300, 3), wc("2026-W10", 50, 50, 100, 1), -1.421338, 0.0),
        # no votes last week; every vote an up (pooled 1): no thumbs test
        (wc("2026-W11", 5, 0, 10, 1), wc("2026-W10", 0, 0, 10, 0), None, 1.0),
        (wc("2026-W11", 5, 0, 10, 0), wc("2026-W10", 3, 0, 10, 0), None, None),
    ],
)
def test_rise(this: WeekCounts, last: WeekCounts, z_up: float | None, z_risk: float | None) -> None:
    r = rise(this, last)
    assert (None if r.z_thumbs_up is None else round(r.z_thumbs_up, 6)) == z_up
    assert (None if r.z_risk is None else round(r.z_risk, 6)) == z_risk
    for z, p in ((r.z_thumbs_up, r.p_thumbs_up), (r.z_risk, r.p_risk)):
        assert (p is None) == (z is None)
        if z is not None and p is not None:
            assert p == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-12)


@pytest.mark.parametrize(
    ("week", "first", "last", "complete"),
    [
        ("2026-W10", "03-02", "03-09", True),  # Monday first, an event the next Monday
        ("2026-W10", "03-02", "03-08", False),  # the newest day is its Sunday: current week
        ("2026-W10", "03-03", "03-20", False),  # data starts on its Tuesday
        ("2026-W10", "02-20", "03-09", True),
        ("2026-W11", "03-02", "03-09", False),
        ("2026-W09", "03-02", "03-09", False),  # before the first day of data
    ],
)
def test_complete_week(week: str, first: str, last: str, complete: bool) -> None:
    assert is_complete(week, (D(f"2026-{first}"), D(f"2026-{last}"))) is complete


def test_no_data_no_complete_week() -> None:
    assert is_complete("2026-W10", None) is False


@pytest.mark.parametrize(
    ("week", "before"),
    [("2026-W11", "2026-W10"), ("2027-W01", "2026-W53"), ("2026-W01", "2025-W52")],
)
def test_previous_week(week: str, before: str) -> None:
    assert previous_week(week) == before


RISING = [wc("2026-W10", 50, 50, 100, 10), wc("2026-W11", 70, 30, 100, 30)]
FULL = (D("2026-03-02"), D("2026-03-16"))


@pytest.mark.parametrize(
    ("counts", "data_range", "params", "flags"),
    [
        pytest.param(RISING, FULL, FlatteryParams(), [False, True], id="both-significant"),
        pytest.param(RISING, (D("2026-03-02"), D("2026-03-15")), FlatteryParams(),
                     [False, False], id="this-week-incomplete"),
        pytest.param(RISING, (D("2026-03-03"), D("2026-03-16")), FlatteryParams(),
                     [False, False], id="last-week-incomplete"),
        pytest.param(RISING, FULL, FlatteryParams(min_votes=101), [False, False],
                     id="too-few-votes"),
        pytest.param(RISING, FULL, FlatteryParams(min_votes=100, min_users=100), [False, True],
                     id="exactly-the-minimum"),
        pytest.param(RISING, FULL, FlatteryParams(min_users=101), [False, False],
                     id="too-few-users"),
        # z_up = 2.8868, z_risk = 3.1623: both above 2.3263 (0.01), not above 3.0902 (0.001)
        pytest.param(RISING, FULL, FlatteryParams(level=0.01), [False, True], id="level-0.01"),
        pytest.param(RISING, FULL, FlatteryParams(level=0.001), [False, False],
                     id="level-0.001"),
        pytest.param([RISING[0], wc("2026-W11", 70, 30, 100, 14)], FULL, FlatteryParams(),
                     [False, False], id="flags-rise-not-significant"),
        pytest.param([RISING[0], wc("2026-W11", 51, 49, 100, 30)], FULL, FlatteryParams(),
                     [False, False], id="rate-rise-not-significant"),
        pytest.param([wc("2026-W09", 50, 50, 100, 10), RISING[1]],
                     (D("2026-02-23"), D("2026-03-16")), FlatteryParams(), [False, False],
                     id="gap-week"),
    ],
)  # fmt: skip
def test_flagged(
    counts: list[WeekCounts],
    data_range: tuple[date, date],
    params: FlatteryParams,
    flags: list[bool],
) -> None:
    assert [r["flagged"] for r in watch_rows(counts, data_range, params)] == flags


def test_row_by_hand() -> None:
    rows = watch_rows(RISING, FULL, FlatteryParams())
    assert rows[1] == {
        "model": "m", "week": "2026-W11", "complete": True, "thumbs_up": 70,
        "thumbs_down": 30, "thumbs_up_rate": 0.7, "thumbs_up_rate_low": 0.604151,
        "thumbs_up_rate_high": 0.781051, "active_users": 100, "active_share": 1.0,
        "risk_flags": 30, "risk_flags_per_1k": 300.0, "risk_flags_per_1k_low": 202.40874,
        "risk_flags_per_1k_high": 428.268654, "users_at_risk": 0, "p_thumbs_up_rise": 0.001946,
        "p_risk_rise": 0.000783, "flagged": True,
    }  # fmt: skip
    assert (rows[0]["p_thumbs_up_rise"], rows[0]["p_risk_rise"], rows[0]["flagged"]) == (
        None,
        None,
        False,
    )


def test_a_row_without_active_users_is_left_out() -> None:
    assert watch_rows([wc("2026-W10", 0, 0, 0, 0)], FULL, FlatteryParams()) == []


def test_noise_is_not_flagged() -> None:
    # the old flag fired on 0.669742 -> 0.669749 with a few more flags
    counts = [
        wc("2026-W10", 669742, 330258, 50000, 500),
        wc("2026-W11", 669749, 330251, 50000, 510),
    ]
    assert [r["flagged"] for r in watch_rows(counts, FULL, FlatteryParams())] == [False, False]


@given(
    st.tuples(*[st.integers(0, 400)] * 4),
    st.tuples(*[st.integers(0, 400)] * 4),
    st.floats(0.001, 0.2),
)
def test_flagged_is_both_p_values_below_the_level(
    a: tuple[int, int, int, int], b: tuple[int, int, int, int], level: float
) -> None:
    counts = [wc("2026-W10", *a), wc("2026-W11", *b)]
    params = FlatteryParams(level=level, min_votes=1, min_users=1)
    rows = watch_rows(counts, FULL, params)
    for row in rows:
        if row["week"] != "2026-W11":
            continue
        r = rise(counts[1], counts[0])
        # p < level exactly when z > z_critical (a p-value at the level itself is not flagged)
        expected = (
            r.p_thumbs_up is not None
            and r.p_risk is not None
            and min(a[0] + a[1], b[0] + b[1]) >= 1
            and min(a[2], b[2]) >= 1
            and r.p_thumbs_up < level
            and r.p_risk < level
        )
        if expected != row["flagged"]:
            # only at the float boundary of the level itself
            assert r.z_thumbs_up is not None
            assert r.z_risk is not None
            zc = z_critical(level)
            assert min(abs(r.z_thumbs_up - zc), abs(r.z_risk - zc)) < 1e-9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": 0.0}, "Invalid flattery_level: 0.0 (must be between 0 and 0.5)"),
        ({"level": 0.5}, "Invalid flattery_level: 0.5 (must be between 0 and 0.5)"),
        ({"min_votes": 0}, "Invalid flattery_min_votes: 0 (must be at least 1)"),
        ({"min_users": 0}, "Invalid flattery_min_users: 0 (must be at least 1)"),
    ],
)
def test_bad_params(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        FlatteryParams(**kwargs)  # type: ignore[arg-type]
    assert str(exc.value) == message


def test_params_from_settings_and_environment() -> None:
    env = {
        "USERSIGNALS_FLATTERY_LEVEL": "0.01",
        "USERSIGNALS_FLATTERY_MIN_VOTES": "200",
        "USERSIGNALS_FLATTERY_MIN_USERS": "50",
    }
    assert params_of(Settings.load(env)) == FlatteryParams(0.01, 200, 50)
    assert params_of(Settings()) == FlatteryParams(0.05, 30, 30)
    with pytest.raises(ConfigError) as exc:
        Settings.load({"USERSIGNALS_FLATTERY_LEVEL": "often"})
    assert str(exc.value) == "Invalid flattery_level: 'often' (not a number)"
