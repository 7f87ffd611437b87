"""``usersignals deadletter list|replay`` against a loaded warehouse and the real broker."""

from __future__ import annotations

import json
from collections import Counter

from click.testing import CliRunner
from kafka import KafkaConsumer, TopicPartition

from tests.conftest import Kafka
from tests.warehouse.test_loader import make_records, produce
from usersignals.cli import cli
from usersignals.warehouse.loader import run_loader


def topic_values(kafka: Kafka) -> Counter[tuple[int, bytes]]:
    """(partition, value) of every record on the events topic."""
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=2000
    )
    consumer.assign([TopicPartition(kafka.settings.events_topic, p) for p in range(8)])
    values = Counter((m.partition, m.value) for m in consumer)
    consumer.close()
    return values


def test_list_and_replay(kafka: Kafka) -> None:
    produce(kafka, make_records(8, per_record=6))
    run_loader(kafka.settings, drain=True)
    env = kafka.env()
    runner = CliRunner()
    out = runner.invoke(cli, ["deadletter", "list", "--summary", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert [json.loads(line) for line in out.output.splitlines()] == [
        {"reason": "bad_batch", "count": 1},
        {"reason": "missing_field", "count": 1},
        {"reason": "not_json", "count": 1},
        {"reason": "not_utf8", "count": 1},
    ]
    rows = runner.invoke(cli, ["deadletter", "list", "--reason", "not_json", "--json"], env=env)
    [row] = [json.loads(line) for line in rows.output.splitlines()]
    assert (row["source_partition"], row["source_offset"], row["raw"]) == (1, 1, "not json")
    text = runner.invoke(cli, ["deadletter", "list", "--reason", "bad_batch"], env=env)
    assert (
        text.output == "2:1:None\tbad_batch\tEmpty batch (a batch holds 1 to 1000 events)\t'[]'\n"
    )

    before = topic_values(kafka)
    dry = runner.invoke(cli, ["deadletter", "replay", "--dry-run"], env=env)
    assert dry.output.startswith("would send 4 records to ")
    sent = runner.invoke(cli, ["deadletter", "replay", "--reason", "not_json", "--json"], env=env)
    assert json.loads(sent.output) == {"sent": 1, "skipped": 0, "cut": 0}
    again = runner.invoke(cli, ["deadletter", "replay", "--json"], env=env)
    assert json.loads(again.output) == {"sent": 3, "skipped": 1, "cut": 0}
    replayed = topic_values(kafka) - before
    assert replayed == Counter(
        {
            (1, b"not json"): 1,
            (2, b"[]"): 1,
            (3, b"\xff\xfe"): 1,
            (3, b'{"event_id": "bad", "type": "message", "user_id": "u"}'): 1,
        }
    )
