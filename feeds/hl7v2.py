"""HL7 v2 (2.5.1) messages -> contract-v1 events.

`translate_hl7(raw, drugs)` reads one message (MLLP framing already stripped; segments separated by
CR, LF or CRLF) with python-hl7 and returns a `Translation`: the events, or a rejection whose
reason says what to fix. Supported: RAS^O17 (administrations), ADT^A03 (discharge), ADT^A13 (cancel
discharge). Anything else is rejected as `hl7_unsupported` and should be filtered out by the
interface engine.

RAS^O17: one administration per RXA. Groups as HL7 v2.5 defines the message: ORDER = ORC, its TQ1s,
RXO/RXE with the order's RXR(s), then ADMINISTRATION groups, each one or more RXA followed by the
RXR that is the route of all of them ({RXA}+ RXR). An RXA after a group's RXR opens the next group;
a group sent without an RXR takes the order's RXR; an RXA with neither is a problem.

Every problem of a message is reported at once (each RXA's fields, the visit, the times), so a
sender fixes a message in one round; the message is then rejected whole.

No patient data in a rejection (it goes back in the ACK, into the dead letter's `reason` and logs):
a problem names the field and position (`RXA #2: RXA-3`, `segment 3`) and what to send, never a
value that could be patient data: not a name, an id (PV1-19, ORC-3, the administration id built
from them), a time (a clinical date), free text or a segment. A value is quoted only when it is a
code of the field's HL7 table (route 'PO', patient class 'P', message type ORU^R01) or an RxNorm /
NDC drug code; MSH-10 goes back in MSA-2 as HL7 requires. The dead letter's `raw` keeps the message.

Fields read:
- The visit number, `encounter_id` (required): the first filled of IV_HL7_VISIT_FIELDS, default
  PV1-19.1 then PID-18.1 (a MEDITECH RAS^O17 keeps the account in PID-18); the event says which in
  `encounter_id_field`.
- PID-3's first repetition: `patient_id` as `ID^^^AUTHORITY` (contract v1.2, for the billing
  interface only; not in the event ids, never in a rejection).
- EVN-2, else MSH-7: `recorded_at` (contract v1.2): when the sender recorded the event. It orders a
  discharge and its cancellation (Epic's re-discharge: A03 12:30, A13 keyed 13:45, A03 13:00 keyed
  14:00), and is part of a discharge's event id (a re-discharge at the same clinical time after a
  cancel is a new fact; a replayed A03 keeps its EVN-2 and stays a duplicate). Unreadable: left out.
- ORC-2: `order_id` (contract v1.2, the placer order: links pump events).
- PV1-3: `location` on every event (contract v1.1): point of care as `unit`, room, bed. Not part of
  the event ids: a transfer does not turn documented facts into new ones.
- ORC-3.1 (else ORC-2.1) + RXA-2 + RXA-5's code: `administration_id` =
  "{filler order}-{administration sub-id}-{drug}", e.g. `RX7003-1-2193`. The drug part tells apart
  two drugs documented under one order and sub-id (a bag and its additive; real MARs do this), so
  one never overwrites the other; it is the code (else the alternate code) when id-safe, else a
  digest of it or of the text. Two RXAs of one message with the same id are a problem, never an
  overwrite. The same administration documented again (started, stopped, corrected) keeps its id
  as long as the sender keeps ORC-3, RXA-2 and RXA-5's code; a sender must not switch between ORC-3
  and ORC-2. A corrected drug is another administration: send D for the wrong one (see below).
- RXA-3 / RXA-4: start / end (DTM precise to the minute at least; without a UTC offset, placed by
  feeds/hl7time.py: MSH-7's offset or the facility zone, `--timezone` / IV_TIMEZONE).
- RXA-5: drug `code^text^system`; the alternate identifier (components 4-6) is tried when the first
  is not in the table. RXNORM/NDC systems become their FHIR URIs in the event.
- RXA-9: administration notes; a repetition whose identifier is `KVO`, `FLUSH` or `CARRIER` (local
  codes) sets `purpose`.
- RXA-20: completion status, table 0322: CP complete (the default when empty, as HL7 says), PA
  partial, NA not administered, RE refused; and IP in progress (a local extension many MARs send).
  The words MARs send instead are read too (Given/Complete(d) CP, Partial PA, In progress/Infusing
  IP, Not given/Held/Missed NA, Refused/Declined RE); anything else is a problem.
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

Times: a DTM's own UTC offset; else MSH-7's offset or the facility zone (feeds/hl7time.py says
which, and rejects a local time the zone skips or repeats); with neither, rejected (`hl7_bad_value`)
naming --timezone / IV_TIMEZONE. Seconds are kept, fractions dropped.

Character set: decided by the bytes where the label cannot change the meaning (`_decode`): 7-bit
bytes are read as ASCII whatever MSH-18 says (`UNICODE`, a country code such as `CAN` one field
late); bytes that are not valid in the named set (or a set not read) but are valid UTF-8 are read as
UTF-8; both are noted (Translation.notes, `iv_feed_notes_total`). Otherwise MSH-18 (table 0211) is
honoured: ASCII, 8859/n, UNICODE UTF-8, GB 18030-2000, BIG-5, KS X 1001, ISO IR87 (ISO 2022-JP,
SS-MIX2; without the ISO 2022 escapes, UTF-8 when the bytes are, else Shift-JIS as Japanese senders
send) and SHIFT-JIS. Only bytes no reading fits are refused (AR) naming MSH-18, with MSH-10 read
from the bytes. Without MSH-18: ISO 2022-JP when its escapes are there, else UTF-8, else ISO 8859-1.

ADT^A03: the visit number `encounter_id`, PV1-45 discharge time (else EVN-6 event occurred), PV1-2 patient
class (table 0004): O outpatient, R recurring -> outpatient; E emergency; I inpatient; observation
has no code in table 0004: PV1-2 `OBS` (local) or PV1-2 `O` with PV1-18 patient type `OBS` or
`OBSERVATION` -> observation. Other classes (B obstetrics, P preadmit, U unknown, ...) are
rejected: the interface engine must map them, since inpatient vs outpatient decides whether any
code is billed. `billing` is always `facility` (HL7 has no field for it).
ADT^A13: the visit number, time EVN-2 (recorded) else MSH-7 -> `encounter.discharge_cancelled`.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo

import hl7
import hl7.containers
import hl7.util

from feeds.drugs import DrugClasses, canonical_system
from feeds.hl7time import Clock
from feeds.pump_link import PumpLinks
from feeds.text import clean_lines, hl7_unescape
from feeds.translation import (NDC, RXNORM, Note, Problems, Reject, Translation, checked, content, digest, rejected, rfc3339,
                               settle_method, unknown_drug_alert)

# python-hl7 logs the raw value of a field it cannot unescape (patient data, into the hospital's logs)
# under loggers named after its source files; a bad message is reported by the Translation instead.
for _module in (hl7.containers, hl7.util):
    logging.getLogger(_module.__file__).setLevel(logging.CRITICAL)

_CODEC: contextvars.ContextVar[str] = contextvars.ContextVar("hl7_codec", default="utf-8")
VISIT_FIELDS = ("PV1-19", "PID-18")  # where the visit number is read, in order (IV_HL7_VISIT_FIELDS)
_VISIT_FIELD_NAMES = {"PV1-19": "visit number", "PID-18": "patient account number", "PV1-50": "alternate visit id",
                      "PV1-5": "preadmit number"}
VISIT_FIELD = re.compile(r"^(PV1|PID)-([1-9]\d?)$")


_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_STANDARD_SEGMENTS = frozenset("PID PD1 PV1 PV2 EVN NK1 AL1 DG1 IN1 GT1 ORC RXA RXR RXE RXO RXC TQ1 TQ2 NTE OBR OBX "
                               "MSA ERR QRD QPD RCP SFT UAC".split())  # named when a message starts with one

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
# RXA-20, table 0322, and the words real MARs send instead of the codes.
_STATUSES = {**{code: code for code in ("CP", "PA", "IP", "NA", "RE")},
             **dict.fromkeys(("COMPLETE", "COMPLETED", "GIVEN", "DONE", "ADMINISTERED"), "CP"),
             **dict.fromkeys(("PARTIAL", "PARTIALLY ADMINISTERED", "PARTIALLY GIVEN", "INCOMPLETE"), "PA"),
             **dict.fromkeys(("IN PROGRESS", "INPROGRESS", "STARTED", "INFUSING", "RUNNING", "ACTIVE"), "IP"),
             **dict.fromkeys(("NOT ADMINISTERED", "NOT GIVEN", "NOTGIVEN", "NOT DONE", "HELD", "MISSED", "OMITTED"),
                             "NA"),
             **dict.fromkeys(("REFUSED", "DECLINED", "PATIENT REFUSED"), "RE")}
_ACTIONS = {"A", "U", "X", "D"}
_CLASSES = {"O": "outpatient", "R": "outpatient", "E": "emergency", "I": "inpatient", "OBS": "observation"}
_UNITS = {"min": 1, "mins": 1, "minute": 1, "minutes": 1, "h": 60, "hr": 60, "hrs": 60, "hour": 60, "hours": 60}

# What a rejection may quote. A problem names the field and its position, never a value that could
# be patient data (a name, an id, a date, free text, a whole segment: a shifted field can carry any
# of them). A value is quoted only when it is a code of the HL7 table the field takes, or a drug
# code of RxNorm/NDC, which by its shape cannot be a name or a record number of ours:
ROUTES_0162 = frozenset(
    "AP B DT GTT GU IA IB IC ICV ID IH IHA IM IMR IN IO IP IS IT IU IV MM MTH NG NP NS NT OP OT OTH PF PO PR "
    "RM SC SD SL TD TL TP TRA UR VG VM WND".split())
METHODS_0165 = frozenset("CH DI DU IF IR IS IVP IVPB NB PF PT SH SO WA WI".split())
CLASSES_0004 = frozenset("B C E I N O P R U".split())
MESSAGE_TYPES_0076 = frozenset(
    "ACK ADR ADT BAR BPS BRP BRT BTS CRM CSU DFT DOC DSR EAC EAN EAR EHC ERP ESR ESU INR INU LSR LSU MDM MFD "
    "MFK MFN MFQ MFR NMD NMQ NMR OMB OMD OMG OMI OML OMN OMP OMS OPL OPR OPU ORA ORB ORD ORF ORG ORI ORL ORM "
    "ORN ORP ORR ORS ORU OSM OSQ OSR OUL PEX PGL PIN PMU PPG PPP PPR PPT PPV PRR PTR QBP QCK QCN QRY QSB QSX "
    "QVR RAR RAS RCI RCL RDE RDR RDS RDY REF RER RGR RGV ROR RPA RPI RPL RPR RQA RQC RQI RQP RRA RRD RRE RRG "
    "RRI RSP RTB SCN SDN SDR SIU SLN SLR SMD SQM SQR SRM SRR SSR SSU STC STI SUR TBR TCR TCU UDM VXQ VXR VXU "
    "VXX".split())
_TRIGGER = re.compile(r"^[A-Z]\d{2}$")  # table 0003: a letter and two digits
_DRUG_CODE = {RXNORM: re.compile(r"^\d{1,10}$"), NDC: re.compile(r"^\d{4,5}-?\d{3,4}-?\d{1,2}$")}


def _known(value: str, table: frozenset) -> str:
    """' <value>' when it is a code of `table` (safe to say back), else ''."""
    return f" {value.upper()!r}" if value.upper() in table else ""


def _message_type(kind: str) -> str:
    code, trigger = kind.split("^", 1)
    if not code:
        return "(MSH-9 empty)"
    if code in MESSAGE_TYPES_0076 and (not trigger or _TRIGGER.match(trigger)):
        return kind
    return "in MSH-9 (not a message type of table 0076)"


def _drug_shown(drug: dict) -> str:
    """An unknown drug as a rejection may say it: an RxNorm or NDC code, else only what it has (the
    DRUG_CLASS_UNKNOWN alert and the dead letter's raw carry the rest, under PHI rules)."""
    code, system = drug.get("code") or "", drug.get("system")
    shape = _DRUG_CODE.get(system)
    if code and shape and shape.match(code):
        return f"{'RxNorm' if system == RXNORM else 'NDC'} {code}"
    return "a local code" if code else "text only, no code"


@dataclass
class Reading:
    """What a message kind's reader gets: the parsed message and how to read it. `links`: the pump
    feed's memory of orders and pumps (feeds/pump_link.py), None where nothing is remembered."""
    msg: hl7.Message
    msh: hl7.Segment
    drugs: DrugClasses
    clock: Clock
    problems: Problems
    visit_fields: tuple[str, ...]
    links: PumpLinks | None


class Skip(Exception):
    """Raised by a reader: the message is taken (AA) and means nothing to code, e.g. a pump's alarm.
    `kind` is a bounded note label (iv_feed_notes_total), `text` names fields, never values."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind, self.text = kind, text


@dataclass(frozen=True)
class Kind:
    read: Callable[[Reading, str | None], list[dict]]  # (reading, the visit number or None) -> events
    visit: bool = True  # the visit number (IV_HL7_VISIT_FIELDS) is required before reading


# Message kinds (MSH-9.1^MSH-9.2) the translator reads: a feed carried by HL7 v2 is a module that
# registers its kinds (feeds/pcd.py, the infusion pumps'); the listener and `hl7 translate` read this.
KINDS: dict[str, Kind] = {}


def register(kind: str, read: Callable[[Reading, str | None], list[dict]], visit: bool = True) -> None:
    KINDS[kind] = Kind(read, visit)


def translate_hl7(raw: bytes | str, drugs: DrugClasses, tz: tzinfo | None = None,
                  visit_fields: tuple[str, ...] = VISIT_FIELDS, links: PumpLinks | None = None) -> Translation:
    """One HL7 v2 message -> contract-v1 events, or a rejection listing every problem found.
    `tz`: the sending facility's zone, for times sent without a UTC offset; `visit_fields`: where
    the visit number (the encounter id) is read, in order (IV_HL7_VISIT_FIELDS); `links`: what the
    pump feed remembers of orders and pumps, learned from the messages translated with it."""
    notes: list[Note] = []
    # Known before anything else is checked, even in a character set we cannot read: the NAK refers to it.
    message_id = _msh_field(raw, 10) or None
    try:
        lines = _lines(raw, notes)
        msh = _parse(lines[:1])[0]
        message_id = _get(msh, 10) or None
        _check_segments(lines)
        msg = _parse(lines)
        kind = f"{_get(msh, 9, 1).upper()}^{_get(msh, 9, 2).upper()}"
        reader = KINDS.get(kind)
        if reader is None:
            shown = _message_type(kind)
            raise Reject("hl7_unsupported", f"message type {shown} is not translated; supported: "
                         f"{', '.join(KINDS)}. Filter other types out in the interface engine.")
        problems = Problems()
        if message_id is None:
            problems.add(Reject("hl7_missing_field", "MSH-10 (message control id) is empty: the sender must fill "
                                "it, the acknowledgement refers to it"))
        clock = Clock(_get(msh, 7), tz)
        visit = problems.check(_visit, msg, visit_fields) if reader.visit else _visit_if_any(msg, visit_fields)
        events = reader.read(Reading(msg, msh, drugs, clock, problems, visit_fields, links), visit[0] if visit else None)
        problems.raise_any()
        # After the ids: where the patient lies, when the message was written and who the patient is
        # are not facts of the administration: a transfer or a re-send does not make the same facts new events.
        extra = {"location": _location(msg), "recorded_at": _recorded(msg, clock), "patient_id": _patient(msg),
                 "encounter_id_field": visit[1] if visit else None}
        for event in events:
            event.update((k, v) for k, v in extra.items() if v and k not in event)
        events = checked(events, "hl7_bad_value")
        if links is not None:
            links.learn(events)
        return Translation(events=events, message_id=message_id, notes=notes)
    except Skip as skip:
        return Translation(events=[], message_id=message_id, notes=notes + [Note(skip.kind, skip.text)], skipped=True)
    except Reject as exc:
        return rejected(exc, message_id, notes)


# -- reading the message ---------------------------------------------------------------------

def _lines(raw: bytes | str, notes: list[Note] | None = None) -> list[str]:
    notes = notes if notes is not None else []
    if isinstance(raw, (bytes, bytearray, memoryview)):
        text, codec = _reading(bytes(raw), notes)
    else:
        text, codec = raw, "utf-8"
    _CODEC.set(codec)  # the hex escapes (\Xhh\) of this message's fields are in its character set
    text = text.strip("\x0b\x1c\r\n\t \ufeff")
    text, removed = clean_lines(text)  # text is data: no controls, no bidi overrides (feeds/text.py)
    if removed:
        notes.append(Note("text_controls", f"{removed} control or format character(s) (bidirectional overrides, "
                          "NUL, ESC, ...) removed from the message's text"))
    lines = [line for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if line.strip()]
    if not lines:
        raise Reject("hl7_parse", "empty message: expected segments starting with MSH")
    first = lines[0][:3]
    if first in ("FHS", "BHS"):
        raise Reject("hl7_unsupported", f"{first} batch: send one message per MLLP frame (no FHS/BHS batches)")
    if first != "MSH" or len(lines[0]) < 8:
        shown = f"a {first} segment" if first in _STANDARD_SEGMENTS else "something else"
        raise Reject("hl7_parse", f"the message must start with an MSH segment, it starts with {shown}")
    return lines


# MSH-18 (table 0211) -> Python codec. Shift-JIS is not in table 0211, but Japanese senders send it,
# under MSH-18 SHIFT-JIS or under ISO IR87 without the ISO 2022 escapes (read as cp932, the Windows
# Shift-JIS that Japanese systems write).
# Names compared without spaces, hyphens and underscores (real senders write ISOIR87, Shift_JIS).
_CHARSETS = {"ASCII": "ascii", "ISOIR6": "ascii", "8859/1": "latin-1", "ISOIR100": "latin-1",
             **{f"8859/{n}": f"iso8859_{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 15)},
             "UNICODEUTF8": "utf-8", "UTF8": "utf-8", "GB180302000": "gb18030", "BIG5": "big5",
             "KSX1001": "euc_kr", "ISOIR87": "iso2022_jp", "ISOIR159": "iso2022_jp", "ISO20221994": "iso2022_jp",
             "SHIFTJIS": "cp932", "SJIS": "cp932"}
_JAPANESE = ("ISOIR87", "ISOIR159", "ISO20221994", "SHIFTJIS", "SJIS")


def _reading(raw: bytes, notes: list[Note] | None = None) -> tuple[str, str]:
    """The message's text. MSH-18 (table 0211; its repetitions: the default set, then the sets switched
    to by ISO 2022 escapes) is honoured where it matters, and the bytes decide where it cannot:
    - 7-bit bytes read the same in every set: whatever MSH-18 says (`UNICODE`, a country code such
      as `CAN` sent in the wrong field), they are read as ASCII, noted when the label is not a set
      this validator reads;
    - bytes not valid in the set MSH-18 names (or in a set we do not know) that are valid UTF-8 are
      read as UTF-8, noted;
    - only when no reading works is the message refused (AR), naming MSH-18.
    ISO 2022-JP escapes are read as such (SS-MIX2); a Japanese label without them is Shift-JIS (as
    Japanese senders send). Without MSH-18: UTF-8, else ISO 8859-1, as older systems send."""
    notes = notes if notes is not None else []
    sets = _msh18(raw)
    unknown = [n for n, name in enumerate(sets, 1) if name and name not in _CHARSETS]
    japanese = any(name in _JAPANESE for name in sets)
    if b"\x1b$" in raw and (japanese or not sets or unknown):  # ISO 2022 escapes to JIS X 0208
        try:
            return raw.decode("iso2022_jp"), "iso2022_jp"
        except UnicodeDecodeError:
            pass
    if raw.isascii():
        if unknown:
            notes.append(Note("charset_7bit", f"MSH-18 repetition {unknown[0]} is not a character set of table 0211 "
                              "this validator reads; the message is 7-bit, which reads the same in every set: "
                              "read as ASCII"))
        named = next((name for name in sets if name and name in _CHARSETS), None)
        # the text is ASCII; its hex escapes (\Xhh\) are bytes of the set the label names, if it names one
        return raw.decode("ascii"), _CHARSETS[named] if named else "utf-8"
    if not sets:
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return raw.decode("latin-1"), "latin-1"  # ISO 8859-1, the usual MSH-18 of older systems
    if not unknown:
        if japanese:  # a Japanese label without ISO 2022 escapes: Shift-JIS, unless the bytes are UTF-8
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                codec, said = "cp932", "Shift-JIS"
            else:
                notes.append(Note("charset_utf8", "MSH-18 names a Japanese set but the message has no ISO 2022 "
                                  "escapes and its bytes are valid UTF-8: read as UTF-8"))
                return text, "utf-8"
        else:
            codec = _CHARSETS[next(name for name in sets if name)]
            said = codec
        try:
            return raw.decode(codec), codec
        except UnicodeDecodeError as exc:
            failed = f"the message has bytes that are not {said} (byte {exc.start + 1}), the character set MSH-18 names"
    else:
        failed = (f"MSH-18 repetition {unknown[0]} is not a character set this validator reads (send ASCII, 8859/1 "
                  "or another 8859 part, UNICODE UTF-8, ISO IR87, SHIFT-JIS, GB 18030-2000, BIG-5 or KS X 1001, "
                  "table 0211)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Reject("hl7_unsupported" if unknown else "hl7_parse",
                     f"{failed}, and they are not UTF-8 either: send MSH-18 with the set the message is written "
                     "in") from None
    notes.append(Note("charset_utf8", f"{failed}; they are valid UTF-8: read as UTF-8"))
    return text, "utf-8"


def _decode(raw: bytes, notes: list[Note] | None = None) -> str:
    """The message's text (see _reading)."""
    return _reading(raw, notes)[0]


decode = _decode  # for the listener's ACK, read in the sender's character set


def _msh_raw(raw: bytes | str) -> tuple[bytes, list[bytes]]:
    """The MSH segment's bytes and its fields (index n: MSH-n for n >= 2), read before decoding."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    first = bytes(raw).lstrip(b"\x0b\r\n\t \xef\xbb\xbf").split(b"\r", 1)[0].split(b"\n", 1)[0]
    if not first.startswith(b"MSH") or len(first) < 8:
        return b"", []
    return first, first.split(first[3:4])


def _msh_field(raw: bytes | str, n: int) -> str:
    """MSH-n's first component as text, read from the bytes ("" when absent): MSH-10 for a NAK even
    when the message's character set cannot be read."""
    first, fields = _msh_raw(raw)
    if len(fields) <= n - 1:
        return ""
    return fields[n - 1].split(first[4:5] or b"^")[0].decode("latin-1").strip()[:199]


def _msh18(raw: bytes) -> list[str]:
    """MSH-18's repetitions, upper case without spaces, hyphens, underscores ([] when absent), read from
    the bytes before decoding."""
    first, fields = _msh_raw(raw)
    if len(fields) < 18:
        return []
    value = fields[17].decode("ascii", "replace").upper()
    repetition = chr(first[5]) if len(first) > 5 else "~"
    sets = [re.sub(r"[\s_-]", "", rep) for rep in value.split(repetition)]
    return sets if any(sets) else []


def _check_segments(lines: list[str]) -> None:
    for n, line in enumerate(lines, 1):
        if not _SEGMENT_ID.match(line[:3]) or (len(line) > 3 and line[3] != lines[0][3]):
            raise Reject("hl7_parse", f"segment {n} does not start with a segment id (3 capital letters or digits) "
                         "and MSH-1's field separator: a line break inside a field? Escape it (\\.br\\) or remove "
                         "it in the sending system")


_ESCAPE = "\ue000"  # the escape character while python-hl7 parses: it never unescapes (unbounded), _get does


def _parse(lines: list[str]) -> hl7.Message:
    """python-hl7's parse, with the message's escape character (MSH-2) kept out of its sight in the
    fields: python-hl7 expands formatting escapes without a bound; _get reads them (feeds/text.py)."""
    first = lines[0]
    esc = first[6] if len(first) > 6 else "\\"
    hidden = [first[:8] + first[8:].replace(esc, _ESCAPE)] + [line.replace(esc, _ESCAPE) for line in lines[1:]]
    try:
        return hl7.parse("\r".join(hidden))
    except Exception:  # python-hl7 raises several types for broken headers
        raise Reject("hl7_parse", "the message cannot be parsed as HL7 v2: check MSH-1 and MSH-2 (the field "
                     "separator and encoding characters) and the segments' structure") from None


def _get(seg, field: int, comp: int = 1, rep: int = 1, sub: int = 1) -> str:
    """A field value (its escapes read, bounded: feeds/text.py) or "" when absent."""
    try:
        value = str(seg.extract_field(1, field, rep, comp, sub))
    except (IndexError, KeyError, TypeError, ValueError):
        return ""
    if _ESCAPE in value:
        _, field_sep, repetition, component, subcomponent = seg.separators  # python-hl7: segment first
        value = hl7_unescape(value, _ESCAPE, field_sep + component + repetition + subcomponent, _CODEC.get())
    return value.strip()


def _reps(seg, field: int) -> int:
    return len(seg[field]) if field < len(seg) else 0


def _name(seg) -> str:
    return str(seg[0][0])


def _segments(msg, name: str) -> list:
    return [seg for seg in msg if _name(seg) == name]


def _visit(msg, fields: tuple[str, ...]) -> tuple[str, str]:
    """(encounter id, the field it was read from): the first of `fields` that is filled."""
    for spec in fields:
        name, n = spec.split("-")
        segs = _segments(msg, name)
        value = _get(segs[0], int(n)) if segs else ""
        if value:
            return value, spec
    said = " and ".join(f"{f} ({_VISIT_FIELD_NAMES.get(f, 'visit field')})" for f in fields)
    raise Reject("hl7_missing_field", f"{said} {'is' if len(fields) == 1 else 'are'} empty: the visit number is the "
                 "encounter id (the fields read, in order, are set by IV_HL7_VISIT_FIELDS)")


def _visit_if_any(msg, fields: tuple[str, ...]) -> tuple[str, str] | None:
    try:
        return _visit(msg, fields)
    except Reject:
        return None


def _recorded(msg, clock: Clock) -> str | None:
    """When the sender recorded the event (contract v1.2 recorded_at): EVN-2, else MSH-7. It only
    orders a discharge and its cancellation, so an unreadable one is left out, not a rejection."""
    evn = _segments(msg, "EVN")
    for raw, where in ((_get(evn[0], 2) if evn else "", "EVN-2"), (clock.msh7, "MSH-7")):
        if raw:
            try:
                return rfc3339(clock.at(raw, where))
            except Reject:
                continue
    return None


def _patient(msg) -> str | None:
    """PID-3's first identifier as ID^^^AUTHORITY (contract v1.2 patient_id), for the billing
    interface only; left out when absent or longer than the contract's 128 characters."""
    pid = _segments(msg, "PID")
    ident = _get(pid[0], 3, 1) if pid else ""
    if not ident or _get(pid[0], 31).upper() == "Y" or ident.casefold() == "unknown patient":
        return None  # PID-31 "identity unknown": a pump that was never associated with a patient
    authority = _get(pid[0], 3, 4)
    value = f"{ident}^^^{authority}" if authority else ident
    return value if len(value) <= 128 else None


def _location(msg) -> dict | None:
    """PV1-3 assigned location: point of care (the unit), room, bed (contract v1.1 `location`)."""
    pv1 = _segments(msg, "PV1")
    unit = _get(pv1[0], 3, 1)[:64] if pv1 else ""
    if not unit:
        return None
    return {"unit": unit, "room": _get(pv1[0], 3, 2)[:64] or None, "bed": _get(pv1[0], 3, 3)[:64] or None}


def _event_id(readable: str) -> str:
    return readable if len(readable) <= 128 else "hl7:" + digest({"id": readable})


# -- RAS^O17 ---------------------------------------------------------------------------------

def _ras(msg, encounter_id: str | None, drugs: DrugClasses, clock: Clock, problems: Problems) -> list[dict]:
    encounter_id = encounter_id or "?"  # "?": the other fields are still checked
    orders = problems.check(_orders, msg) or []
    if not problems.found and not any(group.rxas for order in orders for group in order.groups):
        raise Reject("hl7_missing_field", "RAS^O17 without any RXA segment: nothing was administered")
    events: list[dict] = []
    unknown: list[tuple[str, dict, str]] = []
    seen: dict[str, str] = {}
    n = 0
    for order in orders:
        for group in order.groups:
            for rxa in group.rxas:
                n += 1
                admin = problems.check(_administration, encounter_id, order, rxa, group.rxr or order.rxr, n,
                                       clock, drugs, unknown)
                if admin is None:
                    continue
                admin_id, where, admin_events = admin
                if admin_id in seen:
                    problems.add(Reject("hl7_bad_value", f"{where} has the same administration id as "
                                        f"{seen[admin_id]} (ORC-3, RXA-2 and RXA-5's code alike): give each "
                                        "administration of the order its own RXA-2"))
                seen.setdefault(admin_id, where)
                events += admin_events
    if unknown:
        problems.add(_unknown_drugs(encounter_id, unknown))
    return events


def _unknown_drugs(encounter_id: str, unknown: list[tuple[str, dict, str]]) -> Reject:
    alerts = [unknown_drug_alert(encounter_id, admin_id, drug, where) for admin_id, drug, where in unknown]
    listed = "; ".join(f"{where} ({_drug_shown(drug)})" for _, drug, where in unknown)
    return Reject("unknown_drug", f"drug not in the drug-class table: {listed}. Pharmacy or IT must add it "
                  "(chemotherapy, therapeutic or hydration) to the drug-class table; then re-send the "
                  "message. No administration of this message was applied.", alerts)


@dataclass
class _Group:
    """RAS^O17's ADMINISTRATION group: one or more RXA, then the RXR that is the route of all of them."""
    rxas: list = field(default_factory=list)
    rxr: object = None


@dataclass
class _Order:
    """RAS^O17's ORDER group: the ORC, its TQ1s, the order's RXR (after RXO/RXE) and the
    administration groups."""
    orc: object
    tq1: list = field(default_factory=list)
    rxr: object = None
    groups: list[_Group] = field(default_factory=list)


def _orders(msg) -> list[_Order]:
    """The ORDER and ADMINISTRATION groups as HL7 v2.5 defines RAS^O17: {RXA}+ RXR. An RXR before
    the order's first RXA belongs to the order (RXO/RXE) and is the route of an administration group
    sent without one; an RXA after a group's RXR starts the next group."""
    orders: list[_Order] = []
    for seg in msg[1:]:
        name = _name(seg)
        if name == "ORC":
            orders.append(_Order(seg))
        elif name == "RXA":
            if not orders:
                raise Reject("hl7_missing_field", "RXA before any ORC: each administration must follow its "
                             "order's ORC segment (ORC-3 identifies the order)")
            order = orders[-1]
            if not order.groups or order.groups[-1].rxr is not None:
                order.groups.append(_Group())
            order.groups[-1].rxas.append(seg)
        elif name == "RXR" and orders:
            order = orders[-1]
            if order.groups and order.groups[-1].rxr is None:
                order.groups[-1].rxr = seg
            elif not order.groups and order.rxr is None:
                order.rxr = seg
        elif name == "TQ1" and orders:
            orders[-1].tq1.append(seg)
    return orders


def _administration(encounter_id: str, order: _Order, rxa, rxr, n: int, clock: Clock, drugs: DrugClasses,
                    unknown: list) -> tuple[str, str, list[dict]]:
    """One RXA -> (administration id, where it is in the message, its events); Reject with all of
    its problems."""
    problems = Problems()
    where = f"RXA #{n}"
    order_id = _get(order.orc, 3) or _get(order.orc, 2)
    if not order_id:
        problems.add(Reject("hl7_missing_field", f"{where}: ORC-3 (filler order number) and ORC-2 are empty; one "
                            "of them, with RXA-2, identifies the administration"))
    sub_id = _get(rxa, 2)
    if not sub_id:
        problems.add(Reject("hl7_missing_field", f"{where}: RXA-2 (administration sub-id counter) is empty; with "
                            "ORC-3 it pairs a start with its stop"))
    admin_id = f"{order_id}-{sub_id}-{_drug_key(rxa)}"  # not in `where`: an order number is not said back
    action = problems.check(_action, rxa, where)
    status = problems.check(_status, rxa, where)
    start_raw, end_raw = _get(rxa, 3), _get(rxa, 4)
    start = problems.check(clock.at, start_raw, f"{where}: RXA-3") if start_raw else None
    end = problems.check(clock.at, end_raw, f"{where}: RXA-4") if end_raw else None
    if action == "D" or status in ("NA", "RE"):
        problems.raise_any()
        return admin_id, where, [_void(encounter_id, admin_id, start or end, clock, where)]
    if not (start_raw or end_raw):
        problems.add(Reject("hl7_missing_field", f"{where}: RXA-3 (start) and RXA-4 (end) are both empty; "
                            "document at least the start time"))
    instant = start is not None and end == start
    started = None
    if start_raw:
        started = problems.check(_started, encounter_id, admin_id, order, rxa, rxr, start, instant, where, drugs,
                                 unknown)
    problems.raise_any()
    events = [started] if started else []
    if end is not None and status != "IP" and not (instant and started["method"] in ("push", "injection")):
        events.append({"event_id": _event_id(f"hl7:{admin_id}:stop:{rfc3339(end)}"),
                       "type": "administration.stopped", "encounter_id": encounter_id,
                       "occurred_at": rfc3339(end), "administration_id": admin_id})
    return admin_id, where, events


def _void(encounter_id: str, admin_id: str, when: dt.datetime | None, clock: Clock, where: str) -> dict:
    if when is None and clock.msh7:
        when = clock.at(clock.msh7, "MSH-7")
    if when is None:
        raise Reject("hl7_missing_field", f"{where}: no time for the void (RXA-3, RXA-4 and MSH-7 empty)")
    return {"event_id": _event_id(f"hl7:{admin_id}:void"), "type": "administration.voided",
            "encounter_id": encounter_id, "occurred_at": rfc3339(when), "administration_id": admin_id}


def _started(encounter_id: str, admin_id: str, order: _Order, rxa, rxr, start: dt.datetime | None,
             instant: bool, where: str, drugs: DrugClasses, unknown: list) -> dict:
    """The administration.started event of an RXA (start None: its RXA-3 was wrong, only the other
    fields are checked)."""
    problems = Problems()
    drug_read = problems.check(_drug, rxa, drugs, where)
    routed = problems.check(_route, rxr, where, instant)
    ordered = problems.check(_ordered_minutes, order.tq1, where)
    problems.raise_any()
    if start is None:
        return {}
    drug, category, drug_where = drug_read
    if category is None:
        unknown.append((admin_id, drug, drug_where))
        category = "therapeutic"  # placeholder: the message is rejected before this event is used
    route, method, site, device = routed
    started = {"event_id": "", "type": "administration.started", "encounter_id": encounter_id,
               "occurred_at": rfc3339(start), "administration_id": admin_id, "drug": drug,
               "category": category, "route": route, "method": method}
    if site:
        started["access_site"] = site
    purpose = _purpose(rxa)
    if purpose:
        started["purpose"] = purpose
    if ordered is not None:
        started["ordered_duration_minutes"] = ordered
    if device:
        started["device"] = device
    started["event_id"] = _event_id(f"hl7:{admin_id}:start:{started['occurred_at']}:{content(started)}")
    placer = _get(order.orc, 2)
    if placer and len(placer) <= 128:  # after the id: the events sent before v1.2 keep theirs
        started["order_id"] = placer
    return started


def _action(rxa, where: str) -> str:
    action = _get(rxa, 21).upper() or "A"
    if action not in _ACTIONS:
        raise Reject("hl7_bad_value", f"{where}: RXA-21 action code is not one of A (add), U (update), "
                     "X (no change), D (delete), table 0323")
    return action


def _status(rxa, where: str) -> str:
    raw = _get(rxa, 20) or "CP"
    status = _STATUSES.get(re.sub(r"[\s_-]+", " ", raw.upper()).strip())
    if status is None:
        raise Reject("hl7_bad_value", f"{where}: RXA-20 completion status is not known; send CP (complete), "
                     "PA (partial), IP (in progress), NA (not administered) or RE (refused), table 0322")
    return status


def _drug_key(rxa) -> str:
    """The part of an administration id that tells two drugs of one order and RXA-2 apart (a bag and
    its additive, two products of one group): RXA-5's code, else its text, made id-safe."""
    code = _get(rxa, 5, 1) or _get(rxa, 5, 4)
    key = re.sub(r"[^A-Za-z0-9.-]", "", code)[:24]
    if key and key == code:
        return key
    text = code or _get(rxa, 5, 2) or _get(rxa, 5, 5)
    return digest({"drug": text.lower()}) if text else "nodrug"


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
    ingredient = drugs.ingredient(code, system, text) or drugs.ingredient(alt_code, alt_system, alt_text)
    if ingredient:
        drug["ingredient"] = ingredient  # the substance: two products of it are one drug (coding-rules §3)
    return drug, category, f"{where} RXA-5"


def _route(rxr, where: str, instant: bool) -> tuple[str, str, str | None, str | None]:
    if rxr is None:
        raise Reject("hl7_missing_field", f"{where}: no RXR segment; RXR-1 (route: IV, IA, SC or IM) is required")
    raw_route = _get(rxr, 1, 1) or _get(rxr, 1, 2)
    if not raw_route:
        raise Reject("hl7_missing_field", f"{where}: RXR-1 (route) is empty; send IV, IA, SC or IM (table 0162)")
    found = _ROUTES.get(raw_route.upper()) or _ROUTES.get(_get(rxr, 1, 2).upper())
    if found is None:
        raise Reject("hl7_bad_value", f"{where}: RXR-1 route{_known(raw_route, ROUTES_0162)} is not coded by this "
                     "validator; "
                     "supported: IV, IA, SC, IM (table 0162). Filter other routes out in the interface engine")
    route, method = found
    raw_method = _get(rxr, 4, 1) or _get(rxr, 4, 2)
    if raw_method:
        method = _METHODS.get(raw_method.upper()) or _METHODS.get(_get(rxr, 4, 2).upper())
        if method is None:
            raise Reject("hl7_bad_value", f"{where}: RXR-4 administration method{_known(raw_method, METHODS_0165)} "
                         "is not known; "
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
            raise Reject("hl7_bad_value", f"{where}: TQ1-13 occurrence duration is not a positive number of "
                         "min or h, e.g. 30^min")
        minutes = round(value * factor)
        if not 1 <= minutes <= 10080:
            raise Reject("hl7_bad_value", f"{where}: TQ1-13 occurrence duration is outside 1 min to 7 days")
        return minutes
    return None


# -- ADT -------------------------------------------------------------------------------------

def _discharge(msg, encounter_id: str | None, drugs: DrugClasses, clock: Clock, problems: Problems) -> list[dict]:
    pv1 = _segments(msg, "PV1")
    occurred_at = problems.check(_discharge_time, msg, clock)
    patient_class = problems.check(_patient_class, pv1[0]) if pv1 else None
    if None in (encounter_id, occurred_at, patient_class):
        return []
    event = {"event_id": "", "type": "encounter.discharged", "encounter_id": encounter_id,
             "occurred_at": occurred_at, "patient_class": patient_class, "billing": "facility"}
    # When it was recorded is part of a discharge's identity: a re-discharge at the same clinical time
    # after a cancel is a new fact (a replayed message keeps its EVN-2 and stays a duplicate).
    recorded = _recorded(msg, clock) or ""
    event["event_id"] = _event_id(f"hl7:{encounter_id}:discharged:{occurred_at}:{recorded}:{content(event)}")
    return [event]


def _discharge_time(msg, clock: Clock) -> str:
    pv1, evn = _segments(msg, "PV1"), _segments(msg, "EVN")
    raw, where = (_get(pv1[0], 45) if pv1 else ""), "PV1-45"
    if not raw and evn:
        raw, where = _get(evn[0], 6), "EVN-6"
    if not raw:
        raise Reject("hl7_missing_field", "PV1-45 (discharge date/time) is empty (and no EVN-6): the discharge "
                     "time is required")
    return rfc3339(clock.at(raw, where))


def _patient_class(pv1) -> str:
    code = _get(pv1, 2).upper()
    if not code:
        raise Reject("hl7_missing_field", "PV1-2 (patient class) is empty; send O, E, I, R or OBS")
    patient_class = _CLASSES.get(code)
    if code == "O" and _get(pv1, 18).upper() in ("OBS", "OBSERVATION"):
        patient_class = "observation"
    if patient_class is None:
        raise Reject("hl7_bad_value", f"PV1-2 patient class{_known(code, CLASSES_0004)} is not mapped: send O (outpatient), "
                     "R (recurring, outpatient), E (emergency), I (inpatient) or OBS (observation; or O with "
                     "PV1-18 OBS); map other classes in the interface engine")
    return patient_class


def _cancel(msg, encounter_id: str | None, drugs: DrugClasses, clock: Clock, problems: Problems) -> list[dict]:
    occurred_at = problems.check(_cancel_time, msg, clock)
    if None in (encounter_id, occurred_at):
        return []
    return [{"event_id": _event_id(f"hl7:{encounter_id}:discharge_cancelled:{occurred_at}"),
             "type": "encounter.discharge_cancelled", "encounter_id": encounter_id, "occurred_at": occurred_at}]


def _cancel_time(msg, clock: Clock) -> str:
    evn = _segments(msg, "EVN")
    raw, where = (_get(evn[0], 2), "EVN-2") if evn else ("", "EVN-2")
    if not raw:
        raw, where = clock.msh7, "MSH-7"
    if not raw:
        raise Reject("hl7_missing_field", "EVN-2 and MSH-7 are empty: the time of the cancellation is required")
    return rfc3339(clock.at(raw, where))


register("RAS^O17", lambda r, visit: _ras(r.msg, visit, r.drugs, r.clock, r.problems))
register("ADT^A03", lambda r, visit: _discharge(r.msg, visit, r.drugs, r.clock, r.problems))
register("ADT^A13", lambda r, visit: _cancel(r.msg, visit, r.drugs, r.clock, r.problems))
