"""The drug of a FHIR MedicationAdministration and its category from the drug-class table.

- medicationCodeableConcept; or medicationReference to a contained Medication or one in the
  Bundle (a reference found nowhere: its display as the name).
- A concept: RxNorm first, then NDC, then other codings, looked up in the table; then its text (or
  first display) as an exact name.
- A Medication: its code; when it has none, or one not in the table, its ingredients
  (ingredient[].itemCodeableConcept, as servers send compounded bags and mixtures). Every
  ingredient must be in the table: a mixture is never ranked on a guess (an unknown ingredient may
  be chemotherapy). The mixture takes the highest-ranking category of its ingredients,
  chemotherapy > therapeutic > hydration, as two drugs in one container do (coding-rules §3);
  its name joins the ingredients' names, its code is the deciding ingredient's.
- Unknown: rejected (`unknown_drug`) with one DRUG_CLASS_UNKNOWN alert per unknown drug.
"""
from __future__ import annotations

import re

from pydantic import ValidationError

from feeds.drugs import DrugClasses, canonical_system
from feeds.fhir_model import CodeableConcept, Medication, MedicationAdministration
from feeds.translation import NDC, RXNORM, Problems, Reject, unknown_drug_alert
from models.errors import describe

RANK = {"chemotherapy": 0, "therapeutic": 1, "hydration": 2}  # as rules/classify.py ranks a container


def resolve_drug(ma: MedicationAdministration, raw: dict, drugs: DrugClasses, resolve,
                 ids: tuple[str, str] | None) -> tuple[dict, str]:
    """(contract drug, category); a Reject saying what to fix when the drug is missing or unknown.
    resolve(reference, owner) finds a referenced resource; ids = (encounter, administration) for
    the alerts, None when they are themselves missing."""
    if ma.medicationCodeableConcept is not None or ma.medicationReference is None:
        return _known(ma.medicationCodeableConcept, "medicationCodeableConcept", drugs, ids)
    ref = ma.medicationReference
    found = resolve(ref, raw)
    if found is None or found.get("resourceType") != "Medication":
        if ref.display:
            return _known(CodeableConcept(text=ref.display), "medicationReference", drugs, ids)
        raise Reject("fhir_invalid", "medicationReference is neither contained nor in the Bundle: "
                     "send medicationCodeableConcept or include the Medication")
    try:
        med = Medication.model_validate(found)
    except ValidationError as exc:
        raise Reject("fhir_invalid", f"Medication: {describe(exc)}") from None
    return _medication(med, ref.reference, drugs, ids)


def _medication(med: Medication, ref: str | None, drugs: DrugClasses, ids) -> tuple[dict, str]:
    coded = med.code is not None and bool(med.code.coding or med.code.text)
    items = [i.itemCodeableConcept or CodeableConcept(text=i.itemReference.display if i.itemReference else None)
             for i in med.ingredient]
    items = [c if c.coding or c.text else None for c in items]  # None: an ingredient naming no drug
    if not coded and not any(items):
        raise Reject("fhir_invalid", "the Medication referenced has neither code nor ingredient[].itemCodeableConcept: "
                     "send Medication.code (RxNorm or NDC) or its ingredients' codes")
    if coded:
        drug, category = lookup(med.code, drugs)
        if category is not None:
            return drug, category
        if not items or _all_known(items, drugs) is None:
            return _known(med.code, "Medication.code", drugs, ids)  # unknown: the product's code is the one to add
    return _mixture(items, drugs, ids)


def _all_known(items: list[CodeableConcept | None], drugs: DrugClasses) -> list[tuple[dict, str]] | None:
    found = [lookup(c, drugs) for c in items if c is not None]
    return found if None not in items and all(category for _, category in found) else None


def _mixture(items: list[CodeableConcept | None], drugs: DrugClasses, ids) -> tuple[dict, str]:
    problems = Problems()
    found = []
    for n, concept in enumerate(items):
        if concept is None:
            problems.add(Reject("fhir_invalid", f"Medication.ingredient[{n}] names no drug: send its "
                                "itemCodeableConcept (RxNorm or NDC) so the mixture can be classified"))
        else:
            found.append(problems.check(_known, concept, "Medication.ingredient", drugs, ids))
    problems.raise_any()
    drug, category = min(found, key=lambda f: RANK[f[1]])
    name = " + ".join(d["name"] for d, _ in found)
    return dict(drug, name=name if len(name) <= 256 else name[:253] + "..."), category


def _known(concept: CodeableConcept | None, where: str, drugs: DrugClasses, ids) -> tuple[dict, str]:
    if concept is None or not (concept.coding or concept.text):
        raise Reject("fhir_invalid", "medication[x] is required: medicationCodeableConcept with an RxNorm or NDC "
                     "coding, or medicationReference to a Medication")
    drug, category = lookup(concept, drugs)
    if category is None:
        raise Reject("unknown_drug", f"the drug of {where} ({_shown_code(drug)}) is not in the drug-class table. "
                     "Pharmacy or IT must add it (chemotherapy, therapeutic or hydration) to the drug-class "
                     "table; then re-send the resource.", [unknown_drug_alert(*ids, drug, where)] if ids else [])
    return drug, category


_CODE_FORMS = {RXNORM: re.compile(r"^\d{1,7}$"),
               NDC: re.compile(r"^(\d{4}-\d{4}-\d{2}|\d{5}-\d{3}-\d{2}|\d{5}-\d{4}-\d{1,2}|\d{10,11})$")}


def _shown_code(drug: dict) -> str:
    """What a reason says of the drug: its RxNorm or NDC code (a vocabulary's code, in that
    vocabulary's form), never the sender's name or text for it (free text may carry anything;
    the raw resource is in the dead letter and the DRUG_CLASS_UNKNOWN alert names the drug)."""
    system, code = drug.get("system"), drug.get("code")
    form = _CODE_FORMS.get(system)
    if form is not None and code and form.match(code):
        return f"{'RxNorm' if system == RXNORM else 'NDC'} {code}"
    if code and system == "http://snomed.info/sct":
        return "a SNOMED CT code"
    return "coded in another system" if code else "named by text only"


def lookup(concept: CodeableConcept, drugs: DrugClasses) -> tuple[dict, str | None]:
    """The contract drug of a concept and its category (None: not in the table)."""
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
    ingredient = drugs.ingredient(chosen.code, chosen.system, None) if chosen else None
    chosen = chosen or (codings[0] if codings else None)
    drug = {"name": name or (chosen.code.strip() if chosen else ""),
            "code": chosen.code.strip() if chosen else None,
            "system": canonical_system(chosen.system) if chosen else None}
    ingredient = ingredient or (drugs.ingredient(None, None, name) if name else None)
    if ingredient:
        drug["ingredient"] = ingredient  # the substance: two products of it are one drug (coding-rules §3)
    return drug, category
