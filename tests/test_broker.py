"""The embedded broker is a real Kafka-protocol process."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaTimeoutError

from tests.conftest import Kafka
from usersignals.broker import ensure_topics


def test_topics_are_created_once_with_their_partitions(kafka: Kafka) -> None:
    s = kafka.settings
    assert ensure_topics(kafka.bootstrap, 8, s.topics) == []
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(s.topics))}
    finally:
        admin.close()
    assert described == {s.events_topic: 8, s.dead_topic: 8}


def test_records_round_trip(kafka: Kafka) -> None:
    topic = kafka.settings.events_topic
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    producer.send(topic, key=b"u1", value=b"hello", partition=3).get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest")
    tp = TopicPartition(topic, 3)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    records = consumer.poll(timeout_ms=10_000)[tp]
    consumer.close()
    assert [(r.key, r.value) for r in records] == [(b"u1", b"hello")]


def test_no_client_lets_the_broker_create_a_topic(kafka: Kafka) -> None:
    """A metadata request for a missing topic creates it with the broker's default of 4
    partitions unless it says not to: the project's clients all say not to."""
    import asyncio

    from aiokafka.client import AIOKafkaClient

    from usersignals.broker import NO_AUTO_CREATE, refuse_auto_create, refuse_topic_auto_creation

    prefix = kafka.settings.topic_prefix

    async def ask(topic: str) -> None:
        client = AIOKafkaClient(bootstrap_servers=kafka.bootstrap)
        await client.bootstrap()
        try:
            await client.fetch_all_metadata()
            await client._metadata_update(client.cluster, [topic])
        finally:
            await client.close()

    refuse_topic_auto_creation()
    refuse_topic_auto_creation()  # idempotent
    asyncio.run(ask(f"{prefix}.asked-by-aiokafka"))
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, **NO_AUTO_CREATE)
    try:
        assert not consumer.partitions_for_topic(f"{prefix}.asked-by-kafka-python")
    finally:
        consumer.close()
    # kafka-python 3.0 producers drop the setting: refuse_auto_create puts it back
    producer = refuse_auto_create(
        KafkaProducer(bootstrap_servers=kafka.bootstrap, max_block_ms=1000, **NO_AUTO_CREATE)
    )
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.partitions_for(f"{prefix}.asked-by-a-producer")
    finally:
        producer.close(timeout=5)
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    try:
        listed = set(admin.list_topics())
    finally:
        admin.close()
    assert not {t for t in listed if t.startswith(f"{prefix}.asked-by")}


def test_a_missing_changelog_is_created_with_the_tables_partitions(kafka: Kafka) -> None:
    """(``cleanup.policy=compact`` goes with it; the embedded broker reports no topic configs,
    so only Apache Kafka shows it.)"""
    topic = f"{kafka.settings.topic_prefix}-worker-state-changelog"
    assert ensure_topics(kafka.bootstrap, 8, [topic], compacted=[topic]) == [topic]
    assert ensure_topics(kafka.bootstrap, 8, [topic], compacted=[topic]) == []
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    try:
        described = admin.describe_topics([topic])
    finally:
        admin.close()
    assert len(described[0]["partitions"]) == 8
