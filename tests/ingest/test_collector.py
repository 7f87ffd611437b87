"""The HTTP collector: pure policy as tables, the server as a real child process on real Kafka.

HTTP goes over real sockets (``http.client``) to ``python -m usersignals collector``, which
writes to the session broker; the records are read back with a Kafka consumer and decoded
with the contract.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.conftest import Kafka
from usersignals.broker import EmbeddedBroker, ensure_topics
from usersignals.config import Settings
from usersignals.ingest import contract
from usersignals.ingest.collector import response_status
from usersignals.ingest.collector_auth import (
    check_content_type,
    check_write_key,
    cors_headers,
    parse_origins,
)

KEYS = "key-one,key-two"
AUTH = {"Authorization": "Bearer key-two", "Content-Type": "application/json"}
START_TIMEOUT_S = 30.0
_tags = itertools.count()


# ---------------------------------------------------------------- pure policy


@pytest.mark.parametrize(
    ("header", "keys", "problem"),
    [
        (None, (), None),
        ("Bearer whatever", (), None),
        ("Bearer key-one", ("key-one", "key-two"), None),
        ("bearer  key-two ", ("key-one", "key-two"), None),
        (None, ("k",), "missing Authorization header; expected 'Bearer <write key>'"),
        ("Bearer wrong", ("k",), "unknown write key"),
        ("Bearer k2", ("k",), "unknown write key"),
        ("Bearer ", ("k",), "Authorization header must be 'Bearer <write key>'"),
        ("Basic aw==", ("k",), "Authorization header must be 'Bearer <write key>'"),
        ("k", ("k",), "Authorization header must be 'Bearer <write key>'"),
        ("Bearer clé", ("k",), "unknown write key"),
    ],
)
def test_check_write_key(header: str | None, keys: tuple[str, ...], problem: str | None) -> None:
    assert check_write_key(header, keys) == problem


@pytest.mark.parametrize(
    ("content_type", "problem"),
    [
        ("application/json", None),
        ("Application/JSON; charset=UTF-8", None),
        ('application/json; charset="utf-8"', None),
        (None, "missing Content-Type; expected 'application/json'"),
        ("text/plain", "Content-Type must be 'application/json', got 'text/plain'"),
        (
            "application/x-www-form-urlencoded",
            "Content-Type must be 'application/json', got 'application/x-www-form-urlencoded'",
        ),
        (
            "application/json; charset=latin-1",
            "Content-Type charset must be utf-8, got 'application/json; charset=latin-1'",
        ),
    ],
)
def test_check_content_type(content_type: str | None, problem: str | None) -> None:
    assert check_content_type(content_type) == problem


@pytest.mark.parametrize(
    ("configured", "origin", "preflight", "headers"),
    [
        ("*", "https://a.example", False, {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": "Retry-After",
        }),
        ("*", None, True, {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "86400",
        }),
        ("https://a.example, https://b.example/", "https://b.example", False, {
            "Vary": "Origin",
            "Access-Control-Allow-Origin": "https://b.example",
            "Access-Control-Expose-Headers": "Retry-After",
        }),
        ("https://a.example", "https://evil.example", True, {
            "Vary": "Origin",
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "86400",
        }),
        ("", None, False, {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": "Retry-After",
        }),
    ],
)  # fmt: skip
def test_cors_headers(
    configured: str, origin: str | None, preflight: bool, headers: dict[str, str]
) -> None:
    assert dict(cors_headers(origin, parse_origins(configured), preflight=preflight)) == headers


@pytest.mark.parametrize(
    ("accepted", "rejected", "status"),
    [(3, 0, 200), (1, 0, 200), (2, 1, 207), (0, 4, 400), (0, 1, 400)],
)
def test_response_status(accepted: int, rejected: int, status: int) -> None:
    assert response_status(accepted, rejected) == status


def _event(event_id: str, user_id: Any, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "session_start",
        "user_id": user_id,
        "ts": "2026-08-03T12:00:00Z",
        **fields,
    }


# ---------------------------------------------------------------- a real collector process


@dataclass
class Running:
    """A collector child process and what it printed on stderr."""

    proc: subprocess.Popen[str]
    url: str
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 0)

    def stderr_until(self, wanted: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while not any(wanted in line for line in self.seen):
            try:
                self.seen.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no {wanted!r} on stderr; got {self.seen!r}") from None
        return self.seen

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            if self.pump is not None:
                self.pump.join(5)
            if self.proc.stderr is not None:
                self.proc.stderr.close()


def start_collector(env: Mapping[str, str], *args: str) -> Running:
    proc = subprocess.Popen(
        [sys.executable, "-m", "usersignals", "collector", "--port", "0", *args],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(proc, url="")
    assert proc.stderr is not None
    stderr = proc.stderr

    def pump() -> None:
        for line in stderr:
            running.lines.put(line.rstrip("\n"))

    running.pump = threading.Thread(target=pump, daemon=True)
    running.pump.start()
    try:
        lines = running.stderr_until("collector listening on ", START_TIMEOUT_S)
    except AssertionError:
        running.stop()
        raise
    running.url = lines[-1].removeprefix("collector listening on ")
    return running


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def request(
    url: str,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        chunked = body is not None and not isinstance(body, bytes)
        conn.request(method, path, body=body, headers=dict(headers or {}), encode_chunked=chunked)
        resp = conn.getresponse()
        raw = resp.read()
        answer_headers = {k.lower(): v for k, v in resp.getheaders()}
        data = json.loads(raw) if raw else None
        return Answer(resp.status, answer_headers, data)
    finally:
        conn.close()


def post(url: str, payload: Any, headers: Mapping[str, str] = AUTH) -> Answer:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(url, "POST", "/v1/events", body, headers)


@dataclass(frozen=True)
class Stored:
    partition: int
    offset: int
    key: bytes
    events: list[contract.Event]


def read_back(settings: Settings, event_ids: set[str], timeout: float = 20.0) -> list[Stored]:
    """Every record of the events topic holding one of ``event_ids``, once all have arrived."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False, consumer_timeout_ms=500
    )
    try:
        tps = [TopicPartition(settings.events_topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        found: list[Stored] = []
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while seen < event_ids and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for msg in batch:
                    events, rejected = contract.decode_record(msg.value)
                    assert rejected == []
                    if any(e.event_id in event_ids for e in events):
                        found.append(Stored(msg.partition, msg.offset, msg.key, events))
                        seen.update(e.event_id for e in events)
        return found
    finally:
        consumer.close()


def _corner(broker: EmbeddedBroker, tmp: Any) -> Kafka:
    settings = Settings.load(
        environ={},
        bootstrap=broker.bootstrap,
        topic_prefix=f"c{os.getpid()}-{next(_tags)}",
        warehouse=tmp / "warehouse",
        state_dir=tmp / "state",
        partitions=8,
    )
    ensure_topics(broker.bootstrap, settings.partitions, settings.topics)
    return Kafka(broker, settings)


@pytest.fixture(scope="module")
def corner(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Kafka:
    """Topics of their own for this module's shared collector."""
    return _corner(broker, tmp_path_factory.mktemp("collector"))


@pytest.fixture(scope="module")
def collector(corner: Kafka) -> Iterator[Running]:
    """One collector with two write keys, shared by the module's HTTP tests."""
    running = start_collector({**corner.env(), "USERSIGNALS_WRITE_KEYS": KEYS})
    yield running
    assert running.stop() == 0


def _tag() -> str:
    return f"r{next(_tags)}"


def test_accepted_events_arrive_in_their_partitions(collector: Running, corner: Kafka) -> None:
    tag = _tag()
    payload = [_event(f"{tag}-{i}", f"user-{i % 13}") for i in range(40)]
    before = datetime.now(UTC)
    answer = post(collector.url, payload)
    after = datetime.now(UTC)
    ids = [e["event_id"] for e in payload]
    assert (answer.status, answer.body) == (200, {"accepted": ids, "rejected": []})
    stored = read_back(corner.settings, set(ids))
    users = {f"user-{i}" for i in range(13)}
    assert sorted(s.partition for s in stored) == sorted(
        {contract.partition_for(u, 8) for u in users}
    )
    events = [e for s in stored for e in s.events]
    assert sorted(e.event_id for e in events) == sorted(ids)
    for s in stored:
        assert {contract.partition_for(e.user_id, 8) for e in s.events} == {s.partition}
        assert s.key.decode() == s.events[0].user_id
    stamps = {e.received_at for e in events}
    assert len(stamps) == 1
    (stamp,) = stamps
    assert stamp is not None
    assert before <= stamp <= after


def test_single_object_is_a_batch_of_one(collector: Running, corner: Kafka) -> None:
    tag = _tag()
    answer = post(collector.url, _event(f"{tag}-0", "solo"))
    assert (answer.status, answer.body) == (200, {"accepted": [f"{tag}-0"], "rejected": []})
    (stored,) = read_back(corner.settings, {f"{tag}-0"})
    assert stored.partition == contract.partition_for("solo", 8)


def test_objects_separated_by_a_comma_are_no_json(collector: Running) -> None:
    """``{...}, {...}`` is no JSON: the worker reading it as a record rejects it whole, and so
    does the collector (it read it, in brackets, as a batch of two)."""
    one = json.dumps(_event(f"{_tag()}-0", "solo")).encode()
    answer = post(collector.url, one + b", " + one)
    assert answer.status == 400
    assert [(r["index"], r["reason"]) for r in answer.body["rejected"]] == [(None, "not_json")]


def test_healthz_names_the_broker(collector: Running, corner: Kafka) -> None:
    answer = request(collector.url, "GET", "/healthz")
    assert (answer.status, answer.body) == (
        200,
        {
            "status": "ok",
            "broker": {
                "kind": "tansu",
                "durable": False,
                "cluster_id": "tansu_cluster",
                "bootstrap": corner.settings.bootstrap,
            },
        },
    )


@pytest.mark.parametrize(
    ("headers", "www_authenticate", "message"),
    [
        ({"Content-Type": "application/json"}, 'Bearer realm="usersignals"',
         "missing Authorization header; expected 'Bearer <write key>'"),
        ({"Content-Type": "application/json", "Authorization": "Bearer key-three"},
         'Bearer realm="usersignals", error="invalid_token"', "unknown write key"),
        ({"Content-Type": "application/json", "Authorization": "key-one"},
         'Bearer realm="usersignals", error="invalid_token"',
         "Authorization header must be 'Bearer <write key>'"),
    ],
)  # fmt: skip
def test_write_key_is_required(
    collector: Running, headers: dict[str, str], www_authenticate: str, message: str
) -> None:
    answer = post(collector.url, [_event("never", "u")], headers)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == www_authenticate
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.body == {"error": "unauthorized", "message": message}


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("text/plain", "Content-Type must be 'application/json', got 'text/plain'"),
        (None, "missing Content-Type; expected 'application/json'"),
    ],
)
def test_content_type_must_be_json(
    collector: Running, content_type: str | None, message: str
) -> None:
    headers = {"Authorization": "Bearer key-one"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    answer = post(collector.url, [_event("never", "u")], headers)
    assert (answer.status, answer.body) == (
        415,
        {"error": "unsupported_media_type", "message": message},
    )


def test_charset_utf8_is_accepted(collector: Running, corner: Kafka) -> None:
    tag = _tag()
    headers = {**AUTH, "Content-Type": "application/json; charset=utf-8"}
    answer = post(collector.url, [_event(f"{tag}-0", "ユーザー")], headers)
    assert (answer.status, answer.body) == (200, {"accepted": [f"{tag}-0"], "rejected": []})


TOO_LARGE = {"error": "too_large", "message": "request body is larger than 1048576 bytes"}


def test_body_over_one_mib_is_413(collector: Running) -> None:
    body = b"[" + b" " * (1 << 20) + b"]"
    answer = post(collector.url, body)
    assert (answer.status, answer.body) == (413, TOO_LARGE)


def test_chunked_body_over_one_mib_is_413(collector: Running) -> None:
    chunks = [b"["] + [b" " * 65536] * 16 + [b"]"]
    answer = request(collector.url, "POST", "/v1/events", iter(chunks), AUTH)
    assert (answer.status, answer.body) == (413, TOO_LARGE)


def test_more_than_500_events_is_413(collector: Running) -> None:
    answer = post(collector.url, [_event(f"never-{i}", "u") for i in range(501)])
    assert (answer.status, answer.body) == (
        413,
        {
            "error": "too_many_events",
            "message": "a request may carry at most 500 events, got 501",
        },
    )


def test_500_events_near_one_mib_are_accepted(collector: Running, corner: Kafka) -> None:
    tag = _tag()
    pad = "p" * 1900  # 500 events of ~2 KiB: a body just under 1 MiB
    payload = [_event(f"{tag}-{i}", f"u{i}", properties={"pad": pad}) for i in range(500)]
    body = json.dumps(payload).encode()
    assert 1_000_000 < len(body) <= 1 << 20
    answer = post(collector.url, body)
    assert answer.status == 200
    assert answer.body["accepted"] == [e["event_id"] for e in payload]
    stored = read_back(corner.settings, set(answer.body["accepted"]))
    assert sum(len(s.events) for s in stored) == 500


def test_cors_preflight(collector: Running) -> None:
    answer = request(
        collector.url,
        "OPTIONS",
        "/v1/events",
        headers={
            "Origin": "https://chat.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert answer.status == 204
    cors = {k: v for k, v in answer.headers.items() if k.startswith("access-control-")}
    assert cors == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "POST, OPTIONS",
        "access-control-allow-headers": "Authorization, Content-Type",
        "access-control-max-age": "86400",
    }


def test_cors_headers_on_post(collector: Running) -> None:
    tag = _tag()
    answer = post(collector.url, [_event(f"{tag}-0", "u")], {**AUTH, "Origin": "https://x.example"})
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["access-control-expose-headers"] == "Retry-After"


def test_help_shows_an_example() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "usersignals", "collector", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "Example:\n    USERSIGNALS_WRITE_KEYS=k1,k2 usersignals collector --port 8080" in out


# ---------------------------------------------------------------- lifecycle


def test_without_write_keys_every_request_writes_and_sigterm_exits_0(kafka: Kafka) -> None:
    origins = "https://chat.example, https://admin.example"
    running = start_collector({**kafka.env(), "USERSIGNALS_COLLECTOR_ALLOW_ORIGIN": origins})
    try:
        assert running.seen[0] == (
            "warning: no write keys configured (USERSIGNALS_WRITE_KEYS); every request may write"
        )
        tag = _tag()
        headers = {"Content-Type": "application/json", "Origin": "https://admin.example"}
        answer = post(running.url, [_event(f"{tag}-0", "u")], headers)
        assert (answer.status, answer.body) == (200, {"accepted": [f"{tag}-0"], "rejected": []})
        assert answer.headers["access-control-allow-origin"] == "https://admin.example"
        assert answer.headers["vary"] == "Origin"
        other = request(
            running.url, "OPTIONS", "/v1/events", headers={"Origin": "https://x.example"}
        )
        assert other.status == 204
        assert "access-control-allow-origin" not in other.headers
    finally:
        assert running.stop() == 0
    assert running.stderr_until("collector stopped", 5)[-1] == "collector stopped"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", running.port), timeout=2).close()
    assert [s.events[0].event_id for s in read_back(kafka.settings, {f"{tag}-0"})] == [f"{tag}-0"]


def test_sigterm_finishes_the_request_in_flight(kafka: Kafka) -> None:
    running = start_collector(kafka.env())
    tag = _tag()
    body = json.dumps([_event(f"{tag}-{i}", f"u{i}") for i in range(20)]).encode()
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=20) as conn:
            conn.sendall(head + body[:100])
            time.sleep(0.5)  # the handler is now reading the body
            running.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", running.port), timeout=2).close()
            conn.sendall(body[100:])
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
        code = running.proc.wait(20)
    finally:
        running.stop()
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    ids = [f"{tag}-{i}" for i in range(20)]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {"accepted": ids, "rejected": []}
    assert code == 0
    assert sorted(e.event_id for s in read_back(kafka.settings, set(ids)) for e in s.events) == (
        sorted(ids)
    )


@pytest.mark.broker  # a broker of its own, not the session's
def test_kafka_down_is_503_with_retry_after(tmp_path: Any) -> None:
    with EmbeddedBroker(partitions=8, log_path=tmp_path / "tansu.log") as own:
        env = {**os.environ, "USERSIGNALS_BOOTSTRAP": own.bootstrap}
        env.pop("USERSIGNALS_TOPIC_PREFIX", None)
        env.pop("USERSIGNALS_WRITE_KEYS", None)
        running = start_collector(env)
        try:
            headers = {"Content-Type": "application/json"}
            assert post(running.url, [_event("up-0", "u")], headers).status == 200
            assert own.process is not None
            own.process.kill()  # the broker crashes
            own.process.wait(10)
            health = request(running.url, "GET", "/healthz")
            assert (health.status, health.body["status"]) == (503, "kafka_unavailable")
            assert health.body["broker"]["kind"] == "tansu"
            answer = post(running.url, [_event("down-0", "u")], headers)
            assert answer.status == 503
            assert answer.headers["retry-after"] == "5"
            assert answer.body == {
                "error": "kafka_unavailable",
                "message": "Kafka is unavailable (no connection to the partition leaders); "
                "no event of this request was acknowledged, retry after 5 s",
            }
        finally:
            assert running.stop() == 0


def test_kafka_unreachable_at_start_exits_2(tmp_path: Any) -> None:
    from usersignals.broker import free_port

    port = free_port()
    env = {**os.environ, "USERSIGNALS_BOOTSTRAP": f"127.0.0.1:{port}"}
    done = subprocess.run(
        [sys.executable, "-m", "usersignals", "collector", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(
        f"error: Kafka at '127.0.0.1:{port}' cannot take events for 'usersignals.events': "
    )


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


def _padded(event: dict[str, Any], size: int) -> dict[str, Any]:
    """``event`` with a ``properties.pad`` that makes its JSON exactly ``size`` bytes."""
    bare = len(json.dumps({**event, "properties": {"pad": ""}}).encode())
    return {**event, "properties": {"pad": "x" * (size - bare)}}


def test_mixed_batch_sends_the_valid_events_and_names_each_rejection(
    collector: Running, corner: Kafka
) -> None:
    tag = _tag()
    payload: list[Any] = [
        _event(f"{tag}-0", "alice"),
        _event(f"{tag}-1", "bob", type="message"),
        12345,
        _event(f"{tag}-3", "carol", type="feedback", message_id="x", rating=1, platform="ios"),
        _event(f"{tag}-4", "dave", type="nope"),
        _event(f"{tag}-5", 12345),
        _event(f"{tag}-6", "erin", properties=_nested(9)),
        _padded(_event(f"{tag}-7", "frank"), 33_000),
        _event(f"{tag}-8", "gina", ts="2999-01-01T00:00:00Z"),
        _event(f"{tag}-9", "hal", ts="yesterday"),
        {"type": "session_start", "user_id": "ivy", "ts": "2026-08-03T12:00:00Z"},
    ]
    body = json.dumps(payload).encode()
    answer = post(collector.url, body)
    assert answer.status == 207
    assert answer.body == {
        "accepted": [f"{tag}-0", f"{tag}-3"],
        "rejected": [
            {"index": 1, "reason": "missing_field", "field": "role",
             "message": "Missing 'role' (required for type 'message')"},
            {"index": 2, "reason": "not_object", "field": None,
             "message": "Not a JSON object: 12345 (an event is one)"},
            {"index": 4, "reason": "unknown_type", "field": "type",
             "message": "Invalid 'type': 'nope' (must be one of 'session_start', 'session_end', "
             "'message', 'feedback', 'preference', 'risk_flag', 'custom', 'identify')"},
            {"index": 5, "reason": "bad_type", "field": "user_id",
             "message": "Invalid 'user_id': 12345 (must be a string of 1 to 512 characters)"},
            {"index": 6, "reason": "too_deep", "field": "properties",
             "message": "Invalid 'properties': nested deeper than 8 levels"},
            {"index": 7, "reason": "too_large", "field": None,
             "message": "Event of 33000 bytes (at most 32768)"},
            {"index": 8, "reason": "bad_timestamp", "field": "ts",
             "message": "Invalid 'ts': '2999-01-01T00:00:00Z' (more than 24 h after receipt)"},
            {"index": 9, "reason": "bad_timestamp", "field": "ts",
             "message": "Invalid 'ts': 'yesterday' (not an RFC 3339 date-time)"},
            {"index": 10, "reason": "missing_field", "field": "event_id",
             "message": "Missing 'event_id' (required)"},
        ],
    }  # fmt: skip
    stored = read_back(corner.settings, {f"{tag}-0", f"{tag}-3"})
    assert sorted((s.partition, [e.event_id for e in s.events]) for s in stored) == sorted(
        [
            (contract.partition_for("alice", 8), [f"{tag}-0"]),
            (contract.partition_for("carol", 8), [f"{tag}-3"]),
        ]
    )


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        (b"not json", "not_json", "Not JSON: JSON is malformed: invalid character (byte 4)"),
        (b"[1,2", "not_json", "Not JSON: Input data was truncated"),
        (b"[]", "bad_batch", "Empty batch (a request holds 1 to 500 events)"),
        (b"", "empty", "Empty record"),
        (b"\xff\xfe", "not_utf8", "Not UTF-8: invalid start byte at byte 0"),
        (b'"str"', "not_object", "Not a JSON object: 'str' (an event is one)"),
        (b"[" * 100_000 + b"]" * 100_000, "too_deep", "Record nested deeper than 64 levels"),
    ],
)
def test_unreadable_body_is_400_with_one_whole_body_rejection(
    collector: Running, body: bytes, reason: str, message: str
) -> None:
    answer = post(collector.url, body)
    assert (answer.status, answer.body) == (
        400,
        {
            "accepted": [],
            "rejected": [{"index": None, "reason": reason, "field": None, "message": message}],
        },
    )


def test_all_rejected_is_400(collector: Running) -> None:
    answer = post(collector.url, [1, {"event_id": "x"}])
    assert answer.status == 400
    assert [(r["index"], r["reason"]) for r in answer.body["rejected"]] == [
        (0, "not_object"),
        (1, "missing_field"),
    ]
    assert answer.body["accepted"] == []


@pytest.mark.parametrize("count", [501, 1001])
def test_count_over_500_is_413_even_when_elements_are_bad(collector: Running, count: int) -> None:
    answer = post(collector.url, [1] * count)
    assert (answer.status, answer.body) == (
        413,
        {
            "error": "too_many_events",
            "message": f"a request may carry at most 500 events, got {count}",
        },
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({**AUTH, "Content-Length": str((1 << 20) + 1)}, 413),
        ({"Content-Type": "application/json", "Content-Length": "10"}, 401),
        ({**AUTH, "Content-Type": "text/csv", "Content-Length": "10"}, 415),
    ],
)
def test_expect_100_continue_refuses_before_the_upload(
    collector: Running, headers: dict[str, str], status: int
) -> None:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as conn:
        conn.sendall(
            f"POST /v1/events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n{head}\r\n".encode()
        )
        reply = conn.recv(65536)
    assert reply.startswith(f"HTTP/1.1 {status} ".encode())


def test_expect_100_continue_then_upload(collector: Running, corner: Kafka) -> None:
    tag = _tag()
    body = json.dumps([_event(f"{tag}-0", "u")]).encode()
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as conn:
        conn.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Authorization: Bearer key-one\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        assert conn.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(body)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {"accepted": [f"{tag}-0"], "rejected": []}
