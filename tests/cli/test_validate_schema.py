"""``usersignals validate`` and ``usersignals schema``, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from usersignals.ingest.contract import json_schema

GOOD = '{"event_id":"e1","type":"message","user_id":"u","ts":"2026-08-03T10:00:00Z","role":"user"}'
LINES = [
    GOOD,
    "",
    '[1,{"event_id":"e2","type":"feedback","user_id":"u","ts":1785888000000,"message_id":"m","rating":2},'
    + GOOD
    + "]",
    "nope",
    '{"event_id":"e3","type":"message","user_id":"u","ts":"2026-08-06T10:00:00Z","role":"user"}',
]
NOW = ["--now", "2026-08-04T12:00:00Z"]


def usersignals(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "USERSIGNALS_MIN_TS"}
    return subprocess.run(
        [sys.executable, "-m", "usersignals", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**environ, **(env or {})},
    )


def test_validate_reports_each_rejection_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    done = usersignals("validate", str(path), *NOW)
    assert done.returncode == 1
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        "line 3, index 0: not_object: Not a JSON object: 1 (an event is one)",
        "line 3, index 1: bad_value: Invalid 'rating': 2 (must be 1, -1 or 0)",
        "line 4: not_json: Not JSON: JSON is malformed: invalid character (byte 4)",
        "line 5: bad_timestamp: Invalid 'ts': '2026-08-06T10:00:00Z' (more than 24 h after "
        "receipt)",
        "4 lines: 2 events valid, 4 rejected (bad_timestamp 1, bad_value 1, not_json 1, "
        "not_object 1)",
    ]


def test_validate_json_from_stdin() -> None:
    done = usersignals("validate", "-", "--json", *NOW, stdin="\n".join(LINES[:3]))
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "lines": 2,
        "events": 2,
        "rejected": 2,
        "reasons": {"bad_value": 1, "not_object": 1},
        "rejections": [
            {
                "line": 3,
                "index": 0,
                "reason": "not_object",
                "field": None,
                "message": "Not a JSON object: 1 (an event is one)",
            },
            {
                "line": 3,
                "index": 1,
                "reason": "bad_value",
                "field": "rating",
                "message": "Invalid 'rating': 2 (must be 1, -1 or 0)",
            },
        ],
    }


def test_validate_clean_file_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(GOOD + "\r\n" + f"[{GOOD},{GOOD}]\n")
    done = usersignals("validate", str(path))
    assert (done.returncode, done.stdout) == (0, "2 lines: 3 events valid, 0 rejected\n")


def test_validate_bad_now_is_a_usage_error() -> None:
    done = usersignals("validate", "-", "--now", "yesterday", stdin="")
    assert done.returncode == 2
    assert "Invalid value for '--now': 'yesterday' (not an RFC 3339 date-time)" in done.stderr


def test_help_shows_examples() -> None:
    for command in ("validate", "schema"):
        done = usersignals(command, "--help")
        assert done.returncode == 0
        assert "Example:" in done.stdout
        assert f"usersignals {command}" in done.stdout.split("Example:")[1]


def test_schema_prints_the_contract_schema() -> None:
    done = usersignals("schema")
    assert done.returncode == 0
    assert json.loads(done.stdout) == json_schema()
    assert done.stdout.startswith('{\n  "$schema": "https://json-schema.org/draft/2020-12/schema"')


SECONDS = '{"event_id":"e4","type":"session_start","user_id":"u","ts":1764650000}'
BACKFILL = '{"event_id":"e5","type":"session_start","user_id":"u","ts":"1995-06-01T10:00:00Z"}'


def test_validate_hints_at_seconds_and_states_the_lower_bound() -> None:
    done = usersignals("validate", "-", *NOW, stdin=SECONDS + "\n" + BACKFILL)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "line 1: bad_timestamp: Invalid 'ts': 1764650000 (looks like seconds; send milliseconds)",
        "line 2: bad_timestamp: Invalid 'ts': '1995-06-01T10:00:00Z' (before the lower bound "
        "2000-01-01T00:00:00Z)",
        "2 lines: 0 events valid, 2 rejected (bad_timestamp 2)",
    ]


def test_min_ts_flag_beats_environment_beats_default() -> None:
    lowered = {"USERSIGNALS_MIN_TS": "1995-01-01T00:00:00Z"}
    done = usersignals("validate", "-", *NOW, stdin=BACKFILL, env=lowered)
    assert (done.returncode, done.stdout) == (0, "1 lines: 1 events valid, 0 rejected\n")
    flag = ["--min-ts", "1996-01-01T00:00:00+01:00"]
    done = usersignals("validate", "-", *NOW, *flag, stdin=BACKFILL, env=lowered)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == (
        "line 1: bad_timestamp: Invalid 'ts': '1995-06-01T10:00:00Z' (before the lower bound "
        "1995-12-31T23:00:00Z)"
    )


def test_bad_min_ts_is_a_usage_error() -> None:
    done = usersignals("validate", "-", "--min-ts", "2000-01-01", stdin="")
    assert done.returncode == 2
    assert (
        "Invalid value for '--min-ts': '2000-01-01' (no UTC offset; add 'Z' or '+HH:MM')"
        in done.stderr
    )
    for command in (["validate", "-"], ["schema"]):
        done = usersignals(*command, stdin="", env={"USERSIGNALS_MIN_TS": "soon"})
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == "error: Invalid min_ts: 'soon' (not an RFC 3339 date-time)\n"


def test_schema_states_the_lower_bound_in_force() -> None:
    def minimum(done: subprocess.CompletedProcess[str]) -> int:
        assert done.returncode == 0
        value: int = json.loads(done.stdout)["properties"]["ts"]["oneOf"][1]["minimum"]
        return value

    assert minimum(usersignals("schema")) == 946684800000
    env = {"USERSIGNALS_MIN_TS": "1995-01-01T00:00:00Z"}
    assert minimum(usersignals("schema", env=env)) == 788918400000
    flag = usersignals("schema", "--min-ts", "1990-01-01T00:00:00.0005Z", env=env)
    assert minimum(flag) == 631152000001
