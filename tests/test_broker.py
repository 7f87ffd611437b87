"""The embedded broker is a real Kafka-protocol process."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

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
