"""Where the warehouse keeps what, and what the files are called.

The warehouse is a directory::

    events/day=YYYY-MM-DD/p{partition:03d}-{first:012d}-{last:012d}.parquet   loader output
    events/day=YYYY-MM-DD/c-{digest}.parquet                                   compacted
    deadletter/p{partition:03d}-{first:012d}-{last:012d}.parquet               rejected input
    manifest.json                     the live files and the loader's position (``manifest.py``)
    rollups/...                       what reports read of compacted days (``plan.py``)
    derived/arena_ratings.parquet     the arena ratings Grafana reads (``derived.py``; not in
                                      the manifest: refitted from the live files)

A loader file holds the records of one source partition from offset ``first`` to ``last``
(inclusive) whose events fall on that day. One flush of a partition writes one file per event
day touched, maybe a dead-letter file, all under temporary names, renames them, and only then
replaces the manifest with one that names them: the flush counts as loaded once that manifest
is in. On start the loader resumes after its partitions' positions in the manifest and deletes
the files the manifest does not name. Offsets in names and rows are warehouse offsets: Kafka
offsets plus the base of the topic's incarnation (``manifest.py``), so they never repeat.
Compaction keeps source partition, offset and batch index of every row and records the files
it replaced in the footer of the file it wrote (``covers``).

Which of the files on disk are live is not read from the directories: the manifest
(:mod:`usersignals.warehouse.manifest`) lists them, and every reader takes its files from it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "COMMITS_DIR",
    "COVERS_KEY",
    "DEADLETTER_DIR",
    "DEADLETTER_SCHEMA",
    "EVENTS_DIR",
    "EVENTS_SCHEMA",
    "FileRange",
    "committed_offsets",
    "compacted_covers",
    "day_dir",
    "live_deadletter_files",
    "live_event_files",
    "parse_range",
    "range_name",
]

EVENTS_DIR = "events"
DEADLETTER_DIR = "deadletter"
COMMITS_DIR = "_loader"
COVERS_KEY = b"usersignals.covers"
"""Parquet footer key of a compacted file: JSON list of the file names it replaced."""

_UTC_US = pa.timestamp("us", tz="UTC")

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("ts", _UTC_US, nullable=False),
        pa.field("day", pa.date32(), nullable=False),
        pa.field("session_id", pa.string()),
        pa.field("model", pa.string()),
        pa.field("platform", pa.string()),
        pa.field("role", pa.string()),
        pa.field("tokens", pa.int64()),
        pa.field("message_id", pa.string()),
        pa.field("rating", pa.int32()),
        pa.field("model_a", pa.string()),
        pa.field("model_b", pa.string()),
        pa.field("winner", pa.string()),
        pa.field("category", pa.string()),
        pa.field("severity", pa.string()),
        pa.field("source", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("name", pa.string()),  # custom and identify events
        pa.field("properties", pa.string()),  # JSON text
        pa.field("extra", pa.string()),  # JSON text: unknown top-level fields
        pa.field("received_at", _UTC_US),
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
        pa.field("batch_index", pa.int32(), nullable=False),
    ]
)
"""Columns of ``events``; (source_partition, source_offset, batch_index) is the log position."""

DEADLETTER_SCHEMA = pa.schema(
    [
        pa.field("reason", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("field", pa.string()),
        pa.field("source_topic", pa.string(), nullable=False),
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
        pa.field("batch_index", pa.int32()),  # None: the whole record was rejected
        pa.field("record_key", pa.binary()),
        pa.field("raw", pa.binary(), nullable=False),
        pa.field("received_at", _UTC_US, nullable=False),  # the Kafka record timestamp
    ]
)
"""Columns of ``deadletter``: one row per rejection, with the rejected bytes."""

_RANGE = re.compile(r"^p(\d{3,})-(\d{12,})-(\d{12,})\.(parquet|commit)$")


@dataclass(frozen=True, order=True)
class FileRange:
    """The source records a loader file or commit marker stands for."""

    partition: int
    first: int
    last: int


def range_name(r: FileRange, suffix: str = "parquet") -> str:
    """``p003-000000000100-000000000199.parquet`` for partition 3, offsets 100..199."""
    return f"p{r.partition:03d}-{r.first:012d}-{r.last:012d}.{suffix}"


def parse_range(name: str) -> FileRange | None:
    """The range in a loader file or marker name, or None for any other name."""
    m = _RANGE.match(name)
    if m is None:
        return None
    return FileRange(int(m[1]), int(m[2]), int(m[3]))


def day_dir(root: Path, day: str) -> Path:
    """``events/day=YYYY-MM-DD`` of the warehouse at ``root``."""
    return Path(root) / EVENTS_DIR / f"day={day}"


def committed_offsets(root: Path) -> dict[int, int]:
    """Last Kafka offset loaded per source partition (current epoch), from the manifest."""
    from usersignals.warehouse.manifest import read_manifest

    return read_manifest(Path(root)).committed()


def compacted_covers(path: Path) -> list[str]:
    """Names of the files a compacted file replaced (from its Parquet footer)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(COVERS_KEY)
    if raw is None:
        return []
    names = json.loads(raw)
    return [str(n) for n in names]


def live_event_files(root: Path) -> list[Path]:
    """The events files the manifest names: every loaded row once (committed, compacted)."""
    from usersignals.warehouse.manifest import read_manifest

    return [Path(root) / f for f in read_manifest(Path(root)).events()]


def live_deadletter_files(root: Path) -> list[Path]:
    """The dead-letter files the manifest names (committed ranges)."""
    from usersignals.warehouse.manifest import read_manifest

    return [Path(root) / f for f in read_manifest(Path(root)).deadletter()]
