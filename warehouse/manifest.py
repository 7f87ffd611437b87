"""The manifest: the one list of live warehouse files, and what the loader has committed.

``manifest.json`` at the warehouse root names every file a reader may read (events, dead
letters, rollups; paths relative to the root) and, per source partition of the events topic,
how far the loader got. It is only ever replaced whole (:func:`replace_manifest`: written to a
temporary name, synced, ``os.replace``d, the directory synced, under a lock), so a reader sees
the old list or the new one, never a mix. Every reader takes its files from here, never from
a directory listing; a file on disk that the manifest does not name is either being written
(it becomes live when a manifest naming it replaces the old one) or garbage that a later run
deletes (``commit.recover``, compaction's clean-up).

The loader's commit point is the replace that adds a flushed range's files and moves its
partition's ``last`` offset; compaction's is the replace that swaps a day's inputs for the
merged file and its rollups.

**Incarnations of the topic.** A topic deleted and created again (or an embedded broker
restarted: it keeps records in memory) starts its offsets at 0 again, so the offsets the
warehouse committed mean nothing there. Each partition's state keeps a fingerprint of the last
record loaded (a hash of its timestamp, key and value); when the loader starts, it reads that
record again. If the record is gone (the partition ends before it) or differs, or the topic's
name changed, the topic is a new *incarnation*: the manifest moves to a new ``epoch``, and
every partition's warehouse offsets continue after the ones already used (``base``): the
warehouse offset of a record is ``base + Kafka offset``. Rows and file names carry warehouse
offsets, so records of different epochs never share a log position, and later epochs sort
after earlier ones (first copy of an ``event_id`` wins, as before).

A warehouse written before manifests existed has none: :func:`read_manifest` then derives one
from the layout as it was read before (commit markers' names, compacted files' ``covers``), and
the first writer stores it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from usersignals.errors import ManifestError
from usersignals.warehouse.layout import (
    COMMITS_DIR,
    DEADLETTER_DIR,
    EVENTS_DIR,
    compacted_covers,
    parse_range,
)

__all__ = [
    "MANIFEST",
    "Manifest",
    "ManifestError",
    "PartitionState",
    "ensure_manifest",
    "fingerprint",
    "read_manifest",
    "replace_manifest",
    "sync_dirs",
]

MANIFEST = "manifest.json"
"""The manifest's name at the warehouse root."""

FORMAT = 1
_LOCK = "manifest.lock"
_ROLLUPS = "rollups"


def fingerprint(timestamp_ms: int, key: bytes | None, value: bytes | None) -> str:
    """A short hash that tells one Kafka record from another (timestamp, key and value)."""
    h = hashlib.sha256()
    for part in (str(timestamp_ms).encode(), key, value):
        if part is None:
            h.update(b"\xff")
        else:
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class PartitionState:
    """How far the loader got in one source partition, in the current epoch.

    Attributes:
        base: Warehouse offset of Kafka offset 0 in this epoch.
        last: Last Kafka offset loaded in this epoch; -1: none yet.
        fingerprint: :func:`fingerprint` of the record at ``last`` (None: not known, a
            warehouse from before manifests).
    """

    base: int = 0
    last: int = -1
    fingerprint: str | None = None

    @property
    def stored_last(self) -> int:
        """The warehouse offset of the last record loaded (``base - 1`` when none)."""
        return self.base + self.last


@dataclass(frozen=True)
class Manifest:
    """One version of the warehouse's live files and the loader's position.

    Attributes:
        generation: Incremented by every replace.
        epoch: The incarnation of the events topic that ``partitions`` refer to.
        topic: The events topic loaded (None: nothing loaded yet, or not known).
        partitions: Position per source partition.
        files: Live files, as paths relative to the warehouse root, sorted.
    """

    generation: int = 0
    epoch: int = 0
    topic: str | None = None
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def committed(self) -> dict[int, int]:
        """Last Kafka offset loaded per partition in the current epoch (partitions with one)."""
        return {p: s.last for p, s in sorted(self.partitions.items()) if s.last >= 0}

    def stored_committed(self) -> dict[int, int]:
        """Last warehouse offset loaded per partition, over every epoch."""
        return {p: s.stored_last for p, s in sorted(self.partitions.items())}

    def under(self, folder: str) -> list[str]:
        """Live files under ``folder`` (a relative path), sorted."""
        prefix = folder.rstrip("/") + "/"
        return [f for f in self.files if f.startswith(prefix)]

    def events(self) -> list[str]:
        """Live events files (loader and compacted)."""
        return self.under(EVENTS_DIR)

    def deadletter(self) -> list[str]:
        return self.under(DEADLETTER_DIR)

    def rollups(self) -> list[str]:
        return self.under(_ROLLUPS)

    def with_files(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Manifest:
        """A copy with ``add`` in and ``remove`` out."""
        gone = set(remove)
        files = sorted({f for f in self.files if f not in gone} | set(add))
        return dataclasses.replace(self, files=tuple(files))

    def to_json(self) -> bytes:
        obj = {
            "format": FORMAT,
            "generation": self.generation,
            "epoch": self.epoch,
            "topic": self.topic,
            "partitions": {
                str(p): {"base": s.base, "last": s.last, "fingerprint": s.fingerprint}
                for p, s in sorted(self.partitions.items())
            },
            "files": list(self.files),
        }
        return json.dumps(obj, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, path: Path) -> Manifest:
        try:
            obj = json.loads(raw)
            if obj.get("format") != FORMAT:
                raise ManifestError(path, f"unknown format {obj.get('format')!r}")
            return cls(
                generation=int(obj["generation"]),
                epoch=int(obj["epoch"]),
                topic=obj["topic"],
                partitions={
                    int(p): PartitionState(int(s["base"]), int(s["last"]), s["fingerprint"])
                    for p, s in obj["partitions"].items()
                },
                files=tuple(str(f) for f in obj["files"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(path, f"{type(exc).__name__}: {exc}") from None


def read_manifest(root: Path) -> Manifest:
    """The current manifest of the warehouse at ``root`` (derived from the layout if none).

    Raises:
        ManifestError: The manifest file is damaged.
    """
    path = Path(root) / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return _from_layout(Path(root))
    return Manifest.from_json(raw, path)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    d = Path(root) / COMMITS_DIR
    d.mkdir(parents=True, exist_ok=True)
    with open(d / _LOCK, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dirs(files: Iterable[Path]) -> None:
    """Syncs the directories of ``files`` (renamed in), before a manifest names them."""
    for d in sorted({Path(f).parent for f in files}):
        _fsync_dir(d)


def _write(root: Path, manifest: Manifest) -> None:
    final = Path(root) / MANIFEST
    temp = final.with_name(f".{MANIFEST}.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(manifest.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
    except BaseException:  # a full disk: the old manifest stands, no half-written copy stays
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def replace_manifest(root: Path, change: Callable[[Manifest], Manifest]) -> Manifest:
    """Replaces the manifest with ``change(current)`` atomically; returns the new one.

    Writers (the loader's flushes, compaction) serialise on a lock, so a change always
    applies to the latest version.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        current = read_manifest(root)
        new = dataclasses.replace(change(current), generation=current.generation + 1)
        _write(root, new)
    return new


def ensure_manifest(root: Path) -> Manifest:
    """The manifest, written first if the warehouse has none yet (migration, once)."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return read_manifest(root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        if not (root / MANIFEST).is_file():
            _write(root, read_manifest(root))
    return read_manifest(root)


def _from_layout(root: Path) -> Manifest:
    """The manifest of a warehouse written before manifests: its layout read the old way.

    Committed offsets come from the commit markers' names; live events files are the
    committed loader files not covered by a compacted file of their day, plus the compacted
    files; rollups are every rollup file (a report picks the valid ones by their names).
    """
    committed: dict[int, int] = {}
    commits = root / COMMITS_DIR
    if commits.is_dir():
        for path in commits.iterdir():
            r = parse_range(path.name)
            if r is not None and path.suffix == ".commit":
                committed[r.partition] = max(committed.get(r.partition, -1), r.last)
    files: list[str] = []

    def is_committed(name: str) -> bool:
        r = parse_range(name)
        return r is not None and r.last <= committed.get(r.partition, -1)

    events = root / EVENTS_DIR
    if events.is_dir():
        for day in sorted(p for p in events.iterdir() if p.is_dir()):
            parquet = sorted(p for p in day.iterdir() if p.suffix == ".parquet")
            covered: set[str] = set()
            for f in parquet:
                if f.name.startswith("c-") and len(parquet) > 1:
                    covered.update(compacted_covers(f))
            files += [
                f"{EVENTS_DIR}/{day.name}/{f.name}"
                for f in parquet
                if f.name not in covered and (f.name.startswith("c-") or is_committed(f.name))
            ]
    dead = root / DEADLETTER_DIR
    if dead.is_dir():
        dead_files = (f.name for f in dead.glob("*.parquet"))
        files += [f"{DEADLETTER_DIR}/{name}" for name in dead_files if is_committed(name)]
    rollups = root / _ROLLUPS
    if rollups.is_dir():
        users = sorted(rollups.glob("users-*.parquet"))
        files += [f"{_ROLLUPS}/{u.name}" for u in users[-1:]]
        files += [str(f.relative_to(root)) for f in rollups.glob("*=*/*.parquet") if f.is_file()]
    parts = {p: PartitionState(0, last) for p, last in committed.items()}
    return Manifest(partitions=parts, files=tuple(sorted(files)))
