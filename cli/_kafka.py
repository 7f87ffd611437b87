"""Kafka as the commands meet it: unreachable brokers as one clear error, and a clean close.

:func:`kafka_errors` turns what kafka-python raises when the broker does not answer into a
:class:`~usersignals.broker.BrokerError` (one line, exit 2, through ``usersignals.cli.main``);
:func:`require_kafka` checks that the broker answers before a long-running command starts.
:func:`close_fetches_quietly` fixes aiokafka's consumer ``stop()`` with the broker gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from usersignals.broker import NO_AUTO_CREATE, refuse_auto_create
from usersignals.config import Settings
from usersignals.errors import BrokerError

__all__ = ["client_timeouts", "close_fetches_quietly", "kafka_errors", "require_kafka"]


def client_timeouts(seconds: float, *, producer: bool = False) -> dict[str, int]:
    """kafka-python client settings that bound how long an unreachable broker is tried."""
    ms = max(int(seconds * 1000), 1)
    out = {"bootstrap_timeout_ms": ms, "request_timeout_ms": ms + 1000}
    if producer:
        out["max_block_ms"] = ms
    return out


def unreachable(settings: Settings, detail: object) -> BrokerError:
    """The error of a command that could not talk to Kafka (retryable)."""
    return BrokerError(
        f"Kafka at {settings.bootstrap!r} did not answer within {settings.kafka_timeout_s:g}s"
        f" ({detail})",
        retryable=True,
    )


@contextlib.contextmanager
def kafka_errors(settings: Settings) -> Iterator[None]:
    """Raises :func:`unreachable` for kafka-python's errors inside the block."""
    from kafka.errors import KafkaError

    try:
        yield
    except KafkaError as exc:
        raise unreachable(settings, type(exc).__name__) from exc


def require_kafka(settings: Settings) -> None:
    """Fails with :func:`unreachable` unless the broker answers a metadata request in time.

    Raises:
        BrokerError: no answer within ``settings.kafka_timeout_s`` (retryable).
    """
    from kafka import KafkaConsumer

    with kafka_errors(settings):
        consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap,
            **NO_AUTO_CREATE,
            **client_timeouts(settings.kafka_timeout_s),
        )
        refuse_auto_create(consumer)
        try:
            consumer.topics()
        finally:
            consumer.close()


def close_fetches_quietly() -> None:
    """aiokafka's ``Fetcher.close`` without the stray ``CancelledError`` (aiokafka#647).

    ``close()`` cancels the pending fetch tasks and awaits them; a task that failed to reach
    the broker is then sleeping its retry backoff outside the block that handles
    cancellation, so awaiting it raises ``CancelledError`` out of ``consumer.stop()``. With
    the broker gone that killed the loader with a traceback at SIGTERM, and Faust's consumer
    thread, whose stop Faust then waited on for its whole timeout. Here the remaining tasks
    are awaited with their cancellation expected; a real cancellation of the caller still
    propagates. Idempotent.
    """
    from aiokafka.consumer.fetcher import Fetcher

    original = Fetcher.close
    if getattr(original, "_usersignals_quiet", False):
        return

    async def close(self: Any) -> None:
        try:
            await original(self)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            for pending in list(self._pending_tasks):
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending

    close._usersignals_quiet = True  # type: ignore[attr-defined]
    Fetcher.close = close
