"""The nursing worklist's view (gateways/board.py) and its HTTP endpoints, without a broker."""
from __future__ import annotations

import asyncio

import orjson
from aiohttp.test_utils import TestClient, TestServer

from gateways.board import Board
from gateways.worklist import Worklist, make_app
from tests.events import discharge, run, start, stop

WARD = {"unit": "4WEST", "room": "412", "bed": "B"}


def alerts_of(events: list[dict]) -> list[dict]:
    return [r for r in run(events) if r["kind"] == "alert"]


def test_a_raised_documentation_problem_shows_and_its_resolution_removes_it():
    board = Board()
    records = alerts_of([start("A1", "10:00", location=WARD), discharge("11:00"), stop("A1", "10:40")])
    raised, resolved = [r for r in records if r["code"] == "STOP_TIME_MISSING"]
    kind, item = board.apply(raised, since=1000.0)
    assert kind == "add" and (item["unit"], item["room"], item["title"]) == ("4WEST", "412", "Stop time missing")
    assert "document the stop time" in item["message"].lower() or "stop" in item["message"].lower()
    assert board.apply(raised, since=1001.0) is None  # re-delivered: shown once
    assert board.apply(resolved, since=1002.0) == ("remove", {"alert_id": raised["alert_id"], "unit": "4WEST"})
    assert board.snapshot() == []


def test_coders_findings_and_other_records_stay_off_the_nurses_page():
    board = Board()
    finding = {"kind": "alert", "alert_id": "al-1", "encounter_id": "E1", "administration_id": None,
               "code": "PREBILL_MISSED_CHARGE", "severity": "warn", "state": "raised", "message": "m"}
    v1_finding = {k: v for k, v in finding.items()}  # v1: no audience, placed by its code
    assert board.apply({**finding, "audience": "coding"}, 1.0) is None
    assert board.apply(v1_finding, 1.0) is None
    assert board.apply({"kind": "charge", "charge_id": "c"}, 1.0) is None
    assert board.apply(["not", "a", "record"], 1.0) is None
    v1_nursing = {**finding, "alert_id": "al-2", "code": "STOP_TIME_OVERDUE"}
    assert board.apply(v1_nursing, 1.0)[1]["unit"] is None  # grouped apart: a unit may be called anything


def test_snapshot_by_unit_and_the_limit():
    board = Board(limit=2)
    for n, unit in enumerate(["ICU", "4WEST", "ICU"]):
        board.apply({"kind": "alert", "alert_id": f"al-{n}", "encounter_id": f"E{n}", "code": "STOP_TIME_MISSING",
                     "severity": "hard", "state": "raised", "message": "m", "location": {"unit": unit}}, float(n))
    assert board.dropped == 1 and board.units() == ["4WEST", "ICU"]
    assert [i["alert_id"] for i in board.snapshot("ICU")] == ["al-2"]


async def test_page_events_and_api():
    worklist = Worklist(max_clients=1)
    async with TestClient(TestServer(make_app(worklist))) as client:
        page = await client.get("/")
        html = await page.text()
        assert page.status == 200 and "EventSource" in html and "Server" not in page.headers
        assert "http://" not in html and "https://" not in html  # nothing loaded from anywhere
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        stream = await client.get("/events?unit=4WEST")
        first = await stream.content.readuntil(b"\n\n")
        assert first.startswith(b"event: snapshot\n")
        assert (await client.get("/events")).status == 503  # one page allowed here
        [raised] = [r for r in alerts_of([start("A1", "10:00", location=WARD), discharge("11:00")])
                    if r["code"] == "STOP_TIME_MISSING"]
        worklist.apply({**raised, "location": {"unit": "ICU"}, "alert_id": "other"}, 5.0)  # another unit
        worklist.apply(raised, 5.0)
        added = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
        assert added.startswith(b"event: add\n") and raised["alert_id"].encode() in added
        body = orjson.loads(await (await client.get("/api/alerts?unit=ICU")).read())
        assert [i["alert_id"] for i in body["items"]] == ["other"] and body["units"] == ["4WEST", "ICU"]
        assert (await client.post("/")).status == 405
        stream.close()
