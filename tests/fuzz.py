"""Malformed and mutated messages, each of which the contract must reject, made from valid ones.

Every mutant keeps a key and a topic so it travels like real traffic; none can be accepted: each
breaks one rule of docs/contract.md (or the stream's key/topic rules) for sure.
"""
from __future__ import annotations

import json
import random

from streams.config import Topics

TYPE_TOPIC = Topics().by_type


def _truncate(rng, e, raw):
    return raw[: rng.randint(0, len(raw) - 2)], e["encounter_id"]


def _no_offset(rng, e, raw):
    return raw.replace(e["occurred_at"].encode(), e["occurred_at"][:19].encode()), e["encounter_id"]


def _far_future(rng, e, raw):
    return json.dumps({**e, "occurred_at": f"{rng.randint(2030, 2099)}-01-01T00:00:00Z"}).encode(), e["encounter_id"]


def _wrong_type(rng, e, raw):
    field = rng.choice(["event_id", "encounter_id", "occurred_at", "type"])
    return json.dumps({**e, field: rng.choice([None, 12, [], {"x": 1}, True])}).encode(), e["encounter_id"]


def _missing(rng, e, raw):
    field = rng.choice(["event_id", "encounter_id", "occurred_at", "type"])
    return json.dumps({k: v for k, v in e.items() if k != field}).encode(), e["encounter_id"]


def _huge(rng, e, raw):
    return json.dumps({**e, "note": "x" * rng.randint(300_000, 400_000)}).encode(), e["encounter_id"]


def _huge_field(rng, e, raw):
    return json.dumps({**e, "event_id": "e" * rng.randint(200, 5000)}).encode(), e["encounter_id"]


def _bad_key(rng, e, raw):
    return raw, e["encounter_id"] + rng.choice(["-X", "0", " "])


def _bad_enum(rng, e, raw):
    if e["type"] == "administration.started":
        field = rng.choice(["category", "route", "method", "purpose"])
        return json.dumps({**e, field: "bogus"}).encode(), e["encounter_id"]
    return json.dumps({**e, "type": "administration.paused"}).encode(), e["encounter_id"]


def _garbage(rng, e, raw):
    blob = rng.choice([b"", b"null", b"42", b"[]", b'"text"', bytes(rng.randrange(256) for _ in range(40)),
                       b"\xff\xfe{}", b"{" * 50, b'{"type": "administration.started"}'])
    return blob, e["encounter_id"]


MUTATIONS = [_truncate, _no_offset, _far_future, _wrong_type, _missing, _huge, _huge_field, _bad_key,
             _bad_enum, _garbage]


def mutants(events: list[dict], n: int, seed: int = 1) -> list[tuple[str, bytes, bytes]]:
    """n (topic, key, value) rejects derived from `events`; the heavy 'huge' kind kept rare."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        e = rng.choice(events)
        mutate = rng.choice(MUTATIONS)
        if mutate is _huge and rng.random() > 0.02:
            continue
        raw = json.dumps(e).encode()
        value, key = mutate(rng, e, raw)
        if value == raw and key == e["encounter_id"]:
            continue  # the mutation happened to change nothing
        out.append((TYPE_TOPIC[e["type"]], key.encode(), value))
    return out
