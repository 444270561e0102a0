"""`infusion-validator report`: the coder's report, from the output records of `code`.

Built for a lookback audit as well as a day: the records are read once, in bounded memory
(cli/report_spill.py partitions them by encounter on disk and reads them back one bucket at a time),
each encounter is folded into its net lines, standing findings, open gaps and revenue at stake, and
only what the page needs is kept (`Totals`: totals, breakdowns by CPT, unit, day and finding, and
the encounters most at stake). Every encounter's rows go to the CSV beside the page
(cli/report_csv.py). The HTML and the charts are drawn by cli/report_html.py.

The records are read as a consumer of the output topics reads them: at least once (the same
charge_id / alert_id may come twice), a reversal names the post it cancels, and an alert's
standing is the state of its last record.
"""
from __future__ import annotations

import csv
import datetime as dt
import heapq
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import orjson

from cli.report_spill import Spill, Spilled, buckets_for
from rules.alerts import audience_of

NO_UNIT = "(unit not known)"  # encounters whose alerts carry no location
NO_DATE = "(no service date)"  # encounters with no charge line
EXAMPLES = 3  # complete charge lines kept as examples (the demo prints them)

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
    unit: str | None = None  # the unit of its latest alert that names one

    def net_lines(self) -> list[dict]:
        """Posts no reversal cancels, in service-date and CPT order (how a coder reads a claim)."""
        lines = [p for cid, p in self.posts.items() if cid not in self.reversed]
        return sorted(lines, key=lambda p: (p["service_date"], p["cpt"], p["charge_id"]))

    def standing(self, who: str) -> list[dict]:
        """Alerts for `who` (nursing | coding) whose last record raised them."""
        return [a for a in self.alerts.values() if a["state"] == "raised" and audience_of(a) == who]

    @property
    def first_date(self) -> str | None:
        """The earliest service date of its posted lines: the day it counts under."""
        return min((p["service_date"] for p in self.posts.values()), default=None)


def fold(rows: Iterable[tuple[str, bytes]], seen: Spilled) -> dict[str, Encounter]:
    """One bucket's records, (where, line), folded per encounter; a bad line is counted, never fatal."""
    encounters: dict[str, Encounter] = {}
    for where, raw in rows:
        if not _take(encounters, raw):
            seen.note_unreadable(where)
    return encounters


def _take(encounters: dict[str, Encounter], raw: bytes) -> bool:
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    kind = rec.get("kind") if isinstance(rec, dict) else None
    if kind == "charge" and _fits(rec, _CHARGE_FIELDS) and rec["action"] in ("post", "reverse"):
        enc = _encounter(encounters, rec["encounter_id"])
        if rec["action"] == "post":
            enc.posts[rec["charge_id"]] = rec
        elif isinstance(rec.get("reverses"), str):
            enc.reversed.add(rec["reverses"])
        else:
            return False  # a reversal that names nothing cannot be applied
        return True
    if kind == "alert" and _fits(rec, _ALERT_FIELDS) and rec["state"] in ("raised", "resolved"):
        enc = _encounter(encounters, rec["encounter_id"])
        enc.alerts[rec["alert_id"]] = rec  # the last record stands
        where = rec.get("location")
        if isinstance(where, dict) and isinstance(where.get("unit"), str) and where["unit"]:
            enc.unit = where["unit"]
        return True
    return False


def _encounter(encounters: dict[str, Encounter], encounter_id: str) -> Encounter:
    enc = encounters.get(encounter_id)
    if enc is None:
        enc = encounters[encounter_id] = Encounter(encounter_id)
    return enc


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
CATEGORIES = (MISSED, UNSUPPORTED, HELD)

# How rules/prebill.py words each finding: the figures are read back from the message.
_MISSED = re.compile(r"^(\w+): documentation supports (\d+) unit\(s\), (\d+) submitted")
_MISMATCH_UNITS = re.compile(r"^(\w+): (\d+) unit\(s\) submitted, documentation supports (\d+)")
_EXTRA_HOUR = re.compile(r"^(\d+) unit\(s\) of add-on hour (\w+) submitted but the documented times support (\d+)")
# National edits (rules/edits.py): the units over the MUE, and the column 2 units a PTP edit denies.
_MUE = re.compile(r"^(\w+) on \S+: (\d+) unit\(s\) (?:coded by the validator|submitted), over the MUE of (\d+)")
_PTP = re.compile(r"^(\w+) x(\d+) on \S+ (?:coded by the validator|submitted) with \w+: NCCI ")
_CODES_NAMED = {  # findings that name the surplus codes but not their units
    "PREBILL_PUSH_OVER_15_MIN": re.compile(r"^Push code\(s\) ([\w, ]+?) submitted"),
    "PREBILL_HYDRATION_AS_INITIAL": re.compile(r"^(\w+) \(initial hydration\) was submitted"),
    "PREBILL_TWO_INITIAL_CODES": re.compile(r"^Submitted \d+ initial service codes \(([\w, ]+?) among them\)"),
}


def finding_stakes(alert: dict, net_units: Counter) -> list[Stake]:
    """What a standing pre-bill finding puts at stake; [] when it is about no units (e.g. modifiers).
    A national edit's finding: the units over the MUE (the payer denies the whole line or day, so at
    least those), the column 2 units a PTP edit denies."""
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
    if code == "MUE_EXCEEDED" and (m := _MUE.match(msg)):
        return _surplus(code, m[1], int(m[2]), int(m[3]))
    if code == "NCCI_PTP_CONFLICT" and (m := _PTP.match(msg)):
        return [Stake(UNSUPPORTED, m[1], int(m[2]), True, code)]
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


# -- one encounter ------------------------------------------------------------------------------


@dataclass
class EncounterView:
    encounter_id: str
    lines: list[dict]
    findings: list[dict]  # standing coding alerts (pre-bill findings and coding notes)
    open_gaps: list[dict]  # standing nursing alerts
    stakes: list[Stake]
    unit: str = NO_UNIT
    day: str = NO_DATE  # its first service date

    @property
    def needs_action(self) -> bool:
        return bool(self.findings or self.open_gaps or self.stakes)


def view_of(enc: Encounter) -> EncounterView:
    lines = enc.net_lines()
    net_units: Counter = Counter()
    for line in lines:
        net_units[line["cpt"]] += line["units"]
    findings = sorted(enc.standing("coding"), key=lambda a: (a["code"], a["message"]))
    gaps = sorted(enc.standing("nursing"), key=lambda a: (a["code"], a.get("administration_id") or ""))
    stakes = _one_surplus_per_cpt([s for a in findings for s in finding_stakes(a, net_units)])
    return EncounterView(enc.encounter_id, lines, findings, gaps, stakes + held_stakes(lines, gaps),
                         enc.unit or NO_UNIT, enc.first_date or NO_DATE)


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


# -- the page's figures, kept in bounded memory -------------------------------------------------


@dataclass(frozen=True)
class Period:
    """--from/--to: encounters whose first service date is within [start, end] (ISO dates)."""
    start: dt.date | None = None
    end: dt.date | None = None

    @property
    def given(self) -> bool:
        return self.start is not None or self.end is not None

    def holds(self, day: str) -> bool:
        if not self.given:
            return True
        try:
            d = dt.date.fromisoformat(day)
        except ValueError:
            return False
        return (self.start is None or d >= self.start) and (self.end is None or d <= self.end)


@dataclass
class Money:
    """Units at stake, with their amount when there is a fee schedule."""
    units: int = 0
    amount: Decimal = Decimal(0)
    unpriced: int = 0  # units with no fee in the schedule
    approx: bool = False  # some finding named a code but not its units: at least this much

    def add(self, stake: Stake, fees: FeeSchedule | None) -> None:
        self.units += stake.units
        self.approx |= not stake.exact
        amount = fees.amount(stake) if fees else None
        if amount is None:
            self.unpriced += stake.units if fees else 0
        else:
            self.amount += amount


@dataclass
class Tally:
    """One row of a breakdown."""
    encounters: int = 0
    to_work: int = 0
    lines: int = 0
    units: int = 0
    findings: int = 0
    open_gaps: int = 0
    stake: Money = field(default_factory=Money)


@dataclass
class Totals:
    """What the page shows, kept while the encounters go by: totals, breakdowns, the most at stake."""
    fees: FeeSchedule | None
    top: int
    encounters: int = 0
    to_work: int = 0
    orphan_reversals: int = 0
    left_out: int = 0  # encounters outside --from/--to (or with no service date when they are given)
    stakes: dict[str, Money] = field(default_factory=lambda: {c: Money() for c in CATEGORIES})
    by_cpt: dict[str, Tally] = field(default_factory=dict)
    by_unit: dict[str, Tally] = field(default_factory=dict)
    by_day: dict[str, Tally] = field(default_factory=dict)
    by_finding: dict[str, Tally] = field(default_factory=dict)  # alert code or hold reason
    alerts: dict[str, dict[str, Counter]] = field(default_factory=dict)  # audience -> code -> raised/resolved
    examples: dict[str, dict] = field(default_factory=dict)  # CPT -> a complete net line, the first few CPTs
    pumps: Counter = field(default_factory=Counter)  # infusion pump evidence standing (pump_counts)
    _heap: list = field(default_factory=list)  # (value, encounter_id, view): the `top` most at stake

    def add(self, view: EncounterView, enc: Encounter) -> None:
        self.encounters += 1
        self.to_work += view.needs_action
        self.orphan_reversals += len(enc.reversed - enc.posts.keys())
        for a in enc.alerts.values():
            who = self.alerts.setdefault(audience_of(a), {})
            who.setdefault(a["code"], Counter())["resolved" if a["state"] == "resolved" else "open"] += 1
        for tally in (_row(self.by_unit, view.unit), _row(self.by_day, view.day)):
            self._count(tally, view)
        for line in view.lines:
            row = _row(self.by_cpt, line["cpt"])
            row.lines += 1
            row.units += line["units"]
            if len(self.examples) < EXAMPLES and not line.get("incomplete_documentation"):
                self.examples.setdefault(line["cpt"], line)
        for a in view.findings + view.open_gaps:
            _row(self.by_finding, a["code"]).findings += 1
            self.pumps.update(pump_counts(a))
        for code in {a["code"] for a in view.findings + view.open_gaps}:
            _row(self.by_finding, code).encounters += 1
        for s in view.stakes:
            self.stakes[s.category].add(s, self.fees)
            _row(self.by_cpt, s.cpt).stake.add(s, self.fees)
            for reason in s.reason.split(", "):  # a surplus two findings explain counts under each
                _row(self.by_finding, reason).stake.add(s, self.fees)
        if view.needs_action:
            self._rank(view)

    def _count(self, tally: Tally, view: EncounterView) -> None:
        tally.encounters += 1
        tally.to_work += view.needs_action
        tally.lines += len(view.lines)
        tally.units += sum(line["units"] for line in view.lines)
        tally.findings += len(view.findings)
        tally.open_gaps += len(view.open_gaps)
        for s in view.stakes:
            tally.stake.add(s, self.fees)

    def _rank(self, view: EncounterView) -> None:
        entry = (stake_value(view.stakes, self.fees), _Last(view.encounter_id), view)
        if len(self._heap) < self.top:
            heapq.heappush(self._heap, entry)
        elif self.top and entry[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, entry)

    def most_at_stake(self) -> list[EncounterView]:
        """The `top` encounters to work, the most at stake first (then by encounter id)."""
        return [v for _, _, v in sorted(self._heap, key=lambda e: (-e[0], e[2].encounter_id))]


def pump_counts(alert: dict) -> list[str]:
    """What a standing alert says of infusion pump evidence (coding-rules §11): an infusion the pump
    delivered that nobody charted (a missed charge until it is), a chart/pump time mismatch (and
    whether the pump's times change the codes), a stop-time alert the pump's stop could close."""
    code, message = alert["code"], alert["message"]
    if code == "PUMP_INFUSION_UNDOCUMENTED":
        return ["uncharted"]
    if code == "PUMP_TIME_MISMATCH":
        changes = "with the pump's times the lines would be" in message
        return ["mismatch", "mismatch_changes_codes"] if changes else ["mismatch"]
    if code in ("STOP_TIME_MISSING", "STOP_TIME_OVERDUE") and "(pump: " in message:
        return ["stop_known_to_pump"]
    return []


class _Last(str):
    """An encounter id that ranks the smaller id higher: of two equal stakes the heap keeps the
    encounter listed first."""
    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:
        return str.__lt__(self, other)


def _row(table: dict[str, Tally], key: str) -> Tally:
    row = table.get(key)
    if row is None:
        row = table[key] = Tally()
    return row


def stake_value(stakes: list[Stake], fees: FeeSchedule | None) -> Decimal:
    """What ranks an encounter: its amount at stake, or its units without a fee schedule."""
    if fees is None:
        return Decimal(sum(s.units for s in stakes))
    return sum((a for s in stakes if (a := fees.amount(s)) is not None), Decimal(0))


@dataclass
class Report:
    sources: list[str]
    period: Period
    read: Spilled  # lines, dead letters, unreadable lines
    totals: Totals

    @property
    def listed(self) -> list[EncounterView]:
        return self.totals.most_at_stake()


def build(sources: list[tuple[str, Iterable[bytes], int | None]], fees: FeeSchedule | None = None, top: int = 200,
          period: Period = Period(), rows=None, progress: Callable[[int], None] | None = None,
          tmpdir: str | None = None) -> Report:
    """The report of `sources` (name, lines, size in bytes or None): read once, in bounded memory.
    `rows`: a cli.report_csv.Rows that takes every encounter's rows (None: no CSV)."""
    totals = Totals(fees, top)
    with Spill(buckets_for(size for _, _, size in sources), tmpdir) as spill:
        for name, lines, _ in sources:
            spill.add(lines, name, progress)
        for bucket in spill.buckets():
            encounters = fold(bucket, spill.seen)
            for enc_id in sorted(encounters):
                enc = encounters[enc_id]
                view = view_of(enc)
                if not period.holds(view.day):
                    totals.left_out += 1
                    continue
                totals.add(view, enc)
                if rows is not None:
                    rows.write(view, fees)
        read = spill.seen
    return Report([name for name, _, _ in sources], period, read, totals)
