"""Who may write to the collector, how often, from which web origin, in which media type.

Pure functions of header values (and :class:`Gate`, token buckets over a clock passed in), so
that the HTTP shell in :mod:`usersignals.ingest.collector` only moves bytes and a table of
cases tests the policy without a server. No message here quotes a key or any part of an
``Authorization`` header: a key sent the wrong way is still a key.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from usersignals.ingest.bodies import ENCODINGS
from usersignals.ingest.ratelimit import Buckets

__all__ = [
    "CORS_MAX_AGE_S",
    "Gate",
    "Refusal",
    "bearer_token",
    "check_content_encoding",
    "check_content_type",
    "check_write_key",
    "cors_headers",
    "parse_origins",
]

CORS_MAX_AGE_S = 86_400
"""How long a browser may cache a preflight answer (one day)."""

_ALLOW_METHODS = "POST, OPTIONS"
_ALLOW_HEADERS = "Authorization, Content-Type"


def check_write_key(authorization: str | None, keys: Sequence[str]) -> str | None:
    """Checks an ``Authorization`` header against the configured write keys.

    Every key is compared in constant time, and all of them are compared whatever the
    outcome, so the answer time does not tell how much of a key was right or which key
    matched. With no keys configured every request may write (the collector warns at start).

    Args:
        authorization: The header value, ``None`` when absent.
        keys: The accepted keys (``Settings.write_keys``).

    Returns:
        ``None`` when the request may write, else a message saying why not.
    """
    if not keys:
        return None
    if authorization is None:
        return "missing Authorization header; expected 'Bearer <write key>'"
    token = bearer_token(authorization)
    if token is None:
        return "Authorization header must be 'Bearer <write key>'"
    given = token.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode("utf-8"))
    return None if matched else "unknown write key"


def bearer_token(authorization: str | None) -> str | None:
    """The token of a ``Bearer`` ``Authorization`` header, ``None`` for any other form."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def check_content_encoding(encoding: str | None) -> str | None:
    """Checks a ``Content-Encoding`` header: none, ``identity``, ``gzip`` or ``deflate``."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity" or coding in ENCODINGS:
        return None
    return "Content-Encoding must be gzip, deflate or identity"


def check_content_type(content_type: str | None) -> str | None:
    """Checks a ``Content-Type`` header: JSON in UTF-8 only.

    ``application/json`` with no parameters or with ``charset=utf-8`` is accepted (JSON
    text is UTF-8 by RFC 8259); anything else is refused.

    Returns:
        ``None`` when acceptable, else a message quoting the header.
    """
    if content_type is None:
        return "missing Content-Type; expected 'application/json'"
    media, *params = (part.strip() for part in content_type.split(";"))
    if media.lower() != "application/json":
        return f"Content-Type must be 'application/json', got {content_type!r}"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return f"Content-Type charset must be utf-8, got {content_type!r}"
    return None


def parse_origins(allow_origin: str) -> tuple[str, ...]:
    """Splits the configured allowed origins (``*`` or a comma-separated list)."""
    origins = tuple(o.strip().rstrip("/") for o in allow_origin.split(",") if o.strip())
    return ("*",) if not origins or "*" in origins else origins


def cors_headers(
    origin: str | None, allowed: Sequence[str], *, preflight: bool
) -> Mapping[str, str]:
    """CORS headers for a response to a request from ``origin``.

    With ``*`` allowed every origin may write (write keys still apply); with a list, only a
    listed origin is echoed back, and ``Vary: Origin`` tells caches that the answer depends
    on it. An unlisted origin gets no ``Access-Control-Allow-Origin``, so its browser hides
    the answer.

    Args:
        origin: The request's ``Origin`` header, ``None`` when absent.
        allowed: Result of :func:`parse_origins`.
        preflight: Whether this answers an ``OPTIONS`` preflight (adds methods, headers and
            max age).
    """
    headers: dict[str, str] = {}
    if "*" in allowed:
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Vary"] = "Origin"
        if origin is not None and origin.rstrip("/") in allowed:
            headers["Access-Control-Allow-Origin"] = origin
    if preflight:
        headers["Access-Control-Allow-Methods"] = _ALLOW_METHODS
        headers["Access-Control-Allow-Headers"] = _ALLOW_HEADERS
        headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
    else:
        headers["Access-Control-Expose-Headers"] = "Retry-After"
    return headers


@dataclass(frozen=True)
class Refusal:
    """Why a request may not go on: status, error code, message and extra headers."""

    status: int
    error: str
    message: str
    headers: Mapping[str, str]


def _slow_down(error: str, what: str, delay: int) -> Refusal:
    return Refusal(
        429, error, f"too many {what}; retry after {delay} s", {"Retry-After": str(delay)}
    )


class Gate:
    """The rate limits in front of the write keys: per client, per key, refused keys.

    In this order: a client address over its request rate gets 429; a client that sent too
    many refused keys gets 429 *before its key is even checked* (so guessing cannot go on at
    the refusal rate); a wrong key is 401 and spends one of the client's refused-key tokens;
    a good key over its own rate gets 429.

    Args:
        keys: The accepted write keys (none: every request may write, no key limit).
        client: ``(rate, burst)`` of requests per client address.
        key: ``(rate, burst)`` of requests per write key.
        failed: ``(rate, burst)`` of refused keys per client address.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        keys: Sequence[str],
        *,
        client: tuple[float, int],
        key: tuple[float, int],
        failed: tuple[float, int],
        clock: Callable[[], float],
    ) -> None:
        self.keys = tuple(keys)
        self.clients = Buckets(*client, clock=clock)
        self.per_key = Buckets(*key, clock=clock)
        self.failed = Buckets(*failed, clock=clock)

    def admit(self, client: str, authorization: str | None) -> Refusal | None:
        """``None`` when the request may go on, else the refusal to answer with."""
        delay = self.clients.take(client)
        if delay:
            return _slow_down("rate_limited", "requests from this client", delay)
        if not self.keys:
            return None
        delay = self.failed.wait(client)
        if delay:
            return _slow_down("too_many_failed_keys", "refused write keys from this client", delay)
        problem = check_write_key(authorization, self.keys)
        if problem is not None:
            self.failed.take(client)
            error = 'Bearer realm="usersignals"'
            if authorization is not None:
                error += ', error="invalid_token"'
            return Refusal(401, "unauthorized", problem, {"WWW-Authenticate": error})
        delay = self.per_key.take(bearer_token(authorization) or "")
        if delay:
            return _slow_down("rate_limited", "requests with this write key", delay)
        return None
