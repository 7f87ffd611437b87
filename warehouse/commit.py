"""Writing one loaded range atomically, and putting the warehouse right after a crash.

A flush of source range ``p/first..last`` writes every file under a temporary name, renames
the data files to their final names, then renames in the commit marker
``_loader/p{p}-{first}-{last}.commit``. The marker is the commit point: a range counts as loaded
exactly when its marker (or a later one of the same partition) exists. :func:`recover` runs before
the loader reads anything: it deletes temporary files and the data files of ranges past the last
marker, so that the range is loaded again from Kafka and no row is ever there twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from usersignals.warehouse.layout import (
    COMMITS_DIR,
    DEADLETTER_DIR,
    EVENTS_DIR,
    FileRange,
    committed_offsets,
    day_dir,
    parse_range,
    range_name,
)

__all__ = [
    "PARQUET_OPTIONS",
    "TEMP_SUFFIX",
    "recover",
    "split_by_day",
    "temp_path",
    "write_parquet",
    "write_range",
]

TEMP_SUFFIX = ".load.tmp"
"""Suffix of the loader's temporary files (compaction uses its own)."""

PARQUET_OPTIONS: dict[str, object] = {"compression": "zstd", "compression_level": 3}


def temp_path(final: Path, suffix: str = TEMP_SUFFIX) -> Path:
    """A hidden temporary name next to ``final`` that no reader's glob matches."""
    return final.with_name(f".{final.name}{suffix}")


def write_parquet(table: pa.Table, path: Path, metadata: dict[bytes, bytes] | None = None) -> None:
    """Writes ``table`` to ``path`` (zstd) and syncs it to disk."""
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with open(path, "wb") as f:
        pq.write_table(table, f, **PARQUET_OPTIONS)
        f.flush()
        os.fsync(f.fileno())


def split_by_day(table: pa.Table) -> list[tuple[date, pa.Table]]:
    """One table per event day (column ``day``), days ascending, rows in their order."""
    if table.num_rows == 0:
        return []
    days = table.column("day")
    unique: list[date] = sorted(days.unique().to_pylist())
    if len(unique) == 1:
        return [(unique[0], table)]
    return [(d, table.filter(pc.equal(days, pa.scalar(d, pa.date32())))) for d in unique]


def write_range(
    root: Path,
    r: FileRange,
    events: pa.Table,
    dead: pa.Table,
    *,
    step: Callable[[str], None] | None = None,
) -> list[Path]:
    """Writes one source range's events (a file per event day) and rejections, then commits it.

    Args:
        root: The warehouse directory.
        r: The source partition and offsets the tables come from.
        events: Rows of ``EVENTS_SCHEMA`` (may be empty).
        dead: Rows of ``DEADLETTER_SCHEMA`` (may be empty).
        step: Called with the name of each step done; tests raise from it to crash there.

    Returns:
        The data files written (not the marker).
    """
    root = Path(root)
    note = step or (lambda _name: None)
    finals: list[Path] = []
    for day, table in split_by_day(events):
        final = day_dir(root, day.isoformat()) / range_name(r)
        final.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(table, temp_path(final))
        finals.append(final)
    if dead.num_rows:
        final = root / DEADLETTER_DIR / range_name(r)
        final.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(dead, temp_path(final))
        finals.append(final)
    note("written")
    for final in finals:
        os.replace(temp_path(final), final)
        note(f"renamed {final.name}")
    commits = root / COMMITS_DIR
    commits.mkdir(parents=True, exist_ok=True)
    marker = commits / range_name(r, "commit")
    temp_path(marker).write_bytes(b"")
    os.replace(temp_path(marker), marker)
    note("committed")
    for old in commits.glob(f"p{r.partition:03d}-*.commit"):
        prev = parse_range(old.name)
        if prev is not None and prev.last < r.last:
            old.unlink(missing_ok=True)
    return finals


def recover(root: Path) -> dict[int, int]:
    """Deletes what a crashed flush left behind; returns the last loaded offset per partition.

    Temporary files go, and so do data files of ranges after their partition's last commit
    marker (their records will be loaded again). Older markers of a partition go too.
    """
    root = Path(root)
    committed = committed_offsets(root)
    dirs = [root / DEADLETTER_DIR, root / COMMITS_DIR]
    events = root / EVENTS_DIR
    if events.is_dir():
        dirs.extend(p for p in events.iterdir() if p.is_dir())
    for d in dirs:
        if not d.is_dir():
            continue
        for path in d.iterdir():
            if path.name.endswith(TEMP_SUFFIX):
                path.unlink(missing_ok=True)
                continue
            r = parse_range(path.name)
            if r is None:
                continue
            last = committed.get(r.partition, -1)
            if r.last > last or (path.suffix == ".commit" and r.last < last):
                path.unlink(missing_ok=True)
    return committed
