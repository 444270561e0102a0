"""FHIR R4 -> contract-v1 events and charges -> ChargeItem (feeds/fhir.py): every sample, each
status, Bundles and subscription notifications, bad resources with their categories, idempotent ids."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import orjson
import pytest

from feeds import DrugClasses, charge_item, translate_fhir
from feeds.fhir import CPT, EXT_ACCESS_SITE, EXT_CPT_MODIFIER, EXT_INCOMPLETE, EXT_PURPOSE
from feeds.translation import CATEGORIES, RXNORM
from models.events import parse_event
from models.outputs import Alert, ChargeLine
from rules.alerts import SEVERITY
from tests.events import cpts, discharge, final_alerts, start, stop, run

SAMPLES = Path(__file__).parent.parent / "samples" / "fhir"
HL7 = Path(__file__).parent.parent / "samples" / "hl7"
DRUGS = DrugClasses.load()

# Every sample and, per Translation, None = accepted or the rejection category.
EXPECTED = {
    "medication-administration-in-progress.json": [None],
    "medication-administration-completed.json": [None],
    "medication-administration-push.json": [None],
    "medication-administration-stopped.json": [None],
    "medication-administration-entered-in-error.json": [None],
    "medication-administration-not-done.json": [None],
    "medication-administration-on-hold.json": [None],
    "medication-administration-contained.json": [None],
    "medication-administration-unknown-drug.json": ["unknown_drug"],
    "encounter-finished.json": [None],
    "encounter-reopened.json": [None],
    "bundle-transaction.json": [None, None, None, None],
    "subscription-notification.json": [None, None],
}


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def tr(resource) -> list:
    return translate_fhir(resource, DRUGS)


def ok(resource) -> list[dict]:
    [t] = tr(resource)
    assert t.ok, (t.category, t.error)
    return t.events


def rejected(resource) -> tuple[str, str]:
    [t] = tr(resource)
    assert not t.ok and t.events == []
    return t.category, t.error


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def ma(**changes) -> dict:
    """The completed vancomycin sample with top-level changes (None deletes a key)."""
    res = sample("medication-administration-completed.json")
    for key, value in changes.items():
        if value is None:
            res.pop(key, None)
        else:
            res[key] = value
    return res


# -- every sample ------------------------------------------------------------------------------

def test_every_sample_is_listed():
    assert sorted(p.name for p in SAMPLES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name):
    translations = tr(sample(name))
    assert [t.category for t in translations] == EXPECTED[name], [t.error for t in translations]
    for t in translations:
        assert t.message_id
        if t.ok:
            for e in t.events:
                parse_event(orjson.dumps(e))
        else:
            assert t.events == [] and t.error and t.category in CATEGORIES


# -- MedicationAdministration statuses ---------------------------------------------------------

def facts(e: dict) -> dict:
    """An event without recorded_at (meta.lastUpdated): a new version restates the same facts later."""
    return {k: v for k, v in e.items() if k != "recorded_at"}


def test_in_progress_is_a_start():
    [e] = ok(sample("medication-administration-in-progress.json"))
    assert e["event_id"].startswith("fhir:MedicationAdministration/ma-vanc-8801:start:2026-11-24T08:30:00-05:00:")
    assert {k: v for k, v in e.items() if k != "event_id"} == {
        "type": "administration.started", "encounter_id": "V6620003", "occurred_at": "2026-11-24T08:30:00-05:00",
        "administration_id": "ma-vanc-8801",
        "drug": {"name": "vancomycin", "code": "11124", "system": RXNORM, "ingredient": "vancomycin"},
        "category": "therapeutic", "route": "IV", "method": "infusion", "access_site": "PIV-L-forearm",
        "device": "pump", "order_id": "mr-vanc-8801",  # request
        "recorded_at": "2026-11-24T08:31:05-05:00", "patient_id": "Patient/pat-6620"}  # meta.lastUpdated, subject


def test_completed_is_start_and_stop_and_the_start_repeats_with_the_same_id():
    [first] = ok(sample("medication-administration-in-progress.json"))
    again, end = ok(sample("medication-administration-completed.json"))
    assert facts(again) == facts(first)  # version 2 re-states the same start: a duplicate
    assert facts(end) == {"event_id": "fhir:MedicationAdministration/ma-vanc-8801:stop:2026-11-24T10:05:00-05:00",
                          "type": "administration.stopped", "encounter_id": "V6620003",
                          "occurred_at": "2026-11-24T10:05:00-05:00", "administration_id": "ma-vanc-8801",
                          "patient_id": "Patient/pat-6620"}
    records = run([first, again, end, *ok(sample("encounter-finished.json"))])
    assert cpts(records) == ["96365", "96366"]  # 95 min: initial plus one additional hour


def test_stopped_is_start_and_stop():
    assert types(ok(sample("medication-administration-stopped.json"))) == [
        "administration.started", "administration.stopped"]


@pytest.mark.parametrize("name", ["medication-administration-entered-in-error.json",
                                  "medication-administration-not-done.json"])
def test_entered_in_error_and_not_done_void(name):
    [e] = ok(sample(name))
    assert e["type"] == "administration.voided" and e["event_id"].endswith(":void")


def test_entered_in_error_cancels_the_charge():
    events = (ok(sample("medication-administration-completed.json")) + ok(sample("encounter-finished.json"))
              + ok(sample("medication-administration-entered-in-error.json")))
    records = run(events)
    assert cpts(records) == [] and [r["action"] for r in records if r["kind"] == "charge"] == [
        "post", "post", "reverse", "reverse"]


def test_on_hold_is_a_start():
    [e] = ok(sample("medication-administration-on-hold.json"))
    assert (e["type"], e["category"], e["method"]) == ("administration.started", "hydration", "infusion")


def test_on_hold_and_in_progress_ignore_an_end():
    for status in ("on-hold", "in-progress"):
        assert types(ok(ma(status=status))) == ["administration.started"]


def test_unknown_status_is_rejected():
    category, error = rejected(ma(status="unknown"))
    assert category == "fhir_unsupported" and "status unknown" in error


def test_invalid_status_is_rejected():
    category, error = rejected(ma(status="done"))
    assert category == "fhir_invalid" and "status" in error


def test_effective_datetime_is_a_push():
    [e] = ok(sample("medication-administration-push.json"))
    assert (e["method"], e["occurred_at"]) == ("push", "2026-11-24T08:45:00-05:00")
    records = run([e, *ok(sample("encounter-finished.json"))])
    assert cpts(records) == ["96374"] and not final_alerts(records)


def test_period_of_one_instant_with_push_gives_the_start_only():
    res = ma(effectivePeriod={"start": "2026-11-24T08:30:00-05:00", "end": "2026-11-24T08:30:00-05:00"})
    res["dosage"]["method"] = {"text": "IV push"}
    assert types(ok(res)) == ["administration.started"]


def test_effective_datetime_with_infusion_method_stays_an_infusion():
    [e] = ok(ma(effectivePeriod=None, effectiveDateTime="2026-11-24T08:30:00-05:00"))
    assert e["method"] == "infusion"  # documented as infusion: the engine flags the missing stop


def test_stop_only_when_the_period_has_no_start():
    assert types(ok(ma(effectivePeriod={"end": "2026-11-24T10:05:00-05:00"}))) == ["administration.stopped"]


def test_no_effective_time_is_rejected():
    category, error = rejected(ma(effectivePeriod=None))
    assert category == "fhir_invalid" and "effective" in error


@pytest.mark.parametrize("value,words", [("2026-11-24", "no time of day"), ("2026-11-24T08:30:00", "no UTC offset"),
                                         ("2026-11-24T08:30:00+25:00", "not a FHIR dateTime"),
                                         ("yesterday", "no time of day")])
def test_bad_times(value, words):
    category, error = rejected(ma(effectivePeriod={"start": value}))
    assert category == "fhir_invalid" and words in error


def test_utc_time():
    [e, _] = ok(ma(effectivePeriod={"start": "2026-11-24T13:30:00Z", "end": "2026-11-24T15:05:00Z"}))
    assert e["occurred_at"] == "2026-11-24T13:30:00+00:00"


def test_future_time_breaks_the_contract():
    category, error = rejected(ma(effectivePeriod={"start": "2036-11-24T08:30:00-05:00"}))
    assert category == "fhir_invalid" and "future" in error


# -- encounter reference, drug, route, method, device, order -----------------------------------

@pytest.mark.parametrize("ref", [
    {"reference": "Encounter/V6620003"}, {"reference": "https://fhir.genhosp.example/r4/Encounter/V6620003"},
    {"reference": "Encounter/V6620003/_history/4"},
    {"type": "Encounter", "identifier": {"system": "https://fhir.genhosp.example/visit", "value": "V6620003"}},
])
def test_encounter_reference_forms(ref):
    [e, _] = ok(ma(context=ref))
    assert e["encounter_id"] == "V6620003"


def test_r5_encounter_element_is_accepted():
    [e, _] = ok(ma(context=None, encounter={"reference": "Encounter/V6620003"}))
    assert e["encounter_id"] == "V6620003"


def test_missing_or_wrong_encounter_reference():
    assert rejected(ma(context=None))[0] == "fhir_invalid"
    category, error = rejected(ma(context={"reference": "EpisodeOfCare/ep-1"}))
    assert category == "fhir_unsupported" and "EpisodeOfCare" in error


def test_identifier_when_there_is_no_id():
    res = ma(id=None, identifier=[{"system": "https://fhir.genhosp.example/mar", "value": "MAR-99812"}])
    [e, _] = ok(res)
    assert e["administration_id"] == "MAR-99812"
    assert rejected(ma(id=None))[0] == "fhir_invalid"


def test_contained_medication_order_and_device():
    start_, stop_ = ok(sample("medication-administration-contained.json"))
    assert start_["drug"] == {"name": "rituximab", "code": "121191", "system": RXNORM, "ingredient": "rituximab"}
    assert (start_["category"], start_["ordered_duration_minutes"], start_["device"], start_["access_site"]) == (
        "chemotherapy", 240, "pump", "PORT-1")
    records = run([start_, stop_, *ok(sample("encounter-finished.json"))])
    assert cpts(records) == ["96413", "96415", "96415", "96415"]  # 240 min: initial + 3 additional hours


def test_ndc_coding_and_codings_order():
    table = DrugClasses()
    table.by_code[("http://hl7.org/fhir/sid/ndc", "00338004904")] = "hydration"
    res = ma(medicationCodeableConcept={"coding": [
        {"system": "https://fhir.genhosp.example/CodeSystem/item", "code": "NS1000"},
        {"system": "http://hl7.org/fhir/sid/ndc", "code": "0338-0049-04", "display": "Sodium Chloride 0.9%"}]})
    [t] = translate_fhir(res, table)
    assert t.events[0]["drug"] == {"name": "Sodium Chloride 0.9%", "code": "0338-0049-04",
                                   "system": "http://hl7.org/fhir/sid/ndc"}
    assert t.events[0]["category"] == "hydration"


def test_name_only_exact_match():
    [e, _] = ok(ma(medicationCodeableConcept={"text": "Normal saline"}))
    assert e["category"] == "hydration" and e["drug"] == {"name": "Normal saline", "code": None, "system": None,
                                                          "ingredient": "sodium chloride 0.9%"}
    assert rejected(ma(medicationCodeableConcept={"text": "saline-ish"}))[0] == "unknown_drug"


def test_medication_reference_not_found():
    category, error = rejected(ma(medicationCodeableConcept=None, medicationReference={"reference": "Medication/x"}))
    assert category == "fhir_invalid" and "include the Medication" in error
    [e, _] = ok(ma(medicationCodeableConcept=None, medicationReference={"reference": "Medication/x",
                                                                         "display": "ceftriaxone"}))
    assert e["category"] == "therapeutic"
    assert rejected(ma(medicationCodeableConcept=None))[0] == "fhir_invalid"


def test_unknown_drug_is_rejected_with_a_hard_alert():
    [t] = tr(sample("medication-administration-unknown-drug.json"))
    assert (t.category, t.events, t.message_id) == ("unknown_drug", [], "MedicationAdministration/ma-study-8806")
    assert "drug-class table" in t.error
    [alert] = t.alerts
    assert Alert.model_validate(alert).model_dump(exclude_unset=True) == alert
    assert (alert["code"], alert["severity"], alert["state"], alert["administration_id"]) == (
        "DRUG_CLASS_UNKNOWN", "hard", "raised", "ma-study-8806")
    assert tr(sample("medication-administration-unknown-drug.json"))[0].alerts == [alert]


@pytest.mark.parametrize("route,expected", [
    ({"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]}, "IV"),
    ({"coding": [{"system": "http://snomed.info/sct", "code": "58100008"}]}, "IA"),
    ({"coding": [{"system": "http://snomed.info/sct", "code": "34206005"}]}, "SC"),
    ({"coding": [{"system": "http://snomed.info/sct", "code": "78421000"}]}, "IM"),
    ({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0162", "code": "IV"}]}, "IV"),
    ({"text": "Subcutaneous"}, "SC"),
])
def test_routes(route, expected):
    res = ma()
    res["dosage"] = {"route": route}
    [e, *_] = ok(res)
    assert e["route"] == expected
    assert e["method"] == ("infusion" if expected in ("IV", "IA") else "injection")


def test_unsupported_and_missing_route():
    res = ma()
    res["dosage"] = {"route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006",
                                           "display": "Oral route"}]}}
    category, error = rejected(res)
    assert category == "fhir_unsupported" and "26643006 (oral)" in error and "Oral route" not in error  # no free text
    res["dosage"] = {}
    assert rejected(res)[0] == "fhir_invalid"


@pytest.mark.parametrize("method,expected", [
    ({"text": "IV push"}, "push"), ({"text": "Bolus"}, "push"), ({"coding": [{"display": "Infuse"}]}, "infusion"),
    ({"text": "IV piggyback"}, "infusion"), ({"coding": [{"code": "IVP"}]}, "push"),
    ({"text": "Inject"}, "push"),  # an IV injection is a push
])
def test_methods(method, expected):
    res = ma()
    res["dosage"]["method"] = method
    [e, *_] = ok(res)
    assert e["method"] == expected


def test_a_method_naming_no_method_is_no_evidence():
    res = ma()
    res["dosage"]["method"] = {"text": "PICC line"}  # the line, not the method: the period decides
    assert ok(res)[0]["method"] == "infusion"
    res = ma(effectivePeriod=None, effectiveDateTime="2026-11-24T08:30:00-05:00")
    res["dosage"]["method"] = {"text": "wiggle"}
    res["dosage"].pop("rateQuantity", None)
    category, error = rejected(res)
    assert category == "fhir_invalid" and "wiggle" not in error and "method cannot be told" in error
    assert "dosage.method names no method we know" in error


def test_extensions():
    res = ma(extension=[{"url": EXT_ACCESS_SITE, "valueString": "PIV-2"},
                        {"url": "urn:infusion-validator:fhir:separate-access-reason",
                         "valueString": "incompatible with vancomycin"},
                        {"url": "urn:infusion-validator:fhir:container-id", "valueString": "BAG-771"},
                        {"url": EXT_PURPOSE, "valueCode": "carrier"},
                        {"url": "urn:infusion-validator:fhir:primary-reason", "valueBoolean": True},
                        {"url": "http://example.org/other", "valueString": "ignored"}])
    [e, _] = ok(res)
    assert (e["access_site"], e["separate_access_reason"], e["container_id"], e["purpose"], e["primary_reason"]) == (
        "PIV-2", "incompatible with vancomycin", "BAG-771", "carrier", True)
    assert rejected(ma(extension=[{"url": EXT_PURPOSE, "valueCode": "fun"}]))[0] == "fhir_invalid"


def test_order_duration_from_a_bundled_medication_request():
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "https://fhir.genhosp.example/r4/MedicationRequest/mr-vanc-8801",
         "resource": {"resourceType": "MedicationRequest", "id": "mr-vanc-8801", "status": "active",
                      "intent": "order", "dosageInstruction": [
                          {"timing": {"repeat": {"duration": 90, "durationUnit": "min"}}}]}},
        {"resource": sample("medication-administration-in-progress.json")}]}
    request, admin = tr(bundle)
    assert request.ok and request.events == []
    assert admin.events[0]["ordered_duration_minutes"] == 90


# -- Encounter ---------------------------------------------------------------------------------

def test_finished_encounter_is_a_discharge():
    [e] = ok(sample("encounter-finished.json"))
    assert e["event_id"].startswith("fhir:Encounter/V6620003:discharged:2026-11-24T15:00:00-05:00:")
    assert {k: v for k, v in e.items() if k != "event_id"} == {
        "type": "encounter.discharged", "encounter_id": "V6620003", "occurred_at": "2026-11-24T15:00:00-05:00",
        "patient_class": "outpatient", "billing": "facility", "recorded_at": "2026-11-24T15:02:00-05:00",
        "patient_id": "Patient/pat-6620"}


@pytest.mark.parametrize("code,expected", [("AMB", "outpatient"), ("EMER", "emergency"), ("IMP", "inpatient"),
                                           ("ACUTE", "inpatient"), ("OBSENC", "observation")])
def test_encounter_classes(code, expected):
    enc = sample("encounter-finished.json")
    enc["class"] = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code}
    assert ok(enc)[0]["patient_class"] == expected
    enc["class"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code}]}]
    assert ok(enc)[0]["patient_class"] == expected  # R5 shape


def test_unmapped_or_missing_class():
    enc = sample("encounter-finished.json")
    enc["class"] = {"code": "HH"}
    assert rejected(enc)[0] == "fhir_unsupported"
    del enc["class"]
    assert rejected(enc)[0] == "fhir_invalid"


def test_finished_without_end_is_rejected():
    enc = sample("encounter-finished.json")
    enc["period"] = {"start": "2026-11-24T08:05:00-05:00"}
    category, error = rejected(enc)
    assert category == "fhir_invalid" and "period.end" in error


def test_reopened_encounter_cancels_the_discharge():
    [e] = ok(sample("encounter-reopened.json"))
    assert e == {"event_id": "fhir:Encounter/V6620003:discharge_cancelled:2026-11-24T15:40:00-05:00",
                 "type": "encounter.discharge_cancelled", "encounter_id": "V6620003",
                 "occurred_at": "2026-11-24T15:40:00-05:00", "recorded_at": "2026-11-24T15:40:00-05:00",
                 "patient_id": "Patient/pat-6620"}


@pytest.mark.parametrize("status", ["planned", "in-progress", "cancelled", "entered-in-error"])
def test_other_encounters_give_no_event(status):
    enc = sample("encounter-finished.json")
    enc["status"] = status
    assert ok(enc) == []


# -- Bundles -----------------------------------------------------------------------------------

def test_transaction_bundle():
    translations = tr(sample("bundle-transaction.json"))
    assert [t.message_id for t in translations] == [
        "Medication", "MedicationAdministration/ma-cef-8810", "MedicationAdministration/ma-ond-8811",
        "Encounter/V6620003"]
    events = [e for t in translations for e in t.events]
    assert events[0]["drug"] == {"name": "ceftriaxone 1 g", "code": "2193", "system": RXNORM,
                                 "ingredient": "ceftriaxone"}  # urn:uuid resolved
    assert types(events) == ["administration.started", "administration.stopped", "administration.started",
                             "encounter.discharged"]
    assert cpts(run(events)) == ["96365", "96375"]


def test_subscription_notification_r4_backport():
    status, admin = tr(sample("subscription-notification.json"))
    assert status.ok and status.events == [] and status.message_id == "Parameters"
    assert admin.events == ok(sample("medication-administration-completed.json"))


def test_subscription_notification_r4b_and_heartbeat():
    note = {"resourceType": "Bundle", "type": "subscription-notification", "entry": [
        {"resource": {"resourceType": "SubscriptionStatus", "status": "active", "type": "event-notification"}},
        {"fullUrl": "https://fhir.genhosp.example/r4/MedicationAdministration/ma-vanc-8801",
         "resource": sample("medication-administration-in-progress.json")}]}
    status, admin = tr(note)
    assert status.ok and status.events == [] and types(admin.events) == ["administration.started"]
    heartbeat = {"resourceType": "Bundle", "type": "subscription-notification", "entry": [note["entry"][0]]}
    assert [t.events for t in tr(heartbeat)] == [[]]
    assert tr({"resourceType": "Bundle", "type": "batch"}) == []


def test_entries_are_judged_one_by_one():
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": sample("medication-administration-unknown-drug.json")},
        {"resource": sample("medication-administration-push.json")},
        {"request": {"method": "DELETE", "url": "MedicationAdministration/ma-ond-8802"}},
        {"fullUrl": "https://fhir.genhosp.example/r4/MedicationAdministration/ma-x"},
        {"resource": {"resourceType": "Observation", "id": "obs-1"}}]}
    results = tr(bundle)
    assert [t.category for t in results] == ["unknown_drug", None, "fhir_unsupported", "fhir_unsupported", None]
    assert "entered-in-error" in results[2].error and "full-resource" in results[3].error
    assert results[4].skipped and results[4].ok and not results[1].skipped  # read by no one: skipped, not wrong


@pytest.mark.parametrize("resource,category", [
    ([], "fhir_invalid"), ({"id": "x"}, "fhir_invalid"),
    ({"resourceType": "NotAResource", "id": "o1"}, "fhir_unsupported"),
    ({"resourceType": "Bundle", "type": "document", "entry": []}, "fhir_unsupported"),
    ({"resourceType": "Bundle", "type": "batch", "entry": {}}, "fhir_invalid"),
    ({"resourceType": "MedicationAdministration", "id": "m1", "status": 3}, "fhir_invalid"),
])
def test_rejected_resources(resource, category):
    [t] = tr(resource)
    assert (t.category, t.events) == (category, []) and t.error


# -- determinism -------------------------------------------------------------------------------

def test_translation_is_deterministic():
    for name in EXPECTED:
        assert tr(sample(name)) == tr(sample(name))


def test_a_new_version_with_the_same_facts_gives_the_same_ids():
    v2 = sample("medication-administration-completed.json")
    v3 = copy.deepcopy(v2)
    v3["meta"] = {"versionId": "7", "lastUpdated": "2026-11-24T11:00:00-05:00"}
    v3["note"] = [{"text": "patient tolerated well"}]
    assert [facts(e) for e in ok(v3)] == [facts(e) for e in ok(v2)]
    v3["effectivePeriod"]["end"] = "2026-11-24T10:15:00-05:00"
    corrected = ok(v3)
    assert facts(corrected[0]) == facts(ok(v2)[0]) and corrected[1]["event_id"] != ok(v2)[1]["event_id"]


# -- ChargeItem --------------------------------------------------------------------------------

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def charges_of(records: list[dict]) -> list[dict]:
    return [r for r in records if r["kind"] == "charge"]


def test_charge_item_for_a_post():
    events = ok(sample("medication-administration-completed.json")) + ok(sample("encounter-finished.json"))
    posted = charges_of(run(events))
    item = charge_item(next(c for c in posted if c["cpt"] == "96365"))
    charge = next(c for c in posted if c["cpt"] == "96365")
    assert ChargeLine.model_validate(charge)
    assert item["resourceType"] == "ChargeItem" and _FHIR_ID.match(item["id"])
    assert item["id"] == charge["charge_id"] and item["status"] == "billable"
    assert item["code"] == {"coding": [{"system": CPT, "code": "96365"}]}
    assert item["quantity"] == {"value": 1}
    assert item["occurrenceDateTime"] == "2026-11-24"
    assert item["context"] == {"reference": "Encounter/V6620003"}
    assert item["subject"]["type"] == "Patient" and item["subject"]["identifier"]["value"] == "V6620003"
    assert item["service"] == [{"reference": "MedicationAdministration/ma-vanc-8801"}]
    assert item["note"] == [{"text": charge["explanation"]}]
    assert {"url": EXT_INCOMPLETE, "valueBoolean": False} in item["extension"]
    json.dumps(item)


def test_charge_item_for_a_reversal_has_the_posted_id_and_entered_in_error():
    hl7 = __import__("feeds").translate_hl7
    drugs = DRUGS
    events = []
    for name in ("ras-start.hl7", "adt-a03.hl7", "ras-stop.hl7"):  # the stop documented after discharge
        events += hl7((HL7 / name).read_bytes(), drugs).events
    records = charges_of(run(events))
    reversal = next(r for r in records if r["action"] == "reverse")
    posted = next(r for r in records if r["charge_id"] == reversal["reverses"])
    item, original = charge_item(reversal), charge_item(posted)
    assert item["id"] == original["id"] == posted["charge_id"]
    assert (original["status"], item["status"]) == ("billable", "entered-in-error")
    assert {i["value"] for i in item["identifier"]} == {posted["charge_id"], reversal["charge_id"]}
    assert item["code"] == original["code"] and item["quantity"] == original["quantity"]
    assert item["service"] == [{"reference": "MedicationAdministration/RX5101-1-11124"}]


def test_charge_item_modifiers_and_logical_references():
    events = [start("A:1", "10:00", access_site="PIV-L", enc="E 1"), stop("A:1", "11:30", enc="E 1"),
              start("B", "10:00", drug="vancomycin", access_site="PIV-R",
                    separate_access_reason="incompatible", enc="E 1"),
              stop("B", "11:00", enc="E 1"), discharge("12:00", enc="E 1")]
    records = charges_of(run(events))
    xu = next(r for r in records if r["modifiers"])
    item = charge_item(xu)
    assert [e for e in item["extension"] if e["url"] == EXT_CPT_MODIFIER] == [
        {"url": EXT_CPT_MODIFIER, "valueCode": "XU"}]
    other = charge_item(next(r for r in records if not r["modifiers"]))
    assert other["context"] == {"type": "Encounter",
                                "identifier": {"system": "urn:infusion-validator:encounter-id", "value": "E 1"}}
    assert other["service"] == [{"type": "MedicationAdministration",
                                 "identifier": {"system": "urn:infusion-validator:administration-id",
                                                "value": "A:1"}}]


def test_charge_item_needs_a_charge():
    with pytest.raises(ValueError):
        charge_item({"kind": "alert"})


def test_mutated_resources_never_raise_and_accepted_ones_are_valid():
    import random
    rnd = random.Random(11)
    resources = [sample(name) for name in sorted(EXPECTED)]
    junk = [None, 1, "x", [], {}, True, "2026-11-24T08:00:00", [1], ["x"], [{}]]

    def mutate(node):
        if isinstance(node, dict) and node:
            if rnd.random() < 0.2:
                key = rnd.choice(list(node))
                r = rnd.random()
                if r < 0.3:
                    del node[key]
                elif r < 0.6:
                    node[key] = rnd.choice(junk)
                else:
                    mutate(node[key])
            else:
                for value in node.values():
                    mutate(value)
        elif isinstance(node, list):
            for value in node:
                mutate(value)

    seen = set()
    for _ in range(1500):
        res = copy.deepcopy(rnd.choice(resources))
        mutate(res)
        for t in tr(res):
            seen.add(t.category)
            assert t.ok == (t.category is None) and (t.ok or t.category in CATEGORIES)
            for e in t.events:
                parse_event(orjson.dumps(e))
    assert {None, "fhir_invalid", "unknown_drug"} <= seen


# -- method from what the resource carries (issue 11) ------------------------------------------

CORPUS = Path(__file__).parent / "data" / "fhir"
SCT = "http://snomed.info/sct"
V3 = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
CERNER_INFUSE_OVER = "https://fhir-ehr.cerner.com/r4/StructureDefinition/infuse-over"
AT = "2026-11-24T08:30:00-05:00"


def corpus(name: str) -> dict:
    return json.loads((CORPUS / name).read_text())


def given(dosage: dict, extension: list | None = None, **effective) -> dict:
    """The vancomycin sample given with this dosage, at one instant unless a period is passed."""
    res = ma(**{"effectivePeriod": None, **(effective or {"effectiveDateTime": AT})})
    res["dosage"] = dosage
    if extension is not None:
        res["extension"] = extension
    return res


IV = {"coding": [{"system": SCT, "code": "47625008", "display": "Intravenous route"}]}
RATE = {"value": 125, "unit": "mL/h", "system": "http://unitsofmeasure.org", "code": "mL/h"}


def piggyback() -> dict:
    """An IV piggyback of normal saline as Oracle Health (Cerner) sends it: an instant, no method,
    an infuse-over extension of 120 min and a rate of 125 mL/h (written for the project)."""
    res = given({"route": IV, "rateQuantity": RATE},
                [{"url": CERNER_INFUSE_OVER, "valueQuantity": {"value": 120, "unit": "min",
                                                               "system": "http://unitsofmeasure.org", "code": "min"}}])
    res["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": "313002",
                                                    "display": "sodium chloride 0.9% injectable solution"}]}
    return res


def test_a_piggyback_given_as_an_instant_is_an_infusion_with_its_infuse_over_time_and_no_invented_stop():
    [e] = ok(piggyback())
    assert (e["type"], e["method"], e["category"], e["occurred_at"], e["ordered_duration_minutes"]) == (
        "administration.started", "infusion", "hydration", AT, 120)
    records = run([e, *ok(sample("encounter-finished.json"))])
    # no stop was documented: hydration is not coded and the chart is flagged, not billed as a silent
    # push; the infuse-over time made it overdue at 08:30 + 120 + 30 min, before the discharge at 15:00
    assert cpts(records) == [] and final_alerts(records) == {("STOP_TIME_MISSING", "ma-vanc-8801"): "raised",
                                                             ("STOP_TIME_OVERDUE", "ma-vanc-8801"): "raised"}


@pytest.mark.parametrize("dosage,extension,expected", [
    ({"route": IV, "method": {"coding": [{"system": SCT, "code": "420620005"}]}}, None, "push"),
    ({"route": IV, "method": {"text": "IV push"}, "rateQuantity": RATE}, None, "push"),  # the method wins
    ({"route": IV, "method": {"coding": [{"system": SCT, "code": "422145002", "display": "Inject"}]}}, None, "push"),
    ({"route": IV, "rateRatio": {"numerator": {"value": 100, "code": "mL"}, "denominator": {"value": 1, "code": "h"}}},
     None, "infusion"),
    ({"route": IV, "rateQuantity": RATE}, None, "infusion"),
    ({"route": IV}, [{"url": "https://ehr.example/StructureDefinition/infuseOverTime",
                      "valueDuration": {"value": 30, "code": "min"}}], "infusion"),
    ({"route": IV, "extension": [{"url": "https://ehr.example/fhir/duration",
                                  "valueQuantity": {"value": 2, "unit": "hours"}}]}, None, "infusion"),
    ({"route": {"coding": [{"system": V3, "code": "IVPUSH"}]}}, None, "push"),
    ({"route": {"coding": [{"system": V3, "code": "IVCI"}]}}, None, "infusion"),
    ({"route": IV, "dose": {"value": 250, "unit": "mL", "code": "mL"}}, None, "infusion"),
    ({"route": {"text": "Subcutaneous"}}, None, "injection"),
    ({"route": {"coding": [{"system": V3, "code": "SQINFUS"}]}}, None, "infusion"),
    ({"route": {"coding": [{"system": SCT, "code": "78421000"}]}, "rateQuantity": RATE}, None, "infusion"),
])
def test_the_method_of_an_instant_from_what_the_resource_carries(dosage, extension, expected):
    [e] = ok(given(dosage, extension))
    assert e["method"] == expected


def test_infuse_over_minutes_become_the_ordered_duration():
    [e] = ok(given({"route": IV, "extension": [{"url": "https://ehr.example/fhir/duration",
                                                "valueQuantity": {"value": 2, "unit": "hours"}}]}))
    assert e["ordered_duration_minutes"] == 120


@pytest.mark.parametrize("effective,dosage,expected", [
    ({"effectivePeriod": {"start": AT, "end": "2026-11-24T09:40:00-05:00"}}, {"route": IV}, ["infusion", "stop"]),
    ({"effectivePeriod": {"start": AT, "end": "2026-11-24T08:33:00-05:00"}}, {"route": IV, "method": {"text": "push"}},
     ["push", "stop"]),
    ({"effectivePeriod": {"start": AT, "end": "2026-11-24T09:40:00-05:00"}},
     {"route": {"coding": [{"system": SCT, "code": "263887005", "display": "Subcutaneous (qualifier value)"}]}},
     ["injection", "stop"]),  # an SC period is how injections are charted too
])
def test_the_method_of_a_period(effective, dosage, expected):
    events = ok(given(dosage, **effective))
    assert [events[0]["method"], *("stop" for e in events[1:])] == expected


@pytest.mark.parametrize("effective,dosage", [
    ({"effectiveDateTime": AT}, {"route": IV}),
    ({"effectiveDateTime": AT}, {"route": IV, "dose": {"value": 10, "unit": "mL"}}),
    ({"effectivePeriod": {"start": AT, "end": AT}}, {"route": {"coding": [{"system": V3, "code": "IA"}]}}),
])
def test_a_method_that_cannot_be_told_is_rejected_with_a_method_missing_alert(effective, dosage):
    [t] = tr(given(dosage, **effective))
    assert (t.category, t.events, t.ack) == ("fhir_invalid", [], "AE")
    assert "method cannot be told" in t.error and "Document dosage.method" in t.error
    [alert] = t.alerts
    assert Alert.model_validate(alert).model_dump(exclude_unset=True) == alert
    assert (alert["code"], alert["severity"], alert["administration_id"], alert["encounter_id"]) == (
        "METHOD_MISSING", "hard", "ma-vanc-8801", "V6620003")
    assert SEVERITY["METHOD_MISSING"] == "hard" and "Test Patient" not in alert["message"] + t.error
    assert tr(given(dosage, **effective))[0].alerts == [alert]  # the same alert id every time


@pytest.mark.parametrize("route,expected", [
    ({"coding": [{"system": SCT, "code": "263887005", "display": "Subcutaneous (qualifier value)"}]}, "SC"),
    ({"coding": [{"system": SCT, "code": "255560000", "display": "Intravenous"}]}, "IV"),
    ({"coding": [{"system": SCT, "code": "255559005", "display": "Intramuscular"}]}, "IM"),
    ({"coding": [{"system": V3, "code": "IVINJBOL"}]}, "IV"),
    ({"coding": [{"system": V3, "code": "IAINJ"}]}, "IA"),
    ({"coding": [{"system": V3, "code": "SQ"}]}, "SC"),
    ({"coding": [{"system": V3, "code": "IM"}]}, "IM"),
    ({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0162", "code": "SC"}]}, "SC"),
    ({"coding": [{"system": "urn:example:local", "display": "subcutaneous route (qualifier value)"}]}, "SC"),
    ({"text": "INTRAMUSCULAR"}, "IM"), ({"text": "Intra-arterial route"}, "IA"),
])
def test_more_route_codes(route, expected):
    [e, *_] = ok(ma(dosage={"route": route, "method": {"text": "infusion"}}))
    assert e["route"] == expected


def test_the_corpus_subcutaneous_code_is_a_route_and_oral_is_unsupported_alone():
    category, error = rejected(corpus("fhir-r4spec-medicationadministration0308.json"))
    assert "dosage.route" not in error  # 263887005 Subcutaneous is understood; context and drug are not
    [t] = tr(corpus("fhir-r4spec-medicationadministration0310.json"))  # oral, and no context either
    assert (t.category, t.ack, len(t.problems)) == ("fhir_unsupported", "AR", 1) and "(oral)" in t.error


# -- medication by ingredients -----------------------------------------------------------------

def mixture(*ingredients: tuple[str, str], code: dict | None = None) -> dict:
    med = {"resourceType": "Medication", "id": "mix", "ingredient": [
        {"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": c, "display": d}]}} for c, d in ingredients]}
    if code is not None:
        med["code"] = code
    return ma(medicationCodeableConcept=None, medicationReference={"reference": "#mix"}, contained=[med])


def test_corpus_medication_known_by_its_ingredients():
    start_, stop_ = ok(corpus("fhir-r4spec-medicationadministration0302.json"))
    assert start_["drug"] == {"name": "Potassium Chloride + Sodium Chloride 0.9% injectable solution",
                              "code": "204520", "system": RXNORM, "ingredient": "potassium chloride"}
    assert (start_["category"], start_["method"], stop_["type"]) == ("therapeutic", "infusion",
                                                                     "administration.stopped")


def test_a_mixture_takes_its_highest_ranking_ingredient():
    [e, _] = ok(mixture(("313002", "normal saline"), ("2555", "cisplatin"), ("26225", "ondansetron")))
    assert e["category"] == "chemotherapy" and e["drug"]["code"] == "2555"
    assert e["drug"]["name"] == "normal saline + cisplatin + ondansetron"
    [e, _] = ok(mixture(("313002", "normal saline"), code={"coding": [{"system": RXNORM, "code": "999999"}]}))
    assert e["category"] == "hydration"  # an unknown product code, but every ingredient is known


def test_a_mixture_with_an_unknown_ingredient_is_never_ranked_on_a_guess():
    [t] = tr(mixture(("313002", "normal saline"), ("8888881", "drug X"), ("8888882", "drug Y")))
    assert t.category == "unknown_drug" and len(t.problems) == 2 and "RxNorm 8888881" in t.error and "RxNorm 8888882" in t.error
    assert "drug X" not in t.error  # the name is free text: the code and the alert say which drug
    assert [a["code"] for a in t.alerts] == ["DRUG_CLASS_UNKNOWN", "DRUG_CLASS_UNKNOWN"]
    [t] = tr(mixture(("8888881", "drug X"), code={"coding": [{"system": RXNORM, "code": "999999",
                                                               "display": "product Z"}]}))
    assert len(t.problems) == 1 and "Medication.code (RxNorm 999999)" in t.error  # the product's code is the one to add


def test_a_medication_with_neither_code_nor_ingredients_says_so():
    res = ma(medicationCodeableConcept=None, medicationReference={"reference": "#m"},
             contained=[{"resourceType": "Medication", "id": "m", "form": {"text": "injection"}}])
    category, error = rejected(res)
    assert category == "fhir_invalid" and "neither code nor ingredient" in error and "medication[x]" not in error


def test_a_bundled_medication_known_by_ingredients():
    med = {"resourceType": "Medication", "id": "mix-1", "ingredient": [
        {"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "11124", "display": "vancomycin"}]}}]}
    admin = ma(medicationCodeableConcept=None, medicationReference={"reference": "Medication/mix-1"})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": med}, {"resource": admin}]}
    assert tr(bundle)[1].events[0]["category"] == "therapeutic"


# -- every problem at once ---------------------------------------------------------------------

def test_a_resource_with_three_faults_gets_three_problems():
    res = ma(context=None, medicationCodeableConcept={"text": "no such drug"},
             extension=[{"url": EXT_PURPOSE, "valueCode": "fun"}])
    [t] = tr(res)
    assert len(t.problems) == 3, t.problems
    assert any("context" in p for p in t.problems) and any("named by text only" in p for p in t.problems)
    assert any("purpose" in p for p in t.problems)


def test_times_and_method_problems_are_reported_together():
    [t] = tr(given({"route": IV}, effectiveDateTime="2026-11-24T08:30:00"))
    assert len(t.problems) == 2 and "no UTC offset" in t.problems[0] and "method cannot be told" in t.problems[1]


def test_encounter_location_becomes_the_events_location():
    """Contract v1.1: the current Encounter.location (active, not ended), by physical type."""
    def place(display, code=None, status="active", end=None):
        loc = {"location": {"display": display}, "status": status}
        if code:
            loc["physicalType"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type",
                                               "code": code}]}
        if end:
            loc["period"] = {"start": "2026-11-24T08:00:00-05:00", "end": end}
        return loc

    enc = {"resourceType": "Encounter", "id": "V7", "status": "finished", "class": {"code": "AMB"},
           "period": {"start": "2026-11-24T08:00:00-05:00", "end": "2026-11-24T12:00:00-05:00"},
           "location": [place("ED", "wa", end="2026-11-24T09:00:00-05:00"), place("4 West", "wa"),
                        place("412", "ro"), place("B", "bd"), place("ICU", "wa", status="planned")]}
    [e] = ok(enc)
    assert e["location"] == {"unit": "4 West", "room": "412", "bed": "B"}
    enc["location"] = [place("Infusion center")]
    assert ok(enc)[0]["location"] == {"unit": "Infusion center", "room": None, "bed": None}
    enc["location"] = []
    assert "location" not in ok(enc)[0]
