"""Builders of contract-v1 event dicts, and a runner that feeds them through a Book."""
from __future__ import annotations

import itertools
import json

from models.events import parse_event
from rules.book import Book

DAY = "2026-03-02"
_ids = itertools.count(1)


def at(t: str) -> str:
    """'10:00' -> RFC 3339 on the base day at UTC-5; '+1 02:00' -> next day."""
    day = 2
    if t.startswith("+"):
        d, t = t[1:].split(" ")
        day += int(d)
    return f"2026-03-{day:02d}T{t}:00-05:00"


def _ev(type_: str, t: str, enc: str, **fields) -> dict:
    return {"event_id": f"ev-{next(_ids)}", "type": type_, "encounter_id": enc, "occurred_at": at(t), **fields}


def start(admin: str, t: str, drug: str = "ceftriaxone", category: str = "therapeutic", enc: str = "E1",
          method: str = "infusion", route: str = "IV", **fields) -> dict:
    return _ev("administration.started", t, enc, administration_id=admin, category=category, route=route,
               method=method, drug={"name": drug, "code": None, "system": None}, **fields)


def stop(admin: str, t: str, enc: str = "E1") -> dict:
    return _ev("administration.stopped", t, enc, administration_id=admin)


def void(admin: str, t: str, enc: str = "E1") -> dict:
    return _ev("administration.voided", t, enc, administration_id=admin)


def discharge(t: str, enc: str = "E1", **fields) -> dict:
    return _ev("encounter.discharged", t, enc, **fields)


def cancel(t: str, enc: str = "E1") -> dict:
    return _ev("encounter.discharge_cancelled", t, enc)


def submitted(t: str, lines: list[tuple], enc: str = "E1") -> dict:
    return _ev("charges.submitted", t, enc, lines=[
        {"cpt": c, "units": u, "modifiers": list(m), "service_date": None} for c, u, *m in lines])


def run(events: list[dict], book: Book | None = None) -> list[dict]:
    book = book or Book()
    out = []
    for e in events:
        out += book.handle(parse_event(json.dumps(e)))
    return out


def net_charges(records: list[dict]) -> list[tuple]:
    """Posted lines still standing after reversals, as comparable tuples."""
    standing = {}
    for r in records:
        if r["kind"] != "charge":
            continue
        if r["action"] == "post":
            standing[r["charge_id"]] = r
        else:
            standing.pop(r["reverses"], None)  # a redelivered reversal cancels nothing twice
    return sorted((r["cpt"], r["units"], tuple(r["modifiers"]), r["service_date"],
                   tuple(r["administration_ids"]), r["incomplete_documentation"]) for r in standing.values())


def final_alerts(records: list[dict]) -> dict[tuple, str]:
    """(code, administration_id) -> last state."""
    state = {}
    for r in records:
        if r["kind"] == "alert":
            state[(r["code"], r["administration_id"])] = r["state"]
    return state


def cpts(records: list[dict]) -> list[str]:
    return sorted(c for c, u, *_ in net_charges(records) for _ in range(u))


def standing_alerts(records: list[dict]) -> set[tuple]:
    """Alerts still raised at the end, as (encounter, code, administration, message): the same
    problem reads the same however often it was raised and resolved on the way."""
    last = {}
    for r in records:
        if r["kind"] == "alert":
            last[r["alert_id"]] = r
    return {(r["encounter_id"], r["code"], r["administration_id"], r["message"])
            for r in last.values() if r["state"] == "raised"}
