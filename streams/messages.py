"""The records that cross the worker's boundaries: a Kafka message in, a message to produce out."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    topic: str  # the input topic (of the original, for a record forwarded to its owner)
    partition: int  # the partition processing it: the owner of its key
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float | None = None  # broker timestamp, epoch seconds
    source_partition: int | None = None  # where a forwarded record was produced
    headers: tuple | list | None = None

    @property
    def source(self) -> dict:
        """Where the record is in Kafka: what a dead letter names."""
        partition = self.partition if self.source_partition is None else self.source_partition
        return {"topic": self.topic, "partition": partition, "offset": self.offset}


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None  # None: the producer's partitioner (murmur2 of the key)
    timestamp: float | None = None  # None: the producer's clock
    headers: list[tuple[str, bytes]] | None = None
