"""The README's examples work as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from usersignals.broker import EmbeddedBroker, ensure_topics
from usersignals.cli import COMMANDS
from usersignals.ingest.contract import decode_record

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_it_opens_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert "make demo" in first_block
    assert "make test" in first_block


def test_every_cli_command_is_in_the_reference() -> None:
    documented = set(re.findall(r"^\| `usersignals (\w+)", README, re.MULTILINE))
    assert documented == set(COMMANDS)


def test_the_sdk_example_delivers_its_events(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = next(b for b in README.split("```python")[1:] if "Tracker(" in b).split("```")[0]
    ensure_topics(broker.bootstrap, 8, ("usersignals.events", "usersignals.events.dead"))
    monkeypatch.chdir(tmp_path)  # the SDK's spool lives under ./.usersignals
    exec(compile(code.replace('"kafka:9092"', repr(broker.bootstrap)), "README", "exec"), {})

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    tps = [TopicPartition("usersignals.events", p) for p in range(8)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    types: list[str] = []
    for records in consumer.poll(timeout_ms=5_000).values():
        for record in records:
            types.extend(e.type for e in decode_record(record.value)[0])
    consumer.close()
    assert sorted(types) == sorted(
        ["session_start", "message", "feedback", "preference", "risk_flag"]
    )
