"""A topic that starts again at offset 0 is a new incarnation: loaded whole, under a new epoch.

Each embedded broker keeps its records in memory, so a new broker process is exactly the case
of ``usersignals run`` into an existing warehouse: same topic name, offsets from 0 again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Kafka
from tests.warehouse.test_loader import SMALL, Plan, loaded_positions, make_records, produce
from usersignals.broker import EmbeddedBroker, ensure_topics
from usersignals.config import Settings
from usersignals.warehouse.db import connect
from usersignals.warehouse.loader import Loader, run_loader
from usersignals.warehouse.manifest import read_manifest


def shifted(plan: Plan, bases: dict[int, int]) -> Counter[tuple[int, int, int]]:
    """The plan's positions at warehouse offsets (Kafka offset + the epoch's base)."""
    return Counter({(p, bases.get(p, 0) + o, i): n for (p, o, i), n in plan.events.items()})


@pytest.mark.slow
@pytest.mark.broker
def test_new_broker_same_topic_is_loaded_as_a_new_epoch(tmp_path: Path) -> None:
    settings = Settings.load(
        environ={},
        topic_prefix="epochs",
        warehouse=tmp_path / "warehouse",
        state_dir=tmp_path / "state",
        partitions=8,
    )
    root = settings.warehouse
    expected: Counter[tuple[int, int, int]] = Counter()
    ids: set[str] = set()
    # more records than before (the last loaded offsets exist, holding other records), then
    # fewer (the partitions end before the last loaded offsets)
    for epoch, (n_records, seed) in enumerate([(24, 0), (40, 1), (3, 2)]):
        with EmbeddedBroker(partitions=8, topics=(), log_path=tmp_path / f"b{epoch}.log") as b:
            ensure_topics(b.bootstrap, 8, settings.topics)
            kafka = Kafka(b, settings.with_(bootstrap=b.bootstrap))
            plan = produce(kafka, make_records(n_records, per_record=5, seed=seed))
            stats = run_loader(kafka.settings, roll=SMALL, drain=True)
            manifest = read_manifest(root)
            assert (stats.epoch, manifest.epoch) == (epoch, epoch)
            assert stats.events == sum(plan.events.values())
            bases = {p: s.base for p, s in manifest.partitions.items()}
            expected += shifted(plan, bases)
            ids |= set(plan.ids.values())
            assert loaded_positions(root) == expected  # nothing skipped, nothing twice

            again = run_loader(kafka.settings, roll=SMALL, drain=True)  # same incarnation
            assert (again.epoch, again.records, again.events) == (epoch, 0, 0)
            assert loaded_positions(root) == expected
    con = connect(root)
    assert {r[0] for r in con.sql("SELECT event_id FROM events").fetchall()} == ids
    con.close()


@pytest.mark.slow
@pytest.mark.broker
def test_a_broker_restarted_under_a_running_loader_is_a_new_epoch(tmp_path: Path) -> None:
    """The loader keeps running while its broker is replaced by an empty one on the same port:
    the records of the new incarnation go back to offset 0, under the position loaded to. They
    are loaded under a new epoch, nothing of the old one is lost and nothing is written twice
    (before, the running loader went on under the old epoch and never loaded them)."""
    first = EmbeddedBroker(partitions=8, topics=(), log_path=tmp_path / "b0.log")
    port = first.port
    settings = Settings.load(
        environ={},
        topic_prefix="restarted",
        warehouse=tmp_path / "warehouse",
        state_dir=tmp_path / "state",
        partitions=8,
        bootstrap=f"127.0.0.1:{port}",
    )
    root = settings.warehouse
    loader = Loader(settings, roll=SMALL)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(loader.run(),), daemon=True)
    brokers = [first]
    try:
        with first:
            ensure_topics(first.bootstrap, 8, settings.topics)
            plan0 = produce(Kafka(first, settings), make_records(24, per_record=5, seed=0))
            thread.start()
            _wait(lambda: loaded_positions_or_none(root) == shifted(plan0, {}), "epoch 0")
        second = EmbeddedBroker(port, partitions=8, topics=(), log_path=tmp_path / "b1.log")
        brokers.append(second)
        with second:
            ensure_topics(second.bootstrap, 8, settings.topics)
            plan1 = produce(Kafka(second, settings), make_records(3, per_record=5, seed=1))
            _wait(lambda: read_manifest(root).epoch == 1, "a new epoch")
            bases = {p: s.base for p, s in read_manifest(root).partitions.items()}
            expected = shifted(plan0, {}) + shifted(plan1, bases)
            _wait(lambda: loaded_positions_or_none(root) == expected, "epoch 1 loaded")
            loop.call_soon_threadsafe(loader.stop)
            thread.join(60)
            assert not thread.is_alive()
            assert loaded_positions(root) == expected
    finally:
        if thread.is_alive():
            loop.call_soon_threadsafe(loader.stop)
            thread.join(60)
        loop.close()


def loaded_positions_or_none(root: Path) -> Counter[tuple[int, int, int]] | None:
    """The loaded positions, or None before the first file is there."""
    try:
        return loaded_positions(root)
    except duckdb.Error:
        return None


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
