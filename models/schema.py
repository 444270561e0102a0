"""JSON Schema export of contract v1, for producer and consumer teams to validate on their side."""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import TypeAdapter

from models.events import Event
from models.outputs import Alert, ChargeLine, DeadLetter


def schemas() -> dict[str, dict]:
    return {
        "event.schema.json": TypeAdapter(Event).json_schema(),
        "charge.schema.json": ChargeLine.model_json_schema(),
        "alert.schema.json": Alert.model_json_schema(),
        "dead_letter.schema.json": DeadLetter.model_json_schema(),
    }


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in schemas().items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths
