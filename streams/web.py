"""The worker's read side over HTTP (Faust's web server).

- ``GET /v1/report``: the report JSON (``usersignals report --json`` shape) of the partitions
  this worker holds: the full report when it holds them all.
- ``GET /v1/partial``: phase one of the multi-worker protocol (``livereport``): the partitions
  held and their day range. ``GET /v1/partial?from=YYYY-MM-DD&to=YYYY-MM-DD`` (or ``?empty=1``
  when no worker holds any day): phase two, this worker's partial over that GLOBAL range.
  ``usersignals report --live`` asks every worker and merges (``usersignals.cli.live``).
  A day that is not ``YYYY-MM-DD``, or ``from`` after ``to``, is answered 400 with
  ``{"error": message}``.
- ``GET /v1/status``: partitions held, offset processed, lag, records, accepted and rejected
  (``?counts=0`` leaves the counts out: cheap enough to poll while the worker is busy), and
  per partition the times its live state was dropped for a new incarnation of the topic.
- ``GET /metrics``: Prometheus text exposition (:mod:`usersignals.streams.exposition`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from usersignals.errors import BadDayRangeError
from usersignals.metrics.flattery import params_of
from usersignals.streams.exposition import render
from usersignals.streams.livereport import (
    global_range,
    merge_partials,
    partial_of,
    preference_counts,
)

if TYPE_CHECKING:
    from usersignals.streams.app import LiveWorker

__all__ = ["BadDayRangeError", "add_views", "day_range_of", "report_of", "status_of"]

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"  # aiohttp adds the charset itself


def day_range_of(query: Mapping[str, str]) -> tuple[date, date]:
    """The GLOBAL day range of a phase-two ``/v1/partial`` query (``from`` and ``to``).

    Raises:
        BadDayRangeError: a day is not ``YYYY-MM-DD``, or ``from`` is after ``to``.
    """
    first, last = query["from"], query["to"]
    try:
        rng = (date.fromisoformat(first), date.fromisoformat(last))
    except ValueError:
        raise BadDayRangeError(first, last) from None
    if len(first) != 10 or len(last) != 10 or rng[0] > rng[1]:
        raise BadDayRangeError(first, last)
    return rng


def report_of(worker: LiveWorker) -> dict[str, Any]:
    """The report of the partitions ``worker`` holds (arena from the injected function)."""
    states = worker.states()
    rng = global_range(s.day_range() for s in states)
    partial = partial_of(states, rng)
    arena = worker.arena_fn(preference_counts([partial])) if worker.arena_fn else []
    return merge_partials([partial], arena, flattery=params_of(worker.settings))


def status_of(worker: LiveWorker, *, counts: bool = True) -> dict[str, Any]:
    """Per held partition: next offset to process and lag; accepted (distinct valid events
    held) and rejected totals, unless ``counts`` is false (a cheap answer for polling)."""
    states = worker.states() if counts else []
    lag = worker.consumer_lag()
    accepted = sum(sum(s.gauges()["events_by_type"].values()) for s in states)
    rejected: dict[str, int] = {}
    for s in states:
        for reason, n in s.rejected().items():
            rejected[reason] = rejected.get(reason, 0) + n
    return {
        "partitions": {
            str(p): {"position": k.position, "lag": lag.get(p)}
            for p, k in sorted(worker.keepers.items())
        },
        "ready": worker.ready,
        "records": worker.records,
        "accepted": accepted,
        "rejected": dict(sorted(rejected.items())),
        "late": sum(s.late for s in states),
        "incarnation_resets": {str(p): n for p, n in sorted(worker.process.resets.items())},
        **{sidecar.name: sidecar.status() for sidecar in worker.sidecars},
    }


def add_views(worker: LiveWorker) -> None:
    """Registers the read-side views on the worker's Faust app."""
    app = worker.app

    @app.page("/v1/report")
    async def report(web: Any, request: Any) -> Any:
        return web.json(report_of(worker))

    @app.page("/v1/partial")
    async def partial(web: Any, request: Any) -> Any:
        states = worker.states()
        held = sorted(worker.keepers)
        query = request.query
        if "from" in query and "to" in query:
            try:
                rng = day_range_of(query)
            except BadDayRangeError as exc:
                return web.json({"error": str(exc)}, status=400)
            return web.json({"partitions": held, "partial": partial_of(states, rng)})
        if "empty" in query:
            return web.json({"partitions": held, "partial": partial_of(states, None)})
        rng0 = global_range(s.day_range() for s in states)
        return web.json(
            {
                "partitions": held,
                "range": [rng0[0].isoformat(), rng0[1].isoformat()] if rng0 else None,
            }
        )

    @app.page("/v1/status")
    async def status(web: Any, request: Any) -> Any:
        return web.json(status_of(worker, counts=request.query.get("counts") != "0"))

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(
            render(worker.collector, *worker.sidecars), content_type=METRICS_CONTENT_TYPE
        )
