"""The nursing worklist in a real browser (Debian's headless Chromium, driven by Selenium through
chromedriver) against the real worker on the embedded broker: a documentation problem appears on the
page after its events are produced, and leaves it, without a reload, after the stop is produced.

WORKLIST_SCREENSHOT=docs/worklist.png makes it also save the page as docs/ shows it."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import time

import orjson

from gateways.worklist import Worklist, consume, serve
from tests.browser import chromium
from tests.stream_harness import Worker, unique_settings

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _event(kind: str, event_id: str, hours_ago: float, encounter: str = "V88120", unit: str = "4WEST",
           **fields) -> bytes:
    """Today's events: a discharged encounter's late stop must be within the worker's retention."""
    at = (NOW - dt.timedelta(hours=hours_ago)).isoformat()
    return orjson.dumps({"event_id": f"{event_id}-{NOW.timestamp():.0f}", "type": kind, "encounter_id": encounter,
                         "occurred_at": at, "location": {"unit": unit, "room": "412", "bed": "B"}, **fields})


START = _event("administration.started", "w-1", 3, administration_id="MAR-1",
               drug={"name": "vancomycin", "code": "11124", "system": "http://www.nlm.nih.gov/research/umls/rxnorm"},
               category="therapeutic", route="IV", method="infusion", access_site="PIV-L-forearm")
DISCHARGE = _event("encounter.discharged", "w-2", 0.5, patient_class="outpatient")
STOP = _event("administration.stopped", "w-3", 1.5, administration_id="MAR-1")
OTHER_UNIT = [_event("administration.started", "w-4", 2, "V90311", "ICU", administration_id="MAR-9",
                     drug={"name": "cefazolin", "code": "2180", "system": None}, category="therapeutic", route="IV",
                     method="infusion", access_site="CVC-R"),
              _event("encounter.discharged", "w-5", 0.25, "V90311", "ICU", patient_class="emergency")]


def _browser():
    return chromium(window="1100,700")


def _wait(browser, condition, timeout: float = 30.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(condition)


def _items(browser, encounter: str = "V88120") -> list:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, f"[data-encounter='{encounter}'] li.item[data-code='STOP_TIME_MISSING']")


def _choose_unit(browser, unit: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "unit")).select_by_value(unit)


async def test_a_problem_appears_and_leaves_the_page_live(broker, tmp_path):
    browser = await asyncio.to_thread(_browser)
    settings = unique_settings(broker.bootstrap)
    worklist, stop = Worklist(), asyncio.Event()
    try:
        async with Worker(settings) as w:
            runner = await serve(worklist, "127.0.0.1", 0)
            port = runner.addresses[0][1]
            reading = asyncio.create_task(consume(settings, worklist, stop))
            try:
                await asyncio.to_thread(browser.get, f"http://127.0.0.1:{port}/")
                await asyncio.to_thread(_wait, browser, lambda b: b.find_element("id", "status").text == "live"
                                        or worklist.caught_up)
                await asyncio.to_thread(browser.execute_script, "window.notReloaded = true")

                await w.send([START, DISCHARGE, *OTHER_UNIT])
                await asyncio.to_thread(_wait, browser, lambda b: _items(b, "V90311") or False)
                [item] = await asyncio.to_thread(_wait, browser, lambda b: _items(b) or False)
                # every browser call off the event loop: the worker runs on it, and a blocked loop
                # starves its Kafka consumer
                text, page = await asyncio.to_thread(lambda: (item.text, browser.find_element("id", "board").text))
                assert "Stop time missing" in text and "vancomycin" in text and "PIV-L-forearm" in text
                assert "4WEST" in page and "Visit V88120" in page and "room 412" in page
                shot = os.environ.get("WORKLIST_SCREENSHOT") or str(tmp_path / "worklist.png")
                assert await asyncio.to_thread(browser.save_screenshot, shot)
                await asyncio.to_thread(_choose_unit, browser, "ICU")  # one unit: the other leaves the page
                await asyncio.to_thread(_wait, browser, lambda b: not _items(b) and _items(b, "V90311"))
                assert "unit=ICU" in await asyncio.to_thread(lambda: browser.current_url)
                await asyncio.to_thread(_choose_unit, browser, "")
                await asyncio.to_thread(_wait, browser, lambda b: _items(b) and _items(b, "V90311"))

                await w.send([STOP])
                await w.collect(lambda r: any(x.get("state") == "resolved" for x in r), quiet=0)
                resolved_at = time.monotonic()
                await asyncio.to_thread(_wait, browser, lambda b: not _items(b))
                print(f"left the page {time.monotonic() - resolved_at:.2f} s after the worker resolved it")
                assert await asyncio.to_thread(browser.execute_script, "return window.notReloaded") is True
                assert await asyncio.to_thread(lambda: bool(_items(browser, "V90311")))  # the other stays
            finally:
                stop.set()
                await reading
                await runner.cleanup()
    finally:
        await asyncio.to_thread(browser.quit)
