"""Fixtures shared by the whole suite.

One real broker per test session (the embedded ``tansu``), started on a free port and stopped
by PID. Tests that need a pipeline of their own take ``kafka``: a fresh topic prefix on that
broker, so their topics and consumer groups never see another test's records.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from usersignals.broker import EmbeddedBroker, ensure_topics
from usersignals.config import Settings

_counter = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The session's real broker process (no topics of its own)."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(partitions=8, topics=(), log_path=log) as b:
        yield b


@dataclass(frozen=True)
class Kafka:
    """A private corner of the session broker: its own topics and settings."""

    broker: EmbeddedBroker
    settings: Settings

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def env(self) -> dict[str, str]:
        """Environment for a child process (CLI, worker) that should use this corner."""
        env = dict(os.environ)
        env.update(
            USERSIGNALS_BOOTSTRAP=self.settings.bootstrap,
            USERSIGNALS_TOPIC_PREFIX=self.settings.topic_prefix,
            USERSIGNALS_WAREHOUSE=str(self.settings.warehouse),
            USERSIGNALS_STATE_DIR=str(self.settings.state_dir),
            USERSIGNALS_PARTITIONS=str(self.settings.partitions),
        )
        return env


@pytest.fixture
def kafka(broker: EmbeddedBroker, tmp_path: Path) -> Kafka:
    """Fresh topics (8 partitions) under a unique prefix, plus warehouse and state dirs."""
    prefix = f"t{os.getpid()}-{next(_counter)}"
    settings = Settings.load(
        environ={},
        bootstrap=broker.bootstrap,
        topic_prefix=prefix,
        warehouse=tmp_path / "warehouse",
        state_dir=tmp_path / "state",
        partitions=8,
    )
    ensure_topics(broker.bootstrap, settings.partitions, settings.topics)
    return Kafka(broker, settings)
