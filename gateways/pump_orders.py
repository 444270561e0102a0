"""Every HL7 listener replica learns the MAR's orders from Kafka, so a pump's event is linked through
its order whichever replica received the administration (feeds/pump_link.py).

A pump gateway keeps one long MLLP connection, to one replica; the interface engine that sends the
MAR may be connected to another, or the listener may have restarted since. So each listener reads
`administration.started` from the input topic itself (no consumer group: every replica reads
everything), from LOOKBACK back, and keeps reading: order id -> visit.
"""
from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from feeds.pump_link import PumpLinks
from streams.config import Settings
from streams.kafka import client_kwargs

log = logging.getLogger(__name__)

LOOKBACK = 3 * 86400  # seconds of starts read at start: a pump's events come within hours of their order
RETRY = 5.0  # seconds before reading again after a failure


class OrderFollower:
    """`follower = OrderFollower(s, links); follower.start()`, then `await follower.stop()`."""

    def __init__(self, s: Settings, links: PumpLinks) -> None:
        self.s, self.links = s, links
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(_follow(self.s, self.links))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _follow(s: Settings, links: PumpLinks) -> None:
    while True:
        try:
            await _read(s, links)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the broker away: pump events wait for their orders, not the listener
            log.warning("reading the MAR's orders failed (%s); again in %g s", type(exc).__name__, RETRY)
            await asyncio.sleep(RETRY)


async def _read(s: Settings, links: PumpLinks) -> None:
    consumer = AIOKafkaConsumer(**client_kwargs(s), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata, so the topic's partitions are known
        partitions = consumer.partitions_for_topic(s.topics.started)
        if not partitions:
            raise LookupError(f"topic {s.topics.started} not found")
        parts = [TopicPartition(s.topics.started, p) for p in sorted(partitions)]
        consumer.assign(parts)
        since = await consumer.offsets_for_times({tp: int((time.time() - LOOKBACK) * 1000) for tp in parts})
        for tp in parts:
            if since.get(tp) is not None:
                consumer.seek(tp, since[tp].offset)
            else:
                await consumer.seek_to_end(tp)
        async for record in consumer:
            _learn(links, record.value)
    finally:
        await consumer.stop()


def _learn(links: PumpLinks, value: bytes | None) -> None:
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return  # not ours to judge: the worker dead-letters it
    if not isinstance(event, dict):
        return
    order, visit = event.get("order_id"), event.get("encounter_id")
    if isinstance(order, str) and isinstance(visit, str):
        links.order_visit(order, visit)
