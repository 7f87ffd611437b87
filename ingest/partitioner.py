"""Kafka's default partitioner, so that every producer puts a user on the same partition.

The Java client, kafka-python and aiokafka all map a keyed record to
``(murmur2(key) & 0x7fffffff) % partitions``; the SDK, the collector and the workers use the
same function on the UTF-8 bytes of ``user_id``, so a user's events always meet on one
partition whoever produced them.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from usersignals.errors import ConfigError

__all__ = ["PARTITION_CACHE_SIZE", "murmur2", "partition_for"]

PARTITION_CACHE_SIZE = 1 << 16
"""Users whose partition is remembered (least recently used ones are forgotten first)."""

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """32-bit MurmurHash2 with Kafka's seed, as an unsigned int (kafka-python's ``murmur2``)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    body = length - length % 4
    for (k,) in _WORDS.iter_unpack(data[:body]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length - body
    if rest >= 3:
        h ^= data[body + 2] << 16
    if rest >= 2:
        h ^= data[body + 1] << 8
    if rest >= 1:
        h ^= data[body]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@lru_cache(maxsize=PARTITION_CACHE_SIZE)
def partition_for(user_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives to records keyed by ``user_id``.

    Args:
        user_id: The record key, hashed as UTF-8.
        partitions: Partitions of the topic (at least 1).

    Returns:
        A partition number in ``range(partitions)``.

    Raises:
        ConfigError: ``partitions`` is below 1.
    """
    if partitions < 1:
        raise ConfigError("partitions", partitions, "must be at least 1")
    return (murmur2(user_id.encode("utf-8", "surrogatepass")) & 0x7FFFFFFF) % partitions
