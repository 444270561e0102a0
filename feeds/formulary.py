"""A pharmacy system's formulary extract merged into the hospital's drug-class file.

MAR and pump feeds name the product given (RxNorm SCD/SBD, NDC, the pharmacy's item number), while
the shipped table lists ingredients. Pharmacy exports its formulary as CSV; `infusion-validator drugs
import FILE.csv --into SITE.toml` adds its codes to the hospital's drug-class file (feeds/drugs.py),
so the feeds know every product the pharmacy stocks. Columns (header row; case, spaces and
underscores ignored):

    system      RXNORM, NDC, LOCAL (the pharmacy's own item code), or any other system's URI or OID
    code        the code in that system
    name        the product's name (shown in alerts; not matched)
    category    chemotherapy, therapeutic or hydration
    ingredient  optional: the substance (an RxNorm ingredient CUI or its name), so that two products
                of one substance are the same drug (coding-rules §3, same drug)

What the report says, per row: added; already known with that category (nothing to do); or a
conflict, when the table (the shipped defaults or the hospital's file) already gives the code another
category: a conflict is never merged, pharmacy decides and edits the file. Rows that cannot be read
(no code, an unknown category) are listed with their line. The rows added are appended to the
hospital's file as [[drug]] entries (its own text and comments are kept); conflicts and unreadable
rows are only reported (the command exits 2).

Pure: text in, text and a report out (cli/main.py reads and writes the files).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field

from feeds.drugs import CATEGORIES, DrugClasses, canonical_system, normalize_ndc
from feeds.translation import NDC, RXNORM

_COLUMNS = {"system": "system", "codesystem": "system", "code": "code", "name": "name", "description": "name",
            "category": "category", "class": "category", "ingredient": "ingredient"}
_LOCAL = ("LOCAL", "L", "99LOCAL", "PHARMACY", "ITEM")


class FormularyError(ValueError):
    """The extract cannot be read at all (no header, missing columns); the message says what to send."""


@dataclass
class Row:
    line: int
    system: str  # canonical: RxNorm/NDC URI, "local", or the system as given
    code: str
    name: str
    category: str
    ingredient: str | None

    @property
    def shown(self) -> str:
        system = {RXNORM: "RxNorm", NDC: "NDC", "local": "local code"}.get(self.system, self.system)
        return f"{system} {self.code} ({self.name})"


@dataclass
class Report:
    added: list[Row] = field(default_factory=list)
    known: list[Row] = field(default_factory=list)
    conflicts: list[tuple[Row, str, str]] = field(default_factory=list)  # row, the table's category, its source
    unreadable: list[tuple[int, str]] = field(default_factory=list)  # line, what is wrong

    def lines(self) -> list[str]:
        out = [f"{len(self.added)} code(s) added, {len(self.known)} already known with the same category, "
               f"{len(self.conflicts)} conflict(s), {len(self.unreadable)} row(s) not read"]
        for row, category, source in self.conflicts:
            out.append(f"conflict, line {row.line}: {row.shown} is {row.category} in the extract but {category} in "
                       f"{source}: not merged; pharmacy decides, then edits the file")
        out += [f"not read, line {line}: {why}" for line, why in self.unreadable]
        return out


def read_rows(text: str) -> tuple[list[Row], list[tuple[int, str]]]:
    """The extract's rows, and the lines that cannot be read with why."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if not header:
        raise FormularyError("the extract is empty: send a CSV with the header system,code,name,category[,ingredient]")
    columns = [_COLUMNS.get("".join(h.lower().split()).replace("_", "")) for h in header]
    missing = {"system", "code", "name", "category"} - set(columns)
    if missing:
        raise FormularyError(f"the header lacks {', '.join(sorted(missing))}: send system,code,name,category"
                             "[,ingredient] (a pharmacy extract's columns renamed to these)")
    rows, bad = [], []
    for line, values in enumerate(reader, 2):
        if not any(v.strip() for v in values):
            continue
        got = {c: v.strip() for c, v in zip(columns, values) if c}
        category = got.get("category", "").lower()
        if not got.get("code"):
            bad.append((line, "no code"))
        elif category not in CATEGORIES:
            bad.append((line, f"category must be one of {', '.join(CATEGORIES)}"))
        elif not got.get("name"):
            bad.append((line, "no name"))
        else:
            rows.append(Row(line, _system(got.get("system", "")), _code(got["code"], got.get("system", "")),
                            got["name"], category, got.get("ingredient") or None))
    return rows, bad


def merge(text: str, table: DrugClasses, source: str) -> tuple[Report, str]:
    """The report of merging the extract `text` into `table` (the defaults and the hospital's file as
    loaded), and the TOML block to append to the hospital's file for the rows added."""
    rows, bad = read_rows(text)
    report = Report(unreadable=bad)
    seen: dict[tuple[str, str], str] = {}
    for row in rows:
        key = ("local", row.code) if row.system == "local" else (row.system, row.code)
        found = table.find(row.code, None if row.system == "local" else row.system, None)
        current = table.category(row.code, None if row.system == "local" else row.system, None)
        if key in seen and seen[key] != row.category:
            report.unreadable.append((row.line, f"{row.shown} is listed again with another category"))
        elif current is None:
            if key not in seen:
                report.added.append(row)
        elif current == row.category:
            report.known.append(row)
        else:
            report.conflicts.append((row, current, table.sources.get(found, "the table")))
        seen[key] = row.category
    return report, _toml(report.added, source)


def _system(system: str) -> str:
    s = system.strip()
    if s.upper() in _LOCAL or not s:
        return "local"
    return canonical_system(s) or "local"


def _code(code: str, system: str) -> str:
    return normalize_ndc(code) if _system(system) == NDC else code.strip()


def _toml(rows: list[Row], source: str) -> str:
    """[[drug]] entries for the rows, one per drug (name, category, ingredient), codes grouped."""
    if not rows:
        return ""
    drugs: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        target = {RXNORM: "rxnorm", NDC: "ndc", "local": "local"}.get(row.system, "codes")
        value = row.code if target != "codes" else {"system": row.system, "code": row.code}
        drugs[row.name, row.category, row.ingredient][target].append(value)
    out = [f"\n# Imported from {source} on {dt.date.today().isoformat()} by `infusion-validator drugs import`: "
           f"{len(rows)} code(s) of {len(drugs)} drug(s).\n"]
    for (name, category, ingredient), codes in drugs.items():
        out.append(f"\n[[drug]]\nname = {_s(name)}\ncategory = {_s(category)}\n")
        if ingredient:
            out.append(f"ingredient = {_s(ingredient)}\n")
        for key in ("rxnorm", "ndc", "local"):
            if codes.get(key):
                out.append(f"{key} = [{', '.join(_s(c) for c in codes[key])}]\n")
        if codes.get("codes"):
            items = ", ".join(f"{{ system = {_s(c['system'])}, code = {_s(c['code'])} }}" for c in codes["codes"])
            out.append(f"codes = [{items}]\n")
    return "".join(out)


def _s(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)
