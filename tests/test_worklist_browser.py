"""The nursing worklist in a real browser (Debian's headless Chromium, driven by Selenium through
chromedriver) against the real worker on the embedded broker: a documentation problem appears on the
page after its events are produced, and leaves it, without a reload, after the stop is produced.

WORKLIST_SCREENSHOT=docs/worklist.png makes it also save the page as docs/ shows it."""
from __future__ import annotations

import asyncio
import os
import shutil
import time

import orjson
import pytest

from gateways.worklist import Worklist, consume, serve
from tests.stream_harness import Worker, unique_settings

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
DAY = "2026-03-02"


def _event(kind: str, event_id: str, at: str, **fields) -> bytes:
    return orjson.dumps({"event_id": event_id, "type": kind, "encounter_id": "V88120", "occurred_at": f"{DAY}T{at}:00-05:00",
                         "location": {"unit": "4WEST", "room": "412", "bed": "B"}, **fields})


START = _event("administration.started", "w-1", "09:00", administration_id="MAR-1",
               drug={"name": "vancomycin", "code": "11124", "system": "http://www.nlm.nih.gov/research/umls/rxnorm"},
               category="therapeutic", route="IV", method="infusion", access_site="PIV-L-forearm")
DISCHARGE = _event("encounter.discharged", "w-2", "12:00", patient_class="outpatient")
STOP = _event("administration.stopped", "w-3", "10:30", administration_id="MAR-1")


def _browser():
    if not (CHROMIUM and DRIVER):
        message = "chromium and chromedriver are not installed: `make browser` (apt-get install chromium chromium-driver)"
        if os.environ.get("IV_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1100,700"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def _wait(browser, condition, timeout: float = 30.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(condition)


def _items(browser) -> list:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, "li.item[data-code='STOP_TIME_MISSING']")


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
                browser.execute_script("window.notReloaded = true")

                await w.send([START, DISCHARGE])
                [item] = await asyncio.to_thread(_wait, browser, lambda b: _items(b) or False)
                text = item.text
                assert "Stop time missing" in text and "vancomycin" in text and "PIV-L-forearm" in text
                page = browser.find_element("id", "board").text
                assert "4WEST" in page and "Visit V88120" in page and "room 412" in page
                shot = os.environ.get("WORKLIST_SCREENSHOT") or str(tmp_path / "worklist.png")
                assert browser.save_screenshot(shot)

                await w.send([STOP])
                await w.collect(lambda r: any(x.get("state") == "resolved" for x in r), quiet=0)
                resolved_at = time.monotonic()
                await asyncio.to_thread(_wait, browser, lambda b: not _items(b))
                print(f"left the page {time.monotonic() - resolved_at:.2f} s after the worker resolved it")
                assert browser.execute_script("return window.notReloaded") is True
                assert browser.find_element("id", "empty").is_displayed()
            finally:
                stop.set()
                await reading
                await runner.cleanup()
    finally:
        await asyncio.to_thread(browser.quit)
