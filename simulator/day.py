"""A reproducible hospital day of medication-administration events (contract v1, docs/contract.md).

Encounters are drawn up front (arrival minute and scenario: a few bytes each), sorted by arrival,
and charted one at a time; their event tuples wait in a heap keyed by wire arrival. An event is
emitted once no encounter still to be charted can arrive before it, so memory holds the
encounters in progress, not the whole day.
"""
from __future__ import annotations

import heapq
import itertools
import json
import random
from datetime import date
from typing import Iterator

from . import charges, gaps, pumps, scenarios, units
from .badlines import bad_line
from .chart import Chart
from .events import CHARGES, DISCHARGED, Clock, admin_events, render

DAY = date(2026, 3, 2)
_compact = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps(..., separators) minus overhead


def _draw(rng: random.Random, encounters: int) -> list[tuple[int, str]]:
    """(arrival minute, scenario) per encounter, in arrival order."""
    names = rng.choices(scenarios.NAMES, scenarios.WEIGHTS, k=encounters)
    return sorted((scenarios.SCENARIOS[n][1](rng), n) for n in names)


def _chart(rng, encounter_id, t0, scenario, gap_rate, ids, bags, clock, pump=None) -> list:
    """Event tuples of one encounter, gaps and charge submissions included; `pump`: (its random
    stream, the share of pump infusions whose pump reports, its event numbers)."""
    c = Chart(rng, encounter_id, bags)
    patient_class = scenarios.SCENARIOS[scenario][2](c, t0)
    if rng.random() < 0.02:
        scenarios.long_push(c)
    billing = "facility"
    if rng.random() < 0.05:
        billing = "professional"
        scenarios.make_professional(c)
    gap = rng.choice(gaps.KINDS) if rng.random() < gap_rate else None
    if gap == "overrun" and not gaps.overrun(rng, c):
        gap = "duplicate"
    evs = []
    for a in c.admins:
        evs += admin_events(a, ids)
    discharge = c.last_time() + rng.randint(0, 120)
    evs.append((discharge, 1, next(ids), DISCHARGED, discharge, (patient_class, billing)))
    if gap is not None and gap != "overrun":
        gaps.apply(rng, gap, evs, c, ids)
    elif gap is None and patient_class != "inpatient" and billing == "facility":
        _submit(rng, evs, c, discharge, ids, clock)
    if pump is not None:
        evs += pumps.pump_events(pump[0], c, pump[1], pump[2])
    return evs


def _submit(rng, evs, c, discharge, ids, clock) -> None:
    """~3% submissions with a typical billing error, ~2% correct ones, some hours after discharge."""
    r = rng.random()
    if r >= 0.05:
        return
    lines = charges.code_lines(c.admins, clock.date_of)
    if r < 0.03:
        lines = charges.with_error(rng, lines, c.admins)
    at = discharge + rng.randint(15, 720)
    evs.append((at, 1, next(ids), CHARGES, at, tuple(lines)))


def simulate_events(encounters: int = 2000, seed: int = 7, day: date = DAY,
                    utc_offset_minutes: int = -300, gap_rate: float = 0.05, pump_share: float = 0.0) -> Iterator[dict]:
    """Yield the day's valid event dicts in arrival order; the same arguments give the same day.
    `pump_share`: of the infusions run on a pump, the share whose pump reports (simulator/pumps.py)."""
    rng = random.Random(seed)
    pump = (random.Random(f"{seed}:pumps"), pump_share, itertools.count(1)) if pump_share else None
    clock = Clock(day, utc_offset_minutes)
    ids, bags, order = itertools.count(1), itertools.count(1), itertools.count()
    prefix = f"ENC{day:%y%m%d}"
    width = max(5, len(str(encounters)))
    heap: list = []
    scenario_of = bytearray()  # encounter number - 1 -> its scenario's index: a byte each, for its location
    for n, (t0, scenario) in enumerate(_draw(rng, encounters), 1):
        # every event of this and later encounters arrives at t0 or after
        while heap and heap[0][0] < (t0 * 4) << 40:
            yield _emit(heapq.heappop(heap), clock)
        encounter_id = f"{prefix}{n:0{width}d}"
        scenario_of.append(scenarios.NAMES.index(scenario))
        for ev in _chart(rng, encounter_id, t0, scenario, gap_rate, ids, bags, clock, pump):
            # one int key (arrival, tie, push order): cheaper to compare than a tuple prefix
            key = ((ev[0] * 4 + ev[1]) << 40) + next(order)
            heapq.heappush(heap, (key, encounter_id, scenario_of[n - 1]) + ev[2:])
    while heap:
        yield _emit(heapq.heappop(heap), clock)


def _emit(item: tuple, clock: Clock) -> dict:
    _, encounter_id, scenario, event_no, kind, occurred, payload = item
    ev = render(encounter_id, event_no, kind, occurred, payload, clock)
    # the unit, room and bed, as an ADT-fed MAR stamps every message (contract v1.1 location)
    ev["location"] = units.place(clock.day, encounter_id, scenarios.NAMES[scenario])
    return ev


def simulate(encounters: int = 2000, seed: int = 7, day: date = DAY, utc_offset_minutes: int = -300,
             gap_rate: float = 0.05, bad_line_rate: float = 0.0, pump_share: float = 0.0) -> Iterator[str]:
    """Yield JSON Lines (one str per line, no trailing newline) in arrival order.

    Bad lines come from their own generator and are only inserted, so the valid lines are
    exactly those of bad_line_rate=0.
    """
    if not 0.0 <= bad_line_rate < 1.0:
        raise ValueError("bad_line_rate must be in [0, 1)")
    bad_rng = random.Random(f"{seed}:bad-lines")
    bad = 0
    for ev in simulate_events(encounters, seed, day, utc_offset_minutes, gap_rate, pump_share):
        line = _compact(ev)
        while bad_line_rate and bad_rng.random() < bad_line_rate:
            bad += 1
            yield bad_line(bad_rng, bad, ev, line)
        yield line
