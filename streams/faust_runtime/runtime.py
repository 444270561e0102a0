"""The Runtime (streams/runtime.py) on faust: its consumer, producer, table store and changelog.

Everything the pipeline does to Kafka and to the store goes through here; what faust needs done
for it (tracking records so nothing is committed past one not acked, the current event a rocksdb
store reads its partition from, the monitor's liveness bookkeeping) stays on this side.
"""
from __future__ import annotations

import contextlib
import functools
import weakref

from faust.stores.memory import Store as MemoryStore
from faust.streams import _current_event
from faust.types import TP as FaustTP

from streams.faust_runtime import compat


class FaustRuntime:
    def __init__(self, app, table) -> None:
        self.app, self.table = app, table
        self.changelog_topic = table.changelog_topic.get_topic_name()
        self._dumps_key = functools.partial(app.serializers.dumps_key, str, serializer=table.key_serializer)
        self._last: dict[int, _At] = {}  # partition -> its latest record processed (see put_state)

    # -- records -------------------------------------------------------------------------

    def current(self, record) -> bool:
        # Fetched before a rebalance, or while faust's flow control is suspended (faust's streams skip these too).
        return record.generation_id == self.app.consumer_generation_id and self.app.flow_control.is_active()

    def track(self, record) -> None:
        self.app.consumer.track_message(record)  # faust waits for its ack at a rebalance, commits nothing past it
        record.tracked = True
        record.incref()  # ours until acked

    def untrack(self, record) -> None:
        compat.untrack(self.app.consumer, record)

    def ack(self, record) -> None:
        if record.ack(self.app.consumer):
            self.app.sensors.on_message_out(record.tp, record.offset, record)

    async def seek(self, tp, offset: int) -> None:
        await self.app.consumer.seek(FaustTP(*tp), offset)  # the ledger restarts the partition (compat.py)

    def pause(self, tps) -> None:
        self.app.consumer.pause_partitions({FaustTP(*tp) for tp in tps})

    def resume(self, tps) -> None:
        self.app.consumer.resume_partitions({FaustTP(*tp) for tp in tps})

    def highwater(self, tp) -> int | None:
        return self.app.consumer.highwater(FaustTP(*tp))

    def noted(self, tps, now: float) -> None:
        """faust's consumer thread logs "Stream has not started processing" (an ERROR with advice,
        every few minutes) for a partition whose high watermark is past its position when no stream
        ever took an event of it: its streams would have noted each one (Monitor.on_stream_event_in).
        The agent takes them from the inbox instead, so it notes when, per partition and batch."""
        monitor = self.app.monitor
        if monitor is not None:
            for tp in tps:
                monitor.stream_inbound_time[tp] = now  # monotonic, as faust's

    @contextlib.contextmanager
    def processing(self, record):
        at = self._last[record.partition] = _At(record)
        token = _current_event.set(weakref.ref(at))  # a rocksdb store reads the message's partition
        try:
            yield
        finally:
            _current_event.reset(token)

    def revoked(self, partitions) -> None:
        for p in partitions:
            self._last.pop(p, None)

    # -- outputs and state ---------------------------------------------------------------

    async def send(self, topic, key, value, partition, timestamp, headers):
        """Straight to the producer, not faust's Topic.send per message."""
        return await self.app.producer.send(topic, key, value, partition, timestamp, headers)

    async def send_state(self, key: str, value: bytes | None, partition: int):
        """Straight to the producer: faust's send_soon goes through a 100-message buffer that stalled
        every stream when full (about 1,000 times per benchmark run). Keys as the table encodes them
        (JSON); the delivered offset is what a rocksdb store persists."""
        fut = await self.app.producer.send(self.changelog_topic, self._dumps_key(key), value, partition, None, None)
        fut.add_done_callback(functools.partial(_persisted, self.table, FaustTP(self.changelog_topic, partition)))
        return fut

    def put_state(self, key: str, value: bytes | None, partition: int) -> None:
        """The store takes the partition from the current event (rocksdb keeps a database per
        partition); after a batch that is not necessarily this encounter's, so the write runs with
        an event of the right partition as the current one."""
        at = self._last.get(partition) or _At(_OnPartition(partition))  # none read there yet
        token = _current_event.set(weakref.ref(at))
        try:
            if value is None:
                self.table.data.pop(key, None)
            else:
                self.table.data[key] = value
        finally:
            _current_event.reset(token)

    def forget_outbox(self, key: str, written: bytes, stripped: bytes) -> None:
        """The memory store's value is replaced unless a later batch rewrote it. A rocksdb store keeps
        the value as written (on disk; the partition's mark covers it when it is read back)."""
        store = self.table.data
        if isinstance(store, MemoryStore) and store.data.get(key) is written:
            store.data[key] = stripped


class _At:
    """What faust's stores take for the current event: they read its message's partition."""
    __slots__ = ("message", "__weakref__")

    def __init__(self, message) -> None:
        self.message = message


class _OnPartition:
    """A message's partition alone: what a store asks of the current event."""
    __slots__ = ("partition",)

    def __init__(self, partition: int) -> None:
        self.partition = partition


def _persisted(table, tp, fut) -> None:
    if not fut.cancelled() and fut.exception() is None:
        table.data.set_persisted_offset(tp, fut.result().offset)
