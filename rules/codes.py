"""CPT codes and hierarchy ranks as data.

Keys are `role.category.route`, looked up from the most to the least specific, so a payer profile
overrides one cell (Policy.codes) without a new branch. Descriptor texts are AMA copyright: the
comments paraphrase. Sources: CMS IOM 100-04 ch.4 §230.2; Noridian JE A drug administration.
"""
from __future__ import annotations

from types import MappingProxyType

CODES = MappingProxyType({
    # First infusion of a group, and each hour past the first (over 30 min into the hour).
    "initial_infusion.chemotherapy": "96413",
    "initial_infusion.chemotherapy.IA": "96422",
    "initial_infusion.therapeutic": "96365",
    "additional_hour.chemotherapy": "96415",
    "additional_hour.chemotherapy.IA": "96423",
    "additional_hour.therapeutic": "96366",
    # Later infusion of a new drug, and an infusion running alongside another (96368 once).
    "sequential.chemotherapy": "96417",
    "sequential.therapeutic": "96367",
    "concurrent.therapeutic": "96368",
    # Pushes (IV push: 15 minutes or less).
    "initial_push.chemotherapy": "96409",
    "initial_push.chemotherapy.IA": "96420",
    "initial_push.therapeutic": "96374",
    "initial_push.therapeutic.IA": "96373",
    "subsequent_push.chemotherapy": "96411",
    "subsequent_push.therapeutic": "96375",
    "repeat_push.therapeutic": "96376",  # facility only, same drug > 30 min later
    # Hydration (prepackaged fluid and electrolytes).
    "hydration_initial": "96360",
    "hydration_additional": "96361",
    # Subcutaneous infusion: first hour, each further hour, each further site.
    "sc_infusion_initial": "96369",
    "sc_infusion_additional": "96370",
    "sc_infusion_site": "96371",
    # Initiation of a prolonged chemotherapy infusion (more than 8 h) on a portable or implantable pump.
    "prolonged_pump.chemotherapy": "96416",
    # Stand-alone SC/IM injections.
    "injection.chemotherapy": "96401",
    "injection.therapeutic": "96372",
    "injection.hydration": "96372",
})

# Facility hierarchy (CMS via Noridian JE A): lower rank is reported as the initial service.
RANKS = MappingProxyType({
    ("chemotherapy", "infusion"): 1,
    ("chemotherapy", "push"): 2,
    ("therapeutic", "infusion"): 3,
    ("therapeutic", "push"): 4,
    ("hydration", "infusion"): 5,
})


class CodeTable:
    """Codes of the default table with a policy's overrides applied."""

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self._codes = {**CODES, **(overrides or {})}
        self._resolved: dict[tuple[str, str, str], str | None] = {}
        self.initial = frozenset(self._role_codes("initial_infusion", "initial_push", "hydration_initial"))
        self.additional_hour = frozenset(
            self._role_codes("additional_hour", "hydration_additional", "sc_infusion_additional"))
        self.push = frozenset(self._role_codes("initial_push", "subsequent_push", "repeat_push"))
        self.hydration_initial = self._codes["hydration_initial"]

    def get(self, role: str, category: str = "", route: str = "") -> str | None:
        """The most specific code of `role`. The table is fixed after __init__, so each
        (role, category, route) is resolved once: coding asks the same few questions every encounter."""
        key = (role, category, route)
        if key not in self._resolved:
            codes = self._codes
            self._resolved[key] = (codes.get(f"{role}.{category}.{route}") or codes.get(f"{role}.{category}")
                                   or codes.get(role))
        return self._resolved[key]

    def _role_codes(self, *roles: str) -> list[str]:
        return [code for key, code in self._codes.items() if key.split(".")[0] in roles]
