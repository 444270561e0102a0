"""Event and output schemas of contract v1 (docs/contract.md). No Kafka here."""
from models.events import (
    AdministrationStarted,
    AdministrationStopped,
    AdministrationVoided,
    ChargesSubmitted,
    DischargeCancelled,
    Drug,
    EncounterDischarged,
    Event,
    SubmittedLine,
    parse_event,
)
from models.outputs import Alert, ChargeLine, DeadLetter

__all__ = [
    "AdministrationStarted", "AdministrationStopped", "AdministrationVoided", "ChargesSubmitted",
    "DischargeCancelled", "Drug", "EncounterDischarged", "Event", "SubmittedLine", "parse_event",
    "Alert", "ChargeLine", "DeadLetter",
]
