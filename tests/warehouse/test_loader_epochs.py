"""A topic that starts again at offset 0 is a new incarnation: loaded whole, under a new epoch.

Each embedded broker keeps its records in memory, so a new broker process is exactly the case
of ``usersignals run`` into an existing warehouse: same topic name, offsets from 0 again.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Kafka
from tests.warehouse.test_loader import SMALL, Plan, loaded_positions, make_records, produce
from usersignals.broker import EmbeddedBroker, ensure_topics
from usersignals.config import Settings
from usersignals.warehouse.db import connect
from usersignals.warehouse.loader import run_loader
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
