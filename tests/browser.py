"""Debian's headless Chromium, driven by Selenium through chromedriver (`make browser` installs them):
the tests that open a page in a real browser start it here."""
from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def chromium(window: str = "1280,900"):
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
                 "--disable-dev-shm-usage", f"--window-size={window}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)
