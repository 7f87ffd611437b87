from __future__ import annotations

from pathlib import Path

import pytest

from usersignals.config import ConfigError, Settings


def test_defaults() -> None:
    s = Settings.load(environ={})
    assert s.bootstrap == "127.0.0.1:9092"
    assert s.events_topic == "usersignals.events"
    assert s.dead_topic == "usersignals.events.dead"
    assert s.partitions == 8
    assert s.retention_days == 42


def test_flags_beat_environment_beat_defaults() -> None:
    env = {
        "USERSIGNALS_BOOTSTRAP": "k:1",
        "USERSIGNALS_PARTITIONS": "4",
        "USERSIGNALS_WAREHOUSE": "/w",
    }
    s = Settings.load(environ=env, bootstrap="k:2", partitions=None)
    assert (s.bootstrap, s.partitions, s.warehouse) == ("k:2", 4, Path("/w"))


def test_write_keys_are_comma_separated() -> None:
    s = Settings.load(environ={"USERSIGNALS_WRITE_KEYS": "a, b,,c"})
    assert s.write_keys == ("a", "b", "c")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"USERSIGNALS_PARTITIONS": "eight"}, "Invalid partitions: 'eight' (not a whole number)"),
        ({"USERSIGNALS_PARTITIONS": "0"}, "Invalid partitions: 0 (must be at least 1)"),
        ({"USERSIGNALS_WORKER_PORT": "70000"}, "Invalid worker_port: 70000 (not a TCP port)"),
        (
            {"USERSIGNALS_TOPIC_PREFIX": "a b"},
            "Invalid topic_prefix: 'a b' (letters, digits, '.', '_', '-')",
        ),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.load(environ=env)
    assert str(exc.value) == message


def test_to_env_round_trips_through_load(tmp_path: Path) -> None:
    s = Settings.load(
        environ={},
        bootstrap="k:1",
        write_keys="a,b",
        warehouse=tmp_path / "w",
        topic_prefix="p",
        partitions=3,
    )
    env = s.to_env()
    assert env["USERSIGNALS_WRITE_KEYS"] == "a,b"
    assert env["USERSIGNALS_WAREHOUSE"] == str((tmp_path / "w").resolve())
    assert Settings.load(environ=env) == s.with_(state_dir=s.state_dir.resolve())
