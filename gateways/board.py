"""The nursing worklist's view: the open documentation problems, by unit and encounter. Pure.

`Board.apply(record, since)` takes one record of the alerts topic and returns the change to show
(an alert added, or one removed), or None. Only what a nurse can fix at the bedside is kept
(`audience: nursing`; a v1 record without `audience` is placed by its code): pre-bill findings are
the coders' and never reach this page. A resolved alert leaves at once. Memory is one entry per open
alert, bounded by `limit` (oldest dropped first, counted), since a topic can hold anything; and each
text shown is clean of control and bidirectional-override characters and cut to a bound (the feeds
already do both; whoever else can write the topic is not trusted to). An alert without a unit has
`unit: null` (the page groups those apart), so a unit that happens to be called "(unit not known)"
is a unit like any other.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

from feeds.text import clean, cut
from rules.alerts import audience_of

# What a page shows of an alert, at most (characters): the contract's lengths, the message's generous.
LIMITS = {"encounter_id": 128, "administration_id": 128, "code": 64, "severity": 8, "message": 2000, "unit": 64,
          "room": 64, "bed": 64}

# What is missing, in a nurse's words (the alert's message says for which drug, on which site, and
# what to document).
TITLES = {
    "STOP_TIME_MISSING": "Stop time missing",
    "START_TIME_MISSING": "Start time missing",
    "STOP_BEFORE_START": "Stop time before start time",
    "STOP_TIME_OVERDUE": "Infusion running past its ordered time",
    "METHOD_TIME_CONFLICT": "Push or infusion? Method and times disagree",
    "METHOD_MISSING": "Push or infusion not documented",
    "DRUG_CLASS_UNKNOWN": "Drug not in the drug-class table (pharmacy)",
}


@dataclass(frozen=True)
class Item:
    alert_id: str
    encounter_id: str
    administration_id: str | None
    code: str
    title: str
    severity: str
    message: str
    unit: str | None
    room: str | None
    bed: str | None
    since: float  # epoch seconds the alert was raised (its Kafka timestamp)

    def to_json(self) -> dict:
        return asdict(self)


class Board:
    def __init__(self, limit: int = 50_000) -> None:
        self.items: OrderedDict[str, Item] = OrderedDict()
        self.limit = limit
        self.dropped = 0  # open alerts dropped over the limit (a metric)

    def apply(self, record: dict, since: float) -> tuple[str, dict] | None:
        """("add", item) or ("remove", {"alert_id", "unit"}) for the page, or None."""
        if not isinstance(record, dict) or record.get("kind") != "alert" or not record.get("alert_id"):
            return None
        code = str(record.get("code", ""))
        if audience_of(record) != "nursing":
            return None
        alert_id = str(record["alert_id"])
        if record.get("state") == "resolved":
            gone = self.items.pop(alert_id, None)
            return ("remove", {"alert_id": alert_id, "unit": gone.unit}) if gone else None
        item = _item(record, code, since)
        if alert_id in self.items:
            return None  # a re-delivery (at-least-once): the board already shows it
        self.items[alert_id] = item
        if len(self.items) > self.limit:
            self.items.popitem(last=False)
            self.dropped += 1
        return "add", item.to_json()

    def units(self) -> list[str]:
        return sorted({item.unit for item in self.items.values() if item.unit is not None})

    def snapshot(self, unit: str | None = None) -> list[dict]:
        """Open items, oldest first, of one unit or all (those without a unit last)."""
        items = (i for i in self.items.values() if unit is None or i.unit == unit)
        return [i.to_json() for i in sorted(items, key=lambda i: (i.unit is None, i.unit or "", i.encounter_id,
                                                                  i.since))]


def _text(value, name: str) -> str | None:
    """A value as the page may show it: text, clean, bounded; None when absent or empty."""
    if value is None:
        return None
    text = cut(clean(str(value))[0].strip(), LIMITS[name])
    return text or None


def _item(record: dict, code: str, since: float) -> Item:
    location = record.get("location") if isinstance(record.get("location"), dict) else {}
    code = _text(code, "code") or ""
    return Item(alert_id=str(record["alert_id"])[:128], encounter_id=_text(record.get("encounter_id"), "encounter_id")
                or "", administration_id=_text(record.get("administration_id"), "administration_id"), code=code,
                title=TITLES.get(code, code), severity=_text(record.get("severity"), "severity") or "warn",
                message=_text(record.get("message"), "message") or "", unit=_text(location.get("unit"), "unit"),
                room=_text(location.get("room"), "room"), bed=_text(location.get("bed"), "bed"), since=since)
