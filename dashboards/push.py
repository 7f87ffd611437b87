"""Pushing the dashboards to a running Grafana over its HTTP API.

The provisioning files (:mod:`.grafana`) suit a Grafana deployed with this project; a Grafana run
by someone else takes the dashboards through ``POST /api/dashboards/db`` instead. The request is
a value built without I/O (:func:`push_request`), Grafana's answer is judged without I/O
(:func:`check_reply`), and :func:`send` is the only function that touches the network.

Exceptions::

    UsersignalsError
    ├── ConfigError              an unusable Grafana address or token (usersignals.config)
    └── PushError                a dashboard was not saved (.url, .status, .body, .reason)
        ├── PushRejectedError    Grafana refused it (3xx, 4xx, or not its JSON reply): not retryable
        └── PushUnavailableError no answer, or 5xx: retryable
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from usersignals.dashboards.grafana import build_dashboards
from usersignals.errors import ConfigError, PushError, PushRejectedError, PushUnavailableError

__all__ = [
    "DASHBOARDS_API",
    "DEFAULT_TIMEOUT_S",
    "PushError",
    "PushRejectedError",
    "PushRequest",
    "PushUnavailableError",
    "check_reply",
    "push_dashboards",
    "push_request",
    "send",
]

DASHBOARDS_API = "/api/dashboards/db"
"""Grafana's create-or-update endpoint, below the server's root URL."""

DEFAULT_TIMEOUT_S = 10.0

_QUOTED_BODY_CHARS = 200


@dataclass(frozen=True)
class PushRequest:
    """One HTTP request, as data: what :func:`send` puts on the wire."""

    method: str
    url: str
    # The headers carry the token, so they stay out of the repr (and out of logs).
    headers: Mapping[str, str] = field(repr=False)
    body: bytes


def push_request(
    base_url: str,
    token: str,
    dashboard: Mapping[str, Any],
    *,
    folder_uid: str | None = None,
) -> PushRequest:
    """The request that creates ``dashboard`` in Grafana, or replaces the one with its uid.

    Args:
        base_url: Grafana's root URL (``http://grafana:3000``, or with a sub-path).
        token: a service-account token, sent as ``Authorization: Bearer <token>``.
        dashboard: a dashboard JSON object (see :func:`.grafana.build_dashboards`).
        folder_uid: the folder to save it in; Grafana's General folder when ``None``.

    Returns:
        The request; its body is compact JSON ``{"dashboard", "overwrite": true, "folderUid"?}``.

    Raises:
        ConfigError: ``base_url`` is not an http(s) URL, or ``token`` is empty or has spaces.
    """
    if not _is_http_root(base_url):
        raise ConfigError("Grafana URL", base_url, "expected http(s)://host[:port][/path]")
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        # The value in the message is a stand-in: a token must not reach logs.
        shown = token if not token else f"<{len(token)} characters>"
        raise ConfigError("Grafana token", shown, "expected a non-empty token without spaces")
    payload: dict[str, Any] = {"dashboard": dashboard, "overwrite": True}
    if folder_uid is not None:
        payload["folderUid"] = folder_uid
    return PushRequest(
        method="POST",
        url=base_url.rstrip("/") + DASHBOARDS_API,
        headers={
            "Accept": "application/json",
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
        body=json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),
    )


def _is_http_root(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # a port that is not a number raises ValueError here
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.query or parts.fragment)
    )


def check_reply(url: str, status: int, body: bytes) -> dict[str, Any]:
    """Grafana's JSON reply to a push (``id``, ``uid``, ``url``, ``version``, ...).

    Raises:
        PushRejectedError: a 3xx or 4xx status, or a 2xx whose body is not a JSON object
            (something other than Grafana's API answered).
        PushUnavailableError: a 5xx status.
    """
    text = body.decode("utf-8", errors="replace")
    quoted = repr(text[:_QUOTED_BODY_CHARS])
    if status >= 500:
        raise PushUnavailableError(url, status, body, f"HTTP {status} {quoted}")
    if status >= 300 or status < 200:
        raise PushRejectedError(url, status, body, f"HTTP {status} {quoted}")
    try:
        reply = json.loads(text)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        reason = f"HTTP {status} with a reply that is not a JSON object: {quoted}"
        raise PushRejectedError(url, status, body, reason)
    return reply


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would repeat a redirected POST as a bodiless GET and report its answer;
    # a redirect means a wrong address, so it is returned as the reply instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def send(request: PushRequest, *, timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """Sends one request and returns Grafana's JSON reply (see :func:`check_reply`).

    Raises:
        PushRejectedError: Grafana refused the request.
        PushUnavailableError: no connection, a timeout, or a 5xx status.
    """
    req = urllib.request.Request(
        request.url, data=request.body, headers=dict(request.headers), method=request.method
    )
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            status, body = err.code, err.read()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise PushUnavailableError(request.url, None, b"", f"no answer ({reason})") from err
    return check_reply(request.url, status, body)


def push_dashboards(
    base_url: str,
    token: str,
    dashboards: Iterable[Mapping[str, Any]] | None = None,
    *,
    folder_uid: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """Creates or replaces each dashboard (usersignals' own by default) in a Grafana.

    Returns:
        Grafana's replies, in the dashboards' order.

    Raises:
        ConfigError: see :func:`push_request`.
        PushError: a dashboard was not saved; those before it were.
    """
    boards = build_dashboards().values() if dashboards is None else dashboards
    requests = [push_request(base_url, token, b, folder_uid=folder_uid) for b in boards]
    return [send(r, timeout=timeout) for r in requests]
