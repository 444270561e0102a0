"""What a translator hands back, and the pieces the HL7 v2 and FHIR translators share.

A `Translation` is the outcome of one inbound message (HL7) or one resource (FHIR): the contract-v1
events it means, alerts about it, or a rejection (`error` in words, `category` a bounded label for
dead-letter metrics). A rejected message carries no events: the sender is told (HL7 AE / HTTP 4xx),
fixes it and re-sends the whole of it, so nothing is half-applied.

Every event a translator returns has passed `models.events.parse_event`: a translation that would
produce an event the contract rejects (an id over 128 characters, a time in the future) is itself
rejected with the contract's reason.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import NamedTuple

import orjson

from feeds.text import cut
from models.errors import BadEvent
from models.events import parse_event
from rules.alerts import SEVERITY
from rules.ids import stable_id

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"

# Bounded dead-letter categories (metric label values).
CATEGORIES = ("hl7_parse", "hl7_unsupported", "hl7_missing_field", "hl7_bad_value",
              "fhir_invalid", "fhir_unsupported", "unknown_drug")
NOT_TAKEN = ("hl7_parse", "hl7_unsupported", "fhir_unsupported")  # AR: the message as such is not taken


class Note(NamedTuple):
    kind: str  # bounded: charset_7bit, charset_utf8, ... (iv_feed_notes_total's label)
    text: str


@dataclass(frozen=True)
class Translation:
    events: list[dict]  # contract-v1 event dicts, each valid for models.events.parse_event
    alerts: list[dict] = field(default_factory=list)  # alert records (models.outputs.Alert shape)
    problems: list[str] = field(default_factory=list)  # rejected: every problem found, each saying what to fix
    category: str | None = None  # bounded dead-letter category when rejected (that of the first problem)
    message_id: str | None = None  # HL7 MSH-10 / FHIR "ResourceType/id"
    # What was read leniently, never silently: (kind, what was done). `kind` is a bounded label (a
    # metric's); the text names fields, never values. E.g. a character-set label that did not fit
    # the bytes, a resource type not read and skipped.
    notes: list[Note] = field(default_factory=list)
    skipped: bool = False  # a resource of a type the product does not read: nothing to take, nothing wrong

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def ack(self) -> str:
        """HL7's acknowledgement code for it: AA taken; AE fix the content and resend; AR not taken
        (unparseable, or a type or kind the product does not translate: filter it out upstream)."""
        if self.ok:
            return "AA"
        return "AR" if self.category in NOT_TAKEN else "AE"

    @property
    def error(self) -> str | None:
        """The problems as one text (an ACK's MSA-3, a dead letter's reason), or None."""
        return "; ".join(self.problems) if self.problems else None


class Reject(Exception):
    """Raised inside a translator: the whole message is rejected, for these problems (category: a
    bounded label for dead-letter metrics)."""

    def __init__(self, category: str, problems: str | list[str], alerts: list[dict] | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))
        self.category = category
        self.alerts = alerts or []


class Problems:
    """Collects every problem of a message instead of stopping at the first, so that the sender
    fixes a message in one round: `with problems.field("RXA #2"):` runs a check and keeps its
    Reject; `problems.raise_any()` at the end rejects the message for all of them."""

    def __init__(self) -> None:
        self.found: list[Reject] = []

    def check(self, fn, *args, **kwargs):
        """fn(*args, **kwargs), or None when it rejected (its problems kept)."""
        try:
            return fn(*args, **kwargs)
        except Reject as exc:
            self.found.append(exc)
            return None

    def add(self, exc: Reject) -> None:
        self.found.append(exc)

    def raise_any(self) -> None:
        if self.found:
            first = self.found[0]
            raise Reject(first.category, [p for exc in self.found for p in exc.problems],
                         [a for exc in self.found for a in exc.alerts])


MAX_PROBLEMS = 100  # listed per message: a hostile 64 KB message cannot make a megabyte of NAK
MAX_ALERTS = 100


def rejected(exc: Reject, message_id: str | None, notes: list[Note] | None = None) -> Translation:
    problems = exc.problems
    if len(problems) > MAX_PROBLEMS:
        problems = problems[:MAX_PROBLEMS] + [f"and {len(problems) - MAX_PROBLEMS} more problem(s) not listed: fix "
                                              "these and resend to see them"]
    return Translation(events=[], alerts=list(exc.alerts[:MAX_ALERTS]), problems=problems, category=exc.category,
                       message_id=message_id[:199] if message_id else message_id, notes=notes or [])


def rfc3339(value: dt.datetime) -> str:
    """An aware datetime as RFC 3339 with its own UTC offset, to the second."""
    return value.replace(microsecond=0).isoformat()


def digest(payload: dict) -> str:
    """Short stable digest of an event's content (keys sorted), for content-based event ids."""
    return blake2b(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS), digest_size=5).hexdigest()


def content(event: dict) -> str:
    """The digest of an event's facts, for its content-based id: not the id itself, nor what the
    drug table derives (the ingredient), so an event keeps its id when the table learns more."""
    facts = {k: v for k, v in event.items() if k != "event_id"}
    if isinstance(facts.get("drug"), dict) and "ingredient" in facts["drug"]:
        facts["drug"] = {k: v for k, v in facts["drug"].items() if k != "ingredient"}
    return digest(facts)


def checked(events: list[dict], fail_category: str) -> list[dict]:
    """Validate every event against contract v1; the first failure rejects the message."""
    for event in events:
        try:
            parse_event(orjson.dumps(event))
        except BadEvent as exc:
            raise Reject(fail_category, f"the translated {event.get('type')} event breaks contract v1: {exc}") from None
    return events


def unknown_drug_alert(encounter_id: str, administration_id: str, drug: dict, where: str) -> dict:
    """DRUG_CLASS_UNKNOWN (hard, to `integration`: only pharmacy or IT can add a drug to the table,
    not the nurse at the bedside): the drug is not in the drug-class table, so nothing can be coded.
    The feeds add how many administrations wait on the code (feeds.drugs.Waiting)."""
    drug = {"name": cut(str(drug.get("name") or ""), 256), "code": _cut(drug.get("code"), 128),
            "system": _cut(drug.get("system"), 512)}  # every text quoted is bounded (feeds/text.py)
    encounter_id, administration_id = cut(encounter_id, 128), cut(administration_id, 128)
    code = f"code {drug.get('code')}" + (f" ({drug.get('system')})" if drug.get("system") else "") \
        if drug.get("code") else "no code"
    message = (f"Drug '{drug.get('name')}' ({code}, {where}) of administration {administration_id} is not in the "
               "drug-class table, so it cannot be classified as chemotherapy, therapeutic or hydration and the "
               "message was rejected: pharmacy or IT must add this drug code to the drug-class table "
               "(feeds/drug_classes.toml or the hospital's override file), then have the sender re-send the message.")
    identity = "|".join(("DRUG_CLASS_UNKNOWN", administration_id, str(drug.get("system")), str(drug.get("code")),
                         str(drug.get("name"))))
    return {"kind": "alert", "alert_id": stable_id("al", encounter_id, identity), "encounter_id": encounter_id,
            "administration_id": administration_id, "code": "DRUG_CLASS_UNKNOWN", "severity": "hard",
            "state": "raised", "message": message, "audience": "integration",
            "drug": {"name": drug.get("name"), "code": drug.get("code"), "system": drug.get("system")}}


def _cut(value, limit: int) -> str | None:
    return None if value is None else cut(str(value), limit)


def settle_method(route: str, method: str | None, instant: bool) -> str:
    """The contract's method for what a feed said: unsaid, IV/IA is an infusion (a push when given
    at one instant) and SC/IM an injection; an IV "injection" is a push, an SC/IM "push" an injection."""
    if method is None:
        method = ("push" if instant else "infusion") if route in ("IV", "IA") else "injection"
    if route in ("IV", "IA") and method == "injection":
        return "push"
    if route in ("SC", "IM") and method == "push":
        return "injection"
    return method


def method_missing_alert(encounter_id: str, administration_id: str, route: str) -> dict:
    """METHOD_MISSING (hard): whether an IV/IA administration was a push or an infusion cannot be
    told, so it was rejected; guessing would bill a push for an infusion or drop a hydration."""
    encounter_id, administration_id = cut(encounter_id, 128), cut(administration_id, 128)
    message = (f"Administration {administration_id} ({route}) was documented at one instant with no method, rate or "
               "infuse-over time, so whether it was a push or an infusion cannot be told and the message was "
               "rejected: nursing must document the method (push or infusion) and, for an infusion, its stop time "
               "(or rate / infuse-over time), then have the sender re-send it.")
    return {"kind": "alert", "alert_id": stable_id("al", encounter_id, f"METHOD_MISSING|{administration_id}"),
            "encounter_id": encounter_id, "administration_id": administration_id, "code": "METHOD_MISSING",
            "severity": SEVERITY["METHOD_MISSING"], "state": "raised", "message": message, "audience": "nursing"}
