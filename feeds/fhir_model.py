"""The FHIR R4 elements the translator reads, as small pydantic models (extra elements ignored).

Only what is read is modelled, so a sender's element we never use (an R4-only field, an unknown
extension) cannot reject a resource; see docs/decisions.md on why not `fhir.resources`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _M(BaseModel):
    # coerce_numbers_to_str: a code or id sent as a JSON number (2193 for "2193") means the same; being
    # lenient about that form costs no meaning (a string where an object is expected is still a problem).
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)


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


class Quantity(_M):
    """Quantity, SimpleQuantity and Duration (same elements)."""
    value: float | None = None
    unit: str | None = None
    system: str | None = None
    code: str | None = None


class Ratio(_M):
    numerator: Quantity | None = None
    denominator: Quantity | None = None


class Extension(_M):
    url: str
    valueString: str | None = None
    valueCode: str | None = None
    valueBoolean: bool | None = None
    valueDuration: Quantity | None = None
    valueQuantity: Quantity | None = None


class Dosage(_M):
    extension: list[Extension] = []
    route: CodeableConcept | None = None
    method: CodeableConcept | None = None
    site: CodeableConcept | None = None
    dose: Quantity | None = None
    rateRatio: Ratio | None = None
    rateQuantity: Quantity | None = None


class MedicationAdministration(_M):
    resourceType: Literal["MedicationAdministration"]
    id: str | None = None
    meta: Meta | None = None
    identifier: list[Identifier] = []
    extension: list[Extension] = []
    status: Literal["in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown"]
    medicationCodeableConcept: CodeableConcept | None = None
    medicationReference: Reference | None = None
    subject: Reference | None = None
    context: Reference | None = None
    encounter: Reference | None = None
    effectiveDateTime: str | None = None
    effectivePeriod: Period | None = None
    dosage: Dosage | None = None
    device: list[Reference] = []
    request: Reference | None = None
    contained: list[dict] = []


class Ingredient(_M):
    itemCodeableConcept: CodeableConcept | None = None
    itemReference: Reference | None = None


class Medication(_M):
    resourceType: Literal["Medication"]
    id: str | None = None
    code: CodeableConcept | None = None
    ingredient: list[Ingredient] = []


class Repeat(_M):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, coerce_numbers_to_str=False)
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


class EncounterLocation(_M):
    location: Reference | None = None
    status: str | None = None
    physicalType: CodeableConcept | None = None
    period: Period | None = None


class Encounter(_M):
    resourceType: Literal["Encounter"]
    id: str | None = None
    meta: Meta | None = None
    status: str
    statusHistory: list[StatusHistory] = []
    class_: Coding | list[CodeableConcept] | None = Field(None, alias="class")  # R4 Coding, R5 list
    subject: Reference | None = None
    period: Period | None = None
    location: list[EncounterLocation] = []


def words(concept: CodeableConcept | None) -> list[str]:
    """The text, codes and displays of a concept, stripped, empty ones dropped."""
    if concept is None:
        return []
    out = [concept.text] if concept.text else []
    for c in concept.coding:
        out += [v for v in (c.code, c.display) if v]
    return [w.strip() for w in out if w.strip()]
