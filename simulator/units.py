"""Where each simulated patient lies: the units, rooms and beds a nurse manager's worklist groups by
(contract v1.1 `location`). Drawn from the encounter's own seed, so a day's events, times and codes
are the same with or without them."""
from __future__ import annotations

import random
from datetime import date
from functools import lru_cache

# scenario -> (unit, weight, room prefix, rooms, beds per room); several units where a hospital has them
UNITS = {
    "ed": [("ED", 1, "BAY", 24, 1)],
    "second_access": [("ED", 1, "BAY", 24, 1)],
    "observation": [("OBS", 3, "OBS", 12, 2), ("ED", 1, "HALL", 6, 1)],
    "infusion_center": [("INFCTR", 1, "CHAIR", 18, 1)],
    "oncology": [("ONCINF", 1, "CHAIR", 14, 1)],
    "clinic_injection": [("CLINIC", 1, "EXAM", 8, 1)],
    "inpatient": [("4WEST", 3, "4W", 20, 2), ("5EAST", 3, "5E", 20, 2), ("ICU", 1, "ICU", 12, 1)],
}


@lru_cache(maxsize=4096)  # the encounters whose events are being emitted
def place(day: date, encounter_id: str, scenario: str) -> dict:
    """{"unit", "room", "bed"} of one encounter (the same dict for all its events: read, never changed)."""
    rng = random.Random(f"{day}:{encounter_id}:location")
    options = UNITS[scenario]
    unit, _, prefix, rooms, beds = rng.choices(options, [o[1] for o in options])[0]
    room = f"{prefix}{rng.randint(1, rooms):02d}"
    return {"unit": unit, "room": room, "bed": "AB"[rng.randrange(beds)] if beds > 1 else None}
