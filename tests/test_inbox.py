"""The Inbox between faust's consumer and the agent loop (streams/faust_runtime/inbox.py)."""
import asyncio

from faust.types import TP

from streams.faust_runtime.inbox import Inbox


class _Msg:
    def __init__(self, offset: int) -> None:
        self.offset = offset


async def test_take_returns_a_full_batch_at_once_and_a_partial_one_after_its_wait():
    inbox, go = Inbox(["in"]), asyncio.Event()
    for i in range(5):
        await inbox.put(_Msg(i), go)
    assert [m.offset for m in await inbox.take(3, within=10)] == [0, 1, 2]  # full: no wait
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert [m.offset for m in await inbox.take(3, within=0.05)] == [3, 4]
    assert 0.04 <= loop.time() - t0 < 1


async def test_take_wakes_when_records_arrive_and_gives_up_when_idle():
    inbox, go = Inbox(["in"]), asyncio.Event()
    assert await inbox.take(10, within=0.01, idle=0.02) == []

    async def later():
        await asyncio.sleep(0.02)
        for i in range(10):
            await inbox.put(_Msg(i), go)

    task = asyncio.create_task(later())
    assert len(await inbox.take(10, within=5, idle=5)) == 10
    await task


async def test_a_full_inbox_makes_the_consumer_wait_and_a_suspended_flow_drops():
    inbox, go, suspended = Inbox(["in"], maxsize=2), asyncio.Event(), asyncio.Event()
    await inbox.put(_Msg(0), go)
    await inbox.put(_Msg(1), go)
    blocked = asyncio.create_task(inbox.put(_Msg(2), go))
    await asyncio.sleep(0.01)
    assert not blocked.done() and len(inbox) == 2  # back pressure on the drain loop
    assert [m.offset for m in await inbox.take(1, within=0)] == [0]
    await asyncio.wait_for(blocked, 1)
    assert len(inbox) == 2
    suspended.set()  # a rebalance began: faust's drain drops what it would deliver
    await asyncio.wait_for(inbox.put(_Msg(3), suspended), 1)
    assert len(inbox) == 2
    inbox.clear()  # faust clears its queues: the ReadLedger reads these again
    assert len(inbox) == 0 and await inbox.take(5, within=0, idle=0) == []


def test_the_inbox_takes_only_the_agents_topics():
    inbox = Inbox(["mar", "adt"])
    assert inbox.takes(TP("mar", 3)) and not inbox.takes(TP("encounters-changelog", 3))
