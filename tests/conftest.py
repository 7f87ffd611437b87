"""Fixtures shared by the whole suite.

One real broker per test session (the embedded ``tansu``), started on a free port and stopped
by PID. Tests that need a pipeline of their own take ``kafka``: a fresh topic prefix on that
broker, so their topics and consumer groups never see another test's records.

Every test that uses the broker carries the ``broker`` marker (added here from its fixtures,
or by hand where a test starts a broker of its own), so ``pytest -m "not broker"`` is the pure
suite; an unmarked test that starts a broker fails. System tools (Debian's ``prometheus``,
``promtool``, ``chromium``) are looked up with :func:`require_tool`: a missing one skips the
test, except under ``make test`` (``USERSIGNALS_REQUIRE_TOOLS=1``) and in CI (``CI=true``),
where it fails.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from usersignals.broker import EmbeddedBroker, ensure_topics
from usersignals.config import Settings

_counter = itertools.count()

REQUIRE_TOOLS_VAR = "USERSIGNALS_REQUIRE_TOOLS"
"""Set to ``1`` (``make test`` does): a missing system tool fails its tests instead of skipping."""

BROKER_FIXTURES = frozenset({"broker", "kafka"})
"""Fixtures that start (or hand out a corner of) the session broker."""


def tools_required(environ: dict[str, str] | None = None) -> bool:
    """Whether a missing system tool is a failure here (``make test``, CI) rather than a skip."""
    env = dict(os.environ) if environ is None else environ
    return env.get(REQUIRE_TOOLS_VAR, "") == "1" or env.get("CI", "").lower() == "true"


def require_tool(name: str, path: str | None = None) -> str:
    """The executable ``name`` (or ``path``, when given), for a test that cannot run without it.

    Skips the test when it is missing, or fails it under ``make test`` and in CI.
    """
    found = shutil.which(name) if path is None else path if os.access(path, os.X_OK) else None
    if found is not None:
        return found
    message = f"{path or name!r} is not installed (make system-deps installs it)"
    if tools_required():
        pytest.fail(f"{message}; {REQUIRE_TOOLS_VAR}=1 or CI=true makes it required", False)
    pytest.skip(message)


@pytest.fixture
def promtool() -> str:
    """Debian's ``promtool`` (from the ``prometheus`` package)."""
    return require_tool("promtool")


@pytest.fixture
def prometheus_bin() -> str:
    """Debian's ``prometheus`` server."""
    return require_tool("prometheus")


@pytest.fixture
def chromium() -> str:
    """Debian's ``chromium``, for headless rendering."""
    return require_tool("chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(autouse=True)
def _no_broker_without_the_marker(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unmarked test that starts an embedded broker fails: ``-m "not broker"`` means it."""
    if request.node.get_closest_marker("broker") is not None:
        return
    name = request.node.nodeid

    def refuse(self: EmbeddedBroker) -> NoReturn:
        pytest.fail(f"{name} starts the embedded broker but is not marked broker", False)

    monkeypatch.setattr(EmbeddedBroker, "start", refuse)


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
