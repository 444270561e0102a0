"""Invariants of the state machine and engine, over generated encounters (hypothesis)."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.book import Book
from rules.codes import CodeTable
from tests.events import cancel, discharge, net_charges, run, start, stop, void

INITIAL = CodeTable().initial
DRUGS = ["ondansetron", "ketorolac", "vancomycin", "cisplatin", "saline"]


def _clock(minute: int) -> str:
    day, rest = divmod(minute, 1440)
    t = f"{rest // 60:02d}:{rest % 60:02d}"
    return f"+{day} {t}" if day else t


@st.composite
def administration(draw, index: int):
    admin = f"A{index}"
    drug = draw(st.sampled_from(DRUGS))
    category = {"cisplatin": "chemotherapy", "saline": "hydration"}.get(drug, "therapeutic")
    begin = draw(st.integers(6 * 60, 20 * 60))
    duration = draw(st.one_of(st.none(), st.integers(1, 300)))
    site = draw(st.sampled_from(["L", "R"]))
    fields = dict(drug=drug, category=category, method=draw(st.sampled_from(["infusion", "push"])),
                  route=draw(st.sampled_from(["IV", "IV", "IV", "IA", "SC"])), access_site=site)
    if draw(st.booleans()):
        fields["ordered_duration_minutes"] = draw(st.integers(15, 240))  # an overdue deadline to pass or not
    if site == "R" and draw(st.booleans()):
        fields["separate_access_reason"] = "incompatible"
    events = [start(admin, _clock(begin), **fields)]
    if duration is not None:
        events.append(stop(admin, _clock(begin + duration)))
    if draw(st.integers(0, 9)) == 0:
        events.append(void(admin, _clock(begin + 1)))
    return events


@st.composite
def encounter(draw):
    n = draw(st.integers(1, 5))
    events = [e for i in range(n) for e in draw(administration(i))]
    billing = draw(st.sampled_from(["facility", "facility", "professional"]))
    events.append(discharge("+1 06:00", billing=billing))
    return events


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(encounter(), st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_net_charges(events, rnd):
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert net_charges(run(shuffled)) == net_charges(run(events))


@SETTINGS
@given(encounter(), st.data())
def test_duplicates_change_nothing(events, data):
    with_dups = []
    for e in events:
        with_dups.append(e)
        if data.draw(st.booleans()):
            with_dups.append(dict(e))
    assert run(with_dups) == run(events)


@SETTINGS
@given(encounter())
def test_units_positive_and_one_initial_per_access_group(events):
    lines = net_charges(run(events))
    assert all(units > 0 for _, units, *_ in lines)
    initial_by_group = {}
    for cpt, units, modifiers, *_ in lines:
        if cpt in INITIAL:
            initial_by_group[modifiers] = initial_by_group.get(modifiers, 0) + units
    assert all(n <= 1 for n in initial_by_group.values()), lines


@SETTINGS
@given(encounter(), st.randoms(use_true_random=False))
def test_deltas_net_to_the_coding_of_the_final_state(events, rnd):
    shuffled = list(events)
    rnd.shuffle(shuffled)
    book = Book()
    out = run(shuffled, book)
    final = book.states["E1"].coding().lines
    assert net_charges(out) == sorted(
        (l.cpt, l.units, l.modifiers, l.service_date.isoformat(), l.administration_ids, l.incomplete)
        for l in final)


@SETTINGS
@given(encounter())
def test_output_is_identical_across_runs(events):
    assert run(events) == run(events)


@SETTINGS
@given(encounter(), st.booleans(), st.randoms(use_true_random=False))
def test_a_batch_book_packing_closed_encounters_gives_the_same_records(events, reopened, rnd):
    """The batch holds discharged encounters packed (EncounterState.pack) and keeps no running
    counts: in any arrival order, with repeats and late events, its records are the plain book's."""
    events = list(events) + ([cancel("+1 06:30"), discharge("+1 07:00")] if reopened else [])
    shuffled = events + rnd.sample(events, min(3, len(events)))
    rnd.shuffle(shuffled)
    packed = Book(gauges=False, pack_closed=True)
    assert run(shuffled, packed) == run(shuffled)


def test_packed_states_unpack_to_the_same_state_before_and_after_the_deflate_dictionary(monkeypatch):
    """The first 64 packed documents are kept as JSON and become the dictionary the rest are
    deflated against (rules/encounter.py, _Squeeze): both kinds unpack to the state they packed."""
    import orjson

    from models.events import parse_event
    from rules import encounter
    from simulator import simulate

    squeeze = encounter._Squeeze()
    monkeypatch.setattr(encounter, "_SQUEEZE", squeeze)
    book = Book()
    for line in simulate(encounters=200, seed=11):
        book.handle(parse_event(line))
    closed = [s for s in book.states.values() if s.discharged]
    packed = [(s, s.pack()) for s in closed]
    assert len(closed) > 100 and squeeze._first is None  # the dictionary was made
    assert packed[0][1].doc[:1] == b"[" and packed[-1][1].doc[:1] != b"["
    deflated = sum(len(p.doc) for _, p in packed[64:])
    assert deflated * 8 < sum(len(orjson.dumps(s.to_json())) for s, _ in packed[64:])  # the state's JSON
    for state, p in packed:
        back = encounter.EncounterState.unpack(state.encounter_id, p)
        assert back.coding().lines == state.coding().lines
        assert (back.alerts, back.admins, back.posted) == (state.alerts, state.admins, state.posted)


@SETTINGS
@given(encounter(), encounter(), st.randoms(use_true_random=False), st.integers(0, 2 * 1440))
def test_unrelated_encounters_never_change_an_encounter_s_output(events, other, rnd, shift):
    """Another visit's events, in any interleaving and however far ahead in time, change nothing of
    this one's records: overdue checks follow each encounter's own clock (coding-rules §5)."""
    import datetime as dt

    def moved(e: dict) -> dict:  # the other visit, `shift` minutes later: its clock runs ahead
        at = dt.datetime.fromisoformat(e["occurred_at"]) + dt.timedelta(minutes=shift)
        return {**e, "encounter_id": "E2", "event_id": "other-" + e["event_id"], "occurred_at": at.isoformat()}

    mixed, rest = [], [moved(e) for e in other]
    for e in events:  # this visit's events keep their order; the other's are spread among them
        while rest and rnd.random() < 0.5:
            mixed.append(rest.pop(0))
        mixed.append(e)
    mixed += rest
    alone = run(events)
    assert [r for r in run(mixed) if r.get("encounter_id") == "E1"] == alone
