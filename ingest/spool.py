"""A bounded, append-only local file of records that could not reach Kafka yet.

The :class:`~usersignals.ingest.tracker.Tracker` writes a record here when the broker cannot be
reached, and reads the records back, oldest first, once it can. The file outlives the process:
a new tracker on the same path resends what an earlier one spooled.

File layout: a sequence of frames ``b"US" | length u32 | crc32 u32 | payload`` (big-endian).
A frame is valid when its magic, its length (it ends inside the file) and the crc32 of its
payload all hold; every frame is checked when it is read, so a damaged one is never resent.

Damage costs only the damaged frames. The reader resynchronises on the next valid frame and
skips what lies between (a *damaged region*); each region is counted in
:attr:`Spool.corrupt_frames`, :attr:`Spool.corrupt_bytes` and :attr:`Spool.corrupt_events` and
logged once, as a warning naming the file and the offsets (never the content). A damaged
region at the end of the file, after the last valid frame (a write torn by a crash, garbage),
is cut off when the spool is opened, so later appends follow the last valid frame.

The resync rule: reading resumes at the earliest valid frame after the damage, except that a
candidate is refused when it is *not anchored* (followed neither by a valid frame nor by the
end of the file) and covers the start of a valid frame that is anchored. A fake header inside
a damaged payload can thus not swallow the real frames after it, even with a matching crc32;
the one fake still taken is a crafted frame whose crc32 matches and that ends exactly where a
real frame starts (it hides the real frames it covers).

The events of a damaged region are counted from the record heads it still shows, walking from
its start: a head counts when its magic holds, or when its length leads to the end of the
region or to another magic. Garbage (appended to the file, say) counts as 0 events, and so
does a frame torn before its record head.

The read position lives in a small side file ``<path>.pos`` (offset + crc32) replaced
atomically, so a resend that was acknowledged is not repeated after a restart; a crash between
an acknowledgement and the position update repeats those records (at-least-once; consumers drop
repeated ``event_id``\\ s).

Durability: :meth:`Spool.append` writes all given frames with one ``write`` and calls
``os.fsync`` before it returns (unless the spool was opened with ``fsync=False``), so a record
counted as spooled survives a crash of the process and of the machine.

Bound: the file never grows beyond ``max_bytes``. When a frame does not fit, the already-resent
prefix is dropped by rewriting the valid frames of the unread tail to a new file (atomic
rename); if it still does not fit, :class:`SpoolFullError` is raised and nothing of that call is
written.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from usersignals.errors import SpoolBusyError, SpoolFullError

__all__ = ["Spool", "SpoolBusyError", "SpoolFullError", "SpooledRecord"]

log = logging.getLogger(__name__)

MAGIC = b"US"
_HEADER = struct.Struct(">2sII")
_POS = struct.Struct(">QI")
# partition count (0 = unknown), partition (-1 = unknown), events, key length
_RECORD = struct.Struct(">HhHH")
HEADER_BYTES = _HEADER.size
_SCAN_CHUNK = 1 << 16
_WINDOW = 1 << 20  # bytes read at once when frames are read (one system call, not two a frame)


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """One Kafka record as spooled: its value, its key and the partition it was meant for.

    ``partitions`` is the partition count the partition was computed with (0 when the count was
    not known yet); a reader with another count regroups the events instead of trusting it.
    """

    value: bytes
    events: int
    key: bytes = b""
    partition: int = -1
    partitions: int = 0

    def to_bytes(self) -> bytes:
        head = _RECORD.pack(self.partitions, self.partition, self.events, len(self.key))
        return head + self.key + self.value

    @classmethod
    def from_bytes(cls, payload: bytes) -> SpooledRecord:
        partitions, partition, events, key_len = _RECORD.unpack_from(payload)
        start = _RECORD.size
        return cls(
            value=payload[start + key_len :],
            events=events,
            key=payload[start : start + key_len],
            partition=partition,
            partitions=partitions,
        )


def frame(payload: bytes) -> bytes:
    """The bytes of one frame holding ``payload``."""
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


class Spool:
    """The spool file at ``path``; thread-safe.

    Args:
        path: The spool file (created with its parent directories when missing).
        max_bytes: The file never grows beyond this many bytes.
        fsync: Call ``os.fsync`` after every append and position update (default). Without it a
            machine crash may lose the last appended records (a process crash does not).

    Attributes:
        corrupt_frames: Damaged frames skipped or cut off since the spool was opened.
        corrupt_bytes: Bytes of those damaged regions.
        corrupt_events: Events those frames held, as far as their record heads tell (see the
            module docstring).
    """

    def __init__(self, path: Path | str, max_bytes: int, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.corrupt_frames = 0
        self.corrupt_bytes = 0
        self.corrupt_events = 0
        self._holes: dict[int, int] = {}  # damaged regions after the read position: start -> end
        self._win_at, self._win = 0, b""  # bytes of the file read last, from offset _win_at
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pos_path = self.path.with_name(self.path.name + ".pos")
        self._lock_file = open(self.path.with_name(self.path.name + ".lock"), "a+b")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolBusyError(self.path) from None
        self._file = open(self.path, "a+b")  # noqa: SIM115 - kept open for the spool's life
        self._size = self._file.seek(0, os.SEEK_END)
        self._read_pos = min(self._load_pos(), self._size)
        self._pending_frames = 0
        self._scan()

    # -- state -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes in the file, resent prefix included."""
        return self._size

    @property
    def pending_bytes(self) -> int:
        """Bytes of frames not resent yet (damaged regions not included)."""
        return self._size - self._read_pos - sum(e - s for s, e in self._holes.items())

    @property
    def pending_records(self) -> int:
        """Frames not resent yet."""
        return self._pending_frames

    def __len__(self) -> int:
        return self._pending_frames

    # -- writing -----------------------------------------------------------------------------

    def append(self, payloads: Sequence[bytes]) -> None:
        """Appends one frame per payload, durably (see the module docstring).

        Raises:
            SpoolFullError: the frames do not fit; none of them was written.
        """
        data = b"".join(frame(p) for p in payloads)
        if not data:
            return
        with self._lock:
            if self._size + len(data) > self.max_bytes and self._read_pos > 0:
                self._compact()
            if self._size + len(data) > self.max_bytes:
                raise SpoolFullError(self.path, self.max_bytes, len(data))
            self._file.seek(0, os.SEEK_END)
            self._file.write(data)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self._size += len(data)
            self._pending_frames += len(payloads)

    # -- reading -----------------------------------------------------------------------------

    def peek(self, max_frames: int, max_bytes: int = 1 << 22) -> list[tuple[bytes, int]]:
        """The oldest unread payloads (at least one if any), each with the offset after it.

        Pass such an offset to :meth:`commit` once the payloads up to it are safely elsewhere.
        """
        with self._lock:
            out: list[tuple[bytes, int]] = []
            total = 0
            for payload, end in self._frames(self._read_pos):
                out.append((payload, end))
                total += len(payload)
                if len(out) >= max_frames or total >= max_bytes:
                    break
            return out

    def commit(self, offset: int, frames: int) -> None:
        """Marks everything before ``offset`` (``frames`` frames) as resent.

        When nothing is left unread the file is truncated to zero bytes.
        """
        with self._lock:
            if offset <= self._read_pos:
                return
            self._read_pos = min(offset, self._size)
            self._pending_frames = max(0, self._pending_frames - frames)
            self._holes = {s: e for s, e in self._holes.items() if s >= self._read_pos}
            if self._read_pos >= self._size:
                self._file.truncate(0)
                self._win = b""
                self._file.flush()
                if self.fsync:
                    os.fsync(self._file.fileno())
                self._size = self._read_pos = self._pending_frames = 0
                self._holes.clear()
            self._store_pos(self._read_pos)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()
            if not self._lock_file.closed:
                self._lock_file.close()  # releases the flock

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _load_pos(self) -> int:
        try:
            raw = self._pos_path.read_bytes()
        except FileNotFoundError:
            return 0
        if len(raw) != _POS.size:
            log.error("Ignoring the damaged spool position file %r", str(self._pos_path))
            return 0
        offset, crc = _POS.unpack(raw)
        if zlib.crc32(raw[:8]) != crc:
            log.error("Ignoring the damaged spool position file %r", str(self._pos_path))
            return 0
        return int(offset)

    def _store_pos(self, offset: int) -> None:
        if offset == 0:
            self._pos_path.unlink(missing_ok=True)
            return
        head = struct.pack(">Q", offset)
        tmp = self._pos_path.with_name(self._pos_path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(head + struct.pack(">I", zlib.crc32(head)))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self._pos_path)

    def _read(self, pos: int, n: int) -> bytes:
        """``n`` bytes at ``pos`` (fewer at the end), through a window of the file.

        The window is dropped whenever a read starts anew (:meth:`peek`, a scan, a compaction)
        and when the file is cut, so it never serves bytes the file no longer holds.
        """
        start = pos - self._win_at
        if start < 0 or start + n > len(self._win):
            self._win_at, self._win = pos, os.pread(self._file.fileno(), max(n, _WINDOW), pos)
            start = 0
        return self._win[start : start + n]

    def _valid(self, pos: int) -> bytes | None:
        """The payload of the frame at ``pos`` when magic, length and checksum hold."""
        head = self._read(pos, HEADER_BYTES)
        if len(head) < HEADER_BYTES:
            return None
        magic, length, crc = _HEADER.unpack(head)
        if magic != MAGIC or pos + HEADER_BYTES + length > self._size:
            return None
        payload = self._read(pos + HEADER_BYTES, length)
        if len(payload) != length or zlib.crc32(payload) != crc:
            return None
        return payload

    def _anchored(self, pos: int, length: int) -> bool:
        """The frame at ``pos`` ends at the end of the file or where a valid frame starts."""
        end = pos + HEADER_BYTES + length
        return end == self._size or self._valid(end) is not None

    def _frames(self, pos: int) -> Iterator[tuple[bytes, int]]:
        """The valid frames from ``pos`` on (lock held): payload and the offset after it.

        Known damaged regions are jumped over; a frame found damaged now (the file changed on
        disk since it was opened) makes the spool scan its unread part again.
        """
        rescanned_at = -1
        self._win = b""
        while pos < self._size:
            hole_end = self._holes.get(pos)
            if hole_end is not None:
                pos = hole_end
                continue
            payload = self._valid(pos)
            if payload is None:
                if rescanned_at == pos:
                    return
                rescanned_at = pos
                self._scan()
                continue
            pos += HEADER_BYTES + len(payload)
            yield payload, pos

    def _scan(self) -> None:
        """Counts the valid frames after the read position, maps the damaged regions between
        them and cuts a damaged tail (see the module docstring)."""
        pos, frames = self._read_pos, 0
        holes: dict[int, int] = {}
        self._win = b""
        while pos < self._size:
            known = self._holes.get(pos)
            if known is None:
                payload = self._valid(pos)
                if payload is not None:
                    pos += HEADER_BYTES + len(payload)
                    frames += 1
                    continue
                known = self._resync(pos)
                self._count_damage(pos, known)
            holes[pos] = known
            pos = known
        tail = max((s for s, e in holes.items() if e >= self._size), default=None)
        if tail is not None:
            del holes[tail]
            self._file.truncate(tail)
            self._win = b""
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self._size = tail
        self._holes = holes
        self._pending_frames = frames
        if self._read_pos and self._read_pos >= self._size:
            self._file.truncate(0)
            self._win = b""
            self._size = self._read_pos = 0
            self._holes.clear()
            self._store_pos(0)

    def _resync(self, bad: int) -> int:
        """Where reading resumes after the damaged frame at ``bad`` (the end of the file when
        no valid frame follows)."""
        stop = self._size - HEADER_BYTES + 1
        at = self._find_magic(bad + 1, stop)
        while at >= 0:
            payload = self._valid(at)
            if payload is not None and not self._swallows(at, len(payload)):
                return at
            at = self._find_magic(at + 1, stop)
        return self._size

    def _swallows(self, pos: int, length: int) -> bool:
        """An unanchored candidate frame that covers the start of an anchored valid frame."""
        if self._anchored(pos, length):
            return False
        end = pos + HEADER_BYTES + length
        inner = self._find_magic(pos + 1, min(end, self._size - HEADER_BYTES + 1))
        while inner >= 0:
            payload = self._valid(inner)
            if payload is not None and self._anchored(inner, len(payload)):
                return True
            inner = self._find_magic(inner + 1, min(end, self._size - HEADER_BYTES + 1))
        return False

    def _find_magic(self, start: int, stop: int) -> int:
        """The first offset in ``[start, stop)`` where ``MAGIC`` begins, or -1."""
        while start < stop:
            chunk = self._read(start, min(_SCAN_CHUNK, stop - start) + len(MAGIC) - 1)
            i = chunk.find(MAGIC)
            if i >= 0 and start + i < stop:
                return start + i
            start += _SCAN_CHUNK
        return -1

    def _count_damage(self, start: int, end: int) -> None:
        """Counts and logs the damaged region ``[start, end)`` (offsets only, no content)."""
        frames, events, at = 0, 0, start
        while at < end:
            head = self._read(at, HEADER_BYTES + _RECORD.size)
            if len(head) < HEADER_BYTES + _RECORD.size:
                break
            magic, length, _ = _HEADER.unpack_from(head)
            nxt = at + HEADER_BYTES + length
            # a frame head: its magic holds, or its length leads to the end or to another magic
            if magic != MAGIC and nxt != end and (nxt > end or self._read(nxt, 2) != MAGIC):
                break
            frames += 1
            events += _RECORD.unpack_from(head, HEADER_BYTES)[2]
            if nxt >= end:
                break
            at = nxt
        frames = max(frames, 1)
        self.corrupt_frames += frames
        self.corrupt_bytes += end - start
        self.corrupt_events += events
        log.warning(
            "Spool %r: %d damaged bytes at offset %d skipped (%d frames, %d events lost); %s",
            str(self.path),
            end - start,
            start,
            frames,
            events,
            "the damaged tail is cut off"
            if end >= self._size
            else f"reading resumes at offset {end}",
        )

    def _compact(self) -> None:
        """Rewrites the valid frames of the unread tail to a fresh file, dropping the resent
        prefix and the damaged regions."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        frames = 0
        with open(tmp, "wb") as out:
            for payload, _end in self._frames(self._read_pos):
                out.write(frame(payload))
                frames += 1
            out.flush()
            if self.fsync:
                os.fsync(out.fileno())
        self._file.close()
        # Forget the position first: a crash before the rename then resends the old file from
        # its start (duplicates, never a loss); after the rename offset 0 is right.
        self._store_pos(0)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a+b")  # noqa: SIM115
        self._size = self._file.seek(0, os.SEEK_END)
        self._read_pos = 0
        self._pending_frames = frames
        self._holes.clear()
        self._win = b""
