"""usersignals.streams: the stream worker, live metric folds, Prometheus exposition, dead-letter.

The folds are pure and idempotent (replaying any prefix of the log changes nothing); the
Faust worker only moves bytes between Kafka and them.

Names are imported on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from usersignals._exports import lazy_exports

if TYPE_CHECKING:
    from usersignals.streams.app import (
        LiveWorker,
    )
    from usersignals.streams.folds import (
        PartitionState,
        RejectionKey,
    )
    from usersignals.streams.livereport import (
        PartialMismatchError,
        global_range,
        live_gauges,
        live_report,
        merge_partials,
        partial_of,
        preference_counts,
    )
    from usersignals.streams.web import (
        BadDayRangeError,
        day_range_of,
    )

_EXPORTS = {
    **dict.fromkeys(
        ("LiveWorker",),
        "app",
    ),
    **dict.fromkeys(
        (
            "PartitionState",
            "RejectionKey",
        ),
        "folds",
    ),
    **dict.fromkeys(
        (
            "PartialMismatchError",
            "global_range",
            "live_gauges",
            "live_report",
            "merge_partials",
            "partial_of",
            "preference_counts",
        ),
        "livereport",
    ),
    **dict.fromkeys(
        (
            "BadDayRangeError",
            "day_range_of",
        ),
        "web",
    ),
}

__all__ = [
    "BadDayRangeError",
    "LiveWorker",
    "PartialMismatchError",
    "PartitionState",
    "RejectionKey",
    "day_range_of",
    "global_range",
    "live_gauges",
    "live_report",
    "merge_partials",
    "partial_of",
    "preference_counts",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# The folder is linked into the package: each module has one name, so no class exists twice.
if __name__ != "usersignals.streams":
    raise ImportError(f"import usersignals.streams, not {__name__!r}: each module has one name")
