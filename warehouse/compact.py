"""Compaction: a day's many small loader files become one, each ``event_id`` once.

Safe while the loader runs and idempotent. Its inputs are the day's files in the manifest
(committed loader files and an earlier compacted file); files the loader writes meanwhile
are left for next time. It keeps the first copy of each ``event_id`` (least source partition,
offset, batch index); rows keep their log position, so every reader's dedupe rule gives the
same answer. Then, in the order of :data:`STEPS`:

1. ``rollups written``: the day's rollups (and a new version of the user dictionary), named
   after the digest of the input names (see :mod:`usersignals.warehouse.plan`);
2. ``merged written``: ``c-{digest}.parquet``, under a temporary name then renamed, with the
   input names in its footer (``covers``);
3. ``manifest replaced``: one replace puts the merged file and the new rollups in and takes
   the inputs and the rollups they replace out — the commit point;
4. ``inputs deleted``: the files the manifest no longer names;
5. ``week written``: the weekly rollups of the day's ISO week, over the days served now;
6. ``week replaced``: a replace puts them in the manifest instead of the older version;
7. ``old weeks deleted``.

A crash anywhere leaves the old manifest or the new one, and each names a consistent set of
files; what a crash left on disk that the manifest does not name is deleted by the next run.
The loader's positions are in the same manifest, and compaction never changes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from usersignals.errors import DayNotFoundError
from usersignals.warehouse.commit import temp_path, write_parquet
from usersignals.warehouse.layout import (
    COMMITS_DIR,
    COVERS_KEY,
    EVENTS_SCHEMA,
    day_dir,
    parse_range,
)
from usersignals.warehouse.manifest import (
    Manifest,
    ensure_manifest,
    read_manifest,
    replace_manifest,
    sync_dirs,
)
from usersignals.warehouse.plan import (
    ROLLUP_SCHEMAS,
    ROLLUPS_DIR,
    digest_of,
    monday_of,
    rollup_path,
    users_files,
    week_dir,
)
from usersignals.warehouse.rollup import ROLLUP_SUFFIX, write_day_rollups, write_week

__all__ = [
    "STEPS",
    "CompactResult",
    "DayNotFoundError",
    "compact",
    "compact_day",
    "days",
    "dedupe_first",
]

STEPS = (
    "rollups written",
    "merged written",
    "manifest replaced",
    "inputs deleted",
    "week written",
    "week replaced",
    "old weeks deleted",
)
"""The steps of compacting a day, in order (the names ``compact_day`` reports)."""

COMPACT_SUFFIX = ".compact.tmp"
_ORDER = [("source_partition", "ascending"), ("source_offset", "ascending")]
_FIRST = [("event_id", "ascending"), *_ORDER, ("batch_index", "ascending")]


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


def _rel(root: Path, path: Path) -> str:
    return str(path.relative_to(root))


def _clean(root: Path, day: str, manifest: Manifest) -> None:
    """Deletes what a crashed compaction left: temporary files, and files not in the manifest.

    Loader files of the day that the manifest does not name are deleted only when their range
    is committed (a compaction replaced them); later ones belong to a flush in progress.
    """
    live = set(manifest.files)
    stored = manifest.stored_committed()
    rollups = Path(root) / ROLLUPS_DIR
    dirs = [day_dir(root, day), rollups / f"day={day}", week_dir(root, monday_of(day))]
    for d in dirs:
        if not d.is_dir():
            continue
        for f in d.iterdir():
            if f.name.endswith((COMPACT_SUFFIX, ROLLUP_SUFFIX)):
                f.unlink(missing_ok=True)
                continue
            if _rel(root, f) in live or f.suffix != ".parquet":
                continue
            r = parse_range(f.name)
            if r is None or r.last <= stored.get(r.partition, -1):
                f.unlink(missing_ok=True)
    if rollups.is_dir():
        for f in rollups.glob("users-*.parquet"):
            if _rel(root, f) not in live:
                f.unlink(missing_ok=True)


def compact_day(
    root: Path, day: str, *, weekly: bool = True, step: Callable[[str], None] | None = None
) -> CompactResult:
    """Merges the live files of one event day into one file without duplicate events.

    Also writes the day's rollups (:mod:`usersignals.warehouse.rollup`) before the merged file
    is renamed in, and (``weekly``) the weekly counts of the day's ISO week.

    Args:
        root: The warehouse.
        day: The event day, ``YYYY-MM-DD``.
        weekly: Also rewrite the weekly counts of the day's week.
        step: Called with the name of each step of :data:`STEPS` when it is done.

    Raises:
        DayNotFoundError: the warehouse has no directory for ``day``.
    """
    root = Path(root)
    note = step or (lambda _name: None)
    directory = day_dir(root, day)
    if not directory.is_dir():
        raise DayNotFoundError(day)
    with _compact_lock(root):
        try:
            return _compact_locked(root, day, directory, weekly, note)
        except OSError:  # a full disk: the manifest still names the day as it was
            _clean(root, day, read_manifest(root))
            raise


def _compact_locked(
    root: Path, day: str, directory: Path, weekly: bool, note: Callable[[str], None]
) -> CompactResult:
    """Compacting one day once its lock is held (see :func:`compact_day`)."""
    m = ensure_manifest(root)
    _clean(root, day, m)
    prefix = f"{_rel(root, directory)}/"
    inputs = [root / f for f in m.events() if f.startswith(prefix)]
    if not inputs or (len(inputs) == 1 and inputs[0].name.startswith("c-")):
        rows = pq.read_metadata(inputs[0]).num_rows if inputs else 0
        if inputs and not _has_rollups(m, root, day, inputs[0]):
            table = pq.read_table(inputs[0], schema=EVENTS_SCHEMA).replace_schema_metadata(None)
            _swap(root, day, m, digest_of(inputs[0]), table, [], note)
            _week(root, day, weekly, note)
        return CompactResult(day, len(inputs), rows, rows, None)
    tables = [pq.read_table(f, schema=EVENTS_SCHEMA) for f in inputs]
    merged = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    out = dedupe_first(merged)
    names = sorted(f.name for f in inputs)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    _swap(root, day, m, digest, out, inputs, note, covers=names)
    _week(root, day, weekly, note)
    return CompactResult(day, len(inputs), merged.num_rows, out.num_rows, f"c-{digest}.parquet")


def _swap(
    root: Path,
    day: str,
    m: Manifest,
    digest: str,
    rows: pa.Table,
    inputs: list[Path],
    note: Callable[[str], None],
    *,
    covers: list[str] | None = None,
) -> None:
    """Steps 1 to 4: rollups, merged file (unless ``covers`` is None), manifest, deletions.

    With no ``covers`` the day's compacted file exists already (made before rollups were):
    only its rollups are written and put in.
    """
    written = write_day_rollups(root, day, digest, rows, m)
    note("rollups written")
    add = [_rel(root, f) for f in written]
    if covers is not None:
        final = day_dir(root, day) / f"c-{digest}.parquet"
        temp = temp_path(final, COMPACT_SUFFIX)
        write_parquet(rows, temp, {COVERS_KEY: json.dumps(covers).encode()})
        os.replace(temp, final)
        add.append(_rel(root, final))
    sync_dirs([root / f for f in add])
    note("merged written")
    day_rollups = f"{ROLLUPS_DIR}/day={day}/"
    stale = [f for f in m.rollups() if f.startswith(day_rollups)]
    # the previous user dictionary leaves the manifest but stays on disk until the next
    # recovery: a reader that listed it (an open `sql` shell, a Grafana connection) still maps
    # the same users, and the dictionary only grows
    older_users = []
    if written and written[0].name.startswith("users-"):
        older_users = [_rel(root, f) for f in users_files(root, m)]
    gone = [_rel(root, f) for f in inputs] + [f for f in stale if f not in add]
    replace_manifest(root, lambda cur: cur.with_files(add=add, remove=gone + older_users))
    note("manifest replaced")
    for name in gone:
        (root / name).unlink(missing_ok=True)
    note("inputs deleted")


def _has_rollups(m: Manifest, root: Path, day: str, compacted: Path) -> bool:
    digest = digest_of(compacted)
    live = set(m.rollups())
    return all(_rel(root, rollup_path(root, day, kind, digest)) in live for kind in ROLLUP_SCHEMAS)


def _week(root: Path, day: str, weekly: bool, note: Callable[[str], None]) -> None:
    """Steps 5 to 7 for the ISO week of ``day`` (nothing unless ``weekly``)."""
    if weekly:
        _write_week(root, monday_of(day), note)


def _write_week(root: Path, monday: str, note: Callable[[str], None]) -> None:
    m = read_manifest(root)
    new = [_rel(root, path) for path in write_week(root, monday, m)]
    note("week written")
    sync_dirs([root / f for f in new])
    prefix = f"{_rel(root, week_dir(root, monday))}/"
    old = [f for f in m.rollups() if f.startswith(prefix) and f not in new]
    if not old and set(new) <= set(m.files):
        return
    replace_manifest(root, lambda cur: cur.with_files(add=new, remove=old))
    note("week replaced")
    for name in old:
        (root / name).unlink(missing_ok=True)
    note("old weeks deleted")


def days(root: Path) -> list[str]:
    """Event days of the warehouse's live files, ascending."""
    m = read_manifest(Path(root))
    return sorted({Path(f).parent.name.removeprefix("day=") for f in m.events()})


def compact(root: Path, day: str | None = None) -> list[CompactResult]:
    """Compacts one day, or every day of the warehouse (each ISO week's counts once)."""
    chosen = [day] if day is not None else days(root)
    results = [compact_day(root, d, weekly=False) for d in chosen]
    with _compact_lock(root):
        for monday in sorted({monday_of(d) for d in chosen}):
            _write_week(root, monday, lambda _name: None)
    return results
