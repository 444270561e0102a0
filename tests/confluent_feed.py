"""Produce JSON Lines events with librdkafka (confluent-kafka), choosing the key partitioner per
topic: a second, independent Kafka client for tests and benchmarks (benchmarks/backlog.py).

The product's own producers (aiokafka, faust) hash keys with murmur2, like the Java client. Other
producers in a hospital need not: librdkafka's default partitioner (`consistent_random`) hashes
keys with CRC32, so the same encounter_id lands on another partition number. `feed_confluent`
sends lines as `streams.feed.feed` does (by type, keyed by encounter, in order) but lets each
topic have its own partitioner, e.g. the MAR topics from a librdkafka-based interface engine and
ADT/billing from Java ones (`partitioners("mixed", topics)`).

    from tests.confluent_feed import feed_confluent, partitioners
    feed_confluent(bootstrap, lines, settings.topics, partitioners("mixed", settings.topics))

It is synchronous (confluent-kafka has no asyncio API); from async code call it with
`await asyncio.to_thread(feed_confluent, ...)`. Needs the `test` extra (confluent-kafka).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from streams.config import Topics
from streams.feed import route

MURMUR2 = "murmur2_random"  # Java-compatible: the partition aiokafka's and faust's default gives a key
LIBRDKAFKA_DEFAULT = None  # librdkafka's default, consistent_random: CRC32 of the key
MODES = ("murmur2", "mixed")


def partitioners(mode: str, topics: Topics) -> dict[str, str | None]:
    """Input topic -> partitioner for a producer mode:
    murmur2  every topic murmur2_random (what the product's own producers do);
    mixed    MAR topics (mar.administration.*) librdkafka's default, ADT and billing murmur2_random."""
    if mode == "murmur2":
        return {t: MURMUR2 for t in topics.inputs}
    if mode == "mixed":
        mar = {topics.started, topics.stopped, topics.voided}
        return {t: LIBRDKAFKA_DEFAULT if t in mar else MURMUR2 for t in topics.inputs}
    raise ValueError(f"producer mode {mode!r}: choose one of {', '.join(MODES)}")


def describe(partitioner: str | None) -> str:
    return "librdkafka default (consistent_random, CRC32)" if partitioner is None else partitioner


class DeliveryError(RuntimeError):
    """The broker did not take some of the produced messages."""


def feed_confluent(bootstrap: str, lines: Iterable[bytes], topics: Topics, partitioner_by_topic: dict[str, str | None],
                   progress: Callable[[int], None] | None = None, timeout: float = 120.0, paced: bool = False) -> int:
    """Send every line to its topic keyed by encounter_id (streams.feed.route), in order, with one
    confluent-kafka Producer per distinct partitioner; flush them all; return the number sent.
    Raises DeliveryError if any message was not delivered (all delivery reports are checked).

    `paced`: each line in a later millisecond than the one before (librdkafka stamps a record when
    it is produced), so the broker timestamps give the lines' order across topics. Unpaced, a
    producer stamps about 100 lines with one millisecond, and their order across topics is lost."""
    from confluent_kafka import Producer

    producers: dict[str | None, Producer] = {}
    failures: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            failures.append(f"{msg.topic()} key {msg.key()!r}: {err}")

    def producer_for(topic: str) -> Producer:
        if topic not in partitioner_by_topic:
            raise KeyError(f"no partitioner given for topic {topic}")
        name = partitioner_by_topic[topic]
        if name not in producers:
            config = {"bootstrap.servers": bootstrap, "linger.ms": 5}
            if name is not None:
                config["partitioner"] = name
            producers[name] = Producer(config)
        return producers[name]

    sent = 0
    for line in lines:
        topic, key = route(line, topics)
        producer = producer_for(topic)
        while True:
            try:
                producer.produce(topic, value=line, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain it
                producer.poll(0.1)
        sent += 1
        if paced:
            _next_millisecond()
        if sent % 1000 == 0:
            for p in producers.values():
                p.poll(0)
            if progress:
                progress(sent)
    left = sum(p.flush(timeout) for p in producers.values())
    if left:
        failures.append(f"{left} messages still queued after flush({timeout:.0f} s)")
    if failures:
        raise DeliveryError(f"{len(failures)} delivery failures, e.g. " + "; ".join(failures[:5]))
    return sent


def _next_millisecond() -> None:
    now = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == now:
        time.sleep(0.0002)
