"""usersignals.ingest: the event contract, the SDK ``Tracker``, the HTTP collector.

Everything a producer needs to emit valid user signals; the stream workers use the same
contract. Names are imported on first use, so ``import usersignals.ingest`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from usersignals._exports import lazy_exports

if TYPE_CHECKING:
    from usersignals.ingest.collector import (
        MAX_EVENTS_PER_REQUEST,
        Collector,
        CollectorError,
        serve,
    )
    from usersignals.ingest.contract import (
        EVENT_TYPES,
        MAX_BATCH,
        MAX_EVENT_BYTES,
        MAX_PROPERTIES_DEPTH,
        MAX_RECORD_BYTES,
        REASONS,
        Event,
        EventError,
        Rejection,
        decode_record,
        encode_batch,
        encode_event,
        json_schema,
        partition_for,
        validate,
    )
    from usersignals.ingest.synthetic import GeneratorConfig, ModelProfile, generate
    from usersignals.ingest.tracker import (
        DropReason,
        FlushResult,
        Tracker,
        TrackerClosedError,
        TrackerStats,
    )

_EXPORTS = {
    **dict.fromkeys(
        ("MAX_EVENTS_PER_REQUEST", "Collector", "CollectorError", "serve"), "collector"
    ),
    **dict.fromkeys(
        (
            "EVENT_TYPES",
            "MAX_BATCH",
            "MAX_EVENT_BYTES",
            "MAX_PROPERTIES_DEPTH",
            "MAX_RECORD_BYTES",
            "REASONS",
            "Event",
            "EventError",
            "Rejection",
            "decode_record",
            "encode_batch",
            "encode_event",
            "json_schema",
            "partition_for",
            "validate",
        ),
        "contract",
    ),
    **dict.fromkeys(("GeneratorConfig", "ModelProfile", "generate"), "synthetic"),
    **dict.fromkeys(
        ("DropReason", "FlushResult", "Tracker", "TrackerClosedError", "TrackerStats"), "tracker"
    ),
}

__all__ = [
    "EVENT_TYPES",
    "MAX_BATCH",
    "MAX_EVENTS_PER_REQUEST",
    "MAX_EVENT_BYTES",
    "MAX_PROPERTIES_DEPTH",
    "MAX_RECORD_BYTES",
    "REASONS",
    "Collector",
    "CollectorError",
    "DropReason",
    "Event",
    "EventError",
    "FlushResult",
    "GeneratorConfig",
    "ModelProfile",
    "Rejection",
    "Tracker",
    "TrackerClosedError",
    "TrackerStats",
    "decode_record",
    "encode_batch",
    "encode_event",
    "generate",
    "json_schema",
    "partition_for",
    "serve",
    "validate",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# The folder is linked into the package: each module has one name, so no class exists twice.
if __name__ != "usersignals.ingest":
    raise ImportError(f"import usersignals.ingest, not {__name__!r}: each module has one name")
