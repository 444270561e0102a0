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
   restart), and again after table recovery (a seek racing the drain loop, found by the two-worker
   test). Records at risk are read again, every record handed over is checked off by the agent, and
   offsets are committed only up to the first record not processed (see _patch_commit_holes).
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
        raise VersionMismatch(f"streams/faust_runtime/compat.py was written for {_listed(WRITTEN_FOR)}; found {_listed(found)}: "
                              "install the pinned versions (pip install -e .) or re-check the patches in "
                              "streams/faust_runtime/compat.py before changing the pins (pyproject.toml, compat.WRITTEN_FOR)")


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


def _patch_commit_holes() -> None:
    """Never lose a record between the fetch and the agent; never commit past one not processed.

    faust 0.15.3 loses records between the fetch and the stream around rebalances: resuming flow
    control clears the stream queues; its getmany skips records of partitions it does not consider
    active at that instant; its drain loop keeps a read offset per partition that a seek made
    meanwhile (table recovery seeks to the committed offsets while a batch is being delivered) is
    overwritten by, after which it drops records below it, or takes the jump from the sought offset
    to the next record of the old batch for a gap in the log and counts the offsets between as
    processed. It then commits the first consecutive run of acked offsets (such gaps included),
    and checks that the run starts at the committed offset only when there is one (and off by one).
    Events lost for good; the kill -9 and two-worker tests found each of these.
    Here the app's ReadLedger (streams/ledger.py) decides what is handed to faust's drain:
    - only records that continue what the ledger expects, from a batch fetched after the partition
      was last sought; a stale batch makes the partition be read again from what the ledger expects;
    - the drain's read offset is set to each record as it is handed over, so it neither drops nor
      invents gaps; real gaps (compaction, transaction markers: aiokafka skips them in one fetch)
      are given to faust's gap tree here;
    - every seek (faust's own included) restarts the partition in the ledger;
    - records getmany takes from the fetcher and does not yield are read again (seek back);
    - offsets are committed only up to the first record not processed: the committed offset, or on
      a partition never committed the first record the fetcher handed over since it was assigned.
    The agent checks each arrival against the ledger and reads a partition again when one was lost.
    """
    from faust.transport.consumer import Consumer
    from faust.transport.drivers import aiokafka as driver

    fetch = getattr(driver.AIOKafkaConsumerThread.getmany, "__wrapped__", driver.AIOKafkaConsumerThread.getmany)

    async def fetched(self, active_partitions, timeout):
        """The records aiokafka hands over (its position moves past them): remember them, and the
        ledger's epochs when the fetch began (consumer thread)."""
        ledger = ledger_of(self.consumer)
        epochs = dict(ledger.epochs) if ledger is not None else {}
        records = await _fetch_first(fetch, self, ledger, active_partitions, timeout)
        first, batch_log = _first_fetched(self.consumer), self.consumer.__dict__.get("_iv_batch")
        for tp, batch in records.items():
            if batch:
                first.setdefault(tp, batch[0].offset)
                if batch_log is not None:
                    batch_log.ranges[tp] = (batch[0].offset, batch[-1].offset)
        if batch_log is not None:
            batch_log.epochs = epochs
        if ledger is not None:
            _learn_positions(self._ensure_consumer(), ledger, active_partitions or (), records, epochs)
        return records

    fetched.__wrapped__ = fetch
    driver.AIOKafkaConsumerThread.getmany = fetched

    getmany = getattr(Consumer.getmany, "__wrapped__", Consumer.getmany)

    async def getmany_or_seek_back(self, timeout):
        """faust's getmany, handing over only what continues the ledger (see above)."""
        batch = self.__dict__["_iv_batch"] = _Batch()
        async for item in hand_over(self, getmany(self, timeout), batch):
            yield item

    getmany_or_seek_back.__wrapped__ = getmany
    Consumer.getmany = getmany_or_seek_back

    seek = getattr(Consumer.seek, "__wrapped__", Consumer.seek)

    async def seek_and_restart(self, partition, offset):
        await seek(self, partition, offset)  # no await inside: atomic with the restart below
        ledger = ledger_of(self)
        if ledger is not None and ledger.tracks(partition):
            ledger.restart(partition, offset)

    seek_and_restart.__wrapped__ = seek
    Consumer.seek = seek_and_restart

    perform_seek = getattr(Consumer.perform_seek, "__wrapped__", Consumer.perform_seek)

    async def perform_seek_and_restart(self):
        await _perform_seek_and_restart(self, perform_seek)

    perform_seek_and_restart.__wrapped__ = perform_seek
    Consumer.perform_seek = perform_seek_and_restart

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
        await on_revoked(self, revoked)

    on_partitions_revoked.__wrapped__ = on_revoked
    Consumer.on_partitions_revoked = on_partitions_revoked


async def hand_over(consumer, records, batch: _Batch):
    """Of `records` ((tp, message) from faust's getmany), yield what continues the ledger; then
    read again what the fetcher handed over and this did not yield."""
    given, stale = {}, set()
    ledger, loop = ledger_of(consumer), asyncio.get_running_loop()
    async for tp, message in records:
        if ledger is None or not ledger.tracks(tp):  # faust's own (changelogs): not the ledger's
            given[tp] = message.offset
            yield tp, message
            continue
        if tp in stale:
            continue
        expected = ledger.expected(tp)
        if ledger.epochs.get(tp) != batch.epochs.get(tp):  # sought since it was fetched: stale
            stale.add(tp)
            if expected is not None:
                await consumer.seek(tp, expected)  # the position is past what the ledger expects
            continue
        if expected is not None and message.offset < expected:
            continue  # handed over already
        if expected is not None and message.offset > expected:
            _add_gap(consumer, tp, expected, message.offset)  # aiokafka skipped offsets that hold no record
        consumer._read_offset[tp] = message.offset  # so faust's drain neither drops it nor sees a gap
        given[tp] = message.offset
        ledger.handed(tp, message, loop.time())
        yield tp, message
    for tp, (first, last) in batch.ranges.items() if consumer.flow_active else ():  # stopped: faust seeks back
        done = given.get(tp)
        if tp in stale or tp not in consumer.assignment() or (done is not None and done >= last):
            continue
        expected = ledger.expected(tp) if ledger is not None and ledger.tracks(tp) else None
        await consumer.seek(tp, expected if expected is not None else first if done is None else done + 1)


def untrack(consumer, message) -> None:
    """faust waits at every rebalance and at shutdown until each record it delivered is acked; a
    record the agent holds for time-aligned reading (or drops as stale) is not in flight: it is
    read again from the committed offset by whoever owns the partition next."""
    consumer._unacked_messages.discard(message)


async def _perform_seek_and_restart(consumer, perform_seek) -> None:
    """faust's seek of every partition to its committed offset (after table recovery, and whenever
    its getmany finds the flow stopped), then every partition sought once more to that offset.

    faust's seek asks the broker for each partition's committed offset in the consumer thread and
    moves aiokafka's positions one partition at a time, while this loop goes on handing records
    over: records fetched again from a position moved back were skipped as handed over already,
    and a ledger restarted only afterwards waited for them at the committed offset for ever (the
    two-worker test's stall: 1 run in 6). The second seek is synchronous, in one step with the
    ledger's restart, so what was skipped meanwhile is fetched again. aiokafka also leaves a
    partition with nothing committed where it was, past records fetched before the rebalance and
    never processed (held, or cleared from faust's queues): those are read from the beginning, as
    auto_offset_reset=earliest promises, not skipped."""
    await perform_seek(consumer)
    ledger = ledger_of(consumer)
    for tp in consumer.assignment() if ledger is not None else ():
        if ledger.tracks(tp):
            await consumer.seek(tp, consumer._read_offset.get(tp) or 0)  # the patched seek restarts the ledger


def attach_ledger(consumer, ledger) -> None:
    """Let the patched consumer hand records over through the app's ReadLedger."""
    consumer.__dict__["_iv_ledger"] = ledger


def ledger_of(consumer):
    """The ReadLedger an app attached to its faust consumer (streams/faust_runtime/app.py), if any."""
    return consumer.__dict__.get("_iv_ledger")


async def _fetch_first(fetch, thread, ledger, active, timeout):
    """aiokafka hands buffered records out in the order it fetched them, whole partitions at a
    time, so on a backlog the worker's own topics (records forwarded to their owner, watermarks,
    clock ticks) would wait behind every input record fetched before them: they go first."""
    first = {tp for tp in active or () if ledger is not None and ledger.first(tp)}
    if not first:
        return await fetch(thread, active_partitions=active, timeout=timeout)
    records = dict(await fetch(thread, active_partitions=first, timeout=0))
    for tp, batch in (await fetch(thread, active_partitions=set(active) - first, timeout=0 if records else timeout)).items():
        records[tp] = batch
    return records


class _Batch:
    """One getmany's records as the consumer thread fetched them: offset ranges by partition and
    the ledger's epochs when the fetch began."""
    __slots__ = ("ranges", "epochs")

    def __init__(self) -> None:
        self.ranges: dict = {}
        self.epochs: dict = {}


def _add_gap(consumer, tp, begin: int, end: int) -> None:
    """Offsets [begin, end) hold no record: faust counts them as processed when committing."""
    gap = consumer._gap[tp]
    gap.addi(begin, end)
    gap.merge_overlaps()


def _learn_positions(aiokafka_consumer, ledger, active, records, epochs) -> None:
    """Positions of idle partitions the ledger cannot tell from records. Read from aiokafka's
    subscription state (its position() is a coroutine of the consumer thread's loop; this runs in
    the app's), never waited for: an invalid position is learned at a later fetch."""
    assignment = aiokafka_consumer._subscription.subscription.assignment
    for tp in active:
        if records.get(tp) or not ledger.wants_position(tp, aiokafka_consumer.highwater(tp)):
            continue
        try:
            state = assignment.state_value(tp)
        except Exception:  # noqa: BLE001 - revoked meanwhile: nothing to learn
            continue
        if state is not None and state.has_valid_position:
            ledger.position(tp, state.position, epochs.get(tp))


def _first_fetched(consumer) -> dict:
    return consumer.__dict__.setdefault("_iv_first_fetched", {})


def _hole(consumer, tp, lowest_acked: int) -> bool:
    """True when offsets below the lowest acked one are neither processed nor known gaps."""
    expected = consumer._committed_offset.get(tp)
    if expected is None:
        expected = _first_fetched(consumer).get(tp)
    if expected is None or lowest_acked <= expected:
        return False
    known = sum(min(iv.end, lowest_acked) - max(iv.begin, expected)
                for iv in consumer._gap[tp].overlap(expected, lowest_acked))
    return known < lowest_acked - expected


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
                           "build it with streams.faust_runtime.app.build_app (compat.set_client_kwargs)") from None


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
