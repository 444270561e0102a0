"""Route and method (infusion, push or injection) of a FHIR MedicationAdministration.

Route (dosage.route), the first coding recognised:
- SNOMED CT: 47625008 intravenous route, 255560000 intravenous; 58100008 intra-arterial route;
  34206005 subcutaneous route, 263887005 subcutaneous; 78421000 intramuscular route,
  255559005 intramuscular.
- HL7 v3 RouteOfAdministration: IV, IVC, IVCC, IVCI, PCA, IVINJ, IVINJBOL, IVPUSH, IVRPUSH, IVSPUSH;
  IA, IAINJ, IAINJP, IAINJSP; SQ, SQINFUS; IM, IMD, IMZ.
- HL7 v2 table 0162 (and a code with no system): IV, IA, SC, IM.
- a text, code or display (case ignored, "(qualifier value)" and "route" ignored): intravenous,
  intra-arterial, subcutaneous, intramuscular or their abbreviations.

Method, the strongest evidence first (a push is a minute at the syringe, an infusion runs):
1. dosage.method: SNOMED CT 420620005 Push, 422145002 Inject; an HL7 v2 table 0165-style code
   (IVP, IVPB, INF, INJ, ...); or a code, display or text with push/bolus (push),
   infus/drip/piggyback/continuous (infusion), inject (injection). A method that says none of
   these (e.g. "PICC line": the line, not the method) is no evidence either way.
2. a v3 route code that names its method: IVINJ, IVPUSH, ... push; IVC, IVCC, IVCI, PCA, SQINFUS
   infusion; SQ, IM injection. v3 IV and IA ("Infusion, intravenous") count as the route only:
   they are the letters of v2 table 0162's route, which senders copy for any IV administration.
3. evidence of an infusion: dosage.rateRatio or rateQuantity; an infuse-over time (an extension
   of the resource or of its dosage whose url ends in infuse-over, infuseOverTime or duration,
   valueDuration / valueQuantity in s, min, h or d, e.g. Oracle Health's
   https://fhir-ehr.cerner.com/r4/StructureDefinition/infuse-over); an effectivePeriod that is
   not one instant; a dose of 100 mL or more by IV/IA (pushes come in syringes).
4. none: SC/IM is an injection. IV/IA given at one instant (effectiveDateTime, or a period whose
   end is its start) may be a push or an infusion: the resource is rejected (fhir_invalid) with a
   METHOD_MISSING alert (hard) saying what to document. It is never guessed: a push of saline is
   not billable, an infusion is.

An infusion given as an instant stays a start without a stop. Its infuse-over time is what was
planned, not a documented stop: it becomes ordered_duration_minutes (STOP_TIME_OVERDUE fires when
it runs past it) and the engine's STOP_TIME_MISSING fallback applies at discharge; no stop time is
derived (docs/decisions.md).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from feeds.fhir_model import CodeableConcept, Dosage, Extension, MedicationAdministration, Quantity, words
from feeds.translation import Reject, method_missing_alert, settle_method

SNOMED = "http://snomed.info/sct"
V3_ROUTE = ("http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
            "http://hl7.org/fhir/v3/RouteOfAdministration", "urn:oid:2.16.840.1.113883.5.112")
V2_ROUTE = ("http://terminology.hl7.org/CodeSystem/v2-0162", "http://hl7.org/fhir/v2/0162",
            "urn:oid:2.16.840.1.113883.12.162")
_SNOMED_ROUTES = {"47625008": "IV", "255560000": "IV", "58100008": "IA", "34206005": "SC", "263887005": "SC",
                  "78421000": "IM", "255559005": "IM"}
# v3 code -> (route, the method the code names, or None)
_V3_ROUTES = {"IV": ("IV", None), "IA": ("IA", None),
              **{c: ("IV", "infusion") for c in ("IVC", "IVCC", "IVCI", "PCA")},
              **{c: ("IV", "push") for c in ("IVINJ", "IVINJBOL", "IVPUSH", "IVRPUSH", "IVSPUSH")},
              **{c: ("IA", "push") for c in ("IAINJ", "IAINJP", "IAINJSP")},
              "SQ": ("SC", "injection"), "SQINFUS": ("SC", "infusion"),
              **{c: ("IM", "injection") for c in ("IM", "IMD", "IMZ")}}
_V2_ROUTES = {"IV": "IV", "IA": "IA", "SC": "SC", "IM": "IM"}
_ROUTE_WORDS = {"iv": "IV", "intravenous": "IV", "ia": "IA", "intra-arterial": "IA", "intraarterial": "IA",
                "sc": "SC", "sq": "SC", "subq": "SC", "subcutaneous": "SC", "im": "IM", "intramuscular": "IM"}
# Route codes a reason may name (SNOMED CT, HL7 v3, v2 0162) for routes not coded here: oral, rectal,
# topical, nasal, sublingual, buccal, transdermal, inhaled, ophthalmic, otic, vaginal, intrathecal,
# epidural. Any other code or text the sender wrote is not shown (it may be anything, patient data too).
_OTHER = {"oral": ("26643006", "PO", "ORAL", "MTH"), "rectal": ("37161004", "PR", "RECTAL"),
          "topical": ("6064005", "TOPICAL", "TP"), "nasal": ("46713006", "NASAL", "NS"), "sublingual": ("37839007", "SL"),
          "buccal": ("54471007", "BUC"), "transdermal": ("45890007", "TRNSDERMD", "TRNSDERM", "TD"),
          "inhaled": ("447694001", "18679011000001101", "IPINHL", "INHL", "IH"),
          "ophthalmic": ("54485002", "OPTHALTA", "OP"), "otic": ("10547007", "OT", "AU"),
          "vaginal": ("16857009", "VAGINSI", "VG"), "intrathecal": ("72607000", "IT"),
          "epidural": ("404820008", "EPI", "EPIDURINJ"), "enteral tube": ("GT", "NG")}
_KNOWN_OTHER_ROUTES = {code: name for name, codes in _OTHER.items() for code in codes}
_SNOMED_METHODS = {"420620005": "push", "422145002": "injection"}
_METHOD_CODES = {"IVP": "push", "PUSH": "push", "IVPUSH": "push", "BOLUS": "push", "IVPB": "infusion",
                 "PF": "infusion", "INF": "infusion", "IVINF": "infusion", "CONT": "infusion", "DRIP": "infusion",
                 "INJ": "injection"}
_METHOD_WORDS = (("push", "push"), ("bolus", "push"), ("infus", "infusion"), ("drip", "infusion"),
                 ("piggyback", "infusion"), ("continuous", "infusion"), ("inject", "injection"))
_INFUSE_OVER = re.compile(r"(infuse-?over|infuseovertime|duration)$", re.IGNORECASE)
_TIME_UNITS = {"s": 1 / 60, "sec": 1 / 60, "second": 1 / 60, "seconds": 1 / 60, "min": 1, "mins": 1,
               "minute": 1, "minutes": 1, "h": 60, "hr": 60, "hrs": 60, "hour": 60, "hours": 60,
               "d": 1440, "day": 1440, "days": 1440}
_PUSH_MAX_ML = 100  # a dose this large by IV/IA is hung, not pushed


@dataclass(frozen=True)
class Dosing:
    route: str
    method: str
    infuse_minutes: int | None  # the documented infuse-over time, when there is one


def dosing(ma: MedicationAdministration, instant: bool, ids: tuple[str, str] | None) -> Dosing:
    """Route and method, or a Reject with every problem found. ids: (encounter, administration)
    for the METHOD_MISSING alert, None when they are themselves missing."""
    route, route_method = _route(ma.dosage.route if ma.dosage else None)
    method = _said_method(ma.dosage) or route_method
    minutes = infuse_over_minutes(ma)
    if method is None and (_infusion_evidence(ma.dosage, route, instant) or minutes is not None):
        method = "infusion"
    if method is None and route in ("IV", "IA"):
        raise _method_missing(route, words(ma.dosage.method if ma.dosage else None), ids)
    return Dosing(route, settle_method(route, method, instant), minutes)


def route_in_scope(ma: MedicationAdministration) -> None:
    """Rejects (fhir_unsupported) a route this validator does not code; a missing route passes."""
    if ma.dosage is not None and ma.dosage.route is not None:
        _route(ma.dosage.route)


def _route(concept: CodeableConcept | None) -> tuple[str, str | None]:
    if concept is None:
        raise Reject("fhir_invalid", "dosage.route is required: SNOMED CT 47625008 (intravenous), 58100008 "
                     "(intra-arterial), 34206005 (subcutaneous), 78421000 (intramuscular), or IV/IA/SC/IM")
    for c in concept.coding:
        code = (c.code or "").strip()
        if c.system == SNOMED and code in _SNOMED_ROUTES:
            return _SNOMED_ROUTES[code], None
        if c.system in V3_ROUTE and code.upper() in _V3_ROUTES:
            return _V3_ROUTES[code.upper()]
        if c.system in V2_ROUTE and code.upper() in _V2_ROUTES:
            return _V2_ROUTES[code.upper()], None
    for w in words(concept):
        key = re.sub(r"\(.*?\)|\broute\b", "", w.lower()).strip(" ,")
        if key in _ROUTE_WORDS:
            return _ROUTE_WORDS[key], None
    shown = ", ".join(dict.fromkeys(f"{c.code.strip()} ({_KNOWN_OTHER_ROUTES[c.code.strip().upper()]})"
                                    for c in concept.coding
                                    if c.code and c.code.strip().upper() in _KNOWN_OTHER_ROUTES))
    said = f"dosage.route {shown}" if shown else "dosage.route"  # a vocabulary's code; never free text
    raise Reject("fhir_unsupported", f"{said} is not coded by this validator; supported: "
                 "intravenous, intra-arterial, subcutaneous, intramuscular (SNOMED CT, HL7 v3 or v2 codes)")


def _said_method(dosage: Dosage | None) -> str | None:
    """The method dosage.method names, or None when it names none we know."""
    concept = dosage.method if dosage else None
    if concept is None:
        return None
    for c in concept.coding:
        if c.system == SNOMED and (c.code or "").strip() in _SNOMED_METHODS:
            return _SNOMED_METHODS[c.code.strip()]
    found = words(concept)
    code = next((_METHOD_CODES[w.upper()] for w in found if w.upper() in _METHOD_CODES), None)
    if code:
        return code
    text = " ".join(found).lower()
    return next((value for needle, value in _METHOD_WORDS if needle in text), None)


def _infusion_evidence(dosage: Dosage | None, route: str, instant: bool) -> bool:
    vascular = route in ("IV", "IA")  # an SC/IM period or volume says nothing: injections are charted so too
    if vascular and not instant:
        return True  # a documented IV period that is not one instant runs: an infusion
    if dosage is None:
        return False
    if dosage.rateRatio is not None or dosage.rateQuantity is not None:
        return True
    return vascular and _millilitres(dosage.dose) >= _PUSH_MAX_ML


def _millilitres(q: Quantity | None) -> float:
    if q is None or q.value is None:
        return 0
    unit = (q.code or q.unit or "").strip().lower()
    return q.value * {"ml": 1, "l": 1000}.get(unit, 0)


def infuse_over_minutes(ma: MedicationAdministration) -> int | None:
    """An infuse-over time on the resource or its dosage, in whole minutes (1 min to 7 days)."""
    extensions: list[Extension] = list(ma.extension) + (list(ma.dosage.extension) if ma.dosage else [])
    for ext in extensions:
        q = ext.valueDuration or ext.valueQuantity
        if q is None or q.value is None or not _INFUSE_OVER.search(ext.url.rstrip("/")):
            continue
        unit = (q.code or q.unit or "").strip().lower()
        if unit in _TIME_UNITS and 1 <= round(q.value * _TIME_UNITS[unit]) <= 10080:
            return round(q.value * _TIME_UNITS[unit])
    return None


def _method_missing(route: str, method_text: list[str], ids: tuple[str, str] | None) -> Reject:
    said = ("dosage.method names no method we know (push, infusion, injection); "
            if method_text else "")
    problem = (f"the method cannot be told: an {route} administration given at one instant (effectiveDateTime, or "
               f"a period ending when it starts) with no push/infusion method, rate or infuse-over time may be a push or an infusion. {said}"
               "Document dosage.method (push or infusion) and, for an infusion, its end (effectivePeriod.end) "
               "or its rate / infuse-over time; then re-send the resource.")
    return Reject("fhir_invalid", problem, [method_missing_alert(*ids, route)] if ids else [])
