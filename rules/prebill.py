"""Coding-rules §7: compare lines another system intends to bill with the engine's own coding.

Each surplus in the submission is explained by the most specific alert that fits; what no specific
alert explains is a PREBILL_CODE_MISMATCH. Each shortfall is a PREBILL_MISSED_CHARGE.
"""
from __future__ import annotations

from collections import Counter

from rules.alerts import AlertSpec
from rules.codes import CodeTable
from rules.engine import Coding


def audit(submitted: list[dict], coding: Coding, table: CodeTable) -> list[AlertSpec]:
    sub: Counter[str] = Counter()
    for line in submitted:
        sub[line["cpt"]] += line["units"]
    eng: Counter[str] = Counter()
    for line in coding.lines:
        eng[line.cpt] += line.units
    surplus = {cpt: n - eng[cpt] for cpt, n in sub.items() if n > eng[cpt]}
    alerts: list[AlertSpec] = []
    explained: set[str] = set()

    def raise_(code: str, cpts: list[str], message: str, key: str = "") -> None:
        alerts.append(AlertSpec(code, None, message, key))
        explained.update(cpts)

    groups = len(coding.initial_kinds)
    initial = sorted(c for c in surplus if c in table.initial)
    if initial and sum(sub[c] for c in table.initial) > groups:
        raise_("PREBILL_TWO_INITIAL_CODES", initial, (
            f"Submitted {sum(sub[c] for c in table.initial)} initial service codes ({', '.join(initial)} among "
            f"them) for {groups} access group(s): report one initial service per "
            "group and code the others as sequential, concurrent or subsequent push."))
    hyd = table.hydration_initial
    if hyd in surplus and "drug" in coding.initial_kinds:
        raise_("PREBILL_HYDRATION_AS_INITIAL", [hyd], (
            f"{hyd} (initial hydration) was submitted but a drug service is the initial service: "
            "hydration is secondary to any drug administration (facility hierarchy); use the add-on hydration code."))
    long_drugs = [s for s in coding.services if s.kind == "infusion" and s.minutes >= 16]
    push_surplus = sorted(c for c in surplus if c in table.push and c not in explained)
    if push_surplus and long_drugs:
        longest = max(long_drugs, key=lambda s: s.minutes)
        raise_("PREBILL_PUSH_OVER_15_MIN", push_surplus, (
            f"Push code(s) {', '.join(push_surplus)} submitted, but the documented administration lasted "
            f"{longest.minutes} min ({longest.admin.drug_name}): a push is 15 minutes or less; code it as an infusion."))
    for cpt in sorted(c for c in surplus if c in table.additional_hour):
        raise_("PREBILL_ADDITIONAL_HOUR_UNSUPPORTED", [cpt], (
            f"{sub[cpt]} unit(s) of add-on hour {cpt} submitted but the documented times support "
            f"{eng[cpt]}: an additional hour needs more than 30 minutes past the full hour."), key=cpt)
    for cpt in sorted(c for c in eng if sub[c] < eng[c]):
        alerts.append(AlertSpec("PREBILL_MISSED_CHARGE", None, (
            f"{cpt}: documentation supports {eng[cpt]} unit(s), {sub[cpt]} submitted: add the missing charge "
            "or document why it is not billed."), key=cpt))
    for cpt in sorted(set(surplus) - explained):
        alerts.append(AlertSpec("PREBILL_CODE_MISMATCH", None, (
            f"{cpt}: {sub[cpt]} unit(s) submitted, documentation supports {eng[cpt]}: review against the MAR."),
            key=cpt))
    alerts.extend(_modifier_mismatches(submitted, coding, set(surplus)))
    return alerts


def _modifier_mismatches(submitted: list[dict], coding: Coding, surplus: set[str]) -> list[AlertSpec]:
    """Same codes and units, different modifiers (e.g. a missing XU on a second access site)."""
    sub: Counter[tuple] = Counter()
    for line in submitted:
        sub[(line["cpt"], tuple(sorted(line.get("modifiers") or ())))] += line["units"]
    eng: Counter[tuple] = Counter()
    for line in coding.lines:
        eng[(line.cpt, tuple(sorted(line.modifiers)))] += line.units
    out = []
    for cpt in sorted({c for c, _ in sub} & {line.cpt for line in coding.lines} - surplus):
        want = sorted((m, n) for (c, m), n in eng.items() if c == cpt)
        got = sorted((m, n) for (c, m), n in sub.items() if c == cpt)
        if want != got and sum(n for _, n in want) == sum(n for _, n in got):
            out.append(AlertSpec("PREBILL_CODE_MISMATCH", None, (
                f"{cpt}: modifiers differ from the documentation ({_mods(got)} submitted, {_mods(want)} "
                "supported): check the access-site modifier."), key=f"{cpt}|modifiers"))
    return out


def _mods(pairs: list[tuple]) -> str:
    return ", ".join(f"{n} x {'-'.join(m) or 'no modifier'}" for m, n in pairs)
