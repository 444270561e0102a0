"""Which partition owns an encounter: the one function every placement decision uses.

Kafka's Java client (and aiokafka, and librdkafka's `murmur2_random`) put a keyed record on
murmur2(key) mod the partition count. Other producers do not: librdkafka's default is CRC32
(`consistent_random`), other clients hash differently or round-robin. The worker therefore never
trusts the partition a record arrived on: the encounter's state, its changelog records, its clock
ticks and its outputs all live on `owner(key)`, and an input record found elsewhere is forwarded
there (see streams/intake.py and docs/delivery.md).
"""
from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 16)  # keys repeat: every event of an encounter carries the same one
def owner(key: bytes, partitions: int) -> int:
    """The partition that owns `key`, as Kafka's Java client computes it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
