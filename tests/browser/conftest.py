"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by selenium, network cut off.

No skip: when Chromium or its driver is missing the tests fail, saying what to install (CI installs them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PAGE_LOAD_TIMEOUT_S = 30


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.path.isfile(name) else None)
        if found:
            return found
    return None


@pytest.fixture
def chrome() -> Iterator[webdriver.Chrome]:
    """A headless Chromium that may not reach any host (every name resolves to nothing, no proxy bypass), with
    the DevTools network events logged so a test can list every request the page made."""
    binary = _find("chromium", "chromium-browser", "/usr/lib/chromium/chromium")
    driver_path = _find("chromedriver", "/usr/lib/chromium/chromedriver")
    if binary is None or driver_path is None:
        pytest.fail("the browser tests need Chromium and its driver: apt-get install -y chromium chromium-driver "
                    f"(found chromium={binary}, chromedriver={driver_path})")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000", "--host-resolver-rules=MAP * ~NOTFOUND",
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
        driver.set_script_timeout(PAGE_LOAD_TIMEOUT_S)
        yield driver
    finally:
        driver.quit()
