"""Coding-rules §7, national edits: CMS's Medically Unlikely Edits (MUE) and NCCI procedure-to-procedure
(PTP) edits, read from the files CMS publishes, checked against an encounter's billed lines.

Pure: the parsers take a file's text (`decode` turns its bytes into text; the callers read them) and
its name, which every finding quotes with the edit's dates. The project ships only made-up files in
CMS's shapes (tests/data/billing/SYNTHETIC-*), never real edit values.

The shapes, and how they are read (docs/coding-rules.md §7):

* MUE, the "Outpatient Hospital Services" table (facility billing) or the "Practitioner Services"
  table (professional billing): CSV, an AMA copyright notice first (quoted, over several lines), then
  the header `HCPCS/CPT Code` (a line break may sit inside the quoted cell), `<setting> Services MUE
  Values`, `MUE Adjudication Indicator` (text such as `2 Date of Service Edit: Policy`), `MUE
  Rationale`. Indicator 1 limits one claim line, 2 and 3 one date of service. A confidential value is
  absent: no MUE for that code. The rows carry no dates: the table's edition is its effective date,
  from the file name CMS gives it (`..._Eff_01-01-2026.csv`), quoted in the findings.
* PTP, the hospital (or practitioner) edit files: several tab-delimited text files a quarter (or a CSV
  export of them), a notice, a blank line, then `Column 1`, `Column 2`, `*=in existence prior to
  1996`, `Effective Date`, `Deletion Date *=no data`, `Modifier 0=not allowed 1=allowed 9=not
  applicable`, `PTP Edit Rationale`. Dates YYYYMMDD (YYYY-MM-DD and M/D/YYYY taken too). An edit
  applies to a service date d when effective <= d and, when it has a deletion date, d < deletion
  (the deletion date is the first day it no longer applies; `*` or empty: still in force).
  Indicator 0: the pair is never paid together; 1: together only with a modifier the documentation
  supports (59, XE, XS, XP, XU); 9: not applicable (loaded, never fires).

The header is found by its content, not its position (the notice changes length); columns are mapped
by their header text; any other row whose first cell is not a 5-character code (footers, blank rows,
a repeated notice) is skipped and counted. Only edits that concern drug administration (a code in
96360-96549, the product's scope) are kept: a quarter's hospital PTP files hold millions of pairs.
ZIP and Excel files are refused with what to do instead: export the table as CSV (or text).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from rules.alerts import AlertSpec

SCOPE = ("96360", "96549")  # drug administration: the codes whose edits are kept
BYPASS = frozenset({"59", "XE", "XS", "XP", "XU"})  # NCCI-associated modifiers of a separate site
_CODE = re.compile(r"[0-9A-Z]{5}")
_EDITION = re.compile(r"Eff_(\d{2})-(\d{2})-(\d{4})", re.I)
_PER = {1: "per claim line", 2: "per date of service", 3: "per date of service"}
_WHAT = {
    1: "the line is denied; units over it go on separate lines only with a modifier the documentation supports",
    2: "a policy limit: units over it are never paid",
    3: "a clinical limit: units over it are paid only on appeal with documentation of medical necessity",
}


class EditFileError(ValueError):
    """An edit file that cannot be used; the message names the file and says what to give instead."""


def in_scope(code: str) -> bool:
    return SCOPE[0] <= code <= SCOPE[1] and code.isdigit()


def decode(data: bytes, source: str) -> str:
    """A file's text: UTF-8 (with or without BOM), else Windows-1252 (CMS's CSVs are exported from
    Excel). Refuses ZIP/XLSX and old Excel files with the fix."""
    if data[:4] == b"PK\x03\x04" or data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise EditFileError(f"{source} is a ZIP or Excel file: unzip it and give the .csv (MUE) or .txt (PTP) "
                            "member, or open the table in a spreadsheet and export it as CSV")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _norm(cell: str) -> str:
    return re.sub(r"\s+", " ", cell).strip().lower()


def _table(text: str, source: str, is_header: Callable[[list[str]], bool], what: str) -> tuple[list[str], list[list[str]]]:
    """The header row and the rows after it, tab-delimited (quotes are text) or CSV (quoted cells
    may span lines), whichever has a row `is_header` accepts."""
    for delimiter, quoting in (("\t", csv.QUOTE_NONE), (",", csv.QUOTE_MINIMAL)):
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting))
        for i, row in enumerate(rows):
            if is_header(row):
                return row, rows[i + 1:]
    raise EditFileError(f"{source}: no {what} header row found; give the file as CMS publishes it (CSV or "
                        "tab-delimited text, the notice rows may stay)")


# -- MUE -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mue:
    cpt: str
    value: int
    mai: int  # MUE adjudication indicator: 1 line, 2 date of service (policy), 3 date of service (clinical)
    indicator: str  # as the file words it, e.g. "2 Date of Service Edit: Policy"


@dataclass(frozen=True)
class MueTable:
    source: str  # the file's name
    billing: str  # facility (Outpatient Hospital Services) or professional (Practitioner Services)
    edition: dt.date | None  # from the file name, when it says
    edits: Mapping[str, Mue]
    rows: int = 0  # code rows read
    absent: int = 0  # codes whose value is not published (confidential): no MUE
    skipped: int = 0  # rows that are not code rows, or unreadable

    def named(self) -> str:
        edition = f"edition effective {self.edition.isoformat()}" if self.edition else "edition date not in its name"
        return f"MUE table {self.source} ({edition})"


def parse_mue(text: str, source: str) -> MueTable:
    def header(row: list[str]) -> bool:
        return bool(row) and _norm(row[0]).replace("/ ", "/") == "hcpcs/cpt code" and any(
            "mue value" in _norm(c) for c in row)

    head, rows = _table(text, source, header, "MUE (`HCPCS/CPT Code`, `... MUE Values`)")
    names = [_norm(c) for c in head]
    value_at = next(i for i, n in enumerate(names) if "mue value" in n)
    setting = names[value_at]
    if "outpatient hospital" in setting:
        billing = "facility"
    elif "practitioner" in setting:
        billing = "professional"
    else:
        raise EditFileError(f"{source}: the {head[value_at].strip()!r} table is not for drug administration; give "
                            "the Outpatient Hospital Services MUE table (facility billing) or the Practitioner "
                            "Services table (professional billing)")
    mai_at = next((i for i, n in enumerate(names) if "adjudication" in n), None)
    if mai_at is None:
        raise EditFileError(f"{source}: no `MUE Adjudication Indicator` column")
    edits: dict[str, Mue] = {}
    n = absent = skipped = 0
    for row in rows:
        code = row[0].strip() if row else ""
        if not _CODE.fullmatch(code) or len(row) <= max(value_at, mai_at):
            skipped += bool(any(c.strip() for c in row))
            continue
        n += 1
        value, indicator = row[value_at].strip(), row[mai_at].strip()
        if not value:
            absent += 1
            continue
        mai = indicator[:1]
        if not value.isdigit() or mai not in ("1", "2", "3"):
            skipped += 1
            continue
        edits[code] = Mue(code, int(value), int(mai), indicator)
    m = _EDITION.search(source)
    edition = dt.date(int(m[3]), int(m[1]), int(m[2])) if m else None
    return MueTable(source, billing, edition, edits, n, absent, skipped)


# -- PTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ptp:
    column1: str
    column2: str
    effective: dt.date
    deletion: dt.date | None  # the first day it no longer applies; None: in force
    modifier: str  # 0 never together, 1 with a supported modifier, 9 not applicable
    source: str

    def applies(self, day: dt.date) -> bool:
        return self.modifier != "9" and self.effective <= day and (self.deletion is None or day < self.deletion)

    def dates(self) -> str:
        end = f"deletion date {self.deletion.isoformat()}" if self.deletion else "no deletion date"
        return f"effective {self.effective.isoformat()}, {end}"


@dataclass(frozen=True)
class PtpFile:
    source: str
    edits: list[Ptp]
    rows: int = 0  # pair rows read
    out_of_scope: int = 0  # pairs without a drug-administration code: not kept
    skipped: int = 0  # rows that are not pair rows, or unreadable


def _date(text: str) -> dt.date | None:
    text = text.strip()
    for pattern, order in ((r"(\d{4})(\d{2})(\d{2})", "ymd"), (r"(\d{4})-(\d{2})-(\d{2})", "ymd"),
                           (r"(\d{1,2})/(\d{1,2})/(\d{4})", "mdy")):
        m = re.fullmatch(pattern, text)
        if m:
            y, mo, d = (m[1], m[2], m[3]) if order == "ymd" else (m[3], m[1], m[2])
            try:
                return dt.date(int(y), int(mo), int(d))
            except ValueError:
                return None
    return None


def parse_ptp(text: str, source: str) -> PtpFile:
    def header(row: list[str]) -> bool:
        return len(row) >= 2 and [c.replace(" ", "").strip().lower() for c in row[:2]] == ["column1", "column2"]

    head, rows = _table(text, source, header, "PTP (`Column 1`, `Column 2`, ...)")
    names = [_norm(c) for c in head]

    def column(prefix: str) -> int:
        found = next((i for i, n in enumerate(names) if n.startswith(prefix)), None)
        if found is None:
            raise EditFileError(f"{source}: no `{prefix.capitalize()}...` column in the PTP header")
        return found

    eff, dele, mod = column("effective"), column("deletion"), column("modifier")
    edits: list[Ptp] = []
    n = out = skipped = 0
    for row in rows:
        c1 = row[0].strip() if row else ""
        if not _CODE.fullmatch(c1) or len(row) <= max(eff, dele, mod) or not _CODE.fullmatch(row[1].strip()):
            skipped += bool(any(c.strip() for c in row))
            continue
        n += 1
        c2 = row[1].strip()
        if not (in_scope(c1) or in_scope(c2)):
            out += 1
            continue
        effective, deletion_text, modifier = _date(row[eff]), row[dele].strip(), row[mod].strip()[:1]
        deletion = None if deletion_text in ("", "*") else _date(deletion_text)
        if effective is None or (deletion is None and deletion_text not in ("", "*")) or modifier not in "019" \
                or not modifier:
            skipped += 1
            continue
        edits.append(Ptp(c1, c2, effective, deletion, modifier, source))
    return PtpFile(source, edits, n, out, skipped)


# -- the edits in force, and the findings -------------------------------------------------------------


@dataclass(frozen=True)
class NationalEdits:
    """The MUE tables (at most one per billing type) and the PTP files a hospital loaded."""

    mue: tuple[MueTable, ...] = ()
    ptp_files: tuple[PtpFile, ...] = ()
    _pairs: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        kinds = Counter(t.billing for t in self.mue)
        twice = [k for k, n in kinds.items() if n > 1]
        if twice:
            raise EditFileError(f"two MUE tables for {twice[0]} billing ("
                                f"{', '.join(t.source for t in self.mue if t.billing == twice[0])}): give one")
        pairs: dict[tuple[str, str], list[Ptp]] = defaultdict(list)
        for f in self.ptp_files:
            for e in f.edits:
                pairs[(e.column1, e.column2)].append(e)  # a pair in two files keeps both windows
        self._pairs.update(pairs)

    def table(self, billing: str) -> MueTable | None:
        return next((t for t in self.mue if t.billing == billing), None)

    def summary(self) -> str:
        """One line per file: what was loaded (for the command's and the worker's log)."""
        lines = [f"{t.named()}: {len(t.edits)} MUE values for {t.billing} billing ({t.rows} codes, "
                 f"{t.absent} without a published value, {t.skipped} other rows skipped)" for t in self.mue]
        lines += [f"PTP edits {f.source}: {len(f.edits)} pairs with a drug-administration code kept ({f.rows} pairs, "
                  f"{f.out_of_scope} out of scope, {f.skipped} other rows skipped)" for f in self.ptp_files]
        return "\n".join(lines)

    def findings(self, coded: Iterable, submitted: list[dict] | None, billing: str,
                 fallback_date: dt.date | None) -> list[AlertSpec]:
        """MUE_EXCEEDED and NCCI_PTP_CONFLICT on the engine's lines (rules.engine.Line) and on the submitted
        lines (their dicts: a line without a service_date is taken on `fallback_date`)."""
        sets = [("coded by the validator", [(l.cpt, l.units, tuple(l.modifiers), l.service_date) for l in coded])]
        if submitted is not None:
            lines = []
            for s in submitted:
                day = dt.date.fromisoformat(s["service_date"]) if s.get("service_date") else fallback_date
                if day is not None:
                    lines.append((s["cpt"], s["units"], tuple(s.get("modifiers") or ()), day))
            sets.append(("submitted", lines))
        out: list[AlertSpec] = []
        table = self.table(billing)
        for who, lines in sets:
            if table is not None:
                out += _mue(table, who, lines)
            if self._pairs:
                out += self._ptp(who, lines)
        return out

    def _ptp(self, who: str, lines: list[tuple]) -> list[AlertSpec]:
        by_day: dict[dt.date, list[tuple]] = defaultdict(list)
        for line in lines:
            by_day[line[3]].append(line)
        out = []
        for day in sorted(by_day):
            today = by_day[day]
            codes = sorted({l[0] for l in today})
            for c1 in codes:
                for c2 in codes:
                    for edit in self._pairs.get((c1, c2), ()) if c1 != c2 else ():
                        if edit.applies(day) and (spec := _conflict(edit, who, day, today)):
                            out.append(spec)
        return out


def _mue(table: MueTable, who: str, lines: list[tuple]) -> list[AlertSpec]:
    out = []
    per_day: Counter = Counter()
    for cpt, units, modifiers, day in lines:
        per_day[(cpt, day)] += units
        edit = table.edits.get(cpt)
        if edit is not None and edit.mai == 1 and units > edit.value:
            out.append(_mue_finding(table, edit, who, day, units, "|".join(modifiers)))
    for (cpt, day), units in sorted(per_day.items()):
        edit = table.edits.get(cpt)
        if edit is not None and edit.mai in (2, 3) and units > edit.value:
            out.append(_mue_finding(table, edit, who, day, units))
    return out


def _mue_finding(table: MueTable, edit: Mue, who: str, day: dt.date, units: int, line: str = "") -> AlertSpec:
    return AlertSpec("MUE_EXCEEDED", None, (
        f"{edit.cpt} on {day.isoformat()}: {units} unit(s) {who}, over the MUE of {edit.value} "
        f"{_PER[edit.mai]} ({edit.indicator}) in the {table.named()}: {_WHAT[edit.mai]}."),
        key=f"mue|{who}|{edit.cpt}|{day.isoformat()}|{line}")


def _conflict(edit: Ptp, who: str, day: dt.date, lines: list[tuple]) -> AlertSpec | None:
    """The column 2 lines of `day` the edit denies: with indicator 1, not those at a separate site
    (the column 2 line, or every column 1 line, carries 59/XE/XS/XP/XU)."""
    ones = [l for l in lines if l[0] == edit.column1]
    twos = [l for l in lines if l[0] == edit.column2]
    if edit.modifier == "1":
        if all(BYPASS.intersection(l[2]) for l in ones):
            return None
        twos = [l for l in twos if not BYPASS.intersection(l[2])]
    units = sum(l[1] for l in twos)
    if not units:
        return None
    if edit.modifier == "0":
        what = (f"the pair is never paid together (modifier indicator 0): {edit.column2} is denied whatever the "
                "modifier; bill only the code the documentation supports")
    else:
        what = (f"{edit.column2} is denied unless a modifier the documentation supports is reported (modifier "
                "indicator 1: 59, XE, XS, XP or XU, a separate access site with its reason)")
    return AlertSpec("NCCI_PTP_CONFLICT", None, (
        f"{edit.column2} x{units} on {day.isoformat()} {who} with {edit.column1}: NCCI procedure-to-procedure edit "
        f"{edit.column1}/{edit.column2} of {edit.source} ({edit.dates()}): {what}."),
        key=f"ptp|{who}|{edit.column1}|{edit.column2}|{day.isoformat()}")


def national_findings(edits: NationalEdits | None, coding, submitted: list[dict] | None, billing: str,
                      discharged_at: int | None) -> list[AlertSpec]:
    """The findings of `edits` for an encounter (rules.encounter.EncounterState.reconcile). A submitted
    line without a service date is taken on the encounter's first service date (its discharge's UTC date
    when it has no line)."""
    if edits is None:
        return []
    dates = [line.service_date for line in coding.lines]
    if dates:
        fallback = min(dates)
    elif discharged_at is not None:
        fallback = dt.datetime.fromtimestamp(discharged_at, dt.timezone.utc).date()
    else:
        fallback = None
    return edits.findings(coding.lines, submitted, billing, fallback)
