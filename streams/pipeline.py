"""The agent's work on each batch of records the consumer handed to the Inbox, and the timer's
side of it.

1. Each record is tracked (the runtime commits nothing past it until it is acked) and checked off
   against the ReadLedger (streams/ledger.py): a record lost on the way makes the partition be
   read again; a stale copy is dropped.
2. The Intake sorts it: forwarded to its owner partition, a watermark, a clock tick (processed
   now) or an input record held in the Aligner.
3. The Aligner releases held records in timestamp order across the partition's topics.
4. The Processor turns each into outputs; states with their outboxes go to the changelog, and the
   batch is handed to the deliveries in flight (streams/delivery.py): its outputs (forwards first,
   watermarks last) are sent once those writes are durable, then its partitions' "delivered up to"
   marks are written (docs/delivery.md). The agent reads on meanwhile.
5. Only then is each record acked: the runtime commits no offset past a record that is held, lost or
   not yet delivered.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging

from streams.alignment import Aligner
from streams.config import Settings
from streams.delivery import Deliveries, Delivery
from streams.intake import DONE, FORWARD, Intake
from streams.ledger import Arrival, ReadLedger
from streams.messages import Message, Output
from streams.metrics import Metrics
from streams.processor import Processor
from streams.runtime import TP, Runtime

log = logging.getLogger(__name__)

MAX_HELD = 5000  # records held of one input partition before its fetching pauses (memory bound)
IDLE_WAKE = 0.1  # seconds without a batch before the timer wakes the agent for records it holds
WAKE_EVERY = 0.5  # seconds between wake-ups (a wake-up is a tick record: held in time order too)
LOST_AFTER = 2.0  # seconds a handed-over record may be on its way while the agent is idle
LATE_CAUSE_WINDOW = 600.0  # seconds after an outage or a forced release that late records are put down to it
REMEMBER_EVERY = 60.0  # seconds forwarding mode must grow by before it is written to the table again


class Pipeline:
    def __init__(self, runtime: Runtime, s: Settings, processor: Processor, metrics: Metrics, clock,
                 reachability=None) -> None:
        self.runtime, self.topics, self.processor, self.metrics, self.clock = runtime, s.topics, processor, metrics, clock
        self.reachability = reachability  # the worker's BrokerWatch (streams/reachability.py), or None
        self.partitions = s.partitions
        self.inputs = (*s.topics.inputs, s.topics.repartition, s.topics.ticks)  # a partition's, in time order
        self.ledger = ReadLedger(self.inputs, first=(s.topics.repartition, s.topics.ticks))
        self.aligner = Aligner(self.inputs, s.align_max_wait_ms / 1000, s.partitions, s.topics.ticks)
        self.intake = Intake(s.topics, s.partitions, self.aligner, metrics)
        self.owned: set[int] = set()
        self.paused: set[TP] = set()
        self.last_batch = self.last_wake = 0.0
        self.forwarding = 0  # batches with forwards not yet on the producer: no watermark may pass them
        self.remembered = 0.0  # the "forwarding until" last written to the owned partitions' changelogs
        self.learn_forwarding = False  # partitions assigned: read their "forwarding until" once recovered
        self.late_advised: set[tuple[str, str]] = set()  # (topic, cause) of late records logged (once each)
        self.outages_seen = 0  # the reachability watch's outages that ended, as this pipeline last saw
        self.forced_at = float("-inf")  # when records last went ahead of an input that was behind
        self.deliveries = Deliveries(self._enqueue)

    # -- the agent -----------------------------------------------------------------------

    async def run(self, records) -> None:
        loop = asyncio.get_running_loop()
        now, wall = loop.time(), self.clock()
        self.last_batch = now
        self.deliveries.check()  # a delivery that failed fails the agent, as an awaited send would
        self.processor.rebuild_if_needed()  # the table is recovered once records flow
        self._forwarding_mode(wall)
        forwards, done = await self._receive(records, now, wall)
        # Waiting is measured on a clock that stands still while the Kafka cluster is away: an outage
        # is not an input that is behind, and after it the partitions catch up in time order.
        waiting = self._waiting_clock(now)
        released = self.aligner.release(self.caught_up, waiting, wall)
        self._count(released, now)
        ready = released.items
        outputs = []
        for msg, m in ready:
            with self.runtime.processing(m):
                outputs += self.processor.process(msg)
        flushed = self.processor.flush()
        # states + outboxes (and forwarding mode when it grew), sent in order
        writes = await self._write_changelog(flushed.writes + self._remember_forwarding(wall))
        marks = self.intake.watermarks(self.owned, self.caught_up, wall, now)
        acks = done + [m for _, m in ready]
        await self.deliveries.add(Delivery(writes, forwards + outputs + marks,
                                           functools.partial(self._delivered, flushed, acks),
                                           functools.partial(self._enqueued, bool(forwards))))
        self._flow()

    def _waiting_clock(self, now: float) -> float:
        if self.reachability is None:
            return now
        waiting = self.reachability.waiting_clock()
        if self.reachability.outages != self.outages_seen:
            self.outages_seen = self.reachability.outages
            self.aligner.restart_waits(waiting)
        return waiting

    async def _delivered(self, flushed, acks) -> None:
        """A batch's outputs are delivered: its partitions' marks move up, its records are acked."""
        await self._write_changelog(self.processor.delivered(flushed))
        for m in acks:
            self._ack(m)

    def _enqueued(self, forwarded: bool) -> None:
        self.forwarding -= forwarded  # its forwards are on the producer: watermarks may follow them

    async def _receive(self, records, now: float, wall: float):
        forwards, done = [], []
        runtime = self.runtime
        runtime.noted({m.tp for m in records}, now)
        for m in records:
            if not runtime.current(m):
                continue  # fetched before a rebalance: read again by the partition's owner
            runtime.track(m)  # nothing is committed past it until `_ack`
            arrival = self.ledger.arrived(m.tp, m, now)
            if arrival is not Arrival.IN_ORDER:  # never acked: read again after the restart
                runtime.untrack(m)
                if arrival is Arrival.AFTER_LOSS:
                    await self.read_again(m.tp, self.ledger.first_pending(m.tp), "lost_in_faust")
                continue
            msg = Message(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp, headers=m.headers)
            action, what = self.intake.receive(msg, wall)
            if action == FORWARD:
                self.forwarding += not forwards  # until this batch's forwards are on the producer
                forwards.append(what)
                done.append(m)
            elif action == DONE:
                done.append(m)
            else:
                runtime.untrack(m)
                self.intake.hold(what, (what, m))
        return forwards, done

    def _count(self, released, now: float) -> None:
        self.metrics.alignment_wait.inc(released.waited)
        for reason, n in released.forced.items():
            self.metrics.child(self.metrics.alignment_forced, reason).inc(n)
            self.forced_at = now
        for topic, n in released.late.items():
            self.metrics.child(self.metrics.late, topic).inc(n)
            cause, advice = self._late_cause(now)
            if (topic, cause) not in self.late_advised:
                self.late_advised.add((topic, cause))
                log.warning("records on %s reached the worker more than a second after records of the same partition "
                            "stamped later, and were processed out of time order (a discharge may have been coded "
                            "before them and corrected): %s", topic, advice)
        self.metrics.held.set(self.aligner.held)

    def _late_cause(self, now: float) -> tuple[str, str]:
        """Why records come late, the causes the worker can see first; the producers' clocks last."""
        outage = self.reachability.recent_outage(LATE_CAUSE_WINDOW) if self.reachability else None
        if outage is not None:
            return "outage", (f"the Kafka cluster was unreachable for {outage:.0f} s in the last "
                              f"{LATE_CAUSE_WINDOW / 60:.0f} minutes, and producers that held records through it "
                              "sent them stamped when they were made; nothing to fix unless it goes on")
        if now - self.forced_at < LATE_CAUSE_WINDOW:
            return "forced", ("an input topic was behind for longer than IV_ALIGN_MAX_WAIT_MS, and records went "
                              "ahead of it (iv_alignment_forced_total): see what delays that topic's producer")
        return "clock", ("the producer's clock is behind the broker's, or it sets record timestamps itself; have it "
                         "keep its clock in sync and let Kafka stamp records when they are sent")

    def _forwarding_mode(self, wall: float) -> None:
        """Forwarding mode must survive a restart or a rebalance. Learned only from forwards and
        watermarks, a partition's new owner would code records without waiting for the stops other
        partitions still forward until one of those reached it; so each owner writes the mode to
        its partitions' changelogs (`_remember_forwarding`) and the next one reads it back here."""
        if self.learn_forwarding and not self.processor.needs_rebuild:
            self.learn_forwarding = False
            until = self.processor.states.forwarding_until
            if until > max(wall, self.aligner.forwarding_until):
                log.info("the changelog says a producer mis-partitioned within the last 10 minutes: records wait "
                         "for every partition's watermark until %s", _iso(until))
                self.aligner.forwarding_until = until
        self.metrics.forwarding.set(wall < self.aligner.forwarding_until)

    def _remember_forwarding(self, wall: float) -> list:
        until = self.aligner.forwarding_until
        if until <= wall or until - self.remembered < REMEMBER_EVERY:
            return []
        self.remembered = until
        return [self.processor.states.remember_forwarding(p, until) for p in sorted(self.owned)]

    def _ack(self, m) -> None:
        self.runtime.ack(m)

    def _flow(self) -> None:
        """Pause fetching an input partition while too much of it is held; resume below half."""
        held_of = self.aligner.held_of
        full = {TP(t, p) for p in self.aligner.waiting() for t in self.inputs if held_of(p, t) > MAX_HELD}
        if full - self.paused:
            self.runtime.pause(full - self.paused)
        drained = {tp for tp in self.paused if held_of(tp.partition, tp.topic) <= MAX_HELD // 2}
        if drained:
            self.runtime.resume(drained)
        self.paused = (self.paused | full) - drained

    async def read_again(self, tp, offset: int | None, reason: str) -> None:
        if offset is None:
            return
        what = ("the consumer moved past them without handing them over" if reason == "passed_by_the_consumer"
                else "they were handed over but never reached the agent")
        log.warning("%s[%d]: reading records again from offset %d: %s", tp.topic, tp.partition, offset, what)
        self.metrics.reads_again.labels(reason).inc()
        await self.runtime.seek(tp, offset)  # the ledger restarts the partition

    # -- Kafka ---------------------------------------------------------------------------

    async def send(self, outputs: list[Output]) -> None:
        """Onto the producer in order, awaiting every delivery."""
        await asyncio.gather(*await self._enqueue(outputs))

    async def _enqueue(self, outputs: list[Output]) -> list:
        """Onto the producer in order; returns the delivery futures."""
        send = self.runtime.send
        return [await send(o.topic, o.key, o.value, o.partition, o.timestamp, o.headers) for o in outputs]

    async def _write_changelog(self, records) -> list:
        """Changelog records, in order; returns their delivery futures."""
        return [await self.runtime.send_state(key, value, partition) for key, value, partition in records]

    def write_state(self, table, key: str, value: bytes | None, partition: int):  # noqa: ARG002 - the processor's
        """Writes one state to the store and returns its changelog record (key, value, partition: the
        encounter's own), which `_write_changelog` sends."""
        self.runtime.put_state(key, value, partition)
        return key, value, partition

    def forget_outbox(self, table, key: str, written: bytes, stripped: bytes, partition: int) -> None:  # noqa: ARG002
        """A delivered outbox leaves memory, not the changelog (its partition's mark covers it there)."""
        self.runtime.forget_outbox(key, written, stripped)

    # -- what the aligner and the clock ask ----------------------------------------------

    def caught_up(self, topic: str, partition: int) -> bool:
        """Nothing of this input partition is waiting at the broker or on its way to the agent."""
        tp = TP(topic, partition)
        try:
            highwater = self.runtime.highwater(tp)
        except Exception:  # noqa: BLE001 - not assigned (any more): nothing to wait for here
            return True
        return self.ledger.caught_up(tp, highwater)

    # -- the timer's side ----------------------------------------------------------------

    def chores(self, now: float, wall: float) -> tuple[list[Output], list]:
        """What the timer does between batches: wake-ups for held records, watermarks while idle,
        and (tp, offset, why) of partitions to read again: records handed over that never arrived,
        or records the consumer moved past without handing them over."""
        self._forwarding_mode(wall)
        idle = now - self.last_batch
        if idle < IDLE_WAKE:
            return [], []
        waiting = self.aligner.waiting() if now - self.last_wake >= WAKE_EVERY else []
        wake = [self.processor.tick(None, wall, waiting[0])] if waiting else []
        self.last_wake = now if wake else self.last_wake
        marks = [] if self.forwarding else self.intake.watermarks(self.owned, self.caught_up, wall, now)
        if idle <= LOST_AFTER:
            return wake + marks, []
        again = [(tp, self.ledger.first_pending(tp), "lost_at_the_end") for tp in self.ledger.overdue(now, LOST_AFTER)]
        again += [(tp, offset, "passed_by_the_consumer") for tp, offset in self.ledger.skipped()]
        return wake + marks, again

    # -- rebalances ----------------------------------------------------------------------

    def assigned(self, assigned) -> None:
        self.owned = {tp.partition for tp in assigned if tp.topic in self.topics.inputs}
        self.learn_forwarding = True
        self.remembered = 0.0  # partitions new to this worker learn the mode from it at the next batch

    def revoked(self, revoked) -> None:
        """What is held or on its way is read again by the partitions' next owner."""
        partitions = {tp.partition for tp in revoked if tp.topic in self.inputs}
        # Not ours any more: a watermark for one would claim its unread records were forwarded
        # (caught_up answers yes for what is not assigned), and the other partitions keep the
        # highest watermark they get. `assigned` sets the new ones.
        self.owned -= partitions
        self.aligner.drop(partitions)
        self.ledger.forget(revoked)
        self.intake.forget(partitions)
        self.paused -= set(revoked)


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")

