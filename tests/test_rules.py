"""Coding rules beyond the worked examples: boundaries, dates, billing, sites, gaps, policies."""
import datetime as dt

import pytest

from rules.engine import Context, code_encounter
from rules.policy import Policy, PolicyError, load_policy
from tests.builders import adm, alert_codes, chemo, codes, hyd, push

PRO = Context(billing="professional")


@pytest.mark.parametrize("minutes,expected", [
    (30, []), (31, ["96360"]), (90, ["96360"]), (91, ["96360", "96361"]), (151, ["96360", "96361 x2"]),
])
def test_hydration_initial_boundaries(minutes, expected):
    stop = f"{10 + minutes // 60:02d}:{minutes % 60:02d}"
    assert codes(code_encounter([hyd("10:00", stop)])) == expected


@pytest.mark.parametrize("minutes,expected", [
    (90, ["96365"]), (91, ["96365", "96366"]), (150, ["96365", "96366"]), (151, ["96365", "96366 x2"]),
])
def test_initial_infusion_additional_hours(minutes, expected):
    stop = f"{10 + minutes // 60:02d}:{minutes % 60:02d}"
    assert codes(code_encounter([adm("vancomycin", "10:00", stop)])) == expected


@pytest.mark.parametrize("hyd_stop,expected", [
    ("10:30", ["96374"]),  # 30 min net: nothing, alert
    ("10:31", ["96361", "96374"]),  # 31 min: one hour
    ("11:30", ["96361", "96374"]),  # 90 min: still one
    ("11:31", ["96361 x2", "96374"]),  # 91 min: two
])
def test_secondary_hydration_hours(hyd_stop, expected):
    coding = code_encounter([hyd("10:00", hyd_stop), push("ondansetron", "09:50")])
    assert codes(coding) == expected


def test_secondary_hydration_under_31_alerts_info():
    coding = code_encounter([hyd("10:00", "10:30"), push("ondansetron", "09:50")])
    assert [(a.code, a.severity) for a in coding.alerts] == [("HYDRATION_UNDER_31_MIN", "info")]


def test_hydration_runs_are_one_union():
    # Two 20-minute bags: neither reaches 31 alone, together they do.
    assert codes(code_encounter([hyd("10:00", "10:20"), hyd("11:00", "11:20")])) == ["96360"]


def test_hydration_per_run_policy_counts_only_runs_of_31_minutes():
    admins = [hyd("10:00", "10:20"), hyd("11:00", "11:20")]
    assert codes(code_encounter(admins, policy=Policy(hydration_combining="per_run"))) == []


def test_push_time_overlapping_hydration_is_subtracted_only_with_a_stop():
    # 31 min of hydration, a 2-minute push inside it leaves 29: under the threshold.
    coding = code_encounter([hyd("10:00", "10:31"), push("ondansetron", "10:10", "10:12")])
    assert codes(coding) == ["96374"]
    coding = code_encounter([hyd("10:00", "10:31"), push("ondansetron", "10:10")])
    assert codes(coding) == ["96361", "96374"]


def test_initial_infusion_dated_when_16_minutes_are_reached():
    coding = code_encounter([adm("vancomycin", "23:50", "+1 01:30")])  # 100 min
    assert [(l.cpt, l.service_date) for l in coding.lines] == [
        ("96365", dt.date(2026, 3, 3)), ("96366", dt.date(2026, 3, 3))]
    coding = code_encounter([adm("vancomycin", "23:40", "+1 01:30")])
    assert [(l.cpt, l.service_date) for l in coding.lines] == [
        ("96365", dt.date(2026, 3, 2)), ("96366", dt.date(2026, 3, 3))]


def test_push_dated_by_its_start():
    coding = code_encounter([push("ondansetron", "23:59", "+1 00:03")])
    assert [(l.cpt, l.service_date) for l in coding.lines] == [("96374", dt.date(2026, 3, 2))]


def test_one_initial_across_midnight():
    admins = [adm("ceftriaxone", "22:00", "22:40"), adm("vancomycin", "+1 06:00", "+1 07:30")]
    assert codes(code_encounter(admins)) == ["96365", "96367"]


def test_hierarchy_not_order_decides_initial():
    admins = [hyd("07:00", "09:00"), push("ondansetron", "07:10"), adm("ceftriaxone", "09:00", "09:30")]
    assert codes(code_encounter(admins)) == ["96361 x2", "96365", "96375"]


def test_chemo_push_outranks_therapeutic_infusion():
    admins = [adm("ceftriaxone", "08:00", "09:00"), chemo("bortezomib", "09:10", None, method="push")]
    assert codes(code_encounter(admins)) == ["96367", "96409"]


def test_tie_longest_then_policy_earliest_start():
    a = adm("drug A", "10:00", "10:40", id="A")
    b = adm("drug B", "11:00", "12:00", id="B")
    initial = lambda policy: next(l for l in code_encounter([a, b], policy=policy).lines if l.cpt == "96365")
    assert initial(Policy()).administration_ids == ("B",)
    assert initial(Policy(initial_tiebreak="earliest_start")).administration_ids == ("A",)


def test_sequential_additional_hours_count_exclusive_time():
    # Equal length, A earlier: A initial (180 min: +2 h); B 180 min with 30 alongside A:
    # 150 exclusive -> sequential + 1 hour, dated when its exclusive time reaches 91 min.
    admins = [adm("drug A", "10:00", "13:00"), adm("drug B", "12:30", "15:30")]
    coding = code_encounter(admins)
    assert codes(coding) == ["96365", "96366 x3", "96367"]


def test_short_exclusive_and_short_overlap_is_a_push():
    # B: 25 min, 12 alongside A and 13 alone: neither reaches 16.
    admins = [adm("drug A", "10:00", "11:00"), adm("drug B", "10:48", "11:13")]
    assert codes(code_encounter(admins)) == ["96365", "96375"]


def test_concurrent_reported_once_per_encounter():
    admins = [adm("A", "10:00", "11:00"), adm("B", "10:00", "11:00"), adm("C", "10:00", "11:00")]
    assert codes(code_encounter(admins)) == ["96365", "96368"]


def test_chemo_concurrent_with_chemo_is_unsupported():
    coding = code_encounter([chemo("cisplatin", "09:00", "10:00"), chemo("etoposide", "09:00", "10:00")])
    assert codes(coding) == ["96413"]
    assert alert_codes(coding) == ["UNSUPPORTED_COMBINATION"]


def test_same_drug_repeat_policy_sequential():
    admins = [adm("vancomycin", "07:00", "08:30"), adm("vancomycin", "19:00", "20:30")]
    assert codes(code_encounter(admins, policy=Policy(same_drug_repeat="sequential"))) == ["96365", "96367"]


def test_same_drug_matched_by_code_before_name():
    admins = [adm("Vanco", "07:00", "08:30", drug_code="11124"), adm("vancomycin HCl", "19:00", "20:00",
                                                                        drug_code="11124")]
    assert codes(code_encounter(admins)) == ["96365", "96366"]
    admins = [adm("VANCOMYCIN", "07:00", "08:30"), adm("vancomycin", "19:00", "19:20")]
    assert codes(code_encounter(admins)) == ["96365"]  # 20 min repeat: under 31, nothing


def test_repeat_push_gap_policy():
    admins = [push("ondansetron", "10:00"), push("ondansetron", "10:20")]
    assert codes(code_encounter(admins, policy=Policy(repeat_push_gap_minutes=15))) == ["96374", "96376"]


def test_chemo_pushes_new_and_repeat():
    admins = [chemo("A", "10:00", None, method="push"), chemo("B", "10:05", None, method="push"),
              chemo("A", "11:00", None, method="push")]
    assert codes(code_encounter(admins)) == ["96409", "96411"]  # no repeat-push code for chemo


def test_professional_primary_reason_decides_initial_and_no_96376():
    admins = [hyd("08:00", "10:00", primary_reason=True), push("ondansetron", "08:10"),
              push("ondansetron", "09:00")]
    assert codes(code_encounter(admins, PRO)) == ["96360", "96361", "96375"]
    assert codes(code_encounter(admins)) == ["96361 x2", "96374", "96376"]


def test_professional_without_flag_uses_hierarchy():
    admins = [hyd("08:00", "10:00"), adm("ceftriaxone", "08:30", "09:00")]
    assert codes(code_encounter(admins, PRO)) == codes(code_encounter(admins)) == ["96361", "96365"]


def test_professional_flagged_push_is_initial_over_infusion():
    admins = [adm("ceftriaxone", "08:00", "09:00"), push("morphine", "07:30", primary_reason=True)]
    assert codes(code_encounter(admins, PRO)) == ["96367", "96374"]


def test_second_site_needs_a_reason_and_a_distinct_site():
    no_reason = [adm("X", "10:00", "11:30", access_site="L"), adm("Y", "10:00", "11:00", access_site="R")]
    assert codes(code_encounter(no_reason)) == ["96365", "96368"]
    same_site = [adm("X", "10:00", "11:30", access_site="L"),
                 adm("Y", "10:00", "11:00", access_site="L", separate_access_reason="incompatible")]
    assert "96365-XU" not in codes(code_encounter(same_site))


def test_second_site_modifier_policy_and_every_line_carries_it():
    admins = [adm("X", "10:00", "11:30", access_site="L"),
              adm("Y", "10:00", "11:40", access_site="R", separate_access_reason="incompatible"),
              hyd("11:40", "12:40", access_site="R", separate_access_reason="incompatible")]
    assert codes(code_encounter(admins)) == ["96361-XU", "96365", "96365-XU", "96366-XU"]
    assert codes(code_encounter(admins, policy=Policy(second_site_modifier="59")))[0] == "96361-59"


def test_method_time_conflict_codes_infusion_and_warns():
    coding = code_encounter([push("ketorolac", "10:00", "10:20")])
    assert codes(coding) == ["96365"]
    assert [(a.code, a.severity) for a in coding.alerts] == [("METHOD_TIME_CONFLICT", "warn")]


def test_missing_stop_policy_none_codes_nothing():
    coding = code_encounter([adm("ceftriaxone", "14:00", None)], policy=Policy(missing_stop_fallback="none"))
    assert codes(coding) == [] and alert_codes(coding) == ["STOP_TIME_MISSING"]


def test_hydration_without_stop_not_coded():
    coding = code_encounter([hyd("14:00", None)])
    assert codes(coding) == [] and alert_codes(coding) == ["STOP_TIME_MISSING"]


def test_documented_push_without_stop_has_no_alert():
    coding = code_encounter([push("ondansetron", "10:00")])
    assert codes(coding) == ["96374"] and coding.alerts == [] and not coding.lines[0].incomplete


def test_stop_without_start_and_stop_before_start():
    coding = code_encounter([adm("x", None, "10:00"), adm("y", "11:00", "10:00")])
    assert codes(coding) == [] and alert_codes(coding) == ["START_TIME_MISSING", "STOP_BEFORE_START"]


def test_inpatient_bundled():
    coding = code_encounter([adm("vancomycin", "10:00", "11:00")], Context(patient_class="inpatient"))
    assert codes(coding) == [] and alert_codes(coding) == ["INPATIENT_BUNDLED"]


@pytest.mark.parametrize("purpose", ["kvo", "flush", "carrier"])
def test_kvo_flush_carrier_never_billed_nor_hydration_time(purpose):
    admins = [hyd("08:00", "12:00", purpose=purpose), adm("ceftriaxone", "09:00", "09:30")]
    assert codes(code_encounter(admins)) == ["96365"]


def test_two_drugs_in_one_bag_are_one_administration():
    admins = [adm("A", "10:00", "11:00", container_id="BAG-1"), adm("B", "10:00", "11:00", container_id="BAG-1")]
    coding = code_encounter(admins)
    assert codes(coding) == ["96365"]
    assert set(coding.lines[0].administration_ids) == {a.id for a in admins}


def test_ia_codes():
    assert codes(code_encounter([chemo("A", "09:00", "10:40", route="IA")])) == ["96422", "96423"]
    assert codes(code_encounter([push("B", "09:00", route="IA")])) == ["96373"]


def test_sc_and_im_are_stand_alone():
    admins = [adm("IG", "10:00", "11:40", route="SC"), adm("IG", "10:00", "11:00", route="SC"),
              adm("IG", "10:00", "11:00", route="SC"), adm("B12", "10:00", None, route="IM", method="injection"),
              chemo("leuprolide", "10:05", None, route="SC", method="injection"),
              adm("ceftriaxone", "12:00", "12:30")]
    assert codes(code_encounter(admins)) == ["96365", "96369", "96370", "96371", "96372", "96401"]


def test_explanation_names_times_minutes_and_rule():
    coding = code_encounter([adm("vancomycin", "07:00", "09:31", access_site="PIV-1")])
    text = coding.lines[0].explanation
    assert "vancomycin 07:00–09:31 (151 min) on PIV-1" in text and "initial" in text
    assert "2 additional hours" in coding.lines[1].explanation


def test_policy_file(tmp_path):
    path = tmp_path / "payer.toml"
    path.write_text('second_site_modifier = "XS"\nrepeat_push_gap_minutes = 60\n'
                    '[codes]\n"initial_infusion.therapeutic.IA" = "96366"\n')
    policy = load_policy(path)
    assert policy.second_site_modifier == "XS" and policy.repeat_push_gap_minutes == 60
    assert codes(code_encounter([adm("x", "10:00", "10:30", route="IA")], policy=policy)) == ["96366"]


@pytest.mark.parametrize("text,words", [
    ('second_site_modifier = "ZZ"', "choose one of XU, 59, XS"),
    ("bogus = 1", "unknown setting(s) bogus"),
    ("repeat_push_gap_minutes = -1", "whole number"),
    ("not toml [", "not valid TOML"),
])
def test_policy_file_errors(tmp_path, text, words):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_policy(path)
