"""Pushing dashboards to Grafana: the request as exact bytes, the reply judged, real HTTP.

The HTTP peer is a small aiohttp server on 127.0.0.1 that records what arrives and answers
with the status and body each test gives it; it stands in for nothing but an HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from usersignals.broker import free_port
from usersignals.config import ConfigError
from usersignals.dashboards.grafana import build_dashboards
from usersignals.dashboards.push import (
    PushError,
    PushRejectedError,
    PushRequest,
    PushUnavailableError,
    check_reply,
    push_dashboards,
    push_request,
)

BOARD = {"uid": "u", "title": "Ünï"}
HEADERS = {
    "Accept": "application/json",
    "Authorization": "Bearer tok-1",
    "Content-Type": "application/json",
}

# ---------------------------------------------------------------- the request, as data


@pytest.mark.parametrize(
    ("folder_uid", "body"),
    [
        (None, '{"dashboard":{"uid":"u","title":"Ünï"},"overwrite":true}'),
        ("f-1", '{"dashboard":{"uid":"u","title":"Ünï"},"overwrite":true,"folderUid":"f-1"}'),
        ("", '{"dashboard":{"uid":"u","title":"Ünï"},"overwrite":true,"folderUid":""}'),
    ],
)
def test_request_is_exact(folder_uid: str | None, body: str) -> None:
    req = push_request("http://grafana:3000", "tok-1", BOARD, folder_uid=folder_uid)
    assert req == PushRequest(
        method="POST",
        url="http://grafana:3000/api/dashboards/db",
        headers=HEADERS,
        body=body.encode(),
    )


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("http://grafana:3000", "http://grafana:3000/api/dashboards/db"),
        ("http://grafana:3000/", "http://grafana:3000/api/dashboards/db"),
        ("https://ops.example/grafana/", "https://ops.example/grafana/api/dashboards/db"),
        ("http://[::1]:3000", "http://[::1]:3000/api/dashboards/db"),
    ],
)
def test_url_below_the_root(base_url: str, url: str) -> None:
    assert push_request(base_url, "t", BOARD).url == url


_URL = "(expected http(s)://host[:port][/path])"
_TOKEN = "(expected a non-empty token without spaces)"


@pytest.mark.parametrize(
    ("base_url", "token", "message"),
    [
        ("grafana:3000", "t", f"Invalid Grafana URL: 'grafana:3000' {_URL}"),
        ("ftp://grafana", "t", f"Invalid Grafana URL: 'ftp://grafana' {_URL}"),
        ("http://", "t", f"Invalid Grafana URL: 'http://' {_URL}"),
        ("http://g/?org=1", "t", f"Invalid Grafana URL: 'http://g/?org=1' {_URL}"),
        ("http://g:port", "t", f"Invalid Grafana URL: 'http://g:port' {_URL}"),
        ("http://[::1", "t", f"Invalid Grafana URL: 'http://[::1' {_URL}"),
        ("http://g", "", f"Invalid Grafana token: '' {_TOKEN}"),
        ("http://g", "a b", f"Invalid Grafana token: '<3 characters>' {_TOKEN}"),
        ("http://g", "tok\n", f"Invalid Grafana token: '<4 characters>' {_TOKEN}"),
    ],
)
def test_unusable_address_or_token(base_url: str, token: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        push_request(base_url, token, BOARD)
    assert str(exc.value) == message
    assert exc.value.retryable is False


def test_token_stays_out_of_repr() -> None:
    req = push_request("http://g", "secret-token", BOARD)
    assert repr(req) == (
        "PushRequest(method='POST', url='http://g/api/dashboards/db', "
        'body=b\'{"dashboard":{"uid":"u","title":"\\xc3\\x9cn\\xc3\\xaf"},"overwrite":true}\')'
    )


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(board=st.dictionaries(st.text(), _json, max_size=4), folder=st.none() | st.text(max_size=8))
def test_body_carries_the_dashboard_verbatim(board: dict[str, Any], folder: str | None) -> None:
    body = json.loads(push_request("http://g", "t", board, folder_uid=folder).body)
    expected: dict[str, Any] = {"dashboard": board, "overwrite": True}
    if folder is not None:
        expected["folderUid"] = folder
    assert body == expected


def test_generated_dashboards_go_as_they_are() -> None:
    for board in build_dashboards().values():
        assert json.loads(push_request("http://g", "t", board).body)["dashboard"] == board


# ---------------------------------------------------------------- the reply, judged

URL = "http://g/api/dashboards/db"
SAVED = b'{"id":7,"uid":"u","url":"/d/u/x","status":"success","version":3,"slug":"x"}'
_PREFIX = f"Grafana at {URL!r} did not save the dashboard: "
_NOT_JSON = "HTTP 200 with a reply that is not a JSON object:"


@pytest.mark.parametrize(
    ("status", "body", "error", "reason"),
    [
        (200, SAVED, None, ""),
        (400, b'{"message":"bad"}', PushRejectedError, """HTTP 400 '{"message":"bad"}'"""),
        (401, b'{"message":"no key"}', PushRejectedError, """HTTP 401 '{"message":"no key"}'"""),
        (412, b'{"status":"exists"}', PushRejectedError, """HTTP 412 '{"status":"exists"}'"""),
        (302, b"", PushRejectedError, "HTTP 302 ''"),
        (200, b"<html>", PushRejectedError, f"{_NOT_JSON} '<html>'"),
        (200, b"[1]", PushRejectedError, f"{_NOT_JSON} '[1]'"),
        (500, b"panic", PushUnavailableError, "HTTP 500 'panic'"),
        (503, b"x" * 300, PushUnavailableError, f"HTTP 503 '{'x' * 200}'"),
        (502, b"\xff", PushUnavailableError, "HTTP 502 '\ufffd'"),
    ],
)  # fmt: skip
def test_reply(status: int, body: bytes, error: type[PushError] | None, reason: str) -> None:
    if error is None:
        assert check_reply(URL, status, body) == json.loads(body)
        return
    with pytest.raises(error) as exc:
        check_reply(URL, status, body)
    assert str(exc.value) == _PREFIX + reason
    assert (exc.value.url, exc.value.status, exc.value.body) == (URL, status, body)
    assert exc.value.retryable is (error is PushUnavailableError)


# ---------------------------------------------------------------- over real HTTP


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, bytes, dict[str, str]]


@contextlib.asynccontextmanager
async def _peer(
    replies: list[Reply], delay_s: float = 0.0
) -> AsyncIterator[tuple[str, list[Seen]]]:
    """An HTTP server on 127.0.0.1 answering with ``replies`` in turn (the last one repeats)."""
    seen: list[Seen] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(Seen(request.method, request.path, dict(request.headers), await request.read()))
        await asyncio.sleep(delay_s)
        status, body, headers = replies[min(len(seen), len(replies)) - 1]
        return web.Response(status=status, body=body, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


def _against(
    replies: list[Reply], call: Callable[[str], Any], delay_s: float = 0.0
) -> tuple[Any, str, list[Seen]]:
    """Runs the blocking ``call(base_url)`` in a thread while the peer serves.

    Returns its result (or the :class:`PushError` it raised), the peer's URL and the requests.
    """

    async def main() -> tuple[Any, str, list[Seen]]:
        async with _peer(replies, delay_s) as (url, seen):
            try:
                return await asyncio.to_thread(call, url), url, seen
            except PushError as err:
                return err, url, seen

    return asyncio.run(main())


JSON = {"Content-Type": "application/json"}


def test_pushes_each_dashboard_over_http() -> None:
    boards = build_dashboards()
    replies = [
        (200, b'{"id":1,"uid":"usersignals-live","status":"success","version":1}', JSON),
        (200, b'{"id":2,"uid":"usersignals-history","status":"success","version":4}', JSON),
    ]
    out, _, seen = _against(
        replies, lambda url: push_dashboards(url + "/grafana/", "tok-1", folder_uid="f-1")
    )
    assert out == [
        {"id": 1, "uid": "usersignals-live", "status": "success", "version": 1},
        {"id": 2, "uid": "usersignals-history", "status": "success", "version": 4},
    ]
    assert [(s.method, s.path) for s in seen] == [("POST", "/grafana/api/dashboards/db")] * 2
    for s, board in zip(seen, boards.values(), strict=True):
        assert {k: s.headers[k] for k in HEADERS} == HEADERS
        assert s.headers["Content-Length"] == str(len(s.body))
        assert s.body == push_request("http://g", "t", board, folder_uid="f-1").body
        assert json.loads(s.body) == {"dashboard": board, "overwrite": True, "folderUid": "f-1"}


@pytest.mark.parametrize(
    ("reply", "error", "reason"),
    [
        ((412, b'{"status":"version-mismatch"}', JSON), PushRejectedError,
         """HTTP 412 '{"status":"version-mismatch"}'"""),
        ((403, b'{"message":"Access denied"}', JSON), PushRejectedError,
         """HTTP 403 '{"message":"Access denied"}'"""),
        ((302, b"", {"Location": "/login"}), PushRejectedError, "HTTP 302 ''"),
        ((200, b"<!doctype html>", {"Content-Type": "text/html"}), PushRejectedError,
         f"{_NOT_JSON} '<!doctype html>'"),
        ((503, b"upstream down", {}), PushUnavailableError, "HTTP 503 'upstream down'"),
    ],
)  # fmt: skip
def test_first_refusal_stops_the_push(reply: Reply, error: type[PushError], reason: str) -> None:
    err, base, seen = _against([reply], lambda url: push_dashboards(url, "tok-1"))
    assert type(err) is error
    assert str(err) == f"Grafana at '{base}/api/dashboards/db' did not save the dashboard: {reason}"
    assert (err.status, err.body) == (reply[0], reply[1])
    assert err.retryable is (error is PushUnavailableError)
    # One request: the redirect is not followed, and the second dashboard is not sent.
    assert [(s.method, s.path) for s in seen] == [("POST", "/api/dashboards/db")]


def test_nothing_listening_is_retryable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PushUnavailableError) as exc:
        push_dashboards(url, "tok-1", [BOARD], timeout=2.0)
    assert str(exc.value) == (
        f"Grafana at '{url}/api/dashboards/db' did not save the dashboard: "
        "no answer ([Errno 111] Connection refused)"
    )
    assert (exc.value.status, exc.value.body, exc.value.retryable) == (None, b"", True)


def test_slow_answer_is_retryable() -> None:
    err, base, seen = _against(
        [(200, SAVED, JSON)], lambda url: push_dashboards(url, "t", [BOARD], timeout=0.2), 1.0
    )
    assert type(err) is PushUnavailableError
    assert str(err) == (
        f"Grafana at '{base}/api/dashboards/db' did not save the dashboard: no answer (timed out)"
    )
    assert (err.status, err.body, len(seen)) == (None, b"", 1)
