"""Pushing dashboards to Grafana: the values pushed, and the push over real HTTP.

Grafana cannot run here, so the HTTP peer is :class:`FakeGrafana`: an aiohttp server on
127.0.0.1 that keeps folders and dashboards the way Grafana's HTTP API does and checks the
contract of each request (method and path, ``Authorization: Bearer <token>``, a JSON body of
the documented shape). It answers like Grafana's API documentation says (status codes and
bodies); a request outside the contract is answered 400 and noted in ``problems``, which every
test expects empty. ``faults`` make it answer a given request otherwise, or never.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from aiohttp import web

from usersignals.broker import free_port
from usersignals.config import ConfigError
from usersignals.dashboards.grafana import DUCKDB, PROMETHEUS, build_dashboards
from usersignals.dashboards.push import (
    MESSAGE,
    DashboardOutcome,
    PushError,
    PushRejectedError,
    PushReport,
    PushUnavailableError,
    _api,
    changes,
    check_address,
    push_dashboards,
    save_payload,
    with_datasources,
)

TOKEN = "tok-1-secret"
Action = Literal["created", "updated", "unchanged"]
BOARD = {"uid": "u", "title": "Ünï", "version": 1}

# ---------------------------------------------------------------- a Grafana's HTTP API, faked

Reply = tuple[int, bytes, dict[str, str]]
HANG = (0, b"", {})  # a fault: the request is never answered
JSON = {"Content-Type": "application/json"}


def _json(status: int, value: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(value).encode(), headers=JSON)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeGrafana:
    """Grafana's ``/api/folders`` and ``/api/dashboards`` endpoints, below ``prefix``."""

    prefix: str = ""
    token: str = TOKEN
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    # uid -> {"dashboard": the stored JSON with id and version, "folderUid": "" for General}
    boards: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (method, path below the prefix) -> the reply given instead (HANG: none)
    faults: dict[tuple[str, str], Reply] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _next_id: int = 1

    def calls(self) -> list[tuple[str, str]]:
        return [(s.method, s.path.removeprefix(self.prefix)) for s in self.seen]

    def saved(self) -> list[dict[str, Any]]:
        """The bodies of every ``POST /api/dashboards/db``, in order."""
        return [
            json.loads(s.body)
            for s in self.seen
            if (s.method, s.path) == ("POST", self.prefix + "/api/dashboards/db")
        ]

    def store(self, board: dict[str, Any], folder_uid: str = "") -> None:
        """Saves ``board`` as Grafana would: a new id or the old one, the version counted on."""
        old = self.boards.get(board["uid"])
        number = old["dashboard"]["id"] if old else self._take_id()
        version = old["dashboard"]["version"] + 1 if old else 1
        stored = {**board, "id": number, "version": version}
        self.boards[board["uid"]] = {"dashboard": stored, "folderUid": folder_uid}

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _refuse(self, problem: str) -> web.Response:
        self.problems.append(problem)
        return _json(400, {"message": f"bad request: {problem}"})

    async def handle(self, request: web.Request, release: asyncio.Event) -> web.Response:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, dict(request.headers), body))
        path = request.path.removeprefix(self.prefix)
        fault = self.faults.get((request.method, path))
        if fault == HANG:
            await release.wait()
            return _json(503, {"message": "too late"})
        if fault is not None:
            return web.Response(status=fault[0], body=fault[1], headers=fault[2])
        if not request.path.startswith(self.prefix + "/api/"):
            return self._refuse(f"{request.path} is not below {self.prefix}/api/")
        auth = request.headers.get("Authorization")
        if auth is None:
            return _json(401, {"message": "Unauthorized"})
        if auth != f"Bearer {self.token}":
            return _json(401, {"message": "invalid API key"})
        payload: dict[str, Any] = {}
        if request.method == "POST":
            if request.content_type != "application/json":  # charset=utf-8 may follow
                return self._refuse(f"POST with Content-Type {request.content_type}")
            try:
                payload = json.loads(body)
            except ValueError:
                return self._refuse("a body that is not JSON")
            if not isinstance(payload, dict):
                return self._refuse("a body that is not a JSON object")
        elif body:
            return self._refuse(f"{request.method} with a body")
        for (method, pattern), endpoint in ROUTES.items():
            match = re.fullmatch(pattern, path)
            if request.method == method and match:
                return endpoint(self, *match.groups(), payload)
        return self._refuse(f"{request.method} {path} is not an endpoint the push uses")

    def _get_folder(self, uid: str, _: dict[str, Any]) -> web.Response:
        if uid not in self.folders:
            return _json(404, {"message": "folder not found", "status": "not-found"})
        return _json(200, self.folders[uid])

    def _create_folder(self, payload: dict[str, Any]) -> web.Response:
        if not set(payload) <= {"uid", "title", "parentUid"} or not payload.get("title"):
            return self._refuse(f"a folder payload of keys {sorted(payload)}")
        uid = payload.get("uid") or f"auto{len(self.folders)}"
        if uid in self.folders or any(
            f["title"] == payload["title"] for f in self.folders.values()
        ):
            return _json(409, {"message": "a folder with the same name already exists"})
        folder = {"id": self._take_id(), "uid": uid, "title": payload["title"], "version": 1,
                  "url": f"/dashboards/f/{uid}/{payload['title'].lower()}"}  # fmt: skip
        self.folders[uid] = folder
        return _json(200, folder)

    def _get_dashboard(self, uid: str, _: dict[str, Any]) -> web.Response:
        if uid not in self.boards:
            return _json(404, {"message": "Dashboard not found"})
        held = self.boards[uid]
        board = held["dashboard"]
        folder = self.folders.get(held["folderUid"], {"title": "General"})
        meta = {"type": "db", "slug": board["title"].lower(), "url": f"/d/{uid}/x",
                "version": board["version"], "folderUid": held["folderUid"],
                "folderTitle": folder["title"]}  # fmt: skip
        return _json(200, {"dashboard": board, "meta": meta})

    def _save_dashboard(self, payload: dict[str, Any]) -> web.Response:
        allowed = {"dashboard", "folderUid", "folderId", "overwrite", "message"}
        board = payload.get("dashboard")
        if not set(payload) <= allowed or not isinstance(board, dict):
            return self._refuse(f"a dashboard payload of keys {sorted(payload)}")
        if not isinstance(board.get("uid"), str) or not isinstance(board.get("title"), str):
            return self._refuse("a dashboard without a uid and a title")
        folder_uid = payload.get("folderUid", "")
        if folder_uid and folder_uid not in self.folders:
            return _json(400, {"message": "folder not found"})
        held = self.boards.get(board["uid"])
        stale = held is not None and held["dashboard"]["version"] != board.get("version")
        if stale and not payload.get("overwrite"):
            return _json(412, {"message": "The dashboard has been changed by someone else",
                               "status": "version-mismatch"})  # fmt: skip
        self.store(board, folder_uid)
        stored = self.boards[board["uid"]]["dashboard"]
        uid, version = board["uid"], stored["version"]
        return _json(200, {"id": stored["id"], "uid": uid, "url": f"/d/{uid}/x",
                           "status": "success", "version": version, "slug": "x"})  # fmt: skip


Endpoint = Callable[..., web.Response]

# (method, path below the prefix) -> what answers it
ROUTES: dict[tuple[str, str], Endpoint] = {
    ("GET", r"/api/folders/([^/]+)"): FakeGrafana._get_folder,
    ("POST", r"/api/folders"): FakeGrafana._create_folder,
    ("GET", r"/api/dashboards/uid/([^/]+)"): FakeGrafana._get_dashboard,
    ("POST", r"/api/dashboards/db"): FakeGrafana._save_dashboard,
}


@contextlib.asynccontextmanager
async def serving(grafana: FakeGrafana) -> AsyncIterator[str]:
    """``grafana`` on a free 127.0.0.1 port, as its root URL (with its prefix)."""
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        return await grafana.handle(request, release)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}{grafana.prefix}"
    finally:
        release.set()
        await runner.cleanup()


def against(grafana: FakeGrafana, call: Callable[[str], Any]) -> tuple[Any, str]:
    """Runs the blocking ``call(root_url)`` in a thread while ``grafana`` serves.

    Returns its result (or the :class:`PushError` it raised) and the root URL.
    """

    async def main() -> tuple[Any, str]:
        async with serving(grafana) as url:
            try:
                return await asyncio.to_thread(call, url), url
            except PushError as err:
                return err, url

    return asyncio.run(main())


def boards() -> list[dict[str, Any]]:
    """The project's dashboards, whichever they are."""
    return list(build_dashboards().values())


# ---------------------------------------------------------------- the values pushed


@pytest.mark.parametrize(
    ("folder_uid", "payload"),
    [
        (None, {"dashboard": BOARD, "overwrite": True, "message": MESSAGE}),
        ("f-1", {"dashboard": BOARD, "folderUid": "f-1", "overwrite": True, "message": MESSAGE}),
    ],
)
def test_save_payload(folder_uid: str | None, payload: dict[str, Any]) -> None:
    assert save_payload(BOARD, folder_uid) == payload
    assert list(save_payload(BOARD, folder_uid)) == list(payload)


def _refs(node: Any) -> list[dict[str, Any]]:
    """Every ``datasource`` value in a dashboard."""
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    if not isinstance(node, dict):
        return []
    own = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
    return own + [r for value in node.values() for r in _refs(value)]


def test_datasource_uids_are_rewritten_and_nothing_else() -> None:
    for board in boards():
        before = json.dumps(board)
        out = with_datasources(board, prometheus_uid="prom-9", duckdb_uid="duck_9")
        assert json.dumps(board) == before  # the input is not changed
        expected = before.replace(
            json.dumps(PROMETHEUS.ref()), '{"type": "prometheus", "uid": "prom-9"}'
        ).replace(json.dumps(DUCKDB.ref()), f'{{"type": "{DUCKDB.type}", "uid": "duck_9"}}')
        assert out == json.loads(expected)
        kept = {(r["type"], r["uid"]) for r in _refs(out)} - {
            (PROMETHEUS.type, "prom-9"),
            (DUCKDB.type, "duck_9"),
        }
        assert kept <= {("grafana", "-- Grafana --")}  # only the built-in annotations
        assert with_datasources(board) == board


def test_every_dashboard_refers_to_a_datasource_that_is_rewritten() -> None:
    for board in boards():
        assert {PROMETHEUS.ref()["uid"], DUCKDB.ref()["uid"]} & {r["uid"] for r in _refs(board)}


def test_one_datasource_at_a_time() -> None:
    board = {"uid": "u", "title": "t", "panels": [
        {"datasource": PROMETHEUS.ref(), "targets": [{"datasource": PROMETHEUS.ref()}]},
        {"datasource": DUCKDB.ref(), "targets": [{"datasource": DUCKDB.ref(), "rawSql": "x"}]},
        {"datasource": {"type": "prometheus", "uid": "someone-else"}},
    ]}  # fmt: skip
    assert with_datasources(board, duckdb_uid="d") == {"uid": "u", "title": "t", "panels": [
        {"datasource": PROMETHEUS.ref(), "targets": [{"datasource": PROMETHEUS.ref()}]},
        {"datasource": {"type": DUCKDB.type, "uid": "d"},
         "targets": [{"datasource": {"type": DUCKDB.type, "uid": "d"}, "rawSql": "x"}]},
        {"datasource": {"type": "prometheus", "uid": "someone-else"}},
    ]}  # fmt: skip


_UID = "(expected 1 to 40 letters, digits, '-' or '_')"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prometheus_uid": ""}, f"Invalid Prometheus uid: '' {_UID}"),
        ({"prometheus_uid": "a b"}, f"Invalid Prometheus uid: 'a b' {_UID}"),
        ({"duckdb_uid": "x" * 41}, f"Invalid DuckDB uid: '{'x' * 41}' {_UID}"),
        ({"duckdb_uid": "../x"}, f"Invalid DuckDB uid: '../x' {_UID}"),
    ],
)
def test_unusable_datasource_uid(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        with_datasources(BOARD, **kwargs)
    assert str(exc.value) == message


def _held(board: dict[str, Any], folder_uid: str = "") -> dict[str, Any]:
    return {"dashboard": board, "meta": {"folderUid": folder_uid, "version": 3}}


@pytest.mark.parametrize(
    ("held", "folder_uid", "differ"),
    [
        (_held({**BOARD, "id": 9, "version": 4}), None, ()),
        (_held({"uid": "u", "title": "Ünï"}), None, ()),
        (_held({**BOARD, "id": 9}, "f-1"), "f-1", ()),
        (_held(BOARD, ""), "", ()),
        (_held(BOARD, "f-1"), None, ("folder",)),
        (_held(BOARD), "f-1", ("folder",)),
        (_held({**BOARD, "title": "x", "tags": []}, "g"), "f-1", ("tags", "title", "folder")),
        (_held({"uid": "u"}), None, ("title",)),
        ({"dashboard": BOARD}, None, ()),
        ({}, None, ("title", "uid")),
    ],
)  # fmt: skip
def test_changes(held: dict[str, Any], folder_uid: str | None, differ: tuple[str, ...]) -> None:
    assert changes(held, BOARD, folder_uid) == differ


_URL = "(expected http(s)://host[:port][/path])"
_TOKEN = "(expected a non-empty ASCII token without spaces)"


@pytest.mark.parametrize(
    ("base_url", "token", "message"),
    [
        ("grafana:3000", "t", f"Invalid Grafana URL: 'grafana:3000' {_URL}"),
        ("ftp://grafana", "t", f"Invalid Grafana URL: 'ftp://grafana' {_URL}"),
        ("http://", "t", f"Invalid Grafana URL: 'http://' {_URL}"),
        ("http://g/?org=1", "t", f"Invalid Grafana URL: 'http://g/?org=1' {_URL}"),
        ("http://g:port", "t", f"Invalid Grafana URL: 'http://g:port' {_URL}"),
        ("http://[::1", "t", f"Invalid Grafana URL: 'http://[::1' {_URL}"),
        ("http://u:p@g", "t", f"Invalid Grafana URL: 'http://u:p@g' {_URL}"),
        ("http://g", "", f"Invalid Grafana token: '' {_TOKEN}"),
        ("http://g", "a b", f"Invalid Grafana token: '<3 characters>' {_TOKEN}"),
        ("http://g", "tok\n", f"Invalid Grafana token: '<4 characters>' {_TOKEN}"),
        ("http://g", "tök", f"Invalid Grafana token: '<3 characters>' {_TOKEN}"),
    ],
)
def test_unusable_address_or_token(base_url: str, token: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        check_address(base_url, token)
    assert str(exc.value) == message
    with pytest.raises(ConfigError) as exc:  # before any request: there is no server here
        push_dashboards(base_url, token, [BOARD])
    assert str(exc.value) == message
    assert exc.value.retryable is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folder_uid": ""}, f"Invalid folder uid: '' {_UID}"),
        ({"folder_uid": "a/b"}, f"Invalid folder uid: 'a/b' {_UID}"),
        ({"prometheus_uid": "p q"}, f"Invalid Prometheus uid: 'p q' {_UID}"),
        ({"dashboards": [{"title": "no uid"}]}, f"Invalid dashboard uid: '' {_UID}"),
    ],
)
def test_unusable_uids_stop_the_push_before_any_request(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        push_dashboards(f"http://127.0.0.1:{free_port()}", TOKEN, **kwargs)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("base_url", "api"),
    [
        ("http://grafana:3000", "http://grafana:3000/api"),
        ("http://grafana:3000/", "http://grafana:3000/api"),
        ("https://ops.example/grafana", "https://ops.example/grafana/api"),
        ("https://ops.example/a/grafana/", "https://ops.example/a/grafana/api"),
        ("http://[::1]:3000", "http://[::1]:3000/api"),
    ],
)
def test_api_url_below_the_root(base_url: str, api: str) -> None:
    client = _api(base_url, TOKEN, 1.0).client
    try:
        assert client.url == api
    finally:
        client.s.close()


# ---------------------------------------------------------------- pushing, over real HTTP

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _outcomes(action: Action, changes: tuple[str, ...] = ()) -> tuple[DashboardOutcome, ...]:
    return tuple(DashboardOutcome(b["uid"], b["title"], action, changes) for b in boards())


def _gets() -> list[tuple[str, str]]:
    return [("GET", f"/api/dashboards/uid/{b['uid']}") for b in boards()]


def test_first_push_creates_the_second_changes_nothing() -> None:
    grafana = FakeGrafana(prefix="/grafana")

    def twice(url: str) -> tuple[PushReport, PushReport, list[tuple[str, str]]]:
        first = push_dashboards(url + "/", TOKEN, folder_uid="f-1")
        calls = grafana.calls()
        return first, push_dashboards(url, TOKEN, folder_uid="f-1"), calls

    (first, second, first_calls), url = against(grafana, twice)
    assert grafana.problems == []
    assert first == PushReport(url + "/", "f-1", "created", _outcomes("created"), False)
    assert first_calls == [("GET", "/api/folders/f-1"), ("POST", "/api/folders")] + [
        call
        for b in boards()
        for call in [("GET", f"/api/dashboards/uid/{b['uid']}"), ("POST", "/api/dashboards/db")]
    ]
    assert json.loads(grafana.seen[1].body) == {"title": "usersignals", "uid": "f-1"}
    assert grafana.saved() == [save_payload(b, "f-1") for b in boards()]
    assert grafana.saved()[0] == {
        "dashboard": boards()[0],
        "folderUid": "f-1",
        "overwrite": True,
        "message": MESSAGE,
    }
    for seen in grafana.seen:
        assert {k: seen.headers.get(k) for k in AUTH} == AUTH
    # The second push only reads: no folder created, no dashboard saved.
    assert second == PushReport(url, "f-1", "exists", _outcomes("unchanged"), False)
    assert grafana.calls()[len(first_calls) :] == [("GET", "/api/folders/f-1"), *_gets()]
    assert {uid: held["dashboard"]["version"] for uid, held in grafana.boards.items()} == {
        b["uid"]: 1 for b in boards()
    }


def test_only_a_changed_dashboard_is_saved() -> None:
    grafana = FakeGrafana()
    grafana.folders["f-1"] = {"id": 1, "uid": "f-1", "title": "mine", "version": 1}
    first, *others = boards()
    grafana.store({**first, "title": "edited in the UI"}, "f-1")
    grafana.store({**first, "title": "edited in the UI"}, "f-1")  # version 2 in Grafana
    for board in others:
        grafana.store(board, "f-1")
    report, _ = against(grafana, lambda url: push_dashboards(url, TOKEN, folder_uid="f-1"))
    assert grafana.problems == []
    assert report.folder == "exists"
    assert report.dashboards == (
        DashboardOutcome(first["uid"], first["title"], "updated", ("title",)),
        *_outcomes("unchanged")[1:],
    )
    assert grafana.calls() == [("GET", "/api/folders/f-1"), *_gets()[:1],
                               ("POST", "/api/dashboards/db"), *_gets()[1:]]  # fmt: skip
    assert grafana.saved() == [save_payload(first, "f-1")]
    assert grafana.boards[first["uid"]]["dashboard"] == {**first, "id": 1, "version": 3}
    assert grafana.folders["f-1"]["title"] == "mine"  # an existing folder is left as it is


def test_a_dashboard_in_another_folder_is_moved() -> None:
    grafana = FakeGrafana()
    grafana.folders["f-1"] = {"id": 1, "uid": "f-1", "title": "usersignals", "version": 1}
    for board in boards():
        grafana.store(board)  # in the General folder
    report, _ = against(grafana, lambda url: push_dashboards(url, TOKEN, folder_uid="f-1"))
    assert report.dashboards == _outcomes("updated", ("folder",))
    assert grafana.saved() == [save_payload(b, "f-1") for b in boards()]
    report, _ = against(grafana, lambda url: push_dashboards(url, TOKEN))  # back to General
    assert report.folder is None
    assert report.dashboards == _outcomes("updated", ("folder",))
    assert grafana.saved()[-1] == {"dashboard": boards()[-1], "overwrite": True, "message": MESSAGE}
    assert {held["folderUid"] for held in grafana.boards.values()} == {""}


def test_datasource_uids_are_pushed_and_then_unchanged() -> None:
    grafana = FakeGrafana()
    uids = {"prometheus_uid": "prom-prod", "duckdb_uid": "duck-prod"}
    (first, second), _ = against(
        grafana,
        lambda url: (push_dashboards(url, TOKEN, **uids), push_dashboards(url, TOKEN, **uids)),
    )
    assert grafana.problems == []
    assert first.dashboards == _outcomes("created")
    assert second.dashboards == _outcomes("unchanged")
    wanted = [with_datasources(b, **uids) for b in boards()]
    assert grafana.saved() == [save_payload(b, None) for b in wanted]
    # The General folder: no request to the folder API.
    assert all(not path.startswith("/api/folders") for _, path in grafana.calls())
    # Back to the provisioned uids: every dashboard changes (its panels name the data source).
    report, _ = against(grafana, lambda url: push_dashboards(url, TOKEN))
    assert [d.action for d in report.dashboards] == ["updated"] * len(wanted)
    assert all("panels" in d.changes for d in report.dashboards)


def test_dry_run_only_reads() -> None:
    grafana = FakeGrafana()
    first, *_ = boards()
    grafana.store({**first, "description": "old"})
    report, url = against(
        grafana, lambda url: push_dashboards(url, TOKEN, folder_uid="f-1", dry_run=True)
    )
    assert grafana.problems == []
    assert report == PushReport(url, "f-1", "created", (
        DashboardOutcome(first["uid"], first["title"], "updated", ("description", "folder")),
        *_outcomes("created")[1:],
    ), True)  # fmt: skip
    assert grafana.calls() == [("GET", "/api/folders/f-1"), *_gets()]
    assert grafana.folders == {}
    assert grafana.boards[first["uid"]]["dashboard"]["description"] == "old"


# ---------------------------------------------------------------- Grafana refuses, or fails

PREFIX = "Grafana at '{url}{path}' did not save the dashboard: "
DB = ("POST", "/api/dashboards/db")
FOLDER = ("GET", "/api/folders/f-1")
FIRST = ("GET", f"/api/dashboards/uid/{boards()[0]['uid']}")


@pytest.mark.parametrize(
    ("fault", "reply", "error", "status", "reason"),
    [
        (FOLDER, (403, b'{"message":"Access denied"}', JSON), PushRejectedError, 403,
         """HTTP 403 '{"message":"Access denied"}'"""),
        (("POST", "/api/folders"),
         (409, b'{"message":"a folder with the same name already exists"}', JSON),
         PushRejectedError, 409,
         """HTTP 409 '{"message":"a folder with the same name already exists"}'"""),
        (FIRST, (500, b'{"message":"Internal Server Error"}', JSON), PushUnavailableError, 500,
         """HTTP 500 '{"message":"Internal Server Error"}'"""),
        (DB, (412, b'{"message":"The dashboard has been changed by someone else",'
                   b'"status":"version-mismatch"}', JSON), PushRejectedError, 412,
         """HTTP 412 '{"message":"The dashboard has been changed by someone else","""
         """"status":"version-mismatch"}'"""),
        (DB, (400, b'{"message":"Dashboard title cannot be empty"}', JSON), PushRejectedError,
         400, """HTTP 400 '{"message":"Dashboard title cannot be empty"}'"""),
        (DB, (502, b"bad gateway", {"Content-Type": "text/plain"}), PushUnavailableError, 502,
         "HTTP 502 'bad gateway'"),
        (DB, (503, b"x" * 300, {}), PushUnavailableError, 503, f"HTTP 503 '{'x' * 200}'"),
        (FIRST, (302, b"", {"Location": "/login"}), PushRejectedError, 302, "HTTP 302 ''"),
        (DB, (200, b"<!doctype html>", {"Content-Type": "text/html"}), PushRejectedError, None,
         "a reply that is not a JSON object: '<!doctype html>'"),
        (DB, (200, b"<!doctype html>", JSON), PushRejectedError, None,
         "a reply that is not JSON: '<!doctype html>'"),
        (DB, (200, b"[1]", JSON), PushRejectedError, None,
         "a reply that is not a JSON object: '[1]'"),
        (FIRST, (404, b"<html>404</html>", {"Content-Type": "text/html"}), PushRejectedError,
         404, "HTTP 404 '<html>404</html>'"),
        (FOLDER, (404, b"404 page not found", {"Content-Type": "text/plain"}),
         PushRejectedError, 404, "HTTP 404 '404 page not found'"),
    ],
)  # fmt: skip
def test_a_refusal_or_failure_stops_the_push(
    fault: tuple[str, str],
    reply: Reply,
    error: type[PushError],
    status: int | None,
    reason: str,
) -> None:
    grafana = FakeGrafana(faults={fault: reply})
    err, url = against(grafana, lambda url: push_dashboards(url, TOKEN, folder_uid="f-1"))
    assert type(err) is error
    assert str(err) == PREFIX.format(url=url, path=fault[1]) + reason
    assert (err.status, err.retryable) == (status, error is PushUnavailableError)
    assert TOKEN not in str(err)
    assert TOKEN not in repr(err)
    assert grafana.problems == []
    # Nothing after the failed request was sent.
    calls = grafana.calls()
    assert calls[-1] == fault
    assert calls.count(DB) <= 1


def test_a_wrong_token_is_refused() -> None:
    grafana = FakeGrafana(token="another-token")
    err, url = against(grafana, lambda url: push_dashboards(url, TOKEN, folder_uid="f-1"))
    assert type(err) is PushRejectedError
    assert str(err) == PREFIX.format(url=url, path="/api/folders/f-1") + (
        """HTTP 401 '{"message":"invalid API key"}'"""
    )
    assert (err.status, err.body, err.retryable) == (401, b'{"message":"invalid API key"}', False)
    assert grafana.calls() == [FOLDER]
    assert TOKEN not in str(err)


def test_no_answer_in_time_is_retryable() -> None:
    grafana = FakeGrafana(faults={DB: HANG})
    err, url = against(grafana, lambda url: push_dashboards(url, TOKEN, timeout=0.2))
    assert type(err) is PushUnavailableError
    assert str(err) == PREFIX.format(url=url, path="/api/dashboards/db") + "no answer (timed out)"
    assert (err.status, err.body, err.retryable) == (None, b"", True)
    assert grafana.calls() == [_gets()[0], DB]


def test_nothing_listening_is_retryable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PushUnavailableError) as exc:
        push_dashboards(url, TOKEN, [BOARD], timeout=2.0)
    assert str(exc.value) == (
        f"Grafana at '{url}/api/dashboards/uid/u' did not save the dashboard: "
        "no answer (Connection refused)"
    )
    assert (exc.value.status, exc.value.body, exc.value.retryable) == (None, b"", True)
