"""`infusion-validator hl7 translate` and `fhir translate`: files of messages -> events, offline.

No broker: an interface analyst checks what a sender's messages become before any of them reaches
Kafka, and an archive can be coded directly (`hl7 translate archive.hl7 | infusion-validator code -`).

Standard output: the contract-v1 events, one JSON object per line, in message order. Standard error:
one JSON line per message (or FHIR resource) that is not translated,
  {"kind": "rejection", "source": {"file": ..., "message": n}, "message": <MSH-10 or Resource/id>,
   "ack": "AE"|"AR", "problems": [every problem found, each saying what to fix], "alerts": [...]}
(`alerts`: what the live feed would raise, e.g. DRUG_CLASS_UNKNOWN). Exit status: 0 every message
translated, 2 some rejected, 1 a usage or I/O error.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path

import orjson

from feeds import DrugClasses, Translation, translate_fhir, translate_hl7
from gateways.gateway import read_file
from gateways.mllp import split_messages


def hl7_files(paths: list[str], drugs: DrugClasses, tz: tzinfo | None, out, err) -> int:
    return _write(((path, n, translate_hl7(raw, drugs, tz)) for path in paths
                   for n, raw in enumerate(split_messages(read_file(path)), 1)), out, err)


def fhir_files(paths: list[str], drugs: DrugClasses, out, err) -> int:
    return _write(((path, n, t) for path in paths
                   for n, t in enumerate(translate_fhir(_json(path), drugs), 1)), out, err)


def _write(translations: Iterator[tuple[str, int, Translation]], out, err) -> int:
    rejected = 0
    for path, n, t in translations:
        for event in t.events:
            out.write(orjson.dumps(event) + b"\n")
        if not t.ok:
            rejected += 1
            record = {"kind": "rejection", "source": {"file": Path(path).name, "message": n},
                      "message": t.message_id, "ack": t.ack, "problems": t.problems}
            if t.alerts:
                record["alerts"] = t.alerts
            err.write(orjson.dumps(record) + b"\n")
    return 2 if rejected else 0


def _json(path: str):
    try:
        return orjson.loads(read_file(path))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc}): give FHIR JSON files (a resource or a Bundle)") from None
