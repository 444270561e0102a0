"""Infusion pumps: IHE PCD messages in (feeds/pcd.py, real public messages from the IHE technical
framework), their evidence in the rules (rules/pumps.py, coding-rules §11), the same in the stream
and in `code`."""
from __future__ import annotations

import io
from pathlib import Path

import orjson

from cli.batch import run_batch
from feeds import DrugClasses, PumpLinks, translate_hl7
from rules.policy import Policy
from simulator import simulate
from streams.feed import SimClock, occurred
from tests.events import net_charges, standing_alerts
from tests.stream_harness import Worker, unique_settings

DATA = Path(__file__).parent / "data" / "hl7"
SAMPLES = Path(__file__).parent.parent / "samples" / "hl7"
DRUGS = DrugClasses.load()
START = (DATA / "hl7-ihepcd-tf-rev9-ipec-deliv-start.hl7").read_bytes()  # IHE TF Rev 9 Appendix M: dopamine, order AB12345
STOP_2012 = (DATA / "hl7-ihepcd-ipec-rev1.2-2012-deliv-stop.hl7").read_bytes()
COMPLETE_2012 = (DATA / "hl7-ihepcd-ipec-rev1.2-2012-deliv-complete.hl7").read_bytes()
START_2012 = (DATA / "hl7-ihepcd-ipec-rev1.2-2012-deliv-start.hl7").read_bytes()


def _mar(order: str, visit: str = "V5510001") -> bytes:
    """The shipped RAS^O17 sample (a vancomycin start), its ORC-2 the order the pump was programmed with."""
    raw = (SAMPLES / "ras-start.hl7").read_bytes()
    return raw.replace(b"ORC|RE|PL5101^EPIC|", f"ORC|RE|{order}^EPIC|".encode()).replace(b"V5510001", visit.encode())


def test_a_pump_event_is_linked_through_the_order_of_the_mar_administration():
    links = PumpLinks()
    assert translate_hl7(_mar("AB12345"), DRUGS, links=links).ok
    events = [e for raw in (START_2012, STOP_2012, COMPLETE_2012)
              for e in translate_hl7(raw, DRUGS, links=links).events]
    assert [(e["status"], e["occurred_at"]) for e in events] == [
        ("started", "2010-07-06T15:47:04-08:00"), ("stopped", "2010-07-06T16:36:29-08:00"),
        ("completed", "2010-07-07T02:36:29-08:00")]  # the pump's times (OBR-7 / OBX-14), not MSH-7's
    assert {(e["encounter_id"], e["device_id"], e["channel"], e["order_id"], e["encounter_id_field"]) for e in events} == {
        ("V5510001", "Pump002", "1/2", "AB12345", "order")}
    assert {e["drug"]["name"] for e in events} == {"Dopamine"} and events[1]["rate_ml_h"] == 24.9


def test_the_tf_rev9_start_reads_codes_and_the_supplement_s_pending_zeros_by_name():
    links = PumpLinks()
    links.order_visit("AB12345", "V1")
    rev9 = translate_hl7(START, DRUGS, links=links).events
    pending = translate_hl7((DATA / "hl7-ihepcd-ipec-rev1.5-deliv-start-pending-codes.hl7").read_bytes(), DRUGS,
                            links=links).events
    strip = lambda es: [{k: v for k, v in e.items() if k != "recorded_at"} for e in es]  # noqa: E731
    assert strip(rev9) == strip(pending)
    assert (rev9[0]["status"], rev9[0]["device_id"], rev9[0]["channel"], rev9[0]["rate_ml_h"]) == (
        "started", "E0002", "1/Primary", 15.4)
    assert "patient_id" in rev9[0] and rev9[0]["volume_ml"] == 0.0


def test_a_piv_association_links_a_pump_that_reports_no_order():
    links = PumpLinks()
    piv = translate_hl7((DATA / "hl7-ihepcd-tf-rev9-piv-rgv-o15-example1-dopamine.hl7").read_bytes(), DRUGS, links=links)
    assert (piv.ack, piv.events, piv.skipped) == ("AA", [], True)  # order 12345 on pump A0001, remembered
    assert translate_hl7(_mar("12345", "V7"), DRUGS, links=links).ok
    no_order = START.replace(b"OBR|1|AB12345^PCD-03|", b"OBR|1||").replace(b"E0002^^0012210000000000", b"A0001^^0012210000000000")
    [event] = translate_hl7(no_order, DRUGS, links=links).events
    assert (event["encounter_id"], event["order_id"], event["encounter_id_field"]) == ("V7", "12345", "piv")


def test_a_pump_event_nothing_links_is_refused_saying_what_would_link_it():
    t = translate_hl7(START, DRUGS, links=PumpLinks())
    assert t.ack == "AE" and not t.events
    for words in ("PV1-19", "OBR-2", "ORC-2", "RGV^O15", "never linked by patient name"):
        assert words in t.error
    assert "HO2009002" not in t.error and "Brooks" not in t.error  # PID-3, PID-5: never in a reason
    visit = START.replace(b"PV1||I|3 West ICU^3002^1", b"PV1||I|3 West ICU^3002^1" + b"|" * 16 + b"V42")
    [event] = translate_hl7(visit, DRUGS).events
    assert (event["encounter_id"], event["encounter_id_field"], event["location"]["unit"]) == ("V42", "visit", "3 West ICU")


def test_transitions_keep_vein_open_alarms_and_acknowledgements_are_taken_and_mean_nothing():
    links = PumpLinks()
    links.order_visit("AB12345", "V1")
    stop = START.replace(b"197288^MDC_EVT_PUMP_DELIV_START", b"0^MDC_EVT_PUMP_DELIV_STOP")
    transitioning = stop.replace(b"^pump-delivery-status-delivering", b"^pump-delivery-status-transitioning")
    kvo = START.replace(b"^pump-delivery-status-delivering", b"^pump-delivery-status-kvo")
    assert translate_hl7(stop, DRUGS, links=links).events[0]["status"] == "stopped"
    for raw, note in ((transitioning, "pump_transition"), (kvo, "pump_kvo")):
        t = translate_hl7(raw, DRUGS, links=links)
        assert (t.ack, t.events, t.skipped, [n.kind for n in t.notes]) == ("AA", [], True, [note])
    for name in ("tf-rev9-acm-r40-bbraun-occlusion-start", "tf-rev9-piv-ack-o15-example1", "tf-rev9-piv-rrg-o16-reject"):
        t = translate_hl7((DATA / f"hl7-ihepcd-{name}.hl7").read_bytes(), DRUGS, links=links)
        assert (t.ack, t.events, t.skipped) == ("AA", [], True), name


def test_a_pcd01_status_report_is_read_per_source_and_a_lab_result_is_still_not_taken():
    links = PumpLinks()
    links.order_visit("AB12345", "V1")
    report = (START.replace(b"ORU^R42^ORU_R01", b"ORU^R01^ORU_R01").replace(b"IHE_PCD_010", b"IHE_PCD_001")
              .replace(b"OBX|3|CWE|68487^MDC_ATTR_EVT_COND^MDC|1.0.0.2|197288^MDC_EVT_PUMP_DELIV_START^MDC||||||R\r", b""))
    [event] = translate_hl7(report, DRUGS, links=links).events
    assert (event["status"], event["channel"], event["event_id"].startswith("pcd01:")) == ("started", "1/Primary", True)
    lab = b"MSH|^~\\&|LAB|H|X|Y|20261124083000-0500||ORU^R01^ORU_R01|L1|P|2.5.1\rPID|1||1\rOBR|1\rOBX|1|NM|GLU||5\r"
    assert translate_hl7(lab, DRUGS).ack == "AR"


# -- the rules ----------------------------------------------------------------------------------


def _ev(n: int, kind: str, at: str, **fields) -> bytes:
    return orjson.dumps({"event_id": f"e{n}", "type": kind, "encounter_id": "ENC1",
                         "occurred_at": f"2026-12-01T{at}:00-05:00", **fields})


VANCO = dict(administration_id="A1", drug={"name": "vancomycin", "code": "11124"}, category="therapeutic",
             route="IV", method="infusion", device="pump", ordered_duration_minutes=60)
PUMP = dict(device_id="P1", channel="1/A", drug={"name": "Vancomycin"})


def _code(lines: list[bytes], policy: Policy = Policy()) -> list[dict]:
    out = io.BytesIO()
    run_batch(lines, out, policy)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def _standing(records: list[dict]) -> dict[str, str]:
    return {code: message for (_, code, _, message) in standing_alerts(records)}


def test_the_pump_s_stop_asks_the_nurse_for_the_charted_one_and_the_coding_does_not_change():
    """coding-rules §11's worked example: a pump completed 11:05, the MAR has no stop."""
    day = [_ev(1, "administration.started", "10:00", **VANCO), _ev(2, "device.delivery", "10:02", status="started", **PUMP),
           _ev(3, "device.delivery", "11:05", status="completed", **PUMP), _ev(4, "encounter.discharged", "14:30")]
    got = _code(day)
    alerts = _standing(got)
    assert "the pump reported it completed at 11:05 on channel 1/A" in alerts["PUMP_STOPPED_UNDOCUMENTED"]
    assert alerts["STOP_TIME_MISSING"].endswith("(pump: completed 11:05 on channel 1/A)")
    assert [(c[0], c[5]) for c in net_charges(got)] == [("96374", True)]  # evidence only: §5's push fallback
    fallback = _code(day, Policy(pump_stop_times="fallback"))
    assert [(c[0], c[5]) for c in net_charges(fallback)] == [("96365", True)]  # on the pump's stop, incomplete
    assert "billed on the pump's stop at 11:05" in _standing(fallback)["STOP_TIME_MISSING"]
    charted = _code(day + [_ev(5, "administration.stopped", "11:04", administration_id="A1")])
    assert "PUMP_STOPPED_UNDOCUMENTED" not in _standing(charted)  # resolved by the charted stop
    assert [c[0] for c in net_charges(charted)] == ["96365"]


def test_an_uncharted_pump_infusion_and_a_time_mismatch():
    day = [_ev(1, "administration.started", "10:00", **{**VANCO, "order_id": "O-1"}),
           _ev(2, "administration.stopped", "11:00", administration_id="A1"),
           _ev(3, "device.delivery", "10:25", status="started", **{**PUMP, "order_id": "O-1"}),
           _ev(4, "device.delivery", "12:40", status="completed", **{**PUMP, "order_id": "O-1"}),
           _ev(5, "device.delivery", "13:00", status="started", device_id="P2", drug={"name": "cefazolin"}),
           _ev(6, "device.delivery", "13:40", status="completed", device_id="P2", drug={"name": "cefazolin"}),
           _ev(7, "encounter.discharged", "14:30")]
    alerts = _standing(_code(day))
    assert "the chart says 10:00–11:00, the pump 10:25–12:40" in alerts["PUMP_TIME_MISMATCH"]
    assert "96366 x1" in alerts["PUMP_TIME_MISMATCH"]  # 135 min on the pump: an additional hour the chart lacks
    assert alerts["PUMP_INFUSION_UNDOCUMENTED"].startswith("The pump delivered cefazolin on the pump from 13:00")


async def test_a_day_with_pump_events_gives_the_same_alerts_in_the_stream_and_in_code(broker):
    lines = [line.encode() for line in simulate(encounters=150, seed=11, pump_share=0.6)]
    expected = _code(lines)
    pump_alerts = {a for a in standing_alerts(expected) if a[1].startswith("PUMP_")}
    assert {a[1] for a in pump_alerts} >= {"PUMP_TIME_MISMATCH", "PUMP_INFUSION_UNDOCUMENTED"}  # or it proves nothing
    clock = SimClock(min(t for line in lines if (t := occurred(line))) - 60, speed=20000)
    async with Worker(unique_settings(broker.bootstrap), clock) as w:
        clock.start()
        await w.send(lines, clock)
        got = await w.collect(lambda r: net_charges(r) == net_charges(expected)
                              and standing_alerts(r) == standing_alerts(expected), timeout=90)
    assert net_charges(got) == net_charges(expected) and standing_alerts(got) == standing_alerts(expected)


async def test_a_listener_links_a_pump_through_an_order_another_replica_received(broker):
    """The MAR's administration went through another replica (here: straight to Kafka); the `hl7
    listen` process learns its order from the topic (gateways/pump_orders.py) and links the pump's
    event to that visit."""
    import asyncio
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from gateways import mllp
    from streams.broker import free_port
    from streams.topics import create_topics
    from tests.stream_harness import WORKER_LOG_DIR, worker_env

    settings = unique_settings(broker.bootstrap)
    await create_topics(settings, log=lambda _: None)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        [started] = translate_hl7(_mar("AB12345", "V900"), DRUGS).events
        await producer.send_and_wait(settings.topics.started, orjson.dumps(started), key=b"V900")
    finally:
        await producer.stop()
    port, metrics = free_port(), free_port()
    log = os.path.join(WORKER_LOG_DIR, f"listener-{port}.log")
    listener = subprocess.Popen([sys.executable, "-m", "cli.main", "hl7", "listen"], stdout=open(log, "wb"),
                                stderr=subprocess.STDOUT,
                                env=dict(worker_env(settings, None), IV_HL7_PORT=str(port), IV_METRICS_PORT=str(metrics)))
    try:
        codes = []
        for _ in range(150):  # until it listens and has read the order: AE "cannot be linked" before
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{metrics}/readyz", timeout=1)
                async for _, ack in mllp.send("127.0.0.1", port, [START]):
                    codes.append(mllp.read_ack(ack)[0])
                if codes[-1] == "AA":
                    break
            except OSError:
                pass
            await asyncio.sleep(0.2)
        assert codes and codes[-1] == "AA", (codes, log)
    finally:
        listener.send_signal(signal.SIGTERM)
        listener.wait(30)
    consumer = AIOKafkaConsumer(settings.topics.deliveries, bootstrap_servers=broker.bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    stored = [orjson.loads(m.value) for ms in batch.values() for m in ms]
    assert stored and {e["encounter_id"] for e in stored} == {"V900"}, stored
    assert {e["order_id"] for e in stored} == {"AB12345"}
