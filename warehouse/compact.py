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
4. Before the rename, write the day's rollups named after the same digest; after it, the
   weekly counts of the day's ISO week (see :mod:`usersignals.warehouse.plan`).
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
from usersignals.warehouse.plan import ROLLUP_SCHEMAS, digest_of, monday_of, rollup_path
from usersignals.warehouse.rollup import drop_stale_rollups, write_day_rollups, write_week

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


def compact_day(root: Path, day: str, *, weekly: bool = True) -> CompactResult:
    """Merges the committed files of one event day into one file without duplicate events.

    Also writes the day's rollups (:mod:`usersignals.warehouse.rollup`) before the merged file
    is renamed in, and (``weekly``) the weekly counts of the day's ISO week.

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
            if inputs and not _has_rollups(root, day, inputs[0]):
                _roll_up(root, day, inputs[0], pq.read_table(inputs[0], schema=EVENTS_SCHEMA))
                _week(root, day, weekly)
            return CompactResult(day, len(inputs), rows, rows, None)
        tables = [pq.read_table(f, schema=EVENTS_SCHEMA) for f in inputs]
        merged = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
        out = dedupe_first(merged)
        names = sorted(f.name for f in inputs)
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
        final = directory / f"c-{digest}.parquet"
        write_day_rollups(root, day, digest, out)
        temp = temp_path(final, COMPACT_SUFFIX)
        write_parquet(out, temp, {COVERS_KEY: json.dumps(names).encode()})
        os.replace(temp, final)
        for f in inputs:
            f.unlink(missing_ok=True)
        drop_stale_rollups(root, day, digest)
        _week(root, day, weekly)
        return CompactResult(day, len(inputs), merged.num_rows, out.num_rows, final.name)


def _has_rollups(root: Path, day: str, compacted: Path) -> bool:
    digest = digest_of(compacted)
    return all(rollup_path(root, day, kind, digest).is_file() for kind in ROLLUP_SCHEMAS)


def _roll_up(root: Path, day: str, compacted: Path, rows: pa.Table) -> None:
    """Rollups for a compacted file made before rollups existed."""
    digest = digest_of(compacted)
    write_day_rollups(root, day, digest, rows.replace_schema_metadata(None))
    drop_stale_rollups(root, day, digest)


def _week(root: Path, day: str, weekly: bool) -> None:
    if weekly:
        write_week(root, monday_of(day))


def days(root: Path) -> list[str]:
    """Event days present in the warehouse, ascending."""
    events = Path(root) / EVENTS_DIR
    if not events.is_dir():
        return []
    return sorted(p.name.removeprefix("day=") for p in events.glob("day=*") if p.is_dir())


def compact(root: Path, day: str | None = None) -> list[CompactResult]:
    """Compacts one day, or every day of the warehouse (each ISO week's counts once)."""
    chosen = [day] if day is not None else days(root)
    results = [compact_day(root, d, weekly=False) for d in chosen]
    with _compact_lock(root):
        for monday in sorted({monday_of(d) for d in chosen}):
            write_week(root, monday)
    return results
