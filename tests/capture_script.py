"""Real analytics SDKs against a real collector, broker and worker: the harness of the SDK tests.

:func:`pipeline` starts a ``usersignals collector`` child (write key and Snowplow app id
configured) and a ``usersignals worker`` child on one topic prefix of a real broker. The
runners drive the SDKs as an app does, through their public calls, and record what each one
saw on the wire: the HTTP status of every request it made (a response hook on the SDK's own
``requests`` session, or a wrapper of Node's global ``fetch``: observed, never changed) and
every error it reported through its own callback. Nothing here maps an SDK payload: what a
call must become is written by hand in the tests, and checked against what the collector
stored (:meth:`Pipeline.stored`) and what the worker counts (:meth:`Pipeline.live`).

The Node SDKs (``posthog-node``, ``@segment/analytics-node``) are installed once from the npm
registry into ``.venv/capture-node`` (ignored by git, beside the Python dev dependencies) and
reused; :func:`node_sdks` says why they cannot run when Node, npm or the install is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.arena_reference import reference_arena, same_arena
from tests.conftest import Kafka
from tests.ingest.test_collector import Running, start_collector
from tests.oracle import counted
from tests.streams.test_wellbeing_live import oracle_live
from tests.streams.workerproc import WorkerProc, start_worker
from usersignals.cli.status import committed_offsets, end_offsets
from usersignals.ingest import contract

__all__ = [
    "APP_ID",
    "KEY",
    "NODE_PACKAGES",
    "Call",
    "Observed",
    "Pipeline",
    "day_clock",
    "expected_events",
    "live_differences",
    "mismatches",
    "node_sdks",
    "pipeline",
    "run_node",
    "run_posthog",
    "run_rudder",
    "run_segment",
    "run_snowplow",
]

ROOT = Path(__file__).resolve().parents[1]
KEY = "capture-test-key"
"""The collector's write key: PostHog's project key, Segment's and RudderStack's write key."""
APP_ID = "chat-backend"
"""The Snowplow app id on the collector's allow-list (Snowplow sends no key)."""
NODE_PACKAGES = ("posthog-node@5.74.0", "@segment/analytics-node@3.1.0")
NODE_DIR = ROOT / ".venv" / "capture-node"
NODE_SCRIPT = Path(__file__).with_name("capture_node.js")
SDK_TIMEOUT_S = 120.0

Call = tuple[str, dict[str, Any]]
"""One SDK call: the client method's name and its keyword arguments."""


def day_clock(day: date) -> Callable[..., datetime]:
    """``at(hour, minute, second=0)``: a moment of ``day`` in UTC."""

    def at(hour: int, minute: int, second: int = 0) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)

    return at


def expected_events(docs: Sequence[dict[str, Any]]) -> list[contract.Event]:
    """The hand-written contract events, validated by the contract (each must be valid)."""
    out = []
    for doc in docs:
        result = contract.validate(doc)
        if not isinstance(result, contract.Event):
            raise AssertionError(f"expected event {doc} is invalid: {result.message}")
        out.append(result)
    return out


COMPARED = (
    "type",
    "user_id",
    "session_id",
    "model",
    "role",
    "message_id",
    "rating",
    "model_a",
    "model_b",
    "winner",
    "category",
    "severity",
    "name",
)
"""Fields every stored event must have as expected (absent means absent); others, such as
``platform``, ``source``, ``tokens`` or ``duration_s``, only where the expectation sets them.
Properties are not compared: every SDK adds its own."""
OPTIONAL = ("platform", "source", "tokens", "duration_s")
TS_TOLERANCE = timedelta(seconds=3)
"""Clock-skew correction uses the request's sent-at time (Snowplow's ``stm`` is in whole
seconds), so a stored ``ts`` is the scripted one plus the request's latency."""


def mismatches(
    expected: Sequence[contract.Event],
    stored: dict[str, list[contract.Event]],
    given: dict[str, set[str]] | None = None,
    late: timedelta = timedelta(0),
) -> list[str]:
    """What differs between the expected events and the stored copies, one line per field.

    ``given`` maps an event id to the optional fields its expectation sets; ``late`` is how
    much later than :data:`TS_TOLERANCE` a stored ``ts`` may be (a retried body whose send
    time is that of its first try: the correction then counts the retries as latency).
    """
    problems = []
    for want in expected:
        copies = stored.get(want.event_id, [])
        if not copies:
            problems.append(f"{want.event_id} ({want.type} of {want.user_id}): not stored")
            continue
        optional = [f for f in OPTIONAL if f in (given or {}).get(want.event_id, ())]
        for got in copies:
            fields = [*COMPARED, *optional]
            for name in fields:
                if getattr(got, name) != getattr(want, name):
                    problems.append(
                        f"{want.event_id} ({want.type}): {name} is {getattr(got, name)!r}, "
                        f"expected {getattr(want, name)!r}"
                    )
            if not -TS_TOLERANCE <= got.ts - want.ts <= TS_TOLERANCE + late:
                problems.append(f"{want.event_id} ({want.type}): ts {got.ts}, expected {want.ts}")
    return problems


def live_differences(live: dict[str, Any], expected: Sequence[contract.Event]) -> dict[str, Any]:
    """Each key of a live report that differs from the oracle's report of ``expected``, with
    both values (the worker holding all of it: the weekly flagged share of the weeks it holds
    whole; the arena is the reference fit of the preferences, within its tolerance)."""
    want = oracle_live(expected)
    prefs: Counter[tuple[str, str, str]] = Counter(
        (str(e.model_a), str(e.model_b), str(e.winner))
        for e in counted(expected)
        if e.type == "preference"
    )
    want["arena"] = reference_arena(prefs)
    differ = {
        k: (live.get(k), want.get(k))
        for k in sorted(set(live) | set(want))
        if k != "arena" and live.get(k) != want.get(k)
    }
    if not same_arena(live.get("arena", []), want["arena"]):
        differ["arena"] = (live.get("arena"), want["arena"])
    return differ


# ------------------------------------------------------------------------------ the pipeline


@dataclass
class Pipeline:
    """A collector and a worker on one topic prefix of a real broker."""

    kafka: Kafka
    collector: Running
    worker: WorkerProc

    @property
    def url(self) -> str:
        return self.collector.url

    def collector_log(self) -> list[str]:
        """What the collector printed on stderr so far."""
        while True:
            try:
                self.collector.seen.append(self.collector.lines.get_nowait())
            except queue.Empty:
                return self.collector.seen

    def caught_up(self, timeout: float = 120.0) -> None:
        """Until the worker committed the end offset of every partition of the events topic."""
        s = self.kafka.settings
        group = f"{s.topic_prefix}-worker"
        deadline = time.monotonic() + timeout
        ends: dict[int, int] = {}
        done: dict[int, int] = {}
        while time.monotonic() < deadline:
            ends = end_offsets(s.bootstrap, s.events_topic, s.partitions)
            done = committed_offsets(s.bootstrap, group, s.events_topic, s.partitions)
            if all(done.get(p, 0) >= end for p, end in ends.items() if end > 0):
                return
            time.sleep(0.3)
        raise TimeoutError(f"the worker did not catch up: ends {ends}, committed {done}")

    def live(self) -> Any:
        """``usersignals report --live --json`` against the worker."""
        env = {**self.kafka.env(), "USERSIGNALS_WORKER_URL": self.worker.url}
        out = subprocess.run(
            [sys.executable, "-m", "usersignals", "report", "--live", "--json"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr.decode()
        return json.loads(out.stdout)

    def stored(self, timeout: float = 30.0) -> dict[str, list[contract.Event]]:
        """Every event of the events topic, by event id, each copy in log order."""
        from kafka import KafkaConsumer, TopicPartition

        s = self.kafka.settings
        ends = end_offsets(s.bootstrap, s.events_topic, s.partitions)
        consumer = KafkaConsumer(
            bootstrap_servers=s.bootstrap, enable_auto_commit=False, consumer_timeout_ms=500
        )
        found: dict[str, list[contract.Event]] = {}
        try:
            tps = [TopicPartition(s.events_topic, p) for p in range(s.partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if all(consumer.position(tp) >= ends.get(tp.partition, 0) for tp in tps):
                    return found
                for batch in consumer.poll(timeout_ms=300).values():
                    for msg in batch:
                        events, rejected = contract.decode_record(msg.value)
                        assert rejected == [], rejected
                        for e in events:
                            found.setdefault(e.event_id, []).append(e)
            raise TimeoutError(f"the events topic was not read to its end {ends}")
        finally:
            consumer.close()


@contextlib.contextmanager
def pipeline(kafka: Kafka, log_dir: Path, **env: str) -> Iterator[Pipeline]:
    """A worker (no loader) and a collector with the test's write key and Snowplow app id."""
    worker = start_worker(kafka.env(), log_dir)
    try:
        collector = start_collector(
            {
                **kafka.env(),
                "USERSIGNALS_WRITE_KEYS": KEY,
                "USERSIGNALS_SNOWPLOW_APP_IDS": APP_ID,
                **env,
            }
        )
        try:
            yield Pipeline(kafka, collector, worker)
        finally:
            assert collector.stop() == 0
    finally:
        assert worker.stop() == 0


# ------------------------------------------------------------------------------ the SDKs


@dataclass
class Observed:
    """What one SDK run saw: its requests' statuses, the errors it reported, the ids it gave."""

    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    """When each status came (``time.monotonic()``)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        """A ``requests`` response hook: records the status, changes nothing."""
        self.record(int(response.status_code))
        return response

    def record(self, status: int) -> None:
        with self.lock:
            self.statuses.append(status)
            self.times.append(time.monotonic())

    def error(self, *args: Any) -> None:
        with self.lock:
            self.errors.append(" ".join(str(a)[:200] for a in args[:1]))


@contextlib.contextmanager
def _hooked(session: Any, observed: Observed) -> Iterator[None]:
    session.hooks["response"].append(observed.status)
    try:
        yield
    finally:
        session.hooks["response"].remove(observed.status)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def run_posthog(url: str, calls: Sequence[Call], observed: Observed, **options: Any) -> None:
    """posthog-python: its calls, then ``flush()`` and ``shutdown()`` (it stops retrying by
    itself: ``max_retries``, 3 by default, i.e. 4 tries)."""
    from posthog import Posthog
    from posthog import request as posthog_request

    with _hooked(posthog_request._session, observed):
        client = Posthog(KEY, host=url, on_error=observed.error, **options)
        try:
            for method, kwargs in calls:
                getattr(client, method)(**kwargs)
            client.flush(timeout_seconds=SDK_TIMEOUT_S)
        finally:
            client.shutdown()


def _run_analytics_python(
    module: Any, url: str, calls: Sequence[Call], observed: Observed, **options: Any
) -> None:
    client = module.Client(KEY, host=url, on_error=observed.error, **options)
    try:
        for method, kwargs in calls:
            getattr(client, method)(**kwargs)
        client.flush()
    finally:
        client.join()


def run_segment(url: str, calls: Sequence[Call], observed: Observed, **options: Any) -> None:
    """segment-analytics-python: its calls, then ``flush()`` (which waits out its retries)."""
    from segment import analytics
    from segment.analytics import request as segment_request

    with _hooked(segment_request._session, observed):
        _run_analytics_python(analytics, url, calls, observed, **options)


def run_rudder(url: str, calls: Sequence[Call], observed: Observed, **options: Any) -> None:
    """rudder-sdk-python: its calls, then ``flush()`` (which waits out its retries)."""
    from rudderstack import analytics
    from rudderstack.analytics import request as rudder_request

    with _hooked(rudder_request._session, observed):
        _run_analytics_python(analytics, url, calls, observed, **options)


def run_snowplow(url: str, events: Sequence[Any], observed: Observed, **options: Any) -> None:
    """snowplow-tracker: ``track`` each event (its id is the tracker's), then flush and wait
    until the emitter's buffer is empty (it retries failed events by itself, forever; its
    ``on_failure`` tells of each failed attempt, not of events given up, so it is not an
    error here: the statuses show the attempts)."""
    import requests
    from snowplow_tracker.emitters import Emitter
    from snowplow_tracker.tracker import Tracker

    session = requests.Session()
    session.hooks["response"].append(observed.status)
    emitter = Emitter(
        url,
        batch_size=len(events) + 1,  # one POST, on flush
        session=session,
        **options,
    )
    tracker = Tracker(namespace="chat", emitters=emitter, app_id=APP_ID)
    try:
        for event in events:
            observed.ids.append(str(tracker.track(event)))
        tracker.flush()
        _wait(
            lambda: emitter.event_store.size() == 0 and not emitter.retry_timer.is_active(),
            SDK_TIMEOUT_S,
            "snowplow did not deliver its events",
        )
    finally:
        emitter.cancel_flush_timer()
        emitter._cancel_retry_timer()
        session.close()


def node_sdks() -> tuple[Path | None, str]:
    """The ``node_modules`` of the Node SDKs, or None and why not.

    ``make install`` installs them (from the npm registry, once) when ``node`` and ``npm`` are
    present; a test never downloads. With Node present but the SDKs missing, a run that
    requires its tools (``make test``) fails instead of skipping.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "Node.js (node and npm) is not installed"
    modules = NODE_DIR / "node_modules"
    stamp = NODE_DIR / "installed.json"
    if (
        stamp.exists()
        and json.loads(stamp.read_text()) == list(NODE_PACKAGES)
        and all((modules / p.rpartition("@")[0] / "package.json").exists() for p in NODE_PACKAGES)
    ):
        return modules, ""
    reason = f"the Node SDKs ({', '.join(NODE_PACKAGES)}) are not installed: run make install"
    if os.environ.get("USERSIGNALS_REQUIRE_TOOLS") == "1":
        raise RuntimeError(reason)
    return None, reason


def run_node(
    modules: Path, sdk: str, url: str, calls: Sequence[Call], observed: Observed, **options: Any
) -> None:
    """``node tests/capture_node.js``: posthog-node or @segment/analytics-node runs the calls
    and shuts down (flushing); their ``timestamp`` arguments are ISO strings here. Each status
    is recorded as soon as the SDK gets it."""
    spec = {
        "sdk": sdk,
        "host": url,
        "key": KEY,
        "options": options,
        "calls": [[m, _jsonable(kw)] for m, kw in calls],
    }
    proc = subprocess.Popen(
        ["node", str(NODE_SCRIPT)],
        env={**os.environ, "NODE_PATH": str(modules)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    killer = threading.Timer(SDK_TIMEOUT_S + 60, proc.kill)
    killer.start()
    try:
        proc.stdin.write(json.dumps(spec))
        proc.stdin.close()
        for line in proc.stdout:
            answer = json.loads(line)
            if "status" in answer:
                observed.record(int(answer["status"]))
            else:
                observed.errors.extend(answer["errors"])
        code = proc.wait()
        assert code == 0, proc.stderr.read()[-3000:]
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
