"""The faust app: one agent moves messages through the Processor; a timer routes clock ticks.

At-least-once (faust's exactly-once has long-open bugs): a replayed input is recognised by its
event_id in the encounter state and produces nothing new, and every output id is deterministic,
so consumers de-duplicate what a crash makes us send twice.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import weakref

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.streams import _current_event
from faust.types import TP

from streams import compat
from streams.config import Settings
from streams.health import Health
from streams.kafka import client_kwargs, faust_connection
from streams.metrics import Metrics
from streams.processor import Message, Processor

log = logging.getLogger(__name__)
TABLE = "encounters"
BATCH = 500  # events per delivery round trip
BATCH_WAIT = 0.02  # seconds to wait for a batch to fill: bounds the added latency


def build_app(s: Settings, metrics: Metrics, clock=None, health: Health | None = None) -> faust.App:
    compat.apply(s.fetch_max_wait_ms)
    app = faust.App(
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
        broker_session_timeout=6.0,  # a restarted worker rejoins in seconds, not minutes
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=6.0,
        broker_commit_interval=1.0,
        producer_linger=0.005,  # batches sends: each await no longer makes its own request
        web_enabled=False,  # table endpoints would expose patient data; metrics have their own port
        web_tables_enabled=False,
    )
    compat.set_client_kwargs(app, client_kwargs(s))  # table recovery's own consumer connects like every client
    # faust's own sensors (messages, commits, rebalances...) on our registry, as faust_*.
    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(metrics.registry, "faust"))
    table = app.Table(TABLE, partitions=s.partitions, key_type=str, value_type=bytes)  # JSON made by JsonStates
    health = health or Health()
    kwargs = {"clock": clock} if clock else {}
    batch_event: dict[int, faust.types.EventT] = {}  # partition -> an event of it in this batch
    processor = Processor(table, s.topics, s.policy, s.retention_days * 1440, metrics,
                          write=_changelog_writer(batch_event), **kwargs)
    app.processor = processor
    ticks = app.topic(s.topics.ticks, key_type=bytes, value_type=bytes)
    source = app.topic(*s.topics.inputs, s.topics.ticks, key_type=bytes, value_type=bytes)

    changelog = table.changelog_topic.get_topic_name()

    async def write_changelog(records) -> list:
        """Changelog records, in order, straight to the producer (faust's send_soon goes through a
        100-message buffer that stalls every stream when full, about 1,000 times per benchmark run);
        returns their delivery futures. Delivered offsets are what a rocksdb store persists."""
        futures, dumps_key = [], app.serializers.dumps_key  # keys as the table encodes them (JSON)
        for key, value, partition in records:
            fut = await app.producer.send(changelog, dumps_key(str, key, serializer=table.key_serializer),
                                          value, partition, None, None)
            fut.add_done_callback(functools.partial(_persisted, table, TP(changelog, partition)))
            futures.append(fut)
        return futures

    @app.agent(source, name="validator")
    async def validate(stream):
        # take_events acks a batch only when the next is asked for, i.e. after the loop body:
        # states with outboxes durable, outputs delivered, outboxes dropped; then offsets commit.
        async for events in stream.take_events(BATCH, within=BATCH_WAIT):
            outputs = []
            for event in events:
                m = event.message
                batch_event[m.partition] = event
                outputs += processor.process(Message(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp))
            await asyncio.gather(*await write_changelog(processor.flush()))  # states + outboxes durable
            # Straight to the producer (one awaited batch), not faust's Topic.send per message.
            send = app.producer.send
            await asyncio.gather(*[await send(o.topic, o.key, o.value, None, None, None) for o in outputs])
            await write_changelog(processor.delivered())  # queued before the next batch's writes
            batch_event.clear()
            _set_gauges(processor, metrics)

    @app.timer(interval=s.tick_seconds)
    async def clock_ticks():
        # A timer cannot write the table: it only sends ticks, which the agent applies.
        for out in processor.due_ticks():
            metrics.ticks.inc()
            await ticks.send(key=out.key, value=out.value)

    @app.timer(interval=1.0)
    async def heartbeat():
        health.beat()  # /healthz: the event loop is turning

    @app.on_partitions_revoked.connect
    async def _revoked(app, revoked, **kwargs):  # noqa: ARG001
        health.ready = False  # a rebalance began

    @app.on_partitions_assigned.connect
    async def _assigned(app, assigned, **kwargs):  # noqa: ARG001
        health.ready = False
        processor.needs_rebuild = True  # the timer holds off until the table is recovered

    @app.on_rebalance_complete.connect
    async def _recovered(app, **kwargs):  # noqa: ARG001
        # Sent by faust once the changelogs are applied (or nothing needed recovery).
        processor.recovered()
        health.ready = True

    return app


def _changelog_writer(batch_event: dict):
    """Writes one state to the table's store and returns its changelog record (key, value,
    partition: the encounter's own), which the agent sends.

    The store takes the partition from the current event (rocksdb keeps a database per partition);
    after a batch that is not necessarily this encounter's, so the write runs with an event of the
    right partition as the current one.
    """
    def write(table, key: str, value: bytes | None, partition: int):
        token = _current_event.set(weakref.ref(batch_event[partition]))
        try:
            if value is None:
                table.data.pop(key, None)
            else:
                table.data[key] = value
        finally:
            _current_event.reset(token)
        return key, value, partition
    return write


def _persisted(table, tp, fut) -> None:
    if not fut.cancelled() and fut.exception() is None:
        table.data.set_persisted_offset(tp, fut.result().offset)


def _set_gauges(processor: Processor, metrics: Metrics) -> None:
    metrics.open_encounters.set(processor.book.open_count)
    metrics.open_administrations.set(processor.book.open_administrations)
