"""Event tuples as the simulator holds them, and their rendering as contract-v1 dicts (docs/contract.md).

A day can hold hundreds of thousands of events, so each is a flat tuple until it is emitted:
    (arrival, tie, event_no, type, occurred, payload)
`arrival` (minute) and `tie` order the wire; `occurred` is the clinical minute in `occurred_at`.
tie 0 jumps ahead of events arriving in the same minute, 2 falls behind them.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Iterator

from .catalog import RXNORM
from .chart import Admin

STARTED = "administration.started"
STOPPED = "administration.stopped"
VOIDED = "administration.voided"
DISCHARGED = "encounter.discharged"
CANCELLED = "encounter.discharge_cancelled"
CHARGES = "charges.submitted"
DELIVERY = "device.delivery"
TYPES = (STARTED, STOPPED, VOIDED, DISCHARGED, CANCELLED, CHARGES, DELIVERY)


def admin_events(a: Admin, ids: Iterator[int], arrival: int | None = None, tie: int = 1) -> list:
    """Start and (if documented) stop of one administration, arriving as they happen by default."""
    evs = [(a.start if arrival is None else max(arrival, a.start), tie, next(ids), STARTED, a.start, a)]
    if a.stop is not None:
        at = a.stop if arrival is None else max(arrival, a.stop)
        evs.append((at, tie, next(ids), STOPPED, a.stop, a.admin_id))
    return evs


class Clock:
    """Formats minutes of the simulated day as RFC 3339 local timestamps (cached: few distinct)."""

    def __init__(self, day: date, utc_offset_minutes: int):
        tz = timezone(timedelta(minutes=utc_offset_minutes))
        self.midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        self.day = day
        self._cache: dict[int, str] = {}

    def stamp(self, minute: int) -> str:
        s = self._cache.get(minute)
        if s is None:
            s = self._cache[minute] = (self.midnight + timedelta(minutes=minute)).isoformat()
        return s

    def date_of(self, minute: int) -> str:
        return (self.day + timedelta(days=minute // 1440)).isoformat()


def _started_fields(ev: dict, a: Admin) -> None:
    d = a.drug
    ev["administration_id"] = a.admin_id
    ev["drug"] = {"name": d.name, "code": d.code, "system": RXNORM}
    ev["category"] = d.category
    ev["route"] = a.route
    ev["method"] = a.method
    if a.site is not None:
        ev["access_site"] = a.site
    if a.reason is not None:
        ev["separate_access_reason"] = a.reason
    if a.container is not None:
        ev["container_id"] = a.container
    if a.purpose is not None:
        ev["purpose"] = a.purpose
    if a.ordered is not None:
        ev["ordered_duration_minutes"] = a.ordered
    if a.device is not None:
        ev["device"] = a.device
    if a.primary is not None:
        ev["primary_reason"] = a.primary


def render(encounter_id: str, event_no: int, kind: str, occurred: int, payload, clock: Clock) -> dict:
    ev = {"event_id": f"ev-{event_no:07d}", "type": kind, "encounter_id": encounter_id,
          "occurred_at": clock.stamp(occurred)}
    if kind == STARTED:
        _started_fields(ev, payload)
    elif kind == STOPPED or kind == VOIDED:
        ev["administration_id"] = payload
    elif kind == DISCHARGED:
        ev["patient_class"], ev["billing"] = payload
    elif kind == DELIVERY:
        ev["event_id"], ev["device_id"], ev["channel"], ev["status"], name, code = payload
        ev["drug"] = {"name": name, "code": code, "system": RXNORM}
    elif kind == CHARGES:
        ev["lines"] = [{"cpt": cpt, "units": units, "modifiers": list(mods), "service_date": day}
                       for cpt, units, mods, day in payload]
    return ev
