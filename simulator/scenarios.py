"""Encounter scenarios of a hospital day: who arrives when, and what the nurses document.

Each scenario writes administrations into a Chart starting at or after the arrival minute `t0`
and returns the patient class the encounter is discharged with.
"""
from __future__ import annotations

import random

from .catalog import FLUIDS, PIV_SITES, SECOND_LINE
from .chart import Chart

# ED arrivals by hour of day: quiet overnight, busy from late morning into the evening.
_ED_HOURLY = (2, 2, 1.5, 1.2, 1, 1, 1.5, 2.5, 3.5, 4.5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 4.5, 4, 3.5, 3, 2.5)
_HOURS = tuple(range(24))


def ed_arrival(rng: random.Random) -> int:
    return rng.choices(_HOURS, _ED_HOURLY)[0] * 60 + rng.randrange(60)


def ed_visit(c: Chart, t0: int) -> str:
    """Hydration 1-3 h with 1-3 pushes, sometimes a repeat push or an antibiotic piggyback."""
    rng = c.rng
    t = t0 + rng.randint(10, 60)
    end = t + rng.randint(30, 90)
    if rng.random() < 0.85:
        end = c.infusion(rng.choice(FLUIDS), t, rng.randint(60, 180))
    span = end - t
    pool = ["ondansetron", "ketorolac", "morphine"]
    if rng.random() < 0.3:
        pool.append(rng.choice(("famotidine", "diphenhydramine", "pantoprazole")))
    for key in rng.sample(pool, rng.choice((1, 1, 2, 2, 3))):
        at = t + rng.randint(0, span - 5)
        done = c.push(key, at)
        if key in ("morphine", "ondansetron") and rng.random() < 0.25:
            c.push(key, at + rng.randint(20, 60))  # repeat dose
        if rng.random() < 0.1:
            c.push("saline", done + 1, minutes=1, purpose="flush")
    if rng.random() < 0.2:
        at = t + rng.randint(0, max(0, span - 30))
        key = rng.choice(("ceftriaxone", "piptazo"))
        minutes = rng.randint(28, 35) if key == "ceftriaxone" else rng.randint(30, 60)
        c.infusion(key, at, minutes)
        if rng.random() < 0.25:  # piggyback on a saline carrier: never billed
            c.infusion("saline", at, minutes, purpose="carrier", ordered=False)
    if rng.random() < 0.08:  # saline KVO at 10 mL/h to keep the line open
        c.infusion("saline", t, c.last_time() - t, purpose="kvo", device="pump", ordered=False)
    return "emergency"


_IC_DRUGS = ("vancomycin", "ceftriaxone", "ivig", "iron_sucrose", "piptazo")
_IC_WEIGHTS = (30, 20, 20, 20, 10)
_IC_MINUTES = {"vancomycin": (60, 150), "ceftriaxone": (28, 35), "ivig": (120, 240),
               "iron_sucrose": (15, 30), "piptazo": (30, 40)}


def clinic_arrival(rng: random.Random) -> int:
    return rng.randint(7 * 60, 16 * 60)


def infusion_center(c: Chart, t0: int) -> str:
    """One outpatient infusion (OPAT antibiotic, IVIG, iron), sometimes repeated later that day."""
    rng = c.rng
    if rng.random() < 0.25:
        c.site = "PICC-1"
    t = t0 + rng.randint(15, 45)
    key = rng.choices(_IC_DRUGS, _IC_WEIGHTS)[0]
    if key == "ivig" and rng.random() < 0.6:
        t = c.push("diphenhydramine", t) + rng.randint(10, 30)
    lo, hi = _IC_MINUTES[key]
    stop = c.infusion(key, t, rng.randint(lo, hi))
    if rng.random() < 0.15:
        c.infusion(rng.choice(FLUIDS), stop + rng.randint(0, 5), rng.randint(30, 90))
    again = stop + rng.randint(240, 480)
    if rng.random() < 0.15 and again <= 19 * 60:  # next dose of the same drug, before closing
        c.infusion(key, again, rng.randint(lo, hi))
    return "outpatient"


_REGIMENS = ("paclitaxel_carboplatin", "cisplatin", "folfox", "rituximab", "carboplatin", "bortezomib")
_REGIMEN_WEIGHTS = (30, 20, 20, 12, 10, 8)


def oncology_arrival(rng: random.Random) -> int:
    return rng.randint(7 * 60 + 30, 12 * 60)


def _premeds(c: Chart, t: int, regimen: str) -> int:
    """Antiemetic/steroid (pushes or short piggybacks), antihistamines before taxanes/rituximab."""
    rng = c.rng
    keys = ["dexamethasone", "ondansetron"]
    if regimen in ("paclitaxel_carboplatin", "rituximab"):
        keys += ["diphenhydramine", "famotidine"]
    for key in keys:
        if key in ("dexamethasone", "ondansetron") and rng.random() < 0.4:
            t = c.infusion(key, t, rng.randint(15, 20))
        else:
            t = c.push(key, t)
        t += rng.randint(1, 5)
    return t


def oncology(c: Chart, t0: int) -> str:
    """A chemo day: hydration, pre-meds, chemo in sequence (or FOLFOX bags side by side)."""
    rng = c.rng
    if rng.random() < 0.7:
        c.site = "PORT-1"
    t = t0 + rng.randint(20, 60)
    regimen = rng.choices(_REGIMENS, _REGIMEN_WEIGHTS)[0]
    if regimen == "bortezomib":
        if rng.random() < 0.5:
            t = c.push("dexamethasone", t) + rng.randint(5, 15)
        c.injection("bortezomib", t, "SC")
        return "outpatient"
    if regimen == "cisplatin" or rng.random() < 0.35:
        pre = rng.randint(60, 120) if regimen == "cisplatin" else rng.randint(30, 60)
        t = c.infusion(rng.choice(FLUIDS), t, pre) + rng.randint(0, 5)
    t = _premeds(c, t, regimen)
    if regimen == "paclitaxel_carboplatin":
        t = c.infusion("paclitaxel", t, rng.randint(175, 190)) + rng.randint(0, 10)
        t = c.infusion("carboplatin", t, rng.randint(30, 60))
    elif regimen == "cisplatin":
        t = c.infusion("cisplatin", t, rng.randint(60, 120))
    elif regimen == "folfox":  # oxaliplatin and leucovorin in separate bags over the same period
        minutes = rng.randint(115, 125)
        stop = c.infusion("oxaliplatin", t, minutes)
        lag = rng.randint(0, 3)
        t = max(stop, c.infusion("leucovorin", t + lag, minutes + rng.randint(-3, 3)))
        if rng.random() < 0.7:  # the 5-FU bolus, then the 46-hour take-home pump (96416): disconnected days later
            t = c.push("fluorouracil", t + rng.randint(0, 5))
            c.take_home_pump("fluorouracil", t + 5, 46 * 60)
    elif regimen == "rituximab":
        t = c.infusion("rituximab", t, rng.randint(240, 360))
    else:
        t = c.infusion("carboplatin", t, rng.randint(30, 60))
    if regimen == "cisplatin" or rng.random() < 0.25:
        t = c.infusion(rng.choice(FLUIDS), t + rng.randint(0, 5), rng.randint(60, 120))
    if rng.random() < 0.15:
        t = c.injection("pegfilgrastim", t + rng.randint(5, 15), "SC")
    if rng.random() < 0.04:
        t = c.infusion("scig", t + rng.randint(5, 15), rng.randint(60, 120), route="SC")
    if c.site == "PORT-1" and rng.random() < 0.2:
        c.push("saline", t + 1, minutes=1, purpose="flush")
    return "outpatient"


_OBS_ABX = (("vancomycin", 720, 60, 120), ("ceftriaxone", 1440, 28, 35), ("piptazo", 480, 30, 40))


def observation(c: Chart, t0: int) -> str:
    """An 18-30 h stay over midnight: maintenance fluid bags, scheduled antibiotic, prn pushes."""
    rng = c.rng
    start = t0 + rng.randint(30, 90)
    end = t0 + rng.randint(18 * 60, 30 * 60)
    fluid = rng.choice(FLUIDS)
    s = start
    while s < end - 180:
        stop = min(s + rng.randint(240, 600), end - rng.randint(30, 120))
        c.infusion(fluid, s, stop - s)
        s = stop + rng.randint(0, 90)
    key, every, lo, hi = rng.choice(_OBS_ABX)
    s = start + rng.randint(0, 60)
    while s + hi < end:
        c.infusion(key, s, rng.randint(lo, hi))
        s += every
    for _ in range(rng.randint(1, 4)):
        c.push(rng.choice(("ondansetron", "morphine", "pantoprazole", "ketorolac")),
               rng.randint(start, end - 30))
    return "observation"


_CLINIC_SHOTS = (("ceftriaxone", "IM"), ("ketorolac", "IM"), ("methylprednisolone", "IM"),
                 ("cyanocobalamin", "IM"), ("pegfilgrastim", "SC"), ("enoxaparin", "SC"))


def clinic(c: Chart, t0: int) -> str:
    """A clinic visit for one or two SC/IM injections."""
    rng = c.rng
    t = t0 + rng.randint(5, 30)
    for key, route in rng.sample(_CLINIC_SHOTS, rng.choice((1, 1, 2))):
        t = c.injection(key, t, route) + rng.randint(2, 10)
    return "outpatient"


def second_access(c: Chart, t0: int) -> str:
    """Two drugs at once on two IV sites, the second with a documented reason for its own line."""
    rng = c.rng
    t = t0 + rng.randint(20, 60)
    other = rng.choice([s for s in PIV_SITES if s != c.site])
    first, second, reason = rng.choice(SECOND_LINE)
    if rng.random() < 0.5:
        c.infusion(rng.choice(FLUIDS), t, rng.randint(60, 180))
    lo, hi = _IC_MINUTES[first]
    c.infusion(first, t, rng.randint(lo, hi))
    lo, hi = _IC_MINUTES[second]
    at = t + rng.randint(0, 15)
    done = c.infusion(second, at, rng.randint(lo, hi), site=other, reason=reason)
    if rng.random() < 0.3:
        c.push("ondansetron", done + rng.randint(5, 30), site=other, reason=reason)
    return rng.choice(("emergency", "observation", "outpatient"))


def inpatient(c: Chart, t0: int) -> str:
    """An ED or observation encounter converted to an inpatient admission."""
    (ed_visit if c.rng.random() < 0.67 else observation)(c, t0)
    return "inpatient"


# name: (weight %, arrival sampler, chart writer)
SCENARIOS = {
    "ed": (45, ed_arrival, ed_visit),
    "infusion_center": (20, clinic_arrival, infusion_center),
    "oncology": (15, oncology_arrival, oncology),
    "observation": (10, ed_arrival, observation),
    "clinic_injection": (4, clinic_arrival, clinic),
    "second_access": (3, ed_arrival, second_access),
    "inpatient": (3, ed_arrival, inpatient),
}
NAMES = tuple(SCENARIOS)
WEIGHTS = tuple(w for w, _, _ in SCENARIOS.values())


def long_push(c: Chart) -> None:
    """A documented push that really ran 16-25 min (METHOD_TIME_CONFLICT)."""
    rng = c.rng
    pushes = [i for i, a in enumerate(c.admins)
              if a.method == "push" and a.route == "IV" and a.purpose != "flush"]
    if pushes:
        i = rng.choice(pushes)
        a = c.admins[i]
        c.admins[i] = a._replace(stop=a.start + rng.randint(16, 25))
    elif c.admins:
        c.push("pantoprazole", c.admins[0].start + rng.randint(0, 30), minutes=rng.randint(16, 25))


def make_professional(c: Chart) -> None:
    """Professional billing; usually one administration is flagged as the key reason."""
    rng = c.rng
    if rng.random() < 0.2:
        return
    treated = [i for i, a in enumerate(c.admins) if a.purpose in (None, "treatment")]
    if treated:
        i = rng.choice(treated)
        c.admins[i] = c.admins[i]._replace(primary=True)
