"""Real message flows lose no charge to details that do not change their meaning (issue 22).

Each defect on the real public message it was found with (tests/data, sources and licenses in
tests/data/SOURCES.md), or, where none may be redistributed, on a message shaped exactly like the
real case (said so in the test). The stream and `code` agree on the events these make
(test_the_stream_and_code_agree_on_the_real_flows).
"""
from __future__ import annotations

import copy
import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from cli.batch import run_batch
from cli.translate import fhir_files
from feeds import DrugClasses, translate_fhir, translate_hl7
from feeds.drugs import Waiting
from feeds.fhir_link import Encounters
from feeds.formulary import merge
from models.events import parse_event
from rules.book import Book
from tests.events import net_charges, standing_alerts

DATA = Path(__file__).parent / "data"
SAMPLES = Path(__file__).parent.parent / "samples"
LONDON = ZoneInfo("Europe/London")  # UCLH's zone: its Epic test messages carry no UTC offsets
DRUGS = DrugClasses.load()
CLI = [sys.executable, "-m", "cli.main"]


def hl7(name: str) -> bytes:
    return (DATA / "hl7" / name).read_bytes()


def fhir(name: str) -> dict:
    return json.loads((DATA / "fhir" / name).read_text())


def events_of(raw: bytes, tz=LONDON, **kw) -> list[dict]:
    t = translate_hl7(raw, DRUGS, tz, **kw)
    assert t.ok, t.error
    return t.events


def coded(events: list[dict]) -> tuple[Book, list[dict]]:
    book, out = Book(), []
    for e in events:
        out += book.handle(parse_event(orjson.dumps(e)))
    return book, out


# -- 1. a re-discharge ---------------------------------------------------------------------------

UCLH_FLOW = ("hl7-uclh-emap-CancelDischarge-03-A03.txt", "hl7-uclh-emap-CancelDischarge-04-A13.txt",
             "hl7-uclh-emap-CancelDischarge-05-A03.txt")
UCLH_VISIT = "123412341234"


def uclh_administration() -> dict:
    """Written for this test: an infusion of the UCLH test visit, so that its discharge has something
    to code (the Epic test set has ADT only)."""
    return {"event_id": "uclh-test-vanc", "type": "administration.started", "encounter_id": UCLH_VISIT,
            "occurred_at": "2013-02-11T11:30:00+00:00", "administration_id": "UCLH-RX1-1",
            "drug": {"name": "vancomycin", "code": "11124", "system": "http://www.nlm.nih.gov/research/umls/rxnorm"},
            "category": "therapeutic", "route": "IV", "method": "infusion"}


def uclh_events() -> list[dict]:
    events = [uclh_administration()]
    for name in UCLH_FLOW:
        events += events_of(hl7(name))
    stop = {"event_id": "uclh-test-vanc-stop", "type": "administration.stopped", "encounter_id": UCLH_VISIT,
            "occurred_at": "2013-02-11T12:20:00+00:00", "administration_id": "UCLH-RX1-1"}
    return events[:1] + [stop] + events[1:]


def test_a_re_discharge_recorded_after_the_cancel_closes_the_visit():
    """Epic: A03 (discharge 12:30, keyed 13:30), A13 (keyed 13:45), A03 (discharge 13:00, keyed 14:00).
    By clinical time the cancel (13:45) was newest and the visit stayed open forever; by the time each
    was recorded (EVN-2, contract v1.2), the re-discharge stands."""
    events = uclh_events()
    assert [(e["type"], e["occurred_at"], e["recorded_at"]) for e in events[2:]] == [
        ("encounter.discharged", "2013-02-11T12:30:52+00:00", "2013-02-11T13:30:52+00:00"),
        ("encounter.discharge_cancelled", "2013-02-11T13:45:52+00:00", "2013-02-11T13:45:52+00:00"),
        ("encounter.discharged", "2013-02-11T13:00:52+00:00", "2013-02-11T14:00:52+00:00")]
    book, out = coded(events)
    assert book.states[UCLH_VISIT].discharged
    assert [r["code"] for r in out if r["kind"] == "alert"] == ["INPATIENT_BUNDLED"]  # PV1-2 I: coded, bundled
    before, _ = coded([{k: v for k, v in e.items() if k != "recorded_at"} for e in events])  # a v1.1 producer
    assert not before.states[UCLH_VISIT].discharged  # what the product did before v1.2


def test_code_summary_counts_the_uclh_visit_closed(tmp_path):
    path = tmp_path / "uclh.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in uclh_events()))
    done = subprocess.run([*CLI, "code", str(path), "--summary"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "0 encounters still open" in done.stderr, done.stderr


# -- 2. character-set labels -----------------------------------------------------------------------

def _relabel(raw: bytes, msh18: str) -> bytes:
    """The same message with MSH-18 set, as the senders of the real cases label it."""
    first, rest = raw.split(b"\n", 1)
    fields = first.split(b"|")
    fields += [b""] * (18 - len(fields))
    fields[17] = msh18.encode()
    return b"|".join(fields) + b"\n" + rest


@pytest.mark.parametrize("label", ["UNICODE", "CAN", "UNICODE UTF-8", "8859/1"])
def test_a_label_on_7_bit_bytes_never_refuses_the_discharge(label):
    """Shaped like the real cases (their files may not be redistributed): `UNICODE`, which a national
    integration spec requires in v2.3-2.4, and `CAN`, a country code one field late that a large EPR
    sends on every ADT, on the UCLH A03 (7-bit)."""
    t = translate_hl7(_relabel(hl7(UCLH_FLOW[0]), label), DRUGS, LONDON)
    assert t.ok and [e["type"] for e in t.events] == ["encounter.discharged"]
    assert [n.kind for n in t.notes] == ([] if label in ("UNICODE UTF-8", "8859/1") else ["charset_7bit"])


def test_a_japanese_label_on_utf_8_bytes_is_read_as_utf_8_and_noted():
    """The SS-MIX2 RAS^O17 (ISO 2022-JP, `~ISO IR87`) as a gateway re-encodes it in UTF-8, label kept."""
    raw = hl7("hl7-ssmix2-OMP-12-ras-o17.hl7")
    as_utf8 = raw.decode("iso2022_jp").encode("utf-8")
    original, recoded = translate_hl7(raw, DRUGS, ZoneInfo("Asia/Tokyo")), translate_hl7(as_utf8, DRUGS, ZoneInfo("Asia/Tokyo"))
    assert recoded.problems == original.problems  # read alike: the same problems (no visit number), no AR
    assert recoded.ack == "AE" and [n.kind for n in recoded.notes] == ["charset_utf8"] and not original.notes


# -- 3. resources not read -------------------------------------------------------------------------

SYNTHEA = "fhir-inferno-ccrr-bundle-patient-86.json"


def test_resources_not_read_are_skipped_and_never_sink_their_neighbours():
    """A Synthea-derived US Core transaction Bundle (267 entries): 181 resources of types not read
    (Observation, Condition, Procedure, Immunization, ...) are skipped, not refused. What is still
    refused is what the product reads and cannot take: encounters before 2000 (a patient's history)
    and a paclitaxel administration dated without a time."""
    bundle = fhir(SYNTHEA)
    translations = translate_fhir(bundle, DRUGS)
    skipped = [t for t in translations if t.skipped]
    refused = [t for t in translations if not t.ok]
    assert len(translations) == 267 and len(skipped) == 181
    assert {t.message_id.split("/")[0] for t in refused} == {"Encounter", "MedicationAdministration"}
    assert all(t.ok for t in translations if t.message_id.split("/")[0] not in ("Encounter", "MedicationAdministration"))
    encounters = [t for t in translations if t.message_id.startswith("Encounter/")]
    assert len(encounters) == 60 and all("before 2000" in t.problems[0] for t in encounters)  # 1940-1977


def test_fhir_translate_prints_one_line_for_what_it_skipped_not_a_rejection_each(tmp_path):
    done = subprocess.run([*CLI, "fhir", "translate", str(DATA / "fhir" / SYNTHEA)], capture_output=True, timeout=60)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    kinds = [line["kind"] for line in lines]
    assert kinds.count("skipped") == 1 and sum(lines[-1]["resources"].values()) == 181
    assert kinds.count("rejection") == sum(1 for t in translate_fhir(fhir(SYNTHEA), DRUGS) if not t.ok) < 267 - 181


# -- 4. visits linked another way --------------------------------------------------------------------

def test_hl7_reads_the_visit_from_pid_18_when_pv1_19_is_empty():
    """Shaped like a MEDITECH RAS^O17 (the real one found carried patient data: not redistributed):
    the account number in PID-18, PV1-19 empty."""
    lines = (SAMPLES / "hl7" / "ras-stop.hl7").read_bytes().split(b"\r")
    out = []
    for line in lines:
        fields = line.split(b"|")
        if line.startswith(b"PID"):
            fields += [b""] * (19 - len(fields))
            fields[18] = b"A0001234^^^GENHOSP^AN"
        if line.startswith(b"PV1"):
            fields[19] = b""
        out.append(b"|".join(fields))
    t = translate_hl7(b"\r".join(out), DRUGS)
    assert t.ok and {(e["encounter_id"], e["encounter_id_field"]) for e in t.events} == {("A0001234", "PID-18")}
    only_pv1 = translate_hl7(b"\r".join(out), DRUGS, visit_fields=("PV1-19",))
    assert only_pv1.category == "hl7_missing_field" and "PV1-19 (visit number) is empty" in only_pv1.error


QICORE = {"alteplase": ("fhir-qicore-CMS996-b4219e21-encounter.json", "fhir-qicore-CMS996-b4219e21-medicationadministration.json"),
          "heparin": ("fhir-qicore-CMS108-068814f1-encounter-7c87227d.json", "fhir-qicore-CMS108-068814f1-encounter-8cb3c2e2.json",
                      "fhir-qicore-CMS108-068814f1-medicationadministration.json"),
          "bcg": ("fhir-qicore-BCG-5ee5544a-encounter.json", "fhir-qicore-BCG-5ee5544a-medicationadministration.json")}


def _translate_files(names, drugs=DRUGS) -> list:
    encounters = Encounters()
    return [t for name in names for t in translate_fhir(fhir(name), drugs, encounters)]


def test_an_administration_without_context_is_linked_to_the_visit_covering_it():
    """CMS eCQM test data (QI-Core, CC0): the MedicationAdministration has no `context`; the
    Encounter of the same patient received before covers its time, so it is that visit's."""
    *_, heparin = _translate_files(QICORE["heparin"])  # not given (not-done): a void, of the ED visit
    assert heparin.ok and [(e["type"], e["encounter_id"]) for e in heparin.events] == [
        ("administration.voided", "7c87227d-35af-4f8a-a980-1ea31adc67db")]  # the ED visit covering 07:00, not the next
    *_, alteplase = _translate_files(QICORE["alteplase"])
    assert not any("context" in p for p in alteplase.problems)  # linked; what is left is what to fix
    assert "RxNorm 1804804" in alteplase.error  # a product code (SCD): the next test's formulary adds it


def test_no_visit_covers_it_and_the_refusal_says_to_send_context():
    *_, bcg = _translate_files(QICORE["bcg"])
    assert not bcg.ok and "context" in bcg.problems[0] and "no Encounter of the subject" in bcg.problems[0]


def test_fhir_translate_links_across_the_files_of_one_run():
    out, err = io.BytesIO(), io.BytesIO()
    fhir_files([str(DATA / "fhir" / n) for n in QICORE["heparin"]], DRUGS, out, err)
    voids = [json.loads(line) for line in out.getvalue().splitlines() if b"voided" in line]
    assert [v["encounter_id"] for v in voids] == ["7c87227d-35af-4f8a-a980-1ea31adc67db"]


# -- 5. product-level drug codes -----------------------------------------------------------------------

FORMULARY = """system,code,name,category,ingredient
RXNORM,1804804,alteplase 50 MG Injection,therapeutic,8410
RXNORM,1804799,alteplase 100 MG Injection,therapeutic,8410
RXNORM,1361574,heparin sodium 20000 UNT/ML Injectable Solution,therapeutic,5224
RXNORM,1653484,"BCG, live, Tice strain 50 MG/ML",chemotherapy,
NDC,0338-0705-48,POTASSIUM CHLORIDE 20 MEQ/100 ML PREMIX,therapeutic,8591
"""  # written for the test, in the shape of a pharmacy extract; the codes are the real messages'


def test_a_formulary_import_makes_the_products_of_the_real_messages_known(tmp_path):
    site = tmp_path / "site.toml"
    report, block = merge(FORMULARY, DrugClasses.load(), "formulary.csv")
    assert len(report.added) == 5 and not report.conflicts and not report.unreadable
    site.write_text(block)
    drugs = DrugClasses.load(str(site))
    *_, alteplase = _translate_files(QICORE["alteplase"], drugs)
    assert not alteplase.ok and not any("drug" in p for p in alteplase.problems)
    assert all("dosage.route" in p or "method" in p for p in alteplase.problems)  # what only the sender can say
    assert drugs.ingredient("0338-0705-48", "NDC", None) == "8591"  # the premix bag is potassium chloride


def test_drugs_import_reports_conflicts_and_merges_the_rest(tmp_path):
    extract = tmp_path / "formulary.csv"
    extract.write_text(FORMULARY + "RXNORM,191831,infliximab,chemotherapy,\nRXNORM,,nothing,therapeutic,\n")
    site = tmp_path / "site.toml"
    done = subprocess.run([*CLI, "drugs", "import", str(extract), "--into", str(site)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "5 code(s) added" in done.stdout and "RxNorm 191831 (infliximab) is chemotherapy in the extract but " \
        "therapeutic in feeds/drug_classes.toml" in done.stdout and "line 8: no code" in done.stdout
    again = subprocess.run([*CLI, "drugs", "import", str(extract), "--into", str(site)], capture_output=True,
                           text=True, timeout=60)
    assert "0 code(s) added, 5 already known" in again.stdout
    assert DrugClasses.load(str(site)).category("1361574", "RXNORM", None) == "therapeutic"


def test_every_coding_is_tried_rxa_5_alternate_and_fhir_ingredients():
    raw = (SAMPLES / "hl7" / "ras-start.hl7").read_bytes().replace(b"11124^vancomycin^RXNORM",
                                                                   b"VANC1G^Vancomycin 1 g^99PHARM^11124^vancomycin^RXNORM")
    t = translate_hl7(raw, DRUGS)
    assert t.ok and t.events[0]["category"] == "therapeutic"
    kcl = translate_fhir(fhir("fhir-r4spec-medicationadministration0302.json"), DRUGS)[0]
    assert kcl.ok and kcl.events[0]["category"] == "therapeutic"  # known by its ingredients only


def test_an_unknown_drug_goes_to_integration_with_the_code_and_how_many_wait():
    t = translate_hl7((SAMPLES / "hl7" / "ras-unknown-drug.hl7").read_bytes(), DRUGS)
    waiting = Waiting()
    first = waiting.annotate(t.alerts)
    second = waiting.annotate(t.alerts)
    assert [a["audience"] for a in first] == ["integration"] and first[0]["drug"]["code"]
    assert first[0]["message"].endswith("1 administration of this drug held back so far by this feed.")
    assert second[0]["message"].endswith("2 administrations of this drug held back so far by this feed.")


def test_the_worklist_leaves_drug_classes_to_integration():
    from gateways.board import Board

    board = Board()
    t = translate_hl7((SAMPLES / "hl7" / "ras-unknown-drug.hl7").read_bytes(), DRUGS)
    assert board.apply(t.alerts[0], 0.0) is None and not board.items


# -- 6. every problem at once --------------------------------------------------------------------------

def test_an_encounter_without_offset_and_class_is_told_both():
    """CMS eCQM test Bundle EXM816 (CC0): period.end without an offset, and no class."""
    [enc] = [t for t in translate_fhir(fhir("fhir-ecqm-EXM816-numer-bundle.json"), DRUGS)
             if t.message_id and t.message_id.startswith("Encounter")]
    assert len(enc.problems) == 2 and "UTC offset" in enc.problems[0] and "Encounter.class" in enc.problems[1]


def test_a_numeric_code_is_read_as_its_text_and_a_mistyped_element_is_one_problem_of_many():
    """Shaped like the real case: a coding.code sent as a JSON number beside five more problems."""
    ma = json.loads((SAMPLES / "fhir" / "medication-administration-push.json").read_text())
    ma["medicationCodeableConcept"]["coding"][0]["code"] = int(ma["medicationCodeableConcept"]["coding"][0]["code"])
    [t] = translate_fhir(ma, DRUGS)
    assert t.ok, t.error  # 26225 means "26225"
    broken = copy.deepcopy(ma)
    broken["dosage"] = "IV push"  # a string where an object is expected
    broken["effectiveDateTime"] = "2026-11-24T08:30:00"  # no offset
    del broken["context"]
    broken["subject"] = {"reference": "Patient/nobody-here"}
    broken["extension"] = [{"url": "urn:infusion-validator:fhir:purpose", "valueCode": "bolus"}]
    [t] = translate_fhir(broken, DRUGS)
    assert len(t.problems) >= 4, t.problems
    assert "dosage" in t.problems[0] and any("UTC offset" in p for p in t.problems)
    assert any("context" in p for p in t.problems) and any("purpose" in p for p in t.problems)


# -- 7. the patient, for billing only ---------------------------------------------------------------------

def test_the_patient_reaches_charge_records_and_nothing_else():
    events = []
    for name in sorted((SAMPLES / "hl7" / "scenario").glob("*.hl7")):
        events += translate_hl7(name.read_bytes(), DRUGS).events
    _, out = coded(events)
    charges = [r for r in out if r["kind"] == "charge"]
    assert charges and {r["patient_id"] for r in charges} == {"MRN7730021^^^GENHOSP"}
    assert not any("MRN7730021" in json.dumps(r) for r in out if r["kind"] != "charge")


# -- the stream agrees ------------------------------------------------------------------------------------

def real_flow_events() -> list[dict]:
    events = uclh_events()
    for name in sorted((SAMPLES / "hl7" / "scenario").glob("*.hl7")):
        events += translate_hl7(name.read_bytes(), DRUGS).events
    for t in _translate_files(QICORE["heparin"]):
        events += t.events
    return events


async def test_the_stream_and_code_agree_on_the_real_flows(broker):
    from tests.stream_harness import Worker, unique_settings

    lines = [orjson.dumps(e) for e in real_flow_events()]
    out = io.BytesIO()
    run_batch(lines, out)
    expected = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert net_charges(expected) and any(r.get("code") == "INPATIENT_BUNDLED" for r in expected)
    settings = unique_settings(broker.bootstrap)
    day_after = dt.datetime(2026, 11, 25, 12, tzinfo=dt.timezone.utc).timestamp()
    async with Worker(settings, clock=lambda: day_after) as w:
        await w.send(lines)
        got = await w.collect(lambda r: net_charges(r) == net_charges(expected)
                              and standing_alerts(r) == standing_alerts(expected))
    assert net_charges(got) == net_charges(expected)
    assert {r["patient_id"] for r in got if r["kind"] == "charge"} == {"MRN7730021^^^GENHOSP"}
