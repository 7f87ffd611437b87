"""A bounded, append-only local file of records that could not reach Kafka yet.

The :class:`~usersignals.ingest.tracker.Tracker` writes a record here when the broker cannot be
reached, and reads the records back, oldest first, once it can. The file outlives the process:
a new tracker on the same path resends what an earlier one spooled.

File layout: a sequence of frames ``b"US" | length u32 | crc32 u32 | payload`` (big-endian).
A frame whose checksum does not match, or that was cut short by a crash while it was written,
ends the readable part: the file is truncated there when it is opened (and the lost bytes are
logged and counted in :attr:`Spool.corrupt_bytes`). The read position lives in a small side file
``<path>.pos`` (offset + crc32) replaced atomically, so a resend that was acknowledged is not
repeated after a restart; a crash between an acknowledgement and the position update repeats
those records (at-least-once; consumers drop repeated ``event_id``\\ s).

Durability: :meth:`Spool.append` writes all given frames with one ``write`` and calls
``os.fsync`` before it returns (unless the spool was opened with ``fsync=False``), so a record
counted as spooled survives a crash of the process and of the machine.

Bound: the file never grows beyond ``max_bytes``. When a frame does not fit, the already-resent
prefix is dropped by rewriting the unread tail to a new file (atomic rename); if it still does not
fit, :class:`SpoolFullError` is raised and nothing of that call is written.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Sequence
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
    """

    def __init__(self, path: Path | str, max_bytes: int, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.corrupt_bytes = 0
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
        self._recover()

    # -- state -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes in the file, resent prefix included."""
        return self._size

    @property
    def pending_bytes(self) -> int:
        """Bytes of frames not resent yet."""
        return self._size - self._read_pos

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
            pos = self._read_pos
            total = 0
            while pos < self._size and len(out) < max_frames and (not out or total < max_bytes):
                self._file.seek(pos)
                _magic, length, _crc = _HEADER.unpack(self._file.read(HEADER_BYTES))
                payload = self._file.read(length)
                pos += HEADER_BYTES + length
                out.append((payload, pos))
                total += length
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
            if self._read_pos >= self._size:
                self._file.truncate(0)
                self._file.flush()
                if self.fsync:
                    os.fsync(self._file.fileno())
                self._size = self._read_pos = self._pending_frames = 0
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

    def _recover(self) -> None:
        """Counts the readable frames after the read position; cuts a damaged or torn tail."""
        pos, frames = self._read_pos, 0
        self._file.seek(pos)
        while pos < self._size:
            head = self._file.read(HEADER_BYTES)
            if len(head) < HEADER_BYTES:
                break
            magic, length, crc = _HEADER.unpack(head)
            if magic != MAGIC or pos + HEADER_BYTES + length > self._size:
                break
            payload = self._file.read(length)
            if zlib.crc32(payload) != crc:
                break
            pos += HEADER_BYTES + length
            frames += 1
        if pos < self._size:
            self.corrupt_bytes = self._size - pos
            log.error(
                "Spool %r: %d damaged or incomplete bytes at offset %d were cut off",
                str(self.path),
                self.corrupt_bytes,
                pos,
            )
            self._file.truncate(pos)
            self._size = pos
        self._pending_frames = frames
        if self._read_pos and self._read_pos >= self._size:
            self._file.truncate(0)
            self._size = self._read_pos = 0
            self._store_pos(0)

    def _compact(self) -> None:
        """Rewrites the unread tail to a fresh file, dropping the resent prefix."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        self._file.seek(self._read_pos)
        with open(tmp, "wb") as out:
            while chunk := self._file.read(1 << 20):
                out.write(chunk)
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
