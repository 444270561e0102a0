"""Every encounter of the report as CSV rows, written beside the page, for a coder's spreadsheet or
the hospital's BI tool: the page lists the encounters most at stake, this file has them all.

One row per net charge line (`line`), standing pre-bill finding or coding note (`finding`), open
documentation gap (`open_gap`) and unit at stake (`at_stake`, with its amount when a fee schedule is
given). Sums over the `line` rows give the page's units by CPT; over the `at_stake` rows, its
revenue at stake. Rows come encounter by encounter, not sorted (sort in the spreadsheet).

Text written by other systems is data, not formulas: a cell that a spreadsheet would evaluate
(starting, after any spaces, with =, +, -, @, a tab or a carriage return) is written with a leading apostrophe, as
OWASP advises against CSV injection.
"""
from __future__ import annotations

import csv
from typing import IO

from cli.report import EncounterView, FeeSchedule, Stake
from feeds.text import clean

COLUMNS = ("encounter_id", "row", "unit", "day", "service_date", "cpt", "units", "modifiers", "amount", "exact",
           "category", "code", "severity", "administration_ids", "charge_id", "incomplete_documentation", "detail")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Rows:
    """`rows = Rows(file)`; `rows.write(view, fees)` per encounter; `rows.count` rows written."""

    def __init__(self, out: IO[str]) -> None:
        self._csv = csv.writer(out, lineterminator="\n")
        self._csv.writerow(COLUMNS)
        self.count = 0

    def write(self, view: EncounterView, fees: FeeSchedule | None) -> None:
        base = {"encounter_id": view.encounter_id, "unit": view.unit, "day": view.day}
        for line in view.lines:
            self._row(base, row="line", service_date=line["service_date"], cpt=line["cpt"], units=line["units"],
                      modifiers="-".join(map(str, line.get("modifiers") or ())),
                      administration_ids=" ".join(map(str, line.get("administration_ids") or ())),
                      charge_id=line["charge_id"], incomplete_documentation=bool(line.get("incomplete_documentation")),
                      detail=line.get("explanation", ""))
        for kind, alerts in (("finding", view.findings), ("open_gap", view.open_gaps)):
            for a in alerts:
                self._row(base, row=kind, code=a["code"], severity=a.get("severity", ""),
                          administration_ids=a.get("administration_id") or "", detail=a["message"])
        for s in view.stakes:
            self._row(base, row="at_stake", cpt=s.cpt, units=s.units, amount=_amount(s, fees), exact=s.exact,
                      category=s.category, code=s.reason)

    def _row(self, base: dict, **cells) -> None:
        values = {**base, **cells}
        self._csv.writerow([_cell(values.get(c, "")) for c in COLUMNS])
        self.count += 1


def _amount(stake: Stake, fees: FeeSchedule | None) -> str:
    amount = fees.amount(stake) if fees else None
    return "" if amount is None else f"{amount:.2f}"


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = clean(str(value))[0]
    return "'" + text if text.lstrip(" ").startswith(_FORMULA_START) else text
