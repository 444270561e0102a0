"""Coding-rules §2, second access site (issue 12 item 4): the separate-access reason is documented
once per site, and every administration through that site belongs to the site's group."""
import json
import random

from models.events import parse_event
from rules.book import Book
from rules.engine import code_encounter
from rules.encounter import EncounterState
from tests import events as ev
from tests.builders import adm, codes, hyd, push

REASON = "vesicant incompatible with the running line"


def _lines(coding) -> list[tuple]:
    """Engine lines in the shape tests.events.net_charges gives for the state machine's posts."""
    return sorted((l.cpt, l.units, l.modifiers, l.service_date.isoformat(), l.administration_ids, l.incomplete)
                  for l in coding.lines)


def _state(events: list[dict]) -> EncounterState:
    book = Book()
    for e in events:
        book.handle(parse_event(json.dumps(e)))
    return book.states["E1"]


# -- the pure engine ----------------------------------------------------------------------------

def test_worked_example_15_in_either_order():
    x = adm("X", "10:00", "11:30", access_site="left arm", id="X")
    y = adm("Y", "10:00", "11:00", access_site="right arm", separate_access_reason=REASON, id="Y")
    for admins in ([x, y], [y, x]):
        coding = code_encounter(admins)
        assert codes(coding) == ["96365", "96365-XU"]
        assert {l.administration_ids: l.modifiers for l in coding.lines} == {("X",): (), ("Y",): ("XU",)}


def test_later_administrations_on_the_site_without_the_reason_stay_in_its_group():
    # R: Y with the reason, then hydration and a push through R that do not repeat it.
    admins = [adm("X", "10:00", "11:30", access_site="L"),
              adm("Y", "10:00", "11:00", access_site="R", separate_access_reason=REASON),
              hyd("11:00", "12:00", access_site="R"),
              push("ondansetron", "12:10", access_site="R")]
    coding = code_encounter(admins)
    # One initial per site; R's hydration nets only against R's drug (60 min), not X until 11:30 (30 min).
    assert codes(coding) == ["96361-XU", "96365", "96365-XU", "96375-XU"]
    assert coding.alerts == [] and coding.initial_kinds == ["drug", "drug"]


def test_reason_documented_only_on_the_sites_second_administration():
    admins = [adm("X", "09:00", "11:30", access_site="L"),
              hyd("09:00", "10:00", access_site="R"),
              adm("Y", "10:00", "11:00", access_site="R", separate_access_reason=REASON)]
    assert codes(code_encounter(admins)) == ["96361-XU", "96365", "96365-XU", "96366"]


def test_administration_without_a_site_stays_in_the_main_group():
    admins = [adm("X", "10:00", "11:30", id="X"),
              adm("Y", "10:00", "11:00", access_site="R", separate_access_reason=REASON, id="Y"),
              push("ondansetron", "11:45", id="P")]
    coding = code_encounter(admins)
    assert codes(coding) == ["96365", "96365-XU", "96375"]
    # A reason with no site names no separate access: it cannot leave the main group either.
    no_site = [adm("X", "10:00", "11:30", access_site="L"), adm("Y", "10:00", "11:00", separate_access_reason=REASON)]
    assert codes(code_encounter(no_site)) == ["96365", "96368"]


def test_when_every_site_documents_a_reason_the_earliest_site_is_main():
    admins = [adm("X", "10:00", "11:30", access_site="L", separate_access_reason=REASON, id="X"),
              adm("Y", "09:00", "10:00", access_site="R", separate_access_reason=REASON, id="Y"),
              push("ondansetron", "10:30", access_site="R", id="P")]
    coding = code_encounter(admins)
    assert {l.administration_ids: (l.cpt, l.modifiers) for l in coding.lines} == {
        ("Y",): ("96365", ()), ("P",): ("96375", ()), ("X",): ("96365", ("XU",))}
    # One site only, even with the reason: it is the encounter's one group, no modifier.
    one_site = [adm("X", "10:00", "11:30", access_site="L"),
                adm("Y", "10:00", "11:00", access_site="L", separate_access_reason=REASON)]
    assert codes(code_encounter(one_site)) == ["96365", "96368"]
    # Same earliest start on both sites: the smallest administration id decides (as §2's ties do).
    tie = [adm("X", "10:00", "11:30", access_site="R", separate_access_reason=REASON, id="B"),
           adm("Y", "10:00", "11:00", access_site="L", separate_access_reason=REASON, id="A")]
    assert {l.administration_ids: l.modifiers for l in code_encounter(tie).lines} == {("A",): (), ("B",): ("XU",)}


def test_reason_on_an_unbilled_administration_through_the_site_counts():
    admins = [adm("X", "10:00", "11:30", access_site="L"),
              hyd("09:55", "09:56", access_site="R", purpose="flush", separate_access_reason=REASON),
              adm("Y", "10:00", "11:00", access_site="R")]
    assert codes(code_encounter(admins)) == ["96365", "96365-XU"]


def test_blank_reason_or_one_on_a_non_vascular_route_does_not_separate():
    blank = [adm("X", "10:00", "11:30", access_site="L"),
             adm("Y", "10:00", "11:00", access_site="R", separate_access_reason="   ")]
    assert codes(code_encounter(blank)) == ["96365", "96368"]
    sc = [adm("X", "10:00", "11:30", access_site="L"), adm("Y", "10:00", "11:00", access_site="R"),
          push("enoxaparin", "12:00", route="SC", access_site="R", separate_access_reason=REASON)]
    assert codes(code_encounter(sc)) == ["96365", "96368", "96372"]


# -- the state machine (batch and stream) -------------------------------------------------------

_SITE_EVENTS = [
    ev.start("X", "10:00", drug="cefazolin", access_site="L"), ev.stop("X", "11:30"),
    ev.start("Y", "10:00", drug="vancomycin", access_site="R", separate_access_reason=REASON), ev.stop("Y", "11:00"),
    ev.start("H", "11:00", drug="saline", category="hydration", access_site="R"), ev.stop("H", "12:00"),
    ev.start("P", "12:10", drug="ondansetron", method="push", access_site="R"),
    ev.discharge("13:00"),
]


def test_state_machine_codes_the_same_lines_as_the_engine_in_any_order():
    # 400 of the 40,320 orders, drawn with a fixed seed (all of them take minutes), plus the two extremes.
    rng = random.Random(12)
    orders = [_SITE_EVENTS, _SITE_EVENTS[::-1]] + [rng.sample(_SITE_EVENTS, len(_SITE_EVENTS)) for _ in range(400)]
    expected = None
    for order in orders:
        lines = ev.net_charges(ev.run(order))
        expected = expected or lines
        assert lines == expected, [e["type"] + " " + e.get("administration_id", "") for e in order]
    state = _state(_SITE_EVENTS)
    assert expected == _lines(code_encounter(state.administrations()))
    assert [(c, m) for c, _, m, *_ in expected] == [("96361", ("XU",)), ("96365", ()), ("96365", ("XU",)),
                                                    ("96375", ("XU",))]


def test_state_machine_reason_arriving_last_moves_the_site_and_reverses_what_it_replaces():
    # The site's only reason is on Y's start, which arrives after discharge: the posted one-group
    # coding is reversed and the two-group coding posted, as the engine codes it in one pass.
    late = [e for e in _SITE_EVENTS if e.get("administration_id") != "Y" or e["type"] != "administration.started"]
    y_start = next(e for e in _SITE_EVENTS if e.get("administration_id") == "Y" and e["type"] == "administration.started")
    records = ev.run(late + [y_start])
    assert any(r["kind"] == "charge" and r["action"] == "reverse" for r in records)
    assert ev.net_charges(records) == ev.net_charges(ev.run(_SITE_EVENTS))


def test_voided_administration_carrying_the_only_reason_folds_the_site_into_the_main_group():
    events = _SITE_EVENTS + [ev.void("Y", "12:30")]
    state = _state(events)
    lines = ev.net_charges(ev.run(events))
    assert lines == _lines(code_encounter(state.administrations()))
    assert all(m == () for _, _, m, *_ in lines)  # no XU: the site's reason is gone with Y
    # One group: R's hydration now nets against X (running to 11:30), leaving 30 min: not billable.
    assert [c for c, *_ in lines] == ["96365", "96375"]
    assert ("HYDRATION_UNDER_31_MIN", "H") in ev.final_alerts(ev.run(events))
