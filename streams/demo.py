"""`infusion-validator demo`: the whole product on one machine.

Starts the embedded broker, creates the topics, starts the worker, streams a simulated hospital
day into the input topics at an accelerated clock, shows live progress from the output topics,
and ends with the summary and the metrics URL. Ctrl-C stops everything cleanly, broker included.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import sys
import tempfile
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from simulator import simulate
from streams.app import build_app
from streams.batch import BatchStats
from streams.broker import EmbeddedBroker, free_port
from streams.config import from_env
from streams.feed import SimClock, feed, occurred
from streams.metrics import Metrics
from streams.summary import summary
from streams.topics import create_topics

QUIET_SECONDS = 3.0  # after the last input, outputs must be quiet this long before the summary


def say(text: str) -> None:
    print(text, flush=True)


async def run_demo(encounters: int, seed: int, speed: float, partitions: int, metrics_port: int | None) -> int:
    logging.basicConfig(level=logging.ERROR, force=True)  # faust is chatty; the demo prints its own progress
    # Two days back: the whole simulated span (late documentation included) stays in the past,
    # which the validator insists on (events dated in the future are rejected).
    day = dt.date.today() - dt.timedelta(days=2)
    lines = [line.encode() for line in simulate(encounters=encounters, seed=seed, day=day, bad_line_rate=0.002)]
    first = min(t for line in lines if (t := occurred(line)) is not None)
    clock = SimClock(first - 60, speed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    say(f"Simulated {encounters:,} encounters of {day}: {len(lines):,} events. Starting the embedded broker...")
    with EmbeddedBroker(log_dir=tempfile.gettempdir()) as broker, tempfile.TemporaryDirectory() as data:
        settings = from_env({}, bootstrap_servers=broker.bootstrap, partitions=partitions, data_dir=data,
                            tick_seconds=1.0, metrics_port=metrics_port or free_port())
        await create_topics(settings, log=lambda _: None)
        metrics = Metrics()
        server = metrics.serve(settings.metrics_port, "127.0.0.1")
        app = build_app(settings, metrics, clock=clock)
        say(f"Broker on {broker.bootstrap}; {len(settings.topics.all)} topics of {partitions} partitions. "
            "Starting the worker (joining its consumer group takes a few seconds)...")
        await app.start()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        consumer = AIOKafkaConsumer(*settings.topics.outputs, bootstrap_servers=broker.bootstrap,
                                    auto_offset_reset="earliest", group_id=None)
        await producer.start()
        await consumer.start()
        stats = BatchStats()
        try:
            say(f"Streaming the day at {speed:,.0f}x (one simulated hour every {3600 / speed:.1f} s); Ctrl-C stops.")
            clock.start()
            sent = {"n": 0}
            feeder = asyncio.create_task(feed(producer, lines, settings.topics, clock,
                                              progress=lambda n: sent.__setitem__("n", n)))
            await _watch(consumer, stats, feeder, stop, clock, sent, app.processor)
            if stop.is_set():
                say("Stopped by request.")
                feeder.cancel()
            elif feeder.exception():
                raise feeder.exception()
            stats.lines = sent["n"]
            stats.dead_letters = stats.records["dead letter"]
            stats.events = stats.lines - stats.dead_letters
            stats.open_encounters = app.processor.book.open_count
            say("\n" + summary(stats))
            say(f"\nMetrics: http://127.0.0.1:{settings.metrics_port}/metrics (served until the demo exits)")
        finally:
            await consumer.stop()
            await producer.stop()
            await app.stop()
            server.shutdown()
    say("Worker, broker and metrics server stopped.")
    return 0


async def _watch(consumer, stats: BatchStats, feeder, stop, clock, sent, processor) -> None:
    """Count output records and print progress until the feed is done and outputs are quiet."""
    last_output = time.monotonic()
    next_report = time.monotonic()
    while not stop.is_set():
        batch = await consumer.getmany(timeout_ms=200, max_records=5000)
        for records in batch.values():
            for message in records:
                stats.count(orjson.loads(message.value))
                last_output = time.monotonic()
        if time.monotonic() >= next_report:
            next_report = time.monotonic() + 2
            _progress(stats, clock, sent["n"], processor)
        if feeder.done() and time.monotonic() - last_output > QUIET_SECONDS:
            _progress(stats, clock, sent["n"], processor)
            return


def _progress(stats: BatchStats, clock, sent: int, processor) -> None:
    now = dt.datetime.fromtimestamp(clock()).strftime("%a %H:%M")
    r = stats.records
    say(f"  [{now}] events in {sent:>7,} | charges posted {r['charge post']:>6,} reversed {r['charge reverse']:>4,}"
        f" | alerts raised {r['alert raised']:>5,} resolved {r['alert resolved']:>5,}"
        f" | dead letters {r['dead letter']:>3,} | open encounters {processor.book.open_count:>5,}")


def main(encounters: int, seed: int, speed: float, partitions: int, metrics_port: int | None) -> int:
    try:
        return asyncio.run(run_demo(encounters, seed, speed, partitions, metrics_port))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(300, 7, 3600, 4, None))
