"""Every rejection path of the contract, and the reason a producer team would read."""
import datetime as dt
import json

import pytest

from models.errors import BadEvent
from models.events import parse_event
from tests.events import start, stop


def _start(**override):
    e = start("A1", "10:00")
    e.update(override)
    return json.dumps(e)


@pytest.mark.parametrize("raw,category,words", [
    ("{not json", "invalid_json", "not valid JSON"),
    ('{"event_id": "e1"', "invalid_json", "not valid JSON"),
    ("[1, 2]", "schema", "event: Input should be an object"),
    ('"text"', "schema", "Input should be an object"),
    ('{"event_id":"e","encounter_id":"E"}', "schema", "type: every event needs a type field"),
    (_start(type="administration.paused"), "schema", "type must be one of administration.started"),
    (_start(occurred_at="2026-03-02T10:00:00"), "timestamp", "add the UTC offset"),
    (_start(occurred_at="yesterday"), "timestamp", "occurred_at"),
    (_start(occurred_at="2099-03-02T10:00:00Z"), "timestamp", "in the future"),
    (_start(occurred_at="1999-03-02T10:00:00Z"), "timestamp", "before 2000"),
    (_start(category="vitamins"), "schema", "category: Input should be 'chemotherapy', 'therapeutic' or"),
    (_start(route="PO"), "schema", "route: Input should be 'IV', 'IA', 'SC' or 'IM'"),
    (_start(method="drip"), "schema", "method: Input should be"),
    (_start(purpose="bolus"), "schema", "purpose: Input should be"),
    (_start(ordered_duration_minutes=-5), "schema", "ordered_duration_minutes: Input should be greater than 0"),
    (_start(ordered_duration_minutes="an hour"), "schema", "ordered_duration_minutes: Input should be a valid integer"),
    (_start(drug={"code": "1"}), "schema", "drug.name: Field required"),
    (_start(encounter_id=""), "schema", "encounter_id: String should have at least 1 character"),
    (_start(encounter_id="x" * 500), "schema", "encounter_id: String should have at most 128 characters"),
    (_start(primary_reason="maybe"), "schema", "primary_reason: Input should be a valid boolean"),
    (json.dumps({**stop("A1", "10:00"), "administration_id": None}), "schema", "administration_id"),
    (json.dumps({k: v for k, v in stop("A1", "10:00").items() if k != "administration_id"}), "schema",
     "administration_id: Field required"),
    (json.dumps({"event_id": "e", "type": "charges.submitted", "encounter_id": "E",
                 "occurred_at": "2026-03-02T10:00:00Z", "lines": [{"cpt": "96365", "units": 0}]}),
     "schema", "lines.0.units: Input should be greater than or equal to 1"),
    (json.dumps({"event_id": "e", "type": "charges.submitted", "encounter_id": "E",
                 "occurred_at": "2026-03-02T10:00:00Z", "lines": [{"cpt": "hello", "units": 1}]}),
     "schema", "lines.0.cpt: String should match pattern"),
])
def test_rejections_carry_a_reason(raw, category, words):
    with pytest.raises(BadEvent) as err:
        parse_event(raw)
    assert words in str(err.value)
    assert err.value.category == category


def test_many_problems_are_summarized():
    with pytest.raises(BadEvent, match="and 2 more problem"):
        parse_event(_start(category="x", route="x", method="x", purpose="x", device="x"))


def test_extra_fields_and_schema_version_are_accepted():
    event = parse_event(_start(schema_version=1, pump_serial="X-1", drug={"name": "x", "code": None, "extra": 1}))
    assert event.schema_version == 1 and event.drug.name == "x"


def test_defaults_of_the_contract():
    event = parse_event(_start())
    assert event.purpose == "treatment"
    d = parse_event(json.dumps({"event_id": "e", "type": "encounter.discharged", "encounter_id": "E",
                                "occurred_at": "2026-03-02T10:00:00+01:00"}))
    assert (d.patient_class, d.billing) == ("outpatient", "facility")
    assert d.occurred_at.utcoffset() == dt.timedelta(hours=1)
