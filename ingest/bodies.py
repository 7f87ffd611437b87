"""Reading a request body without letting the client decide how much work it costs.

The body arrives within a deadline, and never more than a limit of bytes is kept: counted as
it arrives (``Content-Length`` cannot lie its way past it, a chunked body cannot smuggle
more), and, when it is ``Content-Encoding: gzip`` or ``deflate``, inflated here in bounded
steps. Inflation stops one byte past the limit however much the compressed bytes would
expand to, so a gzip bomb (1 MB that inflates to 1 GiB) costs the inflation of 1 MiB, and the
event loop gets control back between steps.

:class:`Inflater` is the pure core (bytes in, bytes out, a count); :func:`read_body` the thin
shell over an aiohttp request, and :func:`inflate` the same bounded steps over bytes already
read (a body whose gzip is told by its first bytes rather than by a header).
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from enum import Enum

from aiohttp import StreamReader

__all__ = [
    "ENCODINGS",
    "GZIP_MAGIC",
    "Body",
    "BodyProblem",
    "BodyStats",
    "Inflater",
    "inflate",
    "read_body",
]

ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}
"""Content codings the collector inflates, with their ``zlib`` window bits (``deflate`` is
the zlib format, RFC 9110 section 8.4.1.2)."""

GZIP_MAGIC = b"\x1f\x8b"
"""The first two bytes of a gzip stream (RFC 1952): how a body gzipped with no
``Content-Encoding`` (posthog-js sends one as ``text/plain``) is told."""

INFLATE_STEP = 64 * 1024
"""Most bytes one inflation step produces before the event loop runs again."""

READ_CHUNK = 64 * 1024


class BodyProblem(Enum):
    """Why a body was not read to the end."""

    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    BAD_ENCODING = "bad_encoding"
    UNSUPPORTED_ENCODING = "unsupported_encoding"


@dataclass
class BodyStats:
    """Counters over every body read (for tests and status): bytes received and inflated."""

    received_bytes: int = 0
    inflated_bytes: int = 0


@dataclass(frozen=True)
class Body:
    """The outcome of reading a body: the bytes, or the problem that stopped the reading."""

    data: bytes = b""
    problem: BodyProblem | None = None


class Inflater:
    """Inflates a gzip or zlib stream into at most ``limit + 1`` bytes.

    Args:
        wbits: ``zlib`` window bits (31 for gzip, 15 for zlib), from :data:`ENCODINGS`.
        limit: Bytes of inflated body allowed; one more is produced at most, to tell.
    """

    def __init__(self, wbits: int, limit: int) -> None:
        self.limit = limit
        self.produced = 0
        self._z = zlib.decompressobj(wbits)

    @property
    def over(self) -> bool:
        return self.produced > self.limit

    def steps(self, data: bytes) -> list[bytes] | None:
        """Inflates ``data`` step by step; ``None`` when it is not a valid stream.

        Each item is one step of at most :data:`INFLATE_STEP` bytes; it stops as soon as the
        total passes the limit (check :attr:`over`).
        """
        out: list[bytes] = []
        pending = data
        try:
            while not self.over and not self._z.eof:
                room = min(INFLATE_STEP, self.limit + 1 - self.produced)
                piece = self._z.decompress(pending, room)
                pending = self._z.unconsumed_tail
                self.produced += len(piece)
                if piece:
                    out.append(piece)
                if not pending and len(piece) < room:
                    break  # input used up and output not capped: nothing is held back
        except zlib.error:
            return None
        if self._z.eof and (pending or self._z.unused_data):
            return None  # bytes after the end of the stream
        return out

    def finished(self) -> bool:
        """Whether the stream ended properly (not truncated)."""
        return self._z.eof


async def read_body(
    content: StreamReader,
    *,
    encoding: str | None,
    limit: int,
    timeout: float,
    stats: BodyStats,
) -> Body:
    """Reads a body (an aiohttp ``request.content``) within ``timeout`` seconds.

    Args:
        content: The request's stream (``request.content``).
        encoding: The ``Content-Encoding`` header, ``None`` when absent.
        limit: Bytes the (inflated) body may have.
        timeout: Seconds the whole body may take to arrive.
        stats: Counters to add to.

    Returns:
        The body, or the problem that stopped the reading (nothing more is read then).
    """
    coding = (encoding or "identity").strip().lower()
    wbits = ENCODINGS.get(coding)
    if wbits is None and coding != "identity":
        return Body(problem=BodyProblem.UNSUPPORTED_ENCODING)
    inflater = Inflater(wbits, limit) if wbits is not None else None
    buffer = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in content.iter_chunked(READ_CHUNK):
                stats.received_bytes += len(chunk)
                if inflater is None:
                    buffer += chunk
                    if len(buffer) > limit:
                        return Body(problem=BodyProblem.TOO_LARGE)
                    continue
                pieces = inflater.steps(chunk)
                if pieces is None:
                    return Body(problem=BodyProblem.BAD_ENCODING)
                for piece in pieces:
                    stats.inflated_bytes += len(piece)
                    buffer += piece
                    await asyncio.sleep(0)  # let other connections run between steps
                if inflater.over:
                    return Body(problem=BodyProblem.TOO_LARGE)
    except TimeoutError:
        return Body(problem=BodyProblem.TIMEOUT)
    if inflater is not None and not inflater.finished():
        return Body(problem=BodyProblem.BAD_ENCODING)
    return Body(bytes(buffer))


async def inflate(data: bytes, *, wbits: int, limit: int, stats: BodyStats) -> Body:
    """Inflates ``data`` (a whole gzip or zlib stream) to at most ``limit`` bytes, in the
    bounded steps of :func:`read_body`, giving the event loop control between steps.

    Args:
        data: The compressed bytes.
        wbits: ``zlib`` window bits (31 for gzip, 15 for zlib).
        limit: Bytes the inflated body may have.
        stats: Counters to add to (``inflated_bytes``).

    Returns:
        The inflated bytes, or ``TOO_LARGE`` (one byte past ``limit`` was inflated, no more)
        or ``BAD_ENCODING`` (not a valid stream, truncated, or bytes after its end).
    """
    inflater = Inflater(wbits, limit)
    buffer = bytearray()
    for start in range(0, max(len(data), 1), READ_CHUNK):
        pieces = inflater.steps(data[start : start + READ_CHUNK])
        if pieces is None:
            return Body(problem=BodyProblem.BAD_ENCODING)
        for piece in pieces:
            stats.inflated_bytes += len(piece)
            buffer += piece
            await asyncio.sleep(0)
        if inflater.over:
            return Body(problem=BodyProblem.TOO_LARGE)
    if not inflater.finished():
        return Body(problem=BodyProblem.BAD_ENCODING)
    return Body(bytes(buffer))
