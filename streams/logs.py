"""Worker logging: one JSON object per line (or plain text), level by configuration.

Nothing here adds patient data: the worker's own messages name topics, partitions and offsets,
never an encounter id or an event's content.
"""
from __future__ import annotations

import datetime as dt
import logging

import orjson

FORMATS = ("json", "text")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def configure(level: str, fmt: str = "json") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # aiokafka's DEBUG lines carry the records it sends and fetches: patient data (a dead letter's raw
    # input) must not reach the logs, even when debugging the product.
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLogger().level))
