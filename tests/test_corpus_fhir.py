"""What the product makes of every real FHIR resource in tests/data/fhir (FHIR R4 spec examples,
CC0; provenance in tests/data/SOURCES.md), pinned in tests/data/expected-fhir.json.

Each file's outcome: per translation, the events (type, and method and category of a start), or the
rejection category, the opening words of each problem and the alert codes. `why` is the reviewed
reading of that outcome; regenerate the outcomes after a deliberate change with
`.venv/bin/python -m tests.test_corpus_fhir --update` (it keeps every `why`), then review the diff.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from feeds import DrugClasses, translate_fhir

CORPUS = Path(__file__).parent / "data" / "fhir"
GOLDEN = Path(__file__).parent / "data" / "expected-fhir.json"
PHRASE = 60  # characters of a problem pinned: enough to say which problem, not its every word


def outcome(path: Path) -> list[dict]:
    out = []
    for t in translate_fhir(json.loads(path.read_text()), DrugClasses.load()):
        if t.ok:
            out.append({"events": [" ".join([e["type"], *([e["method"], e["category"]] if "method" in e else [])])
                                   for e in t.events]})
        else:
            out.append({"rejected": t.category, "problems": [p[:PHRASE] for p in t.problems],
                        "alerts": [a["code"] for a in t.alerts]})
    return out


def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_every_corpus_file_is_pinned():
    assert sorted(golden()) == sorted(p.name for p in CORPUS.glob("*.json"))


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.json")))
def test_corpus_outcome(name):
    expected = golden()[name]
    assert expected["why"].strip(), "every pinned outcome carries its reviewed reading"
    assert outcome(CORPUS / name) == expected["outcome"]


def update() -> None:
    old = golden() if GOLDEN.exists() else {}
    new = {p.name: {"why": old.get(p.name, {}).get("why", "TODO: review"), "outcome": outcome(p)}
           for p in sorted(CORPUS.glob("*.json"))}
    GOLDEN.write_text(json.dumps(new, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    update()
