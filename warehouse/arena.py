"""Arena ratings: Bradley-Terry strengths of model versions from preference votes.

One pure function, :func:`fit_arena`, turns the *count table* of preference votes
``{(model_a, model_b, winner): votes}`` into rating rows. The live worker and the warehouse both
build that table and call it, so the same table always gives the same rows, bit for bit.

Decisions, in one place:

* **Model.** ``P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400))``: Bradley-Terry on the Elo
  scale. ``a``/``b`` is a win; ``tie`` and ``both_bad`` count half a win to each side.
* **Fit.** Maximum likelihood by Newton's method with a backtracking line search on the
  log-likelihood plus a tiny Gaussian (L2) prior, ``-PRIOR / 2 * sum(theta ** 2)`` on the
  natural-log strengths ``theta``. The prior keeps every fit finite and unique: a model that
  won (or lost) every vote, or a comparison graph in several pieces, still gets one
  deterministic answer instead of diverging; with ``PRIOR = 1e-3`` it moves a rating backed
  by a few hundred votes by well under 0.01 Elo. ``prior=0`` gives the plain
  maximum-likelihood fit (it then needs a connected graph where no model won or lost
  everything).
* **Anchor.** The prior makes the strengths sum to zero, so ratings are centred: the mean rating
  over the models in the table is ``BASE`` (1000). ``rating = BASE + SCALE * theta / ln 10``.
* **Intervals.** Bootstrap: each resample draws the same number of votes from the table's own
  vote shares (a multinomial over the table's keys in sorted order, with
  ``numpy.random.default_rng(seed)``), is fitted the same way, and the 2.5th and 97.5th
  percentiles (numpy's linear interpolation) of each model's resampled ratings are its 95 %
  interval. A model absent from a resample sits at the prior's centre in that resample.
* **Rank.** ``1 + the number of models whose ci_low is above this model's ci_high`` (as LMArena
  does): models whose intervals overlap share ranks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from usersignals.errors import ArenaInputError

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "ARENA_COUNTS_SQL",
    "ARENA_DAILY_SQL",
    "BASE",
    "PRIOR",
    "SCALE",
    "WINNERS",
    "ArenaInputError",
    "arena_counts",
    "arena_report",
    "fit_arena",
    "strengths",
]

BASE = 1000.0
"""Mean rating of the models in a table."""

SCALE = 400.0
"""Elo points per factor of ten in the odds of winning."""

PRIOR = 1e-3
"""Precision of the Gaussian prior on each natural-log strength (standard deviation ~31.6)."""

WINNERS = ("a", "b", "tie", "both_bad")
"""Values of ``winner`` in a preference vote."""

_VOTES = """type = 'preference'
      AND model_a IS NOT NULL AND model_b IS NOT NULL AND model_a <> model_b
      AND winner IN ('a', 'b', 'tie', 'both_bad')"""

ARENA_COUNTS_SQL = f"""
WITH votes AS (
    SELECT model_a, model_b, winner,
           row_number() OVER (PARTITION BY user_id, day ORDER BY ts, event_id) AS nth
    FROM events
    WHERE {_VOTES}
      AND (CAST($since AS DATE) IS NULL OR day >= CAST($since AS DATE))
)
SELECT model_a, model_b, winner, count(*) AS votes
FROM votes
WHERE CAST($cap AS BIGINT) IS NULL OR nth <= CAST($cap AS BIGINT)
GROUP BY model_a, model_b, winner
ORDER BY model_a, model_b, winner
"""
"""The count table over the deduplicated ``events`` view.

``$since`` (a date or NULL) keeps votes of that day and later; ``$cap`` (NULL for none) keeps
each user's first ``$cap`` votes of a day, in (``ts``, ``event_id``) order, so that one eager
voter cannot move the ratings alone.
"""

ARENA_DAILY_SQL = f"""
SELECT day, model_a, model_b, winner, count(*) AS votes
FROM events
WHERE {_VOTES}
GROUP BY day, model_a, model_b, winner
"""
"""The count table per day over ``events``, without a cap: summed over days it is the table of
:func:`arena_counts` with no ``since`` and no cap (what the report fits). Per-day rollups keep it.
"""

_TOLERANCE = 1e-12
_MAX_ITERATIONS = 100

FloatArray = npt.NDArray[np.float64]


def fit_arena(
    counts: Mapping[tuple[str, str, str], int],
    *,
    resamples: int = 200,
    seed: int = 0,
    prior: float = PRIOR,
) -> list[dict[str, Any]]:
    """Arena rows from a preference count table.

    Args:
        counts: ``(model_a, model_b, winner) -> votes``; ``winner`` is one of :data:`WINNERS`.
            Entries with zero votes are ignored, so a table with or without them gives the
            same rows.
        resamples: Bootstrap resamples for the intervals (0 collapses each interval onto the
            rating).
        seed: Seed of the bootstrap.
        prior: Precision of the L2 prior on the natural-log strengths (see the module doc).

    Returns:
        One row per model with at least one vote, sorted by model:
        ``{"model", "rating", "ci_low", "ci_high", "votes", "rank"}``, floats ``round(x, 6)``.

    Raises:
        ArenaInputError: A key or count that is not a vote count (bad winner, a model against
            itself, a negative or non-integer count), or a negative ``resamples``/``prior``.
    """
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ArenaInputError("resamples", resamples, "must be an integer >= 0")
    if not isinstance(prior, int | float) or not prior >= 0:
        raise ArenaInputError("prior", prior, "must be a number >= 0")
    entries = _entries(counts)
    if not entries:
        return []
    models = sorted({m for a, b, _, _ in entries for m in (a, b)})
    index = {m: i for i, m in enumerate(models)}
    first = np.array([index[a] for a, _, _, _ in entries], dtype=np.intp)
    second = np.array([index[b] for _, b, _, _ in entries], dtype=np.intp)
    share = np.array([_SHARE_A[w] for _, _, w, _ in entries], dtype=np.float64)
    votes = np.array([n for _, _, _, n in entries], dtype=np.int64)

    def ratings(weights: FloatArray) -> FloatArray:
        wins = _win_matrix(len(models), first, second, share, weights)
        return BASE + SCALE * strengths(wins, prior=prior) / math.log(10.0)

    point = ratings(votes.astype(np.float64))
    if resamples:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(int(votes.sum()), votes / votes.sum(), size=resamples)
        boot = np.stack([ratings(d.astype(np.float64)) for d in draws])
        low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    else:
        low, high = point, point
    per_model = np.bincount(first, votes, len(models)) + np.bincount(second, votes, len(models))
    rows: list[dict[str, Any]] = []
    for i, model in enumerate(models):
        rows.append(
            {
                "model": model,
                "rating": round(float(point[i]), 6),
                "ci_low": round(float(low[i]), 6),
                "ci_high": round(float(high[i]), 6),
                "votes": int(per_model[i]),
            }
        )
    for row in rows:
        row["rank"] = 1 + sum(other["ci_low"] > row["ci_high"] for other in rows)
    return rows


# share of a vote that goes to model_a as a win
_SHARE_A = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


def _entries(counts: Mapping[tuple[str, str, str], int]) -> list[tuple[str, str, str, int]]:
    """The table's non-zero entries, checked, in sorted (canonical) key order."""
    out: list[tuple[str, str, str, int]] = []
    for key, count in counts.items():
        if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, str) for k in key)):
            raise ArenaInputError(key, count, "key must be (model_a, model_b, winner) strings")
        a, b, winner = key
        if winner not in WINNERS:
            raise ArenaInputError(key, count, f"winner must be one of {', '.join(WINNERS)}")
        if a == b:
            raise ArenaInputError(key, count, "a model cannot be compared with itself")
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise ArenaInputError(key, count, "count must be an integer >= 0")
        if count:
            out.append((a, b, winner, int(count)))
    out.sort()
    return out


def _win_matrix(
    n: int,
    first: npt.NDArray[np.intp],
    second: npt.NDArray[np.intp],
    share: FloatArray,
    weights: FloatArray,
) -> FloatArray:
    """``wins[i, j]``: (half-)wins of model i over model j."""
    wins = np.zeros((n, n))
    np.add.at(wins, (first, second), weights * share)
    np.add.at(wins, (second, first), weights * (1.0 - share))
    return wins


def strengths(wins: FloatArray, *, prior: float = PRIOR) -> FloatArray:
    """Natural-log Bradley-Terry strengths maximising the penalised log-likelihood.

    Args:
        wins: Square matrix, ``wins[i, j]`` = (half-)wins of i over j.
        prior: Precision of the L2 prior on each strength; 0 for the plain maximum likelihood.

    Returns:
        Strengths summing to zero.
    """
    n = wins.shape[0]
    games = wins + wins.T
    theta = np.zeros(n)

    def objective(t: FloatArray) -> float:
        diff = t[:, None] - t[None, :]
        # log sigmoid(diff), stable for large |diff|
        return float(-(wins * np.logaddexp(0.0, -diff)).sum() - prior / 2 * (t @ t))

    value = objective(theta)
    for _ in range(_MAX_ITERATIONS):
        p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
        gradient = (wins - games * p).sum(axis=1) - prior * theta
        if np.abs(gradient).max() <= _TOLERANCE * max(1.0, games.sum()):
            break
        curvature = games * p * p.T
        hessian = curvature - np.diag(curvature.sum(axis=1) + prior)
        # hessian is singular along ones when prior == 0; lstsq gives the step orthogonal to it
        step = np.linalg.lstsq(-hessian, gradient, rcond=None)[0]
        size = 1.0
        while size > 1e-12:
            candidate = theta + size * step
            new = objective(candidate)
            if new >= value - 1e-12 * abs(value):
                break
            size /= 2
        theta, value = candidate, new
    centred: FloatArray = theta - theta.mean()
    return centred


def arena_counts(
    con: duckdb.DuckDBPyConnection,
    *,
    since: date | None = None,
    cap_per_user_day: int | None = None,
) -> dict[tuple[str, str, str], int]:
    """The preference count table of a warehouse connection (one with the ``events`` view).

    Args:
        con: DuckDB connection whose ``events`` view holds each event once.
        since: Only votes on this day or later.
        cap_per_user_day: Only each user's first N votes of a day (by ``ts``, then ``event_id``).

    Raises:
        ArenaInputError: ``cap_per_user_day`` below 1.
    """
    if cap_per_user_day is not None and (
        isinstance(cap_per_user_day, bool) or cap_per_user_day < 1
    ):
        raise ArenaInputError("cap_per_user_day", cap_per_user_day, "must be an integer >= 1")
    rows = con.execute(ARENA_COUNTS_SQL, {"since": since, "cap": cap_per_user_day}).fetchall()
    return {(str(a), str(b), str(w)): int(n) for a, b, w, n in rows}


def arena_report(
    con: duckdb.DuckDBPyConnection,
    *,
    since: date | None = None,
    cap_per_user_day: int | None = None,
    resamples: int = 200,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Arena rows of a warehouse: :func:`arena_counts` fitted by :func:`fit_arena`.

    Raises:
        ArenaInputError: A bad ``cap_per_user_day`` or ``resamples``.
    """
    counts = arena_counts(con, since=since, cap_per_user_day=cap_per_user_day)
    return fit_arena(counts, resamples=resamples, seed=seed)
