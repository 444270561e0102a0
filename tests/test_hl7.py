"""HL7 v2 -> contract-v1 events (feeds/hl7v2.py): every sample, each status and action code, bad
messages with their categories, idempotent event ids, and the scenario equal to its JSON Lines."""
from __future__ import annotations

import io
import json
from pathlib import Path

import orjson
import pytest

from feeds import DrugClasses, DrugClassError, translate_hl7
from feeds.translation import CATEGORIES, RXNORM
from models.events import parse_event
from models.outputs import Alert
from rules.book import Book
from cli.batch import run_batch
from tests.events import cpts, final_alerts, net_charges, run

# python-hl7 0.4.5 calls the deprecated Logger.warn on values it cannot unescape (its logging is muted).
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

SAMPLES = Path(__file__).parent.parent / "samples" / "hl7"
DRUGS = DrugClasses.load()
CHAIR = {"unit": "INFCTR", "room": "CHAIR04", "bed": "01"}  # PV1-3 of the samples

# Every sample file and what it must give: None = accepted, else the rejection category.
EXPECTED = {
    "ras-start.hl7": None, "ras-stop.hl7": None, "ras-update.hl7": None, "ras-delete.hl7": None,
    "ras-complete-push.hl7": None, "ras-not-administered.hl7": None, "ras-refused.hl7": None,
    "ras-multiple.hl7": None, "ras-kvo.hl7": None, "ras-unknown-drug.hl7": "unknown_drug",
    "adt-a03.hl7": None, "adt-a03-observation.hl7": None, "adt-a13.hl7": None,
    "unsupported-adt-a01.hl7": "hl7_unsupported",
    "malformed-no-msh.hl7": "hl7_parse", "malformed-line-break.hl7": "hl7_parse",
    "malformed-no-visit.hl7": "hl7_missing_field", "malformed-no-times.hl7": "hl7_missing_field",
    "malformed-no-rxa.hl7": "hl7_missing_field", "malformed-no-offset.hl7": "hl7_bad_value",
    "malformed-bad-date.hl7": "hl7_bad_value", "malformed-bad-route.hl7": "hl7_bad_value",
}


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def tr(raw, drugs: DrugClasses = DRUGS):
    return translate_hl7(raw, drugs)


def ok(raw, drugs: DrugClasses = DRUGS) -> list[dict]:
    t = tr(raw, drugs)
    assert t.ok, (t.category, t.error)
    return t.events


def valid(events: list[dict]) -> None:
    for e in events:
        parse_event(orjson.dumps(e))


def segments(name: str) -> list[str]:
    """The segments of a sample file, or of message text already edited."""
    text = name if "|" in name else sample(name).decode()
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r").split("\r")


def edit(name: str, seg: str, field: int, value: str, occurrence: int = 0) -> str:
    """The sample (or text) with one field of one segment replaced (occurrence-th segment of that name)."""
    out, seen = [], 0
    for line in segments(name):
        if line.startswith(seg + "|"):
            if seen == occurrence:
                parts = line.split("|")
                index = field - 1 if seg == "MSH" else field
                parts += [""] * (index + 1 - len(parts))
                parts[index] = value
                line = "|".join(parts)
            seen += 1
        out.append(line)
    return "\r".join(out) + "\r"


# -- every sample ------------------------------------------------------------------------------

def test_every_sample_is_listed():
    assert sorted(p.name for p in SAMPLES.glob("*.hl7")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name):
    t = tr(sample(name))
    assert t.category == EXPECTED[name], t.error
    assert t.message_id or name == "malformed-no-msh.hl7"
    if t.ok:
        assert t.events and t.error is None
        valid(t.events)
    else:
        assert t.events == [] and t.error and t.category in CATEGORIES


# -- administrations ---------------------------------------------------------------------------

# What every event of the sample visit carries beside its facts (contract v1.2): where it was read
# from, the patient for the billing interface (PID-3 with its authority) and when it was recorded.
VISIT = {"encounter_id_field": "PV1-19", "patient_id": "MRN4481207^^^GENHOSP"}


def facts(e: dict) -> dict:
    """An event without recorded_at: a re-sent message restates the same facts at another MSH-7."""
    return {k: v for k, v in e.items() if k != "recorded_at"}


def test_start_in_progress():
    [e] = ok(sample("ras-start.hl7"))
    assert e["type"] == "administration.started"
    assert e["event_id"].startswith("hl7:RX5101-1-11124:start:2026-11-24T08:30:00-05:00:")
    assert {k: v for k, v in e.items() if k != "event_id"} == {
        "type": "administration.started", "encounter_id": "V5510001", "occurred_at": "2026-11-24T08:30:00-05:00",
        "administration_id": "RX5101-1-11124",
        "drug": {"name": "vancomycin", "code": "11124", "system": RXNORM, "ingredient": "vancomycin"},  # table's
        "category": "therapeutic", "route": "IV", "method": "infusion", "access_site": "LMFA",
        "ordered_duration_minutes": 90, "device": "pump", "location": CHAIR, "order_id": "PL5101",
        "recorded_at": "2026-11-24T08:31:12-05:00", **VISIT}  # recorded_at: MSH-7 (a RAS has no EVN)


def test_stop_pairs_with_the_start_of_an_earlier_message():
    [start] = ok(sample("ras-start.hl7"))
    again, stop = ok(sample("ras-stop.hl7"))
    assert facts(again) == facts(start)  # the same start re-stated: a duplicate for the state machine
    assert again["event_id"] == start["event_id"]
    assert stop == {"event_id": "hl7:RX5101-1-11124:stop:2026-11-24T10:01:00-05:00", "type": "administration.stopped",
                    "encounter_id": "V5510001", "occurred_at": "2026-11-24T10:01:00-05:00",
                    "administration_id": "RX5101-1-11124", "location": CHAIR,
                    "recorded_at": "2026-11-24T10:02:15-05:00", **VISIT}


def test_push_documented_as_one_instant_gives_the_start_only():
    [e] = ok(sample("ras-complete-push.hl7"))
    assert (e["method"], e["device"], e["drug"]["name"]) == ("push", "syringe", "ondansetron")
    records = run([e, *ok(sample("adt-a03.hl7"))])
    assert cpts(records) == ["96374"] and not final_alerts(records)


def test_update_with_corrected_start_replaces_the_start():
    first = ok(sample("ras-stop.hl7"))
    update = ok(sample("ras-update.hl7"))
    assert update[0]["occurred_at"] == "2026-11-24T08:25:00-05:00"
    assert update[0]["event_id"] != first[0]["event_id"]
    assert facts(update[1]) == facts(first[1])  # the unchanged stop is a duplicate
    book = Book()
    run(first, book)
    run(update, book)
    records = run(first + ok(sample("adt-a03.hl7")), book)  # the old message re-sent late changes nothing
    [line] = [r for r in records if r["cpt"] == "96365"]
    assert "08:25" in line["explanation"]


def test_update_with_other_route_details_is_a_new_start():
    before = ok(sample("ras-stop.hl7"))
    changed = ok(edit("ras-stop.hl7", "RXR", 2, "RACF^Right Antecubital Fossa^HL70163").replace("|CP|A", "|CP|U"))
    assert changed[0]["access_site"] == "RACF" and changed[0]["event_id"] != before[0]["event_id"]
    assert changed[1] == before[1]


def test_no_change_action_x_restates_the_same_events():
    assert ok(sample("ras-stop.hl7").replace(b"|CP|A", b"|CP|X")) == ok(sample("ras-stop.hl7"))


def test_delete_voids_and_nothing_is_coded():
    [void] = ok(sample("ras-delete.hl7"))
    assert facts(void) == {"event_id": "hl7:RX5101-1-11124:void", "type": "administration.voided",
                           "encounter_id": "V5510001", "occurred_at": "2026-11-24T08:25:00-05:00",
                           "administration_id": "RX5101-1-11124", "location": CHAIR, **VISIT}
    records = run(ok(sample("ras-stop.hl7")) + [void] + ok(sample("adt-a03.hl7")))
    assert cpts(records) == []


@pytest.mark.parametrize("name", ["ras-not-administered.hl7", "ras-refused.hl7"])
def test_not_administered_or_refused_is_a_void(name):
    [e] = ok(sample(name))
    assert e["type"] == "administration.voided"


def test_not_administered_after_in_progress_cancels_the_dose():
    started = edit("ras-not-administered.hl7", "RXA", 20, "IP")
    events = ok(started) + ok(sample("ras-not-administered.hl7")) + ok(sample("adt-a03.hl7"))
    assert [e["type"] for e in events] == ["administration.started", "administration.voided", "encounter.discharged"]
    assert cpts(run(events)) == []


def test_void_needs_no_drug_lookup():
    unknown = edit("ras-refused.hl7", "RXA", 5, "STUDY-1^Study drug^99PHM")
    [e] = ok(unknown)
    assert e["type"] == "administration.voided"


def test_in_progress_ignores_an_end_time():
    [e] = ok(edit("ras-stop.hl7", "RXA", 20, "IP"))
    assert e["type"] == "administration.started"


def test_partial_administration_is_started_and_stopped():
    assert [e["type"] for e in ok(edit("ras-stop.hl7", "RXA", 20, "PA"))] == [
        "administration.started", "administration.stopped"]


def test_empty_status_and_action_default_to_complete_and_add():
    raw = edit(edit("ras-stop.hl7", "RXA", 20, ""), "RXA", 21, "")
    assert ok(raw) == ok(sample("ras-stop.hl7"))


def test_stop_only_when_the_start_is_missing():
    [e] = ok(edit("ras-stop.hl7", "RXA", 3, ""))
    assert e["type"] == "administration.stopped"


def test_several_order_groups_in_one_message():
    events = ok(sample("ras-multiple.hl7"))
    assert [(e["type"], e["administration_id"]) for e in events] == [
        ("administration.started", "RX5105-1-313002"), ("administration.stopped", "RX5105-1-313002"),
        ("administration.started", "RX5106-1-35827"), ("administration.stopped", "RX5106-1-35827")]
    assert events[0]["category"] == "hydration" and events[0]["ordered_duration_minutes"] == 120
    assert events[2]["method"] == "push"
    # the push is the initial service; hydration 120 min less the 2 push minutes is secondary: 2 hours
    assert cpts(run(events + ok(sample("adt-a03.hl7")))) == ["96361", "96361", "96374"]


def test_kvo_note_sets_purpose_and_nothing_is_billed():
    [start, stop] = ok(sample("ras-kvo.hl7"))
    assert start["purpose"] == "kvo"
    assert cpts(run([start, stop] + ok(sample("adt-a03.hl7")))) == []


def test_second_administration_of_an_order_has_its_own_id():
    second = edit("ras-stop.hl7", "RXA", 2, "2")
    assert {e["administration_id"] for e in ok(second)} == {"RX5101-2-11124"}


def test_placer_order_number_when_filler_is_empty():
    [e] = ok(edit("ras-start.hl7", "ORC", 3, ""))
    assert e["administration_id"] == "PL5101-1-11124"


def test_order_rxr_used_when_the_administration_has_none():
    lines = [line for line in segments("ras-start.hl7") if not line.startswith("RXR")]
    at = next(i for i, line in enumerate(lines) if line.startswith("RXA"))
    lines.insert(at, "RXR|IV^Intravenous^HL70162||IVP^IV Pump^HL70164|IVPB^IV Piggyback^HL70165")
    [e] = ok("\r".join(lines))
    assert (e["route"], e["method"], e["device"]) == ("IV", "infusion", "pump") and "access_site" not in e


@pytest.mark.parametrize("route,method,expected", [
    ("IV", "", ("IV", "infusion")), ("IA", "", ("IA", "infusion")), ("SC", "", ("SC", "injection")),
    ("SQ^Subcutaneous", "", ("SC", "injection")), ("IM", "IVP^IV Push^HL70165", ("IM", "injection")),
    ("SC", "INF", ("SC", "infusion")), ("IV", "INJ", ("IV", "push")), ("IVP", "", ("IV", "push")),
    ("IVPB", "", ("IV", "infusion")), ("^Intravenous", "", ("IV", "infusion")),
])
def test_route_and_method(route, method, expected):
    raw = edit(edit("ras-start.hl7", "RXR", 1, route), "RXR", 4, method)
    [e] = ok(raw)
    assert (e["route"], e["method"]) == expected


def test_instant_without_method_on_iv_is_a_push():
    [e] = ok(edit("ras-complete-push.hl7", "RXR", 4, ""))
    assert e["method"] == "push"


@pytest.mark.parametrize("device,expected", [("IVP^IV Pump^HL70164", "pump"), ("PCA", "pump"),
                                             ("IVS^IV Soluset^HL70164", "gravity"), ("SYR", "syringe"),
                                             ("HL^Heparin Lock^HL70164", None), ("", None)])
def test_device(device, expected):
    [e] = ok(edit("ras-start.hl7", "RXR", 3, device))
    assert e.get("device") == expected


@pytest.mark.parametrize("duration,minutes", [("30^min", 30), ("2^h&hours&UCUM", 120), ("1.5^hr", 90)])
def test_ordered_duration_from_tq1_13(duration, minutes):
    [e] = ok(edit("ras-start.hl7", "TQ1", 13, duration))
    assert e["ordered_duration_minutes"] == minutes


def test_no_tq1_no_ordered_duration():
    [e] = ok(sample("ras-complete-push.hl7"))
    assert "ordered_duration_minutes" not in e


def test_alternate_identifier_classifies_a_local_primary_code():
    raw = edit("ras-start.hl7", "RXA", 5, "VANC1G^Vancomycin 1 g^99PHM^11124^vancomycin^RXNORM")
    [e] = ok(raw)
    assert e["category"] == "therapeutic"
    assert e["drug"] == {"name": "Vancomycin 1 g", "code": "VANC1G", "system": "99PHM", "ingredient": "vancomycin"}


def test_exact_name_without_code_is_classified_other_names_are_not():
    e, _ = ok(edit("ras-kvo.hl7", "RXA", 5, "^Normal Saline"))
    assert e["category"] == "hydration" and e["drug"] == {"name": "Normal Saline", "code": None, "system": None,
                                                          "ingredient": "sodium chloride 0.9%"}
    assert tr(edit("ras-kvo.hl7", "RXA", 5, "^normal saline 1000 mL bag")).category == "unknown_drug"


def test_escaped_text_is_unescaped():
    [e, _] = ok(edit("ras-kvo.hl7", "RXA", 5, "313002^NaCl 0.9% \\T\\ KCl 20 mEq^RXNORM"))  # \T\ is an escaped &
    assert (e["drug"]["name"], e["category"]) == ("NaCl 0.9% & KCl 20 mEq", "hydration")


# -- unknown drug ------------------------------------------------------------------------------

def test_unknown_drug_is_rejected_with_a_hard_alert():
    t = tr(sample("ras-unknown-drug.hl7"))
    assert (t.ok, t.category, t.events, t.message_id) == (False, "unknown_drug", [], "MAR0001010")
    # a local code is not said back (it could be anything); the alert names it for pharmacy
    assert "drug-class table" in t.error and "RXA #1 RXA-5 (a local code)" in t.error and "STUDY-4471" not in t.error
    [alert] = t.alerts
    assert Alert.model_validate(alert).model_dump(exclude_unset=True) == alert
    assert (alert["code"], alert["severity"], alert["state"], alert["encounter_id"], alert["administration_id"]) == (
        "DRUG_CLASS_UNKNOWN", "hard", "raised", "V5510001", "RX5108-1-STUDY-4471")
    assert "add this drug code to the drug-class table" in alert["message"]
    assert "STUDY-4471" in alert["message"]
    assert tr(sample("ras-unknown-drug.hl7")).alerts == t.alerts  # deterministic alert id


def test_one_unknown_drug_rejects_the_whole_message():
    raw = edit("ras-multiple.hl7", "RXA", 5, "STUDY-9^Study drug 9^99PHM", occurrence=1)
    t = tr(raw)
    assert t.category == "unknown_drug" and t.events == [] and len(t.alerts) == 1
    assert t.alerts[0]["administration_id"] == "RX5106-1-STUDY-9"


def test_hospital_table_adds_the_drug(tmp_path):
    table = tmp_path / "drugs.toml"
    table.write_text('[[drug]]\nname = "Investigational study drug 4471"\ncategory = "chemotherapy"\n'
                     'local = ["STUDY-4471"]\n')
    [e] = ok(sample("ras-unknown-drug.hl7"), DrugClasses.load(str(table)))
    assert e["category"] == "chemotherapy"


# -- discharges --------------------------------------------------------------------------------

def test_discharge():
    [e] = ok(sample("adt-a03.hl7"))
    assert e["event_id"].startswith("hl7:V5510001:discharged:2026-11-24T13:00:00-05:00:")
    assert {k: v for k, v in e.items() if k != "event_id"} == {
        "type": "encounter.discharged", "encounter_id": "V5510001", "occurred_at": "2026-11-24T13:00:00-05:00",
        "patient_class": "outpatient", "billing": "facility", "location": CHAIR,
        "recorded_at": "2026-11-24T13:05:00-05:00", **VISIT}  # EVN-2


def test_observation_discharge():
    [e] = ok(sample("adt-a03-observation.hl7"))
    assert (e["patient_class"], e["encounter_id"]) == ("observation", "V5520002")


@pytest.mark.parametrize("code,expected", [("O", "outpatient"), ("R", "outpatient"), ("E", "emergency"),
                                           ("I", "inpatient"), ("OBS", "observation")])
def test_patient_class(code, expected):
    [e] = ok(edit("adt-a03.hl7", "PV1", 2, code))
    assert e["patient_class"] == expected


@pytest.mark.parametrize("code,category", [("B", "hl7_bad_value"), ("P", "hl7_bad_value"),
                                           ("", "hl7_missing_field")])
def test_unmapped_patient_class_is_rejected(code, category):
    t = tr(edit("adt-a03.hl7", "PV1", 2, code))
    assert t.category == category and "PV1-2" in t.error


def test_discharge_time_falls_back_to_evn_6():
    [e] = ok(edit("adt-a03.hl7", "PV1", 45, ""))
    assert e["occurred_at"] == "2026-11-24T13:00:00-05:00"
    t = tr(edit(edit("adt-a03.hl7", "PV1", 45, ""), "EVN", 6, ""))
    assert t.category == "hl7_missing_field" and "PV1-45" in t.error


def test_cancel_discharge():
    [e] = ok(sample("adt-a13.hl7"))
    assert e == {"event_id": "hl7:V5510001:discharge_cancelled:2026-11-24T13:30:00-05:00",
                 "type": "encounter.discharge_cancelled", "encounter_id": "V5510001",
                 "occurred_at": "2026-11-24T13:30:00-05:00", "location": CHAIR,
                 "recorded_at": "2026-11-24T13:30:00-05:00", **VISIT}
    no_evn = "\r".join(line for line in segments("adt-a13.hl7") if not line.startswith("EVN"))
    [e] = ok(no_evn)
    assert e["occurred_at"] == "2026-11-24T13:30:02-05:00"  # MSH-7


def test_discharge_cancel_and_late_stop_recode():
    again = edit(edit("adt-a03.hl7", "PV1", 45, "20261124140000-0500"), "EVN", 2, "20261124140500-0500")
    events = (ok(sample("ras-start.hl7")) + ok(sample("adt-a03.hl7")) + ok(sample("adt-a13.hl7"))
              + ok(sample("ras-stop.hl7")) + ok(again))
    records = run(events)
    assert cpts(records) == ["96365", "96366"]
    assert final_alerts(records)[("STOP_TIME_MISSING", "RX5101-1-11124")] == "resolved"


def test_a_replayed_discharge_does_not_undo_its_cancellation():
    """The interface engine replays the first A03 (same EVN-2) after the A13: a duplicate. A
    re-discharge at the same clinical time but recorded after the cancel is a new fact and stands."""
    first, cancel = ok(sample("adt-a03.hl7")), ok(sample("adt-a13.hl7"))
    replayed = ok(edit("adt-a03.hl7", "MSH", 10, "ADT0002099"))
    assert replayed[0]["event_id"] == first[0]["event_id"]
    book = Book()
    run(ok(sample("ras-stop.hl7")) + first + cancel + replayed, book)
    assert not book.states["V5510001"].discharged
    again = ok(edit("adt-a03.hl7", "EVN", 2, "20261124134500-0500"))  # same PV1-45, keyed 13:45
    assert again[0]["event_id"] != first[0]["event_id"]
    run(again, book)
    assert book.states["V5510001"].discharged


# -- rejected messages -------------------------------------------------------------------------

@pytest.mark.parametrize("raw,category,words", [
    (b"", "hl7_parse", "empty"),
    (b"PID|1||X\rPV1|1|O", "hl7_parse", "MSH"),
    (b"FHS|^~\\&|A\rBHS|^~\\&|A\r", "hl7_unsupported", "batch"),
    (b"MSH|^~\\&|LAB|GENHOSP|X|Y|20261124083000-0500||ORU^R01^ORU_R01|L1|P|2.5.1\rPID|1", "hl7_unsupported",
     "ORU^R01"),
    (b"MSH|^~\\&|A|B|C|D|20261124083000-0500|||M1|P|2.5.1\r", "hl7_unsupported", "MSH-9 empty"),
])
def test_rejected_messages(raw, category, words):
    t = tr(raw)
    assert (t.category, t.events) == (category, []) and words in t.error


def test_unsupported_type_names_the_supported_ones():
    t = tr(sample("unsupported-adt-a01.hl7"))
    assert "ADT^A01" in t.error and "RAS^O17, ADT^A03, ADT^A13" in t.error


@pytest.mark.parametrize("name,words", [
    ("malformed-no-visit.hl7", "PV1-19"), ("malformed-no-times.hl7", "RXA-3"), ("malformed-no-rxa.hl7", "RXA"),
    ("malformed-no-offset.hl7", "UTC offset"), ("malformed-bad-date.hl7", "RXA-3"),
    ("malformed-bad-route.hl7", "'PO'"), ("malformed-line-break.hl7", "line break"),
])
def test_malformed_samples_say_what_to_fix(name, words):
    assert words in tr(sample(name)).error


@pytest.mark.parametrize("seg,field,value,category,words", [
    ("MSH", 10, "", "hl7_missing_field", "MSH-10"),
    ("RXA", 21, "Z", "hl7_bad_value", "RXA-21"),
    ("RXA", 20, "MAYBE", "hl7_bad_value", "RXA-20"),
    ("RXA", 2, "", "hl7_missing_field", "RXA-2"),
    ("RXA", 5, "", "hl7_missing_field", "RXA-5"),
    ("RXA", 3, "2026112408-0500", "hl7_bad_value", "precise to the minute"),
    ("RXA", 3, "20361124083000-0500", "hl7_bad_value", "future"),
    ("RXR", 1, "", "hl7_missing_field", "RXR-1"),
    ("RXR", 4, "WIGGLE", "hl7_bad_value", "RXR-4"),
    ("TQ1", 13, "30^furlongs", "hl7_bad_value", "TQ1-13"),
    ("ORC", 3, "", "hl7_missing_field", "ORC-3"),
])
def test_bad_fields(seg, field, value, category, words):
    raw = edit("ras-start.hl7", seg, field, value)
    if seg == "ORC":
        raw = raw.replace("PL5101^EPIC", "")
    t = tr(raw)
    assert (t.category, t.events) == (category, []) and words in t.error, t.error


def test_minute_precision_is_enough():
    [e] = ok(edit("ras-start.hl7", "RXA", 3, "202611240830-0500"))
    assert e["occurred_at"] == "2026-11-24T08:30:00-05:00"


def test_missing_rxr_segment():
    raw = "\r".join(line for line in segments("ras-start.hl7") if not line.startswith("RXR"))
    t = tr(raw)
    assert t.category == "hl7_missing_field" and "RXR" in t.error


def test_rxa_before_orc():
    lines = [line for line in segments("ras-start.hl7") if not line.startswith("ORC")]
    assert tr("\r".join(lines)).category == "hl7_missing_field"


def test_missing_pv1():
    raw = "\r".join(line for line in segments("ras-start.hl7") if not line.startswith("PV1"))
    t = tr(raw)
    assert t.category == "hl7_missing_field" and "PV1" in t.error


def test_utc_and_positive_offsets():
    [e] = ok(edit("ras-start.hl7", "RXA", 3, "20261124133000+0000"))
    assert e["occurred_at"] == "2026-11-24T13:30:00+00:00"
    [e] = ok(edit("ras-start.hl7", "RXA", 3, "20261124193000.1234+0530"))
    assert e["occurred_at"] == "2026-11-24T19:30:00+05:30"


# -- framing, determinism, re-sends ------------------------------------------------------------

def test_segment_separators_bytes_str_and_framing():
    cr = sample("ras-stop.hl7")
    expected = ok(cr)
    for raw in (cr.replace(b"\r", b"\n"), cr.replace(b"\r", b"\r\n"), cr.decode(), b"\x0b" + cr + b"\x1c\r",
                cr.rstrip(b"\r"), cr.replace(b"\r", b"\r\r")):
        assert ok(raw) == expected


def test_latin1_bytes_are_read():
    raw = edit("ras-kvo.hl7", "RXA", 5, "313002^Kochsalzlösung 0,9 %^RXNORM").encode("latin-1")
    [e, _] = ok(raw)
    assert e["drug"]["name"] == "Kochsalzlösung 0,9 %"


def test_translation_is_deterministic_and_resent_messages_are_duplicates():
    for name, t in ((n, tr(sample(n))) for n in EXPECTED):
        assert tr(sample(name)) == t
    first = ok(sample("scenario/04-ceftriaxone-complete.hl7"))
    resent = ok(sample("scenario/05-ceftriaxone-complete-resent.hl7"))
    assert [facts(e) for e in first] == [facts(e) for e in resent]  # the same events: duplicates
    assert tr(sample("scenario/04-ceftriaxone-complete.hl7")).message_id == "MAR7730004"
    assert tr(sample("scenario/05-ceftriaxone-complete-resent.hl7")).message_id == "MAR7730005"


def test_event_ids_are_unique_per_fact():
    events = [e for n in EXPECTED for e in tr(sample(n)).events]
    by_id: dict[str, dict] = {}
    for e in events:
        assert facts(by_id.setdefault(e["event_id"], e)) == facts(e)  # one id, one content


def test_long_ids_stay_within_the_contract():
    long_order = "R" * 100
    [e] = ok(edit("ras-start.hl7", "ORC", 3, long_order))
    assert len(e["event_id"]) <= 128 and e["event_id"].startswith("hl7:")
    t = tr(edit("ras-start.hl7", "ORC", 3, "R" * 140))
    assert t.category == "hl7_bad_value" and "administration_id" in t.error


# -- drug-class table --------------------------------------------------------------------------

def test_default_table():
    assert DRUGS.category("313002", "RXNORM", None) == "hydration"
    assert DRUGS.category("2193", RXNORM, "whatever") == "therapeutic"
    assert DRUGS.category("121191", "urn:oid:2.16.840.1.113883.6.88", None) == "chemotherapy"
    assert DRUGS.category(None, None, "  lactated   RINGER'S ") == "hydration"
    assert DRUGS.category("999999", "RXNORM", "vanco") is None
    assert DRUGS.category("11124", "NDC", None) is None  # an RxNorm code is not an NDC


def test_override_file(tmp_path):
    table = tmp_path / "drugs.toml"
    table.write_text("""
[[drug]]
name = "infliximab"
category = "chemotherapy"
rxnorm = ["191831"]

[[drug]]
name = "Baxter NS 1000 mL"
category = "hydration"
ndc = ["0338-0049-04"]
local = ["NS1000"]
codes = [{ system = "urn:oid:1.2.3.4", code = "X1" }]
""")
    drugs = DrugClasses.load(str(table))
    assert drugs.category("191831", "RXNORM", None) == "chemotherapy"  # overridden
    assert drugs.category("2193", "RXNORM", None) == "therapeutic"  # defaults kept
    assert drugs.category("00338004904", "http://hl7.org/fhir/sid/ndc", None) == "hydration"  # 4-4-2 padded
    assert drugs.category("NS1000", "99PHM", None) == drugs.category("NS1000", None, None) == "hydration"
    assert drugs.category("NS1000", "RXNORM", None) is None  # a local code is not an RxNorm code
    assert drugs.category("X1", "urn:oid:1.2.3.4", None) == "hydration"
    only = tmp_path / "only.toml"
    only.write_text('defaults = false\n[[drug]]\nname = "x"\ncategory = "hydration"\n')
    assert DrugClasses.load(str(only)).category("2193", "RXNORM", None) is None


@pytest.mark.parametrize("text,words", [
    ('[[drug]]\nname = "x"\ncategory = "fluid"\n', "category"),
    ('[[drug]]\nname = "x"\ncategory = "hydration"\nrxnrom = ["1"]\n', "unknown key"),
    ('[[drug]]\ncategory = "hydration"\n', "at least"),
    ('[[drug]]\nname = "x"\ncategory = "hydration"\nrxnorm = ["1"]\n'
     '[[drug]]\nname = "y"\ncategory = "therapeutic"\nrxnorm = ["1"]\n', "already listed"),
    ('[[drug]\n', "TOML"),
    ('drugs = []\n', "top-level"),
])
def test_bad_override_file(tmp_path, text, words):
    table = tmp_path / "drugs.toml"
    table.write_text(text)
    with pytest.raises(DrugClassError, match=words):
        DrugClasses.load(str(table))


def test_shipped_table_is_package_data():
    import tomllib
    from importlib import resources
    data = tomllib.loads(resources.files("feeds").joinpath("drug_classes.toml").read_text())
    assert len(data["drug"]) >= 25


# -- the scenario ------------------------------------------------------------------------------

def scenario_events() -> list[dict]:
    events = []
    for path in sorted((SAMPLES / "scenario").glob("*.hl7")):
        events += ok(path.read_bytes())
    return events


def test_scenario_equals_the_hand_written_jsonl():
    expected = [json.loads(line) for line in (SAMPLES / "scenario.jsonl").read_text().splitlines() if line.strip()]
    assert scenario_events() == expected


def test_batch_codes_the_translated_scenario_like_the_jsonl():
    def code(lines) -> list[dict]:
        out = io.BytesIO()
        stats = run_batch(lines, out)
        assert stats.dead_letters == 0
        return [orjson.loads(line) for line in out.getvalue().splitlines()]

    from_hl7 = code(orjson.dumps(e) for e in scenario_events())
    from_jsonl = code((SAMPLES / "scenario.jsonl").read_bytes().splitlines())
    assert from_hl7 == from_jsonl
    assert cpts(from_hl7) == ["96361", "96361", "96365", "96375"]
    assert [c for c in net_charges(from_hl7) if c[0] == "96365"][0][4] == ("RX7003-1-2193",)
    assert not [r for r in from_hl7 if r["kind"] == "alert"]


def test_sample_override_file_accepts_the_study_drug():
    drugs = DrugClasses.load(str(SAMPLES.parent / "drug-classes-override.toml"))
    [e] = ok(sample("ras-unknown-drug.hl7"), drugs)
    assert e["category"] == "chemotherapy"
    assert drugs.category("191831", "RXNORM", None) == "chemotherapy"
    assert drugs.category("2193", "RXNORM", None) == "therapeutic"


def test_mutated_messages_never_raise_and_accepted_ones_are_valid():
    import random
    rnd = random.Random(7)
    files = [p.read_bytes() for p in sorted(SAMPLES.rglob("*.hl7"))]
    seen = set()
    for _ in range(1500):
        raw = bytearray(rnd.choice(files))
        for _ in range(rnd.randint(1, 4)):
            pos = rnd.randrange(len(raw))
            op = rnd.random()
            if op < 0.3:
                raw[pos] = rnd.choice(b"|^~\\&\r\n0123456789AZ-+ \x00\xff")
            elif op < 0.6:
                del raw[pos:pos + rnd.randint(1, 20)]
            else:
                raw[pos:pos] = bytes(rnd.choice(b"|^~&\r0-+") for _ in range(rnd.randint(1, 5)))
        t = tr(bytes(raw))
        seen.add(t.category)
        assert t.ok == (t.category is None) and (t.ok or t.category in CATEGORIES)
        valid(t.events)
    assert len(seen) >= 5


def test_python_hl7_does_not_log_field_values(caplog):
    raw = edit("ras-start.hl7", "RXA", 5, "11124^vanco\\\\mycin^RXNORM")  # an empty escape: python-hl7 logs it
    with caplog.at_level("DEBUG"):
        assert tr(raw).ok
    assert not [r for r in caplog.records if "vanco" in r.getMessage()]


# -- real-world structure: administration groups, ids, statuses, every problem at once ----------

def _group_message(*body: str) -> str:
    """ras-start.hl7's header, visit and order, then `body` (RXA/RXR lines) instead of its RXA and RXR."""
    head = [line for line in segments("ras-start.hl7") if not line.startswith(("RXA", "RXR"))]
    return "\r".join(head + list(body)) + "\r"


def _rxa(sub_id: str, start: str, end: str, drug: str, amount: str) -> str:
    fields = ["RXA", "0", sub_id, start, end, drug, amount] + [""] * 13 + ["CP", "A"]
    assert fields[20] == "CP"
    return "|".join(fields)


RXA_SALINE = _rxa("1", "20261124100000-0500", "20261124120000-0500", "313002^sodium chloride 0.9%^RXNORM", "1000")
RXA_KCL = _rxa("1", "20261124100000-0500", "20261124120000-0500", "8591^potassium chloride^RXNORM", "20")
RXA_VANC = _rxa("2", "20261124130000-0500", "20261124143000-0500", "11124^vancomycin^RXNORM", "1000")


def test_rxas_of_one_administration_group_share_the_rxr_after_them():
    """RAS^O17 (v2.5): ADMINISTRATION = {RXA}+ RXR. SS-MIX2 sends a bag and its additive this way."""
    events = ok(_group_message(RXA_SALINE, RXA_KCL, "RXR|SC^Subcutaneous^HL70162",
                               RXA_VANC, "RXR|IV^Intravenous^HL70162||IVP^IV Pump^HL70164"))
    starts = [e for e in events if e["type"] == "administration.started"]
    assert [(e["administration_id"], e["route"]) for e in starts] == [
        ("RX5101-1-313002", "SC"), ("RX5101-1-8591", "SC"), ("RX5101-2-11124", "IV")]
    assert starts[2]["device"] == "pump" and "device" not in starts[0]


def test_an_administration_group_takes_its_own_rxr_not_the_orders():
    order_rxr = "RXR|IM^Intramuscular^HL70162"
    raw = _group_message(order_rxr, RXA_SALINE, RXA_KCL, "RXR|IV^Intravenous^HL70162")
    assert {e["route"] for e in ok(raw) if e["type"] == "administration.started"} == {"IV"}
    without = _group_message(order_rxr, RXA_SALINE)  # no group RXR: the order's is the route
    assert [e["route"] for e in ok(without) if e["type"] == "administration.started"] == ["IM"]


def test_two_drugs_under_one_order_and_sub_id_are_two_administrations():
    events = ok(_group_message(RXA_SALINE, RXA_KCL, "RXR|IV"))
    assert len({e["administration_id"] for e in events}) == 2
    records = run(events + ok(sample("adt-a03.hl7")))
    assert "96365" in cpts(records)  # the KCl drip is the initial service, not replaced by the bag


def test_a_duplicate_administration_id_in_one_message_is_rejected_not_overwritten():
    t = tr(_group_message(RXA_SALINE, RXA_SALINE.replace("|1000|", "|500|"), "RXR|IV"))
    assert (t.ok, t.events, t.ack) == (False, [], "AE")
    assert "RXA #2 has the same administration id as RXA #1" in t.error and "RX5101" not in t.error


@pytest.mark.parametrize("status,expected", [
    ("Given", ["administration.started", "administration.stopped"]), ("completed", None), ("COMPLETE", None),
    ("In Progress", ["administration.started"]), ("infusing", ["administration.started"]),
    ("Not Given", ["administration.voided"]), ("held", ["administration.voided"]),
    ("Refused", ["administration.voided"]), ("Partially administered", None),
])
def test_completion_status_words_real_mars_send(status, expected):
    events = ok(edit("ras-stop.hl7", "RXA", 20, status))
    assert [e["type"] for e in events] == (expected or ["administration.started", "administration.stopped"])


def test_every_problem_of_a_message_is_reported_at_once():
    raw = edit(edit(edit(edit("ras-start.hl7", "RXA", 21, "Z"), "RXR", 4, "WIGGLE"), "TQ1", 13, "30^furlongs"),
               "PV1", 19, "")
    t = tr(raw)
    assert t.category == "hl7_missing_field" and t.ack == "AE"
    assert [p.split(" ")[0] for p in t.problems] == ["PV1-19", "RXA", "RXA", "RXA"]
    for words in ("PV1-19", "RXA-21", "RXR-4", "TQ1-13"):
        assert sum(words in p for p in t.problems) == 1, (words, t.problems)
    assert "TESTPATIENT" not in t.error and "MRN4481207" not in t.error  # no patient data in a rejection


def test_iso_2022_jp_messages_are_decoded():
    raw = edit("ras-start.hl7", "RXA", 5, "11124^バンコマイシン^RXNORM").encode("iso2022_jp")
    [e] = ok(raw)
    assert e["drug"]["name"] == "バンコマイシン"


# -- times without an offset -----------------------------------------------------------------

def _local(name: str, rxa3: str, msh7: str) -> str:
    return edit(edit(name, "RXA", 3, rxa3), "MSH", 7, msh7)


def test_local_times_are_placed_by_the_facility_zone_with_daylight_saving():
    from zoneinfo import ZoneInfo
    ny = ZoneInfo("America/New_York")
    summer = translate_hl7(_local("ras-start.hl7", "20260701083000", "20260701083112"), DRUGS, ny)
    winter = translate_hl7(_local("ras-start.hl7", "20261124083000", "20261124083112"), DRUGS, ny)
    assert summer.events[0]["occurred_at"] == "2026-07-01T08:30:00-04:00"
    assert winter.events[0]["occurred_at"] == "2026-11-24T08:30:00-05:00"
    # a message sent after the change about a time before it: each time gets its own offset
    across = translate_hl7(_local("ras-start.hl7", "20261031230000", "20261101083112"), DRUGS, ny)
    assert across.events[0]["occurred_at"] == "2026-10-31T23:00:00-04:00"


@pytest.mark.parametrize("rxa3,words", [("20260308023000", "does not exist in America/New_York"),
                                        ("20261101013000", "occurs twice in America/New_York")])
def test_a_local_time_the_zone_skips_or_repeats_is_a_problem(rxa3, words):
    from zoneinfo import ZoneInfo
    t = translate_hl7(_local("ras-start.hl7", rxa3, "20261124083112"), DRUGS, ZoneInfo("America/New_York"))
    assert t.category == "hl7_bad_value" and words in t.error and "UTC offset" in t.error


def test_msh_7_offset_comes_first():
    from zoneinfo import ZoneInfo
    # no zone configured: the sender's MSH-7 offset places its other times
    [e] = ok(_local("ras-start.hl7", "20261124083000", "20261124083112+0100"))
    assert e["occurred_at"] == "2026-11-24T08:30:00+01:00"
    # a zone that disagrees with MSH-7 (the sender is elsewhere): MSH-7's word
    t = translate_hl7(_local("ras-start.hl7", "20261124083000", "20261124083112+0100"), DRUGS,
                      ZoneInfo("America/New_York"))
    assert t.events[0]["occurred_at"] == "2026-11-24T08:30:00+01:00"
    # a time's own offset before anything
    [e] = ok(_local("ras-start.hl7", "20261124083000-0800", "20261124083112+0100"))
    assert e["occurred_at"] == "2026-11-24T08:30:00-08:00"


def test_no_offset_and_no_zone_says_how_to_configure_it():
    t = tr(_local("ras-start.hl7", "20261124083000", "20261124083112"))
    assert t.category == "hl7_bad_value"
    assert "--timezone or IV_TIMEZONE" in t.error and "RXA-3" in t.error


# -- no patient data in a rejection ------------------------------------------------------------

@pytest.mark.parametrize("seg,field,value,said,not_said", [
    ("RXR", 1, "PO", "RXR-1 route 'PO'", None),  # a code of table 0162: said back, it helps
    ("RXR", 1, "ZZCANARY", "RXR-1 route is not coded", "ZZCANARY"),  # not a code: could be anything
    ("RXR", 4, "SH", "RXR-4 administration method 'SH'", None),
    ("RXR", 4, "MRNCANARY01", "RXR-4 administration method is not known", "MRNCANARY01"),
    ("RXA", 20, "ZZCANARY", "RXA-20 completion status is not known", "ZZCANARY"),
    ("RXA", 3, "19620314083000-0500", "RXA-3 is before 2000", "1962"),
    ("RXA", 3, "19620314", "RXA-3 is not an HL7 date/time", "1962"),
    ("RXA", 3, "20261324083000-0500", "RXA-3 is not a valid date/time", "2026"),
    ("RXA", 3, "20261124083000-2500", "RXA-3 has a UTC offset that is not one", "2500"),
    ("TQ1", 13, "19620314^min", "TQ1-13 occurrence duration is outside", "19620314"),
    ("RXA", 5, "^ZZCANARY 1962-03-14^", "RXA #1 RXA-5 (text only, no code)", "ZZCANARY"),
    ("RXA", 5, "999999^unknown drug^RXNORM", "RXA #1 RXA-5 (RxNorm 999999)", None),
])
def test_a_rejection_names_the_field_and_quotes_only_codes(seg, field, value, said, not_said):
    t = tr(edit("ras-start.hl7", seg, field, value))
    assert said in t.error, t.error
    assert not_said is None or not_said not in t.error


def test_a_segment_that_is_not_one_is_named_by_position_only():
    raw = sample("ras-start.hl7").replace(b"\rPV1|", b"\rPID#1\\F\\\\F\\MRNCANARY01^^^HOSP\rPV1|")
    t = tr(raw)
    assert t.category == "hl7_parse" and "segment 3 does not start with a segment id" in t.error
    assert "MRNCANARY01" not in t.error and "PID" not in t.error
    assert "starts with a PID segment" in tr(b"PID|1||MRNCANARY01\rPV1|1|O").error
    assert "MRNCANARY01" not in tr(b"MRNCANARY01|^~\\&|X").error


# -- MSH-18 character sets ---------------------------------------------------------------------

def _charset(msh18: str, drug: str, codec: str) -> bytes:
    return edit(edit("ras-start.hl7", "MSH", 18, msh18), "RXA", 5, f"11124^{drug}^RXNORM").encode(codec)


@pytest.mark.parametrize("msh18,drug,codec", [
    ("ASCII", "vancomycin", "ascii"),
    ("8859/1", "Vancomycine \u00e9", "latin-1"),
    ("UNICODE UTF-8", "\u30d0\u30f3\u30b3\u30de\u30a4\u30b7\u30f3", "utf-8"),
    ("ISO IR87", "\u30d0\u30f3\u30b3\u30de\u30a4\u30b7\u30f3", "iso2022_jp"),  # with ISO 2022 escapes
    ("~ISO IR87", "\u30d0\u30f3\u30b3\u30de\u30a4\u30b7\u30f3", "iso2022_jp"),  # SS-MIX2: ASCII, then IR87
    ("ISO IR87", "\u30d0\u30f3\u30b3\u30de\u30a4\u30b7\u30f3\u30bd", "cp932"),  # Shift-JIS bytes (\u30bd: 0x83 0x5C)
    ("SHIFT-JIS", "\u30d0\u30f3\u30b3\u30de\u30a4\u30b7\u30f3", "shift_jis"),
])
def test_msh_18_character_sets_are_honoured(msh18, drug, codec):
    [e] = ok(_charset(msh18, drug, codec))
    assert e["drug"]["name"] == drug


@pytest.mark.parametrize("msh18,codec", [("ASCII", "shift_jis"), ("UNICODE UTF-8", "shift_jis"),
                                         ("EBCDIC", "shift_jis"), ("ZZCANARY", "cp932")])
def test_bytes_no_reading_fits_are_refused_naming_msh_18_and_the_nak_carries_msh_10(msh18, codec):
    t = tr(_charset(msh18, "\u30d0\u30f3\u30b3\u30de\u30a4\u30b7\u30f3", codec))
    assert (t.ack, t.events) == ("AR", []) and "MSH-18" in t.error and "ZZCANARY" not in t.error
    assert t.message_id == "MAR0001001"  # read from the bytes: the sender can match the NAK


# The labels real senders put in MSH-18 that cannot change what 7-bit (or UTF-8) bytes say: table
# 0211's v2.3-2.4 `UNICODE` (a national integration spec requires it), a country code sent one field
# late (`CAN`), the SS-MIX2 spelling without its space, a Japanese label on UTF-8 bytes.
@pytest.mark.parametrize("msh18,drug,codec,kind", [
    ("UNICODE", "vancomycin", "ascii", "charset_7bit"),
    ("CAN", "vancomycin", "ascii", "charset_7bit"),
    ("ZZCANARY", "vancomycin", "ascii", "charset_7bit"),
    ("~ISO IR87", "\u30d0\u30f3\u30b3\u30de\u30a4\u30b7\u30f3", "utf-8", "charset_utf8"),
    ("EBCDIC", "\u30d0\u30f3\u30b3\u30de\u30a4\u30b7\u30f3", "utf-8", "charset_utf8"),
    ("ASCII", "Vancomycine \u00e9", "utf-8", "charset_utf8"),
])
def test_a_label_that_cannot_change_the_meaning_is_read_by_the_bytes_and_noted(msh18, drug, codec, kind):
    t = tr(_charset(msh18, drug, codec))
    assert t.ok, t.error
    [e] = t.events
    assert e["drug"]["name"] == drug
    [note] = t.notes
    assert note.kind == kind and "ZZCANARY" not in note.text


def test_a_label_that_fits_every_byte_is_honoured_and_the_controls_it_yields_are_removed_and_noted():
    """8859-1 reads any byte: UTF-8 katakana read as 8859-1 give C1 controls, removed (feeds/text.py)."""
    t = tr(_charset("8859/1", "\u30d0\u30f3\u30b3\u30de\u30a4\u30b7\u30f3", "utf-8"))
    assert t.ok and [n.kind for n in t.notes] == ["text_controls"]
    assert t.events[0]["drug"]["name"].isprintable()
