"""How a pump's message is linked to a visit when it carries none (IHE PCD messages seldom do).

No public pump message fills PV1-19, and a PIV order (RGV^O15) names a patient and an order, not
a visit. What links them is the order: the MAR's administration carries its placer order number
(HL7 ORC-2, FHIR request: contract v1.2 `order_id`) and its visit; a pump programmed from that order
reports it (OBR-2), or a PIV message associated the pump with it first. `PumpLinks` remembers both,
from what the same listener translated: orders to visits, pumps to orders. Never a patient name.

It is memory of one process, bounded (the oldest entries go first): a pump message is linked when
the MAR administration (or the PIV association) reached the same listener before it. Pump gateways
that fill PV1-19 need none of it.
"""
from __future__ import annotations

from collections import OrderedDict

MAX_ENTRIES = 200_000  # orders and pumps each: a large hospital's week of infusion orders


class PumpLinks:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._visits: OrderedDict[str, str] = OrderedDict()  # order id -> encounter id
        self._orders: OrderedDict[str, str] = OrderedDict()  # pump (device id) -> order id

    def learn(self, events: list[dict]) -> None:
        """Orders of the administrations just translated (any feed's), with their visits."""
        for event in events:
            if event.get("type") == "administration.started" and event.get("order_id"):
                self.order_visit(event["order_id"], event["encounter_id"])

    def order_visit(self, order_id: str, encounter_id: str) -> None:
        _put(self._visits, order_id, encounter_id, self.max_entries)

    def associate(self, device_id: str, order_id: str) -> None:
        """A PIV association: this pump was programmed with this order."""
        _put(self._orders, device_id, order_id, self.max_entries)

    def order_of(self, device_id: str) -> str | None:
        return self._orders.get(device_id)

    def visit_of(self, order_id: str | None) -> str | None:
        return self._visits.get(order_id) if order_id else None


def _put(table: OrderedDict, key: str, value: str, limit: int) -> None:
    table.pop(key, None)
    table[key] = value
    while len(table) > limit:
        table.popitem(last=False)
