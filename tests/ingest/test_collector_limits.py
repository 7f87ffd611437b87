"""The collector's pure limits as tables: token buckets, the write gate, bounded inflation,
and what ``/healthz`` says of a broker. No server, no clock but a list of moments."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest

from usersignals.config import ConfigError, Settings
from usersignals.ingest.bodies import INFLATE_STEP, Inflater
from usersignals.ingest.collector import BrokerInfo
from usersignals.ingest.collector_auth import Gate, bearer_token, check_content_encoding
from usersignals.ingest.ratelimit import Buckets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("rate", "burst", "moments", "delays"),
    [
        (1.0, 3, [0, 0, 0, 0, 0], [0, 0, 0, 1, 1]),
        (1.0, 3, [0, 0, 0, 0, 1.0, 1.0], [0, 0, 0, 1, 0, 1]),
        (0.5, 1, [0, 0, 1.0, 2.0, 2.0], [0, 2, 1, 0, 2]),
        (10.0, 2, [0, 0, 0, 0.05, 0.2], [0, 0, 1, 1, 0]),
        (0.0, 1, [0, 0, 0], [0, 0, 0]),  # no limit
        (200.0, 400, [0] * 401, [0] * 400 + [1]),
    ],
)
def test_buckets(rate: float, burst: int, moments: list[float], delays: list[int]) -> None:
    clock = Clock()
    buckets = Buckets(rate, burst, clock=clock)
    got = []
    for moment in moments:
        clock.now = 100.0 + moment
        got.append(buckets.take("a"))
    assert got == delays


def test_buckets_are_per_name_and_bounded_in_number() -> None:
    clock = Clock()
    buckets = Buckets(0.001, 1, clock=clock, max_buckets=2)
    assert [buckets.take(n) for n in ("a", "b", "a", "b")] == [0, 0, 1000, 1000]
    assert buckets.take("c") == 0  # "a", the least recently used, is forgotten
    assert buckets.take("a") == 0


def _gate(clock: Callable[[], float], keys: tuple[str, ...] = ("good",)) -> Gate:
    return Gate(keys, client=(0.01, 6), key=(0.01, 3), failed=(0.01, 2), clock=clock)


@pytest.mark.parametrize(
    ("sequence", "answers"),
    [
        (["good"] * 5, [None, None, None, "429 rate_limited 100", "429 rate_limited 100"]),
        (
            ["bad", "bad", "bad", "good"],
            ["401", "401", "429 too_many_failed_keys 100", "429 too_many_failed_keys 100"],
        ),
        ([None, "Basic good", "good"], ["401", "401", "429 too_many_failed_keys 100"]),
        (["good"] * 3 + ["bad"] * 3 + ["good"],  # the 7th request is over the client's 6
         [None] * 3 + ["401", "401", "429 too_many_failed_keys 100", "429 rate_limited 100"]),
    ],
)  # fmt: skip
def test_gate(sequence: list[str | None], answers: list[str | None]) -> None:
    gate = _gate(Clock())
    got = []
    for key in sequence:
        header = key if key is None or " " in key else f"Bearer {key}"
        refusal = gate.admit("10.0.0.1", header)
        if refusal is None:
            got.append(None)
        elif refusal.status == 401:
            got.append("401")
        else:
            got.append(f"{refusal.status} {refusal.error} {refusal.headers['Retry-After']}")
    assert got == answers


def test_gate_limits_clients_apart_and_never_quotes_a_key() -> None:
    gate = _gate(Clock())
    for _ in range(2):
        gate.admit("10.0.0.1", "Bearer secret-guess")
    refusal = gate.admit("10.0.0.1", "secret-guess")
    assert refusal is not None
    assert "secret" not in refusal.message
    assert gate.admit("10.0.0.2", "Bearer good") is None


def test_gate_without_keys_still_limits_clients() -> None:
    gate = _gate(Clock(), keys=())
    answers = [gate.admit("c", None) for _ in range(7)]
    assert [a.status if a else None for a in answers] == [None] * 6 + [429]


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("abc", None), ("Basic abc", None),
     ("Bearer ", None), (None, None)],
)  # fmt: skip
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    ("encoding", "problem"),
    [(None, None), ("gzip", None), ("GZip", None), ("deflate", None), ("identity", None),
     ("br", "Content-Encoding must be gzip, deflate or identity"),
     ("gzip, gzip", "Content-Encoding must be gzip, deflate or identity")],
)  # fmt: skip
def test_check_content_encoding(encoding: str | None, problem: str | None) -> None:
    assert check_content_encoding(encoding) == problem


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("plain", "limit", "produced", "over"),
    [
        (b"x" * 1000, 1000, 1000, False),
        (b"x" * 1001, 1000, 1001, True),
        (b"\0" * (50 << 20), 1 << 20, (1 << 20) + 1, True),  # a bomb: one byte past, no more
        (b"\0" * (3 * INFLATE_STEP), 10 * INFLATE_STEP, 3 * INFLATE_STEP, False),
    ],
)
def test_inflater_stops_one_byte_past_the_limit(
    plain: bytes, limit: int, produced: int, over: bool
) -> None:
    packed = _gzip(plain)
    inflater = Inflater(31, limit)
    pieces: list[bytes] = []
    for start in range(0, len(packed), 4096):
        got = inflater.steps(packed[start : start + 4096])
        assert got is not None
        assert all(len(p) <= INFLATE_STEP for p in got)
        pieces += got
        if inflater.over:
            break
    assert (inflater.produced, sum(map(len, pieces)), inflater.over) == (produced, produced, over)
    assert b"".join(pieces) == plain[:produced]


@pytest.mark.parametrize(
    ("stream", "outcome"),
    [
        (_gzip(b"[1]"), "ok"),
        (_gzip(b"[1]")[:-4], "truncated"),
        (_gzip(b"[1]") + b"more", "invalid"),
        (b"not gzip at all", "invalid"),
    ],
)
def test_inflater_tells_a_bad_stream(stream: bytes, outcome: str) -> None:
    inflater = Inflater(31, 1000)
    pieces = inflater.steps(stream)
    got = "invalid" if pieces is None else "ok" if inflater.finished() else "truncated"
    assert got == outcome


@pytest.mark.parametrize(
    ("cluster_id", "bootstrap", "json"),
    [
        ("tansu_cluster", "127.0.0.1:9092", {"kind": "tansu", "durable": False,
         "cluster_id": "tansu_cluster", "bootstrap": "127.0.0.1:9092"}),
        ("MkU3OEVBNTcwNTJENDM2Qk", "kafka-1:9092,kafka-2:9092", {"kind": "kafka",
         "durable": True, "cluster_id": "MkU3OEVBNTcwNTJENDM2Qk",
         "bootstrap": "kafka-1:9092,kafka-2:9092"}),
        (None, "SASL_SSL://user:pw@kafka:9093", {"kind": "unknown", "durable": None,
         "cluster_id": None, "bootstrap": "kafka:9093"}),
    ],
)  # fmt: skip
def test_broker_info(cluster_id: str | None, bootstrap: str, json: dict[str, object]) -> None:
    assert BrokerInfo.from_cluster_id(cluster_id, bootstrap).json() == json


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"USERSIGNALS_COLLECTOR_HEADER_TIMEOUT_S": "0"},
         "Invalid collector_header_timeout_s: 0.0 (must be more than 0 seconds)"),
        ({"USERSIGNALS_COLLECTOR_CLIENT_RATE": "-1"},
         "Invalid collector_client_rate: -1.0 (must be 0 (no limit) or more)"),
        ({"USERSIGNALS_COLLECTOR_MAX_CONNECTIONS": "0"},
         "Invalid collector_max_connections: 0 (must be at least 1)"),
        ({"USERSIGNALS_COLLECTOR_KEY_BURST": "many"},
         "Invalid collector_key_burst: 'many' (not a whole number)"),
    ],
)  # fmt: skip
def test_collector_settings_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.load(environ=env)
    assert str(exc.value) == message


def test_collector_settings_from_the_environment() -> None:
    settings = Settings.load(
        environ={
            "USERSIGNALS_COLLECTOR_IDLE_TIMEOUT_S": "5",
            "USERSIGNALS_COLLECTOR_KEY_RATE": "0",
            "USERSIGNALS_COLLECTOR_AUTH_FAIL_BURST": "3",
        }
    )
    assert (
        settings.collector_idle_timeout_s,
        settings.collector_key_rate,
        settings.collector_auth_fail_burst,
        settings.collector_header_timeout_s,
        settings.collector_max_connections,
    ) == (5.0, 0.0, 3, 10.0, 1000)
    assert settings.to_env()["USERSIGNALS_COLLECTOR_AUTH_FAIL_BURST"] == "3"
