"""Coding-rules §1 and §5: turn administrations into services, or into documentation alerts.

Source: Noridian JE A drug administration (push = 15 minutes or less, time decides over the
documented method); CMS IOM 100-04 ch.4 §230.2 (kvo/flush/carrier fluid is not separately billed).
"""
from __future__ import annotations

from rules.administration import PUSH_MAX_MINUTES, Administration, Service, clock
from rules.alerts import AlertSpec
from rules.facts import instant_ok
from rules.policy import Policy

PROLONGED_PUMP_MINUTES = 8 * 60  # CPT 96416: a chemotherapy infusion of more than 8 hours on a pump

_CATEGORY_ORDER = {"chemotherapy": 0, "therapeutic": 1, "hydration": 2}
_PUSH_METHODS = ("push", "injection")


def merge_containers(admins: list[Administration]) -> list[Administration]:
    """Two drugs in one bag (one container_id) are one administration (coding-rules §3)."""
    by_container: dict[str, list[Administration]] = {}
    out = []
    for a in admins:
        if a.container_id and a.purpose == "treatment":
            by_container.setdefault(a.container_id, []).append(a)
        else:
            out.append(a)
    for bag in by_container.values():
        out.append(bag[0] if len(bag) == 1 else _merge(bag))
    return out


def _merge(bag: list[Administration]) -> Administration:
    bag = sorted(bag, key=lambda a: a.id)
    starts = [a.start for a in bag if a.start is not None]
    stops = [a.stop for a in bag]
    first = min(bag, key=lambda a: (a.start is None, a.start or 0))
    return Administration(
        id=bag[0].id,
        ids=tuple(i for a in bag for i in a.ids),
        drug_name=" + ".join(a.drug_name for a in bag),
        drug_code=None,
        category=min((a.category for a in bag), key=_CATEGORY_ORDER.__getitem__),
        route=first.route,
        method="infusion" if any(a.method == "infusion" for a in bag) else first.method,
        start=min(starts) if starts else None,
        stop=max(stops) if None not in stops else None,
        offset=first.offset,
        access_site=next((a.access_site for a in bag if a.access_site), None),
        separate_access_reason=next((a.separate_access_reason for a in bag if a.separate_access_reason), None),
        container_id=first.container_id,
        ordered_duration_minutes=max((a.ordered_duration_minutes or 0 for a in bag), default=0) or None,
        primary_reason=any(a.primary_reason for a in bag),
    )


def classify(a: Administration, policy: Policy, alerts: list[AlertSpec],
             discharge_minute: int | None = None) -> Service | None:
    """The service an administration is billed as, or None; documentation gaps go to `alerts`.
    `discharge_minute`: when the encounter was discharged (a pump still running then, §3 96416)."""
    if a.purpose != "treatment":
        return None  # kvo/flush/carrier: never billed, never hydration or drug time
    if a.start is None:
        alerts.append(AlertSpec("START_TIME_MISSING", a.id, _msg_start_missing(a)))
        return None
    if a.stop is not None and (a.stop < a.start or (a.stop == a.start and not instant_ok(a.method, a.category))):
        alerts.append(AlertSpec("STOP_BEFORE_START", a.id, stop_before_start_message(a)))
        return None
    if a.pump_stop:  # coded on the pump's stop (pump_stop_times = "fallback"): the chart still lacks one
        alerts.append(AlertSpec("STOP_TIME_MISSING", a.id, _msg_stop_from_pump(a)))
    if _prolonged_pump(a, discharge_minute):
        return Service(a, "prolonged_pump", 0)
    if a.route in ("SC", "IM"):
        return _classify_standalone(a, policy, alerts)
    if a.category == "hydration":
        return _classify_hydration(a, alerts)
    return _classify_drug(a, policy, alerts)


def _prolonged_pump(a: Administration, discharge_minute: int | None) -> bool:
    """A chemotherapy infusion on a pump, ordered for more than 8 hours, still running at discharge:
    the initiation of a prolonged infusion on a portable or implantable pump (CPT 96416; the 46-hour
    5-FU pump of a FOLFOX day). Its stop is charted when the pump is disconnected, days later."""
    return (a.category == "chemotherapy" and a.method == "infusion" and a.device == "pump"
            and a.route in ("IV", "IA") and (a.ordered_duration_minutes or 0) > PROLONGED_PUMP_MINUTES
            and discharge_minute is not None and (a.stop is None or a.stop > discharge_minute))


def _classify_drug(a: Administration, policy: Policy, alerts: list[AlertSpec]) -> Service | None:
    if a.stop is None:
        if a.method in _PUSH_METHODS:
            return Service(a, "push", 0)
        alerts.append(AlertSpec("STOP_TIME_MISSING", a.id, _msg_stop_missing(a, policy)))
        return Service(a, "push", 0, incomplete=True) if policy.missing_stop_fallback == "push" else None
    minutes = a.stop - a.start
    if minutes <= PUSH_MAX_MINUTES:
        return Service(a, "push", minutes)
    if a.method in _PUSH_METHODS:
        alerts.append(AlertSpec("METHOD_TIME_CONFLICT", a.id, _msg_method_conflict(a, minutes)))
    return Service(a, "infusion", minutes)


def _classify_hydration(a: Administration, alerts: list[AlertSpec]) -> Service | None:
    if a.stop is None:
        if a.method == "infusion":
            alerts.append(AlertSpec("STOP_TIME_MISSING", a.id, _msg_stop_missing(a, None)))
        return None  # hydration is billed by time: without a stop there is nothing to bill
    return Service(a, "hydration", a.stop - a.start)


def _classify_standalone(a: Administration, policy: Policy, alerts: list[AlertSpec]) -> Service | None:
    if a.route != "SC" or a.method != "infusion":
        return Service(a, "injection", 0 if a.stop is None else a.stop - a.start)
    if a.stop is None:
        alerts.append(AlertSpec("STOP_TIME_MISSING", a.id, _msg_stop_missing(a, policy)))
        return Service(a, "injection", 0, incomplete=True) if policy.missing_stop_fallback == "push" else None
    minutes = a.stop - a.start
    return Service(a, "sc_infusion" if minutes > PUSH_MAX_MINUTES else "injection", minutes)


def _on(a: Administration) -> str:
    """The access site in a nurse's message: which line to look at on the patient."""
    return f" on {a.access_site}" if a.access_site else ""


def _msg_stop_missing(a: Administration, policy: Policy | None) -> str:
    fallback = ("it will be billed as a push until then" if policy and policy.missing_stop_fallback == "push"
                else "it cannot be billed until then")
    return (f"{a.drug_name} {a.route} {a.method} started {clock(a.start, a.offset)}{_on(a)} has no stop time: "
            f"document the stop time in the MAR; {fallback}.")


def _msg_stop_from_pump(a: Administration) -> str:
    return (f"{a.drug_name} {a.route} {a.method} started {clock(a.start, a.offset)}{_on(a)} has no stop time: "
            f"document the stop time in the MAR; it is billed on the pump's stop at {clock(a.stop, a.offset)} "
            "until then (documentation incomplete).")


def _msg_start_missing(a: Administration) -> str:
    return (f"{a.drug_name or 'administration'} {a.id}{_on(a)} has a stop time but no start: "
            "document the start time in the MAR; it cannot be billed until then.")


def stop_before_start_message(a: Administration) -> str:
    if a.stop == a.start:
        return (f"{a.drug_name} {a.id}{_on(a)}: an {a.method if a.category != 'hydration' else 'hydration'} charted "
                f"with its stop at its start ({clock(a.start, a.offset)}): document when it really stopped in the "
                "MAR; it cannot be billed until then.")
    return (f"{a.drug_name} {a.id}{_on(a)}: stop {clock(a.stop, a.offset)} is not after start "
            f"{clock(a.start, a.offset)}: correct the times in the MAR; it cannot be billed until then.")


def _msg_method_conflict(a: Administration, minutes: int) -> str:
    return (f"{a.drug_name}{_on(a)} documented as a {a.method} lasted {minutes} min "
            f"({clock(a.start, a.offset)}–{clock(a.stop, a.offset)}): a push is 15 minutes or less, so it "
            "is coded as an infusion; check the documented method or times.")
