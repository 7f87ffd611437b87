"""The SDK when things break: no broker yet, a killed process, a restart on the same spool.

Tests that start a broker of their own carry the ``broker`` marker by hand; the others that
use one get it from their ``kafka`` fixture (``tests/conftest.py``).
"""

from __future__ import annotations

import gc
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kafka
from tests.ingest.test_tracker import events_of, read_records
from usersignals.broker import EmbeddedBroker, ensure_topics, free_port
from usersignals.config import Settings
from usersignals.ingest.batching import build_records, event_ids
from usersignals.ingest.contract import partition_for, validate
from usersignals.ingest.spool import HEADER_BYTES, MAGIC, SpooledRecord
from usersignals.ingest.tracker import FlushResult, Tracker, TrackerStats

TS = datetime(2026, 3, 1, tzinfo=UTC)


def wait_until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def spooled_on_disk(path: Path) -> list[SpooledRecord]:
    """The records of a spool file, read straight from its frames (``b"US" | len | crc``)."""
    data, records, at = path.read_bytes(), [], 0
    while at < len(data):
        magic, length, _ = struct.unpack_from(">2sII", data, at)
        assert magic == MAGIC
        records.append(
            SpooledRecord.from_bytes(data[at + HEADER_BYTES : at + HEADER_BYTES + length])
        )
        at += HEADER_BYTES + length
    return records


@pytest.mark.slow
@pytest.mark.broker
def test_spools_until_the_broker_comes_then_resends_in_order(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings.load(
        environ={}, bootstrap=f"127.0.0.1:{port}", topic_prefix="late", state_dir=tmp_path
    )
    n = 3_000
    tracker = Tracker(settings=settings, connect_timeout_ms=300, backoff_ms=50, backoff_max_ms=500)
    try:
        for i in range(n):
            tracker.message(f"user-{i % 37}", "user", event_id=f"e{i:05d}", ts=TS)
        flushed = tracker.flush(30)  # durably spooled: nobody listens on the port
        assert (flushed.durable, flushed.acknowledged, flushed.spooled) == (True, 0, n)
        assert tracker.stats.spooled == n
        assert tracker.stats.sent == 0
        with EmbeddedBroker(port=port, partitions=8, topics=settings.topics) as broker:
            assert wait_until(lambda: tracker.stats.sent == n, 60), tracker.stats
            stats = tracker.stats
            assert stats.accepted == n
            assert (stats.spooled, stats.failed, stats.queued, stats.spool_records) == (n, 0, 0, 0)
            records = read_records(broker.bootstrap, settings.events_topic, n)
            tracker.close(5)
    finally:
        tracker.close(5)
    events = events_of(records)
    assert sorted(e.event_id for e in events) == [f"e{i:05d}" for i in range(n)]
    for p in range(8):
        in_partition = [e.event_id for part, _, _, evs in records if part == p for e in evs]
        assert in_partition == sorted(in_partition)
        assert in_partition == [
            f"e{i:05d}" for i in range(n) if partition_for(f"user-{i % 37}", 8) == p
        ]


CHILD = """
import sys
from datetime import UTC, datetime
from usersignals.ingest.tracker import Tracker
n = int(sys.argv[1])
tracker = Tracker(spool_path=sys.argv[2], connect_timeout_ms=5_000, backoff_max_ms=500)
for i in range(n):
    tracker.message(f"user-{i % 101}", "assistant", event_id=f"k{i}",
                    ts=datetime(2026, 3, 1, tzinfo=UTC))
ok = tracker.flush(60).durable
print("flushed" if ok else "NOT flushed", tracker.stats.sent, tracker.stats.spooled, flush=True)
import time
time.sleep(600)
"""


def run_and_kill(env: dict[str, str], n: int, spool: Path) -> str:
    """Runs the child until it reports its flush, then SIGKILLs it; returns its report."""
    with open(spool.with_suffix(".log"), "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(n), str(spool)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert proc.stdout is not None
    with proc.stdout:
        try:
            line = proc.stdout.readline().strip()
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return line if line.startswith("flushed") else line + spool.with_suffix(".log").read_text()


@pytest.mark.slow
def test_flushed_events_survive_sigkill(kafka: Kafka, tmp_path: Path) -> None:
    n = 20_000
    report = run_and_kill(kafka.env(), n, tmp_path / "child.spool")
    assert report == f"flushed {n} 0"
    events = events_of(read_records(kafka.bootstrap, kafka.settings.events_topic, n))
    assert sorted(e.event_id for e in events) == sorted(f"k{i}" for i in range(n))


@pytest.mark.slow
def test_a_new_tracker_resends_what_a_killed_one_spooled(kafka: Kafka, tmp_path: Path) -> None:
    n = 5_000
    spool = tmp_path / "child.spool"
    env = kafka.env()
    env["USERSIGNALS_BOOTSTRAP"] = f"127.0.0.1:{free_port()}"  # nothing there: the child spools
    assert run_and_kill(env, n, spool) == f"flushed 0 {n}"
    with Tracker(settings=kafka.settings, spool_path=spool) as tracker:
        assert wait_until(lambda: tracker.stats.sent == n, 60), tracker.stats
        assert tracker.stats == TrackerStats(sent=n)
    events = events_of(read_records(kafka.bootstrap, kafka.settings.events_topic, n))
    assert sorted(e.event_id for e in events) == sorted(f"k{i}" for i in range(n))
    assert spool.stat().st_size == 0


def test_full_spool_counts_failed(tmp_path: Path) -> None:
    settings = Settings.load(
        environ={}, bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="full", state_dir=tmp_path
    )
    with Tracker(
        settings=settings, spool_max_bytes=2_000, connect_timeout_ms=200, batch_size=10
    ) as tracker:
        for i in range(100):
            tracker.message("u", "user", event_id=f"f{i:03d}", ts=TS)
        assert tracker.flush(30).durable is False  # some events could not be kept anywhere
        stats = tracker.stats
    record = build_records(
        [
            validate(
                {
                    "type": "message",
                    "user_id": "u",
                    "role": "user",
                    "event_id": f"f{i:03d}",
                    "ts": TS,
                }
            )
            for i in range(10)
        ],
        0,
        10,
    )[0]
    frame_bytes = HEADER_BYTES + len(record.spooled().to_bytes())
    fit = 2_000 // frame_bytes
    assert stats == TrackerStats(
        accepted=100,
        spooled=10 * fit,
        failed=100 - 10 * fit,
        spool_records=fit,
        spool_bytes=fit * frame_bytes,
    )


def test_interpreter_exit_flushes(kafka: Kafka, tmp_path: Path) -> None:
    script = (
        "from usersignals.ingest.tracker import Tracker\n"
        f"t = Tracker(spool_path={str(tmp_path / 'exit.spool')!r}, linger_ms=60000)\n"
        "for i in range(3000):\n"
        "    t.session_start(f'user-{i % 13}', event_id=f'x{i}')\n"
    )  # no flush, no close: the atexit hook must deliver
    result = subprocess.run(
        [sys.executable, "-c", script], env=kafka.env(), capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    events = events_of(read_records(kafka.bootstrap, kafka.settings.events_topic, 3000))
    assert sorted(e.event_id for e in events) == sorted(f"x{i}" for i in range(3000))


def read_ids(bootstrap: str, topic: str, expected: int) -> list[str]:
    return [e.event_id for e in events_of(read_records(bootstrap, topic, expected))]


@pytest.mark.slow
@pytest.mark.broker
def test_broker_dies_mid_stream_every_event_is_acknowledged_or_resent(tmp_path: Path) -> None:
    """Each event handed over is acknowledged by the old broker or reaches the new one, once.

    The embedded broker keeps nothing across a restart, so the new one holds exactly the
    events the old one did not acknowledge: the ones spooled.
    """
    port = free_port()
    settings = Settings.load(
        environ={}, bootstrap=f"127.0.0.1:{port}", topic_prefix="dies", state_dir=tmp_path
    )
    n = 30_000
    old = EmbeddedBroker(port=port, partitions=8, topics=settings.topics).start()
    tracker = Tracker(
        settings=settings, delivery_timeout_ms=3_000, backoff_ms=50, backoff_max_ms=500
    )
    try:
        tracker.message("user-0", "user", event_id="d-first", ts=TS)
        assert tracker.flush(30) == FlushResult(acknowledged=1)  # connected: a live broker
        n += 1

        def produce() -> None:
            for i in range(n - 1):
                tracker.message(f"user-{i % 101}", "user", event_id=f"d{i:05d}", ts=TS)
                if i % 100 == 0:
                    time.sleep(0.01)  # a steady stream of ~3 s, not one burst

        producer = threading.Thread(target=produce)
        producer.start()
        assert wait_until(lambda: tracker.stats.sent >= 3_000, 60), tracker.stats
        os.kill(old.pid, signal.SIGKILL)  # mid-stream: records in flight, events coming
        old.stop()  # (SIGTERM alone lets it finish the requests it has)
        producer.join(120)
        assert wait_until(lambda: tracker.stats.queued == 0, 60), tracker.stats
        stats = tracker.stats
        acknowledged_by_old = stats.sent
        assert 3_000 <= acknowledged_by_old < n
        # nothing has been resent yet (no broker): the spool file holds exactly the rest
        on_disk = spooled_on_disk(tmp_path / "spool" / f"{settings.events_topic}.spool")
        assert sum(r.events for r in on_disk) == n - acknowledged_by_old
        assert stats == TrackerStats(
            accepted=n,
            sent=acknowledged_by_old,
            spooled=n - acknowledged_by_old,
            spool_records=len(on_disk),
            spool_bytes=sum(HEADER_BYTES + len(r.to_bytes()) for r in on_disk),
        )
        with EmbeddedBroker(port=port, partitions=8, topics=()) as new:
            ensure_topics(new.bootstrap, 8, settings.topics)
            assert wait_until(lambda: tracker.stats.sent == n, 60), tracker.stats
            assert tracker.close(10) is True
            ids = read_ids(new.bootstrap, settings.events_topic, n - acknowledged_by_old)
    finally:
        tracker.close(5)
        old.stop()
    assert tracker.stats == TrackerStats(accepted=n, sent=n, spooled=n - acknowledged_by_old)
    assert len(ids) == len(set(ids)) == n - acknowledged_by_old
    assert set(ids) <= {"d-first", *(f"d{i:05d}" for i in range(n - 1))}
    gc.collect()  # a socket the dead broker's producer left open fails the test here


def stalled_run(
    tmp_path: Path, prefix: str, n: int, sent: int, **tracker_kw: Any
) -> tuple[TrackerStats, TrackerStats, list[str]]:
    """Hands ``n`` events (ids ``{prefix[0]}00``...) to a tracker while the broker answers
    nothing (SIGSTOP: it accepts connections), then lets it go on until ``sent`` events are
    acknowledged. Returns the stats during the stall, the final stats and the ids in the topic.
    """
    port = free_port()
    settings = Settings.load(
        environ={}, bootstrap=f"127.0.0.1:{port}", topic_prefix=prefix, state_dir=tmp_path
    )
    with EmbeddedBroker(port=port, partitions=8, topics=settings.topics) as broker:
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            tracker = Tracker(settings=settings, connect_timeout_ms=20_000, **tracker_kw)
            for i in range(n):
                tracker.message("u", "user", event_id=f"{prefix[0]}{i:02d}", ts=TS)
            stalled = tracker.stats
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        try:
            assert wait_until(lambda: tracker.stats.sent == sent, 60), tracker.stats
            final = tracker.stats
        finally:
            tracker.close(10)
        ids = read_ids(broker.bootstrap, settings.events_topic, sent)
    gc.collect()  # a socket the stalled connection left open fails the test here
    return stalled, final, ids


@pytest.mark.slow
@pytest.mark.broker
def test_a_full_queue_spools_after_max_block_ms(tmp_path: Path) -> None:
    """A broker that does not answer (SIGSTOP): the queue fills, then callers spool.

    How long each caller waited is not asserted: wall-clock bounds on shared cores measure the
    machine, not the tracker. What it did is: the first ``max_queue`` events stay in memory,
    each later one gives up waiting and goes to the spool on its own, nothing is lost.
    """
    stats, final, ids = stalled_run(tmp_path, "queue", 40, 40, max_queue=20, max_block_ms=200)
    # each overflowing event is a record of its own (same size: ids of equal length)
    one = validate({"type": "message", "user_id": "u", "role": "user", "event_id": "q20", "ts": TS})
    frame_bytes = HEADER_BYTES + len(build_records([one], 8)[0].spooled().to_bytes())
    assert stats == TrackerStats(
        accepted=40, queued=20, spooled=20, spool_records=20, spool_bytes=20 * frame_bytes
    )
    assert final == TrackerStats(accepted=40, sent=40, spooled=40)
    # the spooled overflow went first: it may overtake events that were still in memory
    assert ids == [f"q{i:02d}" for i in [*range(20, 40), *range(20)]]


def test_full_spool_tells_on_dropped_which_events(tmp_path: Path) -> None:
    """No broker, a spool with room for 7 one-event records: the other 23 ids are reported."""
    settings = Settings.load(
        environ={}, bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="drop", state_dir=tmp_path
    )
    one = validate({"type": "message", "user_id": "u", "role": "user", "event_id": "g00", "ts": TS})
    frame_bytes = HEADER_BYTES + len(build_records([one], 0, 1)[0].spooled().to_bytes())
    dropped: list[tuple[list[str], str]] = []
    with Tracker(
        settings=settings,
        spool_max_bytes=7 * frame_bytes + frame_bytes // 2,
        connect_timeout_ms=200,
        batch_size=1,
        on_dropped=lambda ids, reason: dropped.append((ids, reason)),
    ) as tracker:
        for i in range(30):
            tracker.message("u", "user", event_id=f"g{i:02d}", ts=TS)
        flushed = tracker.flush(30)
        stats = tracker.stats
    assert (flushed.spooled, flushed.failed, stats.spooled, stats.failed) == (7, 23, 7, 23)
    assert {reason for _, reason in dropped} == {"spool_full"}
    assert [i for ids, _ in dropped for i in ids] == [f"g{i:02d}" for i in range(7, 30)]
    kept = spooled_on_disk(tmp_path / "spool" / f"{settings.events_topic}.spool")
    assert [e for r in kept for e in event_ids(r.value)] == [f"g{i:02d}" for i in range(7)]


def test_a_failing_on_dropped_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.load(
        environ={}, bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="drop", state_dir=tmp_path
    )

    def broken(ids: list[str], reason: str) -> None:
        raise RuntimeError(reason)

    with Tracker(
        settings=settings, spool_max_bytes=10, connect_timeout_ms=200, on_dropped=broken
    ) as tracker:
        tracker.message("u", "user", event_id="h0", ts=TS)
        assert tracker.flush(30).failed == 1
    assert "The tracker's on_dropped callback failed" in caplog.messages


@pytest.mark.slow
def test_a_damaged_spool_frame_costs_only_its_events(kafka: Kafka, tmp_path: Path) -> None:
    """Spooled with no broker, one frame damaged on disk, resent by a new tracker: all but the
    damaged frame's events arrive, and ``corrupt`` counts exactly those."""
    n = 2_000
    spool = tmp_path / "d.spool"
    away = Settings.load(
        environ={}, bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="away", state_dir=tmp_path
    )
    with Tracker(settings=away, spool_path=spool, connect_timeout_ms=200, batch_size=100) as t:
        for i in range(n):
            t.message(f"user-{i % 37}", "user", event_id=f"c{i:04d}", ts=TS)
        assert t.flush(30).spooled == n
    records = spooled_on_disk(spool)
    damaged = len(records) // 2
    lost = event_ids(records[damaged].value)
    at = sum(HEADER_BYTES + len(r.to_bytes()) for r in records[:damaged]) + HEADER_BYTES + 40
    data = bytearray(spool.read_bytes())
    data[at] ^= 0x01  # one flipped bit in the damaged frame's JSON
    spool.write_bytes(bytes(data))

    with Tracker(settings=kafka.settings, spool_path=spool) as tracker:
        assert wait_until(lambda: tracker.stats.sent == n - len(lost), 60), tracker.stats
        assert tracker.flush(30).durable
        stats = tracker.stats
    assert stats == TrackerStats(sent=n - len(lost), corrupt=len(lost))
    assert len(lost) == records[damaged].events > 0
    ids = read_ids(kafka.bootstrap, kafka.settings.events_topic, n - len(lost))
    assert sorted(ids) == sorted(set(f"c{i:04d}" for i in range(n)) - set(lost))
    assert spool.stat().st_size == 0


@pytest.mark.parametrize("damage", ["bit flip in the payload", "magic overwritten"])
def test_a_reopened_damaged_spool_counts_corrupt_events(tmp_path: Path, damage: str) -> None:
    """5,000 spooled events, one frame damaged: a new tracker keeps every other frame to resend
    and counts the damaged frame's events as ``corrupt`` (not as failed, not as spooled)."""
    settings = Settings.load(
        environ={}, bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="dmg", state_dir=tmp_path
    )
    spool = tmp_path / "spool" / f"{settings.events_topic}.spool"
    with Tracker(settings=settings, connect_timeout_ms=200, batch_size=80) as tracker:
        for i in range(5_000):
            tracker.message(f"user-{i % 41}", "user", event_id=f"m{i:04d}", ts=TS)
        assert tracker.flush(30).spooled == 5_000
    records = spooled_on_disk(spool)
    hit = len(records) // 2
    start = sum(HEADER_BYTES + len(r.to_bytes()) for r in records[:hit])
    data = bytearray(spool.read_bytes())
    if damage == "magic overwritten":
        data[start : start + 2] = b"\0\0"
    else:
        data[start + HEADER_BYTES + 30] ^= 0x04
    spool.write_bytes(bytes(data))
    with Tracker(settings=settings, connect_timeout_ms=200) as again:
        stats = again.stats
    rest = records[:hit] + records[hit + 1 :]
    assert stats == TrackerStats(
        spool_records=len(rest),
        spool_bytes=len(data) - HEADER_BYTES - len(records[hit].to_bytes()),
        corrupt=records[hit].events,
    )
    assert spool.read_bytes() == data  # the damaged frame stays on disk, skipped when read


def test_refused_records_tell_on_dropped(kafka: Kafka, tmp_path: Path) -> None:
    """A record the producer refuses for good (over its max_request_size) is reported."""
    dropped: list[tuple[list[str], str]] = []
    with Tracker(
        settings=kafka.settings,
        spool_path=tmp_path / "r.spool",
        producer_config={"max_request_size": 300},
        on_dropped=lambda ids, reason: dropped.append((ids, reason)),
    ) as tracker:
        tracker.message("u", "user", event_id="r0", ts=TS)
        assert tracker.flush(30) == FlushResult(acknowledged=1)
        for i in range(1, 6):
            tracker.message("u", "user", event_id=f"r{i}", ts=TS)
        flushed = tracker.flush(30)
    assert (flushed.acknowledged, flushed.failed) == (0, 5)
    assert dropped == [(["r1", "r2", "r3", "r4", "r5"], "refused")]


@pytest.mark.broker
def test_full_queue_and_full_spool_tell_on_dropped(tmp_path: Path) -> None:
    """A broker that does not answer (SIGSTOP): 5 events wait in memory, the next 3 go to the
    spool on their own, the 7 after them fit nowhere and are reported at once, in the call."""
    one = validate({"type": "message", "user_id": "u", "role": "user", "event_id": "s00", "ts": TS})
    frame_bytes = HEADER_BYTES + len(build_records([one], 0)[0].spooled().to_bytes())
    dropped: list[tuple[list[str], str]] = []
    stats, final, ids = stalled_run(
        tmp_path,
        "stall",
        15,
        3,
        max_queue=5,
        max_block_ms=20,
        spool_max_bytes=3 * frame_bytes,
        on_dropped=lambda ids, reason: dropped.append((ids, reason)),
    )
    assert stats == TrackerStats(
        accepted=15, queued=5, spooled=3, failed=7, spool_records=3, spool_bytes=3 * frame_bytes
    )
    # the events in memory go behind the spooled ones, into the spool, which is still full
    assert final == TrackerStats(accepted=15, sent=3, spooled=3, failed=12)
    assert ids == ["s05", "s06", "s07"]
    assert dropped == [
        *[([f"s{i:02d}"], "spool_full") for i in range(8, 15)],
        ([f"s{i:02d}" for i in range(5)], "spool_full"),
    ]
