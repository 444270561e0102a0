"""Sorts what the agent receives, before anything is processed (no faust, no I/O).

- An input record on a partition that does not own its key (a producer that does not partition
  by murmur2) is forwarded once to the owner through the repartition topic, with its original
  topic, partition, offset and timestamp, and counted; the first per topic is logged with advice.
- A record read back from the repartition topic is processed as the original, on its owner.
- A watermark (see below) updates the aligner.
- Every other record, clock ticks included, is held in the aligner and released in timestamp order:
  a tick the timer sent at wall time W is applied after every record that reached Kafka before W,
  so a backlog never raises an overdue alert that a stop waiting in it would resolve.

Watermarks: while any producer mis-partitions, each partition this worker owns reports to every
other partition, through the repartition topic and after the records it forwarded there, the time
before which it has read (and so forwarded) everything. Records wait for those reports
(streams/alignment.py), so stops forwarded from elsewhere are applied before the encounter is
coded or its overdue clock moves, also when the source partition belongs to another worker.
"""
from __future__ import annotations

import datetime as dt
import logging

import orjson

from streams.alignment import Aligner, Held
from streams.config import Topics
from streams.messages import Message, Output
from streams.metrics import Metrics
from streams.partitioning import owner

log = logging.getLogger(__name__)

FORWARDING_MEMORY = 600.0  # seconds: after the last forwarded record, watermarks still flow this long
WATERMARK_EVERY = 0.5  # seconds between a partition's watermark reports, at most
CAUGHT_UP_SLACK = 1.0  # seconds: a caught-up input may still get records stamped this much earlier
WATERMARK = "iv-watermark"  # header of a watermark record
FORWARDED = ("iv-topic", "iv-partition", "iv-offset")  # headers of a forwarded record: where it was


# What `Intake.receive` says to do with a record.
FORWARD, HOLD, DONE = "forward", "hold", "done"


class Intake:
    def __init__(self, topics: Topics, partitions: int, aligner: Aligner, metrics: Metrics) -> None:
        self.topics, self.partitions, self.aligner, self.metrics = topics, partitions, aligner, metrics
        self._inputs = frozenset(topics.inputs)
        self._rank = {t: i for i, t in enumerate(topics.inputs)}  # documentation first, then ADT, billing
        self._read_to: dict[tuple[str, int], float] = {}  # input tp -> newest timestamp received
        self._reported: dict[int, tuple[float, float]] = {}  # partition -> (watermark, when) last sent
        self._advised: set[str] = set()

    def receive(self, msg: Message, wall: float) -> tuple[str, Message | Output | None]:
        """(FORWARD, the record for the repartition topic) | (HOLD, message) | (DONE, None)."""
        topic = msg.topic
        if topic in self._inputs:
            if msg.timestamp is not None:
                tp = (topic, msg.partition)
                self._read_to[tp] = max(self._read_to.get(tp, 0.0), msg.timestamp)
            if msg.key is not None and (home := owner(msg.key, self.partitions)) != msg.partition:
                return FORWARD, self._forward(msg, home, wall)
            return HOLD, msg
        if topic == self.topics.repartition:
            return self._from_repartition(msg)
        return HOLD, msg  # a clock tick

    def hold(self, msg: Message, item) -> None:
        """Into the aligner; `item` is what it gives back (the agent's handle on the record).
        Forwarded records queue per original topic and partition: in that order they were forwarded."""
        if msg.topic == self.topics.ticks:  # last among records of its millisecond
            held = Held(msg.timestamp or 0.0, float("inf"), len(self._rank), item)
        else:
            held = Held(msg.timestamp or 0.0, occurred(msg.value), self._rank.get(msg.topic, 0), item)
        if msg.source_partition is None:
            self.aligner.add(msg.partition, msg.topic, held)
        else:
            self.aligner.add(msg.partition, f"{msg.topic}[{msg.source_partition}]", held, self.topics.repartition)

    # -- forwarding ----------------------------------------------------------------------

    def _forward(self, msg: Message, home: int, wall: float) -> Output:
        self.metrics.child(self.metrics.repartitioned, msg.topic).inc()
        self.aligner.forwarding_until = max(self.aligner.forwarding_until, wall + FORWARDING_MEMORY)
        if msg.topic not in self._advised:
            self._advised.add(msg.topic)
            log.warning("records on %s are not partitioned by murmur2 of their key (one keyed for partition "
                        "%d arrived on %d): each is forwarded to its owner through %s, which costs a hop. Ask "
                        "the producer's owner to use the Java client's default partitioner (librdkafka: "
                        "partitioner=murmur2_random)", msg.topic, home, msg.partition, self.topics.repartition)
        headers = [(FORWARDED[0], msg.topic.encode()), (FORWARDED[1], str(msg.partition).encode()),
                   (FORWARDED[2], str(msg.offset).encode())]
        return Output(self.topics.repartition, msg.key, msg.value, home, msg.timestamp, headers)

    def _from_repartition(self, msg: Message) -> tuple[str, Message | None]:
        headers = dict(msg.headers or ())
        if WATERMARK in headers:
            try:
                mark = orjson.loads(msg.value)
                self.aligner.watermark(msg.partition, int(mark["from"]), float(mark["time"]),
                                       float(mark["forwarding_until"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                # Since the agent loop crashes the worker on an error, one such record would make it
                # crash at every start: skipped, loudly.
                log.error("a watermark record on %s that does not parse was skipped: only the worker writes "
                          "there", self.topics.repartition)
            return DONE, None
        try:
            topic = headers[FORWARDED[0]].decode()
            source, offset = int(headers[FORWARDED[1]]), int(headers[FORWARDED[2]])
        except (KeyError, ValueError, UnicodeDecodeError):
            log.error("a record on %s without its origin headers was skipped: only the worker writes there",
                      self.topics.repartition)
            return DONE, None
        return HOLD, Message(topic, msg.partition, offset, msg.key, msg.value, msg.timestamp, source)

    # -- watermarks ----------------------------------------------------------------------

    def watermarks(self, owned, caught_up, wall: float, now: float) -> list[Output]:
        """Reports of how far each owned partition has read, to every other partition, while any
        producer mis-partitions; `caught_up(topic, partition)` as for the aligner."""
        if wall >= self.aligner.forwarding_until:
            return []
        out = []
        for q in owned:
            mark = min(wall - CAUGHT_UP_SLACK if caught_up(t, q) else self._read_to.get((t, q), 0.0)
                       for t in self.topics.inputs)
            last, when = self._reported.get(q, (-1.0, -WATERMARK_EVERY))
            if now - when < WATERMARK_EVERY or (mark <= last and now - when < 5 * WATERMARK_EVERY):
                continue
            self._reported[q] = (mark, now)
            value = orjson.dumps({"from": q, "time": mark, "forwarding_until": self.aligner.forwarding_until})
            out += [Output(self.topics.repartition, None, value, r, None, [(WATERMARK, b"1")])
                    for r in range(self.partitions) if r != q]
        return out

    def forget(self, partitions) -> None:
        """Partitions revoked: what was read of them is read again by their next owner."""
        for key in [k for k in self._read_to if k[1] in partitions]:
            del self._read_to[key]
        for q in partitions:
            self._reported.pop(q, None)


def occurred(value: bytes) -> float:
    """An event's occurred_at, epoch seconds (0 for what does not parse: it is dead-lettered anyway)."""
    try:
        return dt.datetime.fromisoformat(orjson.loads(value)["occurred_at"]).timestamp()
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0.0
