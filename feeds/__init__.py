"""Feeds hospitals actually have: HL7 v2 and FHIR R4 in, contract-v1 events out; charges out as
FHIR ChargeItem. Pure functions from bytes/dicts to dicts: no Kafka, no sockets, no asyncio (the
listeners live in streams/)."""
from feeds.drugs import DrugClasses, DrugClassError
from feeds.fhir import charge_item, translate_fhir
from feeds.hl7v2 import translate_hl7
from feeds import pcd  # noqa: F401 - registers the infusion pumps' HL7 message kinds
from feeds.pump_link import PumpLinks
from feeds.translation import Translation

__all__ = ["DrugClasses", "DrugClassError", "PumpLinks", "Translation", "charge_item", "translate_fhir", "translate_hl7"]
