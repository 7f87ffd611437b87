"""Arena ratings: exact small cases, recovery of known strengths, an independent fit."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from tests.warehouse.test_flattery import memory_warehouse
from usersignals.ingest.contract import Event
from usersignals.warehouse.arena import (
    PRIOR,
    ArenaInputError,
    arena_counts,
    arena_report,
    fit_arena,
)

Table = dict[tuple[str, str, str], int]


def _rows(point: dict[str, float], votes: dict[str, int]) -> list[dict[str, Any]]:
    """Rows of a fit without resamples (each interval collapses onto its rating)."""
    out = [
        {"model": m, "rating": r, "ci_low": r, "ci_high": r, "votes": votes[m]}
        for m, r in sorted(point.items())
    ]
    for row in out:
        row["rank"] = 1 + sum(o["ci_low"] > row["ci_high"] for o in out)
    return out


# ratings on the Elo scale: the winner of k of n games (ties as halves) sits
# 400 * log10(k / (n - k)) above the loser, the pair centred on 1000.
@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        pytest.param({}, [], id="empty"),
        pytest.param({("a", "b", "a"): 0}, [], id="only-zero-counts"),
        pytest.param(
            {("a", "b", "a"): 30, ("a", "b", "b"): 10},
            _rows({"a": 1095.424251, "b": 904.575749}, {"a": 40, "b": 40}),
            id="3-to-1",
        ),
        pytest.param(
            {("b", "a", "b"): 30, ("b", "a", "a"): 10},
            _rows({"a": 1095.424251, "b": 904.575749}, {"a": 40, "b": 40}),
            id="sides-swapped",
        ),
        pytest.param(
            {
                ("a", "b", "a"): 20,
                ("a", "b", "b"): 10,
                ("b", "a", "tie"): 6,
                ("a", "b", "both_bad"): 4,
            },
            _rows({"a": 1044.36975, "b": 955.63025}, {"a": 40, "b": 40}),
            id="ties-and-both-bad-are-halves",
        ),
        pytest.param(
            {("a", "b", "tie"): 7, ("b", "a", "both_bad"): 3},
            _rows({"a": 1000.0, "b": 1000.0}, {"a": 10, "b": 10}),
            id="all-ties",
        ),
        pytest.param(
            {("a", "b", "a"): 10, ("b", "a", "b"): 10, ("a", "b", "b"): 20, ("a", "c", "tie"): 0},
            _rows({"a": 1000.0, "b": 1000.0}, {"a": 40, "b": 40}),
            id="even-and-zero-entries-ignored",
        ),
    ],
)
def test_exact_maximum_likelihood(counts: Table, expected: list[dict[str, Any]]) -> None:
    assert fit_arena(counts, resamples=0, prior=0) == expected


def test_three_models_with_intervals() -> None:
    counts = {
        ("m1", "m2", "a"): 30,
        ("m1", "m2", "b"): 10,
        ("m2", "m3", "tie"): 5,
        ("m2", "m3", "a"): 20,
        ("m3", "m1", "both_bad"): 4,
        ("m3", "m1", "b"): 7,
    }
    assert fit_arena(counts) == [
        {"model": "m1", "rating": 1208.082409, "ci_low": 1131.453441, "ci_high": 1292.229932,
         "votes": 51, "rank": 1},
        {"model": "m2", "rating": 1045.763268, "ci_low": 985.406851, "ci_high": 1103.688891,
         "votes": 65, "rank": 2},
        {"model": "m3", "rating": 746.154323, "ci_low": 648.517244, "ci_high": 822.275289,
         "votes": 36, "rank": 3},
    ]  # fmt: skip


def test_overlapping_intervals_share_a_rank() -> None:
    counts = {("x", "y", "a"): 11, ("x", "y", "b"): 9, ("y", "z", "a"): 30, ("y", "z", "b"): 5}
    rows = fit_arena(counts, resamples=100, seed=3)
    assert [(r["model"], r["rank"]) for r in rows] == [("x", 1), ("y", 1), ("z", 3)]


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        pytest.param(
            {("x", "y", "a"): 3},
            [("x", 1589.236867, 1), ("y", 410.763133, 2)],
            id="all-wins-stays-finite",
        ),
        pytest.param(
            {("x", "y", "a"): 3, ("z", "w", "b"): 2},
            [("w", 1558.612902, 2), ("x", 1589.236867, 1), ("y", 410.763133, 4),
             ("z", 441.387098, 3)],
            id="disconnected-pieces-each-centred",
        ),
    ],
)  # fmt: skip
def test_degenerate_tables_are_deterministic(
    counts: Table, expected: list[tuple[str, float, int]]
) -> None:
    rows = fit_arena(counts, resamples=0)
    assert [(r["model"], r["rating"], r["rank"]) for r in rows] == expected


@pytest.mark.parametrize(
    ("counts", "kwargs", "message"),
    [
        ({("a", "b", "c"): 1}, {}, "Invalid arena count ('a', 'b', 'c'): 1 "
         "(winner must be one of a, b, tie, both_bad)"),
        ({("a", "a", "a"): 1}, {}, "Invalid arena count ('a', 'a', 'a'): 1 "
         "(a model cannot be compared with itself)"),
        ({("a", "b", "a"): -1}, {}, "Invalid arena count ('a', 'b', 'a'): -1 "
         "(count must be an integer >= 0)"),
        ({("a", "b", "a"): 1.5}, {}, "Invalid arena count ('a', 'b', 'a'): 1.5 "
         "(count must be an integer >= 0)"),
        ({("a", "b"): 1}, {}, "Invalid arena count ('a', 'b'): 1 "
         "(key must be (model_a, model_b, winner) strings)"),
        ({}, {"resamples": -1}, "Invalid arena count 'resamples': -1 (must be an integer >= 0)"),
        ({}, {"prior": -0.5}, "Invalid arena count 'prior': -0.5 (must be a number >= 0)"),
    ],
)  # fmt: skip
def test_bad_input_is_refused(counts: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ArenaInputError) as exc:
        fit_arena(counts, **kwargs)
    assert str(exc.value) == message
    assert exc.value.retryable is False


_models = st.sampled_from(["m-1", "m-2", "m-3", "m-4"])
_tables = st.dictionaries(
    st.tuples(_models, _models, st.sampled_from(["a", "b", "tie", "both_bad"])).filter(
        lambda k: k[0] != k[1]
    ),
    st.integers(0, 40),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(_tables, st.randoms(use_true_random=False))
def test_same_table_same_rows_whatever_the_order(table: Table, rnd: Any) -> None:
    items = list(table.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    with_zero = {**shuffled, ("m-9", "m-8", "tie"): 0}
    expected = fit_arena(table, resamples=20, seed=5)
    assert fit_arena(shuffled, resamples=20, seed=5) == expected
    assert fit_arena(with_zero, resamples=20, seed=5) == expected
    voted = {m for (a, b, _), n in table.items() if n for m in (a, b)}
    assert [r["model"] for r in expected] == sorted(voted)
    if expected:
        mean = sum(r["rating"] for r in expected) / len(expected)
        assert mean == pytest.approx(1000.0, abs=1e-5)
    for row in expected:
        assert row["ci_low"] <= row["ci_high"]
        assert row["rank"] == 1 + sum(o["ci_low"] > row["ci_high"] for o in expected)
        assert row["votes"] == sum(n for (a, b, _), n in table.items() if row["model"] in (a, b))


@settings(max_examples=40, deadline=None)
@given(_tables)
def test_swapping_sides_keeps_the_ratings(table: Table) -> None:
    flip = {"a": "b", "b": "a", "tie": "tie", "both_bad": "both_bad"}
    swapped: Counter[tuple[str, str, str]] = Counter()
    for (a, b, w), n in table.items():
        swapped[(b, a, flip[w])] += n
    left = fit_arena(table, resamples=0)
    right = fit_arena(dict(swapped), resamples=0)
    assert [(r["model"], r["votes"]) for r in left] == [(r["model"], r["votes"]) for r in right]
    for x, y in zip(left, right, strict=True):
        assert x["rating"] == pytest.approx(y["rating"], abs=2e-6)


# --- recovery of known strengths -------------------------------------------------------------

TRUE = {"m0": 750.0, "m1": 850.0, "m2": 950.0, "m3": 1050.0, "m4": 1150.0, "m5": 1250.0}


def _simulate(seed: int, votes: int = 3000) -> Table:
    """Votes between random pairs, each won with its Bradley-Terry probability."""
    rng = np.random.default_rng(seed)
    names = sorted(TRUE)
    strength = np.array([TRUE[m] for m in names])
    a = rng.integers(0, len(names), votes)
    b = (a + rng.integers(1, len(names), votes)) % len(names)
    p_a = 1.0 / (1.0 + 10.0 ** ((strength[b] - strength[a]) / 400.0))
    a_wins = rng.random(votes) < p_a
    return dict(
        Counter(
            (names[i], names[j], "a" if w else "b") for i, j, w in zip(a, b, a_wins, strict=True)
        )
    )


def test_known_strengths_are_recovered() -> None:
    trials = 50
    covered = Counter[str]()
    for seed in range(trials):
        rows = fit_arena(_simulate(seed), resamples=100, seed=seed)
        assert [r["model"] for r in sorted(rows, key=lambda r: r["rating"])] == sorted(TRUE)
        for row in rows:
            covered[row["model"]] += row["ci_low"] <= TRUE[row["model"]] <= row["ci_high"]
    # the true ratings (centred on 1000, like the fit) fall inside their 95 % intervals in at
    # least 90 % of the (trial, model) cases: 280 of 300 here, 93.3 %
    assert sum(covered.values()) >= 0.9 * trials * len(TRUE)
    assert covered == {"m0": 44, "m1": 48, "m2": 48, "m3": 46, "m4": 47, "m5": 47}


# --- an independent fit: weighted logistic regression on the ±1 design ----------------------

FIXED: Table = {
    ("gpt-x", "claude-y", "a"): 41,
    ("gpt-x", "claude-y", "b"): 37,
    ("gpt-x", "claude-y", "tie"): 9,
    ("claude-y", "gemini-z", "a"): 25,
    ("claude-y", "gemini-z", "b"): 12,
    ("claude-y", "gemini-z", "both_bad"): 6,
    ("gemini-z", "llama-w", "a"): 18,
    ("gemini-z", "llama-w", "b"): 19,
    ("llama-w", "gpt-x", "b"): 30,
    ("llama-w", "gpt-x", "a"): 8,
    ("llama-w", "gpt-x", "tie"): 5,
    ("mistral-v", "gpt-x", "a"): 3,
    ("mistral-v", "gpt-x", "b"): 14,
    ("mistral-v", "llama-w", "tie"): 4,
    ("claude-y", "mistral-v", "a"): 11,
    ("claude-y", "mistral-v", "both_bad"): 2,
}


def _logistic_fit(table: Table, l2: float) -> dict[str, float]:
    """Ratings from scipy: logistic loss over rows x = e_a - e_b, ties as two half rows."""
    names = sorted({m for a, b, _ in table for m in (a, b)})
    rows, labels, weights = [], [], []
    for (a, b, winner), n in table.items():
        x = np.zeros(len(names))
        x[names.index(a)], x[names.index(b)] = 1.0, -1.0
        outcomes = {"a": [(1.0, n)], "b": [(0.0, n)]}.get(winner, [(1.0, n / 2), (0.0, n / 2)])
        for y, w in outcomes:
            rows.append(x)
            labels.append(y)
            weights.append(w)
    design, y, w = np.array(rows), np.array(labels), np.array(weights)
    sign = 2 * y - 1

    def loss(beta: np.ndarray) -> float:
        margin = sign * (design @ beta)
        return float((w * np.logaddexp(0.0, -margin)).sum() + l2 / 2 * beta @ beta)

    def grad(beta: np.ndarray) -> np.ndarray:
        margin = sign * (design @ beta)
        return -(design.T @ (w * sign / (1.0 + np.exp(margin)))) + l2 * beta

    def hess(beta: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        return (design.T * (w * p * (1.0 - p))) @ design + l2 * np.eye(len(beta))

    if l2 == 0:  # unidentified up to a shift: pin the last model at 0
        pin = np.eye(len(names))[:, :-1]
        free = minimize(
            lambda b: loss(pin @ b),
            np.zeros(len(names) - 1),
            jac=lambda b: pin.T @ grad(pin @ b),
            hess=lambda b: pin.T @ hess(pin @ b) @ pin,
            method="trust-exact",
            options={"gtol": 1e-12},
        )
        beta = pin @ free.x
    else:
        beta = minimize(
            loss, np.zeros(len(names)), jac=grad, hess=hess, method="trust-exact",
            options={"gtol": 1e-12},
        ).x  # fmt: skip
    beta -= beta.mean()
    return {m: 1000.0 + 400.0 * b / math.log(10.0) for m, b in zip(names, beta, strict=True)}


@pytest.mark.parametrize("prior", [0.0, PRIOR])
def test_matches_an_independent_logistic_regression(prior: float) -> None:
    expected = _logistic_fit(FIXED, prior)
    rows = fit_arena(FIXED, resamples=0, prior=prior)
    assert [r["model"] for r in rows] == sorted(expected)
    for row in rows:
        assert abs(row["rating"] - expected[row["model"]]) < 1e-6, row


# --- the count table from the warehouse --------------------------------------------------------


def _votes() -> list[Event]:
    """u1 votes 3 times on day 0 and once on day 1; u2 once on day 0; one vote sent twice."""
    start = datetime(2026, 4, 1, 8, tzinfo=UTC)

    def vote(n: int, user: str, day: int, minute: int, winner: str, a: str = "p") -> Event:
        return Event(event_id=f"v{n}", type="preference", user_id=user,
                     ts=start + timedelta(days=day, minutes=minute),
                     model_a=a, model_b="q", winner=winner)  # fmt: skip

    first = vote(1, "u1", 0, 5, "a")
    return [
        vote(3, "u1", 0, 9, "tie"),
        first,
        vote(2, "u1", 0, 7, "b"),
        vote(4, "u1", 1, 1, "a"),
        vote(5, "u2", 0, 1, "both_bad", a="r"),
        first,
        Event(event_id="m1", type="message", user_id="u1", ts=start, role="user", model="p"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {("p", "q", "a"): 2, ("p", "q", "b"): 1, ("p", "q", "tie"): 1,
              ("r", "q", "both_bad"): 1}),
        ({"since": date(2026, 4, 2)}, {("p", "q", "a"): 1}),
        ({"cap_per_user_day": 1}, {("p", "q", "a"): 2, ("r", "q", "both_bad"): 1}),
        ({"cap_per_user_day": 2}, {("p", "q", "a"): 2, ("p", "q", "b"): 1,
                                   ("r", "q", "both_bad"): 1}),
        ({"since": date(2026, 4, 3)}, {}),
    ],
)  # fmt: skip
def test_count_table_from_sql(kwargs: dict[str, Any], expected: Table) -> None:
    con = memory_warehouse(_votes())
    assert arena_counts(con, **kwargs) == expected
    assert arena_report(con, resamples=50, seed=2, **kwargs) == fit_arena(
        expected, resamples=50, seed=2
    )


def test_cap_must_be_positive() -> None:
    with pytest.raises(ArenaInputError) as exc:
        arena_counts(memory_warehouse([]), cap_per_user_day=0)
    assert str(exc.value) == "Invalid arena count 'cap_per_user_day': 0 (must be an integer >= 1)"
