"""The live report of every running worker, merged on the client (``report --live``).

Each worker answers only for the partitions it holds. The client asks every worker in
``USERSIGNALS_WORKER_URL`` (comma-separated) for its partitions and day range
(``GET /v1/partial``), takes the global range, asks every worker for its partial over that
range (``GET /v1/partial?from=..&to=..``) and adds the partials up
(:func:`usersignals.streams.livereport.merge_partials`): exact, because users are disjoint
across partitions. The answer is refused, and asked again, while the workers' partitions
overlap or leave some out (a rebalance in progress).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from usersignals.config import Settings
from usersignals.errors import LiveReportError
from usersignals.metrics.flattery import params_of
from usersignals.metrics.periods import DayRange
from usersignals.streams.livereport import merge_partials, preference_counts

__all__ = ["LiveReportError", "fetch_live_report", "get_json", "worker_urls"]

ATTEMPTS = 10
RETRY_DELAY_S = 1.0


def worker_urls(settings: Settings) -> list[str]:
    """The workers' web addresses from ``settings.worker_url`` (comma-separated)."""
    return [u.strip().rstrip("/") for u in settings.worker_url.split(",") if u.strip()]


def get_json(url: str, timeout: float) -> Any:
    """GET a JSON document; network and HTTP errors raise :class:`OSError`."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def fetch_live_report(
    settings: Settings, *, timeout: float = 10.0, select: DayRange | None = None
) -> dict[str, Any]:
    """The report JSON over all partitions, from every worker in ``settings.worker_url``.

    ``select`` chooses the days shown (the rule of :mod:`usersignals.metrics.periods`, the
    same as the warehouse report's); default every day.

    Raises:
        LiveReportError: a worker cannot be reached, or the workers do not hold every
            partition exactly once after several attempts.
    """
    urls = worker_urls(settings)
    problem = "no worker address"
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(RETRY_DELAY_S)
        try:
            phase1 = [get_json(f"{u}/v1/partial", timeout) for u in urls]
        except (OSError, ValueError) as exc:
            problem = f"unreachable ({exc})"
            continue
        held = sorted(p for answer in phase1 for p in answer["partitions"])
        if held != list(range(settings.partitions)):
            problem = f"partitions held {held}, expected each of 0..{settings.partitions - 1} once"
            continue
        ranges = [a["range"] for a in phase1 if a["range"] is not None]
        query = (
            f"?from={min(r[0] for r in ranges)}&to={max(r[1] for r in ranges)}"
            if ranges
            else "?empty=1"
        )
        try:
            phase2 = [get_json(f"{u}/v1/partial{query}", timeout) for u in urls]
        except (OSError, ValueError) as exc:
            problem = f"unreachable ({exc})"
            continue
        if [a["partitions"] for a in phase2] != [a["partitions"] for a in phase1]:
            problem = "partitions moved between the two phases"
            continue
        partials = [a["partial"] for a in phase2]
        return merge_partials(
            partials, _arena(partials, select), select, flattery=params_of(settings)
        )
    raise LiveReportError(urls, problem)


def _arena(partials: list[dict[str, Any]], select: DayRange | None) -> list[dict[str, Any]]:
    from usersignals.cli.worker import arena_function

    fit = arena_function()
    counts = preference_counts(partials, select)
    return list(fit(counts)) if fit is not None and counts else []
