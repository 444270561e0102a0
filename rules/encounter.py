"""The encounter state machine shared by the batch command and the stream processor.

`apply` takes one event and returns the output records it causes: charge posts and reversals
(only the delta against what was already posted) and alerts raised or resolved. State is small
and serializes to JSON (`to_json` / `from_json`), so it can live in a changelog-backed table.

Order independence: the facts (starts, stops, voids, discharge and cancel times) merge the same
way in any arrival order, so the final coding depends only on which events arrived.
"""
from __future__ import annotations

import zlib
from array import array
from dataclasses import dataclass, field

import orjson

from rules import pumps
from rules.administration import Administration, clock
from rules.alerts import AlertSpec, audience
from rules.classify import stop_before_start_message
from rules.edits import national_findings
from rules.engine import Coding, Context, Line, code_encounter, code_table
from rules.facts import AdminFacts
from rules.ids import stable_id
from rules.policy import DEFAULT, Policy
from rules.prebill import audit

# Alerts judged while the encounter is open; all others are judged at discharge and stay as they
# were while a cancelled discharge keeps the encounter reopened.
LIVE_CODES = frozenset({"STOP_TIME_OVERDUE", "STOP_BEFORE_START", "PUMP_STOPPED_UNDOCUMENTED",
                        "PUMP_INFUSION_UNDOCUMENTED"})
_PUMP_NOTED = ("STOP_TIME_MISSING", "STOP_TIME_OVERDUE")  # nurses' stop-time messages that name the pump's time


@dataclass(slots=True)
class EncounterState:
    encounter_id: str
    seen: set[str] = field(default_factory=set)  # event ids: a repeat is a duplicate
    admins: dict[str, AdminFacts] = field(default_factory=dict)
    discharged_at: int | None = None  # epoch seconds (clinical time) of the newest discharge
    cancelled_at: int | None = None  # epoch seconds of the newest discharge cancel
    patient_class: str = "outpatient"
    billing: str = "facility"
    submitted: list[dict] | None = None
    submitted_at: int | None = None
    posted: dict[str, dict] = field(default_factory=dict)  # charge_id -> standing posted line
    alerts: dict[str, dict] = field(default_factory=dict)  # identity -> standing raised alert
    overdue: list[str] = field(default_factory=list)  # admins whose overdue alert was raised
    generations: dict[str, int] = field(default_factory=dict)  # times an id seed was used
    location: dict | None = None  # the latest location an event carried (contract v1.1)
    # v1.2: when the source recorded the newest discharge and cancel (None: not sent). They decide
    # which of the two stands when both carry it: a re-discharge keyed after a cancel stands even
    # when its clinical time is earlier than the cancel's.
    discharge_recorded: int | None = None
    cancel_recorded: int | None = None
    patient_id: str | None = None  # v1.2: the latest one an event carried; for charge records only
    clock: int = 0  # epoch seconds of the newest event applied: the encounter's own event-time clock
    pumps: dict[str, dict] = field(default_factory=dict)  # v1.2: device.delivery evidence (rules/pumps.py)

    @property
    def discharged(self) -> bool:
        if self.discharged_at is None:
            return False
        if self.cancelled_at is None:
            return True
        if self.discharge_recorded is not None and self.cancel_recorded is not None \
                and self.discharge_recorded != self.cancel_recorded:
            return self.discharge_recorded > self.cancel_recorded
        return self.discharged_at > self.cancelled_at

    # -- events --------------------------------------------------------------------------

    def apply(self, event, now: int, policy: Policy = DEFAULT) -> list[dict]:
        """Apply one parsed event; `now` is the clock in epoch seconds. Returns output records."""
        event_id = event.event_id
        if event_id in self.seen:
            return []
        self.seen.add(event_id)
        if event.location is not None:
            self.location = event.location.model_dump()
        if event.patient_id is not None:
            self.patient_id = event.patient_id
        _APPLY[event.type](self, event)
        if not (self.discharged or self.alerts or self.overdue or self.pumps or self._stop_before_start(event)):
            return []  # the common case while an encounter is open: nothing to say
        return self.reconcile(now, policy)

    def _stop_before_start(self, event) -> bool:
        facts = self.admins.get(getattr(event, "administration_id", None))
        return facts is not None and facts.stops_before_start

    def _started(self, e) -> None:
        self._facts(e.administration_id).record_start(e)

    def _stopped(self, e) -> None:
        self._facts(e.administration_id).stop = (e.minute, e.offset)

    def _voided(self, e) -> None:
        self._facts(e.administration_id).voided = True

    def _facts(self, admin_id: str) -> AdminFacts:
        facts = self.admins.get(admin_id)  # not setdefault: it would build an AdminFacts every event
        if facts is None:
            facts = self.admins[admin_id] = AdminFacts()
        return facts

    def _delivered(self, e) -> None:
        pumps.record(self.pumps, e)

    def _discharged(self, e) -> None:
        at, recorded = e.epoch, e.recorded_epoch
        if self.discharged_at is None or _newer(at, recorded, self.discharged_at, self.discharge_recorded):
            self.discharged_at, self.discharge_recorded = at, recorded
            self.patient_class, self.billing = e.patient_class, e.billing

    def _cancelled(self, e) -> None:
        at, recorded = e.epoch, e.recorded_epoch
        if self.cancelled_at is None or _newer(at, recorded, self.cancelled_at, self.cancel_recorded):
            self.cancelled_at, self.cancel_recorded = at, recorded

    def _submitted(self, e) -> None:
        at = e.epoch
        if self.submitted_at is None or at >= self.submitted_at:
            self.submitted_at = at
            self.submitted = [{"cpt": l.cpt, "units": l.units, "modifiers": list(l.modifiers),
                               **({"service_date": l.service_date.isoformat()} if l.service_date else {})}
                              for l in e.lines]

    # -- the clock -----------------------------------------------------------------------

    def deadlines(self, policy: Policy = DEFAULT) -> list[tuple[int, str]]:
        """(minute, administration id) at which each running infusion becomes overdue, and (minute, "")
        at which pump evidence may raise an alert (the stream's wall-clock ticks ask for both)."""
        if self.discharged:
            return []
        pump = pumps.deadlines(*self._pump_view(self.clock, policy), policy) if self.pumps else []
        return self._overdue_deadlines(policy) + [(m, "") for m in pump]

    def _overdue_deadlines(self, policy: Policy) -> list[tuple[int, str]]:
        return [(d, admin_id) for admin_id, facts in self.admins.items()
                if (d := facts.overdue_minute(policy)) is not None and admin_id not in self.overdue]

    def deadline(self, admin_id: str, policy: Policy = DEFAULT) -> int | None:
        """When this administration becomes overdue, if it is a running infusion not yet alerted."""
        facts = self.admins.get(admin_id)
        if facts is None or self.discharged or admin_id in self.overdue:
            return None
        return facts.overdue_minute(policy)

    def fire_overdue(self, now: int, policy: Policy = DEFAULT) -> list[dict]:
        """Raise STOP_TIME_OVERDUE for every infusion past its deadline at `now` (epoch seconds), and
        the pump evidence alerts that fell due."""
        overdue = [] if self.discharged else self._overdue_deadlines(policy)
        due = [admin_id for deadline, admin_id in overdue if deadline * 60 < now]
        if not (due or self._pump_due(now, policy)):
            return []
        self.overdue.extend(due)
        return self.reconcile(now, policy)

    # -- pump evidence (rules/pumps.py) ----------------------------------------------------

    def _pump_view(self, now: int, policy: Policy) -> tuple[list[pumps.Delivery], dict[str, str], dict]:
        """(deliveries, delivery key -> matched administration id, administrations by id). Matching
        and ends do not depend on `now`; only a running delivery's minutes delivered do."""
        deliveries = pumps.derive(self.pumps, now // 60)
        admins = {admin_id: a for admin_id, f in self.admins.items() if (a := f.administration(admin_id))}
        orders = {admin_id: f.field("order_id") for admin_id, f in self.admins.items()}
        return deliveries, pumps.match(deliveries, admins, orders, policy), admins

    def _pump_due(self, now: int, policy: Policy) -> bool:
        if not self.pumps:
            return False
        wanted = pumps.nursing_alerts(*self._pump_view(now, policy), now // 60, policy)
        return any(a.identity not in self.alerts for a in wanted)

    @staticmethod
    def _with_pump_notes(specs: list[AlertSpec], view) -> list[AlertSpec]:
        """Stop-time alerts of an administration the pump saw name what the pump reported."""
        if view is None:
            return specs
        deliveries, matched, _ = view
        notes = {matched[d.key]: pumps.pump_note(d) for d in deliveries if d.key in matched and d.end is not None}
        return [AlertSpec(a.code, a.administration_id, f"{a.message} ({notes[a.administration_id]})", a.key)
                if a.code in _PUMP_NOTED and a.administration_id in notes else a for a in specs]

    # -- outputs -------------------------------------------------------------------------

    def administrations(self, policy: Policy = DEFAULT, view=None) -> list[Administration]:
        """The encounter's administrations; with pump_stop_times = "fallback", an administration with
        no documented stop takes the stop or completion of the pump delivery it matches, marked
        incomplete documentation (coding-rules §9). `view`: a `_pump_view` already made."""
        admins = [a for admin_id, f in sorted(self.admins.items()) if (a := f.administration(admin_id))]
        if not (self.pumps and policy.pump_stop_times == "fallback"):
            return admins
        deliveries, matched, _ = view or self._pump_view(self.clock, policy)
        ends = {matched[d.key]: d.end for d in deliveries if d.key in matched and d.end is not None}
        return [a.with_pump_stop(ends[a.id]) if a.stop is None and a.id in ends and ends[a.id] > a.start else a
                for a in admins]

    def coding(self, policy: Policy = DEFAULT, admins: list[Administration] | None = None) -> Coding:
        discharged = self.discharged_at // 60 if self.discharged_at is not None else None
        return code_encounter(self.administrations(policy) if admins is None else admins,
                              Context(self.billing, self.patient_class, discharged), policy)

    def reconcile(self, now: int, policy: Policy) -> list[dict]:
        """Bring posted charges and standing alerts in line with the facts; return the delta."""
        view = self._pump_view(now, policy) if self.pumps else None  # once per reconcile
        live = self._live_alerts(policy, now, view)
        if not self.discharged:
            kept = [a for a in self._standing_specs() if a.code not in LIVE_CODES]
            return self._alert_delta(live + kept)
        admins = self.administrations(policy, view)
        coding = self.coding(policy, admins)
        wanted = self._with_pump_notes(coding.alerts, view) + live
        if view is not None:
            wanted += self._pump_mismatches(view, admins, policy)
        if self.submitted is not None:
            wanted += audit(self.submitted, coding, code_table(policy))
        wanted += national_findings(policy.edits, coding, self.submitted, self.billing, self.discharged_at)
        return self._charge_delta(coding.lines) + self._alert_delta(wanted)

    def _pump_mismatches(self, view, admins: list[Administration], policy: Policy) -> list[AlertSpec]:
        def recode(admin_id: str | None, start: int | None, stop: int | None) -> list[tuple[str, int]]:
            changed = [a.with_times(start, stop) if a.id == admin_id else a for a in admins]
            return sorted((line.cpt, line.units) for line in self.coding(policy, changed).lines)

        return pumps.mismatch_alerts(*view, policy, recode)

    def _live_alerts(self, policy: Policy, now: int, view=None) -> list[AlertSpec]:
        out = []
        for admin_id in self.overdue:
            facts = self.admins[admin_id]
            if facts.open:
                out.append(AlertSpec("STOP_TIME_OVERDUE", admin_id, _overdue_message(facts, policy)))
        for admin_id, facts in self.admins.items():
            if facts.stops_before_start:
                a = facts.administration(admin_id)
                out.append(AlertSpec("STOP_BEFORE_START", admin_id, stop_before_start_message(a)))
        if view is not None:
            out = self._with_pump_notes(out, view) + pumps.nursing_alerts(*view, now // 60, policy)
        return out

    def _standing_specs(self) -> list[AlertSpec]:
        return [AlertSpec(a["code"], a["administration_id"], a["message"], a["key"]) for a in self.alerts.values()]

    def _charge_delta(self, lines: list[Line]) -> list[dict]:
        by_key: dict[str, list[str]] = {}
        for charge_id, rec in self.posted.items():
            by_key.setdefault(rec["key"], []).append(charge_id)
        posts = []
        for line in lines:
            key = _line_key(line)
            if by_key.get(key):
                by_key[key].pop()
                continue
            posts.append(self._post(line, key))
        reversals = [self._reverse(cid) for ids in by_key.values() for cid in ids]
        return reversals + posts

    def _post(self, line: Line, key: str) -> dict:
        charge_id = stable_id("ch", self.encounter_id, key, self._generation("ch" + key))
        rec = {"kind": "charge", "charge_id": charge_id, "action": "post", "reverses": None,
               "encounter_id": self.encounter_id, "cpt": line.cpt, "units": line.units,
               "modifiers": list(line.modifiers), "service_date": line.service_date.isoformat(),
               "administration_ids": list(line.administration_ids),
               "incomplete_documentation": line.incomplete, "explanation": line.explanation}
        if self.patient_id is not None:
            rec["patient_id"] = self.patient_id
        rec["patient_class"] = self.patient_class  # v1.3: the discharge's, for the billing interface (PV1-2)
        self.posted[charge_id] = {**rec, "key": key}
        return rec

    def _reverse(self, charge_id: str) -> dict:
        rec = dict(self.posted.pop(charge_id))
        del rec["key"]
        rec.update(charge_id=stable_id("rv", charge_id), action="reverse", reverses=charge_id,
                   explanation="Reversal: the documentation no longer supports this line. " + rec["explanation"])
        return rec

    def _alert_delta(self, wanted: list[AlertSpec]) -> list[dict]:
        wanted_by_id = {a.identity: a for a in wanted}
        out = [self._resolve(identity) for identity in list(self.alerts) if identity not in wanted_by_id]
        out += [self._raise(a) for identity, a in wanted_by_id.items() if identity not in self.alerts]
        return out

    def _raise(self, a: AlertSpec) -> dict:
        alert_id = stable_id("al", self.encounter_id, a.identity, self._generation("al" + a.identity))
        rec = {"kind": "alert", "alert_id": alert_id, "encounter_id": self.encounter_id,
               "administration_id": a.administration_id, "code": a.code, "severity": a.severity,
               "state": "raised", "message": a.message, "audience": audience(a.code)}
        if self.location:
            rec["location"] = self.location
        self.alerts[a.identity] = {**rec, "key": a.key}
        return rec

    def _resolve(self, identity: str) -> dict:
        rec = dict(self.alerts.pop(identity))
        del rec["key"]
        rec.update(state="resolved", message="Resolved: " + rec["message"])
        return rec

    def _generation(self, seed: str) -> int:
        n = self.generations.get(seed, 0)
        self.generations[seed] = n + 1
        return n

    # -- serialization -------------------------------------------------------------------

    def to_json(self) -> dict:
        return {"encounter_id": self.encounter_id, "seen": sorted(self.seen),
                "admins": {k: v.to_json() for k, v in self.admins.items()},
                "discharged_at": self.discharged_at, "cancelled_at": self.cancelled_at,
                "patient_class": self.patient_class, "billing": self.billing,
                "submitted": self.submitted, "submitted_at": self.submitted_at, "posted": self.posted,
                "alerts": self.alerts, "overdue": self.overdue, "generations": self.generations,
                "location": self.location, "discharge_recorded": self.discharge_recorded,
                "cancel_recorded": self.cancel_recorded, "patient_id": self.patient_id, "clock": self.clock,
                "pumps": self.pumps}

    @classmethod
    def from_json(cls, data: dict) -> EncounterState:
        data = dict(data)
        data["seen"] = set(data["seen"])
        data["admins"] = {k: AdminFacts.from_json(v) for k, v in data["admins"].items()}
        return cls(**data)


    # -- a closed encounter, held compactly (the batch command) ----------------------------

    def pack(self) -> Packed:
        """This state in a few hundred bytes, for an encounter held only for late documentation.

        What can be recomputed is dropped: a posted line's constant fields and its key (the key is
        _line_key of the line's own fields), the id generations that are 1 for a standing line or alert,
        and the event ids, kept as 64-bit digests (`Seen`). The rest is one orjson document, deflated
        (_Squeeze). `unpack` gives back a state that applies events exactly as this one."""
        generations = dict(self.generations)
        posted = []
        for cid, r in self.posted.items():
            if generations.get(seed := "ch" + r["key"]) == 1:
                del generations[seed]
            posted.append([cid, r["cpt"], r["units"], r["modifiers"], r["service_date"], r["administration_ids"],
                           r["incomplete_documentation"], r["explanation"], r.get("patient_id"),
                           r.get("patient_class")])
        for identity in self.alerts:
            if generations.get(seed := "al" + identity) == 1:
                del generations[seed]
        admins = [[k, f.start, f.stop, f.voided] for k, f in self.admins.items()]
        seen = self.seen
        digests = seen.digests() if type(seen) is Seen else array("q", map(hash, seen)).tobytes()
        doc = orjson.dumps([admins, self.cancelled_at, self.patient_class, self.billing, self.submitted,
                            self.submitted_at, posted, self.alerts, self.overdue, generations, self.location,
                            self.discharge_recorded, self.cancel_recorded, self.patient_id, self.clock, self.pumps])
        return Packed(self.discharged_at, digests, _SQUEEZE.compress(doc))

    @classmethod
    def unpack(cls, encounter_id: str, packed: Packed) -> EncounterState:
        (admins, cancelled_at, patient_class, billing, submitted, submitted_at, posted, alerts, overdue,
         generations, location, discharge_recorded, cancel_recorded, patient_id, clock, pump_evidence) = orjson.loads(
            _SQUEEZE.decompress(packed.doc))
        facts = {k: AdminFacts(start, tuple(stop) if stop else None, voided) for k, start, stop, voided in admins}
        lines = {}
        for cid, cpt, units, modifiers, service_date, ids, incomplete, explanation, line_patient, line_class in posted:
            key = "|".join((cpt, str(units), "+".join(modifiers), service_date, "+".join(ids), "i" if incomplete else "c"))
            lines[cid] = {"kind": "charge", "charge_id": cid, "action": "post", "reverses": None,
                          "encounter_id": encounter_id, "cpt": cpt, "units": units, "modifiers": modifiers,
                          "service_date": service_date, "administration_ids": ids,
                          "incomplete_documentation": incomplete,
                          "explanation": explanation, "key": key}
            if line_patient is not None:
                lines[cid]["patient_id"] = line_patient
            if line_class is not None:
                lines[cid]["patient_class"] = line_class
            generations.setdefault("ch" + key, 1)
        for identity in alerts:
            generations.setdefault("al" + identity, 1)
        return cls(encounter_id, Seen(packed.seen), facts, packed.discharged_at, cancelled_at, patient_class,
                   billing, submitted, submitted_at, lines, alerts, overdue, generations, location,
                   discharge_recorded, cancel_recorded, patient_id, clock, pump_evidence)


class _Squeeze:
    """Packed documents deflated against a dictionary made of this process's first ones: a 1.6 KB
    document (on a simulated day) deflates to about 340 B against 4 KB of what its neighbours look
    like (field order, codes, drug details, explanation wording). zlib reads the whole dictionary for
    every document: 32 KB gave 15% less but cost 100 us a document, 4 KB costs 35 us (measured)."""

    PRIME = 64  # documents kept as they are, then the dictionary is made of their last DICTIONARY bytes
    DICTIONARY = 4096

    def __init__(self) -> None:
        self._first: list[bytes] | None = []
        self._zdict = b""

    def compress(self, doc: bytes) -> bytes:
        if self._first is not None:
            self._first.append(doc)
            if len(self._first) < self.PRIME:
                return bytes(memoryview(doc))  # exact size: orjson's bytes keep its 4 KB buffer alive
            self._zdict, self._first = b"".join(self._first)[-self.DICTIONARY:], None
        deflate = zlib.compressobj(6, zdict=self._zdict)
        return deflate.compress(doc) + deflate.flush()

    def decompress(self, data: bytes) -> bytes:
        if data[:1] == b"[":  # one of the first documents (a deflated one starts with 0x78)
            return data
        inflate = zlib.decompressobj(zdict=self._zdict)
        return inflate.decompress(data) + inflate.flush()


_SQUEEZE = _Squeeze()


@dataclass(slots=True, frozen=True)
class Packed:
    """A closed encounter as EncounterState.pack holds it: the discharge time (for the retention
    purge), the digests of its event ids (for duplicates), the rest as one JSON document."""
    discharged_at: int
    seen: bytes
    doc: bytes

    def has_seen(self, event_id: str) -> bool:
        return hash(event_id) in array("q", self.seen)


class Seen:
    """The event ids of an unpacked closed encounter: digests of the ids seen before it was packed
    (Python's 64-bit string hash, seeded per process: only ever read back by the process that made
    them, from memory or from the batch command's own unlinked temporary files), and the ids seen
    since. Two ids of one encounter with equal digests would make the second a
    duplicate: with 64-bit digests, a chance of about n^2 / 2^65 for n events (1e-17 for 20)."""
    __slots__ = ("_old", "_new")

    def __init__(self, old: bytes) -> None:
        self._old = array("q", old)
        self._new: set[str] = set()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._new or hash(event_id) in self._old

    def add(self, event_id: str) -> None:
        self._new.add(event_id)

    def digests(self) -> bytes:
        return self._old.tobytes() + array("q", map(hash, self._new)).tobytes()


_APPLY = {
    "administration.started": EncounterState._started,
    "administration.stopped": EncounterState._stopped,
    "administration.voided": EncounterState._voided,
    "device.delivery": EncounterState._delivered,
    "encounter.discharged": EncounterState._discharged,
    "encounter.discharge_cancelled": EncounterState._cancelled,
    "charges.submitted": EncounterState._submitted,
}


def _newer(at: int, recorded: int | None, than_at: int, than_recorded: int | None) -> bool:
    """Whether a discharge (or cancel) at `at`, recorded at `recorded`, is as new as the one it would
    replace: by the time it was recorded when both carry one (contract v1.2), else by clinical time.
    Ties go to the later arrival, as before."""
    if recorded is not None and than_recorded is not None and recorded != than_recorded:
        return recorded > than_recorded
    return at >= than_at


def _line_key(line: Line) -> str:
    return "|".join((line.cpt, str(line.units), "+".join(line.modifiers), line.service_date.isoformat(),
                     "+".join(line.administration_ids), "i" if line.incomplete else "c"))


def _overdue_message(facts: AdminFacts, policy: Policy) -> str:
    start, offset = facts.field("start"), facts.field("offset")
    ordered = facts.field("ordered_duration_minutes")
    allowed = ordered + policy.overdue_grace_minutes if ordered else policy.overdue_without_order_minutes
    why = (f"ordered {ordered} min + {policy.overdue_grace_minutes} min grace" if ordered
           else f"no ordered duration; limit {allowed} min")
    site = facts.field("access_site")
    return (f"{facts.field('drug_name')} {facts.field('route')} infusion started {clock(start, offset)}"
            f"{' on ' + site if site else ''} is still running past {clock(start + allowed, offset)} ({why}): "
            "document the stop time, or confirm it is still infusing.")
