"""`infusion-validator report`: the coder's report, from the output records of `code`.

Reading and aggregation only, as pure functions over the records; the HTML and the charts are drawn
by cli/report_html.py. The records are read as a consumer of the output topics reads them: at least
once (the same charge_id / alert_id may come twice), a reversal names the post it cancels, and an
alert's standing is the state of its last record.
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import orjson

from rules.alerts import audience_of

PROGRESS_EVERY = 100_000  # lines between progress notes on standard error

# The fields each kind must carry to be used, with their types; anything else is an unreadable line.
_CHARGE_FIELDS = {"charge_id": str, "action": str, "encounter_id": str, "cpt": str, "units": int,
                  "service_date": str}
_ALERT_FIELDS = {"alert_id": str, "encounter_id": str, "code": str, "state": str, "message": str}


@dataclass
class Encounter:
    encounter_id: str
    posts: dict[str, dict] = field(default_factory=dict)  # charge_id -> the posted line
    reversed: set[str] = field(default_factory=set)  # charge_ids named by a reversal
    alerts: dict[str, dict] = field(default_factory=dict)  # alert_id -> its last record

    def net_lines(self) -> list[dict]:
        """Posts no reversal cancels, in service-date and CPT order (how a coder reads a claim)."""
        lines = [p for cid, p in self.posts.items() if cid not in self.reversed]
        return sorted(lines, key=lambda p: (p["service_date"], p["cpt"], p["charge_id"]))

    def standing(self, who: str) -> list[dict]:
        """Alerts for `who` (nursing | coding) whose last record raised them."""
        return [a for a in self.alerts.values() if a["state"] == "raised" and audience_of(a) == who]


@dataclass
class Records:
    encounters: dict[str, Encounter] = field(default_factory=dict)
    lines: int = 0
    unreadable: int = 0
    unreadable_lines: list[int] = field(default_factory=list)  # the first few, to look them up
    dead_letters: Counter = field(default_factory=Counter)  # by category
    orphan_reversals: int = 0  # reversals of a post not in these records (an earlier file's)

    def encounter(self, encounter_id: str) -> Encounter:
        enc = self.encounters.get(encounter_id)
        if enc is None:
            enc = self.encounters[encounter_id] = Encounter(encounter_id)
        return enc


def read_records(lines: Iterable[bytes], progress: Callable[[int], None] | None = None) -> Records:
    """Fold JSON Lines output records into per-encounter state; a bad line is counted, never fatal."""
    recs = Records()
    for lineno, raw in enumerate(lines, 1):
        recs.lines = lineno
        if progress and lineno % PROGRESS_EVERY == 0:
            progress(lineno)
        if raw.strip() and not _take(recs, raw):
            recs.unreadable += 1
            if len(recs.unreadable_lines) < 10:
                recs.unreadable_lines.append(lineno)
    recs.orphan_reversals = sum(len(e.reversed - e.posts.keys()) for e in recs.encounters.values())
    return recs


def _take(recs: Records, raw: bytes) -> bool:
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    kind = rec.get("kind") if isinstance(rec, dict) else None
    if kind == "charge" and _fits(rec, _CHARGE_FIELDS) and rec["action"] in ("post", "reverse"):
        enc = recs.encounter(rec["encounter_id"])
        if rec["action"] == "post":
            enc.posts[rec["charge_id"]] = rec
        elif isinstance(rec.get("reverses"), str):
            enc.reversed.add(rec["reverses"])
        else:
            return False  # a reversal that names nothing cannot be applied
        return True
    if kind == "alert" and _fits(rec, _ALERT_FIELDS) and rec["state"] in ("raised", "resolved"):
        recs.encounter(rec["encounter_id"]).alerts[rec["alert_id"]] = rec  # the last record stands
        return True
    if kind == "dead_letter":
        recs.dead_letters[str(rec.get("category") or "unknown")] += 1
        return True
    return False


def _fits(rec: dict, fields: dict[str, type]) -> bool:
    # bool is an int to isinstance; units must be a real count
    return all(isinstance(rec.get(k), t) and not isinstance(rec.get(k), bool) for k, t in fields.items())


# -- revenue at stake ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Stake:
    """Units of one CPT at stake in one encounter, and why. `exact` is false when the finding names the
    code but not how many units (then 1 unit is counted, the least it can be)."""

    category: str  # missed | unsupported | held
    cpt: str
    units: int
    exact: bool
    reason: str  # the alert code, or what holds the line


MISSED, UNSUPPORTED, HELD = "missed", "unsupported", "held"

# How rules/prebill.py words each finding: the figures are read back from the message.
_MISSED = re.compile(r"^(\w+): documentation supports (\d+) unit\(s\), (\d+) submitted")
_MISMATCH_UNITS = re.compile(r"^(\w+): (\d+) unit\(s\) submitted, documentation supports (\d+)")
_EXTRA_HOUR = re.compile(r"^(\d+) unit\(s\) of add-on hour (\w+) submitted but the documented times support (\d+)")
_CODES_NAMED = {  # findings that name the surplus codes but not their units
    "PREBILL_PUSH_OVER_15_MIN": re.compile(r"^Push code\(s\) ([\w, ]+?) submitted"),
    "PREBILL_HYDRATION_AS_INITIAL": re.compile(r"^(\w+) \(initial hydration\) was submitted"),
    "PREBILL_TWO_INITIAL_CODES": re.compile(r"^Submitted \d+ initial service codes \(([\w, ]+?) among them\)"),
}


def finding_stakes(alert: dict, net_units: Counter) -> list[Stake]:
    """What a standing pre-bill finding puts at stake; [] when it is about no units (e.g. modifiers)."""
    code, msg = alert["code"], alert["message"]
    if code == "PREBILL_MISSED_CHARGE" and (m := _MISSED.match(msg)):
        cpt, supported, submitted = m[1], int(m[2]), int(m[3])
        # the engine's own net lines are the better count of what the documentation supports
        supported = net_units.get(cpt, supported)
        return [Stake(MISSED, cpt, supported - submitted, True, code)] if supported > submitted else []
    if code == "PREBILL_ADDITIONAL_HOUR_UNSUPPORTED" and (m := _EXTRA_HOUR.match(msg)):
        return _surplus(code, m[2], int(m[1]), int(m[3]))
    if code == "PREBILL_CODE_MISMATCH" and (m := _MISMATCH_UNITS.match(msg)):
        return _surplus(code, m[1], int(m[2]), int(m[3]))
    if code in _CODES_NAMED and (m := _CODES_NAMED[code].match(msg)):
        return [Stake(UNSUPPORTED, cpt.strip(), 1, False, code) for cpt in m[1].split(",")]
    return []


def _surplus(code: str, cpt: str, submitted: int, supported: int) -> list[Stake]:
    return [Stake(UNSUPPORTED, cpt, submitted - supported, True, code)] if submitted > supported else []


def held_stakes(lines: list[dict], open_gaps: list[dict]) -> list[Stake]:
    """Net lines held by missing documentation: coded on a fallback (incomplete_documentation), or
    behind an administration a nurse still has to document. A gap not tied to an administration
    holds every line of the encounter: nobody can say which line it changes."""
    gap_admins = {g.get("administration_id") for g in open_gaps}
    whole = None in gap_admins
    out = []
    for line in lines:
        if line.get("incomplete_documentation"):
            out.append(Stake(HELD, line["cpt"], line["units"], True, "incomplete documentation"))
        elif whole or gap_admins.intersection(line.get("administration_ids") or ()):
            out.append(Stake(HELD, line["cpt"], line["units"], True, "open documentation gap"))
    return out


# -- the report's figures -----------------------------------------------------------------------


@dataclass
class EncounterView:
    encounter_id: str
    lines: list[dict]
    findings: list[dict]  # standing coding alerts (pre-bill findings and coding notes)
    open_gaps: list[dict]  # standing nursing alerts
    stakes: list[Stake]

    @property
    def needs_action(self) -> bool:
        return bool(self.findings or self.open_gaps or self.stakes)


@dataclass
class Summary:
    encounters: list[EncounterView]
    units_by_cpt: Counter  # net units over all encounters
    gaps_by_code: dict[str, Counter]  # nursing alert code -> {"open": n, "resolved": n}
    findings_by_code: Counter  # standing coding alerts by code
    records: Records


def summarize(recs: Records) -> Summary:
    views, units, gaps, findings = [], Counter(), {}, Counter()
    for enc in recs.encounters.values():
        view = _view(enc)
        views.append(view)
        for line in view.lines:
            units[line["cpt"]] += line["units"]
        findings.update(a["code"] for a in view.findings)
        for a in enc.alerts.values():
            if audience_of(a) == "nursing":
                gaps.setdefault(a["code"], Counter())["open" if a["state"] == "raised" else "resolved"] += 1
    # encounters with something to act on first, then the rest; each group in id order
    views.sort(key=lambda v: (not v.needs_action, v.encounter_id))
    return Summary(views, units, gaps, findings, recs)


def _view(enc: Encounter) -> EncounterView:
    lines = enc.net_lines()
    net_units: Counter = Counter()
    for line in lines:
        net_units[line["cpt"]] += line["units"]
    findings = sorted(enc.standing("coding"), key=lambda a: (a["code"], a["message"]))
    gaps = sorted(enc.standing("nursing"), key=lambda a: (a["code"], a.get("administration_id") or ""))
    stakes = _one_surplus_per_cpt([s for a in findings for s in finding_stakes(a, net_units)])
    return EncounterView(enc.encounter_id, lines, findings, gaps, stakes + held_stakes(lines, gaps))


def _one_surplus_per_cpt(stakes: list[Stake]) -> list[Stake]:
    """Two findings can explain the same surplus (96360 submitted as initial is both hydration-as-initial
    and a second initial code): the money is counted once per CPT, under every finding that names it.
    A finding that states the units outranks one that only names the code."""
    out = [s for s in stakes if s.category != UNSUPPORTED]
    by_cpt: dict[str, list[Stake]] = {}
    for s in stakes:
        if s.category == UNSUPPORTED:
            by_cpt.setdefault(s.cpt, []).append(s)
    for cpt, same in by_cpt.items():
        best = max(same, key=lambda s: (s.exact, s.units))
        reasons = ", ".join(dict.fromkeys(s.reason for s in same))
        out.append(Stake(UNSUPPORTED, cpt, best.units, best.exact, reasons))
    return out


# -- fee schedule -------------------------------------------------------------------------------


@dataclass
class FeeSchedule:
    amounts: dict[str, Decimal]
    notes: list[str]  # its '#' comment lines, shown in the report (e.g. "illustrative amounts")
    source: str

    def amount(self, stake: Stake) -> Decimal | None:
        fee = self.amounts.get(stake.cpt)
        return None if fee is None else fee * stake.units


def load_fee_schedule(path: str) -> FeeSchedule:
    """CSV with a header `cpt,amount`; lines starting with '#' are notes. A bad row is an error
    naming its line: a silently skipped fee would understate the money at stake."""
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read().splitlines()
    notes = [ln.lstrip("#").strip() for ln in text if ln.lstrip().startswith("#")]
    rows = [(n, ln) for n, ln in enumerate(text, 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not rows or [h.strip().lower() for h in next(csv.reader([rows[0][1]]))] != ["cpt", "amount"]:
        raise ValueError(f"{path}: the first row must be the header 'cpt,amount'")
    amounts = dict(_fee_row(path, n, ln) for n, ln in rows[1:])
    return FeeSchedule(amounts, notes, path)


def _fee_row(path: str, n: int, line: str) -> tuple[str, Decimal]:
    cells = [c.strip() for c in next(csv.reader([line]))]
    try:
        if len(cells) != 2 or not cells[0]:
            raise InvalidOperation
        amount = Decimal(cells[1].lstrip("$").replace(",", ""))
        if not amount.is_finite() or amount < 0:
            raise InvalidOperation
    except InvalidOperation:
        raise ValueError(f"{path} line {n}: expected 'CPT,amount' (e.g. 96365,160.00), got {line!r}") from None
    return cells[0], amount
