"""An independent arena fit, for tests that need expected ratings of a whole data set.

Plain Python, no numpy linear algebra and nothing of :mod:`usersignals.warehouse.arena`: the
documented model (README, "arena rating") computed the long way.

* Bradley-Terry on the Elo scale: ``P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400))``; a
  ``tie`` or ``both_bad`` vote is half a win to each side.
* Strengths maximise the log-likelihood plus a Gaussian prior ``-prior / 2 * sum(theta ** 2)``
  on the natural-log strengths (``PRIOR``, the one constant taken from the package), by damped
  Newton steps solved with Gaussian elimination; ratings are ``1000 + 400 * theta / ln 10``.
* The 95 % interval is the 2.5th and 97.5th percentile (linear interpolation) of the ratings of
  ``resamples`` multinomial resamples of the votes over the table's keys in sorted order, drawn
  by ``numpy.random.default_rng(seed).multinomial``: the documented resampling, so the same
  seed gives the same resamples.
* Rank: 1 + the number of models whose ``ci_low`` is above this model's ``ci_high``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from usersignals.warehouse.arena import PRIOR

__all__ = ["reference_arena", "same_arena"]

BASE = 1000.0
SCALE = 400.0
SHARE_A = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """``x`` with ``matrix @ x == rhs``, by Gaussian elimination with partial pivoting."""
    n = len(rhs)
    rows = [[*matrix[i], rhs[i]] for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, n):
            factor = rows[r][col] / rows[col][col]
            for c in range(col, n + 1):
                rows[r][c] -= factor * rows[col][c]
    x = [0.0] * n
    for r in reversed(range(n)):
        x[r] = (rows[r][n] - sum(rows[r][c] * x[c] for c in range(r + 1, n))) / rows[r][r]
    return x


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _log_likelihood(wins: list[list[float]], theta: list[float], prior: float) -> float:
    n = len(theta)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if wins[i][j]:
                d = theta[i] - theta[j]
                total -= wins[i][j] * (
                    math.log1p(math.exp(-d)) if d >= 0 else -d + math.log1p(math.exp(d))
                )
    return total - prior / 2 * sum(t * t for t in theta)


def strengths(wins: list[list[float]], prior: float = PRIOR) -> list[float]:
    """Natural-log strengths maximising the penalised likelihood of ``wins[i][j]``."""
    n = len(wins)
    theta = [0.0] * n
    value = _log_likelihood(wins, theta, prior)
    scale = max(1.0, sum(map(sum, wins)))
    for _ in range(200):
        p = [[_sigmoid(theta[i] - theta[j]) for j in range(n)] for i in range(n)]
        games = [[wins[i][j] + wins[j][i] for j in range(n)] for i in range(n)]
        gradient = [
            sum(wins[i][j] - games[i][j] * p[i][j] for j in range(n)) - prior * theta[i]
            for i in range(n)
        ]
        if max(map(abs, gradient)) <= 1e-13 * scale:
            break
        # minus the Hessian: positive definite for prior > 0
        neg_hessian = [
            [
                (sum(games[i][k] * p[i][k] * p[k][i] for k in range(n)) + prior)
                if i == j
                else -games[i][j] * p[i][j] * p[j][i]
                for j in range(n)
            ]
            for i in range(n)
        ]
        step = _solve(neg_hessian, gradient)
        size = 1.0
        while True:
            candidate = [t + size * s for t, s in zip(theta, step, strict=True)]
            new = _log_likelihood(wins, candidate, prior)
            if new >= value or size < 1e-9:
                break
            size /= 2
        theta, value = candidate, new
    mean = sum(theta) / n
    return [t - mean for t in theta]


def _ratings(
    models: Sequence[str], entries: Sequence[tuple[str, str, str]], weights: Sequence[float]
) -> list[float]:
    index = {m: i for i, m in enumerate(models)}
    wins = [[0.0] * len(models) for _ in models]
    for (a, b, winner), weight in zip(entries, weights, strict=True):
        wins[index[a]][index[b]] += weight * SHARE_A[winner]
        wins[index[b]][index[a]] += weight * (1.0 - SHARE_A[winner])
    return [BASE + SCALE * t / math.log(10.0) for t in strengths(wins)]


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


def reference_arena(
    counts: Mapping[tuple[str, str, str], int], *, resamples: int = 200, seed: int = 0
) -> list[dict[str, Any]]:
    """Arena rows of a preference count table ``{(model_a, model_b, winner): votes}``."""
    table = sorted((key, n) for key, n in counts.items() if n)
    if not table:
        return []
    entries = [key for key, _ in table]
    votes = [n for _, n in table]
    models = sorted({m for a, b, _ in entries for m in (a, b)})
    point = _ratings(models, entries, votes)
    total = sum(votes)
    draws = np.random.default_rng(seed).multinomial(
        total, [v / total for v in votes], size=resamples
    )
    boot = [_ratings(models, entries, [float(x) for x in draw]) for draw in draws]
    rows: list[dict[str, Any]] = []
    for i, model in enumerate(models):
        column = [b[i] for b in boot] or [point[i]]
        rows.append(
            {
                "model": model,
                "rating": round(point[i], 6),
                "ci_low": round(_percentile(column, 0.025), 6),
                "ci_high": round(_percentile(column, 0.975), 6),
                "votes": sum(n for (a, b, _), n in table if model in (a, b)),
            }
        )
    for row in rows:
        row["rank"] = 1 + sum(other["ci_low"] > row["ci_high"] for other in rows)
    return rows


def same_arena(got: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]]) -> bool:
    """Rows equal, ratings and bounds within 1e-4 Elo points.

    Both fits stop at a gradient tolerance; where the likelihood is nearly flat (a model that
    lost every vote is held by the prior alone) that leaves digits of the 6th decimal apart.
    """
    if [(r["model"], r["votes"], r["rank"]) for r in got] != [
        (r["model"], r["votes"], r["rank"]) for r in expected
    ]:
        return False
    return all(
        set(g) == set(e) and all(abs(g[k] - e[k]) <= 1e-4 for k in ("rating", "ci_low", "ci_high"))
        for g, e in zip(got, expected, strict=True)
    )
