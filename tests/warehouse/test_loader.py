"""The loader against the real broker: typed rows, dead letters, other partitions, resume."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from kafka import KafkaProducer

from tests.conftest import Kafka
from usersignals.ingest.contract import Event, decode_record, encode_batch, partition_for
from usersignals.warehouse.layout import (
    DEADLETTER_SCHEMA,
    EVENTS_SCHEMA,
    committed_offsets,
)
from usersignals.warehouse.loader import LoaderBusyError, RollPolicy, run_loader, warehouse_lock

Position = tuple[int, int, int]
DeadRow = tuple[int, int, int | None, str]
BASE = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)


@dataclass
class Plan:
    """Records to produce, and what a correct loader makes of them."""

    events: Counter[Position] = field(default_factory=Counter)
    dead: Counter[DeadRow] = field(default_factory=Counter)
    ids: dict[Position, str] = field(default_factory=dict)
    foreign: int = 0

    def first_copies(self) -> dict[str, Position]:
        """Each event_id's first position in log order."""
        first: dict[str, Position] = {}
        for pos in sorted(self.events):
            first.setdefault(self.ids[pos], pos)
        return first

    def expect(self, partition: int, offset: int, value: bytes, partitions: int = 8) -> None:
        """What the contract makes of one produced record (its verdict is not under test)."""
        events, rejections = decode_record(value, now=datetime.now(UTC))
        for r in rejections:
            self.dead[(partition, offset, r.index, r.reason)] += 1
        bad = {r.index for r in rejections if r.index is not None}
        indexes = [i for i in range(len(events) + len(bad)) if i not in bad]
        for e, i in zip(events, indexes, strict=True):
            if partition_for(e.user_id, partitions) == partition:
                self.events[(partition, offset, i)] += 1
                self.ids[(partition, offset, i)] = e.event_id
            else:
                self.foreign += 1


def users_by_partition(n_users: int, partitions: int = 8) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {p: [] for p in range(partitions)}
    for k in range(n_users):
        user = f"user-{k}"
        out[partition_for(user, partitions)].append(user)
    return out


def event(event_id: str, user: str, minutes: int) -> Event:
    return Event(
        event_id=event_id,
        type="message",
        user_id=user,
        ts=BASE + timedelta(minutes=3 * minutes),
        role="user",
        tokens=minutes,
        model="m-1",
        properties={"k": [1, {"z": None}]},
    )


def make_records(n_records: int, per_record: int = 100, seed: int = 0) -> list[tuple[int, bytes]]:
    """Batches of events of one partition over three event days, with the warts of real traffic.

    Every 10th record repeats the previous record of its partition (a client retry); every 97th
    has a bad element (at index 5); every 250th carries one event of another partition; three
    records cannot be read at all.
    """
    users = users_by_partition(800)
    out: list[tuple[int, bytes]] = []
    previous: dict[int, bytes] = {}
    for r in range(n_records):
        p = r % 8
        if r % 10 == 9 and p in previous:
            out.append((p, previous[p]))
            continue
        batch = [
            encode_batch([event(f"s{seed}-r{r}-{i}", users[p][(r + i) % len(users[p])], r + i)])[
                1:-1
            ]
            for i in range(per_record)
        ]
        if r % 97 == 5:
            batch[5 % per_record] = b'{"event_id": "bad", "type": "message", "user_id": "u"}'
        if r % 250 == 7:
            other = users[(p + 1) % 8][0]
            batch[1 % per_record] = encode_batch([event(f"s{seed}-r{r}-foreign", other, 3)])[1:-1]
        value = b"[" + b",".join(batch) + b"]"
        previous[p] = value
        out.append((p, value))
    out += [(1, b"not json"), (2, b"[]"), (3, b"\xff\xfe")]
    return out


def produce(kafka: Kafka, records: list[tuple[int, bytes]], plan: Plan | None = None) -> Plan:
    plan = plan or Plan()
    producer = KafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=5, max_request_size=2 << 20
    )
    futures = [
        (value, producer.send(kafka.settings.events_topic, value=value, partition=p))
        for p, value in records
    ]
    producer.flush()
    for value, future in futures:
        md = future.get(timeout=30)
        plan.expect(md.partition, md.offset, value)
    producer.close()
    return plan


def events_glob(root: Path) -> str:
    """Every events file on disk, live or not: a test's look at what is physically there."""
    return str(root / "events" / "day=*" / "*.parquet")


def deadletter_glob(root: Path) -> str:
    return str(root / "deadletter" / "*.parquet")


def loaded_positions(root: Path) -> Counter[Position]:
    rows = duckdb.sql(
        "SELECT source_partition, source_offset, batch_index "
        f"FROM read_parquet('{events_glob(root)}')"
    ).fetchall()
    return Counter(rows)


def loaded_dead(root: Path) -> Counter[DeadRow]:
    if not list((root / "deadletter").glob("*.parquet")):
        return Counter()
    rows = duckdb.sql(
        "SELECT source_partition, source_offset, batch_index, reason "
        f"FROM read_parquet('{deadletter_glob(root)}')"
    ).fetchall()
    return Counter(rows)


SMALL = RollPolicy(max_events=300, max_bytes=1 << 20, max_seconds=0.2)


def test_loads_every_record_once_typed_and_resumes(kafka: Kafka) -> None:
    root = kafka.settings.warehouse
    plan = produce(kafka, make_records(40, per_record=20))
    stats = run_loader(kafka.settings, roll=SMALL, drain=True)
    assert (stats.records, stats.events, stats.rejected, stats.foreign) == (43, 798, 4, 1)
    assert loaded_positions(root) == plan.events
    assert loaded_dead(root) == plan.dead
    assert sorted(loaded_dead(root).elements()) == [
        (1, 5, None, "not_json"),
        (2, 5, None, "bad_batch"),
        (3, 5, None, "not_utf8"),
        (5, 0, 5, "missing_field"),
    ]
    days = sorted(p.name for p in (root / "events").iterdir())
    assert days == ["day=2026-03-01", "day=2026-03-02"]

    # one full row, typed
    first = pq.read_table(next((root / "events" / "day=2026-03-01").glob("p000-*.parquet")))
    assert first.schema.remove_metadata() == EVENTS_SCHEMA
    row = first.slice(0, 1).to_pylist()[0]
    assert row == {
        "event_id": "s0-r0-0",
        "type": "message",
        "user_id": row["user_id"],
        "ts": BASE,
        "day": date(2026, 3, 1),
        "session_id": None,
        "model": "m-1",
        "platform": None,
        "role": "user",
        "tokens": 0,
        "message_id": None,
        "rating": None,
        "model_a": None,
        "model_b": None,
        "winner": None,
        "category": None,
        "severity": None,
        "source": None,
        "duration_s": None,
        "name": None,
        "properties": '{"k":[1,{"z":null}]}',
        "extra": None,
        "received_at": row["received_at"],
        "source_partition": 0,
        "source_offset": 0,
        "batch_index": 0,
    }
    assert partition_for(row["user_id"], 8) == 0
    assert abs(row["received_at"] - datetime.now(UTC)) < timedelta(minutes=5)
    dead = pq.read_table(next((root / "deadletter").glob("p001-*.parquet")))
    assert dead.schema.remove_metadata() == DEADLETTER_SCHEMA
    assert dead.column("raw").to_pylist() == [b"not json"]

    # resume: only the new records are read
    produce(kafka, make_records(16, per_record=6, seed=1)[:16], plan)
    again = run_loader(kafka.settings, roll=SMALL, drain=True)
    assert (again.records, again.events, again.rejected, again.foreign) == (16, 94, 1, 1)
    assert loaded_positions(root) == plan.events
    assert loaded_dead(root) == plan.dead
    assert committed_offsets(root) == {0: 6, 1: 7, 2: 7, 3: 7, 4: 6, 5: 6, 6: 6, 7: 6}


def test_a_second_loader_on_the_same_warehouse_is_refused(kafka: Kafka) -> None:
    with warehouse_lock(kafka.settings.warehouse), pytest.raises(LoaderBusyError) as exc:
        run_loader(kafka.settings, drain=True)
    assert str(exc.value) == f"Another loader is writing to {str(kafka.settings.warehouse)!r}"


def start_loader(kafka: Kafka, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "usersignals", "loader", "--json", *args],
        env=kafka.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for_offsets(root: Path, want: dict[int, int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while committed_offsets(root) != want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"committed {committed_offsets(root)}, want {want}")
        time.sleep(0.05)


def wait_for_line(proc: subprocess.Popen[bytes], start: bytes, timeout: float = 60) -> None:
    """Reads the process's stderr until a line starting with ``start``; fails at the deadline."""
    stream = proc.stderr
    assert stream is not None
    lines: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        for line in iter(stream.readline, b""):
            lines.put(line)
            if line.startswith(start):
                return
        lines.put(b"")

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"no line starting with {start!r} within {timeout} s") from None
        if not line:
            raise AssertionError(f"stderr closed before a line starting with {start!r}")
        if line.startswith(start):
            return


def test_sigterm_flushes_buffered_records_and_exits_0(kafka: Kafka) -> None:
    plan = produce(kafka, make_records(16, per_record=10))
    proc = start_loader(kafka, "--roll-seconds", "3600")
    wait_for_line(proc, b"usersignals.loader: caught up")  # everything read, nothing written
    assert committed_offsets(kafka.settings.warehouse) == {}
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    stats = json.loads(out)
    assert (stats["records"], stats["events"], stats["flushes"]) == (19, 158, 8)
    assert loaded_positions(kafka.settings.warehouse) == plan.events


def test_exits_with_its_parent(kafka: Kafka) -> None:
    plan = produce(kafka, make_records(8, per_record=2))
    script = (
        "import subprocess, sys, time;"
        "p = subprocess.Popen([sys.executable, '-m', 'usersignals', 'loader',"
        " '--exit-with-parent', '--roll-seconds', '3600']);"
        "print(p.pid, flush=True); time.sleep(3)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        env=kafka.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    wait_for_line(parent, b"usersignals.loader: loading")
    parent.kill()
    parent.communicate(timeout=10)
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)
    # it wrote what it had read before it stopped: exactly the records up to its commits
    committed = committed_offsets(kafka.settings.warehouse)
    assert loaded_positions(kafka.settings.warehouse) == Counter(
        {(p, o, i): n for (p, o, i), n in plan.events.items() if o <= committed.get(p, -1)}
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # reap it if it is our zombie grandchild's reparented corpse
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        done = 0
    if done:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"
