"""Feeds in: translations of HL7 v2 and FHIR (feeds/, pure) written to the event topics.

Used by the MLLP listener, the FHIR endpoint and file replay alike. `submit` returns only once
Kafka has acknowledged every record, so an HL7 ACK (AA) or an HTTP 200 means the events are
durable; one Kafka does not store within `timeout` seconds raises KafkaTimeoutError (the
listener answers AE / 503: resend) while its sender still waits. A rejected message goes to the dead-letter topic (with its reason and the raw message)
and its alerts (e.g. DRUG_CLASS_UNKNOWN) to the alerts topic, so nothing vanishes silently.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

from feeds import Translation
from feeds.drugs import Waiting
from streams.config import Topics
from streams.records import dead_letter


class Bridge:
    def __init__(self, producer: AIOKafkaProducer, topics: Topics, on_events: Callable[[list[dict]], None] | None = None,
                 on_rejected: Callable[[str, str], None] | None = None,
                 on_noted: Callable[[str, str], None] | None = None, timeout: float | None = None) -> None:
        self.producer, self.topics, self.timeout = producer, topics, timeout  # give the producer the same request timeout
        self.on_events = on_events  # e.g. the demo, to show what came in through a feed
        self.on_rejected = on_rejected  # (feed, category) of each message dead-lettered: gateways.ops's metrics
        self.on_noted = on_noted  # (feed, kind) of each note: what was read leniently, or skipped
        self.accepted = self.rejected = 0
        self.waiting = Waiting()  # administrations held back per unknown drug, said in DRUG_CLASS_UNKNOWN

    async def submit(self, translation: Translation, raw: bytes | str, source: dict) -> None:
        """Write one message's events (or its dead letter) and alerts; wait for Kafka's acks."""
        await self.submit_many([(translation, raw, source)])

    async def submit_many(self, items: list[tuple[Translation, bytes | str, dict]]) -> None:
        """submit() for the translations of one request (e.g. a FHIR Bundle's entries) as one batch:
        every record is sent, in order, before any ack is awaited, so N entries cost one round trip
        to Kafka, not N."""
        try:
            await asyncio.wait_for(self._store(items), self.timeout)
        except TimeoutError:
            raise KafkaTimeoutError(f"Kafka did not store the message within {self.timeout:g} s") from None
        self._count(items)

    async def _store(self, items: list[tuple[Translation, bytes | str, dict]]) -> None:
        sends = []
        for translation, raw, source in items:
            for event in translation.events:
                sends.append(await self.producer.send(self.topics.by_type[event["type"]], orjson.dumps(event),
                                                      key=event["encounter_id"].encode()))
            for alert in self.waiting.annotate(translation.alerts):
                sends.append(await self.producer.send(self.topics.alerts, orjson.dumps(alert),
                                                      key=alert["encounter_id"].encode()))
            if not translation.ok:
                letter = dead_letter(translation.error, translation.category, source, raw)
                sends.append(await self.producer.send(self.topics.dead_letters, orjson.dumps(letter), key=b""))
        await asyncio.gather(*sends)

    def _count(self, items: list[tuple[Translation, bytes | str, dict]]) -> None:
        for translation, _, source in items:
            if self.on_noted:
                for note in translation.notes:
                    self.on_noted(source.get("feed", "unknown"), note.kind)
            if translation.ok:
                self.accepted += 1
                if self.on_events and translation.events:
                    self.on_events(translation.events)
            else:
                self.rejected += 1
                if self.on_rejected:
                    self.on_rejected(source.get("feed", "unknown"), translation.category or "unknown")
