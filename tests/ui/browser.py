"""Headless Chromium for the trade-off page: Debian's ``chromium`` driven through ``chromedriver``.

The paths are given explicitly and selenium-manager is kept offline, so nothing is ever downloaded.
``python -m tests.ui.browser URL OUT.png`` saves a screenshot of a running page (docs/ui.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LAPTOP = (1400, 1500)
PHONE = (390, 844)


def installed() -> str | None:
    """Why the browser cannot run, or None when it can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} is missing: `make test` installs it (scripts/system-deps.sh test)"
    return None


@contextlib.contextmanager
def chromium(size: tuple[int, int] = LAPTOP) -> Iterator[webdriver.Chrome]:
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never fetch a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-extensions", "--no-first-run", f"--window-size={size[0]},{size[1]}"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def severe_console_entries(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """Console errors since the last call (reading the log empties it)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def wait_for(condition: Any, timeout_s: float = 30, what: str = "the page") -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise TimeoutError(f"waited {timeout_s} s for {what}")


def refreshes(driver: webdriver.Chrome) -> int:
    return int(driver.find_element("id", "app").get_attribute("data-refreshes") or 0)


def screenshot(url: str, out: str) -> None:
    with chromium() as driver:
        driver.get(url)
        wait_for(lambda: refreshes(driver) >= 2, what="two refreshes")
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        metrics = {"width": LAPTOP[0], "height": height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", metrics
        )  # the whole page, not the window
        wait_for(lambda: refreshes(driver) >= 3, what="a refresh at full height")
        driver.save_screenshot(out)


if __name__ == "__main__":
    screenshot(sys.argv[1], sys.argv[2])
