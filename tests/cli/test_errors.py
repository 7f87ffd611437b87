"""Every command fails clearly: one line on stderr, exit 2 for bad usage and project errors.

Bad usage is click's one line (``Error: ...``), a project error ours (``error: ...``). Each row
runs the real CLI in a subprocess. Kafka-down rows point ``--bootstrap`` at a
127.0.0.1 port nobody listens on, with ``--timeout 1``. ``{tmp}`` is the test's directory
(holding an empty ``wh/`` warehouse directory), ``{port}`` that port.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from usersignals.broker import free_port
from usersignals.cli.deadletter import ReplayUnconfirmedError

NO_WAREHOUSE = "error: No warehouse at '{tmp}/nowh' (run the loader or pass --warehouse)"
KAFKA_DOWN = "error: Kafka at '127.0.0.1:{port}' did not answer within 1s (..."
DOWN = ["--bootstrap", "127.0.0.1:{port}", "--timeout", "1"]
REASONS = (
    "'empty', 'too_large', 'not_utf8', 'too_deep', 'not_json', 'bad_batch', 'not_object', "
    "'missing_field', 'bad_type', 'bad_value', 'bad_timestamp', 'unknown_type'"
)

CASES = [
    # (id, argv, exit code, the one line on stderr; a line ending in "..." is a prefix)
    (
        "send-missing-file",
        ["send", "{tmp}/missing.jsonl"],
        2,
        "Error: Invalid value for 'FILE': File '{tmp}/missing.jsonl' does not exist.",
    ),
    (
        "send-no-file",
        ["send"],
        2,
        "Error: Missing argument 'FILE'.",
    ),
    (
        "export-missing-directory",
        ["export", "feedback", "--out", "{tmp}/no/x.parquet", "--warehouse", "{tmp}/wh"],
        2,
        "Error: Invalid value for '--out': the directory '{tmp}/no' does not exist",
    ),
    (
        "export-csv-name",
        ["export", "feedback", "--out", "{tmp}/x.csv", "--warehouse", "{tmp}/wh"],
        2,
        "Error: Invalid value for '--out': '{tmp}/x.csv' has the suffix '.csv', not one of a "
        "format export writes (parquet: .parquet; jsonl: .jsonl, .json)",
    ),
    (
        "export-suffix-against-format",
        ["export", "preferences", "--out", "{tmp}/x.jsonl", "--format", "parquet"],
        2,
        "Error: Invalid value for '--out': '{tmp}/x.jsonl' names a jsonl file, but --format "
        "is parquet",
    ),
    (
        "export-missing-warehouse",
        ["export", "feedback", "--out", "{tmp}/x.parquet", "--warehouse", "{tmp}/nowh"],
        2,
        NO_WAREHOUSE,
    ),
    (
        "report-html-missing-directory",
        ["report", "--html", "{tmp}/no/r.html", "--warehouse", "{tmp}/wh"],
        2,
        "Error: Invalid value for '--html': the directory '{tmp}/no' does not exist",
    ),
    ("report-missing-warehouse", ["report", "--warehouse", "{tmp}/nowh"], 2, NO_WAREHOUSE),
    (
        "report-impossible-day",
        ["report", "--from", "2026-02-30"],
        2,
        "Error: Invalid value for '--from': '2026-02-30' does not match the format '%Y-%m-%d'.",
    ),
    ("status-kafka-down", ["status", *DOWN], 2, KAFKA_DOWN),
    (
        "replay-kafka-down",
        ["deadletter", "replay", *DOWN, "--warehouse", "{tmp}/wh"],
        2,
        KAFKA_DOWN,
    ),
    ("worker-kafka-down", ["worker", *DOWN, "--no-loader"], 2, KAFKA_DOWN),
    ("loader-kafka-down", ["loader", *DOWN, "--warehouse", "{tmp}/wh"], 2, KAFKA_DOWN),
    (
        "topics-kafka-down",
        ["topics", "ensure", *DOWN],
        2,
        "error: Kafka at '127.0.0.1:{port}' did not answer within 1.0s: KafkaTimeoutError: ...",
    ),
    (
        "deadletter-list-unknown-reason",
        ["deadletter", "list", "--reason", "nope", "--warehouse", "{tmp}/wh"],
        2,
        f"Error: Invalid value for '--reason': 'nope' is not one of {REASONS}.",
    ),
    (
        "deadletter-list-missing-warehouse",
        ["deadletter", "list", "--warehouse", "{tmp}/nowh"],
        2,
        NO_WAREHOUSE,
    ),
    (
        "deadletter-replay-missing-warehouse",
        ["deadletter", "replay", *DOWN, "--warehouse", "{tmp}/nowh"],
        2,
        NO_WAREHOUSE,
    ),
    (
        "compact-missing-warehouse",
        ["warehouse", "compact", "--warehouse", "{tmp}/nowh"],
        2,
        NO_WAREHOUSE,
    ),
    (
        "compact-impossible-day",
        ["warehouse", "compact", "--day", "2026-13-01", "--warehouse", "{tmp}/wh"],
        2,
        "Error: Invalid value for '--day': '2026-13-01' does not match the format '%Y-%m-%d'.",
    ),
    (
        "unknown-command",
        ["nosuch"],
        2,
        "Error: No such command 'nosuch'.",
    ),
    (
        "bad-setting",
        ["status", "--timeout", "0"],
        2,
        "error: Invalid kafka_timeout_s: 0.0 (must be more than 0 seconds)",
    ),
]


@pytest.mark.parametrize(("argv", "code", "line"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_a_failing_command_says_why_in_one_line(
    argv: list[str], code: int, line: str, tmp_path: Path
) -> None:
    (tmp_path / "wh").mkdir()
    values = {"tmp": str(tmp_path), "port": str(free_port())}
    args = [a.format(**values) for a in argv]
    expected = line.replace("{tmp}", values["tmp"]).replace("{port}", values["port"])
    proc = subprocess.run(
        [sys.executable, "-m", "usersignals", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    if expected.endswith("..."):
        assert lines[0].startswith(expected.removesuffix("..."))
    else:
        assert lines[0] == expected
    assert proc.returncode == code


def test_an_unconfirmed_replay_says_how_to_finish_it() -> None:
    exc = ReplayUnconfirmedError("kafka:9092", 10.0)
    assert str(exc) == (
        "Kafka at 'kafka:9092' did not confirm every replayed record within 10s; they are "
        "marked replayed: once it answers, run again with --again"
    )
    assert (exc.bootstrap, exc.timeout, exc.retryable) == ("kafka:9092", 10.0, True)
