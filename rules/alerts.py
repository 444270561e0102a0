"""The alert catalog (coding-rules §5 and §7): severity and what the reader should do."""
from __future__ import annotations

from dataclasses import dataclass

SEVERITY = {
    "STOP_TIME_MISSING": "hard",
    "START_TIME_MISSING": "hard",
    "STOP_BEFORE_START": "hard",
    "STOP_TIME_OVERDUE": "warn",
    "METHOD_TIME_CONFLICT": "warn",
    "HYDRATION_UNDER_31_MIN": "info",
    "UNSUPPORTED_COMBINATION": "warn",
    "INPATIENT_BUNDLED": "info",
    "PREBILL_TWO_INITIAL_CODES": "hard",
    "PREBILL_HYDRATION_AS_INITIAL": "hard",
    "PREBILL_PUSH_OVER_15_MIN": "hard",
    "PREBILL_ADDITIONAL_HOUR_UNSUPPORTED": "hard",
    "PREBILL_MISSED_CHARGE": "warn",
    "PREBILL_CODE_MISMATCH": "warn",
    # National edits (coding-rules §7, rules/edits.py): the payer denies these lines as billed.
    "MUE_EXCEEDED": "hard",
    "NCCI_PTP_CONFLICT": "hard",
    # Raised by `billing send` (gateways/billing.py): a charge the billing system refused, or one the
    # chargemaster cannot post. Either way it is not on the claim until coding acts.
    "BILLING_REJECTED": "hard",
    "BILLING_HELD": "hard",
    # Raised by the feeds, not the engine: a FHIR IV/IA administration whose method (push or
    # infusion) cannot be told is rejected, and this says what nursing must document.
    "METHOD_MISSING": "hard",
    "DRUG_CLASS_UNKNOWN": "hard",
    # Infusion pump evidence (coding-rules §9).
    "PUMP_STOPPED_UNDOCUMENTED": "hard",
    "PUMP_INFUSION_UNDOCUMENTED": "hard",
    "PUMP_TIME_MISMATCH": "warn",
}


# Who acts on an alert (contract v1.1, v1.2): a nurse fixes documentation at the bedside; coding and
# revenue integrity handle pre-bill findings and coding notes; integration (pharmacy, the interface
# team) what only the drug table or a feed's configuration can fix. Unknown codes default to coding.
NURSING = frozenset({"STOP_TIME_MISSING", "START_TIME_MISSING", "STOP_BEFORE_START", "STOP_TIME_OVERDUE",
                     "METHOD_TIME_CONFLICT", "METHOD_MISSING", "PUMP_STOPPED_UNDOCUMENTED",
                     "PUMP_INFUSION_UNDOCUMENTED"})
INTEGRATION = frozenset({"DRUG_CLASS_UNKNOWN"})


def audience(code: str) -> str:
    return "nursing" if code in NURSING else "integration" if code in INTEGRATION else "coding"


def audience_of(alert: dict) -> str:
    """An alert record's audience; a v1 record has none, so it is derived from the code."""
    return alert.get("audience") or audience(str(alert.get("code", "")))


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """An alert the engine wants standing. `key` tells two alerts of one code apart."""

    code: str
    administration_id: str | None
    message: str
    key: str = ""

    @property
    def severity(self) -> str:
        return SEVERITY[self.code]

    @property
    def identity(self) -> str:
        """Two alerts are the same only if they say the same thing: when the documentation
        changes what an alert says, the old one is resolved and the corrected one raised."""
        return f"{self.code}|{self.administration_id or ''}|{self.key}|{self.message}"
