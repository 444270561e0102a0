"""`infusion-validator billing export`: the DFT^P03 messages of `code`'s output, offline.

Reads output records of `code` (JSON Lines) from files or standard input, translates each charge
record (billing/dft.py: one message per record, in the order they come) and writes the messages to a
file (segments end in CR, each message is followed by a line break: `hl7 send` and interface engines
read such files). Records that are not charges (alerts, dead letters) are not the billing system's
and are skipped; a charge_id seen before (the same file given twice, a consumer's re-delivery) is
written once. A charge whose CPT the chargemaster does not map (or maps to several charge codes) is
held: listed on standard error and, with --held FILE, written there as the charge record itself, to
export again once the chargemaster has the row.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, TextIO

import orjson

from billing.chargemaster import Chargemaster
from billing.dft import Dft, Held, Interface, NotACharge, translate


@dataclass
class ExportStats:
    messages: int = 0
    posts: int = 0
    reversals: int = 0
    held: int = 0
    unreadable: int = 0  # lines that are not JSON, or charge records without a usable field
    repeats: int = 0  # charge_ids already written
    others: int = 0  # alerts and dead letters: not the billing system's

    def line(self, target: str) -> str:
        return (f"{target}: {self.messages:,} DFT^P03 messages ({self.posts:,} charges, {self.reversals:,} credits); "
                f"{self.held:,} held, {self.unreadable:,} unreadable lines, {self.repeats:,} repeats skipped, "
                f"{self.others:,} other records")


def export(lines: Iterable[tuple[str, bytes]], cdm: Chargemaster, interface: Interface, out: BinaryIO,
           err: TextIO, held: BinaryIO | None = None, now: dt.datetime | None = None) -> ExportStats:
    """`lines`: (where, raw line). Each message is stamped `now` (default: the time the export starts)."""
    now = now or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    stats = ExportStats()
    seen: set[str] = set()
    for where, raw in lines:
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            stats.unreadable += 1
            err.write(f"{where}: not JSON: skipped\n")
            continue
        if not isinstance(record, dict) or record.get("kind") != "charge":
            stats.others += 1
            continue
        try:
            result = translate(record, cdm, interface, now)
        except NotACharge as exc:
            stats.unreadable += 1
            err.write(f"{where}: {exc}: skipped\n")
            continue
        if record["charge_id"] in seen:
            stats.repeats += 1
            continue
        seen.add(record["charge_id"])
        if isinstance(result, Held):
            stats.held += 1
            err.write(f"held {record['charge_id']} ({record['action']} CPT {record['cpt']} x{record['units']} on "
                      f"{record['service_date']}): {result.reason}\n")
            if held is not None:
                held.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            continue
        assert isinstance(result, Dft)
        out.write(result.message + b"\n")
        stats.messages += 1
        if record["action"] == "post":
            stats.posts += 1
        else:
            stats.reversals += 1
    return stats


def read_lines(paths: list[str], stdin: BinaryIO) -> Iterable[tuple[str, bytes]]:
    for path in paths:
        if path == "-":
            for n, raw in enumerate(stdin, 1):
                yield f"standard input line {n}", raw
            continue
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise OSError(f"no such file: {path} (give output records of `code`, or - for standard input)") from None
        with f:
            for n, raw in enumerate(f, 1):
                yield f"{path} line {n}", raw
