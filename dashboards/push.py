"""Pushing the dashboards to a running Grafana over its HTTP API, idempotently.

The provisioning files (:mod:`.grafana`) suit a Grafana deployed with this project; a Grafana run
by someone else takes the dashboards through its HTTP API instead, spoken here by the
``grafana-client`` package. :func:`push_dashboards` makes sure the folder exists
(``GET /api/folders/:uid``, else ``POST /api/folders``), reads each dashboard back
(``GET /api/dashboards/uid/:uid``) and saves (``POST /api/dashboards/db``) only those whose
body or folder differ from what it would push: a second push saves nothing.

What is pushed is a value built without I/O (:func:`with_datasources`, :func:`save_payload`),
and so is the judgement of what Grafana holds (:func:`changes`).

Exceptions::

    UsersignalsError
    ├── ConfigError              an unusable Grafana address, token or uid
    └── PushError                a dashboard was not saved (.url, .status, .body, .reason)
        ├── PushRejectedError    Grafana refused a request (3xx, 4xx, or not its JSON reply):
        │                        not retryable
        └── PushUnavailableError no answer, a timeout, or 5xx: retryable
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import requests
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaServerError

from usersignals.dashboards.grafana import DUCKDB, PROMETHEUS, build_dashboards
from usersignals.errors import ConfigError, PushError, PushRejectedError, PushUnavailableError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FOLDER_TITLE",
    "IGNORED_KEYS",
    "MESSAGE",
    "DashboardOutcome",
    "PushError",
    "PushRejectedError",
    "PushReport",
    "PushUnavailableError",
    "changes",
    "check_address",
    "check_uid",
    "push_dashboards",
    "save_payload",
    "with_datasources",
]

DEFAULT_TIMEOUT_S = 10.0
"""Seconds to wait for each of Grafana's answers."""

FOLDER_TITLE = "usersignals"
"""The title of the folder :func:`push_dashboards` creates when its uid is missing."""

MESSAGE = "Pushed by usersignals dashboards push"
"""The note Grafana keeps with each saved version of a dashboard."""

IGNORED_KEYS = ("id", "version")
"""Keys Grafana assigns itself on every save; they never make a dashboard differ."""

Action = Literal["created", "updated", "unchanged"]

_QUOTED_BODY_CHARS = 200
# Grafana's rule for uids (util.IsValidShortUID, and at most 40 characters).
_UID = re.compile(r"[A-Za-z0-9_-]{1,40}")


@dataclass(frozen=True)
class DashboardOutcome:
    """What a push did (or, in a dry run, would do) to one dashboard.

    ``changes`` names what differed: top-level keys of the dashboard, and ``folder`` when it
    was in another folder; empty for a dashboard created or unchanged.
    """

    uid: str
    title: str
    action: Action
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PushReport:
    """What :func:`push_dashboards` did; with ``dry_run``, what it would have done.

    ``folder`` is ``created`` or ``exists`` (``None`` when pushing to the General folder).
    """

    url: str
    folder_uid: str | None
    folder: Literal["created", "exists"] | None
    dashboards: tuple[DashboardOutcome, ...]
    dry_run: bool

    def count(self, action: Action) -> int:
        return sum(1 for d in self.dashboards if d.action == action)


# ---------------------------------------------------------------- values, without I/O


def check_uid(name: str, uid: str) -> str:
    """``uid`` when Grafana takes it: 1 to 40 letters, digits, ``-`` or ``_``.

    Raises:
        ConfigError: it is not.
    """
    if not _UID.fullmatch(uid):
        raise ConfigError(name, uid, "expected 1 to 40 letters, digits, '-' or '_'")
    return uid


def with_datasources(
    dashboard: Mapping[str, Any],
    *,
    prometheus_uid: str | None = None,
    duckdb_uid: str | None = None,
) -> dict[str, Any]:
    """A copy of ``dashboard`` whose data source references carry the given uids.

    Every ``"datasource": {"type": ..., "uid": ...}`` naming :data:`.grafana.PROMETHEUS` or
    :data:`.grafana.DUCKDB` (on panels and on their targets) gets ``prometheus_uid`` or
    ``duckdb_uid``; ``None`` keeps the provisioned uid. Nothing else changes.

    Raises:
        ConfigError: a uid Grafana would not take (see :func:`check_uid`).
    """
    renames: dict[tuple[str, str], str] = {}
    if prometheus_uid is not None:
        renames[(PROMETHEUS.type, PROMETHEUS.uid)] = check_uid("Prometheus uid", prometheus_uid)
    if duckdb_uid is not None:
        renames[(DUCKDB.type, DUCKDB.uid)] = check_uid("DuckDB uid", duckdb_uid)
    return cast(dict[str, Any], _renamed(copy.deepcopy(dict(dashboard)), renames))


def _renamed(node: Any, renames: Mapping[tuple[str, str], str]) -> Any:
    if isinstance(node, list):
        return [_renamed(item, renames) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _renamed(value, renames) for key, value in node.items()}
    ref = out.get("datasource")
    if isinstance(ref, dict) and set(ref) == {"type", "uid"}:
        new_uid = renames.get((str(ref["type"]), str(ref["uid"])))
        if new_uid is not None:
            out["datasource"] = {"type": ref["type"], "uid": new_uid}
    return out


def save_payload(dashboard: Mapping[str, Any], folder_uid: str | None) -> dict[str, Any]:
    """The body of ``POST /api/dashboards/db`` that saves ``dashboard`` in ``folder_uid``.

    ``{"dashboard", "folderUid", "overwrite": true, "message"}``; without ``folderUid`` when
    ``folder_uid`` is ``None`` (Grafana's General folder). The dashboard goes as it is: its
    ``uid`` names the one it replaces, ``overwrite`` lets it replace whatever version is there.
    """
    payload: dict[str, Any] = {"dashboard": dict(dashboard)}
    if folder_uid is not None:
        payload["folderUid"] = folder_uid
    payload["overwrite"] = True
    payload["message"] = MESSAGE
    return payload


def changes(
    current: Mapping[str, Any], dashboard: Mapping[str, Any], folder_uid: str | None
) -> tuple[str, ...]:
    """What differs between Grafana's ``GET /api/dashboards/uid/:uid`` reply and a push.

    Returns:
        The top-level keys of the dashboard whose values differ (sorted; :data:`IGNORED_KEYS`
        never count), then ``folder`` when the dashboard is in another folder than
        ``folder_uid`` (``None`` and ``""`` both name the General folder). Empty: unchanged.
    """
    raw_board = current.get("dashboard")
    raw_meta = current.get("meta")
    board: Mapping[str, Any] = raw_board if isinstance(raw_board, dict) else {}
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    keys = (set(board) | set(dashboard)) - set(IGNORED_KEYS)
    missing = object()
    differ = sorted(k for k in keys if board.get(k, missing) != dashboard.get(k, missing))
    if (meta.get("folderUid") or "") != (folder_uid or ""):
        differ.append("folder")
    return tuple(differ)


# ---------------------------------------------------------------- Grafana, through grafana-client


class _Dashboards(Protocol):
    """The part of ``grafana_client.elements.Dashboard`` used here, typed."""

    def get_dashboard(self, dashboard_uid: str) -> Any: ...

    def update_dashboard(self, dashboard: Mapping[str, Any]) -> Any: ...


class _Folders(Protocol):
    """The part of ``grafana_client.elements.Folder`` used here, typed."""

    def get_folder(self, uid: str) -> Any: ...

    def create_folder(self, title: str, uid: str | None = None) -> Any: ...


def check_address(base_url: str, token: str) -> None:
    """Raises :class:`ConfigError` unless ``base_url`` is an http(s) root and ``token`` usable.

    The token never appears in the message: it is shown as its length.
    """
    if not _is_http_root(base_url):
        raise ConfigError("Grafana URL", base_url, "expected http(s)://host[:port][/path]")
    if not token or not all(c.isascii() and c.isprintable() and c != " " for c in token):
        shown = token if not token else f"<{len(token)} characters>"
        reason = "expected a non-empty ASCII token without spaces"
        raise ConfigError("Grafana token", shown, reason)


def _is_http_root(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # a port that is not a number raises ValueError here
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.query or parts.fragment or parts.username or parts.password)
    )


def _api(base_url: str, token: str, timeout: float) -> GrafanaApi:
    """A client for the Grafana at ``base_url`` (a sub-path and an IPv6 host kept)."""
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname or ""
    prefix = parts.path.strip("/")
    api = GrafanaApi(
        auth=token,  # sent as "Authorization: Bearer <token>"
        host=f"[{host}]" if ":" in host else host,
        port=parts.port,
        url_path_prefix=f"{prefix}/" if prefix else "",
        protocol=parts.scheme,
        timeout=timeout,
    )
    # A redirect means a wrong address (a login page, a proxy): it is reported, not followed.
    api.client.s.max_redirects = 0
    return api


def _quoted(response: Any) -> tuple[bytes, str]:
    """The reply grafana-client decoded, as bytes, and quoted for a message."""
    if isinstance(response, (dict, list)):
        text = json.dumps(response, ensure_ascii=False, separators=(",", ":"))
    else:
        text = "" if response is None else str(response)
    return text.encode(), repr(text[:_QUOTED_BODY_CHARS])


def _no_answer(err: BaseException) -> str:
    """``no answer (...)``: the innermost cause's words (``Connection refused``), no URL."""
    cause: BaseException = err
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cast(BaseException, cause.__cause__ or cause.__context__)
    if isinstance(cause, OSError) and cause.strerror:
        return f"no answer ({cause.strerror})"
    return f"no answer ({type(cause).__name__})"


@contextlib.contextmanager
def _calling(url: str) -> Iterator[None]:
    """Turns what grafana-client (and requests below it) raises into the :class:`PushError`s."""
    try:
        yield
    except requests.Timeout as err:
        raise PushUnavailableError(url, None, b"", "no answer (timed out)") from err
    except GrafanaServerError as err:
        body, quoted = _quoted(err.response)
        reason = f"HTTP {err.status_code} {quoted}"
        raise PushUnavailableError(url, err.status_code, body, reason) from err
    except GrafanaClientError as err:  # 4xx, GrafanaUnauthorizedError and GrafanaBadInputError
        body, quoted = _quoted(err.response)
        reason = f"HTTP {err.status_code} {quoted}"
        raise PushRejectedError(url, err.status_code, body, reason) from err
    except GrafanaException as err:  # the request failed on its way
        raise PushUnavailableError(url, None, b"", _no_answer(err)) from err
    except json.JSONDecodeError as err:  # a 2xx reply, declared JSON, that is not
        body, quoted = _quoted(err.doc)
        raise PushRejectedError(url, None, body, f"a reply that is not JSON: {quoted}") from err
    except OSError as err:  # requests' errors: a redirect not followed, no connection, a reset
        response = getattr(err, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and 300 <= status < 400:
            body = getattr(response, "content", None) or b""
            quoted = repr(body.decode("utf-8", errors="replace")[:_QUOTED_BODY_CHARS])
            raise PushRejectedError(url, status, body, f"HTTP {status} {quoted}") from err
        raise PushUnavailableError(url, None, b"", _no_answer(err)) from err


def _reply(url: str, reply: Any) -> dict[str, Any]:
    """Grafana's reply, which must be a JSON object (else something else answered)."""
    if not isinstance(reply, dict):
        body, quoted = _quoted(reply)
        raise PushRejectedError(url, None, body, f"a reply that is not a JSON object: {quoted}")
    return reply


def _is_missing(err: PushError) -> bool:
    """A 404 with a JSON object (Grafana's ``{"message": ...}``): nothing has that uid.

    Any other 404 (an HTML page) means the URL is not Grafana's API, and stays an error.
    """
    if not (isinstance(err, PushRejectedError) and err.status == 404):
        return False
    try:
        return isinstance(json.loads(err.body), dict)
    except ValueError:
        return False


def push_dashboards(
    base_url: str,
    token: str,
    dashboards: Iterable[Mapping[str, Any]] | None = None,
    *,
    folder_uid: str | None = None,
    folder_title: str = FOLDER_TITLE,
    prometheus_uid: str | None = None,
    duckdb_uid: str | None = None,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> PushReport:
    """Makes the Grafana at ``base_url`` hold the dashboards (usersignals' own by default).

    Creates the folder ``folder_uid`` (titled ``folder_title``) when missing; ``None`` pushes to
    the General folder. Reads each dashboard back by its uid and saves it only when its body
    (without :data:`IGNORED_KEYS`) or its folder differs; so a second push saves nothing. With
    ``dry_run`` nothing is created or saved: only ``GET`` requests are sent.

    Returns:
        What was done (or would be) to the folder and to each dashboard, in their order.

    Raises:
        ConfigError: an unusable address, token or uid (before any request).
        PushError: a request failed; the folder and the dashboards before it were saved.
    """
    check_address(base_url, token)
    if folder_uid is not None:
        check_uid("folder uid", folder_uid)
        if not folder_title.strip():
            raise ConfigError("folder title", folder_title, "expected a title that is not blank")
    boards = build_dashboards().values() if dashboards is None else dashboards
    wanted = [
        with_datasources(b, prometheus_uid=prometheus_uid, duckdb_uid=duckdb_uid) for b in boards
    ]
    for board in wanted:
        check_uid("dashboard uid", str(board.get("uid", "")))
    root = base_url.rstrip("/") + "/api"
    api = _api(base_url, token, timeout)
    try:
        folder = (
            None
            if folder_uid is None
            else _ensure_folder(api, root, folder_uid, folder_title, dry_run)
        )
        outcomes = tuple(_push_one(api, root, board, folder_uid, dry_run) for board in wanted)
    finally:
        api.client.s.close()
    return PushReport(base_url, folder_uid, folder, outcomes, dry_run)


def _ensure_folder(
    api: GrafanaApi, root: str, uid: str, title: str, dry_run: bool
) -> Literal["created", "exists"]:
    folders = cast(_Folders, api.folder)
    url = f"{root}/folders/{uid}"
    try:
        with _calling(url):
            _reply(url, folders.get_folder(uid))
        return "exists"
    except PushError as err:
        if not _is_missing(err):
            raise
    if not dry_run:
        url = f"{root}/folders"
        with _calling(url):
            _reply(url, folders.create_folder(title, uid=uid))
    return "created"


def _push_one(
    api: GrafanaApi,
    root: str,
    board: dict[str, Any],
    folder_uid: str | None,
    dry_run: bool,
) -> DashboardOutcome:
    dashboards = cast(_Dashboards, api.dashboard)
    uid, title = str(board["uid"]), str(board.get("title", ""))
    url = f"{root}/dashboards/uid/{uid}"
    action: Action
    differ: tuple[str, ...]
    try:
        with _calling(url):
            current = _reply(url, dashboards.get_dashboard(uid))
    except PushError as err:
        if not _is_missing(err):
            raise
        action, differ = "created", ()
    else:
        differ = changes(current, board, folder_uid)
        if not differ:
            return DashboardOutcome(uid, title, "unchanged")
        action = "updated"
    if not dry_run:
        url = f"{root}/dashboards/db"
        with _calling(url):
            _reply(url, dashboards.update_dashboard(save_payload(board, folder_uid)))
    return DashboardOutcome(uid, title, action, differ)
