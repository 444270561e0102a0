"""`infusion-validator worker`: the stream processor against a configured Kafka cluster."""
from __future__ import annotations

import asyncio
import gc
import logging
import signal

from streams import logs
from streams.faust_runtime import compat
from streams.faust_runtime.app import build_app
from streams.config import Settings
from streams.health import Health
from streams.metrics import Metrics
from streams.reachability import watching
from streams.topics import create_topics

log = logging.getLogger("infusion_validator.worker")


async def run_worker(settings: Settings, create: bool = False) -> int:
    logs.configure(settings.log_level, settings.log_format)
    settings.policy  # a bad policy file fails here, before anything connects
    compat.check_versions()  # so do faust/aiokafka versions streams/faust_runtime/compat.py was not written for
    if create:
        await create_topics(settings, log=log.info)
    metrics = Metrics()
    health = Health()
    server = metrics.serve(settings.metrics_port, settings.metrics_host, health=health)
    try:
        async with watching(settings, metrics.kafka_reachable) as watch:
            health.checks.append(watch.check)  # /readyz 503 once the cluster is away IV_KAFKA_UNREACHABLE_SECONDS
            return await _run_app(build_app(settings, metrics, health=health, reachability=watch), settings)
    finally:
        server.shutdown()


async def _run_app(app, settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker %s starting: brokers %s, %d partitions, metrics on :%d", settings.app_id,
             settings.bootstrap_servers, settings.partitions, settings.metrics_port)
    await app.start()
    tune_gc_for_worker()
    try:
        await _until_stopped_or_crashed(app, stop)
        if app.crashed:
            log.error("the agent failed (%s); exiting so that a new start reads its records not yet "
                      "acked again (docs/delivery.md)", type(app.crash_reason).__name__)
            return 1
        log.info("stopping: committing offsets, flushing the producer, leaving the group")
    finally:
        await app.stop()
    return 0


def tune_gc_for_worker() -> None:
    """Full garbage collections walked every object the worker holds (faust, aiokafka, the
    schedules) at about 140 ms each, every few seconds on a backlog: 2.5-3.2 s of a 15-17 s
    in-process run. What exists once the worker has started is never scanned again (gc.freeze),
    and full collections come 10 times less often; young ones still free short-lived cycles."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


async def _until_stopped_or_crashed(app, stop: asyncio.Event) -> None:
    """A signal, or the app crashed (an exception in the agent loop crashes it: streams/faust_runtime/app.py)."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(app.wait_until_stopped())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
