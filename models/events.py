"""Input events of contract v1.

Strict where a producer can get it wrong (timestamps must carry a UTC offset, enums are closed,
required fields are required); lenient where the contract says so (extra fields are ignored, a
schema version field is allowed).
"""
from __future__ import annotations

import datetime as dt
import time
from functools import cached_property
from typing import Annotated, Literal, Union

from models.errors import BadEvent, category, describe
from pydantic_core import TzInfo
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=512)]
Category = Literal["chemotherapy", "therapeutic", "hydration"]
Route = Literal["IV", "IA", "SC", "IM"]
Method = Literal["infusion", "push", "injection"]
Purpose = Literal["treatment", "kvo", "flush", "carrier"]
Device = Literal["pump", "gravity", "syringe", "none"]
PatientClass = Literal["outpatient", "emergency", "observation", "inpatient"]
Billing = Literal["facility", "professional"]
DeliveryStatus = Literal["started", "stopped", "completed"]

# Clinical times outside this window are typos (2062 for 2026), not events to code. Future is
# judged against the wall clock, with slack for senders whose clocks drift.
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc).timestamp()
FUTURE_SLACK = 2 * 86400  # seconds


class _cached(cached_property):
    """functools.cached_property without the lock Python 3.11 takes on every first access (about a
    microsecond per event, twice per event; 3.12 dropped it). Pydantic still sees a cached_property."""

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__[self.attrname] = self.func(instance)
        return value


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
# Fixed-offset tzinfo -> its UTC offset in whole seconds. Only fixed offsets are cached (JSON gives
# pydantic-core's TzInfo, which compares and hashes by offset); a zone such as ZoneInfo is asked each time.
_OFFSETS: dict = {}
_FIXED = (type(TzInfo(0)), dt.timezone)


def _offset_seconds(at: dt.datetime) -> int:
    tz = at.tzinfo
    seconds = _OFFSETS.get(tz) if type(tz) in _FIXED else None
    if seconds is None:
        seconds = int(at.utcoffset().total_seconds())
        if type(tz) in _FIXED and len(_OFFSETS) < 4096:
            _OFFSETS[tz] = seconds
    return seconds


class Location(BaseModel):
    """Where the patient is (v1.1, optional): HL7 PV1-3, FHIR Encounter.location. A nursing worklist
    groups by `unit`."""
    model_config = ConfigDict(extra="ignore", frozen=True)

    unit: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    room: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    bed: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, ignored_types=(_cached,))

    event_id: Id
    encounter_id: Id
    occurred_at: AwareDatetime
    schema_version: int | str | None = None
    location: Location | None = None  # v1.1: the latest one seen is the encounter's
    # v1.2: when the source system recorded it (HL7 EVN-2, else MSH-7; FHIR meta.lastUpdated). It
    # orders a discharge and its cancellation (a re-discharge keyed after a cancel is clinically earlier).
    recorded_at: AwareDatetime | None = None
    # v1.2: the facility's patient identifier, for the billing interface only: carried into charge
    # records, never into logs, metric labels, alert messages, ACKs or rejection reasons.
    patient_id: Id | None = None

    @_cached
    def epoch(self) -> int:
        """occurred_at in whole epoch seconds (floored, as int(timestamp()) for times after 1970).

        Spelled out from the fields and the cached offset: datetime.timestamp() asks pydantic-core's
        TzInfo for the offset through Python each time (about 0.8 us, a few percent of the batch)."""
        at = self.occurred_at
        return ((at.toordinal() - _EPOCH_ORDINAL) * 86400 + at.hour * 3600 + at.minute * 60 + at.second
                - _offset_seconds(at))

    @_cached
    def recorded_epoch(self) -> int | None:
        """recorded_at in whole epoch seconds, None when not sent."""
        at = self.recorded_at
        return None if at is None else int(at.timestamp() // 1)

    @property
    def minute(self) -> int:
        """occurred_at in epoch minutes: the engine counts time in whole minutes."""
        return self.epoch // 60

    @_cached
    def offset(self) -> int:
        """UTC offset of occurred_at in minutes: it decides local service dates."""
        return _offset_seconds(self.occurred_at) // 60


class Drug(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
    code: Id | None = None
    system: Text | None = None
    # v1.2: the substance (an RxNorm ingredient CUI or name), when the drug table says: two products
    # of one substance are the same drug (coding-rules §3). The feeds fill it from the drug table.
    ingredient: Id | None = None


class AdministrationStarted(_Event):
    type: Literal["administration.started"]
    administration_id: Id
    drug: Drug
    category: Category
    route: Route
    method: Method
    access_site: Id | None = None
    separate_access_reason: Text | None = None
    container_id: Id | None = None
    purpose: Purpose = "treatment"
    ordered_duration_minutes: Annotated[int, Field(gt=0, le=10080)] | None = None
    device: Device | None = None
    primary_reason: bool | None = None
    order_id: Id | None = None  # v1.2: the placer order number (HL7 ORC-2, FHIR request): links pump events


class AdministrationStopped(_Event):
    type: Literal["administration.stopped"]
    administration_id: Id


class AdministrationVoided(_Event):
    type: Literal["administration.voided"]
    administration_id: Id


class DeviceDelivery(_Event):
    """v1.2: what an infusion pump reported (IHE PCD-10 / PCD-01): evidence, never documentation. It
    never creates, changes or stops an administration and is never billed by itself."""
    type: Literal["device.delivery"]
    device_id: Id
    channel: Id | None = None
    status: DeliveryStatus
    order_id: Id | None = None
    drug: Drug | None = None
    rate_ml_h: Annotated[float, Field(ge=0, le=10000)] | None = None
    volume_ml: Annotated[float, Field(ge=0, le=100000)] | None = None


class EncounterDischarged(_Event):
    type: Literal["encounter.discharged"]
    patient_class: PatientClass = "outpatient"
    billing: Billing = "facility"


class DischargeCancelled(_Event):
    type: Literal["encounter.discharge_cancelled"]


class SubmittedLine(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    cpt: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9A-Z]{5}$")]
    units: Annotated[int, Field(ge=1, le=999)]
    modifiers: Annotated[list[Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{2}$")]], Field(max_length=4)] = []
    service_date: dt.date | None = None


class ChargesSubmitted(_Event):
    type: Literal["charges.submitted"]
    lines: Annotated[list[SubmittedLine], Field(max_length=200)]


Event = Annotated[
    Union[
        AdministrationStarted,
        AdministrationStopped,
        AdministrationVoided,
        DeviceDelivery,
        EncounterDischarged,
        DischargeCancelled,
        ChargesSubmitted,
    ],
    Field(discriminator="type"),
]
EVENT_TYPES = (
    "administration.started", "administration.stopped", "administration.voided", "device.delivery",
    "encounter.discharged", "encounter.discharge_cancelled", "charges.submitted",
)

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
# The core validator, called directly: TypeAdapter.validate_json's keyword plumbing costs ~15% of a
# parse, and parse_event passes none of its options.
_validate_json = _ADAPTER.validator.validate_json


def parse_event(raw: bytes | str, now: dt.datetime | None = None) -> Event:
    """Parse one JSON event; raises BadEvent with a reason a producer team can act on."""
    try:
        event = _validate_json(raw)
    except ValueError as exc:
        raise BadEvent(describe(exc), category(exc)) from None
    latest = (now.timestamp() if now else time.time()) + FUTURE_SLACK
    if not EARLIEST <= event.epoch <= latest:
        raise BadEvent(
            f"occurred_at: {event.occurred_at.isoformat()} is before 2000 or in the future; "
            "check the clock of the sending system", "timestamp",
        )
    return event


