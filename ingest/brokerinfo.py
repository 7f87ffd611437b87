"""Which broker the collector writes to: the embedded ``tansu`` or Apache Kafka.

Told from the broker itself, by the cluster id its metadata reports (the embedded broker's is
``tansu_cluster``; Apache Kafka's is a random base64 UUID), so a setting cannot get it wrong.
``/healthz`` shows it, because the two keep different promises: the embedded broker stores in
memory, so a ``2xx`` there means "stored in this broker process" and a restart loses it all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped,unused-ignore]
from aiokafka.protocol.metadata import (  # type: ignore[import-untyped,unused-ignore]
    MetadataRequest,
)

__all__ = ["BrokerInfo", "cluster_id_of"]

_EMBEDDED_CLUSTER_PREFIX = "tansu"


@dataclass(frozen=True)
class BrokerInfo:
    """Which broker the collector writes to, as ``/healthz`` tells it (no credentials).

    ``kind`` is ``tansu`` (the embedded broker: memory storage, so a 2xx means "stored in this
    broker process") or ``kafka``; ``durable`` is whether stored events outlive a broker
    restart (``None`` when unknown).
    """

    kind: str
    cluster_id: str | None
    bootstrap: str

    @classmethod
    def from_cluster_id(cls, cluster_id: str | None, bootstrap: str) -> BrokerInfo:
        if cluster_id is None:
            kind = "unknown"
        elif cluster_id.startswith(_EMBEDDED_CLUSTER_PREFIX):
            kind = "tansu"
        else:
            kind = "kafka"
        return cls(kind, cluster_id, _without_credentials(bootstrap))

    def json(self) -> dict[str, Any]:
        durable = None if self.kind == "unknown" else self.kind == "kafka"
        return {
            "kind": self.kind,
            "durable": durable,
            "cluster_id": self.cluster_id,
            "bootstrap": self.bootstrap,
        }


def _without_credentials(bootstrap: str) -> str:
    """``host:port`` entries only: anything up to an ``@`` and any scheme are dropped."""
    hosts = (h.strip().rpartition("@")[2].rpartition("://")[2] for h in bootstrap.split(","))
    return ",".join(h for h in hosts if h)


async def cluster_id_of(producer: AIOKafkaProducer) -> str | None:
    """The cluster id the broker reports in its metadata (v2 and later carry one)."""
    client = producer.client
    nodes = client.cluster.brokers()
    if not nodes:
        return None
    answer = await client.send(next(iter(nodes)).nodeId, MetadataRequest([]))
    cluster_id = getattr(answer, "cluster_id", None)
    return cluster_id if isinstance(cluster_id, str) else None
