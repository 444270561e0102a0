"""The encounter state machine: pairing, discharge, late events, deltas, alerts, audit."""
import json

import pytest

from models.events import parse_event
from rules.book import Book, TooLate
from rules.encounter import EncounterState
from tests.events import (cancel, cpts, discharge, final_alerts, net_charges, run, start, stop, submitted,
                          void)


def test_pairs_start_and_stop_and_codes_at_discharge():
    assert run([start("A1", "10:00"), stop("A1", "10:45")]) == []
    out = run([start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")])
    assert cpts(out) == ["96365"]
    charge = out[0]
    assert charge["action"] == "post" and charge["administration_ids"] == ["A1"]
    assert charge["service_date"] == "2026-03-02" and charge["incomplete_documentation"] is False


def test_stop_and_discharge_before_start():
    assert cpts(run([stop("A1", "10:45"), discharge("11:00"), start("A1", "10:00")])) == ["96365"]


def test_duplicate_event_id_is_ignored():
    e = stop("A1", "10:45")
    out = run([start("A1", "10:00"), e, discharge("11:00"), dict(e), dict(e)])
    assert cpts(out) == ["96365"] and len(out) == 1


def test_late_stop_after_discharge_reverses_and_resolves():
    out = run([start("A1", "14:00"), discharge("15:00"), stop("A1", "14:50")])
    kinds = [(r["kind"], r.get("action") or r.get("state"), r.get("cpt") or r.get("code")) for r in out]
    assert kinds == [
        ("charge", "post", "96374"), ("alert", "raised", "STOP_TIME_MISSING"),
        ("charge", "reverse", "96374"), ("charge", "post", "96365"), ("alert", "resolved", "STOP_TIME_MISSING"),
    ]
    assert out[0]["incomplete_documentation"] is True
    assert out[2]["reverses"] == out[0]["charge_id"]
    assert out[1]["alert_id"] == out[4]["alert_id"]
    assert cpts(out) == ["96365"]


def test_void_after_discharge_reverses():
    out = run([start("A1", "10:00"), stop("A1", "10:45"), start("A2", "11:00", drug="famotidine", method="push"),
               discharge("12:00"), void("A1", "12:30")])
    assert cpts(out) == ["96374"]
    assert [r["action"] for r in out if r["kind"] == "charge"] == ["post", "post", "reverse", "reverse", "post"]


def test_void_before_start_sticks():
    assert cpts(run([void("A1", "09:00"), start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")])) == []


def test_reopen_then_discharge_emits_only_delta():
    out = run([start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00"), cancel("11:10"),
               start("A2", "11:20", drug="ondansetron", method="push"), discharge("12:00")])
    posts = [r["cpt"] for r in out if r["kind"] == "charge" and r["action"] == "post"]
    assert posts == ["96365", "96375"]
    assert not [r for r in out if r.get("action") == "reverse"]


def test_cancel_arriving_before_its_discharge_by_event_time():
    # Discharge 11:00, cancel 11:10, discharge 12:00 arriving in reverse: still discharged.
    events = [start("A1", "10:00"), stop("A1", "10:45"), discharge("12:00"), cancel("11:10"), discharge("11:00")]
    assert cpts(run(events)) == ["96365"]


def test_reposted_identical_line_gets_a_new_id():
    # 96374 posted; a late infusion makes the push subsequent; voiding it brings 96374 back.
    out = run([start("P", "10:00", drug="ondansetron", method="push"), discharge("11:00"),
               start("A", "09:00"), stop("A", "09:45"), void("A", "11:30")])
    posts = [r for r in out if r.get("action") == "post" and r["cpt"] == "96374"]
    assert posts[0]["administration_ids"] == posts[-1]["administration_ids"] == ["P"]
    assert len({p["charge_id"] for p in posts}) == len(posts)
    assert cpts(out) == ["96374"]


def test_overdue_raised_on_event_clock_and_resolved_by_stop():
    events = [start("A1", "10:00", ordered_duration_minutes=60), start("A9", "11:31", enc="E2", method="push"),
              stop("A1", "11:40")]
    out = run(events)
    alerts = [(r["code"], r["state"], r["administration_id"]) for r in out if r["kind"] == "alert"]
    assert alerts == [("STOP_TIME_OVERDUE", "raised", "A1"), ("STOP_TIME_OVERDUE", "resolved", "A1")]


def test_overdue_not_raised_exactly_at_deadline_nor_for_pushes():
    out = run([start("A1", "10:00", ordered_duration_minutes=60), start("P", "10:00", method="push"),
               stop("A1", "11:30"), discharge("+1 09:00")])
    assert [r for r in out if r["kind"] == "alert"] == []


def test_overdue_without_order_uses_four_hours():
    out = run([start("A1", "10:00"), start("X", "14:00", method="push"), start("Y", "14:01", method="push")])
    assert [r["code"] for r in out if r["kind"] == "alert"] == ["STOP_TIME_OVERDUE"]


def test_another_encounter_s_events_never_make_an_infusion_overdue():
    """Each encounter's event-time clock is its own (coding-rules §5, the clock): the other visit's
    14:01 says nothing about whether A1 was stopped at 14:00."""
    out = run([start("A1", "10:00"), start("X", "14:00", enc="E2", method="push"),
               start("Y", "14:01", enc="E2", method="push")])
    assert [r for r in out if r["kind"] == "alert"] == []


def test_an_infusion_charted_behind_its_encounter_s_clock_is_checked_as_it_arrives():
    """The issue-26 defect: charted late (08:00, 60 min ordered, no stop) into an encounter whose own
    clock is already at 23:00: STOP_TIME_OVERDUE at once, as it would have been had it come in time."""
    late = [start("P", "23:00", method="push"), start("A1", "08:00", ordered_duration_minutes=60)]
    assert [(r["code"], r["administration_id"]) for r in run(late) if r["kind"] == "alert"] == [
        ("STOP_TIME_OVERDUE", "A1")]
    in_order = [start("A1", "08:00", ordered_duration_minutes=60), start("P", "23:00", method="push")]
    assert [(r["code"], r["administration_id"]) for r in run(in_order) if r["kind"] == "alert"] == [
        ("STOP_TIME_OVERDUE", "A1")]


def test_stop_before_start_alerted_live():
    out = run([start("A1", "10:00"), stop("A1", "09:00")])
    assert final_alerts(out) == {("STOP_BEFORE_START", "A1"): "raised"}


def test_start_missing_at_discharge_resolved_by_late_start():
    out = run([stop("A1", "10:45"), discharge("11:00")])
    assert final_alerts(out) == {("START_TIME_MISSING", "A1"): "raised"}
    out = run([stop("A1", "10:45"), discharge("11:00"), start("A1", "10:00")])
    assert final_alerts(out) == {("START_TIME_MISSING", "A1"): "resolved"}


def test_inpatient_discharge():
    out = run([start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00", patient_class="inpatient")])
    assert cpts(out) == [] and final_alerts(out) == {("INPATIENT_BUNDLED", None): "raised"}


def test_professional_billing_from_discharge():
    events = [start("H", "08:00", drug="saline", category="hydration", primary_reason=True), stop("H", "10:00"),
              start("P", "08:10", drug="ondansetron", method="push"), discharge("11:00", billing="professional")]
    assert cpts(run(events)) == ["96360", "96361", "96375"]


ED_VISIT = [start("H", "16:00", drug="saline", category="hydration"), stop("H", "19:00"),
            start("A", "17:00"), stop("A", "18:00")]  # engine: 96365 + 96361 x2


@pytest.mark.parametrize("lines,expected", [
    ([("96365", 1), ("96361", 2)], set()),
    ([("96360", 1), ("96365", 1), ("96361", 2)], {"PREBILL_TWO_INITIAL_CODES", "PREBILL_HYDRATION_AS_INITIAL"}),
    ([("96360", 1), ("96361", 2)], {"PREBILL_HYDRATION_AS_INITIAL", "PREBILL_MISSED_CHARGE"}),
    ([("96374", 1), ("96361", 2)], {"PREBILL_PUSH_OVER_15_MIN", "PREBILL_MISSED_CHARGE"}),
    ([("96365", 1), ("96361", 3)], {"PREBILL_ADDITIONAL_HOUR_UNSUPPORTED"}),
    ([("96365", 1)], {"PREBILL_MISSED_CHARGE"}),
    ([("96365", 1), ("96361", 2), ("96372", 1)], {"PREBILL_CODE_MISMATCH"}),
    ([("96365", 1, "XU"), ("96361", 2)], {"PREBILL_CODE_MISMATCH"}),
])
def test_prebill_audit(lines, expected):
    out = run(ED_VISIT + [submitted("19:10", lines), discharge("19:30")])
    assert {code for (code, _), s in final_alerts(out).items() if s == "raised"} == expected


def test_prebill_submission_after_discharge_and_corrected_resubmission():
    out = run(ED_VISIT + [discharge("19:30"), submitted("20:00", [("96360", 1), ("96361", 2)]),
                          submitted("20:30", [("96365", 1), ("96361", 2)])])
    assert set(final_alerts(out).values()) == {"resolved"}


def test_state_round_trips_through_json():
    book = Book()
    run([start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00")], book)
    state = book.states["E1"]
    again = EncounterState.from_json(json.loads(json.dumps(state.to_json())))
    assert again.to_json() == state.to_json()
    late = parse_event(json.dumps(void("A1", "11:30")))
    assert again.apply(late, 0) == state.apply(late, 0)


def test_closed_encounters_purged_after_retention_and_late_events_dead_lettered():
    book = Book(retention_minutes=60)
    run([start("A1", "10:00"), stop("A1", "10:45"), discharge("11:00"), start("B", "12:30", enc="E2")], book)
    assert "E1" not in book.states and "E2" in book.states
    with pytest.raises(TooLate):
        run([stop("A1", "10:50")], book)


def test_net_charges_helper_applies_reversals():
    out = run([start("A1", "14:00"), discharge("15:00"), stop("A1", "14:50")])
    assert [c[0] for c in net_charges(out)] == ["96365"]


def test_alerts_say_who_acts_and_where_the_patient_is():
    """Contract v1.1: `audience` on every alert; the encounter's latest `location` on alerts raised
    once an event carried one (old producers without it keep working)."""
    ward = {"unit": "4WEST", "room": "412", "bed": "B"}
    moved = {"unit": "ICU", "room": None, "bed": None}
    out = run([start("A1", "10:00", location=ward), start("A2", "10:05", location=moved), discharge("11:00"),
               submitted("11:05", [("96360", 1)])])
    alerts = {r["code"]: r for r in out if r["kind"] == "alert"}
    assert alerts["STOP_TIME_MISSING"]["audience"] == "nursing"
    assert alerts["STOP_TIME_MISSING"]["location"] == moved  # the latest one seen
    assert {r["audience"] for code, r in alerts.items() if code.startswith("PREBILL_")} == {"coding"}
    plain = run([start("A1", "10:00"), discharge("11:00")])
    assert [("location" in r, r["audience"]) for r in plain if r["kind"] == "alert"] == [(False, "nursing")]


def test_charge_records_carry_the_discharge_s_patient_class_and_a_reversal_the_post_s():
    """Contract v1.3 (additive): `patient_class` on charge lines, for the billing interface's PV1-2; a
    packed (held) encounter keeps it on its posted lines."""
    book = Book(pack_closed=True, gauges=False)
    first = run([start("A1", "08:00"), stop("A1", "09:00"), discharge("10:00", patient_class="emergency")], book)
    (post,) = [r for r in first if r["kind"] == "charge"]
    assert post["patient_class"] == "emergency"
    later = run([cancel("10:20"), void("A1", "10:30"), start("A2", "10:40"), stop("A2", "11:40"),
                 discharge("12:00", patient_class="observation")], book)  # unpacked, recoded
    reversal = next(r for r in later if r["kind"] == "charge" and r["action"] == "reverse")
    assert reversal["reverses"] == post["charge_id"] and reversal["patient_class"] == "emergency"
    assert {r["patient_class"] for r in later if r["kind"] == "charge" and r["action"] == "post"} == {"observation"}
