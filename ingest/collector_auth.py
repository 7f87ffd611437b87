"""Who may write to the collector, how often, from which web origin, in which media type.

Pure functions of header values (and :class:`Gate`, token buckets over a clock passed in), so
that the HTTP shell in :mod:`usersignals.ingest.collector` only moves bytes and a table of
cases tests the policy without a server. No message here quotes a key or any part of an
``Authorization`` header: a key sent the wrong way is still a key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from usersignals.ingest.bodies import ENCODINGS
from usersignals.ingest.ratelimit import Buckets

__all__ = [
    "CAPTURE_ALLOW_HEADERS",
    "CORS_MAX_AGE_S",
    "Gate",
    "Refusal",
    "basic_user",
    "bearer_token",
    "capture_cors_headers",
    "check_content_encoding",
    "check_content_type",
    "check_write_key",
    "cors_headers",
    "header_key",
    "key_matches",
    "parse_origins",
]

CORS_MAX_AGE_S = 86_400
"""How long a browser may cache a preflight answer (one day)."""

_ALLOW_METHODS = "POST, OPTIONS"
_ALLOW_HEADERS = "Authorization, Content-Type"

CAPTURE_ALLOW_HEADERS = (
    "Authorization, Content-Type, Content-Encoding, AnonymousId, SP-Anonymous, X-Retry-Count"
)
"""Request headers a browser may send to a capture endpoint: those the browser SDKs set
(RudderStack's ``AnonymousId``, Snowplow's ``SP-Anonymous``, Segment's ``X-Retry-Count``)."""

_CAPTURE_METHODS = "GET, POST, OPTIONS"
_UNKNOWN_KEY = "unknown write key"


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
    return None if key_matches(token, keys) else _UNKNOWN_KEY


def key_matches(given: str, keys: Sequence[str]) -> bool:
    """Whether ``given`` is one of ``keys``: every key compared in constant time, all of them
    whatever the outcome, so the time taken tells nothing of which key or how much matched."""
    data = given.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(data, key.encode("utf-8"))
    return matched


def bearer_token(authorization: str | None) -> str | None:
    """The token of a ``Bearer`` ``Authorization`` header, ``None`` for any other form."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def basic_user(authorization: str | None) -> str | None:
    """The user of a ``Basic`` ``Authorization`` header (``base64("key:")`` as Segment and
    RudderStack send their write key), ``None`` for any other form or an empty user."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user = decoded.partition(":")[0]
    return user or None


def header_key(authorization: str | None) -> str | None:
    """The write key of an ``Authorization`` header: a ``Bearer`` token, else a ``Basic``
    user; ``None`` for no header or any other form (the key may then be in the body)."""
    return bearer_token(authorization) or basic_user(authorization)


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


def capture_cors_headers(
    origin: str | None,
    allowed: Sequence[str],
    *,
    preflight: bool,
    private_network: bool = False,
) -> Mapping[str, str]:
    """CORS headers of a capture endpoint's answer (the SDK wire formats).

    The browser SDKs send with credentials (posthog-js's XHR, the Snowplow tracker), and a
    browser refuses ``Access-Control-Allow-Origin: *`` on a request with credentials: so an
    allowed ``origin`` (any, when ``*`` is configured) is echoed back with
    ``Access-Control-Allow-Credentials: true``, and ``Vary: Origin`` is always set. No cookie
    is read, so credentials allow nothing more than the request itself.

    Args:
        origin: The request's ``Origin`` header, ``None`` when absent.
        allowed: Result of :func:`parse_origins`.
        preflight: Whether this answers an ``OPTIONS`` preflight.
        private_network: Whether the preflight asked for private network access (Chrome's
            ``Access-Control-Request-Private-Network: true``, a public page posting to a
            collector on a private address).
    """
    headers: dict[str, str] = {"Vary": "Origin"}
    listed = origin is not None and ("*" in allowed or origin.rstrip("/") in allowed)
    if listed and origin is not None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
    if preflight:
        headers["Access-Control-Allow-Methods"] = _CAPTURE_METHODS
        headers["Access-Control-Allow-Headers"] = CAPTURE_ALLOW_HEADERS
        headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
        if private_network and listed:
            headers["Access-Control-Allow-Private-Network"] = "true"
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
        refusal = self.admit_client(client)
        if refusal is not None or not self.keys:
            return refusal
        return self.admit_key(
            client,
            bearer_token(authorization) or "",
            check_write_key(authorization, self.keys),
            sent=authorization is not None,
        )

    def admit_client(self, client: str) -> Refusal | None:
        """The client's own request rate only (the first check of every request)."""
        delay = self.clients.take(client)
        if delay:
            return _slow_down("rate_limited", "requests from this client", delay)
        return None

    def admit_capture(self, client: str, key: str | None, missing: str) -> Refusal | None:
        """The write key of a capture request (:func:`header_key`, else the one in its body),
        after :meth:`admit_client`: refused keys, the key itself, the key's rate.

        Args:
            client: The client address.
            key: The key found, ``None`` when the request carries none.
            missing: The message when there is none (it says where a key is looked for).
        """
        if not self.keys:
            return None
        problem = missing if key is None else None if key_matches(key, self.keys) else _UNKNOWN_KEY
        return self.admit_key(client, key or "", problem, sent=key is not None)

    def admit_key(
        self, client: str, bucket: str, problem: str | None, *, sent: bool, forbidden: bool = False
    ) -> Refusal | None:
        """The part of the gate after the client rate, once the credential is judged.

        A client with too many refused credentials is 429 before ``problem`` counts; a
        ``problem`` is 401 and spends one of the client's refused-key tokens; a good
        credential is then held to its own rate (the bucket named ``bucket``).

        Args:
            client: The client address.
            bucket: The name of the credential's rate bucket (the key itself).
            problem: Why the credential is refused, ``None`` when it is good.
            sent: Whether the request carried a credential (for ``WWW-Authenticate``).
            forbidden: Answer a ``problem`` with 403 ``forbidden`` rather than 401: the
                request is not allowed whatever key it sent (Snowplow's allow-lists).
        """
        delay = self.failed.wait(client)
        if delay:
            return _slow_down("too_many_failed_keys", "refused write keys from this client", delay)
        if problem is not None:
            self.failed.take(client)
            if forbidden:
                return Refusal(403, "forbidden", problem, {})
            error = 'Bearer realm="usersignals"'
            if sent:
                error += ', error="invalid_token"'
            return Refusal(401, "unauthorized", problem, {"WWW-Authenticate": error})
        delay = self.per_key.take(bucket)
        if delay:
            return _slow_down("rate_limited", "requests with this write key", delay)
        return None
