"""The warehouse loader: Kafka events topic to Parquet, exactly once by naming.

It owns every partition of the events topic (one loader per warehouse, guarded by a lock
file), decodes records with the contract (:mod:`usersignals.warehouse.rows`), and rolls each
partition's buffer into a committed range (:mod:`usersignals.warehouse.commit`) when it holds
enough events or bytes or is old enough, and compacts event days that have gone quiet (so that
reports read their rollups instead of their rows). After commits it refits the arena ratings
file when the arena's count table changed (:mod:`usersignals.warehouse.derived`). Where to
start comes from the warehouse's manifest, never from Kafka; the offsets it commits to its
consumer group only inform ``status``.

Before it loads, it checks that the topic is the incarnation the manifest's positions belong
to, by reading back the last record it loaded of each partition (:mod:`usersignals.warehouse.
manifest`): a recreated topic, or a restarted embedded broker, starts at offset 0 again, and
its records would otherwise be skipped as "already loaded". A new incarnation is loaded from
its beginning under a new epoch, at warehouse offsets after every offset used before.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import gc
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from usersignals.broker import refuse_topic_auto_creation
from usersignals.config import Settings
from usersignals.errors import LoaderBusyError, LoaderError
from usersignals.warehouse.commit import recover, write_range
from usersignals.warehouse.compact import compact_day
from usersignals.warehouse.derived import recover_derived, refresh_arena_ratings
from usersignals.warehouse.layout import COMMITS_DIR, EVENTS_DIR, FileRange
from usersignals.warehouse.loaderstate import (
    STATE_FILE,
    Backoff,
    LoaderState,
    error_kind,
    is_disk_error,
    write_state,
)
from usersignals.warehouse.manifest import (
    Manifest,
    PartitionState,
    fingerprint,
    replace_manifest,
)
from usersignals.warehouse.rows import PartitionBuffer, SourceRecord

__all__ = ["Loader", "LoaderBusyError", "LoaderError", "LoaderStats", "RollPolicy", "run_loader"]

log = logging.getLogger("usersignals.loader")

READ_BACK_TIMEOUT_S = 30.0
"""How long the loader waits for the last loaded records when it checks the incarnation."""

STATE_EVERY_S = 1.0
"""How often the loader replaces its state file while nothing else happens."""

ARENA_EVERY_S = 10.0
"""How often at most, while commits go on, the loader compares the arena's count table with
the one the ratings file was fitted to (and refits it if they differ); once more on return."""


@dataclass(frozen=True)
class RollPolicy:
    """When a partition's buffer becomes a file: the first limit reached wins.

    Attributes:
        max_events: Valid events buffered.
        max_bytes: Record bytes buffered.
        max_seconds: Age of the oldest buffered record (so quiet partitions still land).
        compact_after: Compact an event day (and write its rollups, which reports read
            instead of its rows) once no flush has written to it for this many seconds;
            None: never (``usersignals warehouse compact`` still can).
    """

    max_events: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_seconds: float = 10.0
    compact_after: float | None = 300.0


@dataclass
class LoaderStats:
    """What one run did (counts of this run only)."""

    records: int = 0
    events: int = 0
    rejected: int = 0
    foreign: int = 0
    flushes: int = 0
    files: int = 0
    compactions: int = 0
    arena_fits: int = 0
    """Times the arena ratings file was refitted (the count table had changed)."""
    seconds: float = 0.0
    epoch: int = 0
    committed: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    """Failures survived, by kind (``enospc``, ``eio``): each paused the loader, then it went on."""


@contextlib.contextmanager
def warehouse_lock(root: Path) -> Iterator[None]:
    """Holds the warehouse's loader lock (released by the kernel if the process dies)."""
    lock_dir = Path(root) / COMMITS_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "lock", "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LoaderBusyError(Path(root)) from None
        yield


@contextlib.contextmanager
def _manual_gc() -> Iterator[None]:
    """Automatic cyclic GC off while loading, collected after each flush instead.

    Buffers hold hundreds of thousands of tuples; the automatic collector walks them again and
    again while they fill, which cost about 3/4 of the loader's time (rows are freed by
    reference counting anyway).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        if enabled:
            gc.enable()


class Loader:
    """Loads the events topic of ``settings`` into ``settings.warehouse``.

    Args:
        settings: Bootstrap, topic prefix and warehouse.
        roll: When buffers are written.
        exit_with_parent: Stop (after flushing) when the parent process is gone.
        drain: Stop once every partition is loaded up to its end offset at start.
        step: Passed to :func:`~usersignals.warehouse.commit.write_range` for each flush
            (tests raise from it to fail a write there).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        roll: RollPolicy | None = None,
        exit_with_parent: bool = False,
        drain: bool = False,
        step: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.step = step
        self.root = Path(settings.warehouse)
        self.topic = settings.events_topic
        self.roll = roll or RollPolicy()
        self.exit_with_parent = exit_with_parent
        self.drain = drain
        self.stats = LoaderStats()
        self._parent = os.getppid()
        self._stopping = asyncio.Event()
        self._buffers: dict[int, PartitionBuffer] = {}
        self._bases: dict[int, int] = {}  # warehouse offset of Kafka offset 0, per partition
        self._tail: dict[int, SourceRecord] = {}  # last record buffered, per partition
        self._born: dict[int, float] = {}
        self._partitions = 0
        self._touched: dict[str, float] = {}  # event day -> when a flush last wrote to it
        self._compacting: asyncio.Task[tuple[int, dict[str, str]]] | None = None
        self._arena_due = True  # checked once per run even without a commit (a new warehouse)
        self._arena_checked = time.monotonic()
        self.state = LoaderState(pid=os.getpid(), started=time.time(), errors=self.stats.errors)
        self._state_path = settings.state_dir / STATE_FILE
        self._published = 0.0

    def stop(self) -> None:
        """Asks the loader to flush what it holds and return."""
        self._stopping.set()

    async def run(self) -> LoaderStats:
        """Loads until stopped (or drained); every buffered record is committed on return."""
        started = time.monotonic()
        with warehouse_lock(self.root), _manual_gc():
            manifest = recover(self.root)
            recover_derived(self.root)
            refuse_topic_auto_creation()
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.bootstrap,
                group_id=f"{self.settings.topic_prefix}-loader",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=4 * 1024 * 1024,
                fetch_max_bytes=64 * 1024 * 1024,
            )
            await consumer.start()
            try:
                while await self._consume(consumer, manifest):
                    manifest = recover(self.root)  # the topic was recreated under us
            finally:
                await consumer.stop()
        self.stats.seconds = time.monotonic() - started
        return self.stats

    async def _assign(self, consumer: AIOKafkaConsumer, manifest: Manifest) -> list[TopicPartition]:
        await consumer.topics()
        parts = consumer.partitions_for_topic(self.topic)
        if not parts:
            raise LoaderError(self.topic, "the topic does not exist")
        self._partitions = len(parts)
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        manifest = await self._incarnation(consumer, tps, manifest)
        states = manifest.partitions
        self._bases = {p: states.get(p, PartitionState()).base for p in sorted(parts)}
        for tp in tps:
            state = states.get(tp.partition, PartitionState())
            if state.last >= 0:
                consumer.seek(tp, state.last + 1)
            else:
                await consumer.seek_to_beginning(tp)
        self.stats.epoch = manifest.epoch
        self.stats.committed = manifest.committed()
        starts = {p: o + 1 for p, o in self.stats.committed.items()}
        log.info("loading %s (epoch %d) from %s", self.topic, manifest.epoch, starts)
        return tps

    async def _incarnation(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], manifest: Manifest
    ) -> Manifest:
        """The manifest to load under: a new epoch when the topic is not the one loaded."""
        reason = await self._changed(consumer, tps, manifest)
        if reason is None:
            return manifest
        log.warning(
            "%s is a new incarnation of the topic (%s): loading it from its beginning as epoch %d",
            self.topic,
            reason,
            manifest.epoch + 1,
        )

        def new_epoch(m: Manifest) -> Manifest:
            parts = {p: PartitionState(base=s.base + s.last + 1) for p, s in m.partitions.items()}
            return dataclasses.replace(m, epoch=m.epoch + 1, topic=self.topic, partitions=parts)

        return replace_manifest(self.root, new_epoch)

    async def _changed(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], manifest: Manifest
    ) -> str | None:
        """Why the topic is not the incarnation ``manifest`` belongs to; None if it is."""
        if manifest.topic is not None and manifest.topic != self.topic:
            return f"the warehouse was loaded from {manifest.topic!r}"
        loaded = {
            tp: manifest.partitions[tp.partition]
            for tp in tps
            if manifest.partitions.get(tp.partition, PartitionState()).last >= 0
        }
        found = await self._read_back(consumer, {tp: s.last for tp, s in loaded.items()})
        for tp, record in found.items():
            state = loaded[tp]
            if record is None or record.offset < state.last:
                return f"partition {tp.partition} ends before {state.last}, the last offset loaded"
            # past it: the record went to retention, and the offsets are all there is to compare
            known = record.offset == state.last and state.fingerprint is not None
            if known and state.fingerprint != fingerprint(
                record.timestamp, record.key, record.value
            ):
                return f"partition {tp.partition} holds another record at {state.last}"
        return None

    async def _read_back(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> dict[TopicPartition, ConsumerRecord[bytes, bytes] | None]:
        """The first record at or after ``offsets[tp]`` of each partition; None: there is none.

        A partition's end comes from the high watermark of the fetch responses (the embedded
        broker's ListOffsets answers are not reliable). A broker that answers out of range
        makes the consumer start again from the earliest record, which comes before the offset.
        """
        for tp, offset in offsets.items():
            consumer.seek(tp, offset)
        found: dict[TopicPartition, ConsumerRecord[bytes, bytes] | None] = {}
        deadline = time.monotonic() + READ_BACK_TIMEOUT_S
        while len(found) < len(offsets):
            missing = [tp for tp in offsets if tp not in found]
            if time.monotonic() > deadline:
                listed = sorted(tp.partition for tp in missing)
                reason = f"partitions {listed} did not answer a fetch"
                raise LoaderError(self.topic, reason, retryable=True)
            batch = await consumer.getmany(*missing, timeout_ms=200)
            for tp in missing:
                messages = batch.get(tp)
                end = consumer.highwater(tp)
                if messages:
                    found[tp] = messages[0]
                elif end is not None and end <= offsets[tp]:
                    found[tp] = None
        return found

    async def _consume(self, consumer: AIOKafkaConsumer, manifest: Manifest) -> bool:
        """Loads until stopped, drained or the topic is recreated under it (then True: what
        was buffered is committed, and the caller assigns again, under a new epoch)."""
        tps = await self._assign(consumer, manifest)
        self.publish()
        ends = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
        targets: dict[int, int] = {}  # the end of each partition at start, once a fetch told it
        caught_up = False
        position = {tp.partition: self.stats.committed.get(tp.partition, -1) + 1 for tp in tps}
        recreated = False
        while not self._stopping.is_set() and not recreated:
            batch = await consumer.getmany(timeout_ms=200, max_records=20_000)
            recreated = self._recreated(consumer, tps, batch, position)
            if recreated:
                break
            for tp, messages in batch.items():
                buf = self._buffer(tp.partition)
                base = self._bases.get(tp.partition, 0)
                for m in messages:
                    record = SourceRecord(m.partition, base + m.offset, m.timestamp, m.key, m.value)
                    buf.add(record)
                    self._tail[tp.partition] = record
                    if buf.events >= self.roll.max_events or buf.bytes >= self.roll.max_bytes:
                        del self._buffers[tp.partition]
                        await self._flush(consumer, buf)
                        buf = self._buffer(tp.partition)
                position[tp.partition] = messages[-1].offset + 1
                self.stats.records += len(messages)
            await self._roll(consumer, force=False)
            await self._compact_quiet_days()
            await self._refresh_arena()
            self._note_lag(consumer, tps, position)
            if self.exit_with_parent and os.getppid() != self._parent:
                log.info("parent process %d is gone; stopping", self._parent)
                break
            for tp in tps:
                end = consumer.highwater(tp)
                if tp.partition not in targets and end is not None:
                    targets[tp.partition] = max(end, ends[tp.partition])
            if not caught_up and len(targets) == len(tps):
                caught_up = all(position[p] >= end for p, end in targets.items())
                if caught_up:
                    log.info("caught up with the end offsets at start: %s", targets)
            if self.drain and caught_up:
                break
        await self._roll(consumer, force=True)
        await self._compact_quiet_days(wait=True)
        await self._refresh_arena(final=True)
        return recreated

    def _recreated(
        self,
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        position: dict[int, int],
    ) -> bool:
        """Whether a partition went back under the position loaded to while the loader ran (a
        restarted embedded broker, a recreated topic): records before it, or a log end before
        it. Its new records are not buffered under the old epoch."""
        for tp in tps:
            messages = batch.get(tp)
            end = consumer.highwater(tp)
            first = messages[0].offset if messages else None
            if (first is not None and first < position[tp.partition]) or (
                end is not None and end < position[tp.partition]
            ):
                log.warning(
                    "partition %d of %s went back to offset %s (loaded to %d): the topic was "
                    "recreated; checking its incarnation again",
                    tp.partition,
                    self.topic,
                    first if first is not None else end,
                    position[tp.partition] - 1,
                )
                return True
        return False

    def _note_lag(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], position: dict[int, int]
    ) -> None:
        for tp in tps:
            end = consumer.highwater(tp)
            if end is not None:
                self.state.lag[str(tp.partition)] = max(0, end - position[tp.partition])
        if time.monotonic() - self._published >= STATE_EVERY_S:
            self.publish()

    def publish(self) -> None:
        """Replaces the state file (for the worker's status and metrics)."""
        self._published = time.monotonic()
        self.state.epoch = self.stats.epoch
        self.state.events = self.stats.events
        self.state.committed = {str(p): o for p, o in sorted(self.stats.committed.items())}
        self.state.updated = time.time()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        write_state(self._state_path, self.state)

    async def _compact_quiet_days(self, *, wait: bool = False) -> None:
        """Compacts, in a thread beside the loading, the days quiet for ``compact_after``.

        Compaction takes only committed files and holds its own lock, so it is safe at any
        moment; one runs at a time. ``wait``: finish the running one (at exit).
        """
        task = self._compacting
        if task is not None and (wait or task.done()):
            self._compacting = None
            try:
                done, failed = await task
            except Exception as exc:  # a failed compaction leaves the day as it was
                log.warning("compaction failed: %s", exc)
            else:
                self.stats.compactions += done
                for day, kind in failed.items():  # tried again once quiet for compact_after
                    self.state.count(kind)
                    self._touched.setdefault(day, time.monotonic())
                if failed:
                    self.publish()
        after = self.roll.compact_after
        if wait or after is None or self._compacting is not None:
            return
        now = time.monotonic()
        quiet = sorted(d for d, t in self._touched.items() if now - t >= after)
        for day in quiet:
            del self._touched[day]
        if quiet:
            self._compacting = asyncio.create_task(asyncio.to_thread(self._compact, quiet))

    async def _refresh_arena(self, *, final: bool = False) -> None:
        """Refits the arena ratings file, in a thread, if the count table changed since the
        last fit (:func:`~usersignals.warehouse.derived.refresh_arena_ratings`).

        Only after a commit (or once per run), at most every :data:`ARENA_EVERY_S` while
        loading, never beside a running compaction (which deletes the files it replaced);
        ``final``: now, the loading done. A failure leaves the previous file and is tried again.
        """
        if not self._arena_due:
            return
        now = time.monotonic()
        if not final and (
            self._compacting is not None or now - self._arena_checked < ARENA_EVERY_S
        ):
            return
        self._arena_checked = now
        try:
            done = await asyncio.to_thread(refresh_arena_ratings, self.root)
        except (OSError, duckdb.Error) as exc:
            log.warning("could not refit the arena ratings: %s", exc)
            return
        self._arena_due = False
        self.stats.arena_fits += done.refitted

    def _compact(self, days: list[str]) -> tuple[int, dict[str, str]]:
        """Compacts ``days``; returns how many were, and the kind of disk error of each that
        failed (left as it was, to be compacted later)."""
        done = 0
        failed: dict[str, str] = {}
        for day in days:
            try:
                result = compact_day(self.root, day)
            except OSError as exc:
                if not is_disk_error(exc):
                    raise
                failed[day] = error_kind(exc)
                log.warning("could not compact %s (%s); trying again later", day, failed[day])
                continue
            done += result.output is not None
            log.info("compacted %s: %d rows in %d files", day, result.rows_out, result.inputs)
        return done, failed

    def _buffer(self, partition: int) -> PartitionBuffer:
        buf = self._buffers.get(partition)
        if buf is None:
            buf = PartitionBuffer(self.topic, partition, self._partitions)
            self._buffers[partition] = buf
            self._born[partition] = time.monotonic()
        return buf

    async def _roll(self, consumer: AIOKafkaConsumer, *, force: bool) -> None:
        now = time.monotonic()
        for partition in sorted(self._buffers):
            buf = self._buffers[partition]
            due = (
                force
                or buf.events >= self.roll.max_events
                or buf.bytes >= self.roll.max_bytes
                or now - self._born[partition] >= self.roll.max_seconds
            )
            if due:
                del self._buffers[partition]
                await self._flush(consumer, buf)

    async def _flush(self, consumer: AIOKafkaConsumer, buf: PartitionBuffer) -> None:
        if buf.first is None or buf.last is None:
            return
        r = FileRange(buf.partition, buf.first, buf.last)
        base = self._bases.get(buf.partition, 0)
        tail = self._tail[buf.partition]
        state = PartitionState(
            base, buf.last - base, fingerprint(tail.timestamp_ms, tail.key, tail.value)
        )
        files = await self._write(r, buf, state)
        if files is None:
            return
        now = time.monotonic()
        for f in files:
            if f.parent.parent.name == EVENTS_DIR:
                self._touched[f.parent.name.removeprefix("day=")] = now
        self.stats.flushes += 1
        self.stats.files += len(files)
        self.stats.events += buf.events
        self.stats.rejected += buf.rejected
        self.stats.foreign += buf.foreign
        self.stats.committed[buf.partition] = state.last
        self._arena_due = True
        self.state.last_commit = time.time()
        self.publish()
        gc.collect(1)
        try:
            # bounded: with the broker gone aiokafka retries a commit forever, and a stop
            # waiting on it would never come (the manifest, replaced above, is the truth)
            await asyncio.wait_for(
                consumer.commit({TopicPartition(self.topic, buf.partition): state.last + 1}),
                self.settings.kafka_timeout_s,
            )
        except (KafkaError, TimeoutError) as exc:  # informational only
            log.warning(
                "could not commit offset of partition %d: %s",
                buf.partition,
                type(exc).__name__ if isinstance(exc, TimeoutError) else exc,
            )

    async def _write(
        self, r: FileRange, buf: PartitionBuffer, state: PartitionState
    ) -> list[Path] | None:
        """Writes and commits one range; on a full disk or an I/O error, pauses and writes it
        again (each failure leaves nothing of it behind). None: stopped while paused; the
        range stays uncommitted and is loaded again from Kafka by the next run."""
        s = self.settings
        backoff = Backoff(s.loader_retry_s, s.loader_backoff_cap_s, math.inf)
        events, dead = buf.events_table(), buf.deadletter_table()
        while True:
            try:
                files = write_range(
                    self.root, r, events, dead, step=self.step, state=state, topic=self.topic
                )
            except OSError as exc:
                if not is_disk_error(exc):
                    raise
                kind = error_kind(exc)
                delay = backoff.next()
                self.state.count(kind)
                self.state.paused = kind
                self.publish()
                log.warning(
                    "could not write partition %d's range (%s: %s); writing it again in %.1f s",
                    r.partition,
                    kind,
                    os.strerror(exc.errno or 0),
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    log.warning("stopping with partition %d's range not written", r.partition)
                    return None
                continue
            if self.state.paused is not None:
                log.warning("writing again: partition %d's range committed", r.partition)
                self.state.paused = None
            return files


def run_loader(
    settings: Settings,
    *,
    roll: RollPolicy | None = None,
    exit_with_parent: bool = False,
    drain: bool = False,
) -> LoaderStats:
    """Runs a :class:`Loader` in its own event loop; SIGTERM and SIGINT flush and return."""

    async def main() -> LoaderStats:
        loader = Loader(settings, roll=roll, exit_with_parent=exit_with_parent, drain=drain)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, loader.stop)
        try:
            return await loader.run()
        except BaseException as exc:  # the supervisor counts it by kind; the traceback follows
            if isinstance(exc, Exception):
                loader.state.failed = error_kind(exc)
                loader.publish()
            raise
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    return asyncio.run(main())
