"""A loaded range is committed by the manifest; a crash at any step leaves no row twice."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from usersignals.warehouse.commit import STEPS as FLUSH_STEPS
from usersignals.warehouse.commit import recover, split_by_day, write_range
from usersignals.warehouse.layout import (
    DEADLETTER_SCHEMA,
    EVENTS_SCHEMA,
    FileRange,
    committed_offsets,
    live_deadletter_files,
    live_event_files,
)
from usersignals.warehouse.manifest import PartitionState, read_manifest

RANGE = FileRange(3, 100, 104)


def events_table(days: list[date], partition: int = 3, first: int = 100) -> pa.Table:
    rows = [
        {
            "event_id": f"e{i}",
            "type": "session_start",
            "user_id": "u",
            "ts": datetime(d.year, d.month, d.day, 12, tzinfo=UTC),
            "day": d,
            "source_partition": partition,
            "source_offset": first + i,
            "batch_index": 0,
        }
        for i, d in enumerate(days)
    ]
    return pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)


def dead_table(partition: int = 3, offset: int = 104) -> pa.Table:
    row = {
        "reason": "not_json",
        "message": "not JSON",
        "source_topic": "t.events",
        "source_partition": partition,
        "source_offset": offset,
        "raw": b"{",
        "received_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return pa.Table.from_pylist([row], schema=DEADLETTER_SCHEMA)


DAYS = [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 1), date(2026, 1, 3)]


def rows_of(root: Path) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for f in live_event_files(root):
        t = pq.read_table(f, schema=EVENTS_SCHEMA)
        out += zip(*(t.column(c).to_pylist() for c in EVENTS_SCHEMA.names[-3:]), strict=True)
    return sorted(out)


def test_split_by_day_keeps_order() -> None:
    parts = split_by_day(events_table(DAYS))
    assert [(d.isoformat(), t.column("event_id").to_pylist()) for d, t in parts] == [
        ("2026-01-01", ["e0", "e2"]),
        ("2026-01-02", ["e1"]),
        ("2026-01-03", ["e3"]),
    ]
    assert split_by_day(events_table([])) == []


def test_write_range_names_files_after_the_range(tmp_path: Path) -> None:
    files = write_range(tmp_path, RANGE, events_table(DAYS), dead_table())
    name = "p003-000000000100-000000000104.parquet"
    assert [str(f.relative_to(tmp_path)) for f in files] == [
        f"events/day=2026-01-01/{name}",
        f"events/day=2026-01-02/{name}",
        f"events/day=2026-01-03/{name}",
        f"deadletter/{name}",
    ]
    assert read_manifest(tmp_path).files == tuple(
        sorted(str(f.relative_to(tmp_path)) for f in files)
    )
    meta = pq.read_metadata(files[0])
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_schema(files[0]).remove_metadata() == EVENTS_SCHEMA
    assert committed_offsets(tmp_path) == {3: 104}


def test_a_range_without_rows_still_commits(tmp_path: Path) -> None:
    assert write_range(tmp_path, RANGE, events_table([]), dead_table().slice(0, 0)) == []
    assert committed_offsets(tmp_path) == {3: 104}
    assert not (tmp_path / "events").exists()


def test_a_commit_moves_the_partition_position(tmp_path: Path) -> None:
    write_range(tmp_path, FileRange(3, 0, 99), events_table([]), dead_table().slice(0, 0))
    write_range(tmp_path, RANGE, events_table([]), dead_table().slice(0, 0))
    manifest = read_manifest(tmp_path)
    assert (manifest.generation, manifest.partitions) == (2, {3: PartitionState(0, 104)})
    state = PartitionState(base=1000, last=4, fingerprint="f")
    write_range(tmp_path, FileRange(3, 1000, 1004), events_table([]), DEAD0, state=state)
    assert read_manifest(tmp_path).partitions == {3: state}
    assert committed_offsets(tmp_path) == {3: 4}


DEAD0 = DEADLETTER_SCHEMA.empty_table()


# three event days and one dead-letter file: four renames between "written" and "committed"
STEPS = ["written", *["renamed p003-000000000100-000000000104.parquet"] * 4, "committed"]


def test_the_steps_are_the_named_ones() -> None:
    assert [s.split()[0] for s in dict.fromkeys(STEPS)] == list(FLUSH_STEPS)


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_at", range(len(STEPS)))
def test_crash_at_any_step_then_reload_gives_every_row_once(tmp_path: Path, crash_at: int) -> None:
    write_range(tmp_path, FileRange(3, 0, 99), events_table(DAYS[:1], first=0), dead_table(3, 5))
    seen: list[str] = []

    def step(name: str) -> None:
        seen.append(name)
        if len(seen) - 1 == crash_at:
            raise Crash(name)

    with pytest.raises(Crash):
        write_range(tmp_path, RANGE, events_table(DAYS), dead_table(), step=step)
    assert seen == STEPS[: crash_at + 1]
    committed = recover(tmp_path).committed()
    loaded = crash_at == len(STEPS) - 1
    assert committed == {3: 104 if loaded else 99}
    leftovers = [p.name for p in tmp_path.rglob(".*")]
    assert leftovers == []
    if not loaded:  # the loader reads the range again from Kafka
        write_range(tmp_path, RANGE, events_table(DAYS), dead_table())
    assert rows_of(tmp_path) == [(3, 0, 0)] + [(3, 100 + i, 0) for i in range(4)]
    assert [p.name for p in live_deadletter_files(tmp_path)] == [
        "p003-000000000000-000000000099.parquet",
        "p003-000000000100-000000000104.parquet",
    ]
    assert sorted(p.name for p in tmp_path.rglob("*.parquet")) == sorted(
        ["p003-000000000000-000000000099.parquet"] * 2
        + ["p003-000000000100-000000000104.parquet"] * 4
    )


def test_recover_deletes_files_the_manifest_does_not_name(tmp_path: Path) -> None:
    renamed = 0

    def step(name: str) -> None:
        nonlocal renamed
        renamed += name.startswith("renamed")
        if renamed == 4:  # every file has its final name, the manifest is not replaced yet
            raise Crash(name)

    with pytest.raises(Crash):
        write_range(
            tmp_path, FileRange(1, 0, 3), events_table(DAYS, 1, 0), dead_table(1, 3), step=step
        )
    assert len(list(tmp_path.rglob("*.parquet"))) == 4
    assert recover(tmp_path).committed() == {}
    assert list(tmp_path.rglob("*.parquet")) == []
