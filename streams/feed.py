"""Send JSON Lines events to their input topics (by type, keyed by encounter), optionally paced by
a clock; used by the demo and the stream tests, and handy for replaying a day into a cluster."""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable

import orjson
from aiokafka import AIOKafkaProducer

from streams.config import Topics


CHARTED_LATE_GAP = 0.002  # seconds: past the broker timestamp's millisecond


class SimClock:
    """An accelerated clock: `speed` simulated seconds pass per real second from `origin`, once
    started (it stands still at `origin` until then, e.g. while the worker joins its group)."""

    def __init__(self, origin: float, speed: float) -> None:
        self.origin, self.speed, self._t0 = origin, speed, None

    def start(self) -> None:
        self._t0 = time.monotonic()

    def __call__(self) -> float:
        if self._t0 is None:
            return self.origin
        return self.origin + (time.monotonic() - self._t0) * self.speed


def route(line: bytes, topics: Topics) -> tuple[str, bytes]:
    """(topic, key) for a line: by its type and encounter_id; unreadable lines go to the start topic
    so the validator dead-letters them like any producer's mistake."""
    try:
        event = orjson.loads(line)
        topic = topics.by_type.get(event.get("type"), topics.started)
        return topic, str(event.get("encounter_id") or "unknown").encode()
    except (orjson.JSONDecodeError, AttributeError):
        return topics.started, b"unknown"


def occurred(line: bytes) -> float | None:
    try:
        return dt.datetime.fromisoformat(orjson.loads(line)["occurred_at"]).timestamp()
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


async def feed(producer: AIOKafkaProducer, lines: Iterable[bytes], topics: Topics, clock: SimClock | None = None,
               progress=None) -> int:
    """Send every line; with a clock, each waits until the clock reaches its occurred_at.

    A line charted after one that occurred later (a stop documented after the discharge) goes out
    in a later millisecond: the worker orders records of one millisecond by occurred_at, and would
    apply it before the discharge, where the file, a real feed and `code` have it after."""
    sent, latest = 0, 0.0
    for line in lines:
        at = occurred(line)
        if clock is not None:
            while at is not None and clock() < at:
                await asyncio.sleep(min(0.05, (at - clock()) / clock.speed))
        if at is not None:
            if at < latest:
                await asyncio.sleep(CHARTED_LATE_GAP)
            latest = max(latest, at)
        topic, key = route(line, topics)
        await producer.send(topic, line, key=key)
        sent += 1
        if progress:
            progress(sent)
    await producer.flush()
    return sent
