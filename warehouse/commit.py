"""Writing one loaded range atomically, and putting the warehouse right after a crash.

A flush of source range ``p/first..last`` (warehouse offsets) writes every file under a
temporary name, renames the data files to their final names, then replaces the manifest with
one that names them and moves the partition's position to the range's last record
(:mod:`usersignals.warehouse.manifest`). That replace is the commit point: a range counts as
loaded exactly when the manifest names its files. :func:`recover` runs before the loader reads
anything: it deletes temporary files and the loader files the manifest does not name (a flush
that did not commit, whose records are loaded again from Kafka, or inputs a compaction already
replaced), so that no row is ever there twice.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from usersignals.warehouse.layout import (
    DEADLETTER_DIR,
    EVENTS_DIR,
    FileRange,
    day_dir,
    parse_range,
    range_name,
)
from usersignals.warehouse.manifest import (
    Manifest,
    PartitionState,
    ensure_manifest,
    replace_manifest,
    sync_dirs,
)

__all__ = [
    "PARQUET_OPTIONS",
    "STEPS",
    "TEMP_SUFFIX",
    "recover",
    "split_by_day",
    "temp_path",
    "write_parquet",
    "write_range",
]

TEMP_SUFFIX = ".load.tmp"
"""Suffix of the loader's temporary files (compaction uses its own)."""

STEPS = ("written", "renamed", "committed")
"""The steps of a flush, in order, as ``write_range`` reports them: every file written under
its temporary name; each file renamed (reported once per file, as ``renamed {name}``); the
manifest replaced, the commit point."""

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
    state: PartitionState | None = None,
    topic: str | None = None,
) -> list[Path]:
    """Writes one source range's events (a file per event day) and rejections, then commits it.

    Args:
        root: The warehouse directory.
        r: The source partition and warehouse offsets the tables come from.
        events: Rows of ``EVENTS_SCHEMA`` (may be empty).
        dead: Rows of ``DEADLETTER_SCHEMA`` (may be empty).
        step: Called with the name of each step done; tests raise from it to crash there.
        state: The partition's position once committed (the loader's, with the epoch's base
            and the last record's fingerprint); default: Kafka offsets equal to warehouse
            offsets of the current epoch's base, no fingerprint.
        topic: The events topic the range comes from, recorded in the manifest.

    Returns:
        The data files written.
    """
    root = Path(root)
    note = step or (lambda _name: None)
    parts = [(day_dir(root, day.isoformat()) / range_name(r), t) for day, t in split_by_day(events)]
    if dead.num_rows:
        parts.append((root / DEADLETTER_DIR / range_name(r), dead))
    finals = [final for final, _table in parts]
    try:
        for final, table in parts:
            final.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(table, temp_path(final))
        note("written")
        for final in finals:
            os.replace(temp_path(final), final)
            note(f"renamed {final.name}")
        sync_dirs(finals)
    except OSError:  # a full disk, say: the range is not committed, nothing of it stays
        for final in finals:
            temp_path(final).unlink(missing_ok=True)
            final.unlink(missing_ok=True)
        raise
    names = [str(f.relative_to(root)) for f in finals]

    def commit(m: Manifest) -> Manifest:
        current = m.partitions.get(r.partition, PartitionState())
        new = state or PartitionState(current.base, r.last - current.base)
        parts = {**m.partitions, r.partition: new}
        changed = dataclasses.replace(m, partitions=parts, topic=topic or m.topic)
        return changed.with_files(add=names)

    replace_manifest(root, commit)
    note("committed")
    return finals


def _loader_files(root: Path) -> Iterator[Path]:
    dirs = [root / DEADLETTER_DIR]
    events = root / EVENTS_DIR
    if events.is_dir():
        dirs.extend(p for p in events.iterdir() if p.is_dir())
    for d in dirs:
        if d.is_dir():
            yield from d.iterdir()


def recover(root: Path) -> Manifest:
    """Deletes what a crashed flush left behind; returns the manifest to resume from.

    Temporary files go, and so do the loader files the manifest does not name: ranges that
    were never committed (their records will be loaded again) and inputs of a compaction
    that replaced them. Compacted files are compaction's to clean up (it may be writing one).
    """
    root = Path(root)
    manifest = ensure_manifest(root)
    live = set(manifest.files)
    for path in _loader_files(root):
        temporary = path.name.endswith(TEMP_SUFFIX)
        loaded = parse_range(path.name) is not None
        if temporary or (loaded and str(path.relative_to(root)) not in live):
            path.unlink(missing_ok=True)
    return manifest
