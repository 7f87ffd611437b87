"""Token buckets: how many requests a client, a write key or a run of wrong keys may make.

Pure values and a clock passed in, so a table of bursts tests the exact count of refusals
without a server. The collector keeps one :class:`Buckets` per limit (per client address, per
write key, failed keys per client address).

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens per second; a request takes
one. A rate of 0 means no limit. Buckets are kept for at most ``max_buckets`` names (the
least recently used are dropped, which only ever forgives), so a flood of new names cannot
grow memory without bound.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_BUCKETS", "Bucket", "Buckets"]

MAX_BUCKETS = 65_536
"""Names (client addresses, keys) one :class:`Buckets` remembers at most."""


@dataclass
class Bucket:
    """The tokens one name has left at a moment (monotonic seconds)."""

    tokens: float
    at: float


class Buckets:
    """One token bucket per name.

    Args:
        rate: Tokens gained per second; 0 means every request passes.
        burst: Most tokens a bucket holds (and holds at first).
        clock: Monotonic seconds.
        max_buckets: Names remembered at most.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float],
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    @property
    def limited(self) -> bool:
        return self.rate > 0

    def _bucket(self, name: str) -> Bucket:
        now = self.clock()
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = Bucket(float(self.burst), now)
            self._buckets[name] = bucket
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(name)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        return bucket

    def wait(self, name: str) -> int:
        """Whole seconds until ``name`` has a token (0 when it has one now); takes nothing."""
        if not self.limited:
            return 0
        bucket = self._bucket(name)
        if bucket.tokens >= 1.0:
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))

    def take(self, name: str) -> int:
        """Takes a token of ``name``: 0 when it had one, else the seconds to wait (nothing
        taken), the ``Retry-After`` of the 429."""
        delay = self.wait(name)
        if delay == 0 and self.limited:
            self._buckets[name].tokens -= 1.0
        return delay
