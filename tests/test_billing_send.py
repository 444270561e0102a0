"""`billing send` against the real broker and a billing-system test double (tests/billing_receiver.py)
that answers AA and AE and drops the connection mid-stream: nothing lost, nothing posted twice, a
refused charge dead-lettered with BILLING_REJECTED, an unmapped CPT held with BILLING_HELD, and after
a kill -9 only the message in flight sent again, with the same FT1-2."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from billing.chargemaster import parse
from billing.dft import transaction_id
from cli.batch import run_batch
from gateways.billing import serve
from simulator import simulate
from streams.broker import free_port
from streams.topics import create_topics
from tests.billing_receiver import BillingReceiver, ReceiverConfig
from tests.stream_harness import WORKER_LOG_DIR, unique_settings, worker_env

ROOT = Path(__file__).parent.parent
CDM = ROOT / "samples" / "chargemaster-illustrative.csv"


def _day(encounters: int, seed: int) -> list[dict]:
    events = [line.encode() for line in simulate(encounters=encounters, seed=seed, day=dt.date(2026, 3, 2))]
    out = io.BytesIO()
    run_batch(events, out)
    return [r for r in (orjson.loads(line) for line in out.getvalue().splitlines()) if r["kind"] == "charge"]


async def _produce(settings, records: list[dict]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        for r in records:
            await producer.send(settings.topics.charges, orjson.dumps(r), key=r["encounter_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _read(settings, topic: str) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest",
                                group_id=None)
    await consumer.start()
    found = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            found += [orjson.loads(m.value) for ms in batch.values() for m in ms]
    finally:
        await consumer.stop()
    return found


async def _until(condition, timeout: float, why: str) -> None:
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout:.0f} s: {why}")


def _settings(broker, receiver, **overrides):
    return unique_settings(broker.bootstrap, billing_host="127.0.0.1", billing_port=receiver.port,
                           billing_chargemaster_file=str(CDM), billing_ack_timeout_seconds=2.0,
                           billing_retry_max_seconds=1.0, metrics_port=free_port(), **overrides)


def _net(postings) -> Counter:
    """Net units per account and charge code, as the billing system holds them."""
    net: Counter = Counter()
    for p in postings:
        net[(p.account, p.charge_code)] += int(p.quantity) * (1 if p.transaction_type == "CG" else -1)
    return +net


def _want(records: list[dict], cdm) -> Counter:
    code_of = {row.cpt: row.charge_code for row in cdm.rows}
    net: Counter = Counter()
    for r in records:
        net[(r["encounter_id"], code_of[r["cpt"]])] += r["units"] * (1 if r["action"] == "post" else -1)
    return +net


async def test_charges_reach_the_billing_system_once_through_drops_refusals_and_holds(broker):
    cdm = parse(CDM.read_text(), CDM.name)
    records = _day(60, seed=5)
    refused_code = next(row.charge_code for row in cdm.rows if row.cpt == records[0]["cpt"])
    refused = [r for r in records if r["cpt"] == records[0]["cpt"]]
    sent = [r for r in records if r["cpt"] != records[0]["cpt"]]
    unmapped = dict(records[1], charge_id="ch-unmapped", cpt="96549", action="post", reverses=None)
    # The receiver drops the connection on its 5th message after taking it: the ACK is lost, the
    # sender reconnects and sends the same message again, which the receiver recognises by FT1-2.
    config = ReceiverConfig(known_charge_codes=frozenset(r.charge_code for r in cdm.rows) - {refused_code},
                            duplicates="ignore", drop_after=5, drop_mode="after_post")
    async with BillingReceiver(config) as rx:
        settings = _settings(broker, rx)
        await create_topics(settings, log=lambda _: None)
        await _produce(settings, [*records, unmapped])
        stop = asyncio.Event()
        task = asyncio.create_task(serve(settings, stop, announce=lambda _: None))
        try:
            await _until(lambda: len({e.control_id for e in rx.exchanges}) >= len(records), 60,
                         f"{len(records)} messages received")
            await asyncio.sleep(1)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

        dead = await _read(settings, settings.topics.dead_letters)
        alerts = await _read(settings, settings.topics.alerts)

    posted = {p.transaction_id for p in rx.postings}
    assert len(rx.postings) == len(posted), "a charge posted twice"
    assert posted == {transaction_id(r["charge_id"]) for r in sent}, "a charge lost or a refused one posted"
    assert _net(rx.postings) == _want(sent, cdm)
    dropped = [e.control_id for e in rx.exchanges if e.ack is None]
    assert rx.drops == 1 and len(dropped) == 1
    assert [e.control_id for e in rx.exchanges].count(dropped[0]) == 2  # sent again after the reconnect

    rejected = [d for d in dead if d["category"] == "billing_rejected"]
    held = [d for d in dead if d["category"] == "billing_held"]
    assert sorted(d["source"]["charge_id"] for d in rejected) == sorted(r["charge_id"] for r in refused)
    assert [d["source"]["charge_id"] for d in held] == ["ch-unmapped"]
    by_code = Counter(a["code"] for a in alerts)
    assert by_code == {"BILLING_REJECTED": len(refused), "BILLING_HELD": 1}
    assert all(a["audience"] == "coding" and a["severity"] == "hard" for a in alerts)
    reason = next(a["message"] for a in alerts if a["code"] == "BILLING_REJECTED")
    assert refused_code in reason and "AE" in reason  # the receiver's own reason reaches the coders
    patient = records[0].get("patient_id")
    assert not patient or all(patient not in a["message"] for a in alerts)


async def test_after_a_kill_only_the_message_in_flight_is_sent_again_with_the_same_ft1_2(broker):
    cdm = parse(CDM.read_text(), CDM.name)
    records = _day(40, seed=8)
    # The billing system hangs on the middle message: read, neither posted nor answered, so the kill
    # lands with exactly that message in flight. No duplicate check: a second posting would show.
    config = ReceiverConfig(known_charge_codes=frozenset(r.charge_code for r in cdm.rows), duplicates="post",
                            hold_after=len(records) // 2)
    async with BillingReceiver(config) as rx:
        settings = _settings(broker, rx)
        await create_topics(settings, log=lambda _: None)
        await _produce(settings, records)
        # Static membership, as deploy/k8s sets it: the restarted sender takes its partitions back at
        # once instead of after the killed member's session timeout.
        env = dict(worker_env(settings, None), IV_BILLING_HOST="127.0.0.1", IV_BILLING_PORT=str(rx.port),
                   IV_BILLING_CHARGEMASTER_FILE=str(CDM), IV_BILLING_ACK_TIMEOUT_SECONDS="2",
                   IV_GROUP_INSTANCE_ID=f"billing-{rx.port}")
        log = os.path.join(WORKER_LOG_DIR, f"billing-{rx.port}.log")

        def start():
            return subprocess.Popen([sys.executable, "-m", "cli.main", "billing", "send"], env=env,
                                    stdout=open(log, "ab"), stderr=subprocess.STDOUT)
        proc = start()
        try:
            await _until(lambda: rx.held, 60, f"half the messages; log {log}")
            proc.send_signal(signal.SIGKILL)  # within the sender's 2 s ACK timeout: it never resent
            proc.wait(10)
            before = len(rx.exchanges)
            rx.config.hold_after = None  # the billing system answers again
            proc = start()
            await _until(lambda: len({p.transaction_id for p in rx.postings}) >= len(records), 60,
                         f"every message; log {log}")
            await asyncio.sleep(1)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            proc.wait(30)

    ids = rx.posted_ids()
    repeats = [i for i, n in Counter(ids).items() if n > 1]
    # Offsets are committed after each AA: the restart sends again at most what was awaiting its ACK
    # when the process died (and what was acknowledged but not yet committed), never anything else.
    assert len(repeats) <= 1, (repeats, before, log)
    # The message in flight was not posted before the kill: the restart sent it, with its FT1-2 (MSH-10
    # is IV + FT1-2), and nothing committed early lost it.
    (held,) = rx.held
    assert held[2:] in ids and [e.control_id for e in rx.exchanges].count(held) == 1, (held, log)
    assert set(ids) == {transaction_id(r["charge_id"]) for r in records}
    assert _net([p for p in rx.postings if p.transaction_id not in repeats]) + Counter() == _want(
        [r for r in records if transaction_id(r["charge_id"]) not in repeats], cdm)
    assert proc.returncode == 0, log
