"""Whether the Kafka cluster answers, seen from a process that already has a client to it.

Kafka clients reconnect on their own and say nothing but log lines while they do: a feed whose
broker is gone keeps accepting connections it cannot store, and its metrics freeze. This asks the
cluster for metadata every `interval` seconds through the process's own client (aiokafka's
`force_metadata_update`), and counts the cluster unreachable from the first request that did not
answer within `timeout`. `/readyz` turns 503 once that has lasted `unreachable_after` seconds
(IV_KAFKA_UNREACHABLE_SECONDS), so Kubernetes stops routing senders to a process that cannot store.
"""
from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)


class BrokerWatch:
    def __init__(self, client, unreachable_after: float, interval: float = 5.0, timeout: float = 5.0,
                 gauge=None, clock=time.monotonic, bootstrapped: bool = True) -> None:
        self.client, self.unreachable_after, self.bootstrapped = client, unreachable_after, bootstrapped
        self.interval, self.timeout, self.gauge, self.clock = interval, timeout, gauge, clock
        self.failing_since: float | None = None  # monotonic time of the first request not answered

    @property
    def unreachable_for(self) -> float:
        """Seconds since the cluster last stopped answering (0 while it answers)."""
        return 0.0 if self.failing_since is None else self.clock() - self.failing_since

    def check(self) -> str | None:
        """A Health check: None while reachable or within the grace, else the reason."""
        away = self.unreachable_for
        if away and away >= self.unreachable_after:
            return f"Kafka unreachable for {away:.0f} s"
        return None

    async def probe(self) -> bool:
        try:
            if not self.bootstrapped:  # a client of its own, not started yet (bootstrap raises when unreachable)
                await asyncio.wait_for(self.client.bootstrap(), self.timeout)
                self.bootstrapped = answered = True
            else:
                answered = await asyncio.wait_for(self.client.force_metadata_update(), self.timeout)
        except Exception:  # noqa: BLE001 - a timeout or any client error: not answered
            answered = False
        self._record(bool(answered))
        return bool(answered)

    def _record(self, answered: bool) -> None:
        if answered:
            if self.failing_since is not None:
                log.warning("Kafka reachable again after %.0f s", self.unreachable_for)
            self.failing_since = None
        elif self.failing_since is None:
            self.failing_since = self.clock()
            log.warning("Kafka did not answer a metadata request within %g s", self.timeout)
        if self.gauge is not None:
            self.gauge.set(1 if answered else 0)

    async def run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self.interval)
