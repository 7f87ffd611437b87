"""The collector against hostile HTTP clients: bombs, slow clients, floods, echo hunters.

A real collector (``serve`` in a thread of the test process, so its counters can be read) on
127.0.0.1 with the real session broker, spoken to over raw sockets. Timeouts are set small so
that each case runs in a second or two; every assertion is about what the server did (its
answer, that it closed the socket, exact counts), never about how long it took.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import Kafka
from tests.ingest.threaded import collector_thread
from usersignals.ingest.collector import MAX_BODY_BYTES, Collector

KEY = "k-7f3a9c-secret"
EMAIL = "alice.hostile@example.com"
HEAD = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


@dataclass
class Served:
    collector: Collector
    port: int
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event
    replies: list[bytes] = field(default_factory=list)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def exchange(self, raw: bytes, timeout: float = 10.0) -> bytes:
        """Sends ``raw`` on a new connection and reads until the server closes it."""
        with self.connect(timeout) as conn:
            conn.sendall(raw)
            reply = read_to_close(conn)
        self.replies.append(reply)
        return reply


def read_to_close(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails)."""
    reply = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            return reply
        if not chunk:
            return reply
        reply += chunk


@contextmanager
def serving(
    kafka: Kafka, clock: Callable[[], float] = time.monotonic, **changes: Any
) -> Iterator[Served]:
    """A collector with these settings; ``clock`` drives its rate limits."""
    settings = kafka.settings.with_(write_keys=(KEY, "k-other"), **changes)
    collector = Collector(settings, clock=clock)
    with collector_thread(collector, settings, "collector") as (port, loop, stop):
        yield Served(collector, port, loop, stop)


def http(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def json_of(reply: bytes) -> Any:
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])


def header_of(reply: bytes, name: str) -> str | None:
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.decode().partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def _events(n: int) -> bytes:
    return json.dumps(
        [
            {
                "event_id": f"h-{i}",
                "type": "session_start",
                "user_id": EMAIL,
                "ts": "2026-08-03T12:00:00Z",
            }
            for i in range(n)
        ]
    ).encode()


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """995,5xx bytes of valid gzip (under the 1 MiB limit) that inflate to 960 MiB of zeros."""
    zeros = b"\0" * (1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(960):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + piece * 960 + deflate.flush() + struct.pack("<II", crc, (960 << 20) % (1 << 32))


# ---------------------------------------------------------------- bodies


def chunked(path: str, headers: dict[str, str], body: bytes, size: int = 65536) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    framed = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + framed + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_gzip_bomb_stops_inflating_at_the_limit_and_closes(
    kafka: Kafka, gzip_bomb: bytes, framing: str
) -> None:
    assert 990_000 < len(gzip_bomb) < MAX_BODY_BYTES
    headers = {**HEAD, "Content-Encoding": "gzip"}
    with serving(kafka) as served:
        if framing == "chunked":
            raw = chunked("/v1/events", headers, gzip_bomb)
        else:
            raw = http("POST", "/v1/events", headers, gzip_bomb)
        reply = served.exchange(raw)
        assert status_of(reply) == 413
        assert json_of(reply) == {
            "error": "too_large",
            "message": f"request body is larger than {MAX_BODY_BYTES} bytes",
        }
        assert header_of(reply, "Connection") == "close"
        assert served.collector.guards.body_stats.inflated_bytes == MAX_BODY_BYTES + 1
        # the server is free at once for the next client
        health = served.exchange(http("GET", "/healthz", {}))
        assert status_of(health) == 200


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_compressed_body_is_accepted(kafka: Kafka, coding: str) -> None:
    body = _events(3)
    wbits = 31 if coding == "gzip" else 15
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    packed = packer.compress(body) + packer.flush()
    with serving(kafka) as served:
        reply = served.exchange(
            http("POST", "/v1/events", {**HEAD, "Content-Encoding": coding}, packed)
        )
        assert (status_of(reply), json_of(reply)) == (
            200,
            {"accepted": ["h-0", "h-1", "h-2"], "rejected": []},
        )
        assert served.collector.guards.body_stats.inflated_bytes == len(body)


@pytest.mark.parametrize(
    ("coding", "body", "status", "error"),
    [
        ("gzip", b"\x1f\x8b\x08\x00garbage", 400, "bad_encoding"),
        ("gzip", zlib.compress(b"[]")[:-3], 400, "bad_encoding"),
        ("br", b"[]", 415, "unsupported_encoding"),
    ],
)
def test_bad_encodings_are_refused(
    kafka: Kafka, coding: str, body: bytes, status: int, error: str
) -> None:
    with serving(kafka) as served:
        reply = served.exchange(
            http("POST", "/v1/events", {**HEAD, "Content-Encoding": coding}, body)
        )
    assert (status_of(reply), json_of(reply)["error"]) == (status, error)


# ---------------------------------------------------------------- slow and idle clients

FAST = {
    "collector_header_timeout_s": 0.5,
    "collector_body_timeout_s": 0.5,
    "collector_idle_timeout_s": 1.0,
}


def test_headers_at_one_byte_a_moment_get_408_and_the_socket_closed(kafka: Kafka) -> None:
    head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with serving(kafka, **FAST) as served, served.connect() as conn:
        conn.settimeout(0.1)
        reply = b""
        sent = 0
        for byte in head * 100:  # far more than the deadline lets through
            try:
                conn.send(bytes([byte]))
                sent += 1
                reply += conn.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if reply:
                break
        conn.settimeout(10)
        reply += read_to_close(conn)
    assert sent < len(head) * 100
    assert status_of(reply) == 408
    assert json_of(reply) == {
        "error": "request_timeout",
        "message": "the request headers did not all arrive in time",
    }


def test_a_body_that_stalls_gets_408_and_the_socket_closed(kafka: Kafka) -> None:
    body = _events(1)
    head = http("POST", "/v1/events", HEAD, body)[: -len(body)]
    with serving(kafka, **FAST) as served, served.connect() as conn:
        conn.sendall(head + body[:10])
        reply = read_to_close(conn)
    assert status_of(reply) == 408
    assert json_of(reply) == {
        "error": "request_timeout",
        "message": "the request body did not arrive in time",
    }


@pytest.mark.parametrize("first", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"])
def test_an_idle_connection_is_closed(kafka: Kafka, first: bytes) -> None:
    with serving(kafka, **FAST) as served, served.connect() as conn:
        conn.sendall(first)
        reply = read_to_close(conn)
    assert reply == b"" if not first else status_of(reply) == 200


def test_connections_beyond_the_bound_get_503_and_are_closed(kafka: Kafka) -> None:
    with serving(kafka, collector_max_connections=3) as served:
        held = [served.connect() for _ in range(3)]
        try:
            for conn in held:  # each is being served: it answers
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert conn.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
            refused = [served.exchange(b"") for _ in range(5)]
        finally:
            for conn in held:
                conn.close()
        assert {status_of(r) for r in refused} == {503}
        assert json_of(refused[0]) == {
            "error": "too_many_connections",
            "message": "the collector holds as many connections as it may; retry later",
        }
        assert header_of(refused[0], "Retry-After") == "1"
        for _ in range(50):  # the closed ones are given back
            reply = served.exchange(http("GET", "/healthz", {}))
            if status_of(reply) == 200:
                break
        assert status_of(reply) == 200


# ---------------------------------------------------------------- rate limits


def frozen_clock() -> float:
    """A clock that stands still: no bucket refills during a burst, so counts are exact."""
    return 0.0


def _burst(served: Served, count: int, headers: dict[str, str]) -> list[tuple[int, str | None]]:
    answers = []
    for _ in range(count):
        reply = served.exchange(http("POST", "/v1/events", headers, b"[]"))
        answers.append((status_of(reply), header_of(reply, "Retry-After")))
    return answers


def test_a_client_over_its_rate_gets_429_with_retry_after(kafka: Kafka) -> None:
    limits = {"collector_client_rate": 0.01, "collector_client_burst": 5}
    with serving(kafka, clock=frozen_clock, **limits) as served:
        answers = _burst(served, 8, HEAD)
    assert answers == [(400, None)] * 5 + [(429, "100")] * 3


def test_a_key_over_its_rate_gets_429_and_another_key_does_not(kafka: Kafka) -> None:
    limits = {"collector_client_rate": 0, "collector_key_rate": 0.5, "collector_key_burst": 3}
    with serving(kafka, clock=frozen_clock, **limits) as served:
        first = _burst(served, 5, HEAD)
        other = _burst(served, 2, {**HEAD, "Authorization": "Bearer k-other"})
    assert first == [(400, None)] * 3 + [(429, "2")] * 2
    assert other == [(400, None)] * 2


def test_refused_keys_are_limited_and_then_even_the_right_key_waits(kafka: Kafka) -> None:
    limits = {"collector_auth_fail_rate": 0.001, "collector_auth_fail_burst": 4}
    with serving(kafka, clock=frozen_clock, **limits) as served:
        guesses = _burst(served, 10, {**HEAD, "Authorization": "Bearer guess"})
        right = _burst(served, 1, HEAD)
        body = json_of(served.replies[-1])
    assert guesses == [(401, None)] * 4 + [(429, "1000")] * 6
    assert right == [(429, "1000")]
    assert body == {
        "error": "too_many_failed_keys",
        "message": "too many refused write keys from this client; retry after 1000 s",
    }


def test_the_default_limits_let_a_backend_send_100_requests_a_second(kafka: Kafka) -> None:
    with serving(kafka) as served:
        answers = _burst(served, 100, HEAD)  # one second's worth, sent at once
    assert answers == [(400, None)] * 100


# ---------------------------------------------------------------- nothing is echoed

MALFORMED = [
    b"NOT HTTP AT ALL " + EMAIL.encode() + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header " + EMAIL.encode() + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_a_malformed_request_gets_our_json_and_nothing_of_it_back(
    kafka: Kafka, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with serving(kafka) as served:
        reply = served.exchange(raw)
    assert status_of(reply) == 400
    assert header_of(reply, "Content-Type") == "application/json; charset=utf-8"
    assert json_of(reply) == {"error": "bad_request", "message": "malformed HTTP request"}
    assert EMAIL.encode() not in reply
    assert EMAIL not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.name.startswith("usersignals")] == [
        f"answering 400 to a malformed request: {_kind(raw)}"
    ]


def _kind(raw: bytes) -> str:
    if raw.startswith(b"NOT"):
        return "BadHttpMethod"
    if b"Bad Header" in raw:
        return "BadHttpMessage"
    if b"X-Long" in raw:
        return "LineTooLong"
    if b"nope" in raw:
        return "BadHttpMessage"
    return "BadStatusLine"


def test_a_short_content_length_echoes_nothing(
    kafka: Kafka, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = _events(2)
    raw = http("POST", "/v1/events", {**HEAD, "Connection": "keep-alive"}, body)
    raw = raw.replace(f"Content-Length: {len(body)}".encode(), b"Content-Length: 30")
    with serving(kafka) as served:
        reply = served.exchange(raw)
    # the rest of the body is read as the next request, which cannot be parsed
    assert status_of(reply) == 400
    assert json_of(reply) == {"error": "bad_request", "message": "malformed HTTP request"}
    assert EMAIL.encode() not in reply
    assert KEY.encode() not in reply
    assert EMAIL not in caplog.text
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    "authorization", [KEY, f"Basic {KEY}", f"Token {KEY}", f"Bearer{KEY}", f"{KEY} {KEY}"]
)
def test_a_key_sent_the_wrong_way_is_not_quoted(kafka: Kafka, authorization: str) -> None:
    with serving(kafka) as served:
        reply = served.exchange(
            http("POST", "/v1/events", {**HEAD, "Authorization": authorization}, b"[]")
        )
    assert status_of(reply) == 401
    assert json_of(reply) == {
        "error": "unauthorized",
        "message": "Authorization header must be 'Bearer <write key>'",
    }
    assert KEY.encode() not in reply


@pytest.mark.parametrize(
    ("raw", "status", "body", "allow"),
    [
        (http("GET", "/nowhere", {}), 404,
         {"error": "not_found", "message": "Not Found"}, None),
        (http("DELETE", "/v1/events", {}), 405,
         {"error": "method_not_allowed", "message": "Method Not Allowed"}, "OPTIONS,POST"),
    ],
)  # fmt: skip
def test_framework_answers_are_our_json(
    kafka: Kafka, raw: bytes, status: int, body: dict[str, str], allow: str | None
) -> None:
    with serving(kafka) as served:
        reply = served.exchange(raw)
    assert (status_of(reply), json_of(reply), header_of(reply, "Allow")) == (status, body, allow)


def test_a_body_drained_after_an_early_answer_starts_no_header_deadline(kafka: Kafka) -> None:
    body = _events(1)
    raw = http("POST", "/v1/events", {**HEAD, "Authorization": "Bearer wrong"}, body)
    raw = raw.replace(b"Connection: close\r\n", b"")
    head, rest = raw[: -len(body)], body
    fast = {**FAST, "collector_idle_timeout_s": 5.0}
    with serving(kafka, **fast) as served, served.connect() as conn:
        conn.sendall(head)
        first = conn.recv(65536)  # 401 before the body came
        conn.sendall(rest)  # drained by the server, not a new request
        threading.Event().wait(1.5)  # three header deadlines
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        second = read_to_close(conn)
    assert status_of(first) == 401
    assert status_of(second) == 200
