"""The drug-class table: which drugs are chemotherapy, therapeutic or hydration (coding-rules §1).

The category decides the CPT family, so it is never guessed. A drug is found by, in this order:

1. its code in its coding system: RxNorm or NDC (HL7 "RXNORM"/"NDC", FHIR
   http://www.nlm.nih.gov/research/umls/rxnorm / http://hl7.org/fhir/sid/ndc, or their OIDs), or any
   other system listed exactly under `codes`; NDCs compare as 11 digits (4-4-2, 5-3-2 and 5-4-1 are
   padded to 5-4-2);
2. its code as a hospital-local code (`local`), when the sender's system is neither RxNorm nor NDC
   (HL7 "L", "99xxx", a local URI, or none);
3. an exact match of its name (case and repeated spaces ignored) with a name listed in the table.
   No partial match, no spelling correction: "vancomycin" is not "vancomycin 1 g in NS 250 mL".

Not found: `category` returns None and the translators reject the message (DRUG_CLASS_UNKNOWN).

The defaults ship in the package (`feeds/drug_classes.toml`). A hospital's file is read after them
and wins for every key it lists (a code, a local code or a name): a drug moved to another category,
its formulary NDCs and local codes added. Format (TOML):

    # defaults = false           # optional: ignore the shipped table altogether

    [[drug]]
    name = "vancomycin"           # the drug's name; also matched exactly
    category = "therapeutic"      # chemotherapy | therapeutic | hydration
    rxnorm = ["11124"]            # RxNorm CUIs (ingredient and the clinical drugs the MAR sends)
    ndc = ["0409-6510-01"]        # NDCs, any of the usual formats
    local = ["VANC1G"]            # the hospital's own drug codes (pharmacy system item numbers)
    codes = [{ system = "urn:oid:1.2.3.4", code = "X1" }]  # any other coding system, exact match
    names = ["Vancomycin HCl"]    # more names matched exactly
    ingredient = "vancomycin"     # the substance (RxNorm ingredient CUI or name): product and package
                                  # codes of one substance are the same drug (coding-rules §3)

Every key is optional except `category` and at least one of `name`, `rxnorm`, `ndc`, `local`,
`codes`. A pharmacy system's extract (CSV) is merged into a hospital's file with
`infusion-validator drugs import` (feeds/formulary.py). Unknown keys and a key listed twice with different categories in one file are errors
(a typo would otherwise silently drop a drug).
"""
from __future__ import annotations

import re
import tomllib
from importlib import resources

from feeds.translation import NDC, RXNORM

CATEGORIES = ("chemotherapy", "therapeutic", "hydration")
_SYSTEMS = {
    "rxnorm": RXNORM, "rxn": RXNORM, RXNORM: RXNORM, "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "2.16.840.1.113883.6.88": RXNORM,
    "ndc": NDC, NDC: NDC, "urn:oid:2.16.840.1.113883.6.69": NDC, "2.16.840.1.113883.6.69": NDC,
}
_ENTRY_KEYS = {"name", "category", "rxnorm", "ndc", "local", "codes", "names", "ingredient"}


class DrugClassError(ValueError):
    """The drug-class file is unreadable or wrong; the message names the file and the entry."""


def canonical_system(system: str | None) -> str | None:
    """RxNorm and NDC in any spelling become their FHIR URIs; any other system is kept as sent."""
    if system is None:
        return None
    s = system.strip()
    if not s:
        return None
    return _SYSTEMS.get(s.lower(), _SYSTEMS.get(s, s))


def normalize_ndc(code: str) -> str:
    """An NDC as 11 digits (5-4-2 without hyphens) when its format says how to pad it."""
    code = code.strip()
    parts = code.split("-")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        labeler, product, package = parts
        if (len(labeler), len(product), len(package)) in ((4, 4, 2), (5, 3, 2), (5, 4, 1), (5, 4, 2)):
            return labeler.zfill(5) + product.zfill(4) + package.zfill(2)
    return code


def _name_key(name: str) -> str:
    return re.sub(r"\s+", " ", name).strip().casefold()


class DrugClasses:
    """drug -> category ("chemotherapy" | "therapeutic" | "hydration"), or None when unknown."""

    def __init__(self) -> None:
        self.by_code: dict[tuple[str, str], str] = {}  # (canonical system, code) -> category
        self.by_local: dict[str, str] = {}  # local code -> category
        self.by_name: dict[str, str] = {}  # normalized name -> category
        self.ingredients: dict[tuple[str, object], str] = {}  # (target, key) -> ingredient, when the entry says
        self.sources: dict[tuple[str, object], str] = {}  # (target, key) -> the file that set its category

    @classmethod
    def load(cls, path: str | None = None) -> DrugClasses:
        """The shipped defaults, then the hospital's file at `path` (if any) over them."""
        table = cls()
        hospital = None
        if path is not None:
            hospital = _read(open(path, "rb"), str(path))
        if hospital is None or hospital.get("defaults", True):
            with resources.files("feeds").joinpath("drug_classes.toml").open("rb") as f:
                table._add(_read(f, "feeds/drug_classes.toml"), "feeds/drug_classes.toml")
        if hospital is not None:
            table._add(hospital, str(path))
        return table

    def category(self, code: str | None, system: str | None, name: str | None) -> str | None:
        """The drug's category; None = unknown (never guessed from a name that is not listed)."""
        found = self.find(code, system, name)
        return None if found is None else self._target(found[0])[found[1]]

    def ingredient(self, code: str | None, system: str | None, name: str | None) -> str | None:
        """The substance the table says the drug is (its `ingredient`), None when it does not say."""
        found = self.find(code, system, name)
        return None if found is None else self.ingredients.get(found)

    def find(self, code: str | None, system: str | None, name: str | None) -> tuple[str, object] | None:
        """The table's key that a drug matches: (target, key), None when none does."""
        code = (code or "").strip()
        if code:
            canon = canonical_system(system)
            if canon in (RXNORM, NDC):
                key = (canon, normalize_ndc(code) if canon == NDC else code)
                if key in self.by_code:
                    return "code", key
            else:
                if canon and (canon, code) in self.by_code:
                    return "code", (canon, code)
                if code in self.by_local:
                    return "local", code
        if name and name.strip() and _name_key(name) in self.by_name:
            return "name", _name_key(name)
        return None

    def __len__(self) -> int:
        return len(self.by_code) + len(self.by_local) + len(self.by_name)

    # -- loading -------------------------------------------------------------------------

    def _add(self, data: dict, source: str) -> None:
        extra = set(data) - {"defaults", "drug"}
        if extra:
            raise DrugClassError(f"{source}: unknown top-level key(s) {sorted(extra)}; use [[drug]] entries "
                                 "and optionally defaults = false")
        if not isinstance(data.get("defaults", True), bool):
            raise DrugClassError(f"{source}: defaults must be true or false")
        entries = data.get("drug", [])
        if not isinstance(entries, list):
            raise DrugClassError(f"{source}: drug must be an array of tables ([[drug]])")
        seen: dict[tuple, tuple[str, int]] = {}  # key -> (category, entry number) within this file
        updates: list[tuple[str, object, str, str | None]] = []
        for n, entry in enumerate(entries, 1):
            where = f"{source}: drug entry {n}" + (f" ({entry.get('name')})" if isinstance(entry, dict)
                                                   and entry.get("name") else "")
            # the substance: as the entry says, else its name (the shipped entries are ingredients)
            ingredient = _ingredient(entry, where) or (_name_key(entry["name"])[:128] if isinstance(entry, dict)
                                                       and isinstance(entry.get("name"), str) else None)
            for target, key, category in _keys(entry, where):
                previous = seen.get((target, key))
                if previous and previous[0] != category:
                    raise DrugClassError(f"{where}: {key!r} is already listed as {previous[0]} in entry "
                                         f"{previous[1]}; one drug code has one category")
                seen[(target, key)] = (category, n)
                updates.append((target, key, category, ingredient))
        for target, key, category, ingredient in updates:
            self._target(target)[key] = category
            self.sources[target, key] = source
            if ingredient:
                self.ingredients[target, key] = ingredient

    def _target(self, which: str) -> dict:
        return {"code": self.by_code, "local": self.by_local, "name": self.by_name}[which]


def _read(f, source: str) -> dict:
    try:
        with f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise DrugClassError(f"{source}: not valid TOML ({exc})") from None


def _ingredient(entry, where: str) -> str | None:
    value = entry.get("ingredient") if isinstance(entry, dict) else None
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DrugClassError(f"{where}: ingredient must be a non-empty string (an RxNorm ingredient CUI or a name)")
    return _name_key(value)


def _strings(entry: dict, key: str, where: str) -> list[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DrugClassError(f"{where}: {key} must be a list of non-empty strings, e.g. {key} = [\"123\"]")
    return [v.strip() for v in value]


def _keys(entry, where: str) -> list[tuple[str, object, str]]:
    if not isinstance(entry, dict):
        raise DrugClassError(f"{where}: each [[drug]] entry must be a table")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise DrugClassError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ENTRY_KEYS)}")
    category = entry.get("category")
    if category not in CATEGORIES:
        raise DrugClassError(f"{where}: category must be one of {', '.join(CATEGORIES)} (got {category!r})")
    keys: list[tuple[str, object, str]] = []
    name = entry.get("name")
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise DrugClassError(f"{where}: name must be a non-empty string")
        keys.append(("name", _name_key(name), category))
    keys += [("name", _name_key(n), category) for n in _strings(entry, "names", where)]
    keys += [("code", (RXNORM, c), category) for c in _strings(entry, "rxnorm", where)]
    keys += [("code", (NDC, normalize_ndc(c)), category) for c in _strings(entry, "ndc", where)]
    keys += [("local", c, category) for c in _strings(entry, "local", where)]
    codes = entry.get("codes", [])
    if not isinstance(codes, list):
        raise DrugClassError(f"{where}: codes must be a list of {{ system = \"...\", code = \"...\" }}")
    for c in codes:
        if not (isinstance(c, dict) and set(c) == {"system", "code"}
                and all(isinstance(v, str) and v.strip() for v in c.values())):
            raise DrugClassError(f"{where}: each codes item must be {{ system = \"...\", code = \"...\" }}")
        system = canonical_system(c["system"])
        code = normalize_ndc(c["code"]) if system == NDC else c["code"].strip()
        keys.append(("code", (system, code), category))
    if not keys:
        raise DrugClassError(f"{where}: give at least a name, rxnorm, ndc, local or codes")
    return keys


class Waiting:
    """How many administrations each unknown drug has held back, since this process started (a feed,
    or one `hl7 translate` run): said in its DRUG_CLASS_UNKNOWN alerts, so pharmacy adds the codes
    that matter most first. At most `limit` drugs are counted (the least recent dropped)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.counts: dict[tuple, int] = {}

    def annotate(self, alerts: list[dict]) -> list[dict]:
        """The alerts, each DRUG_CLASS_UNKNOWN one counted and saying how many wait on its drug."""
        out = []
        for alert in alerts:
            drug = alert.get("drug") if alert.get("code") == "DRUG_CLASS_UNKNOWN" else None
            if drug is None:
                out.append(alert)
                continue
            key = (canonical_system(drug.get("system")), drug.get("code") or _name_key(drug.get("name") or ""))
            n = self.counts.pop(key, 0) + 1
            self.counts[key] = n
            if len(self.counts) > self.limit:
                del self.counts[next(iter(self.counts))]
            out.append(dict(alert, message=f"{alert['message']} {n} administration{'s' if n > 1 else ''} "
                                            "of this drug held back so far by this feed."))
        return out
