"""The hospital's chargemaster (CDM) extract: which of its charge codes posts a CPT.

A CSV with at least the header `charge_code,description,cpt,revenue_code,department` (a real extract
has dozens more columns: ignored). Pure: `parse` takes the file's text. Rules:

* every value is text, trimmed: `revenue_code` keeps its leading zero (`0260`), so may `charge_code`;
  a UTF-8 BOM, CRLF and `#` comment lines before the header are taken;
* a row without `charge_code` or `cpt`, or whose `cpt` is not 5 characters [0-9A-Z] (e.g. `96365-XU`: a
  modifier is not part of the CDM's CPT), is reported (`problems`) and not loaded;
* one charge code cannot post two CPTs: that is an error (the file is refused); the same row twice is
  one row;
* a CPT mapped by several rows that do not agree on the charge code and department (e.g. the same
  push in the infusion center and in the ED) is ambiguous: nothing says which department a charge
  record belongs to, so such a CPT is held, like a CPT the CDM does not map at all.

`revenue_code` has no field in a v2.5.1 FT1 (FT1-41 is v2.6): it is kept for the hospital's own
reading (the report of what was held names it), not sent.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

COLUMNS = ("charge_code", "description", "cpt", "revenue_code", "department")
_CPT = re.compile(r"[0-9A-Z]{5}")


class ChargemasterError(ValueError):
    """A chargemaster that cannot be used; the message names the file and what to fix."""


@dataclass(frozen=True, slots=True)
class CdmRow:
    charge_code: str
    description: str
    cpt: str
    revenue_code: str
    department: str


@dataclass(frozen=True)
class Chargemaster:
    source: str
    rows: tuple[CdmRow, ...]
    problems: tuple[str, ...] = ()  # rows not loaded, each with its line number and why
    _by_cpt: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for row in self.rows:
            self._by_cpt.setdefault(row.cpt, []).append(row)

    def lookup(self, cpt: str) -> CdmRow | str:
        """The row that posts `cpt`, or why there is none (a sentence for the coders)."""
        rows = self._by_cpt.get(cpt)
        if not rows:
            return f"the chargemaster ({self.source}) maps no charge code to CPT {cpt}"
        distinct = {(r.charge_code, r.department) for r in rows}
        if len(distinct) > 1:
            codes = ", ".join(f"{c} ({d or 'no department'})" for c, d in sorted(distinct))
            return (f"the chargemaster ({self.source}) maps CPT {cpt} to several charge codes ({codes}) and "
                    "nothing in the charge says which department: keep one row for it")
        return rows[0]


def parse(text: str, source: str) -> Chargemaster:
    lines = text.lstrip("\ufeff").splitlines(keepends=True)
    skip = 0
    while skip < len(lines) and (lines[skip].lstrip().startswith("#") or not lines[skip].strip()):
        skip += 1
    reader = csv.reader(io.StringIO("".join(lines[skip:]), newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ChargemasterError(f"{source}: the header must name {','.join(COLUMNS)} (missing: {', '.join(missing)})")
    at = {c: header.index(c) for c in COLUMNS}
    rows: dict[str, CdmRow] = {}
    problems = []
    for number, cells in enumerate(reader, skip + 2):
        if not any(c.strip() for c in cells):
            continue
        values = {c: cells[i].strip() if i < len(cells) else "" for c, i in at.items()}
        row = CdmRow(**values)
        if not row.charge_code or not row.cpt:
            problems.append(f"line {number}: no {'charge_code' if not row.charge_code else 'cpt'}: not loaded")
            continue
        if not _CPT.fullmatch(row.cpt):
            problems.append(f"line {number}: cpt {row.cpt!r} is not a 5-character CPT/HCPCS code (a modifier is not "
                            "part of it): not loaded")
            continue
        earlier = rows.get(row.charge_code)
        if earlier is not None and earlier.cpt != row.cpt:
            raise ChargemasterError(f"{source} line {number}: charge code {row.charge_code} posts CPT {earlier.cpt} "
                                    f"on an earlier line and {row.cpt} here: one charge code, one CPT")
        rows.setdefault(row.charge_code, row)
    return Chargemaster(source, tuple(rows.values()), tuple(problems))
