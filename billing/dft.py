"""Charge records (contract §3.1) -> HL7 v2.5.1 DFT^P03 (Post Detail Financial Transaction), what
hospital billing systems take over MLLP; pure, beside the feeds' translations (docs/contract.md §8).

One message per charge record, one FT1 in it: a post is a charge (FT1-6 `CG`), a reversal a credit
(`CD`) with the same positive quantity, naming the FT1-2 of the post it reverses in FT1-31 (a setting:
`Interface.reversal_reference`). One ACK then answers exactly one record: the live sender commits
a record's offset on its AA, dead-letters exactly that record on AE/AR, and a reversal never
overtakes its post.

    MSH|^~\\&|INFUSION-VALIDATOR|<facility>|BILLING|<facility>|<now>||DFT^P03^DFT_P03|IV<FT1-2>|P|2.5.1
    EVN|P03|<now>
    PID|1||<patient_id>|||...|<encounter_id in PID-18>
    PV1|1|<O, E or I>|...|<encounter_id in PV1-19>
    FT1|1|<FT1-2>||<service date>||CG|<charge code>^<description>|||<units>|||<department>|...|<cpt>^^C4|<modifiers>

* FT1-2 (the receiver's duplicate check; ST, 12 characters in v2.5.1) = `transaction_id(charge_id)`:
  60 bits of BLAKE2b of the charge_id in Crockford base32, 12 upper-case characters with no HL7
  delimiter. Deterministic: a resend, a replay, a restart derive the same; a credit's FT1-31 is
  `transaction_id(reverses)`, computed without any lookup. Collision odds (`collision_probability`,
  docs/contract.md §8): below one in a million up to about 1.5 million ids in the receiver's
  duplicate-check scope, below one in a thousand up to about 48 million.
* MSH-10 = `IV` + FT1-2: the same on a resend, so interface engines that de-duplicate on MSH-10
  recognise it too; the ACK's MSA-2 must echo it.
* PID-3 = `patient_id` as carried (`ID^^^AUTHORITY`), each component escaped; empty when the record has
  none. PID-5 (the name) is empty: the product has no names, by design. PID-18 and PV1-19 =
  `encounter_id` (billing systems key charges on either).
* PV1-2 from `patient_class` (contract v1.3): outpatient and observation `O` (HL7 table 0004 has no
  observation class), emergency `E`, inpatient `I`; `U` (unknown) on a record from before v1.3.
* FT1-7 = the chargemaster row's `charge_code^description`, FT1-13 its `department`; FT1-25 =
  `cpt^^C4` (CPT-4), FT1-26 one repetition per modifier (`59^^CPTM`, `XU^^HCPCS`). Not sent: amounts
  (the billing system prices from its own CDM, as HL7 allows), the revenue code (no FT1 field before
  v2.6), diagnoses, providers.
* A CPT the chargemaster does not map, or maps ambiguously, is not sent: `Held`, with the reason. A
  reversal of a post that was held is held too (the same CPT).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from dataclasses import dataclass

from billing.chargemaster import CdmRow, Chargemaster

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # base32 without I, L, O, U: no HL7 delimiter, no case
PATIENT_CLASS = {"outpatient": "O", "observation": "O", "emergency": "E", "inpatient": "I"}
VERSION = "2.5.1"
FT1_FIELDS = 31  # FT1 fields in v2.5.1
_USED = {1, 2, 4, 6, 7, 10, 13, 25, 26}  # FT1 fields this translation fills
_FIELDS = {"charge_id": str, "action": str, "encounter_id": str, "cpt": str, "units": int, "service_date": str}


class NotACharge(ValueError):
    """A record that is not a usable charge record (contract §3.1); the message says which field."""


def transaction_id(charge_id: str) -> str:
    """FT1-2 for a charge_id: the top 60 bits of an 8-byte BLAKE2b (personalised `ft1-2`, so it is not a
    slice of the charge_id's own hash) in 12 Crockford base32 characters."""
    digest = hashlib.blake2b(charge_id.encode("utf-8"), digest_size=8, person=b"ft1-2".ljust(16, b"\0")).digest()
    value = int.from_bytes(digest, "big") >> 4
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(55, -1, -5))


def collision_probability(n: int, bits: int = 60) -> float:
    """Birthday bound: the chance that n uniformly random ids of `bits` bits hold a repeat."""
    if n < 2:
        return 0.0
    return -math.expm1(-n * (n - 1) / (2.0 * 2.0 ** bits))


@dataclass(frozen=True)
class Interface:
    """The DFT's identities (MSH-3..6, MSH-11) and where a credit names the post it reverses."""

    sending_application: str = "INFUSION-VALIDATOR"
    sending_facility: str = ""
    receiving_application: str = "BILLING"
    receiving_facility: str = ""
    processing_id: str = "P"  # P production, T test
    reversal_reference: int | None = 31  # the FT1 field of the reversed post's FT1-2; None: not sent

    def __post_init__(self) -> None:
        ref = self.reversal_reference
        if ref is not None and not (3 <= ref <= FT1_FIELDS and ref not in _USED):
            raise ValueError(f"FT1-{ref} cannot carry the reversed charge's FT1-2: give an FT1 field from 3 to "
                             f"{FT1_FIELDS} this interface leaves empty (default FT1-31), or none")
        if self.processing_id not in ("P", "T", "D"):
            raise ValueError(f"processing id {self.processing_id!r}: give P (production), T (test) or D (debugging)")


@dataclass(frozen=True)
class Dft:
    record: dict
    message: bytes  # segments each ended by CR
    control_id: str  # MSH-10
    transaction_id: str  # FT1-2


@dataclass(frozen=True)
class Held:
    record: dict
    reason: str


def check(record: object) -> dict:
    """The record if it is a charge record this translation can use, else NotACharge."""
    if not isinstance(record, dict) or record.get("kind") != "charge":
        raise NotACharge("not a charge record (kind is not \"charge\")")
    for name, kind in _FIELDS.items():
        value = record.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value):
            raise NotACharge(f"charge record without a usable {name}")
    if record["action"] not in ("post", "reverse"):
        raise NotACharge(f"action {record['action']!r}: post or reverse")
    if record["action"] == "reverse" and not isinstance(record.get("reverses"), str):
        raise NotACharge("a reversal that names no charge_id in reverses")
    if record["units"] < 1 or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", record["service_date"]):
        raise NotACharge("units below 1, or service_date not YYYY-MM-DD")
    return record


def translate(record: dict, cdm: Chargemaster, interface: Interface, now: dt.datetime) -> Dft | Held:
    """One charge record's DFT^P03, or why it is held. `now` (aware) stamps MSH-7 and EVN-2."""
    record = check(record)
    row = cdm.lookup(record["cpt"])
    if isinstance(row, str):
        what = "reversal" if record["action"] == "reverse" else "charge"
        return Held(record, f"{what} not sent: {row}")
    tid = transaction_id(record["charge_id"])
    control = "IV" + tid
    stamp = now.strftime("%Y%m%d%H%M%S%z")
    header = {3: interface.sending_application, 4: interface.sending_facility, 5: interface.receiving_application,
              6: interface.receiving_facility}
    msh = "MSH|^~\\&|" + "|".join(_escape(header[n]) for n in (3, 4, 5, 6)) + \
        f"|{stamp}||DFT^P03^DFT_P03|{control}|{interface.processing_id}|{VERSION}"
    encounter = _escape(record["encounter_id"])
    segments = [msh, f"EVN|P03|{stamp}",
                _segment("PID", {1: "1", 3: _cx(record.get("patient_id")), 18: encounter}),
                _segment("PV1", {1: "1", 2: PATIENT_CLASS.get(str(record.get("patient_class")), "U"), 19: encounter}),
                _segment("FT1", _ft1(record, row, tid, interface))]
    text = "\r".join(segments) + "\r"
    if not text.isascii():
        segments[0] += "||||||UNICODE UTF-8"  # MSH-18: a description or an id that is not ASCII
        text = "\r".join(segments) + "\r"
    return Dft(record, text.encode("utf-8"), control, tid)


def _ft1(record: dict, row: CdmRow, tid: str, interface: Interface) -> dict[int, str]:
    fields = {1: "1", 2: tid, 4: record["service_date"].replace("-", ""),
              6: "CD" if record["action"] == "reverse" else "CG",
              7: f"{_escape(row.charge_code)}^{_escape(row.description)}", 10: str(record["units"]),
              13: _escape(row.department), 25: f"{_escape(record['cpt'])}^^C4",
              26: "~".join(f"{_escape(m)}^^{'CPTM' if m.isdigit() else 'HCPCS'}"
                           for m in record.get("modifiers") or () if isinstance(m, str) and m)}
    if record["action"] == "reverse" and interface.reversal_reference is not None:
        fields[interface.reversal_reference] = transaction_id(record["reverses"])
    return fields


def _segment(name: str, fields: dict[int, str]) -> str:
    last = max(n for n, v in fields.items() if v) if any(fields.values()) else 0
    return name + "".join("|" + fields.get(n, "") for n in range(1, last + 1))


def _cx(patient_id: object) -> str:
    """PID-3 from `patient_id` as the feeds carry it (ID^^^AUTHORITY): its components kept, each escaped."""
    if not isinstance(patient_id, str) or not patient_id:
        return ""
    return "^".join(_escape(part) for part in patient_id.split("^"))


def _escape(text: str) -> str:
    """HL7 escape sequences for the delimiters, so no value can break the message's structure."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    return out.replace("&", "\\T\\").replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")
