"""The manifest: its JSON, atomic replaces, the migration of an old layout, fingerprints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usersignals.warehouse.manifest import (
    MANIFEST,
    Manifest,
    ManifestError,
    PartitionState,
    ensure_manifest,
    fingerprint,
    read_manifest,
    replace_manifest,
)

states = st.builds(
    PartitionState,
    st.integers(0, 10**12),
    st.integers(-1, 10**12),
    st.none() | st.text("0123456789abcdef", min_size=32, max_size=32),
)
manifests = st.builds(
    Manifest,
    generation=st.integers(0, 10**6),
    epoch=st.integers(0, 100),
    topic=st.none() | st.text(min_size=1, max_size=20),
    partitions=st.dictionaries(st.integers(0, 64), states, max_size=8),
    files=st.lists(st.text(min_size=1, max_size=40), unique=True).map(lambda f: tuple(sorted(f))),
)


@given(manifests)
def test_json_round_trip(manifest: Manifest) -> None:
    assert Manifest.from_json(manifest.to_json(), Path("m")) == manifest


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            b"{",
            "JSONDecodeError: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (b'{"format": 2}', "unknown format 2"),
        (b'{"format": 1}', "KeyError: 'generation'"),
        (b"[]", "AttributeError: 'list' object has no attribute 'get'"),
    ],
)
def test_a_damaged_manifest_is_an_error_naming_the_file(
    tmp_path: Path, raw: bytes, reason: str
) -> None:
    (tmp_path / MANIFEST).write_bytes(raw)
    with pytest.raises(ManifestError) as exc:
        read_manifest(tmp_path)
    path = tmp_path / MANIFEST
    assert str(exc.value) == f"Cannot read the warehouse manifest {str(path)!r}: {reason}"
    assert (exc.value.path, exc.value.reason) == (path, reason)


def test_replace_is_atomic_and_counts_generations(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) == Manifest()  # nothing there: an empty warehouse
    first = replace_manifest(tmp_path, lambda m: m.with_files(add=["events/day=x/a.parquet"]))
    second = replace_manifest(
        tmp_path,
        lambda m: m.with_files(add=["deadletter/b.parquet"], remove=["events/day=x/a.parquet"]),
    )
    assert (first.generation, second.generation) == (1, 2)
    assert read_manifest(tmp_path) == second
    assert second.files == ("deadletter/b.parquet",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_loader", MANIFEST]


@pytest.mark.parametrize(
    ("partitions", "committed", "stored"),
    [
        ({}, {}, {}),
        ({0: PartitionState(0, 9)}, {0: 9}, {0: 9}),
        ({0: PartitionState(10, -1), 3: PartitionState(10, 4)}, {3: 4}, {0: 9, 3: 14}),
    ],
)
def test_committed_offsets_are_kafka_offsets_of_the_current_epoch(
    partitions: dict[int, PartitionState], committed: dict[int, int], stored: dict[int, int]
) -> None:
    manifest = Manifest(partitions=partitions)
    assert (manifest.committed(), manifest.stored_committed()) == (committed, stored)


def test_an_old_layout_is_migrated_once(tmp_path: Path) -> None:
    (tmp_path / "_loader").mkdir()
    (tmp_path / "_loader" / "p000-000000000000-000000000009.commit").write_bytes(b"")
    day = tmp_path / "events" / "day=2026-01-01"
    day.mkdir(parents=True)
    for name in (
        "p000-000000000000-000000000009.parquet",
        "p000-000000000010-000000000019.parquet",
    ):
        (day / name).write_bytes(b"")
    derived = read_manifest(tmp_path)
    assert derived.files == ("events/day=2026-01-01/p000-000000000000-000000000009.parquet",)
    assert derived.partitions == {0: PartitionState(0, 9)}
    assert not (tmp_path / MANIFEST).exists()  # readers never write
    assert ensure_manifest(tmp_path) == derived
    (day / "p000-000000000010-000000000019.parquet").unlink()
    assert read_manifest(tmp_path) == derived  # read from the file now, not the layout
    assert dataclasses.replace(ensure_manifest(tmp_path)) == derived


@pytest.mark.parametrize(
    "other",
    [(2, b"k", b"v"), (1, None, b"v"), (1, b"k", None), (1, b"kv", b""), (1, b"", b"kv")],
)
def test_fingerprints_tell_records_apart(other: tuple[int, bytes | None, bytes | None]) -> None:
    assert fingerprint(1, b"k", b"v") == fingerprint(1, b"k", b"v")
    assert fingerprint(1, b"k", b"v") != fingerprint(*other)
