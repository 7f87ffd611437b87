"""``usersignals send`` as a user runs it: a real process, the real broker, records read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Kafka
from tests.ingest.test_tracker import events_of, read_records
from usersignals.broker import free_port


def ev(i: int, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": f"s{i}",
        "type": "message",
        "user_id": f"u{i % 5}",
        "ts": "2026-03-01T10:00:00Z",
        "role": "user",
    }
    return {**base, **kw}


def run_send(
    kafka: Kafka, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usersignals", "send", *args],
        env=kafka.env(),
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sends_valid_lines_and_lists_rejections(kafka: Kafka, tmp_path: Path) -> None:
    lines = [
        json.dumps(ev(0)),
        json.dumps([ev(1), ev(2, role="bot"), ev(3)]),
        "",
        "{not json",
        json.dumps(ev(4, type="feedback", message_id="m", rating=1)),
        json.dumps(ev(5, user_id="")),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = run_send(kafka, str(path), "--spool", str(tmp_path / "s.spool"))
    assert result.returncode == 1, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == (
        "line 2, index 1: bad_value: Invalid 'role': 'bot' (must be one of 'user', 'assistant', "
        "'system', 'tool')"
    )
    assert out[1].startswith("line 4: not_json: ")
    assert out[2] == (
        "line 6: bad_value: Invalid 'user_id': '' (must be a string of 1 to 512 characters)"
    )
    assert out[3] == "sent 4, spooled 0, failed 0, rejected 3 (from 5 lines)"
    assert len(out) == 4
    events = events_of(read_records(kafka.bootstrap, kafka.settings.events_topic, 4))
    assert sorted(e.event_id for e in events) == ["s0", "s1", "s3", "s4"]


def test_stdin_json_summary_and_exit_zero(kafka: Kafka, tmp_path: Path) -> None:
    data = "".join(json.dumps(ev(i)) + "\n" for i in range(250)).encode()
    result = run_send(kafka, "-", "--json", "--spool", str(tmp_path / "s.spool"), stdin=data)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "lines": 250,
        "sent": 250,
        "spooled": 0,
        "failed": 0,
        "accepted": 250,
        "rejected": 0,
        "rejections": [],
        "acknowledged": 250,
        "delivered": True,
        "durable": True,
        "timed_out": False,
    }
    events = events_of(read_records(kafka.bootstrap, kafka.settings.events_topic, 250))
    assert sorted(e.event_id for e in events) == sorted(f"s{i}" for i in range(250))


def test_help_shows_an_example(kafka: Kafka) -> None:
    result = run_send(kafka, "--help")
    assert result.returncode == 0
    assert "Example:\n    usersignals send events.jsonl --bootstrap 127.0.0.1:9092" in result.stdout


def test_kafka_down_spools_says_so_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(ev(i)) + "\n" for i in range(3)))
    env = {**os.environ, "USERSIGNALS_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    args = [str(path), "--json", "--spool", str(tmp_path / "s.spool")]
    result = subprocess.run(
        [sys.executable, "-m", "usersignals", "send", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("sent", "spooled", "acknowledged", "delivered", "durable")} == {
        "sent": 0,
        "spooled": 3,
        "acknowledged": 0,
        "delivered": False,
        "durable": True,
    }
