"""One Kafka message in, output messages out: the stream's glue around the shared state machine.

No faust here, so it is tested without a broker: the faust agent (streams/app.py) only moves
messages between topics and this class. State lives in any MutableMapping of JSON documents (the
faust Table in production); EncounterState objects are (de)serialized at the mapping's edge.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

import orjson

from models.errors import BadEvent
from models.events import parse_event
from rules.book import Book, TooLate
from rules.encounter import EncounterState
from rules.policy import Policy
from streams.config import Topics
from streams.metrics import Metrics
from streams.records import MAX_EVENT_BYTES, dead_letter, oversize_reason


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float | None = None  # broker timestamp, epoch seconds


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes
    value: bytes


class JsonStates(MutableMapping):
    """EncounterState objects over a table of JSON documents, written back in batches.

    Changes stay here (with the partition of the message that made them) until `flush`, which the
    agent calls only after the batch's outputs are delivered: a crash before that replays the
    batch and re-sends the same outputs (same ids); a crash after it replays events the state has
    already seen, which produce nothing. Either way nothing is lost.
    """

    def __init__(self, table: MutableMapping, write=None) -> None:
        self.table = table
        self.write = write or _write_mapping
        self.partition = 0  # of the message being processed; the agent sets it
        self._dirty: dict[str, tuple[EncounterState | None, int]] = {}

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
        return default if data is None else EncounterState.from_json(orjson.loads(data))

    def __setitem__(self, key: str, state: EncounterState) -> None:
        self._dirty[key] = (state, self.partition)

    def __delitem__(self, key: str) -> None:
        self._dirty[key] = (None, self.partition)

    def __iter__(self) -> Iterator[str]:
        keys = dict.fromkeys(self.table.keys())
        keys.update(self._dirty)
        return iter([k for k in keys if self.get(k) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> list:
        """Write the batch's changes to the table; returns what `write` returned (futures)."""
        dirty, self._dirty = self._dirty, {}
        return [self.write(self.table, key, None if state is None else orjson.dumps(state.to_json()), partition)
                for key, (state, partition) in dirty.items()]


def _write_mapping(table: MutableMapping, key: str, value: bytes | None, partition: int) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


class Processor:
    def __init__(self, table: MutableMapping, topics: Topics, policy: Policy, retention_minutes: int,
                 metrics: Metrics, clock=time.time, write=None) -> None:
        self.states = JsonStates(table, write)
        self.book = Book(self.states, policy, retention_minutes, event_clock=False)
        self.topics, self.metrics, self.clock = topics, metrics, clock
        self._type_of_topic = dict(zip(topics.inputs, (
            "administration.started", "administration.stopped", "administration.voided",
            "encounter.discharged", "encounter.discharge_cancelled", "charges.submitted")))
        self._routes = {"charge": topics.charges, "alert": topics.alerts, "dead_letter": topics.dead_letters}
        self.needs_rebuild = False  # set on partition assignment: schedules come from the recovered table

    def _rebuild_if_needed(self) -> None:
        if self.needs_rebuild:
            self.needs_rebuild = False
            self.book.rebuild()

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
                                              "internal_error", self._source(msg), msg.value)], msg.key)

    def flush(self) -> list:
        """Write the batch's state changes (call once its outputs are delivered)."""
        return self.states.flush()

    def _process(self, msg: Message) -> list[Output]:
        self._rebuild_if_needed()
        self.states.partition = msg.partition
        if msg.topic == self.topics.ticks:
            return self._tick(msg)
        try:
            event = self._parse(msg)
        except BadEvent as exc:
            return self._outputs([dead_letter(str(exc), exc.category, self._source(msg), msg.value)], msg.key)
        self.metrics.events.labels(msg.topic, event.type).inc()
        duplicates = self.book.duplicates
        try:
            records = self.book.handle(event, now=self.clock())
            if self.book.duplicates > duplicates:
                self.metrics.duplicates.inc()
        except TooLate as exc:
            records = [dead_letter(str(exc), "too_late", self._source(msg), msg.value)]
        if msg.timestamp and any(r["kind"] == "charge" for r in records):
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
        return self._outputs(self.book.tick(tick["encounter_id"], tick["now"]), msg.key)

    def _outputs(self, records: list[dict], key: bytes | None) -> list[Output]:
        out = []
        for rec in records:
            self.metrics.count_output(rec)
            rec_key = rec.get("encounter_id", "").encode() or key or b""
            out.append(Output(self._routes[rec["kind"]], rec_key, orjson.dumps(rec)))
        return out

    @staticmethod
    def _source(msg: Message) -> dict:
        return {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}

    # -- the timer's side ----------------------------------------------------------------

    def due_ticks(self) -> list[Output]:
        """Tick messages for encounters with an overdue check or a retention purge now due.
        Keyed by encounter, so each lands on the partition (and worker) that owns the state."""
        self._rebuild_if_needed()
        now = self.clock()
        return [Output(self.topics.ticks, enc.encode(), orjson.dumps({"encounter_id": enc, "now": now}))
                for enc in self.book.due(now)]
