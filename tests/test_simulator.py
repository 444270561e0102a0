"""The day simulator: reproducible, contract-shaped, and its faults only where intended."""
import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

import pytest

from simulator import simulate, simulate_events
from simulator.catalog import DRUGS
from simulator.charges import code_lines
from simulator.chart import Admin

OFFSET_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:00[+-]\d\d:\d\d$")
COMMON = {"event_id", "type", "encounter_id", "occurred_at"}
OPTIONAL = {"location"}  # contract v1.1: on every event, the encounter's unit, room and bed
FIELDS = {  # contract v1 (docs/contract.md), per type
    "administration.started": {"administration_id", "drug", "category", "route", "method",
                               "access_site", "separate_access_reason", "container_id", "purpose",
                               "ordered_duration_minutes", "device", "primary_reason"},
    "administration.stopped": {"administration_id"},
    "administration.voided": {"administration_id"},
    "encounter.discharged": {"patient_class", "billing"},
    "encounter.discharge_cancelled": set(),
    "charges.submitted": {"lines"},
}


def valid_event(line: str) -> dict | None:
    """The event if the line honours the contract, else None (what a consumer would dead-letter)."""
    try:
        ev = json.loads(line)
    except ValueError:
        return None
    if not isinstance(ev, dict) or ev.get("type") not in FIELDS:
        return None
    if not all(isinstance(ev.get(k), str) for k in COMMON) or not OFFSET_TS.match(ev["occurred_at"]):
        return None
    if set(ev) - COMMON - OPTIONAL - FIELDS[ev["type"]]:
        return None
    if ev["type"] == "administration.started":
        od = ev.get("ordered_duration_minutes", 0)
        if ev["category"] not in ("chemotherapy", "therapeutic", "hydration"):
            return None
        if ev["route"] not in ("IV", "IA", "SC", "IM") or ev["method"] not in ("infusion", "push", "injection"):
            return None
        if type(od) is not int or od < 0:
            return None
    return ev


def by_id(events):
    first = {}
    for ev in events:
        first.setdefault(ev["event_id"], ev)
    return first


@pytest.fixture(scope="module")
def clean_day():
    return list(simulate(400, seed=5, gap_rate=0.0))


@pytest.fixture(scope="module")
def gappy_day():
    return list(simulate_events(400, seed=5, gap_rate=1.0))


def test_same_seed_same_day_and_seeds_differ():
    assert list(simulate(150, seed=3)) == list(simulate(150, seed=3))
    assert list(simulate(150, seed=3)) != list(simulate(150, seed=4))


def test_every_line_is_a_contract_event(clean_day):
    for line in clean_day:
        ev = valid_event(line)
        assert ev is not None, line
        assert re.fullmatch(r"ENC\d+", ev["encounter_id"])
        assert json.dumps(ev, separators=(",", ":")) == line


def test_starts_unique_and_ids_unique_except_identical_repeats(gappy_day):
    seen, starts = {}, Counter()
    repeats = 0
    for ev in gappy_day:
        if ev["event_id"] in seen:
            assert seen[ev["event_id"]] == ev
            repeats += 1
            continue
        seen[ev["event_id"]] = ev
        if ev["type"] == "administration.started":
            starts[ev["administration_id"]] += 1
    assert repeats > 0
    assert max(starts.values()) == 1


def test_clean_day_is_in_time_order_and_complete(clean_day):
    events = [json.loads(line) for line in clean_day]
    stamps = [datetime.fromisoformat(ev["occurred_at"]) for ev in events]
    assert stamps == sorted(stamps)
    start, stop, discharged = {}, {}, Counter()
    last = defaultdict(lambda: stamps[0])
    for ev, at in zip(events, stamps):
        kind, enc = ev["type"], ev["encounter_id"]
        if kind == "administration.started":
            start[ev["administration_id"]] = at
        elif kind == "administration.stopped":
            assert start[ev["administration_id"]] < at
            stop[ev["administration_id"]] = at
        elif kind == "encounter.discharged":
            discharged[enc] += 1
            assert timedelta(0) <= at - last[enc] <= timedelta(minutes=120)
        if kind.startswith("administration"):
            last[enc] = max(last[enc], at)
    assert set(discharged.values()) == {1} and len(discharged) == 400
    assert set(stop) <= set(start)


def test_gaps_show_up(gappy_day):
    kinds = Counter(ev["type"] for ev in gappy_day)
    assert kinds["administration.voided"] and kinds["encounter.discharge_cancelled"]
    started, discharged = set(), set()
    stop_first = stop_late = 0
    for ev in by_id(gappy_day).values():
        if ev["type"] == "administration.started":
            started.add(ev["administration_id"])
        elif ev["type"] == "administration.stopped":
            stop_first += ev["administration_id"] not in started
            stop_late += ev["encounter_id"] in discharged
        elif ev["type"] == "encounter.discharged":
            discharged.add(ev["encounter_id"])
    assert stop_first and stop_late


def test_bad_lines_are_inserted_never_replacing(clean_day):
    noisy = list(simulate(400, seed=5, gap_rate=0.0, bad_line_rate=0.05))
    valid = [line for line in noisy if valid_event(line) is not None]
    assert valid == clean_day
    assert 0.03 < (len(noisy) - len(valid)) / len(noisy) < 0.07
    assert "" in noisy


def test_charge_submissions_are_well_formed():
    subs = [ev for ev in simulate_events(1500, seed=9) if ev["type"] == "charges.submitted"]
    assert 30 <= len(subs) <= 130  # ~5% of encounters
    for ev in subs:
        for line in ev["lines"]:
            assert re.fullmatch(r"96\d{3}", line["cpt"]) and line["units"] >= 1
            assert isinstance(line["modifiers"], list)
            date.fromisoformat(line["service_date"])


def _admin(key, start, stop, method="infusion"):
    return Admin(key + str(start), DRUGS[key], "IV", method, "PIV-1", None, None, None, None, None,
                 None, start, stop)


@pytest.mark.parametrize("admins, expected", [
    # docs/coding-rules.md §8 examples 7, 8, 12, 17
    ([_admin("saline", 960, 1140), _admin("ceftriaxone", 1020, 1080)],
     {("96365", 1, "2026-03-02"), ("96361", 2, "2026-03-02")}),
    ([_admin("saline", 480, 660), _admin("ondansetron", 490, 492, "push"),
      _admin("ketorolac", 510, 513, "push")],
     {("96374", 1, "2026-03-02"), ("96375", 1, "2026-03-02"), ("96361", 3, "2026-03-02")}),
    ([_admin("oxaliplatin", 573, 735), _admin("leucovorin", 573, 735)],
     {("96413", 1, "2026-03-02"), ("96415", 2, "2026-03-02"), ("96368", 1, "2026-03-02")}),
    ([_admin("saline", 1380, 1560)], {("96360", 1, "2026-03-02"), ("96361", 2, "2026-03-03")}),
])
def test_submitted_lines_follow_the_worked_examples(admins, expected):
    date_of = lambda m: (date(2026, 3, 2) + timedelta(days=m // 1440)).isoformat()
    assert {(cpt, n, day) for cpt, n, _, day in code_lines(admins, date_of)} == expected


@pytest.mark.parametrize("seed, offset", [(0, -300), (1, 0), (271828, 60), (999_999, 330), (42, -480)])
def test_any_seed_and_offset_gives_contract_events(seed, offset):
    suffix = f"{'-' if offset < 0 else '+'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    for line in simulate(25, seed=seed, utc_offset_minutes=offset, gap_rate=0.3, bad_line_rate=0.1):
        ev = valid_event(line)
        if ev is not None:
            assert ev["occurred_at"].endswith(suffix)


def test_a_full_day_has_a_realistic_size():
    lines = sum(1 for _ in simulate(20000))
    assert 150_000 <= lines <= 350_000


def test_a_day_carries_units_rooms_and_beds_the_same_on_every_event_of_an_encounter(clean_day):
    """What a nurse manager sees on the demo's worklist: ED bays, the infusion and oncology chairs,
    observation, medical wards and the ICU; never "(unit not known)"."""
    events = [json.loads(line) for line in clean_day]
    assert all("location" in ev for ev in events)
    by_encounter = defaultdict(set)
    for ev in events:
        by_encounter[ev["encounter_id"]].add(json.dumps(ev["location"], sort_keys=True))
    assert all(len(places) == 1 for places in by_encounter.values())
    units = Counter(ev["location"]["unit"] for ev in events)
    assert {"ED", "INFCTR", "ONCINF", "OBS"} <= set(units) and len(units) >= 6
