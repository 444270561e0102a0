"""FHIR R4 resources -> contract-v1 events, and charge records -> FHIR R4 ChargeItem.

`translate_fhir(resource, drugs)` takes a parsed JSON resource (a dict). A Bundle (transaction,
batch, collection, searchset, history, or a subscription notification: R4B/R5 type
`subscription-notification`, or the R4 Subscriptions Backport `history` Bundle whose first entry is
a subscription-status Parameters) gives one `Translation` per entry, in entry order; any other
resource gives a list of one. Entries are independent: a bad entry is rejected alone.

Resources are checked with small pydantic models of the R4 elements read (no FHIR library: the
translator reads about twenty elements; `fhir.resources` 8 models R5 by default and R4B, not R4, as a
subpackage, and would reject a whole resource for a problem in an element we never read, e.g. a
sender's R4-only element or an extension it does not know).

MedicationAdministration (administration_id = resource id, else its first identifier value; a
sender must use one or the other consistently, the id pairs starts with stops):

| status | events |
|---|---|
| in-progress, on-hold | started (on-hold: the administration began and is paused; it is not undone) |
| completed, stopped | started, and stopped when effectivePeriod.end is present |
| entered-in-error, not-done | voided (a void of an administration never started codes nothing) |
| unknown | rejected (`fhir_unsupported`): whether it was given is not known |

- `context` (R4) or `encounter` (R5 senders) -> encounter_id: the id of the Encounter reference
  (relative, absolute URL, with or without _history; a urn:uuid resolved in the Bundle; or a logical
  reference's identifier value).
- effectivePeriod.start/end -> start/stop; effectiveDateTime is an instant: start only, and the
  method defaults to push (IV/IA) or injection (SC/IM). A push/injection whose period has end ==
  start also gives the start only (a stop at the start minute would be flagged STOP_BEFORE_START).
- medicationCodeableConcept, or medicationReference to a contained Medication or one in the Bundle:
  RxNorm first, then NDC, then other codings, looked up in the drug-class table, then the text as
  an exact name. Unknown -> rejected (`unknown_drug`) with a DRUG_CLASS_UNKNOWN alert.
- dosage.route: SNOMED CT 47625008 IV, 58100008 IA, 34206005 SC, 78421000 IM, or a code/text IV,
  IA, SC, IM (HL7 table 0162). dosage.method: its code, display or text containing push/bolus ->
  push, infus/drip/piggyback -> infusion, inject -> injection (IV injection = push); absent ->
  infusion for a period on IV/IA, injection on SC/IM.
- dosage.site -> access_site (text, else the first code); device -> the referenced Device's type
  (or the reference display) containing pump / syringe / gravity.
- request -> a contained MedicationRequest or one in the Bundle: dosageInstruction[0].timing.repeat
  duration + durationUnit -> ordered_duration_minutes.
- extensions (our own, on the MedicationAdministration; URLs below): access-site (valueString,
  wins over dosage.site), separate-access-reason, container-id (valueString), purpose (valueCode
  treatment|kvo|flush|carrier), primary-reason (valueBoolean).

Encounter: status finished with period.end -> encounter.discharged; class (R4 Coding, or R5 list of
CodeableConcept) from v3 ActCode: AMB outpatient, EMER emergency, IMP/ACUTE/NONAC inpatient, OBSENC
observation; other classes are rejected (`fhir_unsupported`). A not-finished Encounter whose
statusHistory shows it was finished before was reopened -> encounter.discharge_cancelled at
meta.lastUpdated. Any other Encounter (planned, in-progress, cancelled, ...) gives no event: we
cannot tell a reopening from a first update without that history.

Event ids are content-based, as for HL7 v2: `fhir:{Type}/{id}:start:{occurred_at}:{digest}`,
`...:stop:{occurred_at}`, `...:void`, `fhir:Encounter/{id}:discharged:{occurred_at}:{digest}`,
`...:discharge_cancelled:{occurred_at}`. Every version of a resource restates its facts, so a new
versionId with unchanged facts is a duplicate, a changed start or end is a new event that wins, and
a late redelivery of an old version cannot undo a correction (with ids from versionId it would).

ChargeItem (`charge_item(charge)`): see its docstring.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from feeds.drugs import DrugClasses, canonical_system
from feeds.hl7v2 import _METHODS as _HL7_METHODS  # the same method codes as RXR-4
from feeds.translation import (NDC, RXNORM, Reject, Translation, checked, digest, rejected, rfc3339,
                               settle_method, unknown_drug_alert)
from models.errors import describe

EXT = "urn:infusion-validator:fhir:"
EXT_ACCESS_SITE = EXT + "access-site"
EXT_SEPARATE_ACCESS_REASON = EXT + "separate-access-reason"
EXT_CONTAINER_ID = EXT + "container-id"
EXT_PURPOSE = EXT + "purpose"
EXT_PRIMARY_REASON = EXT + "primary-reason"
EXT_CPT_MODIFIER = EXT + "cpt-modifier"
EXT_INCOMPLETE = EXT + "incomplete-documentation"
CPT = "http://www.ama-assn.org/go/cpt"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ADMIN_ID_SYSTEM = "urn:infusion-validator:administration-id"
ENCOUNTER_ID_SYSTEM = "urn:infusion-validator:encounter-id"
CHARGE_ID_SYSTEM = "urn:infusion-validator:charge-id"

BUNDLE_TYPES = ("transaction", "batch", "collection", "searchset", "history", "subscription-notification")
# Resources that travel with administrations in a Bundle and carry no event of their own.
SUPPORTING = frozenset({"Patient", "Medication", "MedicationRequest", "Device", "Practitioner", "PractitionerRole",
                        "Location", "Organization", "Provenance", "Parameters", "SubscriptionStatus",
                        "OperationOutcome", "RelatedPerson"})
_ROUTE_SNOMED = {"47625008": "IV", "58100008": "IA", "34206005": "SC", "78421000": "IM"}
_ROUTE_CODES = {"IV": "IV", "IA": "IA", "SC": "SC", "SQ": "SC", "SUBQ": "SC", "IM": "IM", "INTRAVENOUS": "IV",
                "INTRA-ARTERIAL": "IA", "INTRAARTERIAL": "IA", "SUBCUTANEOUS": "SC", "INTRAMUSCULAR": "IM",
                "INTRAVENOUS ROUTE": "IV", "INTRA-ARTERIAL ROUTE": "IA", "SUBCUTANEOUS ROUTE": "SC",
                "INTRAMUSCULAR ROUTE": "IM"}
_CLASSES = {"AMB": "outpatient", "EMER": "emergency", "IMP": "inpatient", "ACUTE": "inpatient",
            "NONAC": "inpatient", "OBSENC": "observation"}
_PURPOSES = ("treatment", "kvo", "flush", "carrier")
_UCUM_MINUTES = {"s": 1 / 60, "min": 1, "h": 60, "d": 1440}


# -- the R4 elements we read -------------------------------------------------------------------

class _M(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Coding(_M):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class CodeableConcept(_M):
    coding: list[Coding] = []
    text: str | None = None


class Identifier(_M):
    system: str | None = None
    value: str | None = None


class Reference(_M):
    reference: str | None = None
    type: str | None = None
    identifier: Identifier | None = None
    display: str | None = None


class Period(_M):
    start: str | None = None
    end: str | None = None


class Meta(_M):
    versionId: str | None = None
    lastUpdated: str | None = None


class Extension(_M):
    url: str
    valueString: str | None = None
    valueCode: str | None = None
    valueBoolean: bool | None = None


class Dosage(_M):
    route: CodeableConcept | None = None
    method: CodeableConcept | None = None
    site: CodeableConcept | None = None


class MedicationAdministration(_M):
    resourceType: Literal["MedicationAdministration"]
    id: str | None = None
    meta: Meta | None = None
    identifier: list[Identifier] = []
    extension: list[Extension] = []
    status: Literal["in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown"]
    medicationCodeableConcept: CodeableConcept | None = None
    medicationReference: Reference | None = None
    context: Reference | None = None
    encounter: Reference | None = None
    effectiveDateTime: str | None = None
    effectivePeriod: Period | None = None
    dosage: Dosage | None = None
    device: list[Reference] = []
    request: Reference | None = None
    contained: list[dict] = []


class Repeat(_M):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    duration: float | None = None
    durationUnit: str | None = None


class Timing(_M):
    repeat: Repeat | None = None


class DosageInstruction(_M):
    timing: Timing | None = None


class MedicationRequest(_M):
    resourceType: Literal["MedicationRequest"]
    dosageInstruction: list[DosageInstruction] = []


class DeviceName(_M):
    name: str | None = None


class Device(_M):
    resourceType: Literal["Device"]
    type: CodeableConcept | None = None
    deviceName: list[DeviceName] = []


class StatusHistory(_M):
    status: str
    period: Period | None = None


class Encounter(_M):
    resourceType: Literal["Encounter"]
    id: str | None = None
    meta: Meta | None = None
    status: str
    statusHistory: list[StatusHistory] = []
    class_: Coding | list[CodeableConcept] | None = Field(None, alias="class")  # R4 Coding, R5 list
    period: Period | None = None


# -- entry points ------------------------------------------------------------------------------

def translate_fhir(resource: dict, drugs: DrugClasses) -> list[Translation]:
    """A resource or a Bundle -> one Translation per resource (entry order)."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return [Translation([], problems=["not a FHIR resource: a JSON object with resourceType is expected"],
                            category="fhir_invalid")]
    if resource["resourceType"] != "Bundle":
        return [_one(resource, drugs, _Index(resource), in_bundle=False)]
    kind = resource.get("type")
    bundle_id = f"Bundle/{resource['id']}" if isinstance(resource.get("id"), str) else "Bundle"
    if kind not in BUNDLE_TYPES:
        return [Translation([], problems=[f"Bundle type {kind!r} is not translated; send one of "
                                          f"{', '.join(BUNDLE_TYPES)}"], category="fhir_unsupported", message_id=bundle_id)]
    entries = resource.get("entry", [])
    if not isinstance(entries, list):
        return [Translation([], problems=["Bundle.entry must be a list"], category="fhir_invalid", message_id=bundle_id)]
    index = _Index(resource)
    out = []
    for n, entry in enumerate(entries, 1):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict):
            out.append(_one(res, drugs, index, in_bundle=True))
            continue
        request = entry.get("request") if isinstance(entry, dict) else None
        url = request.get("url") if isinstance(request, dict) else None
        if isinstance(request, dict) and request.get("method") == "DELETE":
            reason = (f"entry {n}: DELETE {url} cannot be translated (no encounter to apply it to): mark the "
                      "MedicationAdministration entered-in-error instead")
        else:
            reason = (f"entry {n} has no resource: an id-only subscription notification? Configure the "
                      "subscription with full-resource payload")
        out.append(Translation([], problems=[reason], category="fhir_unsupported", message_id=url))
    return out


def _one(resource: dict, drugs: DrugClasses, index: _Index, in_bundle: bool) -> Translation:
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return Translation([], problems=["not a FHIR resource: resourceType must be a string"], category="fhir_invalid")
    rid = resource.get("id")
    message_id = f"{rtype}/{rid}" if isinstance(rid, str) and rid else rtype
    try:
        if rtype == "MedicationAdministration":
            events = _medication_administration(_validate(MedicationAdministration, resource), resource, drugs,
                                                index)
        elif rtype == "Encounter":
            events = _encounter(_validate(Encounter, resource))
        elif in_bundle and rtype in SUPPORTING:
            events = []
        else:
            raise Reject("fhir_unsupported", f"{rtype} is not translated; send MedicationAdministration or "
                         "Encounter resources (or a Bundle of them)")
        return Translation(events=checked(events, "fhir_invalid"), message_id=message_id)
    except Reject as exc:
        return rejected(exc, message_id)


def _validate(model, resource: dict):
    try:
        return model.model_validate(resource)
    except ValidationError as exc:
        raise Reject("fhir_invalid", f"{resource.get('resourceType')}: {describe(exc)}") from None


class _Index:
    """Resources a reference may point to: the Bundle's entries (by fullUrl and Type/id) and, per
    resource, its contained resources (#id)."""

    def __init__(self, root: dict) -> None:
        self.by_ref: dict[str, dict] = {}
        entries = root.get("entry", []) if root.get("resourceType") == "Bundle" else []
        for entry in entries if isinstance(entries, list) else []:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):
                continue
            if isinstance(entry.get("fullUrl"), str):
                self.by_ref[entry["fullUrl"]] = res
            if isinstance(res.get("resourceType"), str) and isinstance(res.get("id"), str):
                self.by_ref[f"{res['resourceType']}/{res['id']}"] = res

    def resolve(self, ref: Reference | None, owner: dict) -> dict | None:
        if ref is None or not ref.reference:
            return None
        target = ref.reference
        if target.startswith("#"):
            for res in owner.get("contained", []) or []:
                if isinstance(res, dict) and res.get("id") == target[1:]:
                    return res
            return None
        found = self.by_ref.get(target)
        if found is None:
            m = _REF.search(target)
            if m:
                found = self.by_ref.get(f"{m.group(1)}/{m.group(2)}")
        return found


_REF = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def _ref_id(ref: Reference | None, want: str, index: _Index, owner: dict, where: str) -> str | None:
    """The id of a reference to a `want` resource (relative, absolute, urn:uuid in the Bundle, or a
    logical reference by identifier)."""
    if ref is None:
        return None
    if ref.reference:
        m = _REF.search(ref.reference)
        if m:
            if m.group(1) != want:
                raise Reject("fhir_unsupported", f"{where} refers to {m.group(1)}; a reference to {want} is needed")
            return m.group(2)
        res = index.resolve(ref, owner)
        if res is not None and res.get("resourceType") == want:
            if isinstance(res.get("id"), str) and res["id"]:
                return res["id"]
        raise Reject("fhir_invalid", f"{where} reference {ref.reference!r} cannot be read as {want}/id")
    if ref.identifier is not None and ref.identifier.value:
        return ref.identifier.value.strip()
    return None


def _instant(value: str | None, where: str) -> dt.datetime | None:
    if value is None:
        return None
    if "T" not in value:
        raise Reject("fhir_invalid", f"{where} {value!r} has no time of day; a time with UTC offset is needed, "
                     "e.g. 2026-11-24T08:30:00-05:00")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Reject("fhir_invalid", f"{where} {value!r} is not a FHIR dateTime, e.g. 2026-11-24T08:30:00-05:00") \
            from None
    if parsed.tzinfo is None:
        raise Reject("fhir_invalid", f"{where} {value!r} has no UTC offset (FHIR requires one when a time is "
                     "given), e.g. 2026-11-24T08:30:00-05:00")
    return parsed


def _content(event: dict) -> str:
    return digest({k: v for k, v in event.items() if k != "event_id"})


def _event_id(readable: str) -> str:
    return readable if len(readable) <= 128 else "fhir:" + digest({"id": readable})


# -- MedicationAdministration ------------------------------------------------------------------

def _medication_administration(ma: MedicationAdministration, raw: dict, drugs: DrugClasses,
                               index: _Index) -> list[dict]:
    admin_id = (ma.id or "").strip() or next((i.value.strip() for i in ma.identifier if i.value and i.value.strip()),
                                             "")
    if not admin_id:
        raise Reject("fhir_invalid", "MedicationAdministration has neither id nor identifier: one of them is the "
                     "administration id that pairs its start with its stop")
    ref = ma.context or ma.encounter
    encounter_id = _ref_id(ref, "Encounter", index, raw, "context")
    if not encounter_id:
        raise Reject("fhir_invalid", "MedicationAdministration.context (R4; encounter in R5) must reference the "
                     "Encounter: its id is the encounter id")
    tag = f"fhir:MedicationAdministration/{admin_id}"
    period = ma.effectivePeriod
    start = _instant(period.start if period else ma.effectiveDateTime,
                     "effectivePeriod.start" if period else "effectiveDateTime")
    end = _instant(period.end, "effectivePeriod.end") if period else None
    if ma.status == "unknown":
        raise Reject("fhir_unsupported", "status unknown: whether the drug was given is not known; send the "
                     "resource again once it is in-progress, completed, stopped, not-done or entered-in-error")
    if ma.status in ("entered-in-error", "not-done"):
        when = start or end or _instant(ma.meta.lastUpdated if ma.meta else None, "meta.lastUpdated")
        if when is None:
            raise Reject("fhir_invalid", f"status {ma.status} without effective[x] or meta.lastUpdated: no time "
                         "for the void")
        return [{"event_id": _event_id(f"{tag}:void"), "type": "administration.voided",
                 "encounter_id": encounter_id, "occurred_at": rfc3339(when), "administration_id": admin_id}]
    if start is None and end is None:
        raise Reject("fhir_invalid", "effectivePeriod.start/end or effectiveDateTime is required")
    if ma.status in ("in-progress", "on-hold"):
        end = None
    instant = ma.effectiveDateTime is not None or (start is not None and end == start)
    events = []
    method = None
    if start is not None:
        drug, category, where = _drug(ma, raw, drugs, index)
        route, method = _route_method(ma.dosage, instant)
        started = {"event_id": "", "type": "administration.started", "encounter_id": encounter_id,
                   "occurred_at": rfc3339(start), "administration_id": admin_id, "drug": drug,
                   "category": category or "therapeutic", "route": route, "method": method}
        ext = {e.url: e for e in ma.extension}
        site = _ext_str(ext, EXT_ACCESS_SITE) or _site(ma.dosage)
        if site:
            started["access_site"] = site
        for key, url in (("separate_access_reason", EXT_SEPARATE_ACCESS_REASON), ("container_id", EXT_CONTAINER_ID)):
            value = _ext_str(ext, url)
            if value:
                started[key] = value
        purpose = ext[EXT_PURPOSE].valueCode if EXT_PURPOSE in ext else None
        if purpose is not None:
            if purpose not in _PURPOSES:
                raise Reject("fhir_invalid", f"extension purpose {purpose!r} is not one of {', '.join(_PURPOSES)}")
            started["purpose"] = purpose
        ordered = _ordered_minutes(index.resolve(ma.request, raw))
        if ordered is not None:
            started["ordered_duration_minutes"] = ordered
        device = _device(ma, raw, index)
        if device:
            started["device"] = device
        if EXT_PRIMARY_REASON in ext and ext[EXT_PRIMARY_REASON].valueBoolean is not None:
            started["primary_reason"] = ext[EXT_PRIMARY_REASON].valueBoolean
        if category is None:
            alert = unknown_drug_alert(encounter_id, admin_id, drug, where)
            raise Reject("unknown_drug", f"drug {drug['name']!r} ({where}: {drug.get('code') or 'no code'}"
                         f"{' ' + drug['system'] if drug.get('system') else ''}) is not in the drug-class table. "
                         "Pharmacy or IT must add it (chemotherapy, therapeutic or hydration) to the drug-class "
                         "table; then re-send the resource.", [alert])
        started["event_id"] = _event_id(f"{tag}:start:{started['occurred_at']}:{_content(started)}")
        events.append(started)
    if end is not None and not (instant and method in ("push", "injection")):
        events.append({"event_id": _event_id(f"{tag}:stop:{rfc3339(end)}"), "type": "administration.stopped",
                       "encounter_id": encounter_id, "occurred_at": rfc3339(end), "administration_id": admin_id})
    return events


def _ext_str(ext: dict, url: str) -> str | None:
    e = ext.get(url)
    value = (e.valueString or e.valueCode) if e else None
    return value.strip() if value and value.strip() else None


def _drug(ma: MedicationAdministration, raw: dict, drugs: DrugClasses, index: _Index) -> tuple[dict, str | None, str]:
    concept, where = ma.medicationCodeableConcept, "medicationCodeableConcept"
    if concept is None and ma.medicationReference is not None:
        where = "medicationReference"
        med = index.resolve(ma.medicationReference, raw)
        if med is not None and med.get("resourceType") == "Medication":
            try:
                concept = CodeableConcept.model_validate(med.get("code") or {})
            except ValidationError as exc:
                raise Reject("fhir_invalid", f"Medication.code: {describe(exc)}") from None
            where = "Medication.code"
        elif ma.medicationReference.display:
            concept = CodeableConcept(text=ma.medicationReference.display)
        else:
            raise Reject("fhir_invalid", f"medicationReference {ma.medicationReference.reference!r} is neither "
                         "contained nor in the Bundle: send medicationCodeableConcept or include the Medication")
    if concept is None or not (concept.coding or concept.text):
        raise Reject("fhir_invalid", "medication[x] is required: medicationCodeableConcept with an RxNorm or NDC "
                     "coding")
    rank = {RXNORM: 0, NDC: 1}
    codings = sorted((c for c in concept.coding if c.code and c.code.strip()),
                     key=lambda c: rank.get(canonical_system(c.system), 2))
    name = (concept.text or "").strip() or next((c.display.strip() for c in codings if c.display and
                                                 c.display.strip()), "")
    chosen, category = None, None
    for c in codings:
        category = drugs.category(c.code, c.system, None)
        if category is not None:
            chosen = c
            break
    if category is None and name:
        category = drugs.category(None, None, name)
    chosen = chosen or (codings[0] if codings else None)
    drug = {"name": name or (chosen.display if chosen and chosen.display else None) or (chosen.code if chosen else ""),
            "code": chosen.code.strip() if chosen else None,
            "system": canonical_system(chosen.system) if chosen else None}
    return drug, category, where


def _words(concept: CodeableConcept | None) -> list[str]:
    if concept is None:
        return []
    out = [concept.text] if concept.text else []
    for c in concept.coding:
        out += [v for v in (c.code, c.display) if v]
    return [w.strip() for w in out if w.strip()]


def _route_method(dosage: Dosage | None, instant: bool) -> tuple[str, str]:
    concept = dosage.route if dosage else None
    if concept is None:
        raise Reject("fhir_invalid", "dosage.route is required: SNOMED CT 47625008 (intravenous), 58100008 "
                     "(intra-arterial), 34206005 (subcutaneous), 78421000 (intramuscular), or IV/IA/SC/IM")
    route = None
    for c in concept.coding:
        if c.system == SNOMED and c.code in _ROUTE_SNOMED:
            route = _ROUTE_SNOMED[c.code]
            break
    if route is None:
        route = next((_ROUTE_CODES[w.upper()] for w in _words(concept) if w.upper() in _ROUTE_CODES), None)
    if route is None:
        shown = ", ".join(_words(concept)) or "(empty)"
        raise Reject("fhir_unsupported", f"dosage.route {shown} is not coded by this validator; supported: "
                     "intravenous, intra-arterial, subcutaneous, intramuscular")
    method = None
    words = _words(dosage.method if dosage else None)
    if words:
        text = " ".join(words).lower()
        for needle, value in (("push", "push"), ("bolus", "push"), ("infus", "infusion"), ("drip", "infusion"),
                              ("piggyback", "infusion"), ("inject", "injection")):
            if needle in text:
                method = value
                break
        if method is None:
            method = next((_HL7_METHODS[w.upper()] for w in words if w.upper() in _HL7_METHODS), None)
        if method is None:
            raise Reject("fhir_invalid", f"dosage.method {', '.join(words)} is not known: say push, infusion or "
                         "injection (code, display or text), or leave it out")
    method = settle_method(route, method, instant)
    return route, method


def _site(dosage: Dosage | None) -> str | None:
    if dosage is None or dosage.site is None:
        return None
    site = dosage.site
    if site.text and site.text.strip():
        return site.text.strip()
    return next((c.code.strip() for c in site.coding if c.code and c.code.strip()), None)


def _device(ma: MedicationAdministration, raw: dict, index: _Index) -> str | None:
    """pump / syringe / gravity from the Device's type or name, or the reference's display."""
    for ref in ma.device:
        words = [ref.display or ""]
        res = index.resolve(ref, raw)
        if res is not None and res.get("resourceType") == "Device":
            try:
                device = Device.model_validate(res)
            except ValidationError:
                device = None  # the device is optional information: a malformed Device is not used
            if device is not None:
                words += _words(device.type) + [n.name for n in device.deviceName if n.name]
        text = " ".join(words).lower()
        for needle, value in (("pump", "pump"), ("syringe", "syringe"), ("gravity", "gravity")):
            if needle in text:
                return value
    return None


def _ordered_minutes(resource: dict | None) -> int | None:
    """dosageInstruction[0].timing.repeat.duration/durationUnit of the MedicationRequest, if given."""
    if resource is None or resource.get("resourceType") != "MedicationRequest":
        return None
    request = _validate(MedicationRequest, resource)
    if not request.dosageInstruction:
        return None
    timing = request.dosageInstruction[0].timing
    repeat = timing.repeat if timing else None
    if repeat is None or repeat.duration is None:
        return None
    unit = repeat.durationUnit or "min"
    if unit not in _UCUM_MINUTES:
        raise Reject("fhir_invalid", f"MedicationRequest timing.repeat.durationUnit {unit!r} is not s, min, h or d")
    minutes = round(repeat.duration * _UCUM_MINUTES[unit])
    if not 1 <= minutes <= 10080:
        raise Reject("fhir_invalid", f"MedicationRequest duration {minutes} min is outside 1 min to 7 days")
    return minutes


# -- Encounter ---------------------------------------------------------------------------------

def _encounter(enc: Encounter) -> list[dict]:
    encounter_id = (enc.id or "").strip()
    if not encounter_id:
        raise Reject("fhir_invalid", "Encounter has no id: its id is the encounter id MedicationAdministration."
                     "context refers to")
    tag = f"fhir:Encounter/{encounter_id}"
    if enc.status == "finished":
        end = _instant(enc.period.end if enc.period else None, "period.end")
        if end is None:
            raise Reject("fhir_invalid", "Encounter finished without period.end: the discharge time is required")
        patient_class = _patient_class(enc)
        event = {"event_id": "", "type": "encounter.discharged", "encounter_id": encounter_id,
                 "occurred_at": rfc3339(end), "patient_class": patient_class, "billing": "facility"}
        event["event_id"] = _event_id(f"{tag}:discharged:{event['occurred_at']}:{_content(event)}")
        return [event]
    reopened = enc.status in ("planned", "arrived", "triaged", "in-progress", "onleave") and any(
        h.status == "finished" for h in enc.statusHistory)
    if not reopened:
        return []
    when = _instant(enc.meta.lastUpdated if enc.meta else None, "meta.lastUpdated")
    if when is None:
        raise Reject("fhir_invalid", "Encounter reopened after finished (statusHistory) without meta.lastUpdated: "
                     "the time of the reopening is needed")
    occurred_at = rfc3339(when)
    return [{"event_id": _event_id(f"{tag}:discharge_cancelled:{occurred_at}"),
             "type": "encounter.discharge_cancelled", "encounter_id": encounter_id, "occurred_at": occurred_at}]


def _patient_class(enc: Encounter) -> str:
    cls = enc.class_
    codings = [cls] if isinstance(cls, Coding) else [c for concept in cls or [] for c in concept.coding]
    codes = [c.code for c in codings if c.code]
    if not codes:
        raise Reject("fhir_invalid", "Encounter.class is required (v3 ActCode AMB, EMER, IMP or OBSENC)")
    for code in codes:
        if code in _CLASSES:
            return _CLASSES[code]
    raise Reject("fhir_unsupported", f"Encounter.class {', '.join(codes)} is not mapped: send AMB (outpatient), "
                 "EMER (emergency), IMP (inpatient) or OBSENC (observation)")


# -- ChargeItem --------------------------------------------------------------------------------

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _reference(rtype: str, ident: str, system: str) -> dict:
    if _FHIR_ID.match(ident):
        return {"reference": f"{rtype}/{ident}"}
    return {"type": rtype, "identifier": {"system": system, "value": ident}}


def charge_item(charge: dict) -> dict:
    """A charge output record (kind "charge") -> FHIR R4 ChargeItem.

    - id: the charge_id of the posted line. A post gives status `billable`; its reversal gives the
      SAME resource id (the `reverses` field) with status `entered-in-error`, so a FHIR server that
      receives them as PUTs ends with the line cancelled, as the billing system should. Both ids are
      kept in `identifier` (system urn:infusion-validator:charge-id).
    - code: the CPT coding (http://www.ama-assn.org/go/cpt). ChargeItem has no modifier element:
      each modifier is an extension urn:infusion-validator:fhir:cpt-modifier (valueCode, in order),
      not a second coding (a coding would claim the line IS the modifier code).
    - quantity.value: units; occurrenceDateTime: the service date (a date is a valid dateTime).
    - context: Encounter/{encounter_id}. subject (required, Patient|Group): the validator never sees
      the patient, so a logical reference: type Patient, identifier type VN (visit number, v2-0203)
      = encounter_id; the billing system resolves the patient through the encounter.
    - service: MedicationAdministration/{administration_id} for each administration behind the line
      (a logical reference by identifier when the id is not a valid FHIR id).
    - note: the explanation; extension urn:infusion-validator:fhir:incomplete-documentation
      (valueBoolean) flags a line produced by a documentation fallback.
    """
    if charge.get("kind") != "charge" or charge.get("action") not in ("post", "reverse"):
        raise ValueError("charge_item needs a charge record (kind 'charge', action 'post' or 'reverse')")
    posted_id = charge["charge_id"] if charge["action"] == "post" else charge["reverses"]
    identifiers = [{"system": CHARGE_ID_SYSTEM, "value": posted_id}]
    if charge["action"] == "reverse":
        identifiers.append({"system": CHARGE_ID_SYSTEM, "value": charge["charge_id"]})
    encounter_id = charge["encounter_id"]
    item = {
        "resourceType": "ChargeItem",
        "id": posted_id,
        "identifier": identifiers,
        "extension": [{"url": EXT_CPT_MODIFIER, "valueCode": m} for m in charge.get("modifiers", [])]
        + [{"url": EXT_INCOMPLETE, "valueBoolean": bool(charge.get("incomplete_documentation"))}],
        "status": "billable" if charge["action"] == "post" else "entered-in-error",
        "code": {"coding": [{"system": CPT, "code": charge["cpt"]}]},
        "subject": {"type": "Patient",
                    "identifier": {"type": {"coding": [{"system": V2_0203, "code": "VN", "display": "Visit number"}]},
                                   "system": ENCOUNTER_ID_SYSTEM, "value": encounter_id},
                    "display": f"patient of encounter {encounter_id}"},
        "context": _reference("Encounter", encounter_id, ENCOUNTER_ID_SYSTEM),
        "occurrenceDateTime": charge["service_date"],
        "quantity": {"value": charge["units"]},
        "service": [_reference("MedicationAdministration", a, ADMIN_ID_SYSTEM)
                    for a in charge.get("administration_ids", [])],
        "note": [{"text": charge["explanation"]}],
    }
    if not item["service"]:
        del item["service"]
    return item
