"""The Faust worker: the events topic in, exact live metrics, dead letters and forwards out.

One agent reads ``<prefix>.events`` record by record (Faust delivers at most ~9,000 records/s
whatever the agent does, so events travel in batches). For each record it validates the batch
with the contract, re-sends events of another partition's users to that partition, sends
rejections to the dead-letter topic, and folds the local events into the partition's
:class:`~usersignals.streams.folds.PartitionState`; what was new is written to a changelogged
table (:mod:`usersignals.streams.changelog`). No await per event: sends are buffered
(``send_soon``) and Faust flushes them, and the table's changelog, before committing offsets
(:func:`flush_every_send` makes that flush wait for every delivery).

Delivery is at least once (the embedded broker has no transactions): after a crash, records
since the last commit are processed again, and the folds are idempotent, so numbers stay exact.
On every assignment the table is restored from its changelog and each held partition's state
is rebuilt from its keys.

A partition's state remembers the first input record it folded (offset and fingerprint, in
the table). A record before that offset, or another record at it (or at the last one folded),
means the events topic is a new incarnation (the embedded broker keeps records in memory, so
a restarted one starts every topic at offset 0 again; a recreated topic does too): the state
of the old incarnation is dropped, with a WARNING, a count in ``/metrics``
(``usersignals_incarnation_resets_total``) and in ``/v1/status``. A replay after a crash
(offsets between the first and the position) changes nothing.

Two quirks of the embedded broker (tansu) and Faust shape this module:

- tansu answers ListOffsets(latest) with the base offset of the partition's last record batch
  plus one, not the end of the log, and Faust stops reading a changelog at that offset: the
  tail of the last batch would be lost on recovery. :func:`complete_recovery` reads each held
  changelog partition on from there, to the high watermark of a fetch (which is right).
- tansu waits the whole rebalance timeout before answering the first JoinGroup, so the timeout
  is a few seconds here (:data:`REBALANCE_TIMEOUT_S`), not Faust's default minute.

The worker keeps its own topics (events, dead letters, the table's changelog): every
:data:`TOPICS_CHECK_S` it creates those missing, with the configured partitions, and says so
with a WARNING. A restarted embedded broker starts with none; its clients never let the broker
create them (:func:`~usersignals.broker.refuse_topic_auto_creation`), since the broker's own
default of 4 partitions for a changelog under an 8-partition table stopped the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import faust
from aiokafka.errors import KafkaError
from faust.types import TP
from prometheus_client.registry import Collector

from usersignals.broker import ensure_topics, refuse_topic_auto_creation
from usersignals.config import Settings
from usersignals.errors import BrokerError
from usersignals.ingest.event import MAX_MESSAGE_BYTES
from usersignals.metrics.flattery import params_of
from usersignals.streams import heap
from usersignals.streams.changelog import (
    PartitionKeeper,
    key_partition,
    rebuild_keepers,
    record_fingerprint,
)
from usersignals.streams.exposition import EventTimeLag, ProcessCounters, WorkerCollector
from usersignals.streams.folds import PartitionState
from usersignals.streams.records import dead_letter, split_record

__all__ = [
    "REBALANCE_TIMEOUT_S",
    "ArenaFn",
    "LiveWorker",
    "Sidecar",
    "complete_recovery",
    "flush_every_send",
    "rewind_uncommitted",
]

ArenaFn = Callable[[dict[tuple[Any, Any, Any], int]], list[dict[str, Any]]]
"""Arena rows from a preference count table (injected by the CLI: streams cannot import it)."""


class Sidecar(Collector, Protocol):
    """A process the worker runs beside itself (the warehouse loader): its state is a section
    of ``/v1/status`` under :attr:`name` and its metrics are part of ``/metrics``."""

    name: str

    def status(self) -> dict[str, Any]:
        """The section of ``/v1/status`` (JSON values only)."""
        ...


REBALANCE_TIMEOUT_S = 5.0
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_S = 1.0
RECOVERY_TAIL_TIMEOUT_S = 60.0
FLUSH_CHECK_S = 1.0
"""How often a flush waiting for deliveries looks whether the producer is stopping."""
TABLE_NAME = "state"
TOPICS_CHECK_S = 2.0
"""How often the worker checks that its topics exist (and creates those missing)."""
TOPICS_CHECK_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)

FETCH_BYTES_PER_PARTITION = 8 * 1024**2
"""Bytes one fetch may bring per partition: batch records are ~20 KiB per 100 events, and
Faust's 1 MiB default left the agent waiting on fetches between bursts."""


class LiveWorker:
    """A Faust app with the worker's agent, table and state, ready for ``faust.Worker``.

    Args:
        settings: Topics, partitions, retention, model label bound.
        port: Web port of this worker (``/v1/report``, ``/v1/partial``, ``/metrics``).
        arena_fn: Arena rows from the preference count table; ``None``: arena is ``[]``.
    """

    def __init__(self, settings: Settings, *, port: int, arena_fn: ArenaFn | None = None) -> None:
        self.settings = settings
        self.arena_fn = arena_fn
        self.keepers: dict[int, PartitionKeeper] = {}
        self.event_lag = EventTimeLag()
        self.records = 0
        self.sidecars: list[Sidecar] = []
        """Processes run beside the worker, shown in its status and metrics (set by the CLI)."""
        self.ready = False
        """Set once the state of the held partitions is rebuilt after an assignment."""
        self._checking = False
        # the topic check's kafka-python client would log each refused connection, with a
        # traceback, beside the consumer's own lines about the broker being away
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        refuse_topic_auto_creation()
        self.app = faust.App(
            f"{settings.topic_prefix}-worker",
            broker=f"kafka://{settings.bootstrap}",
            value_serializer="raw",
            key_serializer="raw",
            store="memory://",
            datadir=settings.state_path("faust"),
            web_port=port,
            topic_partitions=settings.partitions,
            table_standby_replicas=0,
            consumer_auto_offset_reset="earliest",
            broker_rebalance_timeout=REBALANCE_TIMEOUT_S,
            broker_session_timeout=SESSION_TIMEOUT_S,
            broker_heartbeat_interval=HEARTBEAT_S,
            web_in_thread=False,
            consumer_max_fetch_size=FETCH_BYTES_PER_PARTITION,
            # every dead letter and forward fits (streams.records); Faust's default of
            # 1,000,000 bytes refused the dead letter of a 1,000,000-byte record
            producer_max_request_size=MAX_MESSAGE_BYTES,
            # a restarted embedded broker has an empty changelog below the offsets recovered
            # before: not an error here, the state of the old incarnation is dropped instead
            recovery_consistency_check=False,
        )
        self.events_topic = self.app.topic(
            settings.events_topic,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
        )
        self.dead_topic = self.app.topic(
            settings.dead_topic,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
        )
        self.table = self.app.Table(
            TABLE_NAME,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
        )
        self.table.on_recover(self._on_recovered)
        rewind_uncommitted(self.app.consumer, settings.events_topic)
        flush_every_send(self.app.producer.buffer)
        self.process = ProcessCounters()
        self.collector = WorkerCollector(
            self.states,
            self.consumer_lag,
            self.event_lag,
            settings.max_models,
            process=self.process,
            flattery=params_of(settings),
        )
        self.app.agent(self.events_topic, name="usersignals-events")(self._process)
        self.app.timer(heap.SETTLE_INTERVAL_S)(self._settle)
        self.app.timer(TOPICS_CHECK_S)(self._keep_topics)

        from usersignals.streams.web import add_views

        add_views(self)

    # -- the agent -----------------------------------------------------------------------------

    async def _process(self, stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            self.handle(message.partition, message.offset, message.value, message.timestamp)

    def handle(
        self, partition: int, offset: int, value: bytes | None, timestamp: float | None = None
    ) -> None:
        """Processes one input record (called inside the agent, so table writes go to the
        changelog partition of that record).

        ``timestamp`` is the record's Kafka timestamp in seconds: the day its rejections were
        received, which their dead letters carry too (so the warehouse agrees).
        """
        settings = self.settings
        ts_ms = round(timestamp * 1000) if timestamp is not None and timestamp > 0 else None
        # the record's own time is its moment of receipt, as the loader reads it too: a record
        # replayed late is judged (24 h future limit) as it was when it arrived
        moment = datetime.fromtimestamp(ts_ms / 1000, UTC) if ts_ms else None
        received = moment.date() if moment else None
        # Faust turns seconds back into int(s * 1000) milliseconds: half a millisecond more
        # keeps that exact whatever the float rounding
        letter_ts = (ts_ms + 0.5) / 1000 if ts_ms else None
        keeper = self.keepers.get(partition)
        if keeper is None:
            keeper = self._rebuild([partition])[partition]
        fingerprint = record_fingerprint(value, ts_ms)
        changed = keeper.incarnation_changed(offset, fingerprint)
        if changed is not None:
            keeper = self._reset(partition, changed)
        keeper.mark(self.table, offset, fingerprint)
        outcome = split_record(
            value, partition, settings.partitions, now=moment, known=keeper.state.users
        )
        for rejection in outcome.rejections:
            letter = dead_letter(rejection, settings.events_topic, partition, offset)
            self.dead_topic.send_soon(
                value=letter.value, headers=letter.headers, timestamp=letter_ts
            )
        for fwd in outcome.forward:
            self.events_topic.send_soon(key=fwd.key, value=fwd.value, partition=fwd.partition)
        new = keeper.fold(self.table, offset, outcome.local, outcome.rejections, received)
        if new:
            self.event_lag.observe(new, datetime.now(UTC))
        self.records += 1
        self.process.record(outcome.rejections)

    def _reset(self, partition: int, why: str) -> PartitionKeeper:
        """Drops the live state of ``partition`` (a new incarnation of the events topic):
        nothing of the old incarnation is mixed with the new one."""
        log.warning(
            "partition %d of %s is a new incarnation of the topic (%s): "
            "its live state of the old one is dropped",
            partition,
            self.settings.events_topic,
            why,
        )
        for key in [k for k in self.table.data if key_partition(k) == partition]:
            del self.table[key]
        keeper = self.keepers[partition] = PartitionKeeper(partition, self.settings.retention_days)
        self.process.resets[partition] = self.process.resets.get(partition, 0) + 1
        return keeper

    async def _settle(self) -> None:
        heap.settle()

    async def _keep_topics(self) -> None:
        """Creates the worker's topics that are missing (a restarted embedded broker).

        The check runs in a daemon thread of its own, one at a time: with the broker gone it
        may take its whole timeout, and a stopping worker neither waits for it nor starts one.
        """
        if self._checking or self.app.should_stop:
            return
        settings = self.settings
        changelog = self.table.changelog_topic.get_topic_name()
        topics = [settings.events_topic, settings.dead_topic, changelog]
        self._checking = True
        try:
            created = await in_daemon_thread(
                lambda: ensure_topics(
                    settings.bootstrap,
                    settings.partitions,
                    topics,
                    timeout=TOPICS_CHECK_TIMEOUT_S,
                    compacted=[changelog],
                ),
                name="usersignals-topics",
            )
        except BrokerError:
            return  # the broker is away (the consumer says so): the next check tries again
        finally:
            self._checking = False
        if created:
            log.warning(
                "topics %s were missing (a restarted or emptied broker): created with %d "
                "partitions",
                ", ".join(created),
                settings.partitions,
            )

    # -- state after assignment ----------------------------------------------------------------

    def held_partitions(self) -> set[int]:
        """Partitions of the events topic assigned to this worker now."""
        topic = self.settings.events_topic
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    async def _on_recovered(self) -> None:
        held = self.held_partitions()
        try:
            await complete_recovery(self.app, self.table, held)
        except KafkaError as exc:  # e.g. the changelog is gone with a restarted broker
            log.warning("changelog tail not read (%s): state as Faust restored it", exc)
        self.keepers.clear()
        self.keepers.update(self._rebuild(held))
        heap.settle()
        self.ready = True
        log.info("state rebuilt for partitions %s", sorted(held))

    def _rebuild(self, partitions: Iterable[int]) -> dict[int, PartitionKeeper]:
        return rebuild_keepers(
            list(self.table.data.items()), partitions, self.settings.retention_days
        )

    # -- reads ---------------------------------------------------------------------------------

    def states(self) -> list[PartitionState]:
        """The partition states held, in partition order."""
        return [self.keepers[p].state for p in sorted(self.keepers)]

    def consumer_lag(self) -> dict[int, int]:
        """Records not yet processed per held partition (high watermark of the last fetch)."""
        lag: dict[int, int] = {}
        consumer = self.app.consumer
        topic = self.settings.events_topic
        for p, keeper in self.keepers.items():
            with contextlib.suppress(Exception):
                highwater = consumer.highwater(TP(topic, p))
                if highwater is not None and keeper.position >= 0:
                    lag[p] = max(highwater - keeper.position, 0)
        return lag


def rewind_uncommitted(consumer: Any, topic: str) -> None:
    """Makes "seek to committed offsets" rewind partitions of ``topic`` that have no commit.

    Faust's fetch loop drops records it has already fetched when the consumer generation
    changes mid-batch (a rebalance), counting on a later seek back to the committed offsets to
    read them again. aiokafka seeks only partitions whose committed offset is above 0, so a
    partition never committed stays past the dropped records and they are never processed:
    a worker taking over from one killed before its first commit read nothing at all. Here a
    partition with no commit (or commit 0) goes back to its first offset; replaying records
    is harmless, because every fold is idempotent.
    """
    seek_to_committed = consumer.seek_to_committed

    async def seek_to_committed_or_beginning() -> Mapping[Any, int | None]:
        committed: Mapping[Any, int | None] = await seek_to_committed()
        for tp, offset in committed.items():
            if tp.topic == topic and not offset:
                await consumer.seek(TP(tp.topic, tp.partition), 0)
        return committed

    consumer.seek_to_committed = seek_to_committed_or_beginning


async def complete_recovery(app: faust.App, table: Any, partitions: Iterable[int]) -> int:
    """Applies the changelog records Faust's recovery missed on tansu; returns how many.

    Reads each changelog partition of ``partitions`` from one before the (too low) end offset
    the broker lists, to the high watermark its fetches report. Re-applying records Faust has
    applied already changes nothing (the changelog is last-write-wins per key).
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    topic = table.changelog_topic.get_topic_name()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if not tps:
        return 0
    bootstrap = ",".join(f"{u.host}:{u.port or 9092}" for u in app.conf.broker)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    store = table.data
    key_partitions = getattr(store, "_key_partition", None)
    applied = 0
    deadline = asyncio.get_running_loop().time() + RECOVERY_TAIL_TIMEOUT_S
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        pending = set()
        for tp in tps:
            if ends[tp] > 0:
                consumer.seek(tp, max(ends[tp] - 1, 0))
                pending.add(tp)
        while pending and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                for r in records:
                    if r.value is None:
                        store.pop(r.key, None)
                    else:
                        store[r.key] = r.value
                        if key_partitions is not None and key_partition(r.key) is not None:
                            key_partitions[r.key] = tp.partition
                    applied += 1
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    pending.discard(tp)
            if not batch:
                await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return applied


_T = TypeVar("_T")


async def in_daemon_thread(fn: Callable[[], _T], *, name: str) -> _T:
    """Runs ``fn`` in a new daemon thread and awaits its result.

    Unlike :func:`asyncio.to_thread`, the process does not wait for the thread at exit, so a
    call blocked on an unreachable broker cannot hold up a stopping worker.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(result: _T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result: _T | None = fn()
            error: BaseException | None = None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits it
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


def flush_every_send(buffer: Any) -> None:
    """Makes a Faust producer buffer's ``flush`` wait until every message put is acknowledged.

    Faust flushes the buffer before it commits offsets (the changelog writes, dead letters and
    forwards of the records being committed are in it), but its flush returns as soon as no
    message went out for 0.1 s: under load, offsets were committed while changelog writes
    still sat in the buffer, and a crash then lost them for good (the records were not
    processed again). Here ``flush`` waits for the delivery of each message put before it,
    however slow (a failed one is done too: Faust logs it). Once the buffer is stopping, the
    messages still unsent cannot go out: Faust's own flush says so.
    """
    outstanding: set[asyncio.Future[Any]] = set()
    put, stopping_flush = buffer.put, buffer.flush

    def tracked_put(fut: asyncio.Future[Any]) -> None:
        outstanding.add(fut)
        fut.add_done_callback(outstanding.discard)
        put(fut)

    async def flush() -> None:
        while outstanding:
            if buffer.state != "running":
                await stopping_flush()
                return
            await asyncio.wait(list(outstanding), timeout=FLUSH_CHECK_S)

    buffer.put = tracked_put
    buffer.flush = flush
