"""Infusion pump evidence (coding-rules §9): what a pump reported, matched to the chart.

A pump's `device.delivery` events are evidence, never documentation: they do not create, change or
stop an administration, and are never billed by themselves. They say when an infusion really
started and stopped, which the chart may lack or contradict. Three alerts come of it:

- PUMP_STOPPED_UNDOCUMENTED (nursing): the pump stopped or completed and the matched administration
  still has no documented stop `pump_undocumented_minutes` later; names the pump's time.
- PUMP_INFUSION_UNDOCUMENTED (nursing): the pump delivered 16 minutes or more and no administration
  matches it (a missed charge and a documentation gap).
- PUMP_TIME_MISMATCH (coding, at discharge): the charted start or stop is more than
  `pump_mismatch_minutes` from the pump's; says whether the pump's times change the codes.

Events of one delivery are keyed by device, channel and order. Facts merge in any arrival order: a
delivery's events are kept sorted by time, and everything here is derived from them. A start after a
stop is a resume; a completion ends the delivery, and a start after it begins a new one. Times are
whole epoch minutes, as everywhere in the engine.
"""
from __future__ import annotations

from dataclasses import dataclass

from rules.administration import Administration, clock
from rules.alerts import AlertSpec
from rules.policy import Policy

UNDOCUMENTED_MIN_MINUTES = 16  # delivered this long with no charted administration: an infusion (CPT: 16+ min)
MAX_EVENTS = 200  # per delivery key: a pump reporting status every minute for a day is not kept whole


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery a pump reported: from a start to a completion, or to its last stop, or running."""
    key: str  # device|channel|order, and #n for the n-th delivery of that key
    device: str
    channel: str | None
    order_id: str | None
    drug: tuple[str | None, str | None, str | None]  # name, code, ingredient (any may be None)
    start: int  # minute of its first start
    offset: int
    end: int | None  # minute of its completion or final stop; None while running
    ended: str | None  # "completed" or "stopped"
    delivered: int  # minutes delivering, up to its end (or the clock while running)

    @property
    def where(self) -> str:
        return f"channel {self.channel}" if self.channel else "the pump"


def record(deliveries: dict[str, dict], event) -> None:
    """Keep one device.delivery event in `deliveries` (the encounter's JSON-friendly store)."""
    key = f"{event.device_id}|{event.channel or ''}|{event.order_id or ''}"
    entry = deliveries.get(key)
    if entry is None:
        drug = event.drug
        entry = deliveries[key] = {"device": event.device_id, "channel": event.channel, "order": event.order_id,
                                   "drug": [drug.name, drug.code, drug.ingredient] if drug else None, "events": []}
    elif entry["drug"] is None and event.drug is not None:
        entry["drug"] = [event.drug.name, event.drug.code, event.drug.ingredient]
    events = entry["events"]
    if len(events) < MAX_EVENTS:
        events.append([event.minute, event.offset, event.status])
        events.sort()


def derive(deliveries: dict[str, dict], now_minute: int) -> list[Delivery]:
    """Every delivery of the encounter, in start order."""
    out = []
    for key, entry in sorted(deliveries.items()):
        drug = tuple(entry["drug"]) if entry["drug"] else (None, None, None)
        for n, run in enumerate(_runs(entry["events"])):
            out.append(_delivery(f"{key}#{n}", entry, drug, run, now_minute))
    return sorted(out, key=lambda d: (d.start, d.key))


def _runs(events: list[list]) -> list[list[list]]:
    """Split a key's events into deliveries: each begins at a start and ends at its completion;
    stops and starts in between are pauses and resumes. Events before any start are dropped."""
    runs: list[list[list]] = []
    current: list[list] | None = None
    for event in events:
        status = event[2]
        if status == "started" and current is None:
            current = [event]
            runs.append(current)
        elif current is not None:
            current.append(event)
            if status == "completed":
                current = None
    return runs


def _delivery(key: str, entry: dict, drug: tuple, run: list[list], now: int) -> Delivery:
    delivered, since, end, ended = 0, None, None, None
    for minute, _, status in run:
        if status == "started":
            if since is None:
                since = minute
            end = ended = None
        else:
            if since is not None:
                delivered += minute - since
                since = None
            end, ended = minute, status
    if since is not None:  # running: delivered up to the clock
        delivered += max(0, now - since)
    return Delivery(key, entry["device"], entry["channel"], entry["order"], drug, run[0][0], run[0][1], end, ended,
                    delivered)


# -- matching -------------------------------------------------------------------------------------


def match(deliveries: list[Delivery], admins: dict[str, Administration], order_ids: dict[str, str | None],
          policy: Policy) -> dict[str, str]:
    """Delivery key -> administration id: by order id when both carry one, else by drug and a start
    within `pump_match_minutes`; each administration matches one delivery, the closest in time."""
    taken: dict[str, str] = {}
    used: set[str] = set()
    for d in deliveries:
        best = None
        for admin_id, a in admins.items():
            if admin_id in used or a.start is None or a.method != "infusion":
                continue
            order = order_ids.get(admin_id)
            if d.order_id and order:
                if d.order_id != order:
                    continue
                rank = (0, abs(a.start - d.start))
            elif abs(a.start - d.start) <= policy.pump_match_minutes and _same_drug(d.drug, a):
                rank = (1, abs(a.start - d.start))
            else:
                continue
            if best is None or rank < best[0]:
                best = (rank, admin_id)
        if best is not None:
            taken[d.key] = best[1]
            used.add(best[1])
    return taken


def _same_drug(drug: tuple, a: Administration) -> bool:
    name, code, ingredient = drug
    if name is None and code is None and ingredient is None:
        return True  # a pump that sends no drug label: matched by time alone
    if ingredient and a.ingredient and ingredient.casefold() == a.ingredient.casefold():
        return True
    if code and a.drug_code and code == a.drug_code:
        return True
    return bool(name) and (name.casefold() == a.drug_name.casefold()
                           or (a.ingredient is not None and name.casefold() == a.ingredient.casefold()))


# -- alerts ---------------------------------------------------------------------------------------


def nursing_alerts(deliveries: list[Delivery], matched: dict[str, str], admins: dict[str, Administration],
                   now: int, policy: Policy) -> list[AlertSpec]:
    """PUMP_STOPPED_UNDOCUMENTED and PUMP_INFUSION_UNDOCUMENTED standing at `now` (epoch minutes)."""
    out = []
    for d in deliveries:
        admin_id = matched.get(d.key)
        if admin_id is not None:
            a = admins[admin_id]
            if d.end is not None and a.stop is None and now >= d.end + policy.pump_undocumented_minutes:
                out.append(AlertSpec("PUMP_STOPPED_UNDOCUMENTED", admin_id, _stopped_message(d, a), d.key))
        elif d.delivered >= UNDOCUMENTED_MIN_MINUTES and now >= d.start + policy.pump_match_minutes:
            out.append(AlertSpec("PUMP_INFUSION_UNDOCUMENTED", None, _undocumented_message(d), d.key))
    return out


def deadlines(deliveries: list[Delivery], matched: dict[str, str], admins: dict[str, Administration],
              policy: Policy) -> list[int]:
    """Minutes at which a nursing alert above may fall due (the stream's wall-clock ticks)."""
    out = []
    for d in deliveries:
        admin_id = matched.get(d.key)
        if admin_id is not None:
            if d.end is not None and admins[admin_id].stop is None:
                out.append(d.end + policy.pump_undocumented_minutes)
        else:
            out.append(d.start + max(UNDOCUMENTED_MIN_MINUTES, policy.pump_match_minutes))
    return out


def pump_note(d: Delivery) -> str:
    """What the pump said of an ended delivery, for a nurse's stop-time message: 'pump: completed
    14:11 on channel 1/A'."""
    return f"pump: {d.ended} {clock(d.end, d.offset)} on {d.where}"


def _stopped_message(d: Delivery, a: Administration) -> str:
    site = f" on {a.access_site}" if a.access_site else ""
    return (f"{a.drug_name} infusion started {clock(a.start, a.offset)}{site}: the pump reported it {d.ended} at "
            f"{clock(d.end, d.offset)} on {d.where}, and the MAR has no stop: document the stop time.")


def _undocumented_message(d: Delivery) -> str:
    # Only what stays true while the delivery goes on: the alert says the same from 16 minutes to its end.
    drug = d.drug[0] or "an infusion (no drug label)"
    order = f" for order {d.order_id}" if d.order_id else ""
    return (f"The pump delivered {drug}{order} on {d.where} from {clock(d.start, d.offset)} for "
            f"{UNDOCUMENTED_MIN_MINUTES} minutes or more, and no administration on the MAR matches it: chart the "
            "administration (an infusion given and not charted cannot be billed).")


def mismatch_alerts(deliveries: list[Delivery], matched: dict[str, str], admins: dict[str, Administration],
                    policy: Policy, recode) -> list[AlertSpec]:
    """PUMP_TIME_MISMATCH for each matched administration whose charted start or stop is more than
    `pump_mismatch_minutes` from the pump's. `recode(admin_id, start, stop)` gives the encounter's
    (cpt, units) lines with those times for that administration, and with the charted ones when
    called with None."""
    out = []
    charted = None
    for d in deliveries:
        admin_id = matched.get(d.key)
        if admin_id is None:
            continue
        a = admins[admin_id]
        start_off = abs(a.start - d.start)
        stop_off = abs(a.stop - d.end) if a.stop is not None and d.end is not None else 0
        if max(start_off, stop_off) <= policy.pump_mismatch_minutes:
            continue
        if charted is None:
            charted = recode(None, None, None)
        with_pump = recode(admin_id, d.start, d.end if d.end is not None and a.stop is not None else a.stop)
        out.append(AlertSpec("PUMP_TIME_MISMATCH", admin_id, _mismatch_message(d, a, start_off, stop_off,
                                                                              charted, with_pump), d.key))
    return out


def _mismatch_message(d: Delivery, a: Administration, start_off: int, stop_off: int, charted, with_pump) -> str:
    chart = f"{clock(a.start, a.offset)}–{clock(a.stop, a.offset) if a.stop is not None else '(no stop)'}"
    pump = f"{clock(d.start, d.offset)}–{clock(d.end, d.offset) if d.end is not None else '(running)'}"
    diffs = [f"start by {start_off} min" if start_off > 0 else "", f"stop by {stop_off} min" if stop_off > 0 else ""]
    if with_pump == charted:
        effect = "the codes and units would be the same with the pump's times"
    else:
        effect = (f"with the pump's times the lines would be {_lines(with_pump)} instead of {_lines(charted)}: "
                  "check the chart against the pump before the claim goes out")
    return (f"{a.drug_name}: the chart says {chart}, the pump {pump} on {d.where} (they differ: "
            f"{', '.join(x for x in diffs if x)}); {effect}.")


def _lines(lines) -> str:
    return ", ".join(f"{cpt} x{units}" for cpt, units in lines) or "none"
