"""Infusion pumps over HL7 v2, as IHE Patient Care Device profiles shape them, into contract v1.2
`device.delivery` events: evidence for nurses and coders, never documentation (coding-rules §9).

A pump gateway connects to the same MLLP listener as any interface engine; this module registers
the message kinds it sends (feeds/hl7v2.py `register`):

- `ORU^R42` (PCD-10, IPEC): one event per message. The OBX whose observation is
  MDC_ATTR_EVT_COND says which (delivery started 197288, stopped, completed 197292), wherever it
  sits in the containment tree; MDC_ATTR_EVT_SOURCE names the source (e.g. 1.1.2.0: module 1,
  primary source). A stop while the source is `transitioning` (a rate change, a bolus, a step) is a
  segment boundary, not a stop; a start at `kvo` (keep vein open after the volume was reached) is not
  treatment: both are taken (AA) and mean nothing.
- `ORU^R01` (PCD-01): a pump's periodic status, read as started (delivering) or stopped
  (not-delivering) per source; the rules make nothing of a repeated status. ORU^R01 that is not a
  pump's (a device report, a monitor) is taken and skipped.
- `RGV^O15` (PCD-03, PIV): the order programmed on a pump; remembered (feeds/pump_link.py) so that
  the pump's later events are linked through that order. No events.
- `ORU^R40` alarms, `ACK^O15`, `RRG^O16`: taken and skipped.

Codes are matched by number when the message gives one (not 0 or 999999), else by name with the
variants vendors and versions use (MDCX_ for MDC_, DEV_ present or not). The event time is the
pump's (OBX-14 of the event, else OBR-7), not the arrival's. Resent events are duplicates: their ids
come from the pump, the source, the event and its time. The visit: PV1-19 (or PID-18, as
IV_HL7_VISIT_FIELDS says); else the visit of the order the pump reports (OBR-2), or of the order a PIV
message associated with the pump; else the message is refused saying what would link it. Never by
patient name.
"""
from __future__ import annotations

import math

from feeds.hl7v2 import Reading, Skip, _event_id, _get, _segments, register
from feeds.translation import Reject, rfc3339

# Observation codes, by number and by normalized name (feeds/pcd.py's `_is`).
EVT_COND = (68487, "MDC_ATTR_EVT_COND")
EVT_SOURCE = (68488, "MDC_ATTR_EVT_SOURCE")
DELIVERY_STATUS = (158005, "MDC_PUMP_CURRENT_DELIVERY_STATUS")
INFUSING_STATUS = (184519, "MDC_PUMP_INFUSING_STATUS")
CHANNEL_LABEL = (158012, "MDC_PUMP_SOURCE_CHANNEL_LABEL")
DRUG_LABEL = (184514, "MDC_DRUG_NAME_LABEL")
DRUG_TYPE = (184330, "MDC_DRUG_NAME_TYPE")  # the 2012 name of the drug label
SYS_ID = (67972, "MDC_ATTR_SYS_ID")
RATE = (157784, "MDC_FLOW_FLUID_PUMP")
VOLUME = ((157993, "MDC_VOL_FLUID_DELIV_TOTAL"), (157864, "MDC_VOL_FLUID_DELIV"))
EVENTS = {197288: "started", 197292: "completed", "MDC_EVT_PUMP_DELIV_START": "started",
          "MDC_EVT_PUMP_DELIV_STOP": "stopped", "MDC_EVT_PUMP_DELIV_COMP": "completed"}
PUMP_DEVICES = frozenset({69985, 69986, 70049, 70050, 70053, 70054, "MDC_PUMP_INFUS_MDS", "MDC_PUMP_INFUS_VMD",
                          "MDC_PUMP_INFUS_LVP_MDS", "MDC_PUMP_INFUS_LVP_VMD", "MDC_PUMP_INFUS_SYRINGE_MDS",
                          "MDC_PUMP_INFUS_SYRINGE_VMD"})
NO_CODE = (0, 999999)
UNLINKED = ("this pump event cannot be linked to a visit: send the visit number in PV1-19 (or the field "
            "IV_HL7_VISIT_FIELDS names), or the placer order the pump was programmed with in OBR-2, matching "
            "an administration's ORC-2 the listener has received; or send the PIV RGV^O15 that associated the "
            "pump with that order first. Pump events are never linked by patient name")


# -- one observation ------------------------------------------------------------------------------


class _Obx:
    __slots__ = ("code", "name", "sub", "value", "text", "units", "time", "device")

    def __init__(self, seg) -> None:
        code = _get(seg, 3, 1)
        self.code = int(code) if code.isdigit() else 0
        self.name = _normal(_get(seg, 3, 2))
        self.sub = _get(seg, 4)  # the containment sub-id, e.g. 1.1.2.1
        self.value, self.text = _get(seg, 5, 1), _get(seg, 5, 2)  # CWE: code^text (statuses: ^text)
        self.units = (_get(seg, 6, 1) + " " + _get(seg, 6, 2) + " " + _get(seg, 6, 4)).upper()
        self.time = _get(seg, 14)
        self.device = _get(seg, 18, 1) or _get(seg, 18, 3)  # the pump: EI-1, else (the older form) EI-3

    def is_(self, code_and_name) -> bool:
        code, name = code_and_name
        return self.code == code if self.code not in NO_CODE else self.name == name

    def within(self, prefix: str) -> bool:
        return bool(prefix) and (self.sub == prefix or self.sub.startswith(prefix + "."))


def _normal(name: str) -> str:
    """A nomenclature name as one spelling: MDCX_ -> MDC_, DEV_ after MDC_ dropped."""
    name = name.strip().upper()
    if name.startswith("MDCX_"):
        name = "MDC_" + name[5:]
    return "MDC_" + name[8:] if name.startswith("MDC_DEV_") else name


def _observations(msg) -> list[_Obx]:
    return [_Obx(seg) for seg in _segments(msg, "OBX")]


def _first(obxs: list[_Obx], what, prefix: str | None = None) -> _Obx | None:
    return next((o for o in obxs if o.is_(what) and (prefix is None or o.within(prefix))), None)


# -- the pump, its source, the drug ---------------------------------------------------------------


def _device(obxs: list[_Obx]) -> str:
    for o in obxs:
        if (o.code in PUMP_DEVICES or o.name in PUMP_DEVICES) and o.device:
            return o.device[:128]
    sys_id = _first(obxs, SYS_ID)
    if sys_id and (sys_id.value or sys_id.text):
        return (sys_id.value or sys_id.text)[:128]
    raise Reject("hl7_missing_field", "no pump id: OBX-18 of the pump's device observation (MDC_DEV_PUMP_INFUS_*) "
                 "is empty, and there is no MDC_ATTR_SYS_ID; the gateway must say which pump reported")


def _channel(obxs: list[_Obx], source: str) -> str:
    """The source as `module/label` (e.g. 1/Primary): the source is part of the pairing key (a
    piggyback's secondary is not its primary's resume)."""
    parts = source.split(".")
    module = parts[1] if len(parts) > 1 else "1"
    label = _first(obxs, CHANNEL_LABEL, source)
    name = (label.value or label.text) if label else (parts[2] if len(parts) > 2 else "")
    return f"{module}/{name}"[:128] if name else module


def _drug(msg, obxs: list[_Obx], source: str) -> dict | None:
    """The pump's drug label (a drug-library name or code, never RxNorm): OBR-4, else the label
    observation; 'Unknown medication' (999999) is no drug."""
    obr = _segments(msg, "OBR")
    code, name = (_get(obr[0], 4, 1), _get(obr[0], 4, 2)) if obr else ("", "")
    if code in ("0", "999999") or name.casefold().startswith("unknown"):
        code, name = "", ""
    if not name:
        label = _first(obxs, DRUG_LABEL, source) or _first(obxs, DRUG_TYPE, source) \
            or _first(obxs, DRUG_LABEL) or _first(obxs, DRUG_TYPE)
        name = (label.value or label.text) if label else ""
    if not name or name.casefold().startswith("unknown"):
        return None
    return {"name": name[:256], "code": code[:128] or None, "system": None}


def _number(o: _Obx | None, unit: str) -> float | None:
    """An NM observation in `unit` (e.g. MILLI_L_PER_HR); None when absent, unreadable or in other units."""
    if o is None or unit not in o.units:
        return None
    try:
        value = float(o.value)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _order(msg) -> str | None:
    """OBR-2's placer order number: the order a pump programmed through PIV reports back."""
    obr = _segments(msg, "OBR")
    order = _get(obr[0], 2, 1) if obr else ""
    return order[:128] if order and order != "0" else None


def _when(r: Reading, o: _Obx | None) -> str:
    """The pump's time of an observation: its OBX-14, else OBR-7."""
    if o is not None and o.time:
        return rfc3339(r.clock.at(o.time, "OBX-14"))
    obr = _segments(r.msg, "OBR")
    value = _get(obr[0], 7) if obr else ""
    if not value:
        raise Reject("hl7_missing_field", "OBR-7 (observation time) is empty and the event has no OBX-14: the pump's "
                     "time of the event is needed (not the time it was sent)")
    return rfc3339(r.clock.at(value, "OBR-7"))


def _visit(r: Reading, visit: str | None, device: str, order: str | None) -> tuple[str, str, str | None]:
    """(encounter id, how it was linked, the order) or Reject with what would link it."""
    if visit:
        return visit, "visit", order
    links = r.links
    if links is not None:
        if (found := links.visit_of(order)) is not None:
            return found, "order", order
        piv = links.order_of(device)
        if (found := links.visit_of(piv)) is not None:
            return found, "piv", order or piv
    raise Reject("hl7_missing_field", UNLINKED)


def _event(r: Reading, visit: str | None, obxs: list[_Obx], source: str, status: str, at_obx: _Obx | None,
           kind: str) -> dict:
    device = _device(obxs)
    channel = _channel(obxs, source)
    occurred = _when(r, at_obx)
    encounter_id, linked, order = _visit(r, visit, device, _order(r.msg))
    event = {"event_id": _event_id(f"{kind}:{device}:{channel}:{status}:{occurred}"), "type": "device.delivery",
             "encounter_id": encounter_id, "occurred_at": occurred, "device_id": device, "channel": channel,
             "status": status, "encounter_id_field": linked}
    if order:
        event["order_id"] = order
    drug = _drug(r.msg, obxs, source)
    if drug:
        event["drug"] = drug
    rate = _number(_first(obxs, RATE, source), "MILLI_L_PER_HR")
    volume = next((v for what in VOLUME if (v := _number(_first(obxs, what, source), "MILLI_L")) is not None), None)
    event.update((k, v) for k, v in (("rate_ml_h", rate), ("volume_ml", volume)) if v is not None)
    return event


def _status_of(obxs: list[_Obx], source: str) -> str:
    """The source's delivery status text, lower case ('' when not said)."""
    o = _first(obxs, DELIVERY_STATUS, source) or _first(obxs, DELIVERY_STATUS)
    return _get_text(o).lower() if o else ""


# -- the message kinds ----------------------------------------------------------------------------


def read_event(r: Reading, visit: str | None) -> list[dict]:
    """ORU^R42: one IPEC event."""
    obxs = _observations(r.msg)
    cond = _first(obxs, EVT_COND)
    if cond is None:
        raise Reject("hl7_missing_field", "no MDC_ATTR_EVT_COND observation: an IPEC ORU^R42 carries its event "
                     "(delivery started, stopped, completed) in one OBX")
    status = EVENTS.get(cond.code) if cond.code not in NO_CODE else None
    status = status or EVENTS.get(_normal(_get_text(cond)))
    if status is None:
        raise Skip("pump_other_event", "a pump event other than delivery started, stopped or completed (OBX-5 of "
                   "MDC_ATTR_EVT_COND): taken, nothing to code")
    source_obx = _first(obxs, EVT_SOURCE)
    source = _source(obxs, source_obx.value if source_obx else "")
    delivery = _status_of(obxs, source)
    if status == "stopped" and "transitioning" in delivery:
        raise Skip("pump_transition", "a stop while the source is transitioning (a rate change, a bolus, a step): a "
                   "segment boundary, not a stop")
    if status == "started" and "kvo" in delivery:
        raise Skip("pump_kvo", "a start at keep-vein-open after the volume was infused: not treatment")
    return [_event(r, visit, obxs, source, status, cond, "pcd10")]


def _get_text(o: _Obx) -> str:
    return o.text or o.value


def _source(obxs: list[_Obx], said: str) -> str:
    """The event's source as a containment prefix (1.1.2): as MDC_ATTR_EVT_SOURCE says, else the first
    infusate source, else the first channel (module) of the pump."""
    if said:
        parts = [p for p in said.split(".") if p]
        while parts and parts[-1] == "0":
            parts.pop()
        if parts:
            return ".".join(parts)
    for o in obxs:
        if "INFUSATE_SOURCE" in o.name or "CHAN_SOURCE" in o.name or o.code in (70071, 126977):
            return _source([], o.sub)
    return "1.1"


def read_status(r: Reading, visit: str | None) -> list[dict]:
    """ORU^R01: a PCD-01 report; a pump's delivery status per source, else nothing to take."""
    obxs = _observations(r.msg)
    if not any(o.code in PUMP_DEVICES or o.name in PUMP_DEVICES for o in obxs):
        profile = str(r.msh[21]).upper() if len(r.msh) > 21 else ""  # MSH-21, every repetition
        if "IHE_PCD" not in profile:
            raise Reject("hl7_unsupported", "message type ORU^R01 is read only as an infusion pump's status report "
                         "(IHE PCD-01, MSH-21 IHE_PCD_001); filter other results out in the interface engine.")
        raise Skip("not_a_pump", "an IHE PCD ORU^R01 without an infusion pump's device observation (a device report "
                   "or a monitor's): taken, nothing to code")
    events = []
    for o in obxs:
        if not o.is_(DELIVERY_STATUS):
            continue
        said = _get_text(o).lower()
        status = "stopped" if "not-delivering" in said else "started" if said.endswith("delivering") else None
        if status is not None:
            source = _source([], o.sub.rsplit(".", 1)[0] if o.sub.count(".") >= 3 else o.sub)
            events.append(_event(r, visit, obxs, source, status, o if o.time else None, "pcd01"))
    if not events:
        raise Skip("pump_no_status", "a pump report with no delivery status (delivering or not-delivering) of a "
                   "source: taken, nothing to code")
    return events


def read_association(r: Reading, visit: str | None) -> list[dict]:
    """RGV^O15: the order programmed on a pump (PIV), remembered to link the pump's events."""
    orc = _segments(r.msg, "ORC")
    order = _get(orc[0], 2, 1)[:128] if orc else ""
    device = next((o.device for o in _observations(r.msg) if o.device), "")[:128]
    if not order or not device:
        raise Reject("hl7_missing_field", "a PIV RGV^O15 needs the order (ORC-2) and the pump (OBX-18 of the pump's "
                     "device observation) to associate them")
    if r.links is not None:
        r.links.associate(device, order)
        if visit:
            r.links.order_visit(order, visit)
    raise Skip("pump_association", "a PIV order programmed on a pump: the association is remembered to link the "
               "pump's events; nothing to code")


def _not_coded(what: str):
    def read(r: Reading, visit: str | None) -> list[dict]:
        raise Skip("pump_not_coded", f"{what}: taken, nothing to code")
    return read


register("ORU^R42", read_event, visit=False)
register("ORU^R01", read_status, visit=False)
register("RGV^O15", read_association, visit=False)
register("ORU^R40", _not_coded("a device alarm (PCD-04)"), visit=False)
register("ACK^O15", _not_coded("an acknowledgement of a PIV order"), visit=False)
register("RRG^O16", _not_coded("a pump's answer to a PIV order"), visit=False)
