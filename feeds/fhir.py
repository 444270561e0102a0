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
  reference's identifier value). Without it, the one Encounter of the same `subject` whose period
  covers the administration, from the Bundle or received earlier (feeds/fhir_link.py); none or two:
  rejected, naming `context`.
- contract v1.2, after the event ids: `recorded_at` from meta.lastUpdated, `patient_id` from
  `subject` (`Patient/{id}`), `order_id` from `request`.
- effectivePeriod.start/end -> start/stop; effectiveDateTime is an instant: start only. A
  push/injection whose period has end == start also gives the start only (a stop at the start
  minute would be flagged STOP_BEFORE_START). An infusion given as an instant gives its start only:
  no stop is derived from its infuse-over time (docs/decisions.md).
- drug: feeds/fhir_medication.py (a code, else a Medication's code, else its ingredients; the
  drug-class table decides the category). Unknown -> rejected (`unknown_drug`) with a
  DRUG_CLASS_UNKNOWN alert.
- route and method: feeds/fhir_dosage.py (SNOMED CT, HL7 v3 and v2 route codes; the method from
  dosage.method, a v3 route code, a rate, an infuse-over time or a period). An IV/IA administration
  whose method cannot be told is rejected (`fhir_invalid`) with a METHOD_MISSING alert.
- every problem of a resource is reported at once (feeds.translation.Problems); a route this
  validator does not code (oral, rectal) is reported alone (`fhir_unsupported`, AR).
- dosage.site -> access_site (text, else the first code); device -> the referenced Device's type
  (or the reference display) containing pump / syringe / gravity.
- ordered_duration_minutes: the administration's infuse-over time, else the request's (a contained
  MedicationRequest or one in the Bundle: dosageInstruction[0].timing.repeat duration + durationUnit).
- extensions (our own, on the MedicationAdministration; URLs below): access-site (valueString,
  wins over dosage.site), separate-access-reason, container-id (valueString), purpose (valueCode
  treatment|kvo|flush|carrier), primary-reason (valueBoolean).

Other resource types are not read: in a Bundle, Patient, Medication, MedicationRequest, Device and
the like are read through the references to them; any other R4 type (Observation, Condition,
Claim...) is skipped and counted (Translation.skipped), never a reason to refuse what sits beside it.
A mistyped element is one problem of the list and the rest of the resource is still read; numbers
sent for strings (a numeric coding.code) are read as their text.

Encounter: status finished with period.end -> encounter.discharged (meta.lastUpdated is part of its
event id, as EVN-2 is of HL7's: finished again after a reopening at the same period.end is a new fact); class (R4 Coding, or R5 list of
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

import dataclasses
import datetime as dt
import re

from pydantic import ValidationError

from feeds.drugs import DrugClasses
from feeds.fhir_dosage import dosing, route_in_scope
from feeds.fhir_medication import resolve_drug
from feeds.fhir_link import Encounters, subject_key
from feeds.text import clean_json
from feeds.fhir_model import (Coding, Device, Dosage, Encounter, MedicationAdministration, MedicationRequest,
                              Reference, words)
from feeds.translation import Note, Problems, Reject, Translation, checked, content, digest, rejected, rfc3339
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
# Every Bundle.type of R4/R5 (bundle-type value set): a reason may name one of these, never a sender's other text.
_FHIR_BUNDLE_TYPES = frozenset(BUNDLE_TYPES + ("document", "message", "transaction-response", "batch-response"))
# R4 resource types: a reason names a resourceType only when it is one of these (a sender's other
# text there may be anything, patient data included). No PHI in any reason: a reason names the
# element and its position, never a value the sender wrote, but for codes of fixed vocabularies.
FHIR_RESOURCE_TYPES = frozenset("""
    Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic
    Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry
    ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem Communication
    CommunicationRequest CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage
    CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric
    DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis
    Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence
    EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group
    GuidanceResponse HealthcareService ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation
    ImplementationGuide InsurancePlan Invoice Library Linkage List Location Measure MeasureReport Media
    Medication MedicationAdministration MedicationDispense MedicationKnowledge MedicationRequest
    MedicationStatement MedicinalProduct MessageDefinition MessageHeader MolecularSequence NamingSystem
    NutritionOrder Observation ObservationDefinition OperationDefinition OperationOutcome Organization
    OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation Person PlanDefinition
    Practitioner PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson
    RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
    RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition
    StructureDefinition StructureMap Subscription SubscriptionStatus Substance SupplyDelivery SupplyRequest Task
    TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription""".split())
# Resources that travel with administrations in a Bundle, read through the references to them; any
# other type the translator does not read is skipped and counted (Translation.skipped).
SUPPORTING = frozenset({"Patient", "Medication", "MedicationRequest", "Device", "Practitioner", "PractitionerRole",
                        "Location", "Organization", "Provenance", "Parameters", "SubscriptionStatus",
                        "OperationOutcome", "RelatedPerson"})
_CLASSES = {"AMB": "outpatient", "EMER": "emergency", "IMP": "inpatient", "ACUTE": "inpatient",
            "NONAC": "inpatient", "OBSENC": "observation"}
_ACT_ENCOUNTER_CODES = frozenset(_CLASSES) | {"FLD", "HH", "PRENC", "SS", "VR"}
_PURPOSES = ("treatment", "kvo", "flush", "carrier")
_UCUM_MINUTES = {"s": 1 / 60, "min": 1, "h": 60, "d": 1440}


# -- entry points ------------------------------------------------------------------------------

def translate_fhir(resource: dict, drugs: DrugClasses, encounters: Encounters | None = None) -> list[Translation]:
    """A resource or a Bundle -> one Translation per resource (entry order). `encounters`: the visits
    received before (feeds/fhir_link.py), which a MedicationAdministration without `context` may
    belong to; this call's Encounters are added to it."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return [Translation([], problems=["not a FHIR resource: a JSON object with resourceType is expected"],
                            category="fhir_invalid")]
    encounters = encounters if encounters is not None else Encounters()
    if resource["resourceType"] != "Bundle":
        resource, removed = _cleaned(resource)
        index = _Index(resource, encounters)
        return [_noted(_one(resource, drugs, index, in_bundle=False), removed)]
    kind = resource.get("type")
    bundle_id = f"Bundle/{resource['id']}" if isinstance(resource.get("id"), str) else "Bundle"
    if kind not in BUNDLE_TYPES:
        said = f"Bundle.type {kind}" if isinstance(kind, str) and kind in _FHIR_BUNDLE_TYPES else "Bundle.type (missing or not a FHIR bundle type)"
        return [Translation([], problems=[f"{said} is not translated; send one of "
                                          f"{', '.join(BUNDLE_TYPES)}"], category="fhir_unsupported", message_id=bundle_id)]
    entries = resource.get("entry", [])
    if not isinstance(entries, list):
        return [Translation([], problems=["Bundle.entry must be a list"], category="fhir_invalid", message_id=bundle_id)]
    cleaned = [_cleaned(entry) for entry in entries]  # text is data: no controls, no bidi overrides
    resource = dict(resource, entry=[entry for entry, _ in cleaned])
    index = _Index(resource, encounters)
    out = []
    for entry, removed in cleaned:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict):
            out.append(_noted(_one(res, drugs, index, in_bundle=True), removed))
            continue
        request = entry.get("request") if isinstance(entry, dict) else None
        url = request.get("url") if isinstance(request, dict) else None
        if isinstance(request, dict) and request.get("method") == "DELETE":
            reason = ("a DELETE request entry cannot be translated (no encounter to apply it to): mark the "
                      "MedicationAdministration entered-in-error instead")
        else:
            reason = ("the entry has no resource: an id-only subscription notification? Configure the "
                      "subscription with full-resource payload")
        out.append(Translation([], problems=[reason], category="fhir_unsupported", message_id=url))
    return out


def _cleaned(value) -> tuple:
    """`value` with every string cleaned (feeds/text.py), and how many characters were removed."""
    removed = [0]
    return clean_json(value, removed), removed[0]


def _noted(t: Translation, removed: int) -> Translation:
    if not removed:
        return t
    note = Note("text_controls", f"{removed} control or format character(s) (bidirectional overrides, NUL, "
                "ESC, ...) removed from the resource's text")
    return dataclasses.replace(t, notes=[*t.notes, note])


def _one(resource: dict, drugs: DrugClasses, index: _Index, in_bundle: bool) -> Translation:
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return Translation([], problems=["not a FHIR resource: resourceType must be a string"], category="fhir_invalid")
    rid = resource.get("id")
    message_id = f"{rtype}/{rid}" if isinstance(rid, str) and rid else rtype
    read = {"MedicationAdministration": (MedicationAdministration, _medication_administration),
            "Encounter": (Encounter, _encounter)}.get(rtype)
    if read is None:
        if in_bundle and rtype in SUPPORTING:  # read through the references to it
            return Translation([], message_id=message_id)
        if rtype in FHIR_RESOURCE_TYPES:  # not ours to read: skipped and counted, never a reason to refuse its neighbours
            return Translation([], message_id=message_id, skipped=True,
                               notes=[Note("resource_skipped", f"{rtype}: not read by this validator, skipped")])
        return rejected(Reject("fhir_unsupported", f"{type_name(rtype)} is not translated; send "
                               "MedicationAdministration or Encounter resources (or a Bundle of them)"), message_id)
    model, translate = read
    try:
        parsed, shape = _validate(model, resource)
        try:
            events = translate(parsed, resource, drugs, index)
        except Reject as exc:
            raise _merged(shape, exc) from None
        if shape is not None:
            raise shape
        return Translation(events=_contract(events), message_id=message_id)
    except Reject as exc:
        return rejected(exc, message_id)


def _merged(first: Reject | None, then: Reject) -> Reject:
    """Every problem of a resource in one rejection: an element that did not fit first (the category of
    the first problem decides the answer), then what reading the rest found."""
    if first is None:
        return then
    return Reject(first.category, first.problems + then.problems, first.alerts + then.alerts)


_EVENT_TIME = re.compile(r"occurred_at: \S+ is before")


def _contract(events: list[dict]) -> list[dict]:
    """checked(), its reasons without the time they are about (a date may be the patient's)."""
    try:
        return checked(events, "fhir_invalid")
    except Reject as exc:
        raise Reject(exc.category, [_EVENT_TIME.sub("occurred_at (the effective time) is before", p)
                                    for p in exc.problems], exc.alerts) from None


def _validate(model, resource: dict):
    """(the resource as `model`, None), or, when elements do not fit the model, (the resource read
    without them, the Reject naming them): a mistyped element is one problem in the list, and the
    rest of the resource is still read for the others. Raises when even that cannot be read."""
    try:
        return model.model_validate(resource), None
    except ValidationError as exc:
        problem = Reject("fhir_invalid", f"{resource.get('resourceType')}: {describe(exc)}")
        bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
    try:
        return model.model_validate({k: v for k, v in resource.items() if k not in bad}), problem
    except ValidationError:
        raise problem from None


def _validated(model, resource: dict):
    """The resource as `model`, or a Reject naming what does not fit (a resource referred to)."""
    parsed, problem = _validate(model, resource)
    if problem is not None:
        raise problem
    return parsed


class _Index:
    """Resources a reference may point to: the Bundle's entries (by fullUrl and Type/id) and, per
    resource, its contained resources (#id); and the visits (Encounters) known, for an
    administration sent without `context` (feeds/fhir_link.py): this call's, added to those before."""

    def __init__(self, root: dict, encounters: Encounters) -> None:
        self.by_ref: dict[str, dict] = {}
        self.encounters = encounters
        entries = root.get("entry", []) if root.get("resourceType") == "Bundle" else []
        for entry in entries if isinstance(entries, list) else []:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):
                continue
            if isinstance(entry.get("fullUrl"), str):
                self.by_ref[entry["fullUrl"]] = res
            if isinstance(res.get("resourceType"), str) and isinstance(res.get("id"), str):
                self.by_ref[f"{res['resourceType']}/{res['id']}"] = res
        for res in [root] + [e.get("resource") for e in entries if isinstance(e, dict)]:
            if isinstance(res, dict) and res.get("resourceType") == "Encounter":
                self.remember(res)

    def remember(self, res: dict) -> None:
        """An Encounter's id, patient and period, if it has them readably (else it cannot be linked to)."""
        try:
            enc = Encounter.model_validate(res)
        except ValidationError:
            return
        subject = self.subject(enc.subject, res)
        if not (enc.id and subject and enc.period):
            return
        try:
            start = _instant(enc.period.start, "period.start")
            end = _instant(enc.period.end, "period.end")
        except Reject:
            return
        self.encounters.add(subject, enc.id.strip(), start, end)

    def subject(self, ref: Reference | None, owner: dict) -> str | None:
        """The patient a resource is about, as one string (feeds/fhir_link.py); a urn:uuid of the
        Bundle's Patient entry becomes that Patient's id."""
        if ref is not None and ref.reference and ref.reference.startswith("urn:uuid:"):
            found = self.resolve(ref, owner)
            if found is not None and found.get("resourceType") == "Patient" and isinstance(found.get("id"), str):
                return f"Patient/{found['id']}"[:128]
        return subject_key(ref)

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


def type_name(rtype: object) -> str:
    """A resourceType as a reason may show it: an R4 type's name, else words that echo nothing."""
    return rtype if isinstance(rtype, str) and rtype in FHIR_RESOURCE_TYPES else "a resourceType that is not a FHIR R4 resource type"


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
                raise Reject("fhir_unsupported", f"{where} refers to {type_name(m.group(1))}; a reference to {want} is needed")
            return m.group(2)
        res = index.resolve(ref, owner)
        if res is not None and res.get("resourceType") == want:
            if isinstance(res.get("id"), str) and res["id"]:
                return res["id"]
        raise Reject("fhir_invalid", f"{where}.reference cannot be read as {want}/id (nor found contained or in "
                     "the Bundle)")
    if ref.identifier is not None and ref.identifier.value:
        return ref.identifier.value.strip()
    return None


def _instant(value: str | None, where: str) -> dt.datetime | None:
    if value is None:
        return None
    if "T" not in value:
        raise Reject("fhir_invalid", f"{where} has no time of day; a time with UTC offset is needed, "
                     "e.g. 2026-11-24T08:30:00-05:00")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Reject("fhir_invalid", f"{where} is not a FHIR dateTime, e.g. 2026-11-24T08:30:00-05:00") \
            from None
    if parsed.tzinfo is None:
        raise Reject("fhir_invalid", f"{where} has no UTC offset (FHIR requires one when a time is "
                     "given), e.g. 2026-11-24T08:30:00-05:00")
    return parsed


def _event_id(readable: str) -> str:
    return readable if len(readable) <= 128 else "fhir:" + digest({"id": readable})


# -- MedicationAdministration ------------------------------------------------------------------

def _medication_administration(ma: MedicationAdministration, raw: dict, drugs: DrugClasses,
                               index: _Index) -> list[dict]:
    """Every problem of the resource is collected (Problems), so the sender fixes it in one round."""
    if ma.status not in ("entered-in-error", "not-done"):
        route_in_scope(ma)  # an oral or topical drug is not ours: that alone is said (AR), not its other faults
    problems = Problems()
    admin_id = problems.check(_admin_id, ma)
    times = problems.check(_times, ma)
    encounter_id = problems.check(_encounter_id, ma, raw, index, times)
    ids = (encounter_id, admin_id) if encounter_id and admin_id else None
    if ma.status == "unknown":
        problems.add(Reject("fhir_unsupported", "status unknown: whether the drug was given is not known; send the "
                            "resource again once it is in-progress, completed, stopped, not-done or entered-in-error"))
    if ma.status in ("entered-in-error", "not-done"):
        when = problems.check(_void_time, ma, times)
        problems.raise_any()
        return _stamped([{"event_id": _event_id(f"fhir:MedicationAdministration/{admin_id}:void"),
                          "type": "administration.voided", "encounter_id": encounter_id, "occurred_at": rfc3339(when),
                          "administration_id": admin_id}], ma.meta, index.subject(ma.subject, raw))
    start, end = times or (None, None)
    if times is not None and start is None and end is None:
        problems.add(Reject("fhir_invalid", "effectivePeriod.start/end or effectiveDateTime is required"))
    if ma.status in ("in-progress", "on-hold"):
        end = None
    instant = ma.effectiveDateTime is not None or (start is not None and end == start)
    started = None
    if start is not None or times is None:  # without readable times, still report the start's other problems
        started = problems.check(_started, ma, raw, drugs, index, ids, instant)
    problems.raise_any()
    tag = f"fhir:MedicationAdministration/{admin_id}"
    events = []
    if start is not None:
        started.update(encounter_id=encounter_id, occurred_at=rfc3339(start), administration_id=admin_id)
        started = {"event_id": "", "type": "administration.started", **started}
        started["event_id"] = _event_id(f"{tag}:start:{started['occurred_at']}:{content(started)}")
        events.append(started)
    if end is not None and not (instant and started and started["method"] in ("push", "injection")):
        events.append({"event_id": _event_id(f"{tag}:stop:{rfc3339(end)}"), "type": "administration.stopped",
                       "encounter_id": encounter_id, "occurred_at": rfc3339(end), "administration_id": admin_id})
    order = _ref_id_or_none(ma.request, "MedicationRequest", index, raw)
    if order and started is not None and events and events[0]["type"] == "administration.started":
        events[0]["order_id"] = order[:128]
    return _stamped(events, ma.meta, index.subject(ma.subject, raw))


def _stamped(events: list[dict], meta, subject: str | None) -> list[dict]:
    """Contract v1.2, after the ids (a new version restating the same facts is a duplicate):
    recorded_at from meta.lastUpdated, patient_id from subject."""
    recorded = _recorded(meta)
    for event in events:
        if recorded:
            event["recorded_at"] = recorded
        if subject:
            event["patient_id"] = subject
    return events


def _recorded(meta) -> str | None:
    """meta.lastUpdated as recorded_at; it only orders a discharge and a cancel, so an unreadable
    one is left out, not a rejection."""
    try:
        when = _instant(meta.lastUpdated if meta else None, "meta.lastUpdated")
    except Reject:
        return None
    return rfc3339(when) if when else None


def _ref_id_or_none(ref, want: str, index: _Index, owner: dict) -> str | None:
    try:
        return _ref_id(ref, want, index, owner, "request")
    except Reject:
        return None


def _admin_id(ma: MedicationAdministration) -> str:
    admin_id = (ma.id or "").strip() or next((i.value.strip() for i in ma.identifier if i.value and i.value.strip()),
                                             "")
    if not admin_id:
        raise Reject("fhir_invalid", "MedicationAdministration has neither id nor identifier: one of them is the "
                     "administration id that pairs its start with its stop")
    return admin_id


def _encounter_id(ma: MedicationAdministration, raw: dict, index: _Index, times) -> str:
    """The visit: `context` (R4; `encounter` in R5), else the one Encounter of the same patient whose
    period covers the administration (feeds/fhir_link.py)."""
    encounter_id = _ref_id(ma.context or ma.encounter, "Encounter", index, raw, "context")
    if encounter_id:
        return encounter_id
    subject = index.subject(ma.subject, raw)
    at = next((t for t in (times or ()) if t is not None), None)
    if subject and at is not None:
        covering = index.encounters.covering(subject, at)
        if len(covering) == 1:
            return covering[0]
        why = (f"{len(covering)} Encounters of the subject cover its time" if covering else
               "no Encounter of the subject received so far (in the Bundle or before) covers its time")
    elif subject:
        why = "its time cannot be read"
    else:
        why = "it has no subject to find the visit by"
    raise Reject("fhir_invalid", f"MedicationAdministration.context (R4; encounter in R5) is missing and {why}: "
                 "send context with the Encounter (its id is the encounter id), or the Encounter in the same Bundle")


def _times(ma: MedicationAdministration) -> tuple[dt.datetime | None, dt.datetime | None]:
    period = ma.effectivePeriod
    problems = Problems()
    start = problems.check(_instant, period.start if period else ma.effectiveDateTime,
                           "effectivePeriod.start" if period else "effectiveDateTime")
    end = problems.check(_instant, period.end, "effectivePeriod.end") if period else None
    problems.raise_any()
    return start, end


def _void_time(ma: MedicationAdministration, times) -> dt.datetime:
    start, end = times or (None, None)
    when = start or end or _instant(ma.meta.lastUpdated if ma.meta else None, "meta.lastUpdated")
    if when is None:
        raise Reject("fhir_invalid", f"status {ma.status} without effective[x] or meta.lastUpdated: no time for the "
                     "void")
    return when


def _started(ma: MedicationAdministration, raw: dict, drugs: DrugClasses, index: _Index, ids, instant: bool) -> dict:
    """The facts of administration.started but its id, encounter, time and administration id."""
    problems = Problems()
    dose = problems.check(dosing, ma, instant, ids)
    found = problems.check(resolve_drug, ma, raw, drugs, index.resolve, ids)
    ext = {e.url: e for e in ma.extension}
    purpose = problems.check(_purpose, ext)
    ordered = problems.check(_ordered_minutes, index.resolve(ma.request, raw))
    problems.raise_any()
    drug, category = found
    started = {"drug": drug, "category": category, "route": dose.route, "method": dose.method}
    site = _ext_str(ext, EXT_ACCESS_SITE) or _site(ma.dosage)
    if site:
        started["access_site"] = site
    for key, url in (("separate_access_reason", EXT_SEPARATE_ACCESS_REASON), ("container_id", EXT_CONTAINER_ID)):
        value = _ext_str(ext, url)
        if value:
            started[key] = value
    if purpose is not None:
        started["purpose"] = purpose
    ordered = dose.infuse_minutes or ordered  # this administration's infuse-over time, else the order's
    if ordered is not None:
        started["ordered_duration_minutes"] = ordered
    device = _device(ma, raw, index)
    if device:
        started["device"] = device
    if EXT_PRIMARY_REASON in ext and ext[EXT_PRIMARY_REASON].valueBoolean is not None:
        started["primary_reason"] = ext[EXT_PRIMARY_REASON].valueBoolean
    return started


def _purpose(ext: dict) -> str | None:
    purpose = ext[EXT_PURPOSE].valueCode if EXT_PURPOSE in ext else None
    if purpose is not None and purpose not in _PURPOSES:
        raise Reject("fhir_invalid", f"extension purpose (valueCode) is not one of {', '.join(_PURPOSES)}")
    return purpose


def _ext_str(ext: dict, url: str) -> str | None:
    e = ext.get(url)
    value = (e.valueString or e.valueCode) if e else None
    return value.strip() if value and value.strip() else None


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
        said = [ref.display or ""]
        res = index.resolve(ref, raw)
        if res is not None and res.get("resourceType") == "Device":
            try:
                device = Device.model_validate(res)
            except ValidationError:
                device = None  # the device is optional information: a malformed Device is not used
            if device is not None:
                said += words(device.type) + [n.name for n in device.deviceName if n.name]
        text = " ".join(said).lower()
        for needle, value in (("pump", "pump"), ("syringe", "syringe"), ("gravity", "gravity")):
            if needle in text:
                return value
    return None


def _ordered_minutes(resource: dict | None) -> int | None:
    """dosageInstruction[0].timing.repeat.duration/durationUnit of the MedicationRequest, if given."""
    if resource is None or resource.get("resourceType") != "MedicationRequest":
        return None
    request = _validated(MedicationRequest, resource)
    if not request.dosageInstruction:
        return None
    timing = request.dosageInstruction[0].timing
    repeat = timing.repeat if timing else None
    if repeat is None or repeat.duration is None:
        return None
    unit = repeat.durationUnit or "min"
    if unit not in _UCUM_MINUTES:
        raise Reject("fhir_invalid", "MedicationRequest timing.repeat.durationUnit is not s, min, h or d")
    minutes = round(repeat.duration * _UCUM_MINUTES[unit])
    if not 1 <= minutes <= 10080:
        raise Reject("fhir_invalid", f"MedicationRequest duration {minutes} min is outside 1 min to 7 days")
    return minutes


# -- Encounter ---------------------------------------------------------------------------------

def _encounter(enc: Encounter, raw: dict, drugs: DrugClasses, index: _Index) -> list[dict]:
    """Every problem at once: the discharge time and the class are both checked."""
    encounter_id = (enc.id or "").strip()
    if not encounter_id:
        raise Reject("fhir_invalid", "Encounter has no id: its id is the encounter id MedicationAdministration."
                     "context refers to")
    tag = f"fhir:Encounter/{encounter_id}"
    subject = index.subject(enc.subject, raw)
    if enc.status == "finished":
        problems = Problems()
        end = problems.check(_instant, enc.period.end if enc.period else None, "period.end")
        if end is None and not problems.found:
            problems.add(Reject("fhir_invalid", "Encounter finished without period.end: the discharge time is required"))
        patient_class = problems.check(_patient_class, enc)
        problems.raise_any()
        event = {"event_id": "", "type": "encounter.discharged", "encounter_id": encounter_id,
                 "occurred_at": rfc3339(end), "patient_class": patient_class, "billing": "facility"}
        # When it was recorded is part of a discharge's identity (as HL7's): finished again after a
        # reopening, at the same period.end, is a new fact; a redelivered old version stays a duplicate.
        recorded = _recorded(enc.meta) or ""
        event["event_id"] = _event_id(f"{tag}:discharged:{event['occurred_at']}:{recorded}:{content(event)}")
        return _stamped(_located([event], enc), enc.meta, subject)
    reopened = enc.status in ("planned", "arrived", "triaged", "in-progress", "onleave") and any(
        h.status == "finished" for h in enc.statusHistory)
    if not reopened:
        return []
    when = _instant(enc.meta.lastUpdated if enc.meta else None, "meta.lastUpdated")
    if when is None:
        raise Reject("fhir_invalid", "Encounter reopened after finished (statusHistory) without meta.lastUpdated: "
                     "the time of the reopening is needed")
    occurred_at = rfc3339(when)
    return _stamped(_located([{"event_id": _event_id(f"{tag}:discharge_cancelled:{occurred_at}"),
                               "type": "encounter.discharge_cancelled", "encounter_id": encounter_id,
                               "occurred_at": occurred_at}], enc), enc.meta, subject)


# Encounter.location[].physicalType (location-physical-type) -> the contract's location parts.
_PLACES = {"wa": "unit", "wi": "unit", "lvl": "unit", "area": "unit", "ro": "room", "bd": "bed"}


def _located(events: list[dict], enc: Encounter) -> list[dict]:
    """Contract v1.1 `location` from Encounter.location: the current places (active, not ended; else
    the last active ones), by physical type (ward/wing/level/area the unit, room, bed); a place
    without a type is the unit. Added after the event ids: a transfer is not a new fact."""
    active = [loc for loc in enc.location if loc.status in (None, "active") and loc.location is not None]
    current = [loc for loc in active if not (loc.period and loc.period.end)] or active[-1:]
    parts: dict[str, str] = {}
    for loc in current:
        name = (loc.location.display or _ref_tail(loc.location.reference) or "").strip()[:64]
        codes = [c.code for c in (loc.physicalType.coding if loc.physicalType else [])]
        part = next((_PLACES[c] for c in codes if c in _PLACES), "unit" if not codes else None)
        if name and part:
            parts[part] = name
    if parts.get("unit"):
        for event in events:
            event["location"] = {"unit": parts["unit"], "room": parts.get("room"), "bed": parts.get("bed")}
    return events


def _ref_tail(reference: str | None) -> str | None:
    return reference.rsplit("/", 1)[-1] if reference else None


def _patient_class(enc: Encounter) -> str:
    cls = enc.class_
    codings = [cls] if isinstance(cls, Coding) else [c for concept in cls or [] for c in concept.coding]
    codes = [c.code for c in codings if c.code]
    if not codes:
        raise Reject("fhir_invalid", "Encounter.class is required (v3 ActCode AMB, EMER, IMP or OBSENC)")
    for code in codes:
        if code in _CLASSES:
            return _CLASSES[code]
    known = [c for c in codes if c in _ACT_ENCOUNTER_CODES]  # v3 ActEncounterCode: a sender's other text is not shown
    said = f"Encounter.class {', '.join(known)}" if known else "Encounter.class (no v3 ActEncounterCode)"
    raise Reject("fhir_unsupported", f"{said} is not mapped: send AMB (outpatient), "
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
