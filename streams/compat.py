"""Two fixes that faust-streaming 0.15.3 / aiokafka 0.14 need against the Tansu broker.

Both are harmless against Apache Kafka (they only change behaviour Tansu gets wrong), so they are
applied whenever the worker starts.

1. Tansu numbers consumer-group generations from 0; aiokafka sends LeaveGroup only for a
   generation above 0, so a cleanly stopped worker never left the group and the next start waited
   for the session timeout. Leave for generation 0 too.
2. Tansu answers ListOffsets(LATEST) with the base offset of the last record batch + 1 when that
   batch held several records, so faust's table recovery stopped before the changelog's end and
   silently lost the newest state. The high watermark of a Fetch response is right: use that.
3. faust creates its consumer with fetch_max_wait_ms=1500, not configurable. Tansu does not answer a
   waiting fetch when new data arrives, so each event waited up to 1.5 s (measured: p50 716 ms
   from produce to consume at 1500, 3 ms at 20). The worker's setting replaces it; on Kafka it
   only bounds how often an idle consumer polls.
"""
from __future__ import annotations

import asyncio

_applied = False


def apply(fetch_max_wait_ms: int = 20) -> None:
    global _applied
    if not _applied:
        _patch_leave_group()
        _patch_table_highwaters()
        _applied = True
    _patch_fetch_wait(fetch_max_wait_ms)


def _patch_leave_group() -> None:
    from aiokafka import errors
    from aiokafka.consumer import group_coordinator as gc
    from aiokafka.protocol.group import LeaveGroupRequest

    async def _maybe_leave_group(self):
        if self.generation >= 0 and self.member_id and self._group_instance_id is None:
            try:
                await self._send_req(LeaveGroupRequest(self.group_id, self.member_id))
            except errors.KafkaError as err:
                gc.log.error("LeaveGroup request failed: %s", err)
        self.reset_generation()

    gc.GroupCoordinator._maybe_leave_group = _maybe_leave_group


def _patch_fetch_wait(ms: int) -> None:
    from faust.transport.drivers import aiokafka as driver

    create = getattr(driver.AIOKafkaConsumerThread._create_worker_consumer, "__wrapped__",
                     driver.AIOKafkaConsumerThread._create_worker_consumer)

    def _create_worker_consumer(self, transport):
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = ms  # read when the consumer starts its fetcher
        return consumer

    _create_worker_consumer.__wrapped__ = create
    driver.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer


def _patch_table_highwaters() -> None:
    from faust.transport.drivers import aiokafka as driver

    async def _highwaters(self, partitions):
        consumer = self._ensure_consumer()
        if self.consumer.in_transaction:
            return {tp: consumer.last_stable_offset(tp) for tp in partitions}
        return await fetched_end_offsets(consumer._client._bootstrap_servers, partitions)

    driver.AIOKafkaConsumerThread._highwaters = _highwaters


async def fetched_end_offsets(bootstrap, partitions, timeout: float = 60.0) -> dict:
    """End offsets from the high watermark of a Fetch (correct on Tansu), not from ListOffsets.

    Never falls back to ListOffsets: a short end offset makes table recovery stop early and
    silently drop the newest states, so failing to learn the end is an error, not a guess."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    given = list(partitions)
    tps = [TopicPartition(tp.topic, tp.partition) for tp in given]
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                fetch_max_wait_ms=20)
    await consumer.start()
    try:
        listed = await consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, max(listed[tp] - 1, 0))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        found: dict = {}
        while len(found) < len(tps) and loop.time() < deadline:
            await consumer.getmany(*[tp for tp in tps if tp not in found], timeout_ms=50, max_records=1)
            for tp in tps:
                high = consumer.highwater(tp)
                if high is not None and tp not in found:
                    found[tp] = max(high, listed[tp])
        missing = [t for t in tps if t not in found]
        if missing:
            raise RuntimeError(f"could not read the end of {len(missing)} changelog partition(s) within "
                               f"{timeout:.0f} s; refusing to recover tables from a guess")
        return {g: found[t] for g, t in zip(given, tps)}
    finally:
        await asyncio.sleep(0)  # aiokafka 0.14: stopping straight after start raises CancelledError
        await consumer.stop()
