"""One Kafka message in, output messages out: the stream's glue around the shared state machine.

No faust here, so it is tested without a broker: the faust agent (streams/faust_runtime/app.py) only moves
messages between topics and this class. State lives in any MutableMapping of JSON documents (the
faust Table in production); EncounterState objects are (de)serialized at the mapping's edge.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from collections.abc import Iterator, MutableMapping

import orjson

from feeds.fhir import charge_item
from models.errors import BadEvent
from models.events import EVENT_TYPES, parse_event
from rules.book import Book, TooLate
from rules.encounter import EncounterState
from rules.policy import Policy
from streams.config import Topics
from streams.messages import Message, Output
from streams.metrics import Metrics
from streams.partitioning import owner
from streams.records import MAX_EVENT_BYTES, dead_letter, oversize_reason


log = logging.getLogger(__name__)


# Keys of what the worker keeps per partition in the state table beside the encounters. An
# encounter id never starts with a space (ids are stripped, and a message key must equal it).
META = " "
MARK = META + "delivered up to, partition "  # the batch whose outputs are delivered
FORWARDING = META + "forwarding until, partition "  # while producers mis-partition: streams/pipeline.py
OUTBOX_FIELDS = ("outbox", "partition", "batch")  # what a stored state carries beside EncounterState's JSON


@dataclass
class Flushed:
    """One batch's writes: the changelog records to send and await before its outputs go, the
    batch number each partition's outboxes carry, and the stored values holding those outboxes."""
    writes: list
    batches: dict[int, int] = field(default_factory=dict)  # partition -> this batch's number
    # key -> (stored value, the same state without its outbox, partition)
    unsent: dict[str, tuple[bytes, bytes, int]] = field(default_factory=dict)


class JsonStates(MutableMapping):
    """EncounterState objects over a table of JSON documents, written back once per batch.

    The outbox pattern, per batch: `flush` writes each changed state together with the outputs it
    caused (its outbox) and the batch's number in its partition; once that changelog is durable
    the outputs are sent; once they are delivered, `delivered` writes one mark per partition,
    "delivered up to batch N", instead of rewriting every state without its outbox. A crash before
    the flush lands leaves nothing sent and the batch is replayed; a crash after it leaves outboxes
    above their partition's mark, which the restarted worker sends again (same ids). Nothing is
    lost, and no output is ever sent that the surviving state does not know about.
    """

    def __init__(self, table: MutableMapping, write=None, forget=None) -> None:
        self.table = table
        self.write = write or _write_mapping
        self.forget = forget or _forget_in_mapping  # drops a delivered outbox from memory, not from the log
        self.partition = 0  # of the message being processed; the agent sets it
        self._dirty: dict[str, tuple[EncounterState | None, int]] = {}
        self._batch: dict[int, int] = {}  # partition -> number of its last batch with outboxes
        self.forwarding_until = 0.0  # the latest "forwarding until" found by `scan`

    def __getitem__(self, key: str) -> EncounterState:
        state = self.get(key)
        if state is None:
            raise KeyError(key)
        return state

    def get(self, key, default=None):
        if key in self._dirty:
            state = self._dirty[key][0]
            return default if state is None else state
        data = self.table.get(key)
        if data is None:
            return default
        doc = orjson.loads(data)
        for name in OUTBOX_FIELDS:
            doc.pop(name, None)
        return EncounterState.from_json(doc)

    def __setitem__(self, key: str, state: EncounterState) -> None:
        self._dirty[key] = (state, self.partition)

    def __delitem__(self, key: str) -> None:
        self._dirty[key] = (None, self.partition)

    def __iter__(self) -> Iterator[str]:
        keys = dict.fromkeys(k for k in self.table.keys() if not k.startswith(META))
        keys.update(self._dirty)
        return iter([k for k in keys if k not in self._dirty or self._dirty[k][0] is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self, outbox: dict[str, list[Output]]) -> Flushed:
        """Write the batch's changed states, each with its outbox and the batch's number in its
        partition; `writes` holds what `write` returned for each (the changelog records)."""
        dirty, self._dirty = self._dirty, {}
        flushed = Flushed([])
        for key, (state, partition) in dirty.items():
            if state is None:
                flushed.writes.append(self.write(self.table, key, None, partition))
                continue
            doc = state.to_json()
            value = _compact(orjson.dumps(doc))
            if outbox.get(key):  # written with it; memory keeps the state without it once delivered
                batch = flushed.batches.setdefault(partition, self._batch.get(partition, 0) + 1)
                doc.update(outbox=[[o.topic, o.value.decode()] for o in outbox[key]], partition=partition,
                           batch=batch)
                stripped, value = value, _compact(orjson.dumps(doc))
                flushed.unsent[key] = (value, stripped, partition)
            flushed.writes.append(self.write(self.table, key, value, partition))
        self._batch.update(flushed.batches)
        return flushed

    def delivered(self, flushed: Flushed) -> list:
        """The outputs of `flushed` are delivered: write each partition's mark (not awaited: a crash
        before it lands only makes the next start send them once more) and drop the outboxes from
        memory where no later batch rewrote the state. Returns what `write` returned."""
        for key, (value, stripped, partition) in flushed.unsent.items():
            self.forget(self.table, key, value, stripped, partition)
        return [self.write(self.table, f"{MARK}{p}", b"%d" % batch, p) for p, batch in flushed.batches.items()]

    def remember_forwarding(self, partition: int, until: float):
        """Write that producers mis-partition, until `until` (wall clock), to a partition's changelog:
        whoever reads the partition next, after a restart or a rebalance, waits for other
        partitions' forwards from its first record (see `scan`). Returns what `write` returned."""
        return self.write(self.table, f"{FORWARDING}{partition}", b"%.3f" % until, partition)

    def scan(self, outboxes: dict[int, list[Output]]) -> Iterator[EncounterState]:
        """Every stored state, in one pass over the table (after a recovery); once it is exhausted,
        `outboxes` holds by partition the outputs written but perhaps never delivered: the outboxes
        above their partition's mark. Batch numbers continue above the highest found. One pass:
        per-key reads of a rocksdb store cost more than the parsing (restart with 100,000 open
        encounters: 19 of its 28 busy seconds in two per-key passes, py-spy)."""
        marks, unsent = {}, []
        self.forwarding_until = 0.0
        for key, value in self.table.items():
            if key.startswith(META):
                if key.startswith(MARK):
                    marks[int(key[len(MARK):])] = int(value)
                elif key.startswith(FORWARDING):
                    self.forwarding_until = max(self.forwarding_until, float(value))
                continue
            doc = orjson.loads(value)
            outbox, partition, batch = (doc.pop(name, None) for name in OUTBOX_FIELDS)
            if outbox:
                unsent.append((key, partition, batch, outbox))
            yield EncounterState.from_json(doc)
        batches = {}
        for key, partition, batch, outbox in unsent:
            if batch is not None and batch <= marks.get(partition, 0):  # unnumbered (older): never marked
                continue
            batches[partition] = max(batches.get(partition, 0), batch or 0)
            outboxes.setdefault(partition, []).extend(Output(topic, key.encode(), value.encode()) for topic, value in outbox)
        self._batch = {p: max(marks.get(p, 0), batches.get(p, 0)) for p in marks.keys() | batches.keys()}


def _compact(data: bytes) -> bytes:
    """An exact-size copy: orjson's result keeps its whole output buffer (~4 KB) alive, which made
    each stored state cost 4 KB instead of its ~0.5 KB (measured with tracemalloc)."""
    return bytes(memoryview(data))


def _write_mapping(table: MutableMapping, key: str, value: bytes | None, partition: int) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


def _forget_in_mapping(table: MutableMapping, key: str, written: bytes, stripped: bytes, partition: int) -> None:
    if table.get(key) is written:  # not rewritten by a later batch meanwhile
        table[key] = stripped


class Processor:
    def __init__(self, table: MutableMapping, topics: Topics, policy: Policy, retention_minutes: int,
                 metrics: Metrics, clock=time.time, write=None, forget=None, partitions: int = 1) -> None:
        self.states = JsonStates(table, write, forget)
        self.partitions = partitions
        # One clock per partition: event time as read, the wall clock's ticks once caught up.
        self.book = Book(self.states, policy, retention_minutes, shard_of=self.owner, wall_ticks=True)
        self.topics, self.metrics, self.clock = topics, metrics, clock
        self._type_of_topic = dict(zip(topics.inputs, EVENT_TYPES))
        self._routes = {"charge": topics.charges, "alert": topics.alerts, "dead_letter": topics.dead_letters}
        # Set on partition assignment, cleared by `recovered`: until then the table is being
        # recovered, and schedules or outboxes read from it would be partial (or empty).
        self.needs_rebuild = False
        self._pending: dict[str, list[Output]] = {}  # this batch's outputs by encounter: the outboxes
        self._resend: dict[int, list[Output]] = {}  # outboxes found after a restart, by partition

    def owner(self, encounter_id: str) -> int:
        return owner(encounter_id.encode(), self.partitions)

    def recovered(self) -> None:
        """The table is recovered (after every rebalance): re-derive schedules and find outboxes."""
        self.needs_rebuild = False
        self._resend = {}
        self.book.rebuild(self.states.scan(self._resend))

    def rebuild_if_needed(self) -> None:
        if self.needs_rebuild:
            self.recovered()

    # -- messages ------------------------------------------------------------------------

    def process(self, msg: Message) -> list[Output]:
        """Outputs of one message. Never raises: a failure becomes a dead letter, so one bad
        message can neither crash the worker nor be skipped silently."""
        try:
            return self._process(msg)
        except Exception as exc:  # a bug, not bad input: keep going, but leave a trace
            log.exception("internal error on %s/%s/%s", msg.topic, msg.partition, msg.offset)
            return self._outputs([dead_letter(f"internal error ({type(exc).__name__}); the worker kept "
                                              "running; report it with the source position",
                                              "internal_error", msg.source, msg.value)], msg.key)

    def flush(self) -> Flushed:
        """Write the batch's states with their outboxes; await its writes before sending outputs."""
        pending, self._pending = self._pending, {}
        return self.states.flush(pending)

    def delivered(self, flushed: Flushed) -> list:
        """The outputs of `flushed` are delivered: its partitions' marks move up (the writes to send)."""
        return self.states.delivered(flushed)

    def _process(self, msg: Message) -> list[Output]:
        self.rebuild_if_needed()
        self.states.partition = msg.partition
        resent = self._take_resend(msg.partition)
        if msg.topic == self.topics.ticks:
            return resent + self._tick(msg)
        return resent + self._process_event(msg)

    def _take_resend(self, partition: int) -> list[Output]:
        """Undelivered outboxes of this partition ride along with its first message after a restart
        (the state is rewritten with them, so `delivered` clears them like any other)."""
        outputs = self._resend.pop(partition, [])
        for out in outputs:
            key = out.key.decode()
            self.states[key] = self.states[key]
            self._pending.setdefault(key, []).append(out)
        return outputs

    def _process_event(self, msg: Message) -> list[Output]:
        try:
            event = self._parse(msg)
        except BadEvent as exc:
            return self._outputs([dead_letter(str(exc), exc.category, msg.source, msg.value)], msg.key)
        self.metrics.child(self.metrics.events, msg.topic, event.type).inc()
        duplicates = self.book.duplicates
        try:
            records = self.book.handle(event)
            if self.book.duplicates > duplicates:
                self.metrics.duplicates.inc()
        except TooLate as exc:
            records = [dead_letter(str(exc), "too_late", msg.source, msg.value)]
        if event.type == "encounter.discharged" and msg.timestamp and any(r["kind"] == "charge" for r in records):
            self.metrics.discharge_to_charge.observe(max(0.0, self.clock() - msg.timestamp))
        return self._outputs(records, msg.key)

    def _parse(self, msg: Message):
        if len(msg.value) > MAX_EVENT_BYTES:
            raise BadEvent(oversize_reason(len(msg.value)), "oversize")
        event = parse_event(msg.value)
        key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
        if key != event.encounter_id:
            raise BadEvent(f"message key {key!r} does not match encounter_id {event.encounter_id!r}: "
                           "key every message by its encounter_id", "key_mismatch")
        expected = self._type_of_topic.get(msg.topic)
        if expected is not None and event.type != expected:
            raise BadEvent(f"type {event.type} arrived on topic {msg.topic}, which carries {expected}: "
                           "send each event type to its own topic", "wrong_topic")
        return event

    def _tick(self, msg: Message) -> list[Output]:
        tick = orjson.loads(msg.value)
        if tick.get("encounter_id") is None:  # a wake-up: the agent looks at what it holds
            return []
        return self._outputs(self.book.tick(tick["encounter_id"], tick["now"]), msg.key)

    def _outputs(self, records: list[dict], key: bytes | None) -> list[Output]:
        out = []
        for rec in records:
            self.metrics.count_output(rec)
            encounter_id = rec.get("encounter_id")
            output = Output(self._routes[rec["kind"]], encounter_id.encode() if encounter_id else key or b"",
                            orjson.dumps(rec))
            outputs = [output] + self._chargeitem(rec, output.key)
            if encounter_id:  # dead letters have no state to keep them in: a replay re-sends them
                self._pending.setdefault(encounter_id, []).extend(outputs)
            out += outputs
        return out

    def _chargeitem(self, rec: dict, key: bytes) -> list[Output]:
        """A charge line also as a FHIR ChargeItem; a failure here must not cost the charge itself."""
        if rec["kind"] != "charge":
            return []
        try:
            return [Output(self.topics.chargeitems, key, orjson.dumps(charge_item(rec)))]
        except Exception:  # noqa: BLE001 - logged; the charge record still goes out
            log.exception("ChargeItem not built for a %s line", rec.get("cpt"))
            return []

    # -- the timer's side ----------------------------------------------------------------

    def due_ticks(self) -> list[Output]:
        """Tick messages for encounters with an overdue check or a retention purge due by the wall
        clock. Each goes to the partition that owns the encounter, where it is applied after every
        record that reached Kafka before it (streams/alignment.py): a partition reading a backlog
        applies the backlog first, by event time. A partition holding undelivered outboxes gets a
        tick too: its outboxes ride on it even when no input arrives there. Nothing while the table
        is recovering: the timer runs then too, and a schedule built from a half-recovered table
        would drop deadlines and outboxes."""
        if self.needs_rebuild:
            return []
        now = self.clock()
        encounters = [enc for p in self.book.shards for enc in self.book.due(now, p)]
        encounters += [outs[0].key.decode() for outs in self._resend.values()]
        return [self.tick(enc, now) for enc in dict.fromkeys(encounters)]

    def tick(self, encounter_id: str | None, now: float, partition: int | None = None) -> Output:
        """A tick for an encounter (to its owner), or a wake-up for `partition` (no encounter)."""
        key = encounter_id.encode() if encounter_id else b""
        return Output(self.topics.ticks, key, orjson.dumps({"encounter_id": encounter_id, "now": now}),
                      self.owner(encounter_id) if encounter_id else partition)
