"""What infusion pumps report of a simulated encounter (contract v1.2 `device.delivery`).

The pump reports the clinical truth of an administration run on it (Chart's times, before any
documentation gap removed a charted stop), so a missing stop in the MAR meets the pump's completion:
PUMP_STOPPED_UNDOCUMENTED, and the stop-time alerts that name the pump's time. Some charts run
ahead of the pump (a start charted at the scheduled time): PUMP_TIME_MISMATCH. Now and then a pump
runs a bag of fluid nobody charts: PUMP_INFUSION_UNDOCUMENTED.

Drawn from a random stream of its own and numbered apart (pd-...), so a day's clinical events are
the same with any share of pumps reporting.
"""
from __future__ import annotations

import random
from typing import Iterator

from .catalog import DRUGS
from .chart import Admin, Chart
from .events import DELIVERY

LATE_CHART = 0.15  # tracked infusions whose charted start runs 20-30 min ahead of the pump's
UNCHARTED = 0.03  # encounters with a fluid bag the pump ran and nobody charted


def pump_events(rng: random.Random, c: Chart, share: float, ids: Iterator[int]) -> list:
    """Event tuples (arrival, tie, event_no, DELIVERY, occurred, payload) of the encounter's pumps."""
    if not share:
        return []
    out, n = [], 0
    for a in c.admins:
        if not _on_pump(a) or rng.random() >= share:
            continue
        n += 1
        device, channel = f"PUMP-{c.encounter_id[-5:]}-{n}", "1/A"
        start = a.start + (rng.randint(20, 30) if rng.random() < LATE_CHART else rng.randint(0, 2))
        stop = max(start + 1, a.stop + rng.randint(-2, 2))
        out += [_event(next(ids), start, device, channel, "started", a.drug),
                _event(next(ids), stop, device, channel, "completed", a.drug)]
    if c.admins and rng.random() < UNCHARTED:
        start = c.admins[0].start + rng.randint(30, 90)
        fluid = DRUGS["saline"]
        out += [_event(next(ids), start, f"PUMP-{c.encounter_id[-5:]}-X", "1/B", "started", fluid),
                _event(next(ids), start + rng.randint(30, 60), f"PUMP-{c.encounter_id[-5:]}-X", "1/B", "completed",
                       fluid)]
    return out


def _on_pump(a: Admin) -> bool:
    return a.device == "pump" and a.method == "infusion" and a.purpose in (None, "treatment") and a.stop is not None


def _event(n: int, minute: int, device: str, channel: str, status: str, drug) -> tuple:
    return (minute, 1, n, DELIVERY, minute, (f"pd-{n:07d}", device, channel, status, drug.name, drug.code))
