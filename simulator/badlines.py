"""Malformed input lines, modelled on what real interfaces send beside the good ones.

Each is built from the valid event it sits next to (same encounter, same minute) so a processor
that rejects too much, or not enough, shows it on a real encounter. Bad lines get their own
event ids ("ev-x...") and administration ids, so they never collide with valid ones.
"""
from __future__ import annotations

import json
import random

KINDS = ("truncated", "not_json", "array", "unknown_type", "no_encounter", "no_offset",
         "vitamins", "bad_duration", "empty")

_NOT_JSON = ("heartbeat", "ERROR: upstream connection reset",
             "<administration status=\"started\"/>",
             "MSH|^~\\&|MAR|NURSING|||202603020815||RAS^O17|1|P|2.5")


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _started_like(ev: dict, n: int) -> dict:
    """An administration.started on the neighbour's encounter, with ids of its own."""
    return {"event_id": f"ev-x{n:06d}", "type": "administration.started",
            "encounter_id": ev["encounter_id"], "occurred_at": ev["occurred_at"],
            "administration_id": f"{ev['encounter_id']}-MAX{n:06d}",
            "drug": {"name": "ondansetron", "code": "26225",
                     "system": "http://www.nlm.nih.gov/research/umls/rxnorm"},
            "category": "therapeutic", "route": "IV", "method": "infusion",
            "ordered_duration_minutes": 30, "device": "pump"}


def bad_line(rng: random.Random, n: int, ev: dict, line: str) -> str:
    """The n-th bad line of the stream, derived from the valid event `ev` (serialized as `line`)."""
    kind = rng.choice(KINDS)
    if kind == "truncated":  # a strict prefix of an object is never valid JSON
        return line[:rng.randint(1, len(line) - 1)]
    if kind == "not_json":
        return rng.choice(_NOT_JSON)
    if kind == "empty":
        return ""
    bad = dict(ev, event_id=f"ev-x{n:06d}")
    if kind == "array":
        return _dumps([bad])
    if kind == "unknown_type":
        bad["type"] = rng.choice(("administration.paused", "medication.dispensed", "ADMIN_START"))
    elif kind == "no_encounter":
        del bad["encounter_id"]
    elif kind == "no_offset":
        bad["occurred_at"] = ev["occurred_at"][:19]
    elif kind == "vitamins":
        bad = _started_like(ev, n)
        bad["drug"] = {"name": "multivitamin infusion", "code": None, "system": None}
        bad["category"] = "vitamins"
    else:  # bad_duration
        bad = _started_like(ev, n)
        bad["ordered_duration_minutes"] = rng.choice((-30, -1, "60", "1h"))
    return _dumps(bad)
