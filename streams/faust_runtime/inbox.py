"""The agent's records, handed straight from faust's consumer to the agent loop in batches.

faust moves each fetched record through its drain loop (four tasks and an asyncio.wait per
record, racing the delivery against flow control), its conductor and a stream: about 300 us a
record here, two thirds of the worker's CPU on a backlog (docs/benchmarks.md). The records of the
agent's own topics skip all of that: the consumer (`InboxConsumer`) appends each to an `Inbox`,
and the agent loop (streams/faust_runtime/app.py) takes them in batches. Changelog records, which faust's table
recovery reads, still go faust's way.

What faust's path did and this keeps (docs/delivery.md):
- flow control: nothing is put while the consumer's flow is stopped (a rebalance), and what the
  inbox holds is dropped when faust clears its queues (the ReadLedger then reads it again);
- back pressure: the consumer waits while the inbox is full;
- tracking: a record is tracked (faust waits for its ack at a rebalance and commits nothing past
  it) from the moment the agent takes it, as faust's stream did; a record of an older consumer
  generation, or taken while flow control is off, is not handed to the agent.
"""
from __future__ import annotations

import asyncio
from collections import deque

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver

MAX_INBOX = 4000  # records fetched and not yet taken: bounds memory, as faust's stream buffer did
YIELD_EVERY = 100  # records handed over between turns of the event loop


class Inbox:
    def __init__(self, topics, maxsize: int = MAX_INBOX) -> None:
        self.topics = frozenset(topics)
        self.maxsize = maxsize
        self._items: deque = deque()
        self._want = 1  # how many records the waiting taker wants before it wakes
        self._ready = asyncio.Event()
        self._space = asyncio.Event()

    def takes(self, tp) -> bool:
        return tp.topic in self.topics

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, message, suspended: asyncio.Event) -> None:
        """Append a fetched record; waits while the inbox is full. Dropped while the consumer's
        flow is suspended, as faust's drain drops it (the ReadLedger reads it again)."""
        while len(self._items) >= self.maxsize and not suspended.is_set():
            self._space.clear()
            await _first(self._space.wait(), suspended.wait())
        if suspended.is_set():
            return
        self._items.append(message)
        if len(self._items) >= self._want:
            self._ready.set()

    async def take(self, n: int, within: float, idle: float = 1.0) -> list:
        """Up to `n` records: waits up to `idle` seconds for the first, then up to `within` for
        the batch to fill."""
        if not self._items:
            await self._wait(1, idle)
        if self._items and len(self._items) < n:
            await self._wait(n, within)
        items, take = self._items, min(n, len(self._items))
        batch = [items.popleft() for _ in range(take)]
        self._space.set()
        return batch

    async def _wait(self, want: int, timeout: float) -> None:
        self._want = want
        self._ready.clear()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._want = 1

    def clear(self) -> None:
        """faust's flow control clears its queues at a rebalance (FlowControlEvent.manage_queue)."""
        self._items.clear()
        self._space.set()


async def _first(*aws) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


class InboxConsumer(driver.Consumer):
    """faust's aiokafka consumer whose drain loop appends the agent's records to the app's Inbox
    (`app.inbox`) and hands everything else (changelogs) to faust as faust's own drain does.

    The ledger-checked getmany of streams/faust_runtime/compat.py has already set each agent record's read
    offset and the gaps before it, and checked it continues its partition. The loop is faust
    0.15.3's `Consumer._drain_messages` with that one difference and uses its internals (read
    offsets, gaps, commit counters): faust is pinned, and compat.check_versions (build_app)
    refuses other versions."""

    async def _drain_messages(self, fetcher) -> None:  # pragma: no cover - runs in every stream test
        inbox = getattr(self.transport.app, "inbox", None)
        if inbox is None:
            return await super()._drain_messages(fetcher)
        stopped = lambda: self._stopped.is_set() or fetcher._stopped.is_set()  # noqa: E731
        since_yield = 0
        try:
            while not stopped():
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in records:
                        since_yield += 1
                        if since_yield > YIELD_EVERY:
                            await asyncio.sleep(0)
                            since_yield = 0
                        if inbox.takes(tp):
                            await inbox.put(message, self.suspend_flow)
                        else:
                            await self._faust_way(tp, message)
                        if self._commit_every is not None and self._n_acked >= self._commit_every:
                            self._n_acked = 0
                            await self.commit()
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
            self.log.info("Broker stopped consumer, shutting down...")
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _faust_way(self, tp, message) -> None:
        """faust 0.15.3's drain, for one record of faust's own topics."""
        offset, r_offset = message.offset, self._read_offset[tp]
        if r_offset is not None and offset < r_offset:
            return  # faust drops records below its read offset
        if r_offset and offset - r_offset > 1 and self.app.topics.acks_enabled_for(message.topic):
            await self._add_gap(tp, r_offset + 1, offset)
        await self.wait_first(self.callback(message), self.suspend_flow.wait())
        self._read_offset[tp] = offset


class InboxTransport(driver.Transport):
    Consumer = InboxConsumer
