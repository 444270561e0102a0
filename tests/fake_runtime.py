"""An in-memory Runtime (streams/runtime.py) and a pipeline built on it, for the pipeline's unit
tests: the consumer's hand-over, acks, seeks, the producer and the store, all inspectable."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import orjson

from rules.policy import Policy
from streams.config import from_env
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.processor import Processor
from streams.runtime import TP


@dataclass
class Rec:
    """A record as a consumer hands it over."""
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: int  # epoch milliseconds
    headers: list = field(default_factory=list)
    generation_id: int = 1

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class SendFailed(Exception):
    pass


class FakeRuntime:
    def __init__(self) -> None:
        self.generation = 1
        self.tracked: set[tuple[TP, int]] = set()
        self.acked: list[tuple[TP, int]] = []
        self.seeks: list[tuple[TP, int]] = []
        self.paused: set[TP] = set()
        self.assigned: set[TP] = set()
        self.highwaters: dict[TP, int] = {}  # partitions' end offsets at the broker
        self.sent: list[dict] = []  # output records (decoded values) with their topic
        self.changelog: list[tuple[str, bytes | None, int]] = []
        self.store: dict[str, bytes] = {}
        self.fail_outputs = False  # the producer fails every output send (not changelog writes)

    # -- the Runtime interface -----------------------------------------------------------
    def current(self, record) -> bool:
        return record.generation_id == self.generation and record.tp in self.assigned

    def track(self, record) -> None:
        self.tracked.add((record.tp, record.offset))

    def untrack(self, record) -> None:
        self.tracked.discard((record.tp, record.offset))

    def ack(self, record) -> None:
        self.tracked.discard((record.tp, record.offset))
        self.acked.append((record.tp, record.offset))

    async def seek(self, tp, offset: int) -> None:
        self.seeks.append((tp, offset))

    def pause(self, tps) -> None:
        self.paused |= set(tps)

    def resume(self, tps) -> None:
        self.paused -= set(tps)

    def highwater(self, tp) -> int | None:
        if TP(*tp) not in self.assigned:
            raise KeyError(tp)
        return self.highwaters.get(TP(*tp), 0)

    def noted(self, tps, now: float) -> None:
        pass

    def processing(self, record):
        return contextlib.nullcontext()

    async def send(self, topic, key, value, partition, timestamp, headers):
        fut = asyncio.get_running_loop().create_future()
        if self.fail_outputs:
            fut.set_exception(SendFailed(f"{topic}: the broker went away"))
        else:
            self.sent.append({"topic": topic, **orjson.loads(value)})
            fut.set_result(None)
        return fut

    async def send_state(self, key: str, value: bytes | None, partition: int):
        self.changelog.append((key, value, partition))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def put_state(self, key: str, value: bytes | None, partition: int) -> None:
        if value is None:
            self.store.pop(key, None)
        else:
            self.store[key] = value

    def forget_outbox(self, key: str, written: bytes, stripped: bytes) -> None:
        if self.store.get(key) is written:
            self.store[key] = stripped


class Harness:
    """A pipeline on a FakeRuntime, one partition per input topic assigned (partition 0 of
    `partitions`), records made from contract events, and the consumer's hand-over."""

    def __init__(self, partitions: int = 1, max_wait_ms: int = 10_000, runtime: FakeRuntime | None = None,
                 clock=None) -> None:
        self.settings = from_env({}, partitions=partitions, align_max_wait_ms=max_wait_ms)
        self.runtime = runtime or FakeRuntime()
        s, metrics = self.settings, Metrics()
        self.metrics = metrics
        pipeline = None
        self.processor = Processor(self.runtime.store, s.topics, Policy(), 14 * 1440, metrics,
                                   partitions=partitions, write=lambda *a: pipeline.write_state(*a),
                                   forget=lambda *a: pipeline.forget_outbox(*a),
                                   **({"clock": clock} if clock else {}))
        pipeline = self.pipeline = Pipeline(self.runtime, s, self.processor, metrics, self.processor.clock)
        self.ends: dict[TP, int] = {}  # next offset per partition, as produced here
        self.assign(0)

    @property
    def topics(self):
        return self.settings.topics

    def assign(self, partition: int) -> None:
        tps = [TP(t, partition) for t in self.pipeline.inputs]
        self.runtime.assigned |= set(tps)
        for tp in tps:
            self.pipeline.ledger.position(tp, self.ends.get(tp, 0), self.pipeline.ledger.epochs.get(tp))
        self.pipeline.assigned(tps)

    def record(self, topic: str, event: dict, at_ms: int, partition: int = 0) -> Rec:
        """A record produced to the broker (its high watermark moves), not yet handed over."""
        tp = TP(topic, partition)
        offset = self.ends.get(tp, 0)
        self.ends[tp] = offset + 1
        self.runtime.highwaters[tp] = offset + 1
        return Rec(topic, partition, offset, event["encounter_id"].encode(), orjson.dumps(event), at_ms)

    def hand_over(self, records: list[Rec]) -> list[Rec]:
        """What the consumer does before the agent gets them: writes each down in the read ledger."""
        for r in records:
            self.pipeline.ledger.handed(r.tp, r, 0.0)
        return records

    async def run(self, records: list[Rec]) -> None:
        await self.pipeline.run(records)
        await self.pipeline.deliveries.drain()

    def charges(self) -> list[dict]:
        return [r for r in self.runtime.sent if r.get("kind") == "charge"]
