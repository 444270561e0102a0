"""HL7 v2 over MLLP and FHIR over HTTP, end to end on the real broker: the same administrations
give the same charges as the JSON path; rejected messages are NAKed and dead-lettered."""
import datetime as dt
import io
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer

from feeds import DrugClasses
from gateways import fhir_http, mllp
from cli.batch import run_batch
from gateways.bridge import Bridge
from streams.broker import free_port
from gateways.gateway import send_hl7
from tests.events import net_charges, standing_alerts
from tests.stream_harness import Worker, unique_settings

SAMPLES = Path(__file__).parent.parent / "samples"
SCENARIO = sorted((SAMPLES / "hl7" / "scenario").glob("*.hl7"))


def DAY_AFTER():
    """A stopped clock the day after the samples' day (2026-11-24)."""
    return dt.datetime(2026, 11, 25, 12, tzinfo=dt.timezone.utc).timestamp()


def _batch(path: Path) -> list[dict]:
    out = io.BytesIO()
    run_batch(path.read_bytes().splitlines(), out)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


async def _chargeitems(settings) -> list[dict]:
    consumer = AIOKafkaConsumer(settings.topics.chargeitems, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
        return [orjson.loads(m.value) for ms in batch.values() for m in ms]
    finally:
        await consumer.stop()


async def test_hl7_over_mllp_codes_like_the_json_path_and_naks_what_it_cannot_use(broker):
    expected = _batch(SAMPLES / "hl7" / "scenario.jsonl")
    assert net_charges(expected)  # the scenario does code something
    settings = unique_settings(broker.bootstrap)
    async with Worker(settings, clock=DAY_AFTER) as w:
        port = free_port()
        server = await mllp.serve(Bridge(w.producer, settings.topics), DrugClasses.load(), "127.0.0.1", port)
        try:
            lines: list[str] = []
            assert await send_hl7("127.0.0.1", port, [str(p) for p in SCENARIO], out=lines.append) == 0
            assert all(line.endswith(": AA") for line in lines) and len(lines) == len(SCENARIO)
            bad = [str(SAMPLES / "hl7" / n) for n in ("ras-unknown-drug.hl7", "malformed-no-visit.hl7",
                                                       "unsupported-adt-a01.hl7")]
            refused: list[str] = []
            assert await send_hl7("127.0.0.1", port, bad, out=refused.append) == 2
            assert [line.split(": ")[1][:2] for line in refused] == ["AE", "AE", "AR"]
            got = await w.collect(lambda r: net_charges(r) == net_charges(expected)
                                  and sum(x["kind"] == "dead_letter" for x in r) == 3)
        finally:
            server.close()
    assert standing_alerts([r for r in got if r.get("code") != "DRUG_CLASS_UNKNOWN"]) == standing_alerts(expected)
    letters = [r for r in got if r["kind"] == "dead_letter"]
    assert sorted(r["category"] for r in letters) == ["hl7_missing_field", "hl7_unsupported", "unknown_drug"]
    assert all(r["source"]["feed"] == "hl7-mllp" and r["raw"].startswith("MSH|") for r in letters)
    assert [r["code"] for r in got if r["kind"] == "alert" and r["code"] == "DRUG_CLASS_UNKNOWN"] == ["DRUG_CLASS_UNKNOWN"]
    items = await _chargeitems(settings)
    posted = {r["charge_id"] for r in got if r["kind"] == "charge" and r["action"] == "post"}
    reversed_ = {r["reverses"] for r in got if r["kind"] == "charge" and r["action"] == "reverse"}
    assert all(i["resourceType"] == "ChargeItem" for i in items) and {i["id"] for i in items} == posted
    # topics have no order: a line may be posted, then reversed (same ChargeItem id, entered-in-error)
    last = {i["id"]: i["status"] for i in items}
    assert {i for i, status in last.items() if status == "billable"} == posted - reversed_


async def test_fhir_bundle_posted_to_the_endpoint_is_coded_like_the_same_events(broker):
    from feeds import translate_fhir

    bundle = orjson.loads((SAMPLES / "fhir" / "bundle-transaction.json").read_bytes())
    events = [e for t in translate_fhir(bundle, DrugClasses.load()) for e in t.events]
    out = io.BytesIO()
    run_batch([orjson.dumps(e) for e in events], out)
    expected = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert net_charges(expected)
    settings = unique_settings(broker.bootstrap)
    async with Worker(settings, clock=DAY_AFTER) as w:
        port = free_port()
        runner = await fhir_http.serve(Bridge(w.producer, settings.topics), DrugClasses.load(), "127.0.0.1", port)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"http://127.0.0.1:{port}/fhir", data=orjson.dumps(bundle),
                                     headers={"Content-Type": "application/fhir+json"}) as resp:
                    assert resp.status == 200, await resp.text()
                unknown = (SAMPLES / "fhir" / "medication-administration-unknown-drug.json").read_bytes()
                async with http.post(f"http://127.0.0.1:{port}/fhir/MedicationAdministration", data=unknown,
                                     headers={"Content-Type": "application/fhir+json"}) as resp:
                    assert resp.status == 422
                    assert (await resp.json(content_type=None))["issue"][0]["severity"] == "error"
                async with http.post(f"http://127.0.0.1:{port}/fhir", data=b"{not json",
                                     headers={"Content-Type": "application/json"}) as resp:
                    assert resp.status == 400
            got = await w.collect(lambda r: net_charges(r) == net_charges(expected)
                                  and any(x["kind"] == "dead_letter" for x in r))
        finally:
            await runner.cleanup()
    assert [r["category"] for r in got if r["kind"] == "dead_letter"] == ["unknown_drug"]
