"""The faust app: one agent loop moves the records the consumer hands to the Inbox through the
Pipeline in batches (streams/faust_runtime/inbox.py: not faust's per-record stream path); timers route clock
ticks and wake-ups into the partitions. faust keeps group membership, the table, its changelog
and recovery, offsets and commits.

At-least-once (faust's exactly-once has long-open bugs): a replayed input is recognised by its
event_id in the encounter state and produces nothing new, and every output id is deterministic,
so consumers de-duplicate what a crash makes us send twice.
"""
from __future__ import annotations

import asyncio
import logging

import faust
from faust.exceptions import NotReady
from faust.sensors.prometheus import FaustMetrics

from streams.config import Settings
from streams.faust_runtime import compat
from streams.faust_runtime.connection import faust_connection
from streams.faust_runtime.inbox import Inbox, InboxTransport
from streams.faust_runtime.runtime import FaustRuntime
from streams.faust_runtime.sensors import FaustSensors
from streams.health import Health
from streams.kafka import client_kwargs
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.processor import Processor
from streams.reachability import BrokerWatch

log = logging.getLogger(__name__)
TABLE = "encounters"
BATCH = 500  # events per delivery round trip
BATCH_WAIT = 0.02  # seconds to wait for a batch to fill: bounds the added latency
FETCH_BYTES = 32 * 1024  # per partition and fetch: ~100 events
CHORES_EVERY = 0.05  # seconds between the chores' looks at held records, watermarks and lost reads


class ValidatorApp(faust.App):
    """A faust app whose consumer hands the agent's records to `inbox` (streams/faust_runtime/inbox.py)."""
    inbox: Inbox | None = None

    def _new_transport(self):
        return InboxTransport(self.conf.broker_consumer, self)


def build_app(s: Settings, metrics: Metrics, clock=None, health: Health | None = None,
              reachability: BrokerWatch | None = None) -> faust.App:
    compat.apply(s.fetch_max_wait_ms)
    app = ValidatorApp(
        s.app_id,
        **faust_connection(s),
        store=s.store,
        datadir=s.data_dir,
        key_serializer="raw",
        value_serializer="raw",  # JSON parsed by our own strict models; never pickle
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication_factor,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=s.group_instance_id,  # static membership when configured (streams/config.py)
        table_standby_replicas=s.standby_replicas,
        broker_session_timeout=6.0,  # a restarted worker rejoins in seconds, not minutes
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=6.0,
        broker_commit_interval=1.0,
        producer_request_timeout=s.kafka_send_timeout_seconds,
        producer_linger=0.005,  # batches sends: each await no longer makes its own request
        # A batch's changelog writes (states with their outboxes, ~1-2 KB each) exceeded aiokafka's
        # 16 KB per-partition batch, and each send past it waited for the previous request's round
        # trip: at 1,000 events/s discharge-to-charge p50 3.4 s, p99 7.7 s; with 256 KB 133 / 454 ms.
        producer_max_batch_size=256 * 1024,
        # Time-aligned reading needs every input partition's next records at hand. aiokafka hands out
        # what it fetched partition by partition, and faust delivers each poll whole before the next:
        # small fetches and polls keep all partitions flowing, a backlog's megabyte fetches did not.
        broker_max_poll_records=2 * BATCH,
        consumer_max_fetch_size=FETCH_BYTES,
        web_enabled=False,  # table endpoints would expose patient data; metrics have their own port
        web_tables_enabled=False,
    )
    compat.set_client_kwargs(app, client_kwargs(s))  # table recovery's own consumer connects like every client
    # faust's own sensors (offsets, commits, sends, rebalances) on our registry, as faust_*.
    app.monitor = FaustSensors(metrics=FaustMetrics.create(metrics.registry, "faust"))
    table = app.Table(TABLE, partitions=s.partitions, key_type=str, value_type=bytes)  # JSON made by JsonStates
    health = health or Health()
    kwargs = {"clock": clock} if clock else {}
    runtime = FaustRuntime(app, table)
    pipeline = None  # the processor writes through it; built right after
    processor = Processor(table, s.topics, s.policy, s.retention_days * 1440, metrics, partitions=s.partitions,
                          write=lambda *a: pipeline.write_state(*a), forget=lambda *a: pipeline.forget_outbox(*a),
                          **kwargs)
    pipeline = Pipeline(runtime, s, processor, metrics, processor.clock, reachability)
    app.processor, app.pipeline = processor, pipeline
    sources = (*s.topics.inputs, s.topics.repartition, s.topics.ticks)
    app.topics.add(app.topic(*sources, key_type=bytes, value_type=bytes))  # subscribed; read through the inbox
    app.inbox = Inbox(sources)
    app.flow_control.manage_queue(app.inbox)  # cleared with faust's queues at a rebalance

    @app.task
    async def validate():
        # An exception here crashes the app (mode's task supervision): the worker exits and its
        # records not yet acked are read again by the next start, as docs/delivery.md promises.
        while not app.should_stop:
            records = await app.inbox.take(BATCH, within=BATCH_WAIT)
            if records:
                await pipeline.run(records)
                _set_gauges(processor, metrics)

    @app.timer(interval=s.tick_seconds)
    async def clock_ticks():
        # A timer cannot write the table: it only sends ticks, which the agent applies in time order
        # with the partition's records (a backlog's stops before the wall clock's overdue check).
        ticks = processor.due_ticks()
        metrics.ticks.inc(len(ticks))
        await send_unless_stopping(app, pipeline, ticks)

    @app.task
    async def chores():
        # A loop, not a timer: on a backlog its sends wait behind the agent's, and mode's timer
        # logged "is overlapping" warnings every second for it.
        loop = asyncio.get_running_loop()
        while not app.should_stop:
            await asyncio.sleep(CHORES_EVERY)
            outputs, again = pipeline.chores(loop.time(), processor.clock())
            await send_unless_stopping(app, pipeline, outputs)
            for tp, offset, why in again:
                await pipeline.read_again(tp, offset, why)

    @app.timer(interval=1.0)
    async def heartbeat():
        health.beat()  # /healthz: the event loop is turning

    @app.on_partitions_revoked.connect
    async def _revoked(app, revoked, **kwargs):  # noqa: ARG001
        health.ready = False  # a rebalance began
        await pipeline.deliveries.drain()  # what was processed is delivered and acked before it is given away
        pipeline.revoked(revoked)
        runtime.revoked({tp.partition for tp in revoked})

    @app.on_partitions_assigned.connect
    async def _assigned(app, assigned, **kwargs):  # noqa: ARG001
        health.ready = False
        compat.attach_ledger(app.consumer, pipeline.ledger)
        pipeline.assigned(assigned)
        processor.needs_rebuild = True  # the timer holds off until the table is recovered

    @app.on_rebalance_complete.connect
    async def _recovered(app, **kwargs):  # noqa: ARG001
        # Sent by faust once the changelogs are applied (or nothing needed recovery).
        processor.recovered()
        health.ready = True

    return app


async def send_unless_stopping(app, pipeline: Pipeline, outputs) -> None:
    """Send the timers' outputs (ticks, wake-ups, watermarks). A worker told to stop stops its
    producer before these tasks, and a send in between crashed the app while it was stopping: an
    ERROR with a traceback in the log at about one shutdown in twenty (worker logs of the test
    suite: 3 of about 60 runs). What they would have sent is sent again after the restart."""
    try:
        await pipeline.send(outputs)
    except NotReady:
        if not app.should_stop:
            raise


def _set_gauges(processor: Processor, metrics: Metrics) -> None:
    metrics.open_encounters.set(processor.book.open_count)
    metrics.open_administrations.set(processor.book.open_administrations)
