"""docs/coding-rules.md §8: every worked example, facility billing, one IV site unless said."""
import datetime as dt

import pytest

from rules.engine import code_encounter
from tests.builders import adm, alert_codes, chemo, codes, hyd, push

EXAMPLES = {
    "1 hydration 75 min": ([hyd("10:00", "11:15")], ["96360"]),
    "2a hydration 30 min": ([hyd("10:00", "10:30")], []),
    "2b hydration 31 min": ([hyd("10:00", "10:31")], ["96360"]),
    "3a hydration 90 min": ([hyd("10:00", "11:30")], ["96360"]),
    "3b hydration 91 min": ([hyd("10:00", "11:31")], ["96360", "96361"]),
    "4a infusion 15 min": ([adm("ceftriaxone", "10:00", "10:15")], ["96374"]),
    "4b infusion 16 min": ([adm("ceftriaxone", "10:00", "10:16")], ["96365"]),
    "5a infusion 90 min": ([adm("vancomycin", "10:00", "11:30")], ["96365"]),
    "5b infusion 91 min": ([adm("vancomycin", "10:00", "11:31")], ["96365", "96366"]),
    "6a chemo 90 min": ([chemo("cisplatin", "09:00", "10:30")], ["96413"]),
    "6b chemo 93 min": ([chemo("cisplatin", "09:00", "10:33")], ["96413", "96415"]),
    "7 hydration around antibiotic": (
        [hyd("16:00", "19:00"), adm("ceftriaxone", "17:00", "18:00")], ["96361 x2", "96365"]),
    "8 hydration and two pushes": (
        [hyd("08:00", "11:00"), push("ondansetron", "08:10", "08:12"), push("ketorolac", "08:30", "08:33")],
        ["96361 x3", "96374", "96375"]),
    "9 chemo day": (
        [hyd("08:00", "08:45"), adm("antiemetic A", "08:45", "09:25"), chemo("chemo A", "09:25", "10:25"),
         chemo("chemo B", "10:25", "11:55"), adm("antiemetic B", "11:55", "12:10")],
        ["96361", "96367", "96375", "96413", "96417"]),
    "10 antibiotic then chemo": (
        [adm("antibiotic", "08:00", "08:30"), chemo("chemo", "08:30", "10:25")], ["96367", "96413", "96415"]),
    "11 two antibiotics in separate bags": (
        [adm("antibiotic A", "10:00", "11:00"), adm("antibiotic B", "10:00", "11:00")], ["96365", "96368"]),
    "12 oxaliplatin with leucovorin": (
        [chemo("oxaliplatin", "09:33", "12:15"), adm("leucovorin", "09:33", "12:15")],
        ["96368", "96413", "96415 x2"]),
    "13a same push 20 min apart": ([push("ondansetron", "10:00"), push("ondansetron", "10:20")], ["96374"]),
    "13b same push 40 min apart": (
        [push("ondansetron", "10:00"), push("ondansetron", "10:40")], ["96374", "96376"]),
    "13c same push 30 min apart": ([push("ondansetron", "10:00"), push("ondansetron", "10:30")], ["96374"]),
    "14 infusion never stopped": ([adm("ceftriaxone", "14:00", None)], ["96374"]),
    "15 second site with reason": (
        [adm("drug X", "10:00", "11:30", access_site="PIV-L"),
         adm("drug Y", "10:00", "11:00", access_site="PIV-R", separate_access_reason="incompatible")],
        ["96365", "96365-XU"]),
    "16 vancomycin twice": (
        [adm("vancomycin", "07:00", "08:30"), adm("vancomycin", "19:00", "20:30")], ["96365", "96366"]),
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_worked_example(name):
    admins, expected = EXAMPLES[name]
    assert codes(code_encounter(admins)) == expected


def test_example_2a_alerts_hydration_under_31():
    assert alert_codes(code_encounter([hyd("10:00", "10:30")])) == ["HYDRATION_UNDER_31_MIN"]


def test_example_14_alerts_stop_missing_and_flags_line():
    coding = code_encounter([adm("ceftriaxone", "14:00", None)])
    assert alert_codes(coding) == ["STOP_TIME_MISSING"]
    assert coding.alerts[0].severity == "hard"
    assert coding.lines[0].incomplete is True


def test_example_17_hydration_across_midnight_dates():
    coding = code_encounter([hyd("23:00", "+1 02:00")])
    got = [(l.cpt, l.units, l.service_date) for l in coding.lines]
    assert got == [("96360", 1, dt.date(2026, 3, 2)), ("96361", 2, dt.date(2026, 3, 3))]
