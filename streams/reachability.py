"""Whether the Kafka cluster answers, seen from a process with a client of its own to it.

Kafka clients reconnect on their own and say nothing but log lines while they do: a feed whose
broker is gone keeps accepting connections it cannot store, a worker's metrics freeze. A
BrokerWatch asks the cluster for metadata every `interval` seconds and counts it unreachable from
the start of the first request that was not answered within `timeout`, until one is answered.

What reads it:
- `/readyz` turns 503 once an outage has lasted IV_KAFKA_UNREACHABLE_SECONDS (`check`), so
  Kubernetes stops routing senders to a feed that cannot store; `iv_kafka_reachable` is 0 meanwhile.
- The worker's time-aligned reading measures how long a partition waited for a lagging input on
  `waiting_clock`, which stands still while the cluster is away: an outage is not a lagging input
  (streams/alignment.py), so after a reconnect the partitions catch up in time order.
- The worker's late-record warning names a recent outage (`recent_outage`) before blaming producers.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiokafka.client import AIOKafkaClient
from prometheus_client import CollectorRegistry, Gauge

from streams.config import Settings
from streams.kafka import client_kwargs

log = logging.getLogger(__name__)

PROBE_EVERY = 1.0  # seconds between metadata requests: an outage is noticed within about this
PROBE_TIMEOUT = 3.0  # seconds a metadata request may take before the cluster counts as unreachable


def reachable_gauge(registry: CollectorRegistry) -> Gauge:
    """`iv_kafka_reachable`, the same on every process's registry."""
    return Gauge("iv_kafka_reachable", "1 while the Kafka cluster answers metadata requests, 0 from the first "
                 "one it did not answer", registry=registry)


class BrokerWatch:
    def __init__(self, client, unreachable_after: float, interval: float = PROBE_EVERY,
                 timeout: float = PROBE_TIMEOUT, gauge=None, clock=time.monotonic, bootstrapped: bool = True) -> None:
        self.client, self.unreachable_after, self.bootstrapped = client, unreachable_after, bootstrapped
        self.interval, self.timeout, self.gauge, self.clock = interval, timeout, gauge, clock
        self.failing_since: float | None = None  # when the first request not answered was made
        self.away_total = 0.0  # seconds of the outages that ended
        self.last_outage: tuple[float, float] | None = None  # (seconds it lasted, when it ended)
        self.outages = 0  # outages that ended

    @property
    def unreachable_for(self) -> float:
        """Seconds since the cluster last stopped answering (0 while it answers)."""
        return 0.0 if self.failing_since is None else self.clock() - self.failing_since

    def waiting_clock(self) -> float:
        """Monotonic seconds that stand still while the cluster is unreachable."""
        return self.clock() - self.away_total - self.unreachable_for

    def recent_outage(self, within: float) -> float | None:
        """Seconds the cluster was unreachable, if it is now or was within the last `within` seconds."""
        if self.failing_since is not None:
            return self.unreachable_for
        if self.last_outage is not None and self.clock() - self.last_outage[1] <= within:
            return self.last_outage[0]
        return None

    def check(self) -> str | None:
        """A Health check: None while reachable or within the grace, else the reason."""
        away = self.unreachable_for
        if away and away >= self.unreachable_after:
            return f"Kafka unreachable for {away:.0f} s"
        return None

    async def probe(self) -> bool:
        started = self.clock()
        try:
            if not self.bootstrapped:  # a client of its own, not started yet (bootstrap raises when unreachable)
                await asyncio.wait_for(self.client.bootstrap(), self.timeout)
                self.bootstrapped = answered = True
            else:
                answered = await asyncio.wait_for(self.client.force_metadata_update(), self.timeout)
        except Exception:  # noqa: BLE001 - a timeout or any client error: not answered
            answered = False
        self._record(bool(answered), started)
        return bool(answered)

    def _record(self, answered: bool, started: float) -> None:
        if answered:
            if self.failing_since is not None:
                away = self.unreachable_for
                self.away_total += away
                self.last_outage = (away, self.clock())
                self.outages += 1
                log.warning("Kafka reachable again after %.0f s", away)
            self.failing_since = None
        elif self.failing_since is None:
            self.failing_since = started
            log.warning("Kafka did not answer a metadata request within %g s", self.timeout)
        if self.gauge is not None:
            self.gauge.set(1 if answered else 0)

    async def run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self.interval)


@contextlib.asynccontextmanager
async def watching(s: Settings, gauge: Gauge | None) -> AsyncIterator[BrokerWatch]:
    """A BrokerWatch probing the configured cluster for the block's duration, through a client of its
    own (the data clients' connections are theirs to manage)."""
    client = AIOKafkaClient(**client_kwargs(s), request_timeout_ms=int(PROBE_TIMEOUT * 1000))
    watch = BrokerWatch(client, s.kafka_unreachable_seconds, gauge=gauge, bootstrapped=False)
    task = asyncio.create_task(watch.run())
    try:
        yield watch
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
