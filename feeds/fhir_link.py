"""Which visit a MedicationAdministration sent without `context` belongs to.

CMS's eCQM test data and many US servers send MedicationAdministration without `context` (it is
optional in R4). The visit is then the Encounter of the same patient (`subject`) whose period covers
the administration's time: one that the same Bundle carries, or that `fhir serve` (or `fhir
translate`, over the files of one run) received earlier. Exactly one must cover it: none, or two
(adjacent visits overlapping at the handover), and the sender is asked for `context`; a visit is
never guessed, never found by name.

The index holds, per patient, the visits' ids and periods: at most `max_subjects` patients, the
least recently seen dropped first (the oldest visits are the least likely to be referred to).
Memory only; nothing of it is logged.
"""
from __future__ import annotations

import datetime as dt
from collections import OrderedDict

from feeds.fhir_model import Reference

MAX_SUBJECTS = 10_000


class Encounters:
    def __init__(self, max_subjects: int = MAX_SUBJECTS) -> None:
        self.max_subjects = max_subjects
        self._by_subject: OrderedDict[str, dict[str, tuple[dt.datetime | None, dt.datetime | None]]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_subject.values())

    def add(self, subject: str, encounter_id: str, start: dt.datetime | None, end: dt.datetime | None) -> None:
        visits = self._by_subject.pop(subject, {})
        visits[encounter_id] = (start, end)
        self._by_subject[subject] = visits
        while len(self._by_subject) > self.max_subjects:
            self._by_subject.popitem(last=False)

    def covering(self, subject: str, at: dt.datetime) -> list[str]:
        """The visits of `subject` whose period covers `at` (an open period covers what follows its start)."""
        visits = self._by_subject.get(subject)
        if not visits:
            return []
        self._by_subject.move_to_end(subject)
        return sorted(eid for eid, (start, end) in visits.items()
                      if start is not None and start <= at and (end is None or at <= end))


def subject_key(ref: Reference | None) -> str | None:
    """A patient reference as one string: `Patient/{id}` for a literal reference (base URL and
    _history dropped), `{value}^^^{system}` for a logical one (as HL7's CX writes an identifier and
    its authority); None when it names no patient."""
    if ref is None:
        return None
    if ref.reference:
        tail = ref.reference.split("/_history/")[0].rstrip("/").split("/")
        if len(tail) >= 2 and tail[-2] == "Patient" and tail[-1]:
            return f"Patient/{tail[-1]}"[:128]
        if ref.reference.startswith("urn:uuid:"):
            return ref.reference[:128]
        return None
    if ref.identifier is not None and ref.identifier.value:
        value = ref.identifier.value.strip()
        return (f"{value}^^^{ref.identifier.system}" if ref.identifier.system else value)[:128]
    return None
