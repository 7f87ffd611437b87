"""The Tracker's background half: a thread that sends records to Kafka, retries, spools.

:class:`Sender` takes queued events from the :class:`~usersignals.ingest.tracker.Tracker`,
groups them into records (:func:`~usersignals.ingest.batching.records_of`), sends each to its
partition, retries a retryable failure with backoff and full jitter, spools what the broker
cannot take, and resends the spool oldest first once it can. The guarantees are described in
:mod:`usersignals.ingest.tracker`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from usersignals.errors import SpoolFullError
from usersignals.ingest.batching import Item, Record, event_ids, records_from_spool, records_of
from usersignals.ingest.producer import (
    close_producer,
    error_of,
    is_done,
    open_producer,
    retryable,
    unreachable,
    wait_for,
)
from usersignals.ingest.spool import Spool, SpooledRecord

__all__ = ["Counters", "DropReason", "OnDropped", "Sender", "SenderConfig", "backoff"]

log = logging.getLogger(__name__)

DropReason = Literal["spool_full", "refused"]
"""Why events were lost: the broker was away and the spool had no room (``spool_full``), or
Kafka refused their record with an error a retry cannot fix (``refused``)."""

OnDropped = Callable[[list[str], DropReason], None]
"""Called with the ``event_id``\\ s of lost events and the reason (see ``Tracker``)."""

MAX_IN_FLIGHT_BYTES = 32 << 20
"""Record bytes handed to the producer and not yet acknowledged; above it the sender waits."""

DRAIN_BYTES = 4 << 20
"""Spooled bytes resent per round before the acknowledgements are awaited."""


@dataclass(frozen=True)
class SenderConfig:
    bootstrap: str
    topic: str
    linger_s: float
    batch_size: int
    retries: int
    backoff_s: float
    backoff_max_s: float
    connect_timeout_ms: int
    delivery_timeout_ms: int
    partitions: int | None
    producer_config: dict[str, Any]


@dataclass
class Counters:
    """Event counts kept by the sender (``settled``: queue events acknowledged, spooled or
    failed)."""

    sent: int = 0
    retried: int = 0
    spooled: int = 0
    failed: int = 0
    settled: int = 0


class _Entry:
    """One chunk taken from the queue, in queue order; ``done`` once all of it is settled."""

    __slots__ = ("done", "end", "events")

    def __init__(self, end: int, events: int) -> None:
        self.end = end
        self.events = events
        self.done = False


class _Flight:
    __slots__ = ("entry", "futures", "records", "sent_at")

    def __init__(self, entry: _Entry, records: list[Record], futures: list[Any]) -> None:
        self.entry = entry
        self.records = records
        self.futures = futures
        self.sent_at = time.monotonic()


def backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base * 2**attempt)]."""
    return random.uniform(0, min(max_s, base_s * (2 ** max(0, attempt))))


class Sender:
    """The Tracker's background thread (plus one thread that (re)connects to the broker).

    Shares the tracker's lock (``cond``) and queue; the attributes ``enqueued``, ``first_at``,
    ``wake_at``, ``partitions``, ``settled_seq`` and ``counters`` are guarded by that lock.
    """

    def __init__(
        self,
        config: SenderConfig,
        *,
        queue: deque[Item],
        cond: threading.Condition,
        not_full: threading.Condition,
        spool: Spool,
        on_dropped: OnDropped | None = None,
    ) -> None:
        self.config = config
        self.on_dropped = on_dropped
        self.queue = queue
        self.cond = cond
        self.not_full = not_full
        self.spool = spool
        self.counters = Counters()
        self.enqueued = 0
        self.taken = 0
        self.settled_seq = 0
        self.first_at = 0.0
        self.partitions = config.partitions or 0
        self.wake_at = config.batch_size * (self.partitions or 8)
        self.flush_waiters = 0
        self._ledger: deque[_Entry] = deque()
        self._window: deque[_Flight] = deque()
        self._in_flight_bytes = 0
        # kafka-python expires a batch after delivery_timeout_ms, but not always one it is
        # retrying on a dead connection: past this the sender gives up on a flight itself
        self._flight_limit_s = config.delivery_timeout_ms / 1000 + 5
        self._producer: Any = None
        self._connected_once = False
        self._created = time.monotonic()
        self._woken = False
        self._stopping = False
        self._deadline = float("inf")
        self._want_connect = threading.Event()
        self._want_connect.set()
        self._thread = threading.Thread(target=self._run, name="usersignals-sender", daemon=True)
        self._connector = threading.Thread(
            target=self._connect_loop, name="usersignals-connect", daemon=True
        )

    def start(self) -> None:
        self._connector.start()
        self._thread.start()

    def wait_settled(self, target: int, timeout: float | None) -> bool:
        """Waits (lock held) until every queue event below ``target`` is settled."""
        self.flush_waiters += 1
        self.cond.notify_all()
        try:
            return self.cond.wait_for(
                lambda: self.settled_seq >= target or not self._thread.is_alive(), timeout
            ) and (self.settled_seq >= target)
        finally:
            self.flush_waiters -= 1

    def stop(self, timeout: float | None) -> None:
        with self.cond:
            self._stopping = True
            self._deadline = time.monotonic() + (30.0 if timeout is None else timeout)
            self.cond.notify_all()
        self._want_connect.set()
        self._thread.join(None if timeout is None else timeout + 5)
        self._connector.join(1)

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (chunk := self._next_chunk()) is not None:
                self._reap()
                if chunk:
                    self._dispatch(chunk)
                if self._producer is not None and not self._window and len(self.spool):
                    self._drain_spool()
            self._shutdown()
        except Exception:
            log.exception("The tracker's sender thread stopped on an unexpected error")
        finally:
            with self.cond:
                self.cond.notify_all()

    def _next_chunk(self) -> list[Item] | None:
        """Waits for work; returns events to send ([] = only reap / drain), None = stop."""
        cfg, queue = self.config, self.queue
        with self.cond:
            while True:
                now = time.monotonic()
                # Until the first connection attempt is over, events wait in memory rather
                # than take a detour through the spool.
                can_take = (
                    self._connected_once or now - self._created >= cfg.connect_timeout_ms / 1000
                ) and self._in_flight_bytes < MAX_IN_FLIGHT_BYTES
                timeout: float | None = 0.5
                if queue and can_take:
                    wait = cfg.linger_s - (now - self.first_at)
                    if (
                        len(queue) >= self.wake_at
                        or self.flush_waiters
                        or self._stopping
                        or wait <= 0
                    ):
                        return self._take()
                    timeout = wait
                if self._stopping and not queue:
                    return None
                if self._woken or (
                    self._window and now - self._window[0].sent_at > self._flight_limit_s
                ):
                    self._woken = False
                    return []
                if self._producer is not None and not self._window and len(self.spool):
                    return []
                self.cond.wait(timeout)

    def _take(self) -> list[Item]:
        n = min(len(self.queue), self.wake_at * 4)
        if n == len(self.queue):
            chunk = list(self.queue)
            self.queue.clear()
        else:
            chunk = [self.queue.popleft() for _ in range(n)]
            self.first_at = time.monotonic()
        self.taken += n
        self._ledger.append(_Entry(self.taken, n))
        self.not_full.notify_all()
        return chunk

    def _dispatch(self, chunk: list[Item]) -> None:
        with self.cond:  # the connector sets both together
            entry, producer, partitions = self._ledger[-1], self._producer, self.partitions
        records = records_of(chunk, partitions, self.config.batch_size)
        if producer is None or len(self.spool):
            self._spool_records(records)
            self._settle(entry, 0)
            return
        futures = [self._send(r) for r in records]
        self._in_flight_bytes += sum(len(r.value) for r in records)
        self._window.append(_Flight(entry, records, futures))

    def _send(self, record: Record) -> Any:
        try:
            future = self._producer.send(
                self.config.topic, value=record.value, key=record.key, partition=record.partition
            )
        except Exception as exc:  # the producer raises what it cannot even queue
            self._wake(exc)  # settled now: no callback will come to end the wait for it
            return exc
        future.add_both(self._wake)
        return future

    def _wake(self, _: object) -> None:
        with self.cond:
            self._woken = True
            self.cond.notify_all()

    def _reap(self) -> None:
        """Settles acknowledged flights, oldest first; a failed one starts the recovery."""
        while self._window:
            flight = self._window[0]
            if not all(is_done(f) for f in flight.futures):
                if time.monotonic() - flight.sent_at > self._flight_limit_s:
                    self._recover(0.0)  # what is still pending now counts as timed out
                return
            if any(error_of(f) is not None for f in flight.futures):
                self._recover(self._flight_limit_s)
                return
            self._window.popleft()
            self._in_flight_bytes -= sum(len(r.value) for r in flight.records)
            with self.cond:
                self.counters.sent += flight.entry.events
            self._settle(flight.entry, 0)

    def _settle(self, entry: _Entry, failed: int) -> None:
        with self.cond:
            entry.done = True
            self.counters.settled += entry.events
            self.counters.failed += failed
            while self._ledger and self._ledger[0].done:
                self.settled_seq = self._ledger.popleft().end
            self.cond.notify_all()

    def _recover(self, wait_s: float) -> None:
        """Waits for every flight (at most ``wait_s`` in all), retries the failed records in
        order, spools the rest."""
        cfg = self.config
        deadline = time.monotonic() + wait_s
        flights = list(self._window)
        self._window.clear()
        self._in_flight_bytes = 0
        pending: list[tuple[Record, BaseException]] = []
        sent = 0
        for flight in flights:
            for record, future in zip(flight.records, flight.futures, strict=True):
                exc = wait_for(future, deadline)
                if exc is None:
                    sent += record.events
                else:
                    pending.append((record, exc))
        failed = 0
        attempt = 0
        while pending:
            fatal = [(r, e) for r, e in pending if not retryable(e)]
            for record, exc in fatal:
                log.error("%d events lost: Kafka refused their record: %r", record.events, exc)
                failed += record.events
            self.dropped([r for r, _ in fatal], "refused")
            retry = [r for r, e in pending if retryable(e)]
            if not retry:
                break
            if (
                any(unreachable(e) for _, e in pending)
                or attempt >= cfg.retries
                or self._producer is None
            ):
                log.warning(
                    "Kafka is unavailable (%r); spooling %d records", pending[0][1], len(retry)
                )
                self._spool_records(retry)
                self._drop_producer()
                break
            time.sleep(backoff(attempt, cfg.backoff_s, cfg.backoff_max_s))
            attempt += 1
            with self.cond:
                self.counters.retried += sum(r.events for r in retry)
            futures = [self._send(r) for r in retry]
            pending = []
            deadline = time.monotonic() + self._flight_limit_s
            for record, future in zip(retry, futures, strict=True):
                exc = wait_for(future, deadline)
                if exc is None:
                    sent += record.events
                else:
                    pending.append((record, exc))
        with self.cond:
            self.counters.sent += sent
        for i, flight in enumerate(flights):
            self._settle(flight.entry, failed if i == 0 else 0)

    def _spool_records(self, records: list[Record]) -> None:
        """Appends records in order; once one does not fit, it and the rest are lost (logged)."""
        spooled = lost = 0
        try:
            self.spool.append([r.spooled().to_bytes() for r in records])
            spooled = sum(r.events for r in records)
        except SpoolFullError:
            for i, record in enumerate(records):
                try:
                    self.spool.append([record.spooled().to_bytes()])
                except SpoolFullError as exc:
                    lost = sum(r.events for r in records[i:])
                    log.error("%d events lost: Kafka is unavailable and %s", lost, exc)
                    self.dropped(records[i:], "spool_full")
                    break
                spooled += record.events
        with self.cond:
            self.counters.spooled += spooled
            self.counters.failed += lost

    def dropped(self, records: list[Record], reason: DropReason) -> None:
        """Tells ``on_dropped`` (if any) which events of ``records`` are lost, and why."""
        if self.on_dropped is None or not records:
            return
        ids: list[str] = []
        for record in records:
            try:
                ids += event_ids(record.value)
            except msgspec.DecodeError:  # the contract produced it: cannot happen, but no crash
                log.error("The ids of %d lost events could not be read", record.events)
        try:
            self.on_dropped(ids, reason)
        except Exception:
            log.exception("The tracker's on_dropped callback failed")

    def _drain_spool(self) -> None:
        """Resends the oldest spooled records; commits the prefix Kafka acknowledged."""
        frames = self.spool.peek(max_frames=256, max_bytes=DRAIN_BYTES)
        plan: list[tuple[list[Any], list[Record], int, int]] = []
        for payload, end in frames:
            records, bad = records_from_spool(
                SpooledRecord.from_bytes(payload), self.partitions, self.config.batch_size
            )
            plan.append(([self._send(r) for r in records], records, end, bad))
        committed, frames_ok, sent, failed = 0, 0, 0, 0
        deadline = time.monotonic() + self._flight_limit_s
        for futures, records, end, bad in plan:
            errors = [wait_for(f, deadline) for f in futures]
            if any(e is not None and retryable(e) for e in errors):
                first = next(e for e in errors if e is not None)
                log.warning("Kafka is unavailable again (%r); keeping the spool", first)
                self._drop_producer()
                break
            refused = []
            for record, error in zip(records, errors, strict=True):
                if error is None:
                    sent += record.events
                else:
                    log.error(
                        "%d spooled events lost: Kafka refused them: %r", record.events, error
                    )
                    failed += record.events
                    refused.append(record)
            self.dropped(refused, "refused")
            failed += bad
            committed, frames_ok = end, frames_ok + 1
        if frames_ok:
            self.spool.commit(committed, frames_ok)
        with self.cond:
            self.counters.sent += sent
            self.counters.failed += failed
            self.cond.notify_all()

    def _shutdown(self) -> None:
        """Last round at close: waits for flights until the deadline, spools what is left."""
        while self._window and time.monotonic() < self._deadline:
            self._reap()
            if self._window:
                time.sleep(0.005)
        if self._window:
            flights = list(self._window)
            self._window.clear()
            for flight in flights:
                self._spool_records(flight.records)
                self._settle(flight.entry, 0)
        while self._producer is not None and len(self.spool) and time.monotonic() < self._deadline:
            self._drain_spool()
        producer, self._producer = self._producer, None
        if producer is not None:
            close_producer(producer, max(0.0, min(5.0, self._deadline - time.monotonic())))

    # -- connecting ------------------------------------------------------------------------

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            threading.Thread(target=close_producer, args=(producer, 0.0), daemon=True).start()
        self._want_connect.set()

    def _connect_loop(self) -> None:
        attempt = 0
        while True:
            self._want_connect.wait()
            if self._stopping:
                return
            try:
                producer, partitions = self._connect()
            except Exception as exc:
                log.log(
                    logging.WARNING if attempt == 0 else logging.DEBUG,
                    "Kafka at %r is not available (%s); events go to the spool until it is",
                    self.config.bootstrap,
                    exc,
                )
                with self.cond:
                    self._connected_once = True  # the first attempt is over: spool from now on
                    self.cond.notify_all()
                self._want_connect.clear()
                time.sleep(backoff(attempt, self.config.backoff_s * 5, self.config.backoff_max_s))
                attempt += 1
                self._want_connect.set()
                continue
            attempt = 0
            with self.cond:
                self._want_connect.clear()
                self._producer = producer
                self._connected_once = True
                self.partitions = self.config.partitions or partitions
                self.wake_at = self.config.batch_size * self.partitions
                self.cond.notify_all()

    def _connect(self) -> tuple[Any, int]:
        cfg = self.config
        return open_producer(
            cfg.bootstrap,
            cfg.topic,
            connect_timeout_ms=cfg.connect_timeout_ms,
            delivery_timeout_ms=cfg.delivery_timeout_ms,
            backoff_s=cfg.backoff_s,
            overrides=cfg.producer_config,
        )
