"""The SDK's kafka-python producer: how it is opened, closed and asked about its sends.

kafka-python (3.0) needs some care here, all of it kept in this module:

- a producer that cannot bootstrap leaves sockets and a network thread behind, so one is only
  built once a bootstrap server accepts a TCP connection (:func:`probe`);
- a failed connection attempt leaks its socket (patched once, :func:`open_producer`);
- ``close()`` raises before stopping its network thread when batches are still pending
  (:func:`close_producer` stops it anyway).

A send's outcome is a kafka-python future, or the exception ``send`` raised at once; the
helpers at the end read either.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from typing import Any

from usersignals.broker import refuse_auto_create
from usersignals.ingest.event import MAX_MESSAGE_BYTES

__all__ = [
    "close_producer",
    "error_of",
    "is_done",
    "open_producer",
    "probe",
    "retryable",
    "unreachable",
    "wait_for",
]

log = logging.getLogger(__name__)


def open_producer(
    bootstrap: str,
    topic: str,
    *,
    connect_timeout_ms: int,
    delivery_timeout_ms: int,
    backoff_s: float,
    overrides: Mapping[str, Any],
) -> tuple[Any, int]:
    """A connected ``KafkaProducer`` (acks=all, idempotent) and the partition count of
    ``topic``; ``overrides`` replace any setting. Raises when the broker or the topic's
    metadata cannot be had."""
    from kafka import KafkaProducer

    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": "usersignals-tracker",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
        "batch_size": MAX_MESSAGE_BYTES,
        "max_request_size": MAX_MESSAGE_BYTES,
        "max_block_ms": connect_timeout_ms,
        "bootstrap_timeout_ms": connect_timeout_ms,
        "request_timeout_ms": min(30_000, max(1_000, delivery_timeout_ms // 2)),
        "delivery_timeout_ms": delivery_timeout_ms,
        "retry_backoff_ms": max(1, int(backoff_s * 1000)),
        "allow_auto_create_topics": False,
    }
    settings.update(overrides)
    probe(bootstrap, connect_timeout_ms / 1000)
    _close_failed_connections()
    producer = refuse_auto_create(KafkaProducer(**settings))
    getattr(producer, "_unregister_cleanup", lambda: None)()  # the Tracker closes it
    try:
        partitions = len(producer.partitions_for(topic))
    except Exception:
        close_producer(producer, 0.0)
        raise
    return producer, partitions


def unreachable(exc: BaseException) -> bool:
    """The broker did not answer (or is gone): spool rather than retry in a loop."""
    from kafka.errors import IllegalStateError, KafkaConnectionError, KafkaTimeoutError

    return isinstance(
        exc, KafkaTimeoutError | KafkaConnectionError | IllegalStateError | ConnectionError
    )


def retryable(exc: BaseException) -> bool:
    """Worth sending again: kafka-python says so, or the broker did not answer."""
    return bool(getattr(exc, "retriable", False)) or unreachable(exc)


def probe(bootstrap: str, timeout: float) -> None:
    """Raises ``ConnectionError`` unless some bootstrap server accepts a TCP connection.

    A ``KafkaProducer`` that fails to bootstrap leaves its sockets and network thread behind,
    so none is built while nothing listens.
    """
    last: OSError | None = None
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout):
                return
        except (OSError, ValueError) as exc:
            last = exc if isinstance(exc, OSError) else OSError(str(exc))
    raise ConnectionError(f"no bootstrap server of {bootstrap!r} accepts connections: {last}")


def close_producer(producer: Any, timeout: float) -> None:
    """Closes a producer, its sockets and its network thread, whatever is still pending.

    kafka-python's ``close()`` raises from its flush when batches are still pending (a broker
    that is gone), before it stops the network thread; those batches are spooled by then, so
    they are abandoned and the thread is told to stop.
    """
    try:
        producer.close(timeout=timeout)
    except Exception as exc:
        log.debug("Closing the producer: %r; abandoning its pending batches", exc)
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()


def _close_failed_connections() -> None:
    """Makes kafka-python close the socket of a connection attempt that fails.

    Its ``KafkaNetSocket.sock_connect`` (3.0) raises on a refused or timed-out connection and
    drops the socket unclosed: a producer whose broker is gone leaks one file descriptor per
    reconnection attempt (a ``ResourceWarning`` when collected). Installed once, idempotent.
    """
    from kafka.net.inet import KafkaNetSocket

    connect = KafkaNetSocket.sock_connect
    if getattr(connect, "closes_on_failure", False):
        return

    async def sock_connect(self: Any, net: Any, sock: Any, sockaddr: Any, **kw: Any) -> Any:
        try:
            return await connect(self, net, sock, sockaddr, **kw)
        except BaseException:
            sock.close()
            raise

    sock_connect.closes_on_failure = True  # type: ignore[attr-defined]
    KafkaNetSocket.sock_connect = sock_connect


def is_done(future: Any) -> bool:
    """Whether a send's future (or the exception ``send`` raised at once) has an outcome."""
    return isinstance(future, BaseException) or bool(future.is_done)


def error_of(future: Any) -> BaseException | None:
    """The error of a done future (``None``: acknowledged)."""
    if isinstance(future, BaseException):
        return future
    return future.exception if future.failed() else None


def wait_for(future: Any, deadline: float) -> BaseException | None:
    """The future's error once it is done, ``KafkaTimeoutError`` if not by ``deadline``."""
    if isinstance(future, BaseException):
        return future
    try:
        future.get(timeout=max(0.0, deadline - time.monotonic()))
    except Exception as exc:
        return exc
    return None
