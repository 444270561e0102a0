"""`infusion-validator hl7 translate` and `fhir translate`: files of messages -> events, offline.

No broker: an interface analyst checks what a sender's messages become before any of them reaches
Kafka, and an archive can be coded directly (`hl7 translate archive.hl7 | infusion-validator code -`).

Standard output: the contract-v1 events, one JSON object per line, in message order. Standard error:
one JSON line per message (or FHIR resource) that is not translated,
  {"kind": "rejection", "source": {"file": ..., "message": n}, "message": <MSH-10 or Resource/id>,
   "ack": "AE"|"AR", "problems": [every problem found, each saying what to fix], "alerts": [...]}
(`alerts`: what the live feed would raise, e.g. DRUG_CLASS_UNKNOWN); one per message translated but
read leniently, {"kind": "note", ..., "notes": [what was done]} (e.g. a character-set label that did
not fit its bytes); and per FHIR file with resources of types not read, {"kind": "skipped",
"resources": {type: count}}. Exit status: 0 every message translated, 2 some rejected, 1 a usage or
I/O error.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path

import orjson

from feeds import DrugClasses, PumpLinks, Translation, translate_fhir, translate_hl7
from feeds.drugs import Waiting
from feeds.fhir_link import Encounters
from feeds.hl7v2 import VISIT_FIELDS
from gateways.gateway import read_file
from gateways.mllp import split_messages


def hl7_files(paths: list[str], drugs: DrugClasses, tz: tzinfo | None, out, err,
              visit_fields: tuple[str, ...] = VISIT_FIELDS) -> int:
    """The files in order, as one sender's: a pump message may be linked through an order an
    earlier message carried (feeds/pump_link.py)."""
    links = PumpLinks()
    return _write(((path, n, translate_hl7(raw, drugs, tz, visit_fields, links)) for path in paths
                   for n, raw in enumerate(split_messages(read_file(path)), 1)), out, err)


def fhir_files(paths: list[str], drugs: DrugClasses, out, err) -> int:
    """The files in order, as one sender's: an administration without `context` may belong to an
    Encounter of an earlier file (feeds/fhir_link.py)."""
    encounters = Encounters()
    return _write(((path, n, t) for path in paths
                   for n, t in enumerate(translate_fhir(_json(path), drugs, encounters), 1)), out, err)


def _write(translations: Iterator[tuple[str, int, Translation]], out, err) -> int:
    rejected, waiting, skipped = 0, Waiting(), Counter()
    for path, n, t in translations:
        for event in t.events:
            out.write(orjson.dumps(event) + b"\n")
        source = {"file": Path(path).name, "message": n}
        if t.skipped:
            skipped[source["file"], t.message_id.split("/")[0]] += 1
        elif not t.ok:
            rejected += 1
            record = {"kind": "rejection", "source": source, "message": t.message_id, "ack": t.ack,
                      "problems": t.problems}
            if t.alerts:
                record["alerts"] = waiting.annotate(t.alerts)
            err.write(orjson.dumps(record) + b"\n")
        elif t.notes:
            err.write(orjson.dumps({"kind": "note", "source": source, "message": t.message_id,
                                    "notes": [note.text for note in t.notes]}) + b"\n")
    for file in dict.fromkeys(f for f, _ in skipped):
        types = {rtype: count for (f, rtype), count in skipped.items() if f == file}
        err.write(orjson.dumps({"kind": "skipped", "source": {"file": file}, "resources": types,
                                "why": "resource types this validator does not read"}) + b"\n")
    return 2 if rejected else 0


def _json(path: str):
    try:
        return orjson.loads(read_file(path))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc}): give FHIR JSON files (a resource or a Bundle)") from None
