"""Batches in flight between the agent and Kafka.

Each batch's outputs are sent once its changelog writes (the states with their outboxes) are
durable, and its records are acked once those outputs are delivered: docs/delivery.md. Awaiting
both round trips before reading on made a backlog as slow as two produce round trips per batch of
about 45 records (1,100 events/s). Here the agent hands a batch over and processes the next while
up to MAX_IN_FLIGHT batches are on their way; their outputs are still enqueued, delivered and
acked in batch order, so an encounter's outputs keep their order and a mark "delivered up to
batch N" means every batch before N is delivered too.

No faust here: `send` enqueues outputs on a producer and returns their delivery futures.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

MAX_IN_FLIGHT = 4  # batches handed over and not yet acked; bounds memory and what a crash replays


@dataclass
class Delivery:
    writes: list[asyncio.Future]  # the batch's changelog writes, already enqueued
    outputs: list  # what to send once those are durable, in order
    finish: Callable[[], Awaitable[None]]  # after the outputs are delivered: marks, acks
    enqueued: Callable[[], None] = lambda: None  # the outputs are on the producer, in order


class Deliveries:
    def __init__(self, send: Callable[[list], Awaitable[list]], limit: int = MAX_IN_FLIGHT) -> None:
        self._send, self.limit = send, limit
        self._tasks: deque[asyncio.Task] = deque()  # in batch order; the last one is the newest batch
        self._sent: asyncio.Future | None = None  # the newest batch's outputs are enqueued

    async def add(self, delivery: Delivery) -> None:
        """Hand a batch over; waits only while MAX_IN_FLIGHT batches are on their way."""
        self.check()
        while len(self._tasks) >= self.limit:
            await asyncio.wait([self._tasks[0]])
            self.check()
        sent = asyncio.get_running_loop().create_future()
        done_before = self._tasks[-1] if self._tasks else None  # an earlier one is done and checked
        self._tasks.append(asyncio.create_task(self._deliver(delivery, self._sent, done_before, sent)))
        self._sent = sent

    async def _deliver(self, d: Delivery, sent_before, done_before, sent) -> None:
        try:
            await asyncio.gather(*d.writes)
            if sent_before is not None:
                await sent_before  # an earlier batch's outputs go first
            futures = await self._send(d.outputs)
            d.enqueued()
            sent.set_result(None)
        except BaseException as exc:
            sent.set_exception(exc if isinstance(exc, Exception) else RuntimeError("delivery cancelled"))
            sent.exception()  # the next batch, if any, raises it; no "never retrieved" warning
            raise
        await asyncio.gather(*futures)
        if done_before is not None:
            await done_before
        await d.finish()

    def check(self) -> None:
        """Forget the batches done; raise the error of one that failed on its way (the agent fails,
        as it did when it awaited each send itself): its records were never acked, so they are read
        again."""
        while self._tasks and self._tasks[0].done():
            task = self._tasks.popleft()
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()

    async def drain(self) -> None:
        """Wait until every batch handed over is delivered and acked (before a rebalance or a stop).
        A failed batch is not raised here: the agent raises it at its next batch."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    @property
    def in_flight(self) -> int:
        return sum(1 for t in self._tasks if not t.done())
