"""Fixes that faust-streaming 0.15.3 / aiokafka 0.14 need: 1, 2 and 4 against the Tansu broker
(harmless against Apache Kafka), 3 a faust bug on any broker. Applied whenever the worker starts;
faust and aiokafka are pinned (pyproject.toml) because these patch their internals, and apply
refuses other versions (WRITTEN_FOR) rather than patch code it was not written for.

1. Tansu numbers consumer-group generations from 0; aiokafka sends LeaveGroup only for a
   generation above 0, so a cleanly stopped worker never left the group and the next start waited
   for the session timeout. Leave for generation 0 too.
2. Tansu answers ListOffsets(LATEST) with the base offset of the last record batch + 1 when that
   batch held several records, so faust's table recovery stopped before the changelog's end and
   silently lost the newest state. The high watermark of a Fetch response is right: use that
   (read by a consumer of its own, connected like every client: see set_client_kwargs).
3. (faust bug, any broker) Around a rebalance faust can drop records it has already fetched (a
   stream queue cleared when flow control resumes; getmany skipping a partition not yet active),
   then commit a later record's offset past them: events lost for good. Found by the kill -9 test
   (about one run in eight, when a killed member left the group late and a rebalance followed the
   restart). Offsets are now committed only up to the first record not processed, and such a hole
   is read again (see _patch_commit_holes).
4. faust creates its consumer with fetch_max_wait_ms=1500, not configurable. Tansu does not answer a
   waiting fetch when new data arrives, so each event waited up to 1.5 s (measured: p50 716 ms
   from produce to consume at 1500, 3 ms at 20). The worker's setting replaces it; on Kafka it
   only bounds how often an idle consumer polls.
"""
from __future__ import annotations

import asyncio
import logging
from importlib.metadata import version

log = logging.getLogger(__name__)
_applied = False
WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}  # the pins of pyproject.toml


class VersionMismatch(ValueError):
    """Installed faust-streaming or aiokafka versions the patches were not written for. A ValueError
    like ConfigError: the command prints the message, which says what to do, and exits 1."""


def apply(fetch_max_wait_ms: int = 20) -> None:
    global _applied
    check_versions()
    if not _applied:
        _patch_leave_group()
        _patch_table_highwaters()
        _patch_commit_holes()
        _applied = True
    _patch_fetch_wait(fetch_max_wait_ms)


def check_versions() -> None:
    """Refuse other versions: a patched method that moved or changed would fail at some rebalance
    or recovery long after the start, or silently stop fixing what it fixes."""
    found = {name: version(name) for name in WRITTEN_FOR}
    if found != WRITTEN_FOR:
        raise VersionMismatch(f"streams/compat.py was written for {_listed(WRITTEN_FOR)}; found {_listed(found)}: "
                              "install the pinned versions (pip install -e .) or re-check the patches in "
                              "streams/compat.py before changing the pins (pyproject.toml, compat.WRITTEN_FOR)")


def _listed(versions: dict) -> str:
    return " and ".join(f"{name} {v}" for name, v in versions.items())


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


HOLE_SECONDS = 5.0  # an unprocessed record below processed ones for this long is read again


def _patch_commit_holes() -> None:
    """Never commit past a record that was fetched but not processed; read such records again.

    faust 0.15.3 can lose records between the fetch and the stream: resuming flow control after a
    rebalance clears the stream queues, and its getmany skips records of partitions it does not
    consider active at that instant; the consumer's position has moved past them either way. It
    then commits the first consecutive run of acked offsets, and checks that the run starts at the
    committed offset only when there is one (and off by one): so a later record's ack committed
    past the lost ones, on partitions never committed before in particular.
    Here the run must start exactly at the next offset to process: the committed offset, or, on a
    partition never committed, the first record the fetcher handed over since it was assigned.
    Offsets faust knows to be missing (its gap tree: compaction, transaction markers) count as
    processed. A hole that lasts HOLE_SECONDS is read again from its start (seek): the state
    machine ignores the repeats of what came after it.
    """
    from faust.transport.consumer import Consumer
    from faust.transport.drivers import aiokafka as driver

    fetch = getattr(driver.AIOKafkaConsumerThread.getmany, "__wrapped__", driver.AIOKafkaConsumerThread.getmany)

    async def fetched(self, active_partitions, timeout):
        """The records aiokafka hands over (its position moves past them): remember them."""
        records = await fetch(self, active_partitions, timeout)
        first, batch_log = _first_fetched(self.consumer), self.consumer.__dict__.get("_iv_batch")
        for tp, batch in records.items():
            if batch:
                first.setdefault(tp, batch[0].offset)
                if batch_log is not None:
                    batch_log[tp] = (batch[0].offset, batch[-1].offset)
        return records

    fetched.__wrapped__ = fetch
    driver.AIOKafkaConsumerThread.getmany = fetched

    getmany = getattr(Consumer.getmany, "__wrapped__", Consumer.getmany)

    async def getmany_or_seek_back(self, timeout):
        """faust's getmany, but records it takes from the fetcher and does not yield (a partition it
        does not consider active at that instant, a flow stop or generation change mid-batch) are
        read again: the partition is sought back to the first of them."""
        batch, given = {}, {}
        self.__dict__["_iv_batch"] = batch
        async for tp, message in getmany(self, timeout):
            given[tp] = message.offset
            yield tp, message
        for tp, (first, last) in batch.items() if self.flow_active else ():  # stopped: faust seeks back itself
            done = given.get(tp)
            if (done is None or done < last) and tp in self.assignment():
                await self.seek(tp, first if done is None else done + 1)

    getmany_or_seek_back.__wrapped__ = getmany
    Consumer.getmany = getmany_or_seek_back

    new_offset = getattr(Consumer._new_offset, "__wrapped__", Consumer._new_offset)

    def _new_offset(self, tp):
        acked = self._acked[tp]
        if acked and _hole(self, tp, min(acked)):
            return None
        return new_offset(self, tp)

    _new_offset.__wrapped__ = new_offset
    Consumer._new_offset = _new_offset

    on_revoked = getattr(Consumer.on_partitions_revoked, "__wrapped__", Consumer.on_partitions_revoked)

    async def on_partitions_revoked(self, revoked):
        for tp in revoked:
            _first_fetched(self).pop(tp, None)
            _holes(self).pop(tp, None)
        await on_revoked(self, revoked)

    on_partitions_revoked.__wrapped__ = on_revoked
    Consumer.on_partitions_revoked = on_partitions_revoked


def _first_fetched(consumer) -> dict:
    return consumer.__dict__.setdefault("_iv_first_fetched", {})


def _holes(consumer) -> dict:
    return consumer.__dict__.setdefault("_iv_holes", {})


def _hole(consumer, tp, lowest_acked: int) -> bool:
    """True when offsets below the lowest acked one are neither processed nor known gaps."""
    expected = consumer._committed_offset.get(tp)
    if expected is None:
        expected = _first_fetched(consumer).get(tp)
    if expected is None or lowest_acked <= expected:
        _holes(consumer).pop(tp, None)
        return False
    known = sum(min(iv.end, lowest_acked) - max(iv.begin, expected)
                for iv in consumer._gap[tp].overlap(expected, lowest_acked))
    if known >= lowest_acked - expected:
        return False
    loop = asyncio.get_event_loop()
    since = _holes(consumer).setdefault(tp, loop.time())
    if loop.time() - since >= HOLE_SECONDS:
        _holes(consumer).pop(tp, None)
        log.warning("%s[%d]: records from offset %d were fetched but never processed; reading them again",
                    tp.topic, tp.partition, expected)
        loop.create_task(consumer.seek(tp, expected))
    return True


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
        return await fetched_end_offsets(_client_kwargs(self.app), partitions)

    driver.AIOKafkaConsumerThread._highwaters = _highwaters


def set_client_kwargs(app, kwargs: dict) -> None:
    """The connection settings of the consumer table recovery opens for `app` (fix 2), which has to
    reach the secured cluster like every other client: build_app gives streams.kafka.client_kwargs,
    the one function all the product's aiokafka clients connect with.

    That consumer is made in faust's consumer thread by a patched method that sees only the thread
    and its app, so the settings are kept on the app: not in a module global, which one app would
    overwrite for another (tests run several in one process, each against its own broker), and not
    copied from faust's own consumer, which would mean reading aiokafka's private attributes and
    losing whatever client_kwargs adds that faust does not pass on.
    """
    app.__dict__["_iv_client_kwargs"] = kwargs


def _client_kwargs(app) -> dict:
    try:
        return app.__dict__["_iv_client_kwargs"]
    except KeyError:
        raise RuntimeError(f"faust app {app.conf.id!r} has no Kafka connection settings for table recovery: "
                           "build it with streams.app.build_app (compat.set_client_kwargs)") from None


async def fetched_end_offsets(client_kwargs: dict, partitions, timeout: float = 60.0) -> dict:
    """End offsets from the high watermark of a Fetch (correct on Tansu), not from ListOffsets.

    Never falls back to ListOffsets: a short end offset makes table recovery stop early and
    silently drop the newest states, so failing to learn the end is an error, not a guess.
    `client_kwargs`: the connection settings, streams.kafka.client_kwargs (SASL/TLS included)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    given = list(partitions)
    tps = [TopicPartition(tp.topic, tp.partition) for tp in given]
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(**client_kwargs, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=20)
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
