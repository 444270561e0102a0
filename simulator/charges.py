"""Charge lines another system would submit for an encounter, with typical billing errors.

A compact approximation of docs/coding-rules.md (facility hierarchy, one group per access site with a
documented reason, covered-interval overlap, hydration net time, unit dates). The simulator only
needs plausible lines for the pre-bill audit; the engine in rules/ is the reference.
"""
from __future__ import annotations

import random
from typing import Callable

from rules import intervals as iv

from .chart import Admin

Line = tuple  # (cpt, units, modifiers tuple, service_date)

_RANK = {("chemotherapy", "infusion"): 1, ("chemotherapy", "push"): 2,
         ("therapeutic", "infusion"): 3, ("therapeutic", "push"): 4}
_INITIAL = {1: "96413", 2: "96409", 3: "96365", 4: "96374"}
_ADDL = {"chemotherapy": "96415", "therapeutic": "96366"}
_SEQ = {"chemotherapy": "96417", "therapeutic": "96367"}
_LATER_PUSH = {"chemotherapy": "96411", "therapeutic": "96375"}
_AS_INITIAL = {"96367": "96365", "96417": "96413", "96375": "96374", "96411": "96409"}
INITIAL_CODES = frozenset({"96360", "96365", "96374", "96409", "96413", "96422", "96420", "96373"})


def _code_group(group: list[Admin], mods: tuple, units: list, state: dict) -> None:
    """Append (cpt, mods, minute) single units for one access group."""
    services, hydration, busy = [], [], []
    for a in group:
        if a.drug.category == "hydration":
            if a.stop is not None:
                hydration.append((a.start, a.stop))
            continue
        t = a.stop - a.start if a.stop is not None else 0
        kind = "infusion" if t >= 16 else "push"
        services.append((_RANK[(a.drug.category, kind)], -t, a.start, a.admin_id, a, kind, t))
        if a.stop is not None:
            busy.append((a.start, a.stop))
    services.sort()
    covered: list = []
    infused, last_push = set(), {}
    for i, (rank, _, start, _, a, kind, t) in enumerate(services):
        cat, drug = a.drug.category, a.drug.code
        if kind == "infusion":
            if i == 0:
                units.append((_INITIAL[rank], mods, start + 16))
                units += [(_ADDL[cat], mods, start + 60 * k + 31) for k in range(1, (t - 31) // 60 + 1)]
            elif drug in infused:
                units += [(_ADDL[cat], mods, start + 60 * k + 31) for k in range((t + 29) // 60)]
            else:
                overlap = iv.overlap((start, start + t), iv.union(covered))
                excl = t - overlap
                if excl >= 16:
                    units.append((_SEQ[cat], mods, start))
                    units += [(_ADDL[cat], mods, start + 60 * k + 31)
                              for k in range(1, (excl - 31) // 60 + 1)]
                elif overlap >= 16:
                    if cat != "chemotherapy" and not state.get("concurrent"):
                        state["concurrent"] = True
                        units.append(("96368", mods, start))
                else:
                    units.append((_LATER_PUSH[cat], mods, start))
            infused.add(drug)
            covered.append((start, start + t))
        elif i == 0:
            units.append((_INITIAL[rank], mods, start))
            last_push[drug] = start
        elif drug not in last_push:
            units.append((_LATER_PUSH[cat], mods, start))
            last_push[drug] = start
        elif start - last_push[drug] > 30:
            units.append(("96376", mods, start))
            last_push[drug] = start
    if not hydration:
        return
    net = iv.subtract(iv.union(hydration), iv.union(busy))
    total = sum(e - s for s, e in net)
    if total < 31:
        return
    if services:
        units += [("96361", mods, iv.instant_at(net, 31 + 60 * k)) for k in range((total + 29) // 60)]
    else:
        units.append(("96360", mods, iv.instant_at(net, 31)))
        units += [("96361", mods, iv.instant_at(net, 31 + 60 * k)) for k in range(1, (total - 31) // 60 + 1)]


def code_lines(admins: list[Admin], date_of: Callable[[int], str]) -> list[Line]:
    """Facility lines for a completely documented encounter."""
    units: list = []
    groups: dict = {}
    sc_infusions = 0
    for a in admins:
        if a.purpose not in (None, "treatment"):
            continue  # kvo/flush/carrier fluid is never billed
        chemo = a.drug.category == "chemotherapy"
        if chemo and a.device == "pump" and a.stop is None and (a.ordered or 0) > 480:
            units.append(("96416", (), a.start))  # a take-home pump: beside the day's services
        elif a.method == "injection":
            units.append(("96401" if chemo else "96372", (), a.start))
        elif a.route == "SC":
            sc_infusions += 1
            if sc_infusions > 1:
                units.append(("96371", (), a.start))
                continue
            t = a.stop - a.start
            units.append(("96369", (), a.start + 16))
            units += [("96370", (), a.start + 60 * k + 31) for k in range(1, (t - 31) // 60 + 1)]
        else:
            groups.setdefault(a.site if a.reason else None, []).append(a)
    state: dict = {}
    for key, group in groups.items():
        _code_group(group, ("XU",) if key else (), units, state)
    merged: dict = {}
    for cpt, mods, minute in units:
        k = (cpt, mods, date_of(minute))
        merged[k] = merged.get(k, 0) + 1
    return [(cpt, n, mods, day) for (cpt, mods, day), n in merged.items()]


def _hydration_as_initial(rng, lines, admins):
    if not any(l[0] in INITIAL_CODES for l in lines):
        return None
    for i, l in enumerate(lines):
        if l[0] == "96361":
            rest = [l[:1] + (l[1] - 1,) + l[2:]] if l[1] > 1 else []
            return lines[:i] + rest + [("96360", 1, l[2], l[3])] + lines[i + 1:]
    return None


def _two_initial(rng, lines, admins):
    later = [i for i, l in enumerate(lines) if l[0] in _AS_INITIAL]
    if not later:
        return None
    i = rng.choice(later)
    l = lines[i]
    return lines[:i] + [(_AS_INITIAL[l[0]], 1, l[2], l[3])] + lines[i + 1:]


def _push_for_short_infusion(rng, lines, admins):
    short = any(a.method == "infusion" and a.route == "IV" and a.stop is not None
                and 16 <= a.stop - a.start <= 30 and a.drug.category != "hydration" for a in admins)
    swap = {"96367": "96375", "96417": "96411", "96365": "96374", "96413": "96409"}
    for i, l in enumerate(lines):
        if short and l[0] in swap:
            return lines[:i] + [(swap[l[0]],) + l[1:]] + lines[i + 1:]
    return None


def _extra_hour(rng, lines, admins):
    extra = {"96365": "96366", "96413": "96415", "96360": "96361", "96369": "96370"}
    for l in lines:
        if l[0] in extra:
            add = extra[l[0]]
            for j, m in enumerate(lines):
                if m[0] == add and m[2] == l[2]:
                    return lines[:j] + [(add, m[1] + 1) + m[2:]] + lines[j + 1:]
            return lines + [(add, 1, l[2], l[3])]
    return None


def _missed_charge(rng, lines, admins):
    if len(lines) < 2:
        return None
    i = rng.randrange(1, len(lines))
    return lines[:i] + lines[i + 1:]


ERRORS = (_hydration_as_initial, _two_initial, _push_for_short_infusion, _extra_hour, _missed_charge)


def with_error(rng: random.Random, lines: list[Line], admins: list[Admin]) -> list[Line]:
    """The lines with one typical billing error, or unchanged when none fits the encounter."""
    for make in rng.sample(ERRORS, len(ERRORS)):
        wrong = make(rng, lines, admins)
        if wrong is not None:
            return wrong
    return lines
