"""Documentation gaps: the ways real charts and interfaces differ from the clinical truth.

`overrun` changes what happened (before discharge is placed); the others change what is
documented or how it arrives, on the encounter's event tuples (see events.py).
"""
from __future__ import annotations

import random
from typing import Iterator

from .chart import Admin, Chart
from .events import CANCELLED, DISCHARGED, STARTED, STOPPED, VOIDED, admin_events

KINDS = ("missing_stop", "late_stop", "duplicate", "out_of_order", "void",
         "discharge_cancelled", "overrun")


def _is_run(a: Admin) -> bool:
    """A treatment infusion (drug or hydration): the kind whose stop time matters."""
    return a.method == "infusion" and a.purpose in (None, "treatment")


def overrun(rng: random.Random, c: Chart) -> bool:
    """An infusion left running 1-3 h past its order before anyone documents the stop."""
    idx = [i for i, a in enumerate(c.admins) if _is_run(a) and a.ordered is not None]
    if not idx:
        return False
    i = rng.choice(idx)
    a = c.admins[i]
    c.admins[i] = a._replace(stop=a.start + a.ordered + rng.randint(60, 180))
    return True


def _discharge_at(evs: list) -> int:
    return next(e[4] for e in evs if e[3] == DISCHARGED)


def _stops(evs: list, c: Chart, runs_only: bool = False) -> list[int]:
    by_id = {a.admin_id: a for a in c.admins}
    return [i for i, e in enumerate(evs)
            if e[3] == STOPPED and (not runs_only or _is_run(by_id[e[5]]))]


def missing_stop(rng, evs, c, ids) -> bool:
    """An infusion whose stop is never documented."""
    idx = _stops(evs, c, runs_only=True)
    if not idx:
        return False
    del evs[rng.choice(idx)]
    return True


def late_stop(rng, evs, c, ids) -> bool:
    """A stop charted after the patient left (late documentation)."""
    idx = _stops(evs, c)
    if not idx:
        return False
    i = rng.choice(idx)
    e = evs[i]
    evs[i] = (_discharge_at(evs) + rng.randint(30, 720), 1) + e[2:]
    return True


def duplicate(rng, evs, c, ids) -> bool:
    """The interface re-sends 1-3 events unchanged (same event_id) a few minutes later."""
    for e in rng.sample(evs, min(len(evs), rng.randint(1, 3))):
        evs.append((e[0] + rng.randint(0, 15), 1) + e[2:])
    return True


def out_of_order(rng, evs, c, ids) -> bool:
    """A start charted late, arriving just after its stop; or the discharge overtaking the last
    stop. Nothing arrives before it happened: occurred_at never runs ahead of the wire."""
    idx = _stops(evs, c)
    if not idx:
        return False
    if rng.random() < 0.5:
        i = rng.choice(idx)
        j = next(j for j, e in enumerate(evs) if e[3] == STARTED and e[5].admin_id == evs[i][5])
        evs[j] = (evs[i][0], 2) + evs[j][2:]
    else:
        i = max(idx, key=lambda j: evs[j][4])
        evs[i] = (_discharge_at(evs), 2) + evs[i][2:]
    return True


def void(rng, evs, c, ids) -> bool:
    """An administration entered in error; half the time re-entered with corrected times."""
    if not c.admins:
        return False
    a = rng.choice(c.admins)
    discharge = _discharge_at(evs)
    at = rng.randint(a.start + 1, max(a.start + 1, discharge))
    if rng.random() < 0.3:
        at = discharge + rng.randint(10, 240)  # a correction after discharge
    evs.append((at, 1, next(ids), VOIDED, at, a.admin_id))
    if rng.random() < 0.5:
        end = a.stop if a.stop is not None else a.start
        shift = rng.randint(-10, max(-10, min(10, discharge - end)))
        fixed = a._replace(admin_id=c.new_admin_id(), start=a.start + shift,
                           stop=None if a.stop is None else a.stop + shift,
                           container=a.container and c.new_bag())
        c.admins.append(fixed)
        evs += admin_events(fixed, ids, arrival=at + rng.randint(1, 10), tie=2)
    return True


def discharge_cancelled(rng, evs, c, ids) -> bool:
    """Discharge cancelled (ADT^A13), sometimes one more dose given, then discharged again."""
    i = next(i for i, e in enumerate(evs) if e[3] == DISCHARGED)
    first = evs[i]
    at = first[4] + rng.randint(5, 60)
    evs.append((at, 1, next(ids), CANCELLED, at, None))
    if rng.random() < 0.5:
        n = len(c.admins)
        at = c.push(rng.choice(("ondansetron", "ketorolac")), at + rng.randint(5, 30))
        evs += admin_events(c.admins[n], ids)
    again = at + rng.randint(10, 90)
    evs.append((again, 1, next(ids), DISCHARGED, again, first[5]))
    return True


EVENT_GAPS = {"missing_stop": missing_stop, "late_stop": late_stop, "duplicate": duplicate,
              "out_of_order": out_of_order, "void": void,
              "discharge_cancelled": discharge_cancelled}


def apply(rng: random.Random, kind: str, evs: list, c: Chart, ids: Iterator[int]) -> None:
    """Apply the chosen event-level gap, or a duplicate when the chart has nothing it fits."""
    if not EVENT_GAPS[kind](rng, evs, c, ids):
        duplicate(rng, evs, c, ids)
