"""The capture endpoints (PostHog, Segment, RudderStack, Snowplow wire formats) on a real
collector producing to the real session broker.

The policy (decoding, stand-ins, allow-lists, CORS, start-up answers) is tested as tables; the
rest against a collector served in a thread of this process (``serve``), spoken to over real
sockets, by plain HTTP and by the SDKs' own request code (posthog-python's ``batch_post`` and
flag loading, segment-analytics-python's and rudder-sdk-python's ``post``, snowplow-tracker's
``Emitter``). What arrives is read back from Kafka, and what the stream worker would make of
each record is asked of :func:`~usersignals.streams.records.split_record` itself.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import gzip
import http.client
import itertools
import json
import os
import signal
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.ingest.threaded import collector_thread
from usersignals.broker import EmbeddedBroker, ensure_topics
from usersignals.config import Settings
from usersignals.ingest import capture, collector, contract
from usersignals.ingest.batching import RECORD_BYTES_LIMIT
from usersignals.ingest.capture_http import (
    ENDPOINTS,
    MAX_CAPTURE_BODY_BYTES,
    PIXEL_GIF,
    b64decode_lenient,
    capture_records,
    decode_form,
    element_count,
    rudderstack_source_config,
    snowplow_problem,
    stand_in,
)
from usersignals.ingest.collector import Collector
from usersignals.ingest.collector_auth import (
    CAPTURE_ALLOW_HEADERS,
    basic_user,
    capture_cors_headers,
    header_key,
    parse_origins,
)
from usersignals.streams.records import split_record

KEY = "phc-capture-key"
OTHER = "k-second"
APP = "chat-web"
ORIGIN = "https://chat.example"
_tags = itertools.count()

# ---------------------------------------------------------------- pure: decoding, keys, CORS


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        (base64.b64encode(b'{"a":1}').decode(), b'{"a":1}'),
        ("eyJhIjoxfQ", b'{"a":1}'),  # unpadded
        (base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode(), b"\xfb\xff\xfe"),  # URL-safe
        (base64.b64encode(b"\xfb\xff\xfe").decode().replace("+", " "), b"\xfb\xff\xfe"),
        ("not base64!", None),
        ("a", None),
    ],
)
def test_b64decode_lenient(text: str, decoded: bytes | None) -> None:
    assert b64decode_lenient(text) == decoded


@pytest.mark.parametrize(
    ("body", "payload"),
    [
        (b"data=" + base64.b64encode(b'[{"e":1}]').replace(b"=", b"%3D"), b'[{"e":1}]'),
        (
            b"data=" + base64.b64encode('{"é":1}'.encode()) + b"&compression=base64",
            '{"é":1}'.encode(),
        ),
        (b"data=%7B%22a%22%3A1%7D", b'{"a":1}'),  # plain JSON in the field
        (b"compression=base64", None),
        (b"data=%%%", None),
        ("data=é".encode(), None),
    ],
)
def test_decode_form(body: bytes, payload: bytes | None) -> None:
    assert decode_form(body) == payload


@pytest.mark.parametrize(
    ("payload", "count"),
    [([1, 2, 3], 3), ({"batch": [1, 2]}, 2), ({"data": [1]}, 1), ({"event": "x"}, 1), (7, 1)],
)
def test_element_count(payload: Any, count: int) -> None:
    assert element_count(payload) == count


def _basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer abc", "abc"),
        (_basic("wk"), "wk"),  # Segment, RudderStack: base64("key:")
        (_basic("wk", "ignored"), "wk"),
        (_basic(""), None),
        ("Basic !!!", None),
        ("Negotiate abc", None),
        (None, None),
    ],
)
def test_header_key(header: str | None, key: str | None) -> None:
    assert header_key(header) == key
    assert basic_user(header) == (key if header and header.startswith("Basic") else None)


@pytest.mark.parametrize(
    ("configured", "origin", "preflight", "headers"),
    [
        ("*", "https://a.example", False, {
            "Vary": "Origin",
            "Access-Control-Allow-Origin": "https://a.example",
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Expose-Headers": "Retry-After",
        }),
        ("*", None, False, {"Vary": "Origin", "Access-Control-Expose-Headers": "Retry-After"}),
        ("https://a.example", "https://evil.example", True, {
            "Vary": "Origin",
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": CAPTURE_ALLOW_HEADERS,
            "Access-Control-Max-Age": "86400",
        }),
        ("https://a.example/", "https://a.example", True, {
            "Vary": "Origin",
            "Access-Control-Allow-Origin": "https://a.example",
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": CAPTURE_ALLOW_HEADERS,
            "Access-Control-Max-Age": "86400",
        }),
    ],
)  # fmt: skip
def test_capture_cors_headers(
    configured: str, origin: str | None, preflight: bool, headers: dict[str, str]
) -> None:
    got = capture_cors_headers(origin, parse_origins(configured), preflight=preflight)
    assert dict(got) == headers


CLOSED = (
    "Snowplow requests need a write key, or USERSIGNALS_SNOWPLOW_APP_IDS or "
    "USERSIGNALS_SNOWPLOW_ORIGINS, when write keys are configured"
)
BAD_ORIGIN = "this Origin is not on the Snowplow allow-list (USERSIGNALS_SNOWPLOW_ORIGINS)"
BAD_APP = "an app id (aid) is missing or not allowed (USERSIGNALS_SNOWPLOW_APP_IDS)"
NO_ORIGIN = (
    "a Snowplow request without an Origin needs an allowed app id (USERSIGNALS_SNOWPLOW_APP_IDS)"
)


@pytest.mark.parametrize(
    ("app_ids", "origins", "keys", "origin", "aids", "problem"),
    [
        ((), (), False, None, set(), None),  # an open collector
        ((), (), True, ORIGIN, {APP}, CLOSED),  # keys and no list: closed
        ((APP,), (), True, None, {APP}, None),
        ((APP,), (), True, None, {APP, "other"}, BAD_APP),
        ((APP,), (), False, None, set(), BAD_APP),
        ((), (ORIGIN,), True, ORIGIN + "/", {"any"}, None),
        ((), (ORIGIN,), True, "https://evil.example", {"any"}, BAD_ORIGIN),
        ((), (ORIGIN,), True, None, {"any"}, NO_ORIGIN),
        ((APP,), (ORIGIN,), True, None, {APP}, None),  # a backend: its app id
        ((APP,), (ORIGIN,), True, "https://evil.example", {APP}, BAD_ORIGIN),
        ((APP,), (ORIGIN,), True, ORIGIN, {"other"}, BAD_APP),
    ],
)  # fmt: skip
def test_snowplow_problem(
    app_ids: tuple[str, ...],
    origins: tuple[str, ...],
    keys: bool,
    origin: str | None,
    aids: set[str],
    problem: str | None,
) -> None:
    got = snowplow_problem(
        app_ids=app_ids, origins=origins, keys_configured=keys, origin=origin, aids=aids
    )
    assert got == problem


def test_settings_read_the_snowplow_lists() -> None:
    settings = Settings.load(
        environ={
            "USERSIGNALS_SNOWPLOW_APP_IDS": "chat-web, chat-ios,,",
            "USERSIGNALS_SNOWPLOW_ORIGINS": "https://a.example/, https://b.example",
        }
    )
    assert settings.snowplow_app_ids == ("chat-web", "chat-ios")
    assert settings.snowplow_origins == ("https://a.example", "https://b.example")
    assert Settings.load(environ=settings.to_env()) == settings.with_(
        warehouse=settings.warehouse.resolve(), state_dir=settings.state_dir.resolve()
    )


# ---------------------------------------------------------------- pure: the records


NOW = datetime(2026, 8, 3, 12, 0, tzinfo=UTC)


def _ph(event: str, distinct_id: Any, **props: Any) -> dict[str, Any]:
    return {
        "event": event,
        "distinct_id": distinct_id,
        "uuid": str(uuid.uuid4()),
        "timestamp": "2026-08-03T11:59:00Z",
        "properties": props,
    }


def _worker_reasons(value: bytes) -> list[str]:
    """What the stream worker makes of one record: the reasons it dead-letters."""
    return [r.reason for r in split_record(value, 0, 8, now=NOW).rejections]


def test_rejected_elements_become_records_the_worker_dead_letters_with_the_same_reason() -> None:
    payload = {
        "api_key": KEY,
        "batch": [
            _ph("session_start", "alice"),
            _ph("thumbs_up", "bob"),  # feedback without a message_id
            12345,
            _ph("pageview", 42),
            _ph("x", "carol", pad="p" * 40_000),  # too large
        ],
    }
    mapped = capture.map_posthog(payload, received_at=NOW)
    records, accepted = capture_records(mapped, received_at=NOW, partitions=8)
    assert accepted == 1
    valid, *dead = records
    events, rejections = contract.decode_record(valid[2], now=NOW)
    assert (rejections, [e.user_id for e in events], events[0].received_at) == ([], ["alice"], NOW)
    assert valid[0] == contract.partition_for("alice", 8)
    expected = [m.rejection.reason for m in mapped if m.rejection is not None]
    assert [r for _, _, value in dead for r in _worker_reasons(value)] == expected
    assert [(p, k) for p, k, _ in dead] == [
        (contract.partition_for("bob", 8), b"bob"),
        (0, None),
        (0, None),
        (contract.partition_for("carol", 8), b"carol"),
    ]


def test_records_are_the_same_from_the_validated_bytes_as_from_the_events() -> None:
    """The events' validated bytes (``Mapped.data``) stamped with ``received_at`` make the same
    records, byte for byte, as the events encoded again (``encode_event``)."""
    sent = "2026-12-04T18:59:00Z"
    batch = [
        {"event": "message_sent", "distinct_id": f"u{i % 7}", "uuid": f"e-{i}",
         "timestamp": f"2026-12-04T18:58:{i % 60:02d}.{i:03d}Z",
         "properties": {"$session_id": f"s{i % 3}", "role": "user", "tokens": i, "$lib": "web",
                        "pad": "é" * (i * 97 % 900)}}
        for i in range(300)
    ]  # fmt: skip
    batch[7] = {"event": "thumbs_up", "distinct_id": "u1", "uuid": "bad"}  # no message_id
    at = datetime(2026, 12, 4, 19, 0, 0, 123456, tzinfo=UTC)
    mapped = capture.map_posthog({"batch": batch, "sent_at": sent}, received_at=at)
    assert sum(1 for m in mapped if m.data) == 299
    again = [msgspec.structs.replace(m, data=b"") for m in mapped]
    assert capture_records(mapped, received_at=at, partitions=8) == capture_records(
        again, received_at=at, partitions=8
    )


def test_the_garbage_collector_is_held_off_only_while_a_request_is_mapped() -> None:
    from usersignals.ingest.capture_http import _collection_paused

    def fail() -> None:
        assert not gc.isenabled()
        raise RuntimeError

    assert gc.isenabled()
    with pytest.raises(RuntimeError), _collection_paused():
        fail()
    assert gc.isenabled()
    gc.disable()
    try:
        with _collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


def test_an_element_too_large_for_a_record_goes_as_a_stand_in() -> None:
    huge = {"event": "x", "distinct_id": "dora", "properties": {"pad": "é" * (600 * 1024)}}
    mapped = capture.map_posthog({"batch": [huge]}, received_at=NOW)
    ((partition, key, value),), accepted = capture_records(mapped, received_at=NOW, partitions=8)
    assert (partition, key, accepted) == (contract.partition_for("dora", 8), b"dora", 0)
    assert mapped[0].rejection is not None
    raw = mapped[0].rejection.raw
    assert len(raw) > RECORD_BYTES_LIMIT
    assert contract.MAX_EVENT_BYTES < len(value) < 200 * 1024
    assert _worker_reasons(value) == ["too_large"]
    (kept,) = json.loads(value)
    assert kept["usersignals_stand_in"]["bytes"] == len(raw)
    assert raw.decode().startswith(kept["usersignals_stand_in"]["head"][:1000])


@pytest.mark.parametrize("data", [b"\xff" * (2 << 20), b"x" * (2 << 20), b"\x00\x01" * 30_000])
def test_stand_ins_are_always_too_large_and_fit_a_record(data: bytes) -> None:
    value = stand_in(data)
    assert len(value) <= RECORD_BYTES_LIMIT
    assert _worker_reasons(value) == ["too_large"]


def test_a_doc_that_cannot_be_encoded_goes_as_a_too_deep_stand_in() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    mapped = [capture.Mapped(index=3, doc=deep, event=None, rejection=None, user_id="")]
    ((partition, key, value),), _ = capture_records(mapped, received_at=NOW, partitions=8)
    assert (partition, key) == (0, None)
    assert _worker_reasons(value) == ["too_deep"]


def test_start_up_answers_parse_as_the_sdks_read_them() -> None:
    from posthog.types import normalize_flags_response, to_flags_and_payloads

    from usersignals.ingest.capture_http import posthog_flags

    flags = normalize_flags_response(posthog_flags())
    assert to_flags_and_payloads(flags) == {"featureFlags": {}, "featureFlagPayloads": {}}
    source = rudderstack_source_config()["source"]  # RudderStack JS's isValidSourceConfig
    assert source["id"]
    assert source["enabled"] is True
    assert isinstance(source["config"], dict)
    assert source["destinations"] == []


def test_every_path_is_in_the_route_table_once_per_method() -> None:
    pairs = [(e.method, e.path) for e in ENDPOINTS]
    assert len(pairs) == len(set(pairs))
    paths = {p for _, p in pairs}
    for path in ("/batch/", "/e", "/i/v0/e/", "/capture/", "/track", "/flags/", "/decide"):
        assert path in paths
    for short in "tipsgab":
        assert f"/v1/{short}" in paths
    assert {"/v1/batch", "/sourceConfig/", "/i", "/com.snowplowanalytics.snowplow/tp2"} <= paths


# ---------------------------------------------------------------- a real collector


@dataclass
class Served:
    collector: Collector
    port: int
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serving(
    settings: Settings, *, allow_origin: str = "*", clock: Callable[[], float] = time.monotonic
) -> Iterator[Served]:
    """A collector with these settings, served in a thread of this process."""
    served_collector = Collector(settings, allow_origin=allow_origin, clock=clock)
    with collector_thread(served_collector, settings, "capture-collector") as (port, loop, stop):
        yield Served(served_collector, port, loop, stop)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


def call(
    served: Served,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        raw = resp.read()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw)
    finally:
        conn.close()


def read_back(settings: Settings, needle: bytes, count: int, timeout: float = 15.0) -> list[Any]:
    """``(partition, key, value)`` of the events topic's records holding ``needle``, once there
    are ``count`` of them (or the time is up)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False, consumer_timeout_ms=300
    )
    try:
        tps = [TopicPartition(settings.events_topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                found += [(m.partition, m.key, m.value) for m in batch if needle in m.value]
        return found
    finally:
        consumer.close()


def _corner(broker: EmbeddedBroker, tmp: Any, **changes: Any) -> Settings:
    settings = Settings.load(
        environ={},
        bootstrap=broker.bootstrap,
        topic_prefix=f"cap{os.getpid()}-{next(_tags)}",
        warehouse=tmp / "warehouse",
        state_dir=tmp / "state",
        partitions=8,
    ).with_(**changes)
    ensure_topics(broker.bootstrap, settings.partitions, settings.topics)
    return settings


@pytest.fixture(scope="module")
def corner(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return _corner(
        broker,
        tmp_path_factory.mktemp("capture"),
        write_keys=(KEY, OTHER),
        snowplow_app_ids=(APP,),
        snowplow_origins=(ORIGIN,),
    )


@pytest.fixture(scope="module")
def served(corner: Settings) -> Iterator[Served]:
    with serving(corner, allow_origin=f"{ORIGIN}, https://admin.example") as s:
        yield s


def _tag() -> str:
    return f"cap{os.getpid()}x{next(_tags)}"


def _posthog_batch(tag: str, n: int = 2, **extra: Any) -> dict[str, Any]:
    batch = [
        {
            "event": "session_start",
            "distinct_id": f"{tag}-u{i}",
            "uuid": f"{tag}-{i}",
            "timestamp": "2026-08-03T12:00:00Z",
            "properties": {"$lib": "test"},
        }
        for i in range(n)
    ]
    return {"batch": batch, **extra}


def _stored_events(
    settings: Settings, tag: str, count: int, timeout: float = 15.0
) -> list[contract.Event]:
    """The valid events of the events topic whose ``event_id`` or ``user_id`` starts with ``tag``,
    once there are ``count`` of them (records of rejected elements are passed over)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False, consumer_timeout_ms=300
    )
    try:
        tps = [TopicPartition(settings.events_topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        events: list[contract.Event] = []
        deadline = time.monotonic() + timeout
        while len(events) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                for message in batch:
                    if tag.encode() in message.value:
                        got, _ = contract.decode_record(message.value)
                        events += [
                            e for e in got if tag in (e.event_id[: len(tag)], e.user_id[: len(tag)])
                        ]
        return events
    finally:
        consumer.close()


# -- PostHog


@pytest.mark.parametrize("path", sorted({e.path for e in ENDPOINTS if e.kind == "events"}))
def test_every_events_route_takes_a_batch(served: Served, corner: Settings, path: str) -> None:
    tag = _tag()
    endpoint = next(e for e in ENDPOINTS if e.path == path)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    if endpoint.protocol == "posthog":
        body, ok = _json(_posthog_batch(tag, 1)), {"status": 1}
    elif endpoint.protocol == "segment":
        message = {
            "type": "track",
            "event": "Session Started",
            "messageId": f"{tag}-0",
            "userId": f"{tag}-u0",
            "timestamp": "2026-08-03T12:00:00Z",
        }
        single = endpoint.call is not None
        body, ok = _json(message if single else {"batch": [message]}), {"success": True}
    else:
        data = {
            "e": "se",
            "se_ca": "c",
            "se_ac": "session_start",
            "eid": f"{tag}-0",
            "uid": f"{tag}-u0",
            "dtm": "1785758400000",
            "aid": APP,
            "p": "web",
        }
        body, ok = _json({"schema": "iglu:payload_data", "data": [data]}), None
    answer = call(served, "POST", path, body, headers)
    assert answer.status == 200
    if ok is None:
        assert answer.raw == b"ok"
    else:
        assert answer.body == ok
    (event,) = _stored_events(corner, tag, 1)
    assert (event.event_id, event.user_id, event.received_at is not None) == (
        f"{tag}-0",
        f"{tag}-u0",
        True,
    )


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@pytest.mark.parametrize(
    ("encode", "headers", "query"),
    [
        (lambda b: b, {"Content-Type": "application/json"}, ""),
        (lambda b: b, {"Content-Type": "text/plain"}, ""),
        (lambda b: b, {"Content-Type": "application/x-www-form-urlencoded"}, ""),  # curl -d
        (_gzip, {"Content-Encoding": "gzip", "Content-Type": "application/json"}, ""),
        (zlib.compress, {"Content-Encoding": "deflate"}, ""),
        (_gzip, {"Content-Type": "text/plain"}, "?compression=gzip-js&ip=1&_=1785758400000"),
        (lambda b: b"data=" + base64.b64encode(b).replace(b"+", b"%2B").replace(b"=", b"%3D"),
         {"Content-Type": "application/x-www-form-urlencoded"}, "?compression=base64"),
        (lambda b: b"data=" + base64.urlsafe_b64encode(b).rstrip(b"="),
         {"Content-Type": "application/x-www-form-urlencoded"}, ""),
        (lambda b: b"data=" + base64.b64encode(b), {}, ""),  # '+' read as ' ', no media type
    ],
)  # fmt: skip
def test_posthog_encodings(
    served: Served,
    corner: Settings,
    encode: Callable[[bytes], bytes],
    headers: dict[str, str],
    query: str,
) -> None:
    tag = _tag()
    batch = _posthog_batch(tag, 3)["batch"]
    for event in batch:
        event["properties"]["token"] = KEY  # posthog-js: the key in each event, no api_key
        event["properties"]["text"] = "é~~~>>>???"  # base64 with '+' and '/'
    answer = call(served, "POST", "/e/" + query, encode(_json(batch)), headers)
    assert (answer.status, answer.body) == (200, {"status": 1})
    assert sorted(e.event_id for e in _stored_events(corner, tag, 3)) == [
        f"{tag}-{i}" for i in range(3)
    ]


@pytest.mark.parametrize(
    ("headers", "body_key", "status"),
    [
        ({"Authorization": f"Bearer {OTHER}"}, None, 200),
        ({"Authorization": _basic(KEY)}, None, 200),
        ({}, {"api_key": KEY}, 200),
        ({}, {"token": OTHER}, 200),
        ({}, "properties.token", 200),
        ({"Authorization": "Negotiate xyz"}, {"api_key": KEY}, 200),  # passed over
        ({}, None, 401),
        ({}, {"api_key": "wrong"}, 401),
        ({"Authorization": "Bearer wrong"}, {"api_key": KEY}, 401),  # the first found counts
        ({"Authorization": _basic("wrong")}, {"api_key": KEY}, 401),
    ],
)
def test_posthog_keys(
    served: Served, corner: Settings, headers: dict[str, str], body_key: Any, status: int
) -> None:
    tag = _tag()
    payload = _posthog_batch(tag, 1)
    if isinstance(body_key, dict):
        payload.update(body_key)
    elif body_key == "properties.token":
        payload["batch"][0]["properties"]["token"] = KEY
    answer = call(served, "POST", "/batch/", _json(payload), headers)
    assert answer.status == status
    if status == 401:
        assert answer.body["error"] == "unauthorized"
        assert KEY not in answer.raw.decode()
        assert "wrong" not in answer.raw.decode()
        assert "www-authenticate" in answer.headers
    else:
        assert [e.event_id for e in _stored_events(corner, tag, 1)] == [f"{tag}-0"]


def test_posthog_python_sends_and_loads_its_flags(served: Served, corner: Settings) -> None:
    from posthog import Posthog
    from posthog.request import APIError, batch_post, flags
    from posthog.types import normalize_flags_response, to_flags_and_payloads

    tag = _tag()
    for gz in (False, True):
        batch = _posthog_batch(f"{tag}{gz:d}", 2)["batch"]
        response = batch_post(KEY, served.url, gzip=gz, batch=batch)  # raises unless 200
        assert response.status_code == 200
        assert len(_stored_events(corner, f"{tag}{gz:d}", 2)) == 2
    with pytest.raises(APIError) as refused:
        batch_post("not-a-key", served.url, batch=_posthog_batch(tag, 1)["batch"])
    assert refused.value.status == 401
    raw = flags(KEY, served.url, distinct_id="user-1", timeout=5)  # raises unless 200
    assert to_flags_and_payloads(normalize_flags_response(raw)) == {
        "featureFlags": {},
        "featureFlagPayloads": {},
    }
    client = Posthog(KEY, host=served.url, sync_mode=True, feature_flags_request_timeout_seconds=5)
    try:
        evaluated = client.evaluate_flags("user-1")
        assert evaluated.get_flag("checkout") is None
        assert evaluated.is_enabled("checkout") is False
    finally:
        client.shutdown()


def test_posthog_start_up_calls(served: Served) -> None:
    flags = call(
        served,
        "POST",
        "/flags/?v=2&config=true",
        b"data=eyJ0b2tlbiI6ICJ4In0=",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": ORIGIN},
    )
    assert flags.status == 200
    assert flags.body["featureFlags"] == {}
    assert flags.body["sessionRecording"] is False
    assert flags.headers["access-control-allow-origin"] == ORIGIN
    assert flags.headers["access-control-allow-credentials"] == "true"
    decide = call(served, "POST", "/decide/?v=3", b"{}", {"Content-Type": "application/json"})
    assert decide.status == 200
    assert decide.body["featureFlagPayloads"] == {}
    config = call(served, "GET", "/array/phc_anything/config")
    assert config.status == 200
    assert config.body["hasFeatureFlags"] is False
    assert "gzip-js" in config.body["supportedCompression"]


# -- Segment, RudderStack


def _segment_batch(tag: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "track",
            "event": "Message Sent",
            "messageId": f"{tag}-0",
            "userId": f"{tag}-u",
            "timestamp": "2026-08-03T12:00:00Z",
            "properties": {"model": "m1"},
        },
        {
            "type": "page",
            "name": "Home",
            "messageId": f"{tag}-1",
            "anonymousId": f"{tag}-a",
            "timestamp": "2026-08-03T12:00:01Z",
        },
    ]


def test_segment_and_rudderstack_python_send(served: Served, corner: Settings) -> None:
    from rudderstack.analytics import request as rudder_request
    from segment.analytics import request as segment_request
    from segment.analytics.request import APIError

    tag = _tag()
    response = segment_request.post(KEY, served.url, gzip=True, batch=_segment_batch(f"{tag}s"))
    assert (response.status_code, response.json()) == (200, {"success": True})
    response = rudder_request.post(OTHER, served.url, gzip=True, batch=_segment_batch(f"{tag}r"))
    assert response.status_code == 200
    for prefix in ("s", "r"):
        events = _stored_events(corner, f"{tag}{prefix}", 2)
        assert sorted((e.event_id, e.type) for e in events) == [
            (f"{tag}{prefix}-0", "message"),
            (f"{tag}{prefix}-1", "custom"),
        ]
    with pytest.raises(APIError) as refused:
        segment_request.post("nope", served.url, batch=_segment_batch(tag))
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_rudderstack_python_gives_up_on_a_4xx_at_once(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rudder-sdk-python's ``post`` reads ``code`` from the body of any answer but a 200 (and
    catches only ``ValueError``): with it, a 401 is the ``APIError`` its consumer gives up on
    at once (``fatal_exception``), not a ``KeyError`` retried like a network error."""
    import queue

    from rudderstack.analytics import consumer as rudder_consumer
    from rudderstack.analytics.request import APIError

    calls: list[int] = []
    post = rudder_consumer.post

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return post(*args, **kwargs)

    monkeypatch.setattr(rudder_consumer, "post", counted)
    sender = rudder_consumer.Consumer(queue.Queue(), "nope", host=served.url, retries=3)
    started = time.monotonic()
    with pytest.raises(APIError) as refused:
        sender.request(_segment_batch(_tag()))
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    assert len(calls) == 1
    assert time.monotonic() - started < 5  # no backoff: 1 s, 2 s, 4 s between retries
    bad = call(served, "POST", "/v1/batch", b"{not json", {"Authorization": _basic(KEY)})
    assert (bad.status, bad.body["code"]) == (400, bad.body["error"])


def test_every_capture_error_answer_says_code_as_error(served: Served) -> None:
    for path in ("/batch/", "/v1/batch", "/com.snowplowanalytics.snowplow/tp2"):
        answer = call(served, "POST", path, b"{}", {"Authorization": "Bearer nope"})
        assert answer.status in (401, 403)
        assert set(answer.body) == {"error", "message", "code"}
        assert answer.body["code"] == answer.body["error"]
    answer = call(served, "POST", "/v1/batch", b"x", {"Content-Encoding": "br"})
    assert (answer.status, answer.body["code"]) == (415, answer.body["error"])


def test_analytics_js_short_paths_as_text_plain(served: Served, corner: Settings) -> None:
    tag = _tag()
    for i, (short, message) in enumerate(
        [("t", {"event": "Thumbs Up"}), ("p", {"name": "Chat"}), ("i", {"traits": {"plan": "pro"}})]
    ):
        body = {
            **message,
            "messageId": f"{tag}-{i}",
            "anonymousId": f"{tag}-a",
            "timestamp": "2026-08-03T12:00:00Z",
            "writeKey": KEY,
        }
        answer = call(served, "POST", f"/v1/{short}", _json(body), {"Content-Type": "text/plain"})
        assert (answer.status, answer.body) == (200, {"success": True})
    batched = {
        "batch": [
            {
                "type": "track",
                "event": "x",
                "messageId": f"{tag}-3",
                "anonymousId": f"{tag}-a",
                "timestamp": "2026-08-03T12:00:00Z",
            }
        ],
        "writeKey": KEY,
    }
    assert (
        call(served, "POST", "/v1/b", _json(batched), {"Content-Type": "text/plain"}).status == 200
    )
    found = {e.event_id: e.type for e in _stored_events(corner, tag, 3)}
    assert found == {f"{tag}-1": "custom", f"{tag}-2": "identify", f"{tag}-3": "custom"}
    # a thumbs up without a message id is rejected, and dead-lettered by the worker
    dead = read_back(corner, f"{tag}-0".encode(), 1)
    assert [r for *_, value in dead for r in _worker_reasons(value)] == ["missing_field"]


def test_segment_settings_and_rudderstack_source_config(served: Served) -> None:
    settings = call(served, "GET", f"/v1/projects/{KEY}/settings", headers={"Origin": ORIGIN})
    assert settings.status == 200
    segmentio = settings.body["integrations"]["Segment.io"]
    assert segmentio == {
        **segmentio,
        "apiKey": KEY,
        "apiHost": f"127.0.0.1:{served.port}/v1",
        "protocol": "http",
    }
    proxied = call(
        served,
        "GET",
        "/v1/projects/unknown/settings",
        headers={"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "t.example, proxy"},
    )
    assert proxied.body["integrations"]["Segment.io"]["apiKey"] == ""  # not a configured key
    assert proxied.body["integrations"]["Segment.io"]["apiHost"] == "t.example/v1"
    assert proxied.body["integrations"]["Segment.io"]["protocol"] == "https"
    assert "unknown" not in proxied.raw.decode()
    source = call(
        served,
        "GET",
        "/sourceConfig/?p=npm&v=3.0&writeKey=x",
        headers={"Authorization": _basic("whatever")},
    )
    assert (source.status, source.body) == (200, rudderstack_source_config())


# -- Snowplow


def test_snowplow_tracker_posts_and_gets(served: Served, corner: Settings) -> None:
    from snowplow_tracker import Emitter, Subject, Tracker
    from snowplow_tracker.events import PageView, StructuredEvent

    outcomes: list[str] = []
    tag = _tag()
    for method in ("post", "get"):
        emitter = Emitter(
            served.url,
            method=method,  # type: ignore[arg-type]
            batch_size=1,
            on_success=lambda sent: outcomes.append(f"ok {len(sent)}"),
            on_failure=lambda n, failed: outcomes.append(f"failed {len(failed)}"),
        )
        subject = Subject().set_user_id(f"{tag}-{method}")
        tracker = Tracker("t", emitter, subject=subject, app_id=APP)
        tracker.track(PageView(page_url="https://chat.example/c"))
        tracker.track(StructuredEvent(category="chat", action="thumbs_up"))
        tracker.flush()
    assert outcomes == ["ok 1"] * 4
    events = _stored_events(corner, tag, 4)
    assert sorted(e.user_id for e in events) == [f"{tag}-get"] * 2 + [f"{tag}-post"] * 2
    pixel = call(served, "GET", f"/i?e=pv&eid={tag}-px&uid={tag}-x&aid={APP}&p=web")
    assert (pixel.status, pixel.raw, pixel.headers["content-type"]) == (200, PIXEL_GIF, "image/gif")
    assert call(served, "GET", "/i").status == 403  # no app id: not allowed


@pytest.mark.parametrize(
    ("aid", "headers", "status"),
    [
        (APP, {}, 200),
        ("intruder", {}, 403),
        ("intruder", {"Authorization": f"Bearer {KEY}"}, 200),  # a good key lets it in
        ("intruder", {"Authorization": "Bearer wrong"}, 401),
        (APP, {"Origin": ORIGIN}, 200),
        (APP, {"Origin": "https://evil.example"}, 403),
    ],
)
def test_snowplow_allow_lists(
    served: Served, aid: str, headers: dict[str, str], status: int
) -> None:
    data = {"e": "pv", "eid": f"{_tag()}-0", "uid": "u", "aid": aid, "dtm": "1785758400000"}
    body = _json(
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
            "data": [data],
        }
    )
    answer = call(
        served,
        "POST",
        "/com.snowplowanalytics.snowplow/tp2",
        body,
        {"Content-Type": "application/json; charset=utf-8", **headers},
    )
    assert answer.status == status
    if status == 403:
        assert answer.body["error"] == "forbidden"
        assert aid not in answer.raw.decode()


# -- what is not an event still arrives; limits


def test_some_bad_events_are_200_and_every_element_reaches_the_topic(
    served: Served, corner: Settings
) -> None:
    tag = _tag()
    payload = {
        "api_key": KEY,
        "batch": [
            {"event": "session_start", "distinct_id": f"{tag}-a", "uuid": f"{tag}-0"},
            {"event": "thumbs_down", "distinct_id": f"{tag}-b", "uuid": f"{tag}-1"},
            f"{tag}-not-an-object",
            {
                "event": "preference",
                "distinct_id": f"{tag}-c",
                "uuid": f"{tag}-3",
                "properties": {"model_a": "m", "model_b": "m", "winner": "a"},
            },
        ],
    }
    answer = call(served, "POST", "/batch/", _json(payload), {"Content-Type": "application/json"})
    assert (answer.status, answer.body) == (200, {"status": 1})
    records = read_back(corner, tag.encode(), 4)
    outcomes = [split_record(value, 0, 1) for *_, value in records]
    assert [e.event_id for o in outcomes for e in o.local] == [f"{tag}-0"]
    mapped = capture.map_posthog(payload, received_at=datetime.now(UTC))
    expected = sorted(m.rejection.reason for m in mapped if m.rejection is not None)
    assert sorted(r.reason for o in outcomes for r in o.rejections) == expected
    assert len(expected) == 3  # a vote with no message id, not an object, model_a == model_b


@pytest.mark.parametrize(
    ("body", "headers", "error"),
    [
        (b"{not json", {"Content-Type": "application/json"}, "not_json"),
        (b"\x1f\x8bnot really gzip", {"Content-Type": "text/plain"}, "bad_encoding"),
        (b"data=%21%21%21", {"Content-Type": "application/x-www-form-urlencoded"}, "bad_encoding"),
    ],
)
def test_a_body_that_cannot_be_decoded_is_400_and_dead_lettered_whole(
    served: Served, corner: Settings, body: bytes, headers: dict[str, str], error: str
) -> None:
    tag = _tag().encode()
    answer = call(served, "POST", "/batch/", body + tag, {**headers, "Authorization": _basic(KEY)})
    assert answer.status == 400
    assert answer.body["error"] == error
    ((partition, key, value),) = read_back(corner, tag, 1)
    assert (partition, key, value) == (0, None, body + tag)
    assert len(_worker_reasons(value)) == 1


def test_an_undecodable_body_over_a_record_is_dead_lettered_as_a_stand_in(
    served: Served, corner: Settings
) -> None:
    tag = _tag().encode()
    body = tag + b" is no JSON " + b"x" * (2 << 20)
    answer = call(served, "POST", "/capture/", body, {"Authorization": f"Bearer {KEY}"})
    assert (answer.status, answer.body["error"]) == (400, "not_json")
    ((partition, key, value),) = read_back(corner, tag, 1)
    assert (partition, key) == (0, None)
    assert len(value) < 200 * 1024
    assert _worker_reasons(value) == ["too_large"]
    assert json.loads(value)[0]["usersignals_stand_in"]["bytes"] == len(body)


def test_an_undecodable_body_without_a_header_key_is_401_and_not_written(
    served: Served, corner: Settings
) -> None:
    tag = _tag().encode()
    answer = call(served, "POST", "/batch/", b"garbage " + tag, {"Content-Type": "text/plain"})
    assert answer.status == 401
    assert read_back(corner, tag, 1, timeout=2.0) == []


TOO_LARGE = {
    "error": "too_large",
    "message": f"request body is larger than {5 << 20} bytes",
    "code": "too_large",
}


def test_5_mib_is_the_limit_and_a_gzip_bomb_stops_there(served: Served) -> None:
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    over = b"[" + b" " * (MAX_CAPTURE_BODY_BYTES - 1) + b"]"
    assert len(over) == MAX_CAPTURE_BODY_BYTES + 1
    answer = call(served, "POST", "/batch/", over, auth)
    assert (answer.status, answer.body) == (413, TOO_LARGE)
    at_limit = b'{"batch": []' + b" " * (MAX_CAPTURE_BODY_BYTES - 13) + b"}"
    assert len(at_limit) == MAX_CAPTURE_BODY_BYTES
    assert call(served, "POST", "/batch/", at_limit, auth).status == 200
    bomb = _gzip(b" " * (64 << 20))  # 64 MiB of spaces in ~64 KiB
    before = served.collector.guards.body_stats.inflated_bytes
    for headers in ({**auth, "Content-Encoding": "gzip"}, {"Authorization": f"Bearer {KEY}"}):
        answer = call(served, "POST", "/e/", bomb, headers)
        assert (answer.status, answer.body) == (413, TOO_LARGE)
    inflated = served.collector.guards.body_stats.inflated_bytes - before
    assert inflated <= 2 * (MAX_CAPTURE_BODY_BYTES + 1)


def test_expect_100_continue_refuses_a_declared_body_over_5_mib(served: Served) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(
            b"POST /batch/ HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {MAX_CAPTURE_BODY_BYTES + 1}\r\n\r\n".encode()
        )
        assert conn.recv(65536).startswith(b"HTTP/1.1 413 ")


def test_more_than_1000_events_is_413(served: Served) -> None:
    answer = call(served, "POST", "/batch/", _json({"api_key": KEY, "batch": [{}] * 1001}))
    assert (answer.status, answer.body["error"]) == (413, "too_many_events")
    assert answer.body["code"] == "too_many_events"


def test_preflight_on_every_path(served: Served) -> None:
    headers = {
        "Origin": "https://admin.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization",
    }
    for path in sorted(
        {e.path.replace("{token}", "t").replace("{write_key}", "k") for e in ENDPOINTS}
    ):
        answer = call(served, "OPTIONS", path, headers=headers)
        assert answer.status == 204, path
        assert answer.headers["access-control-allow-origin"] == "https://admin.example"
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert answer.headers["vary"] == "Origin"
    other = call(served, "OPTIONS", "/e/", headers={**headers, "Origin": "https://evil.example"})
    assert other.status == 204
    assert "access-control-allow-origin" not in other.headers


# -- rate limits and Kafka trouble


def test_rate_limits_apply_as_on_v1_events(broker: EmbeddedBroker, tmp_path: Any) -> None:
    settings = _corner(broker, tmp_path, collector_client_burst=3, collector_client_rate=0.01)
    with serving(settings) as s:
        answers = [call(s, "GET", "/array/t/config").status for _ in range(4)]
        assert answers == [200, 200, 200, 429]
        limited = call(s, "POST", "/batch/", _json(_posthog_batch(_tag(), 1)))
        assert limited.status == 429
        assert int(limited.headers["retry-after"]) > 0


def test_kafka_paused_is_503_with_retry_after(
    broker: EmbeddedBroker, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collector, "SEND_TIMEOUT_S", 2.0)
    settings = _corner(broker, tmp_path)
    assert broker.process is not None
    with serving(settings) as s:
        tag = _tag()
        body = _json(_posthog_batch(tag, 1))
        assert call(s, "POST", "/batch/", body).status == 200
        os.kill(broker.process.pid, signal.SIGSTOP)
        try:
            answer = call(s, "POST", "/batch/", _json(_posthog_batch(_tag(), 1)))
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        assert answer.status == 503
        assert answer.headers["retry-after"] == "5"
        assert answer.body["error"] == answer.body["code"] == "kafka_unavailable"
        deadline = time.monotonic() + 20
        while call(s, "POST", "/batch/", body).status != 200:  # the same batch, retried
            assert time.monotonic() < deadline, "Kafka did not come back"
            time.sleep(0.5)


def test_the_openapi_document_names_every_capture_route() -> None:
    document = Collector(Settings()).openapi
    for endpoint in ENDPOINTS:
        operations = document["paths"][endpoint.path]
        assert {endpoint.method.lower(), "options"} <= set(operations)
        assert operations[endpoint.method.lower()]["tags"] == ["capture"]


def test_the_pixel_is_a_gif() -> None:
    assert PIXEL_GIF[:6] == b"GIF89a"
    assert len(PIXEL_GIF) < 64
