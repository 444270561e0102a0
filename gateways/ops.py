"""What every process at the edge (the feeds, the worklist, the billing sender) serves for its
operators, as the worker does: `/healthz` (the event loop turns), `/readyz` (ready to take traffic:
listening, and the Kafka cluster answering; streams/reachability.py), `/metrics`, on
IV_METRICS_HOST:IV_METRICS_PORT, and JSON logs.

Metrics of the feeds, the worklist and the billing sender, on the process's own registry. Labels
are bounded: the feed (`hl7`, `fhir`, or a dead letter's source feed), an ACK code or HTTP status,
a rejection category, a billing outcome. Never a visit, a patient, a peer address or anything a
sender wrote.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streams import health as health_server
from streams.config import Settings
from streams.health import Health
from streams.metrics import LATENCY_BUCKETS
from streams.reachability import reachable_gauge, watching


class ProcessMetrics:
    """A process's own registry, with the Kafka cluster's reachability."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.kafka_reachable = reachable_gauge(self.registry)


class FeedMetrics(ProcessMetrics):
    """`hl7 listen` and `fhir serve`: what the listeners and the bridge count."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.answers = Counter("iv_feed_answers_total", "Messages (HL7) or requests (FHIR) answered, by ACK code "
                               "(AA, AE, AR) or HTTP status", ["feed", "code"], registry=r)
        self.answer_seconds = Histogram("iv_feed_answer_seconds", "From a message or request received whole to its "
                                        "answer (its events stored in Kafka first)", ["feed"],
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.rejections = Counter("iv_feed_rejections_total", "Messages or resources rejected and dead-lettered, by "
                                  "the feed they came through and the reason's category", ["feed", "reason"],
                                  registry=r)
        self.notes = Counter("iv_feed_notes_total", "Messages or resources read leniently (a character-set label "
                             "that did not fit its bytes) or skipped (a FHIR resource type not read), by kind",
                             ["feed", "kind"], registry=r)
        self.connections = Gauge("iv_feed_connections", "Open connections to the listener", ["feed"], registry=r)
        self.refused = Counter("iv_feed_connections_refused_total", "Connections refused over "
                               "IV_FEED_MAX_CONNECTIONS", ["feed"], registry=r)

    def observe_answer(self, feed: str, code: str, seconds: float) -> None:
        self.answers.labels(feed, code).inc()
        self.answer_seconds.labels(feed).observe(seconds)

    def observe_rejection(self, feed: str, reason: str) -> None:
        self.rejections.labels(feed, reason).inc()

    def observe_note(self, feed: str, kind: str) -> None:
        self.notes.labels(feed, kind).inc()


class WorklistMetrics(ProcessMetrics):
    """`worklist`: the page's answers and what it shows."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.requests = Counter("iv_worklist_requests_total", "Worklist answers by HTTP status", ["code"], registry=r)
        self.items = Gauge("iv_worklist_open_items", "Open documentation problems on the worklist", registry=r)
        self.pages = Gauge("iv_worklist_pages", "Worklist pages open (live event streams)", registry=r)
        self.caught_up = Gauge("iv_worklist_caught_up", "1 once the alerts topic was read to its end since start",
                               registry=r)


class BillingMetrics(ProcessMetrics):
    """`billing send`: what reaches the billing system. Labels: a bounded outcome, never a charge."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.messages = Counter("iv_billing_messages_total", "Charge records handled, by outcome: posted (AA), "
                                "rejected (AE/AR, dead-lettered), duplicate (AE/AR 205: the billing system had it), held "
                                "(no chargemaster row), repeat (posted already), unreadable", ["outcome"], registry=r)
        for outcome in ("posted", "rejected", "duplicate", "held", "repeat", "unreadable"):
            self.messages.labels(outcome)  # exported at 0, so rates and ratios exist from the start
        self.ack_seconds = Histogram("iv_billing_ack_seconds", "From a DFT^P03 sent to its ACK",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.connected = Gauge("iv_billing_connected", "1 while connected to the billing system's MLLP interface",
                               registry=r)
        self.connection_failures = Counter("iv_billing_connection_failures_total", "Connection attempts that "
                                           "failed, and connections lost or timed out before an ACK", registry=r)
        self.resends = Counter("iv_billing_resends_total", "Messages sent again after a lost connection or a missing "
                               "ACK (same MSH-10 and FT1-2)", registry=r)
        self.commit_failures = Counter("iv_billing_commit_failures_total", "Offsets Kafka did not commit (the next "
                                       "commit covers them)", registry=r)
        self.backlog = Gauge("iv_billing_backlog", "Charge records on the charges topic not yet handled by this "
                             "sender", registry=r)


async def _heartbeat(health: Health) -> None:
    while True:
        health.beat()
        await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def operated(s: Settings, metrics: ProcessMetrics) -> AsyncIterator[Health]:
    """Serve /healthz, /readyz and /metrics for the block's duration, with the Kafka cluster's
    reachability among the readiness checks (streams/reachability.py). The caller sets
    `health.ready` once it takes traffic."""
    health = Health()
    server = health_server.serve(metrics.registry, health, s.metrics_port, s.metrics_host)
    beat = asyncio.create_task(_heartbeat(health))
    try:
        async with watching(s, metrics.kafka_reachable) as watch:
            health.checks.append(watch.check)
            yield health
    finally:
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)
        server.shutdown()
