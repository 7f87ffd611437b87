"""A damaged spool loses its damaged frames only: each way of damage, what is read and counted."""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usersignals.ingest.spool import HEADER_BYTES, Spool, SpooledRecord, frame

RECORDS = [
    SpooledRecord(value=b"[" + bytes([97 + i]) * (8 * (i + 1)) + b"]", events=i + 1, key=b"k")
    for i in range(5)
]
PAYLOADS = [r.to_bytes() for r in RECORDS]
STARTS = [sum(HEADER_BYTES + len(p) for p in PAYLOADS[:i]) for i in range(len(PAYLOADS) + 1)]
SIZE = STARTS[-1]


def frame_len(i: int) -> int:
    return HEADER_BYTES + len(PAYLOADS[i])


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


def put(data: bytes, at: int, raw: bytes) -> bytes:
    return data[:at] + raw + data[at + len(raw) :]


def fake_header_past_frame_3(data: bytes) -> bytes:
    """Frame 2 damaged (payload byte) with a header inside its payload whose length points into
    frame 3, with a crc32 that matches the bytes it claims."""
    at = STARTS[2] + HEADER_BYTES + 8
    length = STARTS[3] + 5 - (at + HEADER_BYTES)
    claimed = data[at + HEADER_BYTES : at + HEADER_BYTES + length]
    return put(data, at, b"US" + struct.pack(">II", length, zlib.crc32(claimed)))


def fake_frame_ending_on_frame_4(data: bytes) -> bytes:
    """Like the above, but the fake frame ends exactly where frame 4 starts: the limit of the
    rule (a crafted frame with a matching crc32 that ends on a real frame is taken as one)."""
    at = STARTS[2] + HEADER_BYTES + 8
    length = STARTS[4] - (at + HEADER_BYTES)
    claimed = data[at + HEADER_BYTES : at + HEADER_BYTES + length]
    return put(data, at, b"US" + struct.pack(">II", length, zlib.crc32(claimed)))


# damage -> (payloads read back, as indices, "?" for a fake frame; damaged frames, bytes and
# events counted; file size after opening)
CASES: dict[str, tuple[Callable[[bytes], bytes], list[int | str], int, int, int, int]] = {
    "truncated mid-frame": (lambda d: d[: STARTS[4] + 12], [0, 1, 2, 3], 1, 12, 0, STARTS[4]),
    "truncated after the record head": (
        lambda d: d[: STARTS[4] + 20],
        [0, 1, 2, 3],
        1,
        20,
        5,
        STARTS[4],
    ),
    "bit flip in payload": (
        lambda d: flip(d, STARTS[2] + 20),
        [0, 1, 3, 4],
        1,
        frame_len(2),
        3,
        SIZE,
    ),
    "bit flip in header (crc)": (
        lambda d: flip(d, STARTS[2] + 7),
        [0, 1, 3, 4],
        1,
        frame_len(2),
        3,
        SIZE,
    ),
    "magic overwritten": (
        lambda d: put(d, STARTS[2], b"XX"),
        [0, 1, 3, 4],
        1,
        frame_len(2),
        3,
        SIZE,
    ),
    "length field huge": (
        lambda d: put(d, STARTS[2] + 2, struct.pack(">I", 0xFFFFFFF0)),
        [0, 1, 3, 4],
        1,
        frame_len(2),
        3,
        SIZE,
    ),
    "length field small": (
        lambda d: put(d, STARTS[2] + 2, struct.pack(">I", 3)),
        [0, 1, 3, 4],
        1,
        frame_len(2),
        3,
        SIZE,
    ),
    "length field into the next frame": (
        lambda d: put(d, STARTS[1] + 2, struct.pack(">I", len(PAYLOADS[1]) + 16)),
        [0, 2, 3, 4],
        1,
        frame_len(1),
        2,
        SIZE,
    ),
    "garbage appended": (
        lambda d: d + b"\x00garbage US\xff\xff",
        [0, 1, 2, 3, 4],
        1,
        13,
        0,
        SIZE,
    ),
    "first frame damaged": (lambda d: flip(d, 20), [1, 2, 3, 4], 1, frame_len(0), 1, SIZE),
    "two adjacent frames damaged": (
        lambda d: flip(flip(d, STARTS[2] + 20), STARTS[3] + 20),
        [0, 1, 4],
        2,
        frame_len(2) + frame_len(3),
        3 + 4,
        SIZE,
    ),
    "two adjacent frames damaged, the first's magic overwritten": (
        lambda d: put(flip(d, STARTS[3] + 20), STARTS[2], b"XX"),
        [0, 1, 4],
        2,
        frame_len(2) + frame_len(3),
        3 + 4,
        SIZE,
    ),
    "fake header inside a damaged payload": (
        lambda d: put(flip(d, STARTS[2]), STARTS[2] + 20, b"US\x00\x00\x00\x30\x00\x00\x00\x00"),
        [0, 1, 3, 4],
        1,
        frame_len(2),
        3,
        SIZE,
    ),
    "fake frame with a matching crc past a real frame": (
        fake_header_past_frame_3,
        [0, 1, 3, 4],
        1,
        frame_len(2),
        3,
        SIZE,
    ),
    "fake frame ending exactly on a real frame (the rule's limit)": (
        fake_frame_ending_on_frame_4,
        [0, 1, "?", 4],
        1,
        HEADER_BYTES + 8,
        3,
        SIZE,
    ),
}


def write_spool(path: Path) -> None:
    with Spool(path, 10_000) as spool:
        spool.append(PAYLOADS)
    assert path.stat().st_size == SIZE


def read_all(spool: Spool) -> list[bytes]:
    return [p for p, _ in spool.peek(max_frames=10**6, max_bytes=1 << 40)]


def named(payloads: list[bytes]) -> list[int | str]:
    return [PAYLOADS.index(p) if p in PAYLOADS else "?" for p in payloads]


@pytest.mark.parametrize("case", list(CASES))
def test_damage_costs_only_the_damaged_frames(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    damage, read, frames, corrupt_bytes, events, size = CASES[case]
    path = tmp_path / "x.spool"
    write_spool(path)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING, "usersignals.ingest.spool"), Spool(path, 10_000) as again:
        got = read_all(again)
        assert named(got) == read
        assert again.pending_bytes == sum(HEADER_BYTES + len(p) for p in got)
        counted = (again.corrupt_frames, again.corrupt_bytes, again.corrupt_events)
        assert counted == (frames, corrupt_bytes, events)
        assert len(again) == len(read)
        assert path.stat().st_size == size
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"Spool {str(path)!r}: {corrupt_bytes} damaged bytes at offset ")


def test_warning_names_offsets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "x.spool"
    write_spool(path)
    path.write_bytes(flip(path.read_bytes(), STARTS[2] + 20))
    with caplog.at_level(logging.WARNING, "usersignals.ingest.spool"), Spool(path, 10_000):
        pass
    assert caplog.messages == [
        f"Spool {str(path)!r}: {frame_len(2)} damaged bytes at offset {STARTS[2]} skipped "
        f"(1 frames, 3 events lost); reading resumes at offset {STARTS[3]}"
    ]


def test_resent_prefix_and_damage_after_it(tmp_path: Path) -> None:
    """The read position survives the damage: frames resent before it are not read again."""
    path = tmp_path / "x.spool"
    with Spool(path, 10_000) as spool:
        spool.append(PAYLOADS)
        spool.commit(STARTS[1], 1)
    path.write_bytes(flip(path.read_bytes(), STARTS[3] + 20))
    with Spool(path, 10_000) as again:
        frames = again.peek(10)
        assert named([p for p, _ in frames]) == [1, 2, 4]
        assert [end for _, end in frames] == [STARTS[2], STARTS[3], STARTS[5]]
        again.commit(STARTS[3], 2)  # the next read jumps over the damaged frame
        assert named(read_all(again)) == [4]
        again.commit(STARTS[5], 1)
        assert (len(again), again.size, again.corrupt_events) == (0, 0, 4)
    assert path.stat().st_size == 0


def test_damage_while_open_is_found_when_read(tmp_path: Path) -> None:
    path = tmp_path / "x.spool"
    with Spool(path, 10_000) as spool:
        spool.append(PAYLOADS)
        with open(path, "r+b") as f:
            f.seek(STARTS[1] + 20)
            f.write(b"\xff")
        assert named(read_all(spool)) == [0, 2, 3, 4]
        assert (spool.corrupt_frames, spool.corrupt_events, len(spool)) == (1, 2, 4)
        assert named(read_all(spool)) == [0, 2, 3, 4]  # counted once
        assert spool.corrupt_frames == 1


def test_compaction_carries_only_valid_frames(tmp_path: Path) -> None:
    path = tmp_path / "x.spool"
    with Spool(path, SIZE) as spool:
        spool.append(PAYLOADS)
    path.write_bytes(flip(path.read_bytes(), STARTS[2] + 20))
    extra = SpooledRecord(value=b"[new]", events=1, key=b"k").to_bytes()
    with Spool(path, SIZE) as again:
        again.commit(STARTS[1], 1)
        again.append([extra])  # does not fit: compaction drops frame 0 and the damaged frame 2
        assert again.size == SIZE - frame_len(0) - frame_len(2) + HEADER_BYTES + len(extra)
        assert read_all(again) == [PAYLOADS[1], PAYLOADS[3], PAYLOADS[4], extra]
    expected = b"".join(frame(p) for p in [PAYLOADS[1], PAYLOADS[3], PAYLOADS[4], extra])
    assert path.read_bytes() == expected
    with Spool(path, SIZE) as clean:
        assert (len(clean), clean.corrupt_frames) == (4, 0)


def test_new_frames_after_a_torn_tail_are_read(tmp_path: Path) -> None:
    """A torn write is cut when the spool opens, so what is appended next is read."""
    path = tmp_path / "x.spool"
    write_spool(path)
    path.write_bytes(path.read_bytes()[: STARTS[4] + 3])
    with Spool(path, 10_000) as again:
        again.append([PAYLOADS[4]])
    with Spool(path, 10_000) as third:
        assert read_all(third) == PAYLOADS
        assert third.corrupt_frames == 0


@settings(max_examples=80, deadline=None)
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=8),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    bit=st.integers(min_value=0, max_value=7),
)
def test_one_flipped_bit_costs_one_frame(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes], where: float, bit: int
) -> None:
    path = tmp_path_factory.mktemp("p") / "x.spool"
    with Spool(path, 1 << 20, fsync=False) as spool:
        spool.append(payloads)
    data = bytearray(path.read_bytes())
    at = int(where * len(data))
    data[at] ^= 1 << bit
    path.write_bytes(bytes(data))
    starts = [sum(HEADER_BYTES + len(p) for p in payloads[:i]) for i in range(len(payloads))]
    hit = max(i for i, start in enumerate(starts) if start <= at)
    with Spool(path, 1 << 20, fsync=False) as again:
        assert read_all(again) == payloads[:hit] + payloads[hit + 1 :]
        counted = (again.corrupt_frames, again.corrupt_bytes)
        assert counted == (1, HEADER_BYTES + len(payloads[hit]))
