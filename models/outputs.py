"""Output records of contract v1: charge lines, alerts and dead letters."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from models.events import Drug, Location


class ChargeLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["charge"] = "charge"
    charge_id: str
    action: Literal["post", "reverse"]
    reverses: str | None = None
    encounter_id: str
    cpt: str
    units: int
    modifiers: list[str]
    service_date: str
    administration_ids: list[str]
    incomplete_documentation: bool
    explanation: str
    patient_id: str | None = None  # v1.2: when the encounter's events carried one (for the billing interface)
    # v1.3: the patient class of the discharge the line was coded at (for the billing interface, PV1-2)
    patient_class: Literal["outpatient", "emergency", "observation", "inpatient"] | None = None


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["alert"] = "alert"
    alert_id: str
    encounter_id: str
    administration_id: str | None
    code: str
    severity: Literal["hard", "warn", "info"]
    state: Literal["raised", "resolved"]
    message: str
    # v1.1, optional for readers: who can act on it (a nurse at the bedside, or coding / revenue
    # integrity), and the encounter's location when known.
    audience: Literal["nursing", "coding", "integration"] | None = None  # v1.2: integration (pharmacy, interfaces)
    location: Location | None = None
    drug: Drug | None = None  # v1.2, DRUG_CLASS_UNKNOWN: the drug to add to the drug-class table


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["dead_letter"] = "dead_letter"
    reason: str
    category: str
    source: dict
    raw: str
