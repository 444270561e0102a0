"""Batches in flight (streams/delivery.py): outputs only after their changelog writes, in batch
order; acks in batch order; a failure fails the agent and acks nothing after it."""
import asyncio

import pytest

from streams.delivery import Deliveries, Delivery


class Producer:
    """Enqueues in order; each send's future completes when the test says (or at once)."""

    def __init__(self) -> None:
        self.sent: list = []
        self.futures: list[asyncio.Future] = []

    async def send(self, outputs):
        loop = asyncio.get_running_loop()
        futures = []
        for o in outputs:
            self.sent.append(o)
            futures.append(loop.create_future())
        self.futures += futures
        return futures

    def complete(self) -> None:
        for f in self.futures:
            if not f.done():
                f.set_result(None)


def run(coro):
    return asyncio.run(coro)


def test_outputs_wait_for_their_changelog_and_keep_batch_order_while_the_agent_reads_on():
    async def scenario():
        producer, finished = Producer(), []
        deliveries = Deliveries(producer.send)
        loop = asyncio.get_running_loop()
        slow, fast = loop.create_future(), loop.create_future()

        async def finish(name):
            finished.append(name)
        await deliveries.add(Delivery([slow], ["b1-out"], lambda: finish("b1")))
        await deliveries.add(Delivery([fast], ["b2-out"], lambda: finish("b2")))  # not blocked by b1
        fast.set_result(None)
        await asyncio.sleep(0.01)
        assert producer.sent == []  # b2's changelog is durable, but b1's outputs go first
        slow.set_result(None)
        await asyncio.sleep(0.01)
        assert producer.sent == ["b1-out", "b2-out"] and finished == []  # not yet delivered: no acks
        producer.complete()
        await deliveries.drain()
        assert finished == ["b1", "b2"]
    run(scenario())


def test_at_most_the_limit_of_batches_is_in_flight():
    async def scenario():
        producer = Producer()
        deliveries = Deliveries(producer.send, limit=2)
        loop = asyncio.get_running_loop()
        durable = loop.create_future()

        async def nothing():
            pass
        await deliveries.add(Delivery([durable], [1], nothing))
        await deliveries.add(Delivery([durable], [2], nothing))
        third = asyncio.create_task(deliveries.add(Delivery([], [3], nothing)))
        await asyncio.sleep(0.01)
        assert not third.done() and deliveries.in_flight == 2  # the agent waits here
        durable.set_result(None)
        await asyncio.sleep(0.01)
        producer.complete()
        await third
        await asyncio.sleep(0.01)
        producer.complete()
        await deliveries.drain()
        assert producer.sent == [1, 2, 3]
    run(scenario())


def test_a_failed_delivery_fails_the_agent_and_nothing_after_it_is_acked():
    async def scenario():
        producer, finished = Producer(), []
        deliveries = Deliveries(producer.send)
        loop = asyncio.get_running_loop()
        broken = loop.create_future()

        async def finish(name):
            finished.append(name)
        await deliveries.add(Delivery([broken], ["b1-out"], lambda: finish("b1")))
        await deliveries.add(Delivery([], ["b2-out"], lambda: finish("b2")))
        broken.set_exception(ConnectionError("broker gone"))
        producer.complete()
        await deliveries.drain()
        assert finished == [] and producer.sent == []  # b2 never overtakes b1: both are read again
        with pytest.raises(ConnectionError):
            deliveries.check()
    run(scenario())
