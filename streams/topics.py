"""Create the product's topics explicitly, all with the same partition count.

faust raises PartitionsMismatch when co-partitioned topics differ, and a producer's auto-created
topic gets the broker's default count, so nothing is left to auto-creation.
"""
from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.config import ConfigError, Settings
from streams.kafka import client_kwargs


async def create_topics(s: Settings, log=print) -> list[str]:
    """Create every topic that is missing; check the partition count of those that exist."""
    admin = AIOKafkaAdminClient(**client_kwargs(s))
    await admin.start()
    try:
        existing = await _partition_counts(admin, s.topics.all)
        wrong = {t: n for t, n in existing.items() if n != s.partitions}
        if wrong:
            raise ConfigError("topics exist with another partition count than IV_PARTITIONS="
                              f"{s.partitions}: {', '.join(f'{t} ({n})' for t, n in sorted(wrong.items()))}; "
                              "set IV_PARTITIONS to match, or recreate them")
        missing = [t for t in s.topics.all if t not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(t, s.partitions, s.replication_factor) for t in missing])
            except TopicAlreadyExistsError:
                pass  # another worker created them first
        for t in s.topics.all:
            log(f"{t}: {s.partitions} partitions" + (" (created)" if t in missing else " (exists)"))
        return missing
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names) -> dict[str, int]:
    # Describe only topics that exist: a metadata request for a missing topic makes brokers with
    # auto-creation on (Tansu always) create it with their default partition count.
    existing = set(await admin.list_topics())
    names = [n for n in names if n in existing]
    if not names:
        return {}
    described = await admin.describe_topics(names)
    return {d["topic"]: len(d["partitions"]) for d in described if d.get("error_code", 0) == 0 and d["partitions"]}
