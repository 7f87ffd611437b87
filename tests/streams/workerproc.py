"""Real worker processes, real records and a generated data set for the stream tests.

Workers run as ``python -m usersignals worker`` children on free ports and are stopped or
killed by PID. Records are written with a plain kafka-python producer straight to the right
partitions (batches of events, plus raw bad records), and the same bytes are decoded with the
contract to give the oracle its input in log order.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tests.wire import read_record
from usersignals.broker import free_port, wait_for_port
from usersignals.cli.status import committed_offsets as committed
from usersignals.ingest.contract import Event
from usersignals.ingest.partitioner import partition_for

START_TIMEOUT_S = 60.0


@dataclass
class WorkerProc:
    """One ``usersignals worker`` process."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 10.0) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if path.startswith("/v1/") else body.decode()

    def status(self) -> dict[str, Any] | None:
        try:
            return dict(self.get("/v1/status", timeout=5))
        except OSError:
            return None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait()
        return int(self.proc.returncode)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(30)


def start_worker(
    env: dict[str, str], log_dir: Path, *, name: str = "worker", loader: bool = False
) -> WorkerProc:
    """Starts a worker on a free port and waits until its web server answers."""
    port = free_port()
    log = log_dir / f"{name}-{port}.log"
    args = [sys.executable, "-m", "usersignals", "worker", "--port", str(port)]
    if not loader:
        args.append("--no-loader")
    out = log.open("ab")
    proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    if not wait_for_port("127.0.0.1", port, START_TIMEOUT_S):
        proc.kill()
        raise RuntimeError(f"worker did not listen on {port}: {log.read_text()[-3000:]}")
    return WorkerProc(proc, port, log)


@contextlib.contextmanager
def running_worker(env: dict[str, str], log_dir: Path, **kw: Any) -> Iterator[WorkerProc]:
    w = start_worker(env, log_dir, **kw)
    try:
        yield w
    finally:
        w.stop()


# -- records ------------------------------------------------------------------------------


@dataclass
class Produced:
    """What was written: true end offset per partition, and values per partition in order."""

    ends: dict[int, int] = field(default_factory=dict)
    values: dict[int, list[bytes]] = field(default_factory=dict)

    def events_in_log_order(self) -> list[Event]:
        """The valid events written, as the oracle's own wire reader sees them."""
        out: list[Event] = []
        for p in sorted(self.values):
            for v in self.values[p]:
                out.extend(read_record(v).events)
        return out

    def rejected(self) -> dict[str, int]:
        """Rejections per reason code, by the oracle's own wire reader."""
        counts: dict[str, int] = {}
        for p in sorted(self.values):
            for v in self.values[p]:
                for reason in read_record(v).reasons:
                    counts[reason] = counts.get(reason, 0) + 1
        return counts


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[int, bytes | None, bytes]],
    produced: Produced | None = None,
) -> Produced:
    """Writes (partition, key, value) records in order; returns true end offsets."""
    from kafka import KafkaProducer

    out = produced or Produced()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=4 << 20
    )
    futures = []
    for p, key, value in records:
        futures.append((p, producer.send(topic, key=key, value=value, partition=p)))
        out.values.setdefault(p, []).append(value)
    producer.flush(60)
    for p, fut in futures:
        md = fut.get(30)
        out.ends[p] = max(out.ends.get(p, 0), md.offset + 1)
    producer.close()
    return out


def batch_records(
    wire: Sequence[dict[str, Any]], partitions: int, batch_size: int, seed: int = 0
) -> list[tuple[int, bytes, bytes]]:
    """Wire events grouped into batch records of their user's partition, order kept."""
    by_p: dict[int, list[dict[str, Any]]] = {}
    for obj in wire:
        by_p.setdefault(partition_for(obj["user_id"], partitions), []).append(obj)
    records: list[tuple[int, bytes, bytes]] = []
    for p, objs in sorted(by_p.items()):
        for i in range(0, len(objs), batch_size):
            chunk = objs[i : i + batch_size]
            value = json.dumps(chunk, ensure_ascii=False).encode()
            records.append((p, chunk[0]["user_id"].encode(), value))
    random.Random(seed).shuffle(records)  # interleave partitions; order within one is kept
    records.sort(key=lambda r: r[0])  # stable: keep per-partition order for log order
    return records


# -- waiting ------------------------------------------------------------------------------


def wait_caught_up(
    workers: Sequence[WorkerProc],
    bootstrap: str,
    group: str,
    topic: str,
    ends: dict[int, int],
    partitions: int,
    timeout: float = 120.0,
) -> None:
    """Until the group committed every end offset and live workers hold every partition."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        done = committed(bootstrap, group, topic, partitions)
        statuses = [w.status() for w in workers if w.proc.poll() is None]
        held: list[int] = []
        for s in statuses:
            if s is not None and s["ready"]:
                held.extend(int(p) for p in s["partitions"])
        last = (done, held)
        if sorted(held) == list(range(partitions)) and all(
            done.get(p, 0) >= end for p, end in ends.items()
        ):
            return
        time.sleep(0.5)
    raise TimeoutError(f"not caught up with {ends}: committed, held = {last}")


# -- a data set with every hard case of issue 4 (a) ---------------------------------------

FIRST_DAY = date(2026, 9, 1)
ODD_USERS = ["用户-一", 'say "hi"', "comma,separated", "x" * 130, "ünï", "tab\there"]


def _wire_ts(moment: datetime, form: int) -> Any:
    if form == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if form == 1:
        return int(moment.timestamp() * 1000)
    if form == 2:
        return moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    return (
        moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        if moment.microsecond == 0
        else (moment.astimezone(timezone(timedelta(hours=-7))).isoformat())
    )


def generate_wire(seed: int, users: int = 60, days: int = 30) -> list[dict[str, Any]]:
    """Wire events (JSON objects) with retries, shuffling, late uploads, changed and withdrawn
    votes, gap days, day-edge times, every ts form and odd user ids."""
    rng = random.Random(seed)
    uids = [f"u{i:03d}" for i in range(users)] + ODD_USERS
    gap_days = {3, 4, 11, 20}
    models = ["m-1", "m-2", "m-3.5", None]
    out: list[dict[str, Any]] = []
    n = 0

    def ts_of(day: int, edge: int) -> datetime:
        base = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC)
        base += timedelta(days=day)
        if edge == 0:
            return base
        if edge == 1:
            return base + timedelta(hours=23, minutes=59, seconds=59, milliseconds=999)
        return base + timedelta(seconds=rng.randrange(86400), milliseconds=rng.randrange(1000))

    for uid in uids:
        for _ in range(rng.randrange(3, 12)):
            day = rng.randrange(days)
            if day in gap_days:
                continue
            n += 1
            moment = ts_of(day, rng.randrange(4))
            kind = rng.choice(["session_start", "message", "feedback", "risk_flag", "preference"])
            ev: dict[str, Any] = {
                "event_id": f"e{n}",
                "type": kind,
                "user_id": uid,
                "ts": _wire_ts(moment, rng.randrange(4)),
            }
            model = rng.choice(models)
            if model:
                ev["model"] = model
            if kind == "message":
                ev["role"] = rng.choice(["user", "assistant"])
            elif kind == "feedback":
                ev["message_id"] = f"msg{rng.randrange(3)}"
                ev["rating"] = rng.choice([1, -1, 0, 1])
            elif kind == "risk_flag":
                ev["category"] = rng.choice(["mania", "sycophancy", "other"])
                ev["severity"] = rng.choice(["low", "high", "critical"])
            elif kind == "preference":
                ev["model_a"], ev["model_b"] = "m-1", "m-2"
                ev["winner"] = rng.choice(["a", "b", "tie", "both_bad"])
            out.append(ev)
    rng.shuffle(out)
    retries = [dict(rng.choice(out)) for _ in range(len(out) // 5)]
    for r in retries:  # client retries land later in the stream
        out.insert(rng.randrange(len(out) // 2, len(out) + 1), r)
    return out


BAD_RECORDS: list[bytes] = [
    b"",
    b"\xff\xfe\x00garbage",
    b"not json at all",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"event_id":"big","type":"message","role":"user","user_id":"u","ts":0,"p":"'
    + b"x" * 40_000
    + b'"}',
    b"[1,2,3]",
    b'[{"event_id":"ok-but-bad","type":"nope","user_id":"u001","ts":0}]',
]
