"""``usersignals status`` against the real broker: true end offsets, lag, unreachable workers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import Kafka
from tests.streams.workerproc import produce
from usersignals.cli.status import end_offsets, loader_line


def test_status_json_shows_end_offsets_and_lag_without_a_worker(kafka: Kafka) -> None:
    # several records in one producer batch: the broker's listed end offset is short
    produced = produce(
        kafka.bootstrap,
        kafka.settings.events_topic,
        [(3, None, b"x"), (3, None, b"y"), (3, None, b"w"), (5, None, b"z")],
    )
    assert produced.ends == {3: 3, 5: 1}
    env = kafka.env() | {"USERSIGNALS_WORKER_URL": "http://127.0.0.1:9"}
    out = subprocess.run(
        [sys.executable, "-m", "usersignals", "status", "--json"],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    status = json.loads(out.stdout)
    assert status["partitions"][3] == {
        "partition": 3,
        "end_offset": 3,
        "worker_committed": None,
        "worker_lag": 3,
        "loader_committed": None,
        "loader_lag": 3,
    }
    assert status["partitions"][5]["end_offset"] == 1
    assert status["partitions"][0]["end_offset"] == 0
    assert status["accepted"] is None
    assert status["rejected"] is None
    assert status["workers"][0]["reachable"] is False
    assert status["groups"] == {
        "worker": f"{kafka.settings.topic_prefix}-worker",
        "loader": f"{kafka.settings.topic_prefix}-loader",
    }


def test_status_text_says_counts_are_unknown_without_a_worker(kafka: Kafka) -> None:
    env = kafka.env() | {"USERSIGNALS_WORKER_URL": "http://127.0.0.1:9"}
    out = subprocess.run(
        [sys.executable, "-m", "usersignals", "status"],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
        text=True,
    )
    assert "accepted/rejected: unknown (no worker reachable)" in out.stdout


def test_end_offsets_are_true_when_many_partitions_end_in_a_batch_of_several_records(
    kafka: Kafka,
) -> None:
    # the broker lists each of these partitions' end as 1 (its last batch starts at 0); the
    # fetch high watermarks must be read for every partition, not only the first ones
    records = [(p, None, b"r%d" % i) for p in range(8) for i in range(p + 2)]
    produced = produce(kafka.bootstrap, kafka.settings.events_topic, records)
    assert produced.ends == {p: p + 2 for p in range(8)}
    assert end_offsets(kafka.bootstrap, kafka.settings.events_topic, 8) == produced.ends


UP = {"up": True, "pid": 41, "restarts": 2, "last_commit": 990.0, "paused": None}


@pytest.mark.parametrize(
    ("loader", "line"),
    [
        (
            {**UP, "lag": {"0": 3, "1": 4}, "errors": {"crash": 2}},
            "  loader: up (pid 41); 2 restarts; last commit 10 s ago; lag 7; errors: crash 2",
        ),
        (
            {**UP, "paused": "enospc", "lag": {"0": 5}, "errors": {"enospc": 3}},
            "  loader: up (pid 41), paused on enospc; 2 restarts; last commit 10 s ago; lag 5; "
            "errors: enospc 3",
        ),
        (
            {"up": False, "pid": None, "restarts": 0, "restart_in": 1.25, "last_commit": None},
            "  loader: DOWN, restarting in 1.2 s; 0 restarts; last commit never; lag 0; "
            "errors: none",
        ),
    ],
)
def test_the_loader_line_says_its_state(loader: dict[str, object], line: str) -> None:
    assert loader_line(loader, now=1000.0) == line
