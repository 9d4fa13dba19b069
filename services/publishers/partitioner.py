"""Kafka's default partitioner (the Java client's murmur2 of the key), fast enough for the relay's batches."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from schemas.catalogue import LISTING_TOPIC_PARTITIONS

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF
_LISTING_PARTITIONS = range(LISTING_TOPIC_PARTITIONS)


def murmur2(data: bytes) -> int:
    """org.apache.kafka.common.utils.Utils.murmur2 as an unsigned 32-bit value, equal to aiokafka's `murmur2`
    (which `AIOKafkaProducer.send` uses); this one reads whole little-endian words at once, about twice as fast."""
    length = len(data)
    h = _SEED ^ length
    words = length // 4
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = data[words * 4 :]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: Sequence[int]) -> int:
    """The partition a keyed record goes to: toPositive(murmur2(key)) % count, as every Kafka client does by
    default, so a listing's records land on one partition whichever client sends them."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


def listing_partition(key: bytes) -> int:
    """The partition of a listing topic (CONTRACT section 3: LISTING_TOPIC_PARTITIONS of them) a keyed record goes to."""
    return partition_of(key, _LISTING_PARTITIONS)
