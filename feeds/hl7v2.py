"""HL7 v2 (2.5.1) messages -> contract-v1 events.

`translate_hl7(raw, drugs)` reads one message (MLLP framing already stripped; segments separated by
CR, LF or CRLF) with python-hl7 and returns a `Translation`: the events, or a rejection whose
reason says what to fix. Supported: RAS^O17 (administrations), ADT^A03 (discharge), ADT^A13 (cancel
discharge). Anything else is rejected as `hl7_unsupported` and should be filtered out by the
interface engine.

RAS^O17: one administration per RXA (a message may carry several ORC groups, an ORC several RXAs).

Fields read:
- PV1-19.1: `encounter_id` (required).
- ORC-3.1 (else ORC-2.1) + RXA-2: `administration_id` = "{filler order}-{administration sub-id}",
  e.g. `RX7003-1`. The same administration documented again (started, later stopped, later
  corrected) gets the same id as long as the sender keeps ORC-3 and RXA-2; a sender must not switch
  between ORC-3 and ORC-2.
- RXA-3 / RXA-4: start / end (DTM with UTC offset, precise to the minute at least).
- RXA-5: drug `code^text^system`; the alternate identifier (components 4-6) is tried when the first
  is not in the table. RXNORM/NDC systems become their FHIR URIs in the event.
- RXA-9: administration notes; a repetition whose identifier is `KVO`, `FLUSH` or `CARRIER` (local
  codes) sets `purpose`.
- RXA-20: completion status, table 0322: CP complete (the default when empty, as HL7 says), PA
  partial, NA not administered, RE refused; and IP in progress (a local extension many MARs send).
- RXA-21: action, table 0323: A add (default), U update, X no change, D delete.
- RXR-1: route, table 0162: IV, IA, SC, IM (SQ/SUBQ read as SC; IVP/IVPB read as IV with that
  method). Anything else (PO, ...) is rejected.
- RXR-2: `access_site` (identifier, else text), e.g. table 0163 `LMFA`.
- RXR-3: `device`, table 0164: IVP IV pump / PCA -> pump, IVS soluset / BT buretrol -> gravity;
  local PUMP, GRAVITY, SYRINGE/SYR, NONE. Other devices are left out (the field is optional).
- RXR-4: `method`, table 0165: IVP -> push, IVPB / PF -> infusion; local INF/INFUSION/CONT/DRIP ->
  infusion, PUSH/BOLUS -> push, INJ/INJECTION -> injection. Empty: IV/IA -> infusion (push when
  RXA-4 equals RXA-3: an instant), SC/IM -> injection. An IV "injection" is a push; an SC/IM push
  is an injection. An unknown method is rejected.
- TQ1-13: `ordered_duration_minutes` from the order's occurrence duration, e.g. `30^min` or `2^h`
  (the first TQ1 of the ORC group that has it).

The RXR after an RXA is its route as given; without one, the order's RXR (after RXO/RXE) is used.

What each RXA produces:
- RXA-21 D, or RXA-20 NA/RE: `administration.voided`. A not-given or refused dose is never coded;
  the void is emitted even if no start was sent before (a void of an unknown administration codes
  nothing), so a dose first sent as in progress and then documented as not given is cancelled.
  No drug lookup is needed for a void. A void is final in the state machine: a dose voided (D, NA,
  RE) and later documented as given must come under a new RXA-2.
- otherwise: `administration.started` when RXA-3 is present; `administration.stopped` when RXA-4 is
  present and the status is not IP. A push or injection documented with RXA-4 equal to RXA-3 (one
  instant) gives the start only: the contract codes a push without a stop as a push, while a stop at
  the start minute would be flagged STOP_BEFORE_START. RXA-3 and RXA-4 both empty is rejected.

Updates (RXA-21 U) and re-sends. Event ids depend only on the facts, never on MSH-10:
`hl7:{administration_id}:start:{occurred_at}:{digest of the start's fields}`,
`hl7:{administration_id}:stop:{occurred_at}`, `hl7:{administration_id}:void`. The encounter state
machine ignores a repeated event_id and lets the last start / last stop applied win
(rules/facts.py), so:
- the same facts re-sent (another MSH-10, an A after a U, an interface engine replaying its queue)
  are duplicates and change nothing, even when a message already applied arrives again after its
  correction;
- a U with a corrected start time, drug, route, method, site, device or ordered duration gives a new
  start that replaces the old one; a corrected end time gives a new stop that replaces the old one;
- a U that empties RXA-4 cannot take a stop back (contract v1 has no "un-stop"): the earlier stop
  stands. To withdraw an administration, send D (void) and document it again under a new RXA-2.
- a correction back to an earlier value (A -> B -> A) is taken for a re-send of A and ignored.

Unknown drug (not in the drug-class table): the whole message is rejected (`unknown_drug`, so the
listener answers AE and dead-letters it) with one DRUG_CLASS_UNKNOWN alert (hard) per unknown drug
telling pharmacy/IT to add the code. The other RXAs of that message are not applied either: the ACK
is for the whole message, and the sender re-sends the whole message once the table is fixed.

Times: a DTM without a UTC offset is rejected (`hl7_bad_value`). The contract requires offsets and a
local time cannot be placed on the time line safely around daylight-saving changes; interface
engines can add the offset (most send it in MSH-7 already). Seconds are kept, fractions dropped.

ADT^A03: PV1-19 `encounter_id`, PV1-45 discharge time (else EVN-6 event occurred), PV1-2 patient
class (table 0004): O outpatient, R recurring -> outpatient; E emergency; I inpatient; observation
has no code in table 0004: PV1-2 `OBS` (local) or PV1-2 `O` with PV1-18 patient type `OBS` or
`OBSERVATION` -> observation. Other classes (B obstetrics, P preadmit, U unknown, ...) are
rejected: the interface engine must map them, since inpatient vs outpatient decides whether any
code is billed. `billing` is always `facility` (HL7 has no field for it).
ADT^A13: PV1-19, time EVN-2 (recorded) else MSH-7 -> `encounter.discharge_cancelled`.
"""
from __future__ import annotations

import datetime as dt
import logging
import re

import hl7
import hl7.containers
import hl7.util

from feeds.drugs import DrugClasses, canonical_system
from feeds.translation import (Reject, Translation, checked, digest, rejected, rfc3339, settle_method,
                               unknown_drug_alert)

# python-hl7 logs the raw value of a field it cannot unescape (patient data, into the hospital's logs)
# under loggers named after its source files; a bad message is reported by the Translation instead.
for _module in (hl7.containers, hl7.util):
    logging.getLogger(_module.__file__).setLevel(logging.CRITICAL)

SUPPORTED = ("RAS^O17", "ADT^A03", "ADT^A13")
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_DTM = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.\d{1,4})?(?:([+-])(\d{2})(\d{2}))?$")

_ROUTES = {"IV": ("IV", None), "IA": ("IA", None), "SC": ("SC", None), "SQ": ("SC", None), "SUBQ": ("SC", None),
           "IM": ("IM", None), "IVP": ("IV", "push"), "IVPB": ("IV", "infusion"),
           "INTRAVENOUS": ("IV", None), "INTRA-ARTERIAL": ("IA", None), "INTRAARTERIAL": ("IA", None),
           "SUBCUTANEOUS": ("SC", None), "INTRAMUSCULAR": ("IM", None)}
_METHODS = {"IVP": "push", "PUSH": "push", "IVPUSH": "push", "BOLUS": "push",
            "IVPB": "infusion", "PF": "infusion", "INF": "infusion", "INFUSION": "infusion", "IVINF": "infusion",
            "CONT": "infusion", "CONTINUOUS": "infusion", "DRIP": "infusion",
            "INJ": "injection", "INJECTION": "injection"}
_DEVICES = {"IVP": "pump", "PCA": "pump", "PUMP": "pump", "IVS": "gravity", "BT": "gravity", "GRAV": "gravity",
            "GRAVITY": "gravity", "SYR": "syringe", "SYRINGE": "syringe", "NONE": "none"}
_PURPOSES = {"KVO": "kvo", "FLUSH": "flush", "CARRIER": "carrier"}
_STATUSES = {"CP", "PA", "IP", "NA", "RE"}
_ACTIONS = {"A", "U", "X", "D"}
_CLASSES = {"O": "outpatient", "R": "outpatient", "E": "emergency", "I": "inpatient", "OBS": "observation"}
_UNITS = {"min": 1, "mins": 1, "minute": 1, "minutes": 1, "h": 60, "hr": 60, "hrs": 60, "hour": 60, "hours": 60}


def translate_hl7(raw: bytes | str, drugs: DrugClasses, tz=None) -> Translation:
    """One HL7 v2 message -> contract-v1 events, or a rejection saying what to fix."""
    message_id = None
    try:
        lines = _lines(raw)
        msh = _parse(lines[:1])[0]
        message_id = _get(msh, 10) or None  # known before the rest is checked: the NAK refers to it
        _check_segments(lines)
        msg = _parse(lines)
        kind = f"{_get(msh, 9, 1).upper()}^{_get(msh, 9, 2).upper()}"
        if kind not in SUPPORTED:
            shown = kind if kind != "^" else "(MSH-9 empty)"
            raise Reject("hl7_unsupported", f"message type {shown} is not translated; supported: "
                         f"{', '.join(SUPPORTED)}. Filter other types out in the interface engine.")
        if message_id is None:
            raise Reject("hl7_missing_field", "MSH-10 (message control id) is empty: the sender must fill it, "
                         "the acknowledgement refers to it")
        if kind == "RAS^O17":
            events = _ras(msg, drugs)
        elif kind == "ADT^A03":
            events = [_discharge(msg)]
        else:
            events = [_cancel(msg)]
        return Translation(events=checked(events, "hl7_bad_value"), message_id=message_id)
    except Reject as exc:
        return rejected(exc, message_id)


# -- reading the message ---------------------------------------------------------------------

def _lines(raw: bytes | str) -> list[str]:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # ISO 8859-1, the usual MSH-18 of older systems
    else:
        text = raw
    text = text.strip("\x0b\x1c\r\n\t \ufeff")
    lines = [line for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if line.strip()]
    if not lines:
        raise Reject("hl7_parse", "empty message: expected segments starting with MSH")
    first = lines[0][:3]
    if first in ("FHS", "BHS"):
        raise Reject("hl7_unsupported", f"{first} batch: send one message per MLLP frame (no FHS/BHS batches)")
    if first != "MSH" or len(lines[0]) < 8:
        raise Reject("hl7_parse", f"the message must start with an MSH segment, it starts with {lines[0][:20]!r}")
    return lines


def _check_segments(lines: list[str]) -> None:
    for n, line in enumerate(lines, 1):
        if not _SEGMENT_ID.match(line[:3]) or (len(line) > 3 and line[3] != lines[0][3]):
            raise Reject("hl7_parse", f"segment {n} ({line[:20]!r}) is not an HL7 segment: a line break "
                         "inside a field? Escape it (\\.br\\) or remove it in the sending system")


def _parse(lines: list[str]) -> hl7.Message:
    try:
        return hl7.parse("\r".join(lines))
    except Exception as exc:  # python-hl7 raises several types for broken headers
        raise Reject("hl7_parse", f"the message cannot be parsed as HL7 v2 ({exc})") from None


def _get(seg, field: int, comp: int = 1, rep: int = 1, sub: int = 1) -> str:
    """A field value (unescaped) or "" when absent."""
    try:
        value = seg.extract_field(1, field, rep, comp, sub)
    except (IndexError, KeyError, TypeError, ValueError):
        return ""
    return str(value).strip()


def _reps(seg, field: int) -> int:
    return len(seg[field]) if field < len(seg) else 0


def _name(seg) -> str:
    return str(seg[0][0])


def _dtm(value: str, where: str) -> dt.datetime:
    m = _DTM.match(value)
    if not m:
        raise Reject("hl7_bad_value", f"{where} {value!r} is not an HL7 date/time precise to the minute with "
                     "UTC offset; send YYYYMMDDHHMM[SS]+/-ZZZZ, e.g. 20261124083000-0500")
    year, month, day, hour, minute, second, sign, oh, om = m.groups()
    if sign is None:
        raise Reject("hl7_bad_value", f"{where} {value!r} has no UTC offset; the sending system or interface "
                     "engine must send it with the offset, e.g. 20261124083000-0500 (contract v1 requires "
                     "offsets)")
    try:
        offset = dt.timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
        return dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                           tzinfo=dt.timezone(offset))
    except ValueError as exc:
        raise Reject("hl7_bad_value", f"{where} {value!r} is not a valid date/time ({exc})") from None


def _segments(msg, name: str) -> list:
    return [seg for seg in msg if _name(seg) == name]


def _encounter(msg) -> str:
    pv1 = _segments(msg, "PV1")
    if not pv1:
        raise Reject("hl7_missing_field", "no PV1 segment: PV1-19 (visit number) is the encounter id")
    encounter_id = _get(pv1[0], 19)
    if not encounter_id:
        raise Reject("hl7_missing_field", "PV1-19 (visit number) is empty: it is the encounter id")
    return encounter_id


def _content(event: dict) -> str:
    return digest({k: v for k, v in event.items() if k != "event_id"})


def _event_id(readable: str) -> str:
    return readable if len(readable) <= 128 else "hl7:" + digest({"id": readable})


# -- RAS^O17 ---------------------------------------------------------------------------------

def _ras(msg, drugs: DrugClasses) -> list[dict]:
    encounter_id = _encounter(msg)
    msh7 = _get(msg[0], 7)
    events: list[dict] = []
    unknown: list[tuple[str, dict, str]] = []
    orders = _orders(msg)
    if not any(order["rxas"] for order in orders):
        raise Reject("hl7_missing_field", "RAS^O17 without any RXA segment: nothing was administered")
    n = 0
    for order in orders:
        for rxa, rxr in order["rxas"]:
            n += 1
            events += _administration(encounter_id, order, rxa, rxr or order["rxr"], n, msh7, drugs, unknown)
    if unknown:
        alerts = [unknown_drug_alert(encounter_id, admin_id, drug, where) for admin_id, drug, where in unknown]
        listed = "; ".join(f"{drug['name']!r} ({where}: {drug.get('code') or 'no code'}"
                           f"{' ' + drug['system'] if drug.get('system') else ''})" for _, drug, where in unknown)
        raise Reject("unknown_drug", f"drug not in the drug-class table: {listed}. Pharmacy or IT must add it "
                     "(chemotherapy, therapeutic or hydration) to the drug-class table; then re-send the "
                     "message. No administration of this message was applied.", alerts)
    return events


def _orders(msg) -> list[dict]:
    """ORC groups: the order's RXR and TQ1s, and each RXA with the RXR that follows it."""
    orders: list[dict] = []
    current = None
    for seg in msg[1:]:
        name = _name(seg)
        if name == "ORC":
            current = {"orc": seg, "tq1": [], "rxr": None, "rxas": []}
            orders.append(current)
        elif name == "RXA":
            if current is None:
                raise Reject("hl7_missing_field", "RXA before any ORC: each administration must follow its "
                             "order's ORC segment (ORC-3 identifies the order)")
            current["rxas"].append([seg, None])
        elif name == "RXR" and current is not None:
            if current["rxas"] and current["rxas"][-1][1] is None:
                current["rxas"][-1][1] = seg
            elif not current["rxas"] and current["rxr"] is None:
                current["rxr"] = seg
        elif name == "TQ1" and current is not None:
            current["tq1"].append(seg)
    return orders


def _administration(encounter_id: str, order: dict, rxa, rxr, n: int, msh7: str, drugs: DrugClasses,
                    unknown: list) -> list[dict]:
    where = f"RXA #{n}"
    orc = order["orc"]
    order_id = _get(orc, 3) or _get(orc, 2)
    if not order_id:
        raise Reject("hl7_missing_field", f"{where}: ORC-3 (filler order number) and ORC-2 are empty; one of "
                     "them, with RXA-2, identifies the administration")
    sub_id = _get(rxa, 2)
    if not sub_id:
        raise Reject("hl7_missing_field", f"{where}: RXA-2 (administration sub-id counter) is empty; with ORC-3 "
                     "it pairs a start with its stop")
    admin_id = f"{order_id}-{sub_id}"
    where = f"{where} ({admin_id})"
    action = _get(rxa, 21).upper() or "A"
    if action not in _ACTIONS:
        raise Reject("hl7_bad_value", f"{where}: RXA-21 action code {action!r} is not one of A (add), U (update), "
                     "X (no change), D (delete)")
    status = _get(rxa, 20).upper() or "CP"
    if status not in _STATUSES:
        raise Reject("hl7_bad_value", f"{where}: RXA-20 completion status {status!r} is not one of CP, PA, IP, "
                     "NA, RE")
    start_raw, end_raw = _get(rxa, 3), _get(rxa, 4)
    start = _dtm(start_raw, f"{where}: RXA-3") if start_raw else None
    end = _dtm(end_raw, f"{where}: RXA-4") if end_raw else None

    if action == "D" or status in ("NA", "RE"):
        when = start or end or (_dtm(msh7, "MSH-7") if msh7 else None)
        if when is None:
            raise Reject("hl7_missing_field", f"{where}: no time for the void (RXA-3, RXA-4 and MSH-7 empty)")
        return [{"event_id": _event_id(f"hl7:{admin_id}:void"), "type": "administration.voided",
                 "encounter_id": encounter_id, "occurred_at": rfc3339(when), "administration_id": admin_id}]
    if start is None and end is None:
        raise Reject("hl7_missing_field", f"{where}: RXA-3 (start) and RXA-4 (end) are both empty; document at "
                     "least the start time")

    events = []
    instant = start is not None and end is not None and end == start
    method = None
    if start is not None:
        drug, category, drug_where = _drug(rxa, drugs, where)
        if category is None:
            unknown.append((admin_id, drug, drug_where))
            category = "therapeutic"  # placeholder: the message is rejected before this event is used
        route, method, site, device = _route(rxr, where, instant)
        started = {"event_id": "", "type": "administration.started", "encounter_id": encounter_id,
                   "occurred_at": rfc3339(start), "administration_id": admin_id, "drug": drug,
                   "category": category, "route": route, "method": method}
        if site:
            started["access_site"] = site
        purpose = _purpose(rxa)
        if purpose:
            started["purpose"] = purpose
        ordered = _ordered_minutes(order["tq1"], where)
        if ordered is not None:
            started["ordered_duration_minutes"] = ordered
        if device:
            started["device"] = device
        started["event_id"] = _event_id(f"hl7:{admin_id}:start:{started['occurred_at']}:{_content(started)}")
        events.append(started)
    if end is not None and status != "IP" and not (instant and method in ("push", "injection")):
        events.append({"event_id": _event_id(f"hl7:{admin_id}:stop:{rfc3339(end)}"),
                       "type": "administration.stopped", "encounter_id": encounter_id,
                       "occurred_at": rfc3339(end), "administration_id": admin_id})
    return events


def _drug(rxa, drugs: DrugClasses, where: str) -> tuple[dict, str | None, str]:
    code, text, system = _get(rxa, 5, 1), _get(rxa, 5, 2), _get(rxa, 5, 3)
    alt_code, alt_text, alt_system = _get(rxa, 5, 4), _get(rxa, 5, 5), _get(rxa, 5, 6)
    if not (code or text or alt_code or alt_text):
        raise Reject("hl7_missing_field", f"{where}: RXA-5 (administered code) is empty; send code^text^system, "
                     "e.g. 2193^ceftriaxone^RXNORM")
    category = drugs.category(code, system, text)
    if category is None and (alt_code or alt_text):
        category = drugs.category(alt_code, alt_system, alt_text)
    if code or not alt_code:
        drug = {"name": text or alt_text or code, "code": code or None, "system": canonical_system(system)}
    else:
        drug = {"name": alt_text or text or alt_code, "code": alt_code, "system": canonical_system(alt_system)}
    return drug, category, f"{where} RXA-5"


def _route(rxr, where: str, instant: bool) -> tuple[str, str, str | None, str | None]:
    if rxr is None:
        raise Reject("hl7_missing_field", f"{where}: no RXR segment; RXR-1 (route: IV, IA, SC or IM) is required")
    raw_route = _get(rxr, 1, 1) or _get(rxr, 1, 2)
    if not raw_route:
        raise Reject("hl7_missing_field", f"{where}: RXR-1 (route) is empty; send IV, IA, SC or IM (table 0162)")
    found = _ROUTES.get(raw_route.upper()) or _ROUTES.get(_get(rxr, 1, 2).upper())
    if found is None:
        raise Reject("hl7_bad_value", f"{where}: RXR-1 route {raw_route!r} is not coded by this validator; "
                     "supported: IV, IA, SC, IM (table 0162). Filter other routes out in the interface engine")
    route, method = found
    raw_method = _get(rxr, 4, 1) or _get(rxr, 4, 2)
    if raw_method:
        method = _METHODS.get(raw_method.upper()) or _METHODS.get(_get(rxr, 4, 2).upper())
        if method is None:
            raise Reject("hl7_bad_value", f"{where}: RXR-4 administration method {raw_method!r} is not known; "
                         "send IVP (push), IVPB or INF (infusion), INJ (injection), or leave it empty")
    method = settle_method(route, method, instant)
    site = _get(rxr, 2, 1) or _get(rxr, 2, 2) or None
    device_code = (_get(rxr, 3, 1) or _get(rxr, 3, 2)).upper()
    device = _DEVICES.get(device_code) or _DEVICES.get(_get(rxr, 3, 2).upper())
    return route, method, site, device


def _purpose(rxa) -> str | None:
    for rep in range(1, _reps(rxa, 9) + 1):
        for comp in (1, 2):
            purpose = _PURPOSES.get(_get(rxa, 9, comp, rep).upper())
            if purpose:
                return purpose
    return None


def _ordered_minutes(tq1s: list, where: str) -> int | None:
    for tq1 in tq1s:
        quantity = _get(tq1, 13, 1)
        if not quantity:
            continue
        units = _get(tq1, 13, 2).lower()
        factor = _UNITS.get(units)
        try:
            value = float(quantity)
        except ValueError:
            value = -1
        if factor is None or value <= 0:
            raise Reject("hl7_bad_value", f"{where}: TQ1-13 occurrence duration {quantity}^{units} is not a "
                         "positive number of min or h, e.g. 30^min")
        minutes = round(value * factor)
        if not 1 <= minutes <= 10080:
            raise Reject("hl7_bad_value", f"{where}: TQ1-13 occurrence duration {minutes} min is outside "
                         "1 min to 7 days")
        return minutes
    return None


# -- ADT -------------------------------------------------------------------------------------

def _discharge(msg) -> dict:
    encounter_id = _encounter(msg)
    pv1 = _segments(msg, "PV1")[0]
    evn = _segments(msg, "EVN")
    raw, where = _get(pv1, 45), "PV1-45"
    if not raw and evn:
        raw, where = _get(evn[0], 6), "EVN-6"
    if not raw:
        raise Reject("hl7_missing_field", "PV1-45 (discharge date/time) is empty (and no EVN-6): the discharge "
                     "time is required")
    occurred_at = rfc3339(_dtm(raw, where))
    code = _get(pv1, 2).upper()
    if not code:
        raise Reject("hl7_missing_field", "PV1-2 (patient class) is empty; send O, E, I, R or OBS")
    patient_class = _CLASSES.get(code)
    if code == "O" and _get(pv1, 18).upper() in ("OBS", "OBSERVATION"):
        patient_class = "observation"
    if patient_class is None:
        raise Reject("hl7_bad_value", f"PV1-2 patient class {code!r} is not mapped: send O (outpatient), "
                     "R (recurring, outpatient), E (emergency), I (inpatient) or OBS (observation; or O with "
                     "PV1-18 OBS); map other classes in the interface engine")
    event = {"event_id": "", "type": "encounter.discharged", "encounter_id": encounter_id,
             "occurred_at": occurred_at, "patient_class": patient_class, "billing": "facility"}
    event["event_id"] = _event_id(f"hl7:{encounter_id}:discharged:{occurred_at}:{_content(event)}")
    return event


def _cancel(msg) -> dict:
    encounter_id = _encounter(msg)
    evn = _segments(msg, "EVN")
    raw, where = (_get(evn[0], 2), "EVN-2") if evn else ("", "EVN-2")
    if not raw:
        raw, where = _get(msg[0], 7), "MSH-7"
    if not raw:
        raise Reject("hl7_missing_field", "EVN-2 and MSH-7 are empty: the time of the cancellation is required")
    occurred_at = rfc3339(_dtm(raw, where))
    return {"event_id": _event_id(f"hl7:{encounter_id}:discharge_cancelled:{occurred_at}"),
            "type": "encounter.discharge_cancelled", "encounter_id": encounter_id, "occurred_at": occurred_at}
