"""Coding-rules §2–§4: one encounter's administrations -> charge lines and alerts.

Pure and deterministic: the same administrations give the same lines in the same order.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache

from rules import intervals as iv
from rules.administration import Administration, Service, describe, local_date
from rules.alerts import AlertSpec
from rules.classify import classify, merge_containers
from rules.codes import CodeTable
from rules.policy import DEFAULT, Policy

_VASCULAR = ("IV", "IA")  # the routes coded in access groups; SC/IM sites are not vascular access
HIERARCHY = "chemotherapy infusion > chemotherapy push > therapeutic infusion > therapeutic push > hydration"


@dataclass(frozen=True, slots=True)
class Context:
    billing: str = "facility"
    patient_class: str = "outpatient"
    discharge_minute: int | None = None  # when the encounter was discharged (a pump still running, 96416)


@dataclass(slots=True)
class Line:
    cpt: str
    units: int
    modifiers: tuple[str, ...]
    service_date: dt.date
    administration_ids: tuple[str, ...]
    incomplete: bool
    explanation: str

    @property
    def key(self) -> tuple:
        """What makes two lines the same charge (the explanation is derived text, not identity)."""
        return (self.cpt, self.units, self.modifiers, self.service_date, self.administration_ids, self.incomplete)


@dataclass(slots=True)
class Coding:
    lines: list[Line]
    alerts: list[AlertSpec]
    initial_kinds: list[str]  # per access group: "drug" or "hydration"
    services: list[Service] = field(default_factory=list)


def code_encounter(admins: list[Administration], ctx: Context = Context(), policy: Policy = DEFAULT) -> Coding:
    alerts: list[AlertSpec] = []
    services = [s for a in merge_containers(admins) if (s := classify(a, policy, alerts, ctx.discharge_minute))]
    if ctx.patient_class == "inpatient":
        # Inpatient drug administration is bundled into the stay (CMS IOM 100-04 ch.4 §230.2).
        alerts.append(AlertSpec("INPATIENT_BUNDLED", None, "Inpatient encounter: drug administration "
                                "is bundled into the stay; no 96360-96549 charges are coded."))
        return Coding([], alerts, [], services)
    coder = _Coder(policy, code_table(policy), ctx, alerts)
    standalone, vascular = [], []
    for s in services:
        route = s.admin.route
        if s.kind == "prolonged_pump":
            coder.code_prolonged_pump(s)  # beside the day's other services, outside the hierarchy
        elif route in ("SC", "IM"):
            standalone.append(s)
        elif route in _VASCULAR:
            vascular.append(s)
    if standalone:
        coder.code_standalone(standalone)
    for index, group in enumerate(_access_groups(vascular, admins)):
        coder.code_group(group, () if index == 0 else (policy.second_site_modifier,))
    return Coding(coder.sorted_lines(), alerts, coder.initial_kinds, services)


@lru_cache(maxsize=32)
def _table_for(codes: tuple) -> CodeTable:
    return CodeTable(dict(codes))


def code_table(policy: Policy) -> CodeTable:
    """The code table of a policy (built once per distinct set of overrides)."""
    return _table_for(tuple(sorted(policy.codes.items())))


def _access_groups(services: list[Service], admins: list[Administration]) -> list[list[Service]]:
    """One group per encounter, plus one per distinct site with a documented separate-access
    reason (CMS transmittals 1702/2386: one initial service per encounter and per access site)."""
    # The reason belongs to the site, not to each administration (coding-rules §2): documented once,
    # on any IV/IA administration through the site (billed or not, first or later; a voided one is no
    # longer in the chart), it puts every administration through that site in the site's group.
    separate = {a.access_site for a in admins if a.separate_access_reason and a.access_site
                and a.route in _VASCULAR and not a.separate_access_reason.isspace()}
    if not separate:
        return [services] if services else []  # the common case: one group
    groups: dict[str | None, list[Service]] = {}
    for s in services:  # an unnamed or undocumented site cannot be shown separate: main group
        site = s.admin.access_site
        groups.setdefault(site if site in separate else None, []).append(s)
    main = groups.pop(None, [])
    # Sites by their earliest administration (then smallest id, as §2 breaks ties); when every site
    # documents a reason there is no main group and the earliest site's group stands in for it, unmodified.
    others = sorted(groups.values(), key=lambda g: min((s.admin.start, s.admin.id) for s in g))
    return ([main] if main else []) + others


def _hours_after_first(minutes: int) -> int:
    """Add-on hours of an initial or sequential service: 90 min -> 0, 91 -> 1, 151 -> 2."""
    return max(0, (minutes - 31) // 60)


def _hours_each(minutes: int) -> int:
    """Hours of an add-on-only service: 31-90 min -> 1, under 31 -> 0."""
    return (minutes + 29) // 60 if minutes >= 31 else 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class _Coder:
    """Codes the groups of one encounter; holds what is reported once per encounter."""

    def __init__(self, policy: Policy, table: CodeTable, ctx: Context, alerts: list[AlertSpec]) -> None:
        self.policy, self.table, self.ctx, self.alerts = policy, table, ctx, alerts
        self.lines: dict[tuple, Line] = {}  # (cpt, modifiers, service date) -> line
        self.initial_kinds: list[str] = []
        self.concurrent_reported = False
        self.mods: tuple[str, ...] = ()

    def emit(self, cpt: str | None, minute: int, s: Service | None, explanation: str,
             ids: tuple[str, ...] | None = None, offset: int | None = None, units: int = 1) -> None:
        """`units` units of `cpt`, merged as they come into the line of the same code, modifiers and
        date (coding-rules §4)."""
        if cpt is None:
            return
        off = offset if offset is not None else s.admin.offset
        key = (cpt, self.mods, local_date(minute, off))
        ids = ids or s.admin.ids
        incomplete = bool(s and (s.incomplete or s.admin.pump_stop))
        line = self.lines.get(key)
        if line is None:
            self.lines[key] = Line(cpt, units, self.mods, key[2], ids, incomplete, explanation)
            return
        line.units += units
        line.incomplete |= incomplete
        if ids != line.administration_ids:
            line.administration_ids += tuple(i for i in ids if i not in line.administration_ids)
        if explanation is not line.explanation and explanation not in line.explanation:
            line.explanation += " " + explanation

    def emit_hours(self, cpt: str | None, minutes: list[int], s: Service, explanation: str,
                   ids: tuple[str, ...] | None = None) -> None:
        """One unit of `cpt` at each of `minutes` (ascending): the add-on hours of one service, one
        text. When all fall on one date they merge in one step, the same as one by one."""
        if not minutes:
            return
        off = s.admin.offset
        if local_date(minutes[0], off) == local_date(minutes[-1], off):
            self.emit(cpt, minutes[0], s, explanation, ids, units=len(minutes))
            return
        for minute in minutes:  # the hours cross midnight
            self.emit(cpt, minute, s, explanation, ids)

    def sorted_lines(self) -> list[Line]:
        return sorted(self.lines.values(), key=lambda l: (l.service_date, l.cpt, l.modifiers))

    # -- SC / IM: stand-alone, outside the IV hierarchy --------------------------------------

    def code_standalone(self, services: list[Service]) -> None:
        self.mods = ()
        sc_infusions = 0
        for s in sorted(services, key=lambda s: (s.admin.start, s.admin.id)):
            cat, desc = s.admin.category, describe(s)
            if s.kind == "injection":
                self.emit(self.table.get("injection", cat), s.admin.start, s,
                          f"{desc}: {s.admin.route} injection, reported per injection.")
                continue
            sc_infusions += 1
            if sc_infusions == 1:
                self._code_first_sc(s, desc)
            elif sc_infusions == 2:  # 96371 once, however many further sites
                self.emit(self.table.get("sc_infusion_site"), s.admin.start, s,
                          f"{desc}: further subcutaneous infusion site, reported once.")

    def _code_first_sc(self, s: Service, desc: str) -> None:
        hours = _hours_after_first(s.minutes)
        text = f"{desc}: subcutaneous infusion" + (f" plus {_plural(hours, 'additional hour')}." if hours else ".")
        self.emit(self.table.get("sc_infusion_initial"), s.admin.start + 16, s, text)
        self.emit_hours(self.table.get("sc_infusion_additional"),
                        [s.admin.start + 60 * k + 31 for k in range(1, hours + 1)], s, text)

    def code_prolonged_pump(self, s: Service) -> None:
        a = s.admin
        self.mods = ()
        self.emit(self.table.get("prolonged_pump", a.category, a.route), a.start, s,
                  f"{describe(s)}: initiation of a prolonged chemotherapy infusion on a pump (ordered "
                  f"{a.ordered_duration_minutes // 60} h {a.ordered_duration_minutes % 60} min), still running at "
                  "discharge: reported once, beside the day's other services; its stop is charted when the pump "
                  "is disconnected.")

    # -- IV / IA: one hierarchy per access group ---------------------------------------------

    def code_group(self, group: list[Service], mods: tuple[str, ...]) -> None:
        self.mods = mods
        drugs, hydration = [], []
        for s in group:
            (hydration if s.kind == "hydration" else drugs).append(s)
        if len(drugs) > 1:
            drugs.sort(key=self._order_key)
        cut = iv.union([s.interval for s in drugs if s.timed])
        net_runs = self._net_hydration(hydration, cut)
        initial = self._pick_initial(drugs, hydration, iv.total(net_runs))
        self.initial_kinds.append("hydration" if initial is None else "drug")
        if initial is not None:
            drugs.remove(initial)
            drugs.insert(0, initial)
        state = _GroupState()
        for i, s in enumerate(drugs):
            code = self._code_infusion if s.kind == "infusion" else self._code_push
            code(s, i == 0 and initial is not None, state)
        if hydration:
            self._code_hydration(hydration, net_runs, initial is None)

    def _order_key(self, s: Service) -> tuple:
        a = s.admin
        if self.policy.initial_tiebreak == "earliest_start":
            return (s.rank, a.start, -s.minutes, a.id)
        return (s.rank, -s.minutes, a.start, a.id)

    def _pick_initial(self, drugs: list[Service], hydration: list[Service], net: int) -> Service | None:
        """The group's initial drug service; None means hydration is the initial service."""
        if self.ctx.billing == "professional":
            flagged = [s for s in drugs if s.admin.primary_reason]
            if flagged:
                return flagged[0]
            if net >= 31 and any(s.admin.primary_reason for s in hydration):
                return None
        return drugs[0] if drugs else None

    def _initial_reason(self) -> str:
        if self.ctx.billing == "professional":
            return "initial service (documented primary reason, or the hierarchy without one)"
        return f"initial service, the highest-ranked of the group ({HIERARCHY})"

    def _code_infusion(self, s: Service, is_initial: bool, g: _GroupState) -> None:
        a, desc, cat = s.admin, describe(s), s.admin.category
        same = next((p for p in g.infused if p.same_drug(a)), None)
        if is_initial:
            self._code_initial_infusion(s, desc)
        elif same is not None and self.policy.same_drug_repeat == "additional_hour":
            hours = _hours_each(s.minutes)
            text = (f"{desc}: repeat infusion of a drug already infused, reported as "
                    f"{_plural(hours, 'additional hour')} (31-90 min count as one hour).")
            self.emit_hours(self.table.get("additional_hour", cat, a.route),
                            [a.start + 31 + 60 * (k - 1) for k in range(1, hours + 1)], s, text)
        else:
            self._code_later_new_drug(s, desc, g)
        g.infused.append(a)
        g.covered = iv.union(g.covered + [s.interval])

    def _code_initial_infusion(self, s: Service, desc: str) -> None:
        a, cat = s.admin, s.admin.category
        hours = _hours_after_first(s.minutes)
        text = f"{desc}: {self._initial_reason()}, infusion"
        self.emit(self.table.get("initial_infusion", cat, a.route), a.start + 16, s, text + ".")
        text += f" plus {_plural(hours, 'additional hour')} (more than 30 minutes past each full hour)."
        self.emit_hours(self.table.get("additional_hour", cat, a.route),
                        [a.start + 60 * k + 31 for k in range(1, hours + 1)], s, text)

    def _code_later_new_drug(self, s: Service, desc: str, g: _GroupState) -> None:
        a, cat = s.admin, s.admin.category
        overlap = iv.overlap(s.interval, g.covered)
        excl = s.minutes - overlap
        if excl >= 16:
            hours = _hours_after_first(excl)
            text = f"{desc}: sequential infusion of a new drug, {excl} min outside other infusions"
            self.emit(self.table.get("sequential", cat, a.route), a.start, s, text + ".")
            own = iv.subtract([s.interval], g.covered)
            text += f", plus {_plural(hours, 'additional hour')}."
            self.emit_hours(self.table.get("additional_hour", cat, a.route),
                            iv.instants_at(own, [60 * k + 31 for k in range(1, hours + 1)]), s, text)
        elif overlap >= 16:
            self._code_concurrent(s, desc, overlap)
        else:
            self._code_push(s, False, g, note=f"only {excl} min outside and {overlap} min alongside other "
                                                f"infusions, so coded as a push")

    def _code_concurrent(self, s: Service, desc: str, overlap: int) -> None:
        cpt = self.table.get("concurrent", s.admin.category, s.admin.route)
        if cpt is None:
            self.alerts.append(AlertSpec("UNSUPPORTED_COMBINATION", s.admin.id, (
                f"{desc} ran {overlap} min alongside another chemotherapy infusion: there is no concurrent "
                "chemotherapy code; review the orders and documented times with the coder.")))
            return
        if self.concurrent_reported:
            return  # 96368 is reported once per encounter, however many concurrent drugs
        self.concurrent_reported = True
        self.emit(cpt, s.admin.start, s, f"{desc}: concurrent infusion, {overlap} min alongside another "
                                         "infusion (reported once per encounter).")

    def _code_push(self, s: Service, is_initial: bool, g: _GroupState, note: str = "") -> None:
        a, cat = s.admin, s.admin.category
        desc = describe(s) + (f": {note}" if note else "")
        how = ("infusion without a documented stop, coded as a push (documentation incomplete)"
               if s.incomplete else "push")
        earlier = [p for p in g.pushed if p.same_drug(a)]
        if is_initial:
            self.emit(self.table.get("initial_push", cat, a.route), a.start, s,
                      f"{desc}: {self._initial_reason()}, {how}.")
        elif not earlier:
            self.emit(self.table.get("subsequent_push", cat, a.route), a.start, s,
                      f"{desc}: {how} of a new drug after the initial service.")
        elif self._repeat_push_reportable(a, earlier):
            self.emit(self.table.get("repeat_push", cat, a.route), a.start, s,
                      f"{desc}: same drug pushed again more than "
                      f"{self.policy.repeat_push_gap_minutes} min after its last reported push.")
        else:
            return  # not reported, so it does not restart the 30-minute clock
        g.pushed.append(a)

    def _repeat_push_reportable(self, a: Administration, earlier: list[Administration]) -> bool:
        """96376: facility only, more than 30 minutes from every reported push of the drug."""
        gap = self.policy.repeat_push_gap_minutes
        return self.ctx.billing == "facility" and all(abs(a.start - p.start) > gap for p in earlier)

    def _code_hydration(self, runs: list[Service], net_runs: list[iv.Interval], is_initial: bool) -> None:
        """Hydration by net time: the union of runs minus drug time (CGS; Coding Clinic 1Q2012)."""
        net = iv.total(net_runs)
        first = min(runs, key=lambda s: (s.admin.start, s.admin.id))
        by_start = sorted(runs, key=lambda s: s.admin.start)
        ids = tuple(i for s in by_start for i in s.admin.ids)
        runs_text = ", ".join(describe(s) for s in by_start)
        if net < 31:
            self.alerts.append(AlertSpec("HYDRATION_UNDER_31_MIN", first.admin.id, (
                f"Hydration {runs_text} totals {net} min after drug administration time: under 31 "
                "minutes is not billable; check the documented start and stop times.")))
            return
        additional = self.table.get("hydration_additional")
        if is_initial:
            hours = _hours_after_first(net)
            text = f"Hydration {runs_text}: {net} min net of drug time; initial hydration (31 min or more)"
            self.emit(self.table.get("hydration_initial"), iv.instant_at(net_runs, 31), first, text + ".", ids)
            text += f" plus {_plural(hours, 'additional hour')} (more than 30 minutes past each full hour)."
            hour_marks = [60 * k + 31 for k in range(1, hours + 1)]
        else:
            hours = _hours_each(net)
            text = (f"Hydration {runs_text}: {net} min net of drug time, secondary to the drug service: "
                    f"{_plural(hours, 'hour')} (31-90 min count as one).")
            hour_marks = [31 + 60 * (k - 1) for k in range(1, hours + 1)]
        self.emit_hours(additional, iv.instants_at(net_runs, hour_marks), first, text, ids)

    def _net_hydration(self, runs: list[Service], cut: list[iv.Interval]) -> list[iv.Interval]:
        if self.policy.hydration_combining == "union":
            return iv.subtract(iv.union([s.interval for s in runs]), cut)
        kept = [net for s in runs if iv.total(net := iv.subtract([s.interval], cut)) >= 31]
        return iv.union([i for net in kept for i in net])


@dataclass(slots=True)
class _GroupState:
    covered: list[iv.Interval] = field(default_factory=list)  # union of processed drug infusions
    infused: list[Administration] = field(default_factory=list)
    pushed: list[Administration] = field(default_factory=list)  # reported pushes
