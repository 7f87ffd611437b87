"""File names, and the live files of a warehouse written before manifests (migration)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from usersignals.warehouse.commit import write_parquet
from usersignals.warehouse.layout import (
    COVERS_KEY,
    EVENTS_SCHEMA,
    FileRange,
    committed_offsets,
    live_deadletter_files,
    live_event_files,
    parse_range,
    range_name,
)


@pytest.mark.parametrize(
    ("r", "suffix", "name"),
    [
        (FileRange(0, 0, 0), "parquet", "p000-000000000000-000000000000.parquet"),
        (FileRange(3, 100, 199), "parquet", "p003-000000000100-000000000199.parquet"),
        (FileRange(7, 5, 9), "commit", "p007-000000000005-000000000009.commit"),
        (FileRange(1234, 1, 10**13), "parquet", "p1234-000000000001-10000000000000.parquet"),
    ],
)
def test_range_names(r: FileRange, suffix: str, name: str) -> None:
    assert range_name(r, suffix) == name
    assert parse_range(name) == r


@pytest.mark.parametrize(
    "name",
    [
        "c-0123456789abcdef.parquet",
        ".p003-000000000100-000000000199.parquet.load.tmp",
        "p003-000000000100-000000000199.parquet.tmp",
        "p03-000000000100-000000000199.parquet",
        "p003-100-199.parquet",
        "lock",
    ],
)
def test_other_names_are_not_ranges(name: str) -> None:
    assert parse_range(name) is None


@given(st.integers(0, 10**4), st.integers(0, 10**15), st.integers(0, 10**15))
def test_range_name_round_trip(partition: int, first: int, last: int) -> None:
    r = FileRange(partition, first, last)
    assert parse_range(range_name(r)) == r
    assert parse_range(range_name(r, "commit")) == r


def _touch_marker(root: Path, r: FileRange) -> None:
    (root / "_loader").mkdir(parents=True, exist_ok=True)
    (root / "_loader" / range_name(r, "commit")).write_bytes(b"")


def _empty_events(path: Path, covers: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {COVERS_KEY: json.dumps(covers).encode()} if covers is not None else None
    write_parquet(pa.Table.from_pylist([], schema=EVENTS_SCHEMA), path, meta)


def test_without_a_manifest_committed_offsets_are_the_highest_markers(tmp_path: Path) -> None:
    assert committed_offsets(tmp_path) == {}
    for r in (FileRange(0, 0, 9), FileRange(0, 10, 19), FileRange(5, 0, 3)):
        _touch_marker(tmp_path, r)
    (tmp_path / "_loader" / "lock").write_bytes(b"")
    assert committed_offsets(tmp_path) == {0: 19, 5: 3}


def test_without_a_manifest_live_files_skip_uncommitted_and_compacted(tmp_path: Path) -> None:
    _touch_marker(tmp_path, FileRange(0, 10, 19))
    day = tmp_path / "events" / "day=2026-01-01"
    names = [
        "p000-000000000000-000000000009.parquet",  # committed, covered by c-a
        "p000-000000000010-000000000019.parquet",  # committed
        "p000-000000000020-000000000029.parquet",  # after the marker: not committed
        "p001-000000000000-000000000009.parquet",  # partition without a marker
    ]
    for name in names:
        _empty_events(day / name)
    _empty_events(day / "c-a.parquet", covers=[names[0]])
    assert [p.name for p in live_event_files(tmp_path)] == ["c-a.parquet", names[1]]


def test_without_a_manifest_live_deadletter_files_skip_uncommitted(tmp_path: Path) -> None:
    _touch_marker(tmp_path, FileRange(2, 0, 5))
    dead = tmp_path / "deadletter"
    dead.mkdir()
    for name in (
        "p002-000000000000-000000000005.parquet",
        "p002-000000000006-000000000007.parquet",
    ):
        (dead / name).write_bytes(b"")
    assert [p.name for p in live_deadletter_files(tmp_path)] == [
        "p002-000000000000-000000000005.parquet"
    ]
