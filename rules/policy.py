"""Coding policy: every default of coding-rules.md, each with its alternative as a switch.

A hospital or payer profile is a TOML file of these fields (see `load_policy`), not a code change.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rules.edits import NationalEdits

CHOICES = {
    # Infusion without a stop at discharge: code it as a push (spec default) or not at all.
    "missing_stop_fallback": ("push", "none"),
    # Tie within a hierarchy rank: longest first (spec default) or earliest start first.
    "initial_tiebreak": ("longest", "earliest_start"),
    # Modifier on every line of a separate-access group (CMS transmittal 2386: XU; older: 59, XS).
    "second_site_modifier": ("XU", "59", "XS"),
    # Hydration runs: one union of all runs (CGS/Coding Clinic 1Q2012), or only runs that reach
    # 31 net minutes on their own count.
    "hydration_combining": ("union", "per_run"),
    # A later infusion of a drug already infused: add-on hours (spec) or a new sequential infusion.
    "same_drug_repeat": ("additional_hour", "sequential"),
    # Infusion pumps' stop times (coding-rules §9): evidence only (spec default), or a stand-in for a
    # missing documented stop, marked incomplete documentation.
    "pump_stop_times": ("evidence", "fallback"),
}


class PolicyError(ValueError):
    """A policy file that cannot be used; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Policy:
    missing_stop_fallback: str = "push"
    initial_tiebreak: str = "longest"
    second_site_modifier: str = "XU"
    hydration_combining: str = "union"
    same_drug_repeat: str = "additional_hour"
    # 96376 only when more than this many minutes after the last reported push of the drug.
    repeat_push_gap_minutes: int = 30
    # STOP_TIME_OVERDUE: ordered duration + grace, or a fixed limit when there is no order.
    overdue_grace_minutes: int = 30
    overdue_without_order_minutes: int = 240
    pump_stop_times: str = "evidence"
    # Pump evidence (coding-rules §9): a delivery matches an administration started this close when
    # they share no order id; a pump stop unanswered by a charted stop this long is an alert; charted
    # and pump times further apart than this are a mismatch.
    pump_match_minutes: int = 30
    pump_undocumented_minutes: int = 15
    pump_mismatch_minutes: int = 15
    # Payer profiles may replace a code, e.g. {"initial_infusion.therapeutic.IA": "96365"}.
    codes: dict[str, str] = field(default_factory=dict)
    # CMS's national edits (coding-rules §7), loaded from the hospital's files (`code --mue/--ptp`,
    # IV_MUE_FILE/IV_PTP_FILES), not from the TOML file; None: not checked.
    edits: NationalEdits | None = None

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise PolicyError(f"{name} = {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        for name in ("repeat_push_gap_minutes", "overdue_grace_minutes", "overdue_without_order_minutes",
                     "pump_match_minutes", "pump_undocumented_minutes", "pump_mismatch_minutes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise PolicyError(f"{name} = {value!r}: give a whole number of minutes, 0 or more")


DEFAULT = Policy()


def load_policy(path: str | Path | None) -> Policy:
    """Read a TOML policy file; unknown keys and bad values fail with a clear message."""
    if path is None:
        return DEFAULT
    try:
        data: dict[str, Any] = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path} is not valid TOML: {exc}") from None
    known = {f.name for f in dataclasses.fields(Policy)} - {"edits"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PolicyError(f"policy file {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return Policy(**data)
