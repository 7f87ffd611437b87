"""The spool file: frames, durability across reopen, bound, torn tails, position, locking."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usersignals.ingest.spool import (
    HEADER_BYTES,
    Spool,
    SpoolBusyError,
    SpooledRecord,
    SpoolFullError,
    frame,
)


def payloads(spool: Spool) -> list[bytes]:
    return [p for p, _ in spool.peek(max_frames=10**6, max_bytes=1 << 40)]


def test_frame_layout() -> None:
    assert frame(b"abc") == b"US" + struct.pack(">II", 3, zlib.crc32(b"abc")) + b"abc"
    assert HEADER_BYTES == 10


@pytest.mark.parametrize(
    "record",
    [
        SpooledRecord(value=b"[]", events=0),
        SpooledRecord(value=b'[{"a":1}]', events=1, key=b"u1", partition=3, partitions=8),
        SpooledRecord(value=b"x" * 1000, events=1000, key="ü".encode(), partition=-1),
    ],
)
def test_spooled_record_round_trip(record: SpooledRecord) -> None:
    assert SpooledRecord.from_bytes(record.to_bytes()) == record


def test_append_peek_commit_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s" / "events.spool"
    spool = Spool(path, 10_000)
    spool.append([b"one", b"two"])
    spool.append([b"three"])
    assert (len(spool), spool.size, spool.pending_bytes) == (3, 3 * 10 + 11, 41)
    frames = spool.peek(max_frames=2)
    assert [p for p, _ in frames] == [b"one", b"two"]
    assert [end for _, end in frames] == [13, 26]
    spool.commit(13, 1)
    assert (len(spool), spool.pending_bytes) == (2, 28)
    spool.close()

    again = Spool(path, 10_000)
    assert payloads(again) == [b"two", b"three"]
    assert len(again) == 2
    _, end = again.peek(max_frames=5)[-1]
    again.commit(end, 2)
    assert (len(again), again.size, path.stat().st_size) == (0, 0, 0)
    assert not path.with_name("events.spool.pos").exists()
    again.close()


def test_full_spool_refuses_whole_call(tmp_path: Path) -> None:
    with Spool(tmp_path / "x.spool", 30) as spool:
        spool.append([b"a" * 10])
        with pytest.raises(SpoolFullError) as err:
            spool.append([b"b", b"c"])
        assert payloads(spool) == [b"a" * 10]
    assert str(err.value) == (
        f"Spool {str(tmp_path / 'x.spool')!r} is full: 22 more bytes do not fit in 30 bytes"
    )
    assert err.value.retryable is True


def test_compaction_makes_room_from_resent_prefix(tmp_path: Path) -> None:
    path = tmp_path / "x.spool"
    spool = Spool(path, 40)
    spool.append([b"a" * 10, b"b" * 10])
    first_end = spool.peek(1)[0][1]
    spool.commit(first_end, 1)
    spool.append([b"c" * 10])  # 60 bytes would not fit; dropping the resent frame makes room
    assert payloads(spool) == [b"b" * 10, b"c" * 10]
    assert spool.size == 40
    spool.close()
    with Spool(path, 40) as again:
        assert payloads(again) == [b"b" * 10, b"c" * 10]


@pytest.mark.parametrize(
    ("damage", "kept", "corrupt"),
    [
        (lambda data: data[:-3], [b"first", b"second"], 10 + 5 - 3),  # torn last frame
        (lambda data: data[:-14] + b"X" + data[-13:], [b"first", b"second"], 15),  # bad magic
        (lambda data: data[:-1] + b"X", [b"first", b"second"], 15),  # bad checksum
        (lambda data: data + b"U", [b"first", b"second", b"third"], 1),  # torn header
    ],
)
def test_damaged_tail_is_cut(tmp_path: Path, damage, kept, corrupt) -> None:  # type: ignore[no-untyped-def]
    """A damaged tail, after the last valid frame, is cut off when the spool opens (damage
    before a valid frame costs only itself: tests/ingest/test_spool_damage.py)."""
    path = tmp_path / "x.spool"
    spool = Spool(path, 1000)
    spool.append([b"first", b"second", b"third"])
    spool.close()
    path.write_bytes(damage(path.read_bytes()))
    with Spool(path, 1000) as again:
        assert payloads(again) == kept
        assert again.corrupt_bytes == corrupt
        assert path.stat().st_size == sum(HEADER_BYTES + len(p) for p in kept)


def test_damaged_position_file_resends_from_start(tmp_path: Path) -> None:
    path = tmp_path / "x.spool"
    spool = Spool(path, 1000)
    spool.append([b"a", b"b"])
    spool.commit(spool.peek(1)[0][1], 1)
    spool.close()
    pos = path.with_name("x.spool.pos")
    pos.write_bytes(b"\0" * 12)
    with Spool(path, 1000) as again:
        assert payloads(again) == [b"a", b"b"]


def test_one_spool_per_file(tmp_path: Path) -> None:
    path = tmp_path / "x.spool"
    first = Spool(path, 1000)
    with pytest.raises(SpoolBusyError) as err:
        Spool(path, 1000)
    assert str(err.value) == f"Spool {str(path)!r} is in use by another tracker"
    first.close()
    Spool(path, 1000).close()


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=4), max_size=8),
    commits=st.lists(st.integers(min_value=1, max_value=3), max_size=6),
)
def test_fifo_across_reopens(tmp_path_factory: pytest.TempPathFactory, batches, commits) -> None:  # type: ignore[no-untyped-def]
    """Whatever is appended comes back once, in order, across commits and reopenings."""
    path = tmp_path_factory.mktemp("p") / "x.spool"
    expected = [p for batch in batches for p in batch]
    spool = Spool(path, 1 << 20, fsync=False)
    for batch in batches:
        spool.append(batch)
    got: list[bytes] = []
    for n in commits:
        frames = spool.peek(n)
        if not frames:
            break
        got += [p for p, _ in frames]
        spool.commit(frames[-1][1], len(frames))
        spool.close()
        spool = Spool(path, 1 << 20, fsync=False)
    got += payloads(spool)
    spool.close()
    assert got == expected
    os.remove(path)
