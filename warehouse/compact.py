"""Compaction: a day's many small loader files become one, each ``event_id`` once.

Safe while the loader runs and idempotent:

1. Read the commit markers, then list the day: only files of committed ranges (and earlier
   compacted files) are inputs; files the loader writes meanwhile are left for next time.
2. Keep the first copy of each ``event_id`` (least source partition, offset, batch index);
   rows keep their log position, so every reader's dedupe rule gives the same answer.
3. Write ``c-{digest of the input names}.parquet`` under a temporary name with the input names
   in its footer (``covers``), rename it in, then delete the inputs. Until they are gone,
   :func:`~usersignals.warehouse.layout.live_event_files` skips them, and a reader of the glob
   that counts each ``event_id`` once is not affected (the rows are identical); the next run
   deletes what a crash left. The loader resumes from its commit markers, which compaction
   never touches.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from usersignals.config import UsersignalsError
from usersignals.warehouse.commit import temp_path, write_parquet
from usersignals.warehouse.layout import (
    COMMITS_DIR,
    COVERS_KEY,
    EVENTS_DIR,
    EVENTS_SCHEMA,
    committed_offsets,
    compacted_covers,
    day_dir,
    is_committed,
    parse_range,
)

__all__ = ["CompactResult", "DayNotFoundError", "compact", "compact_day", "days", "dedupe_first"]

COMPACT_SUFFIX = ".compact.tmp"
_ORDER = [("source_partition", "ascending"), ("source_offset", "ascending")]
_FIRST = [("event_id", "ascending"), *_ORDER, ("batch_index", "ascending")]


class DayNotFoundError(UsersignalsError):
    """The warehouse has no events for the day asked for."""

    def __init__(self, day: str) -> None:
        self.day = day
        super().__init__(f"No events for day {day!r}")


@dataclass(frozen=True)
class CompactResult:
    """What compacting one day did (``output`` None: nothing to do)."""

    day: str
    inputs: int
    rows_in: int
    rows_out: int
    output: str | None

    @property
    def duplicates(self) -> int:
        return self.rows_in - self.rows_out


def dedupe_first(table: pa.Table) -> pa.Table:
    """Rows with each ``event_id`` once, the first in log order; output in log order."""
    if table.num_rows == 0:
        return table
    ordered = table.take(pc.sort_indices(table, sort_keys=_FIRST))
    ids = ordered.column("event_id")
    changed = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
    keep = pa.concat_arrays([pa.array([True]), changed.combine_chunks()])
    first = ordered.filter(keep)
    return first.take(pc.sort_indices(first, sort_keys=[*_ORDER, ("batch_index", "ascending")]))


@contextlib.contextmanager
def _compact_lock(root: Path) -> Iterator[None]:
    d = Path(root) / COMMITS_DIR
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "compact.lock", "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


def _clean(directory: Path) -> None:
    """Deletes temporary files of a crashed compaction and files already compacted."""
    covered: set[str] = set()
    for f in directory.iterdir():
        if f.name.endswith(COMPACT_SUFFIX):
            f.unlink(missing_ok=True)
        elif f.name.startswith("c-") and f.suffix == ".parquet":
            covered.update(compacted_covers(f))
    for name in covered:
        (directory / name).unlink(missing_ok=True)


def compact_day(root: Path, day: str) -> CompactResult:
    """Merges the committed files of one event day into one file without duplicate events.

    Raises:
        DayNotFoundError: the warehouse has no directory for ``day``.
    """
    directory = day_dir(root, day)
    if not directory.is_dir():
        raise DayNotFoundError(day)
    with _compact_lock(root):
        _clean(directory)
        committed = committed_offsets(root)
        inputs = []
        for f in sorted(directory.glob("*.parquet")):
            r = parse_range(f.name)
            if f.name.startswith("c-") or (r is not None and is_committed(r, committed)):
                inputs.append(f)
        if not inputs or (len(inputs) == 1 and inputs[0].name.startswith("c-")):
            rows = pq.read_metadata(inputs[0]).num_rows if inputs else 0
            return CompactResult(day, len(inputs), rows, rows, None)
        tables = [pq.read_table(f, schema=EVENTS_SCHEMA) for f in inputs]
        merged = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
        out = dedupe_first(merged)
        names = sorted(f.name for f in inputs)
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
        final = directory / f"c-{digest}.parquet"
        temp = temp_path(final, COMPACT_SUFFIX)
        write_parquet(out, temp, {COVERS_KEY: json.dumps(names).encode()})
        os.replace(temp, final)
        for f in inputs:
            f.unlink(missing_ok=True)
        return CompactResult(day, len(inputs), merged.num_rows, out.num_rows, final.name)


def days(root: Path) -> list[str]:
    """Event days present in the warehouse, ascending."""
    events = Path(root) / EVENTS_DIR
    if not events.is_dir():
        return []
    return sorted(p.name.removeprefix("day=") for p in events.glob("day=*") if p.is_dir())


def compact(root: Path, day: str | None = None) -> list[CompactResult]:
    """Compacts one day, or every day of the warehouse."""
    return [compact_day(root, d) for d in ([day] if day is not None else days(root))]
