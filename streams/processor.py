"""One Kafka message in, output messages out: the stream's glue around the shared state machine.

No faust here, so it is tested without a broker: the faust agent (streams/app.py) only moves
messages between topics and this class. State lives in any MutableMapping of JSON documents (the
faust Table in production); EncounterState objects are (de)serialized at the mapping's edge.
"""
from __future__ import annotations

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
    """EncounterState objects over a mapping of JSON documents (bytes: a faust Table)."""

    def __init__(self, table: MutableMapping) -> None:
        self.table = table

    def __getitem__(self, key: str) -> EncounterState:
        return EncounterState.from_json(orjson.loads(self.table[key]))

    def get(self, key, default=None):
        data = self.table.get(key)
        return default if data is None else EncounterState.from_json(orjson.loads(data))

    def __setitem__(self, key: str, state: EncounterState) -> None:
        self.table[key] = orjson.dumps(state.to_json())

    def __delitem__(self, key: str) -> None:
        del self.table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.table.keys()))

    def __len__(self) -> int:
        return len(self.table)


class Processor:
    def __init__(self, table: MutableMapping, topics: Topics, policy: Policy, retention_minutes: int,
                 metrics: Metrics, clock=time.time) -> None:
        self.book = Book(JsonStates(table), policy, retention_minutes, event_clock=False)
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
        self._rebuild_if_needed()
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
