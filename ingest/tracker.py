"""The SDK: a :class:`Tracker` checks each event where it is made and ships it to Kafka in batches.

Guarantees, for the people who run it:

- **Mistakes surface at the call.** Every method validates with the contract in the caller's
  thread and raises :class:`~usersignals.ingest.contract.EventError` (the contract's exact
  message, naming the field) before anything is queued.
- **The caller is never blocked for long.** Accepted events wait in a bounded in-memory queue
  (``max_queue`` events). When it is full a call waits at most ``max_block_ms``; after that the
  event is written straight to the spool (it may then reach Kafka ahead of older events still
  in memory), and if the spool is full too it is counted as ``failed`` and logged as an error.
- **The caller learns which events were lost.** ``on_dropped(event_ids, reason)`` is called
  with the ``event_id``\\ s of events that could be neither sent nor kept: ``"spool_full"``
  (the broker was away and the spool had no room) or ``"refused"`` (Kafka refused the record
  with an error a retry cannot fix). It runs on the tracker's thread (or the caller's, for an
  event that found the queue full) and must return quickly; an exception in it is logged.
- **Batches per partition.** A background thread groups events by partition
  (``partition_for(user_id, partitions)``) into records of at most ``batch_size`` events and
  1 MiB, each sent to its partition explicitly, key = the first event's ``user_id``. It waits up
  to ``linger_ms`` for a batch to fill.
- **Nothing is dropped silently.** A retryable broker error is retried ``retries`` times with
  exponential backoff and full jitter. When the broker cannot be reached (or the topic's
  metadata cannot be had), records go to a bounded, checksummed, append-only spool file
  (:mod:`usersignals.ingest.spool`, fsynced), and are resent from it, oldest first, before any
  newer event, once the broker answers again, also by a later process on the same
  ``spool_path``. Every outcome is counted (:class:`TrackerStats`). A damaged spool file costs
  only its damaged frames: the events they held are counted as ``corrupt`` and logged as a
  warning with the file and the offset (their ids cannot be read any more).
- **flush() says what happened.** :meth:`Tracker.flush` waits until every event handed over
  before the call is acknowledged by Kafka (``acks=all``, idempotent producer) *or* fsynced to
  the spool, and returns a :class:`FlushResult` counting which: ``delivered`` (also its truth
  value) when all of them are in Kafka and the spool is empty, ``durable`` when none was lost
  (acknowledged or spooled) and it did not time out. Delivery is at least once: a crash
  between a send and its acknowledgement, or between a resend and the spool's position
  update, can repeat events; consumers count an ``event_id`` once.
- **Start-up.** Until the first connection attempt is over (at most ``connect_timeout_ms``)
  events wait in memory instead of going through the spool; after a failed attempt the tracker
  spools and reconnects in the background with backoff.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from usersignals.config import Settings
from usersignals.errors import SpoolFullError, TrackerClosedError
from usersignals.ingest.batching import (
    Item,
    encode_obj,
    new_event_id,
    records_of,
)
from usersignals.ingest.contract import MAX_BATCH, Event, encode_event
from usersignals.ingest.sender import DropReason, OnDropped, Sender, SenderConfig
from usersignals.ingest.spool import Spool
from usersignals.ingest.typed import TypedEvents

__all__ = [
    "DropReason",
    "FlushResult",
    "OnDropped",
    "Tracker",
    "TrackerClosedError",
    "TrackerStats",
]

log = logging.getLogger(__name__)

DEFAULT_SPOOL_MAX_BYTES = 256 << 20


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """Counters of a :class:`Tracker` (events unless said otherwise), taken at one moment.

    Attributes:
        accepted: Valid events handed to the tracker.
        queued: Accepted events still in memory (not yet acknowledged, spooled or failed).
        sent: Events acknowledged by Kafka, resends from the spool included.
        retried: Events sent again after a retryable error.
        spooled: Events written to the spool (each time it happened).
        failed: Events that could be neither sent nor spooled (logged as errors, reported to
            ``on_dropped``).
        corrupt: Spooled events lost to damage of the spool file, counted from the damaged
            frames' record heads (logged as warnings; see :mod:`usersignals.ingest.spool`).
        spool_records: Records in the spool waiting to be resent.
        spool_bytes: Bytes of those records.
    """

    accepted: int = 0
    queued: int = 0
    sent: int = 0
    retried: int = 0
    spooled: int = 0
    failed: int = 0
    spool_records: int = 0
    spool_bytes: int = 0
    corrupt: int = 0


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What happened to the events handed over since the previous flush (or the start).

    Attributes:
        acknowledged: Events Kafka acknowledged, resends from the spool included.
        spooled: Events written to the spool instead (durable, not yet in Kafka).
        failed: Events neither sent nor spooled (lost; logged as errors).
        spool_records: Records (batches of events) still in the spool, waiting to be resent.
        timed_out: The flush gave up before every event was settled.
    """

    acknowledged: int = 0
    spooled: int = 0
    failed: int = 0
    spool_records: int = 0
    timed_out: bool = False

    @property
    def delivered(self) -> bool:
        """Every event handed over is in Kafka: nothing spooled, failed or left in the spool."""
        return self.durable and self.spooled == 0 and self.spool_records == 0

    @property
    def durable(self) -> bool:
        """Every event handed over is in Kafka or in the spool, and the flush did not time out."""
        return not self.timed_out and self.failed == 0

    def __bool__(self) -> bool:
        return self.delivered


class Tracker(TypedEvents):
    """Validated, batched, durable delivery of events to the events topic.

    Use as a context manager, or call :meth:`close`; an open tracker is also flushed when the
    interpreter exits. All methods are safe to call from many threads.

    Args:
        bootstrap: Kafka bootstrap servers (default: ``settings.bootstrap``).
        settings: Where the topic name, the bootstrap servers and the spool directory come from
            (default: :meth:`Settings.load`).
        topic: The events topic (default: ``settings.events_topic``).
        linger_ms: How long an event may wait for its batch to fill.
        batch_size: Most events per record (at most 1000).
        max_queue: Most events held in memory.
        max_block_ms: Longest a call waits when the queue is full.
        spool_path: The spool file (default: ``<state_dir>/spool/<topic>.spool``).
        spool_max_bytes: Size bound of the spool file.
        spool_fsync: fsync every spool write (default); see :mod:`usersignals.ingest.spool`.
        retries: Extra attempts for a record after a retryable error.
        backoff_ms: First wait between attempts; doubles each time, with full jitter.
        backoff_max_ms: Longest wait between attempts (also between reconnection attempts).
        connect_timeout_ms: Longest wait for the broker or the topic's metadata per attempt.
        delivery_timeout_ms: Longest wait for a record's acknowledgement before the broker is
            treated as unreachable and the record is spooled.
        partitions: The topic's partition count; discovered from metadata when ``None``.
        close_timeout_s: How long :meth:`close` waits when called at interpreter exit.
        producer_config: Extra ``kafka.KafkaProducer`` settings (override the defaults).
        on_dropped: Called as ``on_dropped(event_ids, reason)`` with the events that could be
            neither sent nor spooled (reason ``"spool_full"``) or that Kafka refused
            (``"refused"``); see the module docstring.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        settings: Settings | None = None,
        topic: str | None = None,
        linger_ms: int = 5,
        batch_size: int = MAX_BATCH,
        max_queue: int = 100_000,
        max_block_ms: int = 1_000,
        spool_path: Path | str | None = None,
        spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        spool_fsync: bool = True,
        retries: int = 3,
        backoff_ms: int = 100,
        backoff_max_ms: int = 5_000,
        connect_timeout_ms: int = 5_000,
        delivery_timeout_ms: int = 30_000,
        partitions: int | None = None,
        close_timeout_s: float = 10.0,
        producer_config: Mapping[str, Any] | None = None,
        on_dropped: OnDropped | None = None,
    ) -> None:
        settings = settings or Settings.load()
        self.topic = topic or settings.events_topic
        self.bootstrap = bootstrap or settings.bootstrap
        self.max_queue = max_queue
        self.max_block_s = max_block_ms / 1000
        self.close_timeout_s = close_timeout_s
        path = Path(spool_path or settings.state_dir / "spool" / f"{self.topic}.spool")
        self._spool = Spool(path, spool_max_bytes, fsync=spool_fsync)
        self._lock = lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._not_full = threading.Condition(lock)  # callers waiting for room in the queue
        self._queue: deque[Item] = deque()
        self._closed = False
        self._overflow = 0  # events that found the queue full (then spooled or failed)
        self._overflow_spooled = 0
        self._overflow_failed = 0
        self._flushed = (0, 0, 0)  # (sent, spooled, failed) at the end of the previous flush
        self._sender = Sender(
            SenderConfig(
                bootstrap=self.bootstrap,
                topic=self.topic,
                linger_s=linger_ms / 1000,
                batch_size=max(1, min(batch_size, MAX_BATCH)),
                retries=retries,
                backoff_s=backoff_ms / 1000,
                backoff_max_s=backoff_max_ms / 1000,
                connect_timeout_ms=connect_timeout_ms,
                delivery_timeout_ms=delivery_timeout_ms,
                partitions=partitions,
                producer_config=dict(producer_config or {}),
            ),
            queue=self._queue,
            cond=self._cond,
            not_full=self._not_full,
            spool=self._spool,
            on_dropped=on_dropped,
        )
        self._sender.start()
        ref = weakref.ref(self)
        self._atexit = lambda: _close_at_exit(ref)
        atexit.register(self._atexit)

    def track(self, event: Mapping[str, Any]) -> str:
        """Records one raw event (a dict shaped like the wire JSON); returns its ``event_id``.

        ``event_id`` and ``ts`` are filled in when missing, as for the typed methods.

        Raises:
            EventError: the event breaks the contract (the message names the field).
            TrackerClosedError: the tracker is closed.
        """
        obj = dict(event)
        if obj.get("event_id") is None:
            obj["event_id"] = new_event_id()
        if obj.get("ts") is None:
            obj["ts"] = datetime.now(UTC)
        return self._enqueue(*encode_obj(obj))

    def track_event(self, event: Event) -> str:
        """Records one event already validated by the contract; returns its ``event_id``.

        For input read with :func:`~usersignals.ingest.contract.decode_record` (files, other
        producers): it is queued as :meth:`track` would queue it after validating, without
        checking it a second time.

        Raises:
            TrackerClosedError: the tracker is closed.
        """
        return self._enqueue(event.event_id, (event.user_id, encode_event(event)))

    # -- delivery ---------------------------------------------------------------------------

    @property
    def stats(self) -> TrackerStats:
        """The counters, as one consistent snapshot."""
        with self._cond:
            s = self._sender.counters
            return TrackerStats(
                accepted=self._sender.enqueued + self._overflow,
                queued=self._sender.enqueued - s.settled,
                sent=s.sent,
                retried=s.retried,
                spooled=s.spooled + self._overflow_spooled,
                failed=s.failed + self._overflow_failed,
                spool_records=self._spool.pending_records,
                spool_bytes=self._spool.pending_bytes,
                corrupt=self._spool.corrupt_events,
            )

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Waits until every event handed over so far is acknowledged by Kafka or spooled.

        Returns:
            What happened since the previous flush: events acknowledged, spooled and failed,
            records still in the spool, and whether the wait timed out. True (``delivered``)
            only when everything is in Kafka; ``durable`` when nothing was lost.
        """
        with self._cond:
            target = self._sender.enqueued
            settled = self._sender.wait_settled(target, timeout)
            c = self._sender.counters
            now = (c.sent, c.spooled + self._overflow_spooled, c.failed + self._overflow_failed)
            sent, spooled, failed = (
                n - before for n, before in zip(now, self._flushed, strict=True)
            )
            self._flushed = now
            return FlushResult(
                acknowledged=sent,
                spooled=spooled,
                failed=failed,
                spool_records=self._spool.pending_records,
                timed_out=not settled,
            )

    def close(self, timeout: float | None = None) -> bool:
        """Flushes, stops the background thread and releases the spool; idempotent.

        Returns:
            ``True`` when everything was acknowledged or spooled within ``timeout``
            (:attr:`FlushResult.durable`); events still in memory after it are spooled
            before the tracker stops.
        """
        with self._cond:
            if self._closed:
                return True
            self._closed = True
        atexit.unregister(self._atexit)
        ok = self.flush(timeout).durable
        self._sender.stop(timeout)
        self._spool.close()
        return ok

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the hot path -----------------------------------------------------------------------

    def _enqueue(self, event_id: str, item: Item) -> str:
        sender = self._sender
        with self._lock:  # the lock itself: entering the Condition costs a Python call
            if self._closed:
                raise TrackerClosedError(event_id)
            queue = self._queue
            n = len(queue)
            if n < self.max_queue or self._wait_for_room():
                if not n:
                    sender.first_at = time.monotonic()
                queue.append(item)
                sender.enqueued += 1
                if n + 1 == sender.wake_at:
                    self._cond.notify_all()
                return event_id
            self._overflow += 1
        self._spill(event_id, item)
        return event_id

    def _wait_for_room(self) -> bool:
        deadline = time.monotonic() + self.max_block_s
        while len(self._queue) >= self.max_queue:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._cond.notify_all()
            self._not_full.wait(left)
        return True

    def _spill(self, event_id: str, item: Item) -> None:
        """Writes one event that found the queue full straight to the spool."""
        record = records_of([item], self._sender.partitions)[0]
        spooled = record.spooled()
        try:
            self._spool.append([spooled.to_bytes()])
        except SpoolFullError as exc:
            log.error("Event %r lost: the queue is full and %s", event_id, exc)
            with self._cond:
                self._overflow_failed += 1
            self._sender.dropped([record], "spool_full")
            return
        with self._cond:
            self._overflow_spooled += 1
            self._cond.notify_all()


def _close_at_exit(ref: weakref.ref[Tracker]) -> None:
    tracker = ref()
    if tracker is not None:
        tracker.close(tracker.close_timeout_s)
