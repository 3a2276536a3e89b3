"""The trade-off page in a real browser (headless Chromium): clean load, DOM equal to the JSON, live numbers
that move with traffic, weights changed from the page with the admin token and refused without it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.conftest import MNIST_VARIANTS
from tests.harness import ADMIN_TOKEN, RunningService
from tests.ui.browser import LAPTOP, PHONE, chromium, installed, refreshes, severe_console_entries, wait_for
from tests.ui.conftest import EXPERIMENT, WEIGHTS
from tests.ui.traffic import send_labelled, settled_tradeoff

PAGE = "/ui/mnist?window_s=900"  # the window the settled JSON is read with

# every number cell, as the page renders it: field -> where the JSON row keeps the value
READS_DOM = """
const rows = {};
for (const tr of document.querySelectorAll('#variants tbody tr')) {
  const cells = {};
  for (const td of tr.querySelectorAll('td[data-field]')) {
    cells[td.dataset.field] = td.dataset.value === undefined ? null : td.dataset.value;
    if (td.dataset.ci95 !== undefined) cells.ci95 = td.dataset.ci95;
    if (td.dataset.labelled !== undefined) cells.labelled = td.dataset.labelled;
  }
  rows[tr.dataset.variant] = cells;
}
return rows;
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    problem = installed()
    assert problem is None, problem
    with chromium() as driver:
        yield driver


def open_page(browser: webdriver.Chrome, service: RunningService, path: str = PAGE) -> None:
    browser.get(f"{service.url}{path}")
    wait_for(lambda: refreshes(browser) >= 1, what="the page's first read of its JSON")


def as_text(value: Any) -> str | None:
    return None if value is None else str(value)


def expected_cells(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What each row's cells must hold: the JSON's values, read as the page documents them (docs/ui.md)."""
    expected = {}
    for row in data["variants"]:
        report = row["experiment"] or {}
        latency = row["live"]["latency_seconds"]
        cells: dict[str, Any] = {
            "variant": row["variant"], "format": row["format"], "precision": row["precision"],
            "bytes": row["bytes"], "parameters": row["parameters"], "offline_accuracy": row["offline_accuracy"],
            "p50": latency["p50"], "p99": latency["p99"], "requests_per_second": row["live"]["requests_per_second"],
            "traffic_share": report.get("traffic_share") if data["experiment"] else row["live"]["share"],
            "online_accuracy": report.get("online_accuracy"),
            "agreement_with_reference": report.get("agreement_with_reference"),
            "kl_divergence_mean_nats": report.get("kl_divergence_mean_nats"),
            "verdict": (report.get("non_inferiority") or {}).get("verdict"), "state": row["state"],
        }  # fmt: skip
        if report.get("accuracy_ci95"):
            cells["ci95"] = report["accuracy_ci95"]
        if report:
            cells["labelled"] = report["labelled"]
        expected[row["variant"]] = cells
    return expected


def parsed(dom: dict[str, dict[str, str | None]]) -> dict[str, dict[str, Any]]:
    """DOM strings back to JSON values (numbers as floats: JS and Python both print the shortest round trip)."""

    def value(text: str | None) -> Any:
        if text is None:
            return None
        try:
            return float(text)
        except ValueError:
            return text

    rows = {}
    for variant, cells in dom.items():
        row = {field: value(text) for field, text in cells.items()}
        if cells.get("ci95") is not None:
            row["ci95"] = [float(part) for part in str(cells["ci95"]).split(",")]
        rows[variant] = row
    return rows


def pareto(points: dict[str, tuple[float, float]]) -> set[str]:
    """Variants no other variant beats on both: cheaper first, each more accurate than every cheaper one."""
    frontier, best = set(), -1.0
    for variant, (_cost, accuracy) in sorted(points.items(), key=lambda item: (item[1][0], -item[1][1])):
        if accuracy > best:
            frontier.add(variant)
            best = accuracy
    return frontier


def test_the_page_shows_what_the_json_says_and_moves_with_traffic(
    browser: webdriver.Chrome, ab_service: RunningService, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    open_page(browser, ab_service)
    assert severe_console_entries(browser) == [], "the page loads without console errors"
    before = parsed(browser.execute_script(READS_DOM))
    assert len(before) == len(MNIST_VARIANTS)

    served = send_labelled(ab_service, *mnist_test_digits, count=40, start=1000)
    data = settled_tradeoff(ab_service)
    expected = expected_cells(data)
    try:
        wait_for(
            lambda: parsed(browser.execute_script(READS_DOM)) == expected, what="the page to show the JSON"
        )
    except TimeoutError:
        assert parsed(browser.execute_script(READS_DOM)) == expected  # fails with the difference
    after = parsed(browser.execute_script(READS_DOM))
    for variant, count in served.items():  # the page's req/s is requests over the 900 s window
        moved = (after[variant]["requests_per_second"] - before[variant]["requests_per_second"]) * 900
        assert moved == pytest.approx(count), variant
        assert after[variant]["labelled"] > (before[variant].get("labelled") or 0), variant

    # the chart: a marker per variant with both numbers, the default ringed, the Pareto frontier marked
    rows = {row["variant"]: row for row in data["variants"]}
    markers = browser.find_elements(By.CSS_SELECTOR, "#chart-bytes circle.point")
    assert sorted(m.get_attribute("data-variant") or "" for m in markers) == sorted(rows)
    on_frontier = {
        m.get_attribute("data-variant") for m in markers if m.get_attribute("data-frontier") == "true"
    }
    assert on_frontier == pareto({v: (r["bytes"], r["offline_accuracy"]) for v, r in rows.items()})
    ring = browser.find_element(By.CSS_SELECTOR, "#chart-bytes circle.default-ring")
    assert ring.get_attribute("data-default") == data["default_variant"]
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-bytes polyline.frontier")
    timed = browser.find_elements(By.CSS_SELECTOR, "#chart-latency circle.point")
    assert {m.get_attribute("data-variant") for m in timed} == {
        v for v, r in rows.items() if r["live"]["latency_seconds"]["p99"] is not None
    }
    assert severe_console_entries(browser) == []


def experiment_weights(service: RunningService) -> dict[str, int]:
    report = httpx.get(f"{service.url}/v1/experiments/{EXPERIMENT}", timeout=30).raise_for_status().json()
    return {row["variant"]: row["weight"] for row in report["variants"] if row["weight"]}


def apply_weights(browser: webdriver.Chrome, weights: dict[str, int], token: str) -> str:
    for field in browser.find_elements(By.CSS_SELECTOR, "#weights-inputs input"):
        field.clear()
        field.send_keys(str(weights.get(field.get_attribute("data-variant") or "", 0)))
    token_field = browser.find_element(By.ID, "admin-token")
    token_field.clear()
    token_field.send_keys(token)
    result = browser.find_element(By.ID, "weights-result")
    browser.execute_script("arguments[0].removeAttribute('data-status')", result)
    browser.find_element(By.ID, "weights-apply").click()
    status: str = wait_for(
        lambda: result.get_attribute("data-status"), what="the answer to the weight change"
    )
    return status


def test_weights_change_from_the_page_only_with_the_admin_token(
    browser: webdriver.Chrome, ab_service: RunningService, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    open_page(browser, ab_service)
    severe_console_entries(browser)
    everything_to_int8 = {"student-int8-x86": 100}

    assert apply_weights(browser, everything_to_int8, token="") == "401"
    assert browser.find_element(By.ID, "weights-result").text.startswith("refused (401)")
    assert apply_weights(browser, everything_to_int8, token="a-wrong-token") == "401"
    assert experiment_weights(ab_service) == WEIGHTS, "a refused change changes nothing"
    refused = severe_console_entries(browser)
    assert all("401" in entry["message"] for entry in refused), refused

    assert apply_weights(browser, everything_to_int8, token=ADMIN_TOKEN) == "200"
    assert browser.find_element(By.ID, "weights-result").text.startswith("applied")
    assert experiment_weights(ab_service) == everything_to_int8
    served = send_labelled(ab_service, *mnist_test_digits, count=20, start=2000)
    assert served == {"student-int8-x86": 20}, "routing follows the weights set from the page"
    wait_for(
        lambda: (
            browser.find_element(By.CSS_SELECTOR, 'dd[data-key="weights"]').text == "student-int8-x86 100%"
        ),
        what="the page to show the new weights",
    )
    assert ADMIN_TOKEN not in browser.current_url
    assert not [e for e in browser.get_log("browser") if ADMIN_TOKEN in e["message"]]
    assert severe_console_entries(browser) == []


def test_a_family_without_an_experiment(
    browser: webdriver.Chrome, plain_service: RunningService, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    send_labelled(plain_service, *mnist_test_digits, count=10)
    with plain_service.client() as client:
        data = client.get("/v1/families/mnist/tradeoff?window_s=900").raise_for_status().json()
    open_page(browser, plain_service)
    wait_for(
        lambda: parsed(browser.execute_script(READS_DOM)) == expected_cells(data), what="the JSON on the page"
    )
    assert browser.find_element(By.ID, "experiment-none").is_displayed()
    assert not browser.find_element(By.ID, "weights-form").is_displayed()
    share = browser.find_element(
        By.CSS_SELECTOR, 'tr[data-variant="student-int8-x86"] td[data-field="traffic_share"]'
    )
    assert share.text == "100.0 %"
    assert severe_console_entries(browser) == []


def test_phone_width_a_screenshot_and_the_not_found_page(
    browser: webdriver.Chrome, ab_service: RunningService, tmp_path: Path
) -> None:
    browser.set_window_size(*PHONE)
    open_page(browser, ab_service)
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, "at phone width the table scrolls in its box, the page does not scroll sideways"
    assert browser.save_screenshot(str(tmp_path / "ui-phone.png"))
    browser.set_window_size(*LAPTOP)
    open_page(browser, ab_service)
    assert browser.save_screenshot(str(tmp_path / "ui.png"))
    assert (tmp_path / "ui.png").read_bytes().startswith(b"\x89PNG")
    assert severe_console_entries(browser) == []

    browser.get(f"{ab_service.url}/ui/no-such-family")
    assert browser.find_element(By.ID, "message-title").text == "Family not found"
    assert "no-such-family" in browser.find_element(By.ID, "message-text").text
