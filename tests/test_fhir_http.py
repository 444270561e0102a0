"""The FHIR endpoint's answers (gateways/fhir_http.py) without a broker: a batch is answered entry by
entry, a transaction is all or nothing, and what is published is exactly what the answer says."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import aiohttp
import pytest

from feeds import DrugClasses
from gateways import fhir_http

SAMPLES = Path(__file__).parent.parent / "samples" / "fhir"


class FakeBridge:
    """Records what would be written to Kafka: the events and alerts of each translation, and a
    dead letter for each rejected one."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.alerts: list[dict] = []
        self.letters: list[tuple[str, str]] = []
        self.sources: list[dict] = []
        self.batches = 0

    async def submit_many(self, items) -> None:
        self.batches += 1
        for item in items:
            await self.submit(*item)

    async def submit(self, translation, raw, source) -> None:
        self.events += translation.events
        self.alerts += translation.alerts
        if not translation.ok:
            self.letters.append((translation.category, raw.decode() if isinstance(raw, bytes) else raw))
            self.sources.append(source)


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def no_method(resource: dict) -> dict:
    """An IV administration at one instant with nothing saying push or infusion."""
    res = copy.deepcopy(resource)
    res["id"] = "ma-unsaid"
    del res["dosage"]["method"]
    return res


def bundle(kind: str, *resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}


@pytest.fixture
async def post():
    bridge = FakeBridge()
    runner = await fhir_http.serve(bridge, DrugClasses.load(), "127.0.0.1", 0)
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        async def send(body) -> tuple[int, dict]:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            async with http.post(f"http://127.0.0.1:{port}/fhir", data=data,
                                 headers={"Content-Type": "application/fhir+json"}) as resp:
                text = await resp.text()
                return resp.status, json.loads(text) if resp.content_type == "application/fhir+json" else text
        send.bridge = bridge
        yield send
    await runner.cleanup()


async def test_a_batch_is_answered_entry_by_entry(post):
    push, unknown = sample("medication-administration-push.json"), sample("medication-administration-unknown-drug.json")
    status, body = await post(bundle("batch", push, unknown, no_method(push)))
    assert status == 200 and (body["resourceType"], body["type"]) == ("Bundle", "batch-response")
    assert [e["response"]["status"] for e in body["entry"]] == ["200 OK", "422 Unprocessable Entity",
                                                                "422 Unprocessable Entity"]
    assert "outcome" not in body["entry"][0]["response"]
    drug, method = (e["response"]["outcome"] for e in body["entry"][1:])
    assert drug["resourceType"] == "OperationOutcome" and "drug-class table" in drug["issue"][0]["diagnostics"]
    assert "method cannot be told" in method["issue"][0]["diagnostics"]
    assert [e["administration_id"] for e in post.bridge.events] == ["ma-ond-8802"]  # the good entry is stored
    assert [c for c, _ in post.bridge.letters] == ["unknown_drug", "fhir_invalid"]
    assert sorted(a["code"] for a in post.bridge.alerts) == ["DRUG_CLASS_UNKNOWN", "METHOD_MISSING"]
    assert all(json.loads(raw)["resourceType"] == "MedicationAdministration" for _, raw in post.bridge.letters)


async def test_a_transaction_with_a_rejected_entry_publishes_nothing_and_lists_every_problem(post):
    push, unknown = sample("medication-administration-push.json"), sample("medication-administration-unknown-drug.json")
    status, body = await post(bundle("transaction", push, unknown, no_method(push)))
    assert status == 422 and body["resourceType"] == "OperationOutcome"
    texts = [i["diagnostics"] for i in body["issue"]]
    assert "nothing was stored" in texts[0]
    assert texts[1].startswith("entry 1 (MedicationAdministration): ") and "ma-study-8806" not in texts[1]
    assert texts[2].startswith("entry 2 (MedicationAdministration): ") and "method cannot be told" in texts[2]
    assert len(texts) == 3 and post.bridge.events == []  # the good entry is not published either
    # the refusals are still recorded and their alerts raised: they must not vanish
    assert [c for c, _ in post.bridge.letters] == ["unknown_drug", "fhir_invalid"]
    assert sorted(a["code"] for a in post.bridge.alerts) == ["DRUG_CLASS_UNKNOWN", "METHOD_MISSING"]


async def test_a_transaction_of_a_kind_not_taken_is_a_400(post):
    status, body = await post({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": sample("medication-administration-push.json")},
        {"request": {"method": "DELETE", "url": "MedicationAdministration/ma-ond-8802"}}]})
    assert status == 400 and body["issue"][1]["code"] == "not-supported" and post.bridge.events == []


async def test_an_accepted_transaction_gets_a_transaction_response(post):
    status, body = await post(sample("bundle-transaction.json"))
    assert status == 200 and body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["200 OK"] * 4
    assert [e["type"] for e in post.bridge.events] == ["administration.started", "administration.stopped",
                                                       "administration.started", "encounter.discharged"]


async def test_other_posts_keep_their_outcome_answers_and_bounds(post):
    status, body = await post(sample("medication-administration-push.json"))
    assert status == 200 and body["issue"][0]["severity"] == "information"
    many = {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": {"resourceType": "MedicationAdministration", "id": f"o{n}"}} for n in range(150)]}
    status, body = await post(many)
    assert status == 422 and len(body["issue"]) == fhir_http.MAX_ISSUES + 1
    assert body["issue"][-1]["diagnostics"] == "and 50 more issue(s) not listed"
    status, _ = await post(b"{not json")
    assert status == 400
    status, _ = await post(b"x" * (fhir_http.MAX_BODY + 1))
    assert status == 413
