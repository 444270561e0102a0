"""Text from the feeds is data (issue 28): hostile payloads in every text a sender controls, through
the HL7 (MLLP) and FHIR (HTTP) feeds, the real worker and broker, into the nurses' worklist and the
coder's report, both opened in headless Chromium.

What must hold: no script runs and no element is injected (markup, script-breaking, `javascript:`,
CSS, HL7 hex escapes that decode to markup); a formatting escape never expands (`\\.sk100000000\\`);
control and bidirectional-override characters never reach a page (a right-to-left override cannot
reverse an instruction, nor make `4WEST` appear as a second unit); every output is bounded (a 64 KB
message cannot make more than a bounded output anywhere); pages keep their width (long unbroken text
wraps); the worklist answers only to its host names, with a policy that allows no inline script.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import re
import urllib.request

import aiohttp
import orjson
import pytest

from cli.report import build
from cli.report_html import render
from feeds import DrugClasses, translate_fhir, translate_hl7
from gateways import fhir_http, mllp
from gateways.bridge import Bridge
from gateways.worklist import Worklist, consume, serve
from tests.stream_harness import Worker, unique_settings
from tests.test_worklist_browser import _browser, _wait

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PWN = "window.__pwned=1"
BIDI = "\u202e"  # RIGHT-TO-LEFT OVERRIDE
PAYLOADS = {
    "markup": f"<img src=x onerror={PWN}>",
    "script": f"</script><script>{PWN}</script>",
    "js-url": f"javascript:{PWN}",
    "css": "</style><style>body{display:none}</style>",
    "attribute": f"warn\" autofocus onfocus=\"{PWN}",
    "bidi": f"vancomycin {BIDI}emit pots eht tnemucod{BIDI}",
    "controls": "vanco\x00my\x1b[31mcin\x07\x85",
    "emoji": "vancomycin \U0001F600\U0001F468\u200d\U0001F469\u200d\U0001F467",
    "long": "A" * 10_000,
}
UNIT = f"4WEST{BIDI}"  # after cleaning: 4WEST, the same unit, not a second one that looks alike


def _at(hours_ago: float) -> str:
    return (NOW - dt.timedelta(hours=hours_ago)).strftime("%Y%m%d%H%M%S+0000")


def hl7_escape(text: str) -> str:
    """A payload as a sender writes it into a field: the delimiters escaped (the rest is data)."""
    return (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
            .replace("~", "\\R\\").replace("\r", "\\.br\\").replace("\n", "\\.br\\"))


def ras(visit: str, drug_text: str, unit: str = "4WEST", raw_drug: bool = False) -> bytes:
    """An infusion started three hours ago and never stopped (its discharge raises STOP_TIME_MISSING)."""
    drug = drug_text if raw_drug else hl7_escape(drug_text)
    return ("\r".join([
        f"MSH|^~\\&|MAR|GENHOSP|IV|GENHOSP|{_at(3)}||RAS^O17^RAS_O17|M{visit}|P|2.5.1",
        f"PID|1||MRN{visit}^^^GENHOSP^MR",
        f"PV1|1|O|{hl7_escape(unit)}^{hl7_escape(drug_text[:80])}^B||||||||||||||||{visit}",
        f"ORC|RE|PL{visit}|RX{visit}||IP",
        f"RXA|0|1|{_at(3)}||11124^{drug}^RXNORM|1||||||||||||||IP|A",
        "RXR|IV|LMFA|IVP|IVPB"]) + "\r").encode("utf-8")


def a03(visit: str) -> bytes:
    return ("\r".join([f"MSH|^~\\&|ADT|GENHOSP|IV|GENHOSP|{_at(0.5)}||ADT^A03^ADT_A03|A{visit}|P|2.5.1",
                       f"EVN|A03|{_at(0.5)}", f"PID|1||MRN{visit}^^^GENHOSP^MR",
                       f"PV1|1|O|4WEST^1^A||||||||||||||||{visit}" + "|" * 26 + _at(4) + "|" + _at(0.5)])
            + "\r").encode("utf-8")


def fhir_pair(visit: str, text: str) -> dict:
    """A MedicationAdministration named by the payload, and its visit finished with the payload as its place."""
    start = (NOW - dt.timedelta(hours=3)).isoformat()
    return {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "MedicationAdministration", "id": f"ma-{visit}", "status": "in-progress",
                      "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "11124"}], "text": text},
                      "context": {"reference": f"Encounter/{visit}"}, "effectivePeriod": {"start": start},
                      "dosage": {"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
                                 "method": {"text": "IV infusion"}, "site": {"text": text[:100]}}}},
        {"resource": {"resourceType": "Encounter", "id": visit, "status": "finished",
                      "class": {"code": "AMB"}, "period": {"start": start, "end": (NOW - dt.timedelta(minutes=30)).isoformat()},
                      "location": [{"location": {"display": text[:200]}}]}}]}


# -- at the edge: bounded, clean ------------------------------------------------------------------

def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_every_text_a_translator_hands_on_is_clean_and_within_the_contract(name):
    for t in (translate_hl7(ras("V1", PAYLOADS[name], UNIT), DrugClasses.load()),
              *translate_fhir(fhir_pair("V1", PAYLOADS[name]), DrugClasses.load())):
        for s in _strings([t.events, t.alerts, t.problems]):
            assert s.isprintable(), (name, s[:80])
        for e in t.events:
            assert len(e.get("drug", {}).get("name", "")) <= 256 and len(orjson.dumps(e)) < 4096


def test_a_formatting_escape_never_expands():
    """python-hl7 makes 100 MB of `\\.sk100000000\\`; a bounded reading makes one space."""
    raw = ras("V2", "cef\\.sk100000000\\triaxone", raw_drug=True)
    [e] = translate_hl7(raw, DrugClasses.load()).events
    assert e["drug"]["name"] == "cef triaxone"
    for seq in ("\\.sp99999\\", "\\.in99999\\", "\\.ti-99999\\", "\\.br\\", "\\H\\", "\\N\\", "\\Zfoo\\", "\\C2842\\"):
        [e] = translate_hl7(ras("V2", f"van{seq}comycin", raw_drug=True), DrugClasses.load()).events
        assert len(e["drug"]["name"]) <= len("van comycin"), seq


def test_a_hex_escape_is_decoded_in_the_message_s_character_set_and_stays_text():
    markup = "<img src=x onerror=1>".encode().hex().upper()
    [e] = translate_hl7(ras("V3", f"\\X{markup}\\", raw_drug=True), DrugClasses.load()).events
    assert e["drug"]["name"] == "<img src=x onerror=1>"  # text: the pages escape it
    latin = "é".encode("latin-1").hex()  # in 8859/1, \XE9\ is é
    raw = ras("V3", f"caf\\X{latin}\\", raw_drug=True).replace(b"|2.5.1", b"|2.5.1||||||8859/1", 1)
    assert translate_hl7(raw, DrugClasses.load()).events[0]["drug"]["name"] == "café"


def test_a_64_kb_message_makes_a_bounded_output_everywhere():
    """Hostile 64 KB messages: every escape at once, 300 RXAs of unknown drugs with long names and
    ids; the events, alerts, problems and the ACK each stay bounded."""
    drugs = DrugClasses.load()
    rxas = "".join(f"\rRXA|0|{n}|{_at(3)}||LOCAL{n}^{'X' * 120}\\.sk99999\\^99LOCAL|1||||||||||||||IP|A\rRXR|IV"
                   for n in range(300))
    raw = (ras("V" * 120, "vancomycin").decode().rstrip("\r") + rxas + "\r").encode()
    assert 60_000 < len(raw) <= 65_536
    t = translate_hl7(raw, drugs)
    ack = mllp.build_ack(raw, t.ack, t.error, t.problems, t.category)
    outputs = {"alerts": orjson.dumps(t.alerts), "problems": orjson.dumps(t.problems), "ack": ack}
    for what, size in ((k, len(v)) for k, v in outputs.items()):
        assert size <= 256 * 1024, (what, size)
    assert len(t.alerts) <= 100 and len(t.problems) <= 101


def test_unknown_drug_alerts_quote_bounded_text():
    t = translate_hl7(ras("V" * 5000, "x", raw_drug=True).replace(b"11124^x^RXNORM", b"LOC1^" + b"N" * 10_000 + b"^L"),
                      DrugClasses.load())
    for alert in t.alerts:
        assert len(alert["message"]) < 1500 and len(alert["encounter_id"]) <= 128


# -- the report from a crafted file ---------------------------------------------------------------

def test_the_report_from_a_crafted_file_quotes_every_attribute_and_draws_labels_as_text():
    records = [{"kind": "alert", "alert_id": "a1", "encounter_id": "E<1>", "administration_id": None,
                "code": "PREBILL_CODE_MISMATCH", "severity": f"warn autofocus onfocus={PWN}", "state": "raised",
                "message": PAYLOADS["script"], "audience": "coding"},
               {"kind": "charge", "charge_id": "c1", "action": "post", "reverses": None, "encounter_id": "E<1>",
                "cpt": "$x^{$", "units": 1, "modifiers": [], "service_date": "2026-03-02", "administration_ids": [],
                "incomplete_documentation": False, "explanation": PAYLOADS["bidi"] + PAYLOADS["controls"]}]
    page = render(build([("crafted", io.BytesIO(b"".join(orjson.dumps(r) + b"\n" for r in records)), None)]), None)
    assert "autofocus" not in page and "onfocus" not in page and "<script>" not in page
    assert BIDI not in page and "\x00" not in page and "\x1b" not in page
    assert "$x^{$" in page  # the CPT label drawn as plain text (matplotlib did not read it as math)
    assert 'content="default-src \'none\'' in page


# -- end to end: feeds -> worker -> worklist and report, in Chromium -------------------------------

CHECKS = """
const texts = document.body.innerText;
return {
  pwned: window.__pwned === 1,
  injected: document.querySelectorAll("img,iframe,object,embed,link,meta[http-equiv=refresh]").length,
  scripts: document.scripts.length,
  styles: document.querySelectorAll("style").length,
  visible: getComputedStyle(document.body).display !== "none",
  wide: document.documentElement.scrollWidth > window.innerWidth + 2,
  controls: /[\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]/.test(texts),
  units: [...document.querySelectorAll("#unit option")].map(o => o.textContent),
};
"""


async def test_hostile_text_through_both_feeds_reaches_the_pages_as_inert_bounded_text(broker, tmp_path):
    browser = await asyncio.to_thread(_browser)
    settings = unique_settings(broker.bootstrap)
    drugs, worklist, stop = DrugClasses.load(), Worklist(), asyncio.Event()
    visits = {name: f"H{n:02d}" for n, name in enumerate(sorted(PAYLOADS))}
    try:
        async with Worker(settings) as w:
            bridge = Bridge(w.producer, settings.topics)
            listener = await mllp.serve(bridge, drugs, "127.0.0.1", 0)
            endpoint = await fhir_http.serve(bridge, drugs, "127.0.0.1", 0)
            runner = await serve(worklist, "127.0.0.1", 0)
            page_port = runner.addresses[0][1]
            reading = asyncio.create_task(consume(settings, worklist, stop))
            try:
                mllp_port = listener.sockets[0].getsockname()[1]
                messages = [m for name, visit in visits.items() for m in (ras(visit, PAYLOADS[name], UNIT), a03(visit))]
                messages.append(ras("H99", "cef\\.sk100000000\\triaxone", raw_drug=True))
                acks = [ack async for _, ack in mllp.send("127.0.0.1", mllp_port, messages)]
                assert all(len(a) < 4096 for a in acks)
                async with aiohttp.ClientSession() as http:
                    for name, visit in visits.items():
                        async with http.post(f"http://127.0.0.1:{endpoint.addresses[0][1]}/fhir",
                                             data=orjson.dumps(fhir_pair("F" + visit, PAYLOADS[name])),
                                             headers={"Content-Type": "application/fhir+json"}) as resp:
                            assert resp.status in (200, 422) and len(await resp.read()) < 64 * 1024
                records = await w.collect(lambda r: sum(x.get("code") == "STOP_TIME_MISSING" for x in r) >= 2 * (len(visits) - 1),
                                          timeout=90)
                await asyncio.to_thread(browser.get, f"http://127.0.0.1:{page_port}/")
                await asyncio.to_thread(_wait, browser, lambda b: b.find_elements("css selector", "li.item") and
                                        b.find_element("id", "status").text == "live")
                await asyncio.sleep(1.0)
                seen = await asyncio.to_thread(browser.execute_script, CHECKS)
                html_size = len(await asyncio.to_thread(lambda: browser.page_source))
                headers = await asyncio.to_thread(_headers, page_port)
                refused = await asyncio.to_thread(_status_for_host, page_port, "evil.example")
            finally:
                stop.set()
                await reading
                await runner.cleanup()
                await endpoint.cleanup()
                listener.close()
                await listener.wait_closed()
        assert seen["pwned"] is False and seen["injected"] == 0 and seen["visible"]
        assert seen["scripts"] == 1 and seen["styles"] == 1 and not seen["wide"] and not seen["controls"]
        assert seen["units"].count("4WEST") == 1 and len(seen["units"]) == len(set(seen["units"]))
        assert html_size < 2 * 1024 * 1024
        assert headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'sha256-")
        assert "unsafe-inline" not in headers["Content-Security-Policy"].split("style-src")[0]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert (headers["X-Content-Type-Options"], headers["Referrer-Policy"], headers["Cache-Control"]) == (
            "nosniff", "no-referrer", "no-store")
        assert refused == 421

        # the coder's report of the same records, opened in the same browser
        report = tmp_path / "report.html"
        outputs = b"".join(orjson.dumps(r) + b"\n" for r in records if r["kind"] in ("charge", "alert"))
        report.write_text(render(build([("hostile", io.BytesIO(outputs), None)]), None), encoding="utf-8")
        assert report.stat().st_size < 2 * 1024 * 1024
        await asyncio.to_thread(browser.get, report.as_uri())
        seen = await asyncio.to_thread(browser.execute_script, CHECKS)
        assert seen["pwned"] is False and seen["injected"] == 0 and seen["scripts"] == 0 and seen["visible"]
        assert not seen["wide"] and not seen["controls"]
    finally:
        await asyncio.to_thread(browser.quit)


def _headers(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return dict(r.headers)


def _status_for_host(port: int, host: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/alerts", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
