"""`infusion-validator billing send`: charge records from the charges topic to the hospital's billing
system, as HL7 v2.5.1 DFT^P03 over MLLP (billing/dft.py), one message at a time.

Delivery. The sender reads `billing.charges.coded` with its own consumer group (<IV_APP_ID>-billing,
offsets committed by hand) and, per record in partition order:
* AA: the record's offset is committed, only then;
* AE or AR: the record is dead-lettered (category `billing_rejected`, the DFT message as raw) and
  BILLING_REJECTED raised to coding with the receiver's reason (MSA-3 and ERR-8 texts, ERR-3
  conditions); then committed. AE or AR with condition 205 (duplicate key) answers a message the
  billing system already has (its first ACK was lost): counted as posted, not refused;
* held (the chargemaster maps no charge code, or several, to its CPT; a reversal of such a charge
  too): dead-lettered (`billing_held`, the charge record as raw, to send again once the chargemaster
  has the row) and BILLING_HELD raised; then committed.
The dead letters and alerts are acknowledged by Kafka before the offset is committed. A lost
connection, or no ACK within IV_BILLING_ACK_TIMEOUT_SECONDS, closes the connection; the same bytes
(same MSH-10, same FT1-2) are sent again after a reconnection, with a backoff doubling from 0.5 s
to IV_BILLING_RETRY_MAX_SECONDS, for as long as it takes: nothing is lost, and the billing system's
duplicate check on FT1-2 (or its engine's on MSH-10) recognises a resend whose first copy it had
taken. An ACK whose MSA-2 is not the message's MSH-10 (a late answer to an earlier message) is
ignored. After a crash, the record whose ACK was awaited (at most one: one message in flight) is sent
again by the next start, with the same FT1-2; a charge_id already posted by this process (the
worker's at-least-once delivery) is not sent twice.

Operations: /healthz, /readyz (Kafka reachable and the billing system connected) and /metrics on
IV_METRICS_HOST:IV_METRICS_PORT (gateways/ops.py `BillingMetrics`); JSON logs naming charge ids,
CPTs, offsets and ACK codes, never an encounter, a patient or the receiver's text (which the
BILLING_REJECTED alert carries to the coders). One replica: a billing interface takes one
connection, and two senders would interleave encounters' messages (deploy/k8s/billing-sender.yaml).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import re
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext

import hl7
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from billing.chargemaster import Chargemaster, ChargemasterError, parse
from billing.dft import Dft, Held, Interface, NotACharge, translate
from gateways.mllp import client_context
from gateways.ops import BillingMetrics, operated
from rules.alerts import SEVERITY, audience
from rules.ids import stable_id
from streams import logs
from streams.config import ConfigError, Settings, Topics
from streams.kafka import client_kwargs
from streams.records import dead_letter

log = logging.getLogger("infusion_validator.billing")
START, END = b"\x0b", b"\x1c\r"
MAX_ACK_BYTES = 1 << 20
RECENT = 100_000  # charge_ids posted by this process, remembered to skip a re-delivered record
REASON_CHARS = 300  # of the receiver's reason kept in the alert and the dead letter
FIRST_BACKOFF = 0.5
STOP_SECONDS = 10


class Stopped(Exception):
    """The process was asked to stop while it waited for the billing system or Kafka."""


def load_chargemaster(path: str) -> Chargemaster:
    """The chargemaster file (UTF-8, else Windows-1252); ChargemasterError when it maps nothing."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise OSError(f"no such chargemaster file: {path}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    cdm = parse(text, Path(path).name)
    if not cdm.rows:
        raise ChargemasterError(f"{path}: no chargemaster row loaded ({len(cdm.problems)} rows not loaded): every "
                                "charge would be held")
    return cdm


# -- the billing system's answer -----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    code: str  # MSA-1: AA, AE, AR (or ? when unreadable)
    control_id: str  # MSA-2
    reason: str  # MSA-3 and the ERR user messages, bounded, control characters removed
    conditions: tuple[str, ...]  # ERR-3 (v2.5+) or ERR-1.4 (v2.3/2.4) condition codes, table 0357


def read_answer(raw: bytes) -> Answer:
    text = raw.decode("utf-8", "replace")
    segments = [s for s in re.split(r"\r\n|\r|\n", text) if s.strip()]
    try:
        msg = hl7.parse("\r".join(segments))
        msa = msg.segment("MSA")
    except Exception:  # noqa: BLE001 - a receiver may answer anything
        return Answer("?", "", _clean("an answer that is not an HL7 ACK: " + text[:120]), ())
    code, control = _get(msg, "MSA", 1, 1), _get(msg, "MSA", 1, 2)
    texts, conditions = [_get(msg, "MSA", 1, 3)], []
    try:
        errs = msg.segments("ERR")
    except KeyError:
        errs = []
    for n in range(1, len(errs) + 1):
        condition = _get(msg, "ERR", n, 3) or _get(msg, "ERR", n, 1, 4)
        conditions.append(condition.split("&")[0])
        texts.append(_get(msg, "ERR", n, 8) or _get(msg, "ERR", n, 3, 2))
    reason = "; ".join(dict.fromkeys(t for t in texts if t)) or "no reason given"
    return Answer(code or "?", control, _clean(reason), tuple(c for c in conditions if c))


def _get(msg: hl7.Message, seg: str, n: int, field: int, comp: int = 1) -> str:
    try:
        return msg.unescape(str(msg.extract_field(seg, n, field, 1, comp)))
    except (IndexError, KeyError, ValueError):
        return ""


def _clean(text: str) -> str:
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS] + "..."


# -- the connection -------------------------------------------------------------------------------------


class Link:
    """One MLLP connection to the billing system, one message in flight. `exchange` returns the ACK of a
    message, reconnecting and resending the same bytes as long as it takes (Stopped when asked to stop)."""

    def __init__(self, host: str, port: int, ssl: SSLContext | None, ack_timeout: float, retry_max: float,
                 metrics: BillingMetrics, stop: asyncio.Event) -> None:
        self.host, self.port, self.ssl = host, port, ssl
        self.ack_timeout, self.retry_max, self.metrics, self.stop = ack_timeout, retry_max, metrics, stop
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connected = False
        self.failures = 0  # consecutive failed attempts

    def check(self) -> str | None:
        """/readyz: why not ready, or None."""
        return None if self.connected else f"billing system {self.host}:{self.port} not connected"

    async def connect_once(self) -> bool:
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.ssl, limit=MAX_ACK_BYTES,
                                        ssl_handshake_timeout=self.ack_timeout if self.ssl else None),
                self.ack_timeout)
        except (OSError, TimeoutError) as exc:
            self.failures += 1
            self._down()
            self.metrics.connection_failures.inc()
            log.warning("billing system %s:%d not reachable (%s), attempt %d", self.host, self.port,
                        type(exc).__name__, self.failures)
            return False
        self.failures = 0
        self.connected = True
        self.metrics.connected.set(1)
        log.info("connected to the billing system %s:%d%s", self.host, self.port, " over TLS" if self.ssl else "")
        return True

    async def _connected(self) -> None:
        delay = FIRST_BACKOFF
        while self.writer is None or self.reader is None or self.reader.at_eof():
            self.close()
            if self.stop.is_set():
                raise Stopped
            if await self.connect_once():
                return
            with contextlib.suppress(TimeoutError):  # the backoff, cut short by a stop
                await asyncio.wait_for(self.stop.wait(), delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.retry_max)

    async def exchange(self, message: bytes, control_id: str) -> Answer:
        attempts = 0
        while True:
            await self._connected()
            attempts += 1
            if attempts > 1:
                self.metrics.resends.inc()
            sent = time.perf_counter()
            try:
                self.writer.write(START + message + END)
                await asyncio.wait_for(self.writer.drain(), self.ack_timeout)
                answer = await asyncio.wait_for(self._answer(control_id), self.ack_timeout)
            except TimeoutError:
                log.warning("no ACK within %g s for %s: reconnecting to send it again", self.ack_timeout, control_id)
            except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                log.warning("connection to the billing system lost before the ACK of %s (%s): reconnecting to "
                            "send it again", control_id, type(exc).__name__)
            else:
                self.metrics.ack_seconds.observe(time.perf_counter() - sent)
                return answer
            self.metrics.connection_failures.inc()
            self.close()

    async def _answer(self, control_id: str) -> Answer:
        while True:
            block = await self.reader.readuntil(END)
            start = block.find(START)
            answer = read_answer(block[start + 1 if start >= 0 else 0:-len(END)])
            if answer.control_id == control_id or answer.code == "?":
                return answer
            log.warning("an ACK for %r arrived while waiting for %s: ignored (a late answer to an earlier message)",
                        answer.control_id[:20], control_id)

    def _down(self) -> None:
        self.connected = False
        self.metrics.connected.set(0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
        self._down()


# -- the sender -----------------------------------------------------------------------------------------


class Sender:
    """Charge records of the consumer's partitions, one at a time, to the billing system."""

    def __init__(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, link: Link, cdm: Chargemaster,
                 interface: Interface, topics: Topics, metrics: BillingMetrics, stop: asyncio.Event,
                 clock=lambda: dt.datetime.now(dt.timezone.utc).replace(microsecond=0)) -> None:
        self.consumer, self.producer, self.link, self.cdm = consumer, producer, link, cdm
        self.interface, self.topics, self.metrics, self.stop, self.clock = interface, topics, metrics, stop, clock
        self.recent: OrderedDict[str, None] = OrderedDict()

    async def run(self) -> None:
        while not self.stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=500, max_records=200)
            for tp, messages in batches.items():
                for message in messages:
                    if self.stop.is_set():
                        return  # not committed: read again by the next start
                    await self.handle(tp, message)
            await self._backlog()

    async def handle(self, tp: TopicPartition, message) -> None:
        where = {"feed": "billing", "topic": tp.topic, "partition": tp.partition, "offset": message.offset}
        try:
            record = orjson.loads(message.value)
            result = translate(record, self.cdm, self.interface, self.clock())
        except (orjson.JSONDecodeError, NotACharge, TypeError) as exc:
            self.metrics.messages.labels("unreadable").inc()
            log.error("record at %s[%d]@%d is not a charge record: dead-lettered", tp.topic, tp.partition,
                      message.offset)
            await self._store([dead_letter(f"not a charge record the billing interface can send: {exc}",
                                           "billing_unreadable", where, message.value or b"")])
        else:
            await self._deliver(tp, message.offset, record, result, where)
        await self._commit(tp, message.offset + 1)

    async def _deliver(self, tp: TopicPartition, offset: int, record: dict, result: Dft | Held, where: dict) -> None:
        cid = record["charge_id"]
        if cid in self.recent:
            self.metrics.messages.labels("repeat").inc()
            log.info("charge %s was posted already by this sender (a repeat on the charges topic): not sent again", cid)
            return
        if isinstance(result, Held):
            self.metrics.messages.labels("held").inc()
            log.warning("charge %s (CPT %s) held: no single chargemaster row for its CPT", cid, record["cpt"])
            await self._store([dead_letter(result.reason, "billing_held", {**where, "charge_id": cid},
                                           orjson.dumps(record)),
                               _alert("BILLING_HELD", record, _held_message(record, result.reason))])
            return
        answer = await self.link.exchange(result.message, result.control_id)
        if answer.code == "AA" or (answer.code in ("AE", "AR") and "205" in answer.conditions):
            outcome = "posted" if answer.code == "AA" else "duplicate"
            self.metrics.messages.labels(outcome).inc()
            if outcome == "duplicate":
                log.warning("charge %s (%s): %s 205 duplicate key, taken as posted (an earlier copy was)", cid,
                            result.control_id, answer.code)
            self._remember(cid)
            return
        self.metrics.messages.labels("rejected").inc()
        log.warning("charge %s (%s, CPT %s) refused by the billing system: %s %s; dead-lettered and raised to coding",
                    cid, result.control_id, record["cpt"], answer.code, ",".join(answer.conditions) or "-")
        why = f"the billing system answered {answer.code}" + (
            f" ({', '.join(answer.conditions)})" if answer.conditions else "") + f": {answer.reason}"
        await self._store([dead_letter(why, "billing_rejected", {**where, "charge_id": cid,
                                                                 "message_control_id": result.control_id},
                                       result.message),
                           _alert("BILLING_REJECTED", record, _rejected_message(record, result, answer))])

    def _remember(self, charge_id: str) -> None:
        self.recent[charge_id] = None
        if len(self.recent) > RECENT:
            self.recent.popitem(last=False)

    async def _store(self, records: list[dict]) -> None:
        """Dead letters and alerts, acknowledged by Kafka before the offset is committed; retried with
        backoff while Kafka does not take them."""
        delay = FIRST_BACKOFF
        while True:
            try:
                sends = []
                for rec in records:
                    topic = self.topics.alerts if rec["kind"] == "alert" else self.topics.dead_letters
                    key = rec["encounter_id"].encode() if rec["kind"] == "alert" else b""
                    sends.append(await self.producer.send(topic, orjson.dumps(rec), key=key))
                await asyncio.gather(*sends)
                return
            except KafkaError as exc:
                log.error("Kafka did not take a dead letter or alert (%s): trying again in %.1f s", type(exc).__name__,
                          delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
            if self.stop.is_set():
                raise Stopped
            delay = min(delay * 2, 30.0)

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self.consumer.commit({tp: offset})
        except KafkaError as exc:  # the next commit covers it; a crash before then resends (same FT1-2)
            self.metrics.commit_failures.inc()
            log.warning("offset %d of %s[%d] not committed (%s): a restart before the next commit sends it again",
                        offset, tp.topic, tp.partition, type(exc).__name__)

    async def _backlog(self) -> None:
        behind = 0
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is not None:
                behind += max(0, high - await self.consumer.position(tp))
        self.metrics.backlog.set(behind)


def _what(record: dict) -> str:
    kind = "reversal" if record["action"] == "reverse" else "charge"
    mods = "".join(f"-{m}" for m in record.get("modifiers") or ())
    return f"{kind} {record['cpt']}{mods} x{record['units']} on {record['service_date']} ({record['charge_id']})"


def _held_message(record: dict, reason: str) -> str:
    return (f"The {_what(record)} was not sent to the billing system: {reason.split(': ', 1)[-1]}. Add the row to "
            "the chargemaster, restart billing send, and send the held charge from the dead letters "
            "(docs/operations.md, Held and rejected charges).")


def _rejected_message(record: dict, result: Dft, answer: Answer) -> str:
    conditions = f" ({', '.join(answer.conditions)})" if answer.conditions else ""
    return (f"The billing system refused the {_what(record)}, FT1-2 {result.transaction_id}: {answer.code}"
            f"{conditions} {answer.reason}. Correct it in the billing system or the chargemaster; the refused "
            "message is in the dead letters.")


def _alert(code: str, record: dict, message: str) -> dict:
    """An alert record (contract §3.2) for one charge: its id from the code and the charge_id."""
    return {"kind": "alert", "alert_id": stable_id("al", record["encounter_id"], code, record["charge_id"]),
            "encounter_id": record["encounter_id"], "administration_id": None, "code": code,
            "severity": SEVERITY[code], "state": "raised", "message": message, "audience": audience(code)}


# -- the process ----------------------------------------------------------------------------------------


def tls_context(s: Settings) -> SSLContext | None:
    if s.billing_tls == "on" or s.billing_tls_cafile or s.billing_tls_certfile:
        return client_context(s.billing_tls_cafile, s.billing_tls_certfile, s.billing_tls_keyfile)
    return None


async def run(s: Settings) -> int:
    """`billing send` until SIGTERM/SIGINT."""
    logs.configure(s.log_level, s.log_format)
    return await serve(s)


async def serve(s: Settings, stop: asyncio.Event | None = None, announce=print) -> int:
    """The sender until SIGTERM/SIGINT, or `stop` is set."""
    if not s.billing_chargemaster_file:
        raise ConfigError("billing send needs the hospital's chargemaster: IV_BILLING_CHARGEMASTER_FILE (or "
                          "--chargemaster CDM.csv)")
    cdm = load_chargemaster(s.billing_chargemaster_file)
    if cdm.problems:
        log.warning("chargemaster %s: %d rows not loaded (%s)", cdm.source, len(cdm.problems), cdm.problems[0])
    context = tls_context(s)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError, ValueError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
    metrics = BillingMetrics()
    async with operated(s, metrics) as health:
        producer = AIOKafkaProducer(**client_kwargs(s), acks="all", linger_ms=5)
        # Static membership with IV_GROUP_INSTANCE_ID: a restart (a crash) takes its partitions back at once.
        consumer = AIOKafkaConsumer(s.topics.charges, **client_kwargs(s), group_id=f"{s.app_id}-billing",
                                    group_instance_id=s.group_instance_id, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await producer.start()
        await consumer.start()
        link = Link(s.billing_host, s.billing_port, context, s.billing_ack_timeout_seconds,
                    s.billing_retry_max_seconds, metrics, stop)
        health.checks.append(link.check)
        sender = Sender(consumer, producer, link, cdm, s.billing_interface, s.topics, metrics, stop)
        try:
            await link.connect_once()
            health.ready = True
            announce(f"billing send: {s.topics.charges} -> DFT^P03 to {s.billing_host}:{s.billing_port} "
                     f"({'TLS' if context else 'plain TCP, no TLS'}), chargemaster {cdm.source} ({len(cdm.rows)} rows); "
                     f"health and metrics on {s.metrics_host}:{s.metrics_port}")
            with contextlib.suppress(Stopped):
                await sender.run()
            log.info("stopping: the last offset is committed, leaving the group")
        finally:
            health.ready = False
            link.close()
            for client in (consumer, producer):
                try:
                    await asyncio.wait_for(client.stop(), STOP_SECONDS)
                except (TimeoutError, KafkaError):
                    log.warning("Kafka did not answer within %d s while stopping", STOP_SECONDS)
    return 0


