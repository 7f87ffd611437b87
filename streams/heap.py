"""Python's cyclic garbage collector, tuned for a worker holding millions of small objects.

The live state is a few containers (sets of ids and users, dicts of counters) that hold
millions of untracked strings and tuples. CPython starts a full collection whenever the
tracked objects grew by a quarter since the last one, and a full collection walks every member
of every set: with few tracked objects and huge sets, that happened every few records and
halved the worker's throughput. The state is acyclic (dropped days are freed by reference
counting), so:

- automatic full collections are switched off (young generations still run, cheaply);
- :func:`settle` runs one full collection and then moves every surviving object to the
  permanent generation (``gc.freeze``), so the next collection walks only what was made since.
  The worker calls it after each restore and on a timer (:data:`SETTLE_INTERVAL_S`).

Cost of the choice: a reference cycle that was alive at a ``settle`` and dies later is never
collected (the state has none; Faust's are a handful of long-lived objects).
"""

from __future__ import annotations

import gc

__all__ = ["SETTLE_INTERVAL_S", "YOUNG_THRESHOLDS", "configure", "settle"]

YOUNG_THRESHOLDS = (700, 10)
"""CPython's default thresholds of generations 0 and 1 (kept)."""

NEVER = 1 << 30
"""A generation-2 threshold no worker reaches: no automatic full collection."""

SETTLE_INTERVAL_S = 60.0
"""Seconds between two :func:`settle` calls in a running worker."""


def configure() -> None:
    """Keeps young collections and stops automatic full ones (process-wide)."""
    gc.set_threshold(*YOUNG_THRESHOLDS, NEVER)


def settle() -> int:
    """Collects what is unreachable among the objects made since the last call, then freezes
    the rest; returns the number of objects collected."""
    found = gc.collect()
    gc.freeze()
    return found
