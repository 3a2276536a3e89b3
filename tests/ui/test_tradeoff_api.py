"""The JSON the trade-off page reads, and the pages themselves, on the real service (no browser here)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from contract.layout import read_card
from service import ui
from tests.conftest import MNIST_VARIANTS
from tests.harness import RunningService
from tests.ui.conftest import EXPERIMENT
from tests.ui.traffic import send_labelled, settled_tradeoff

SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name, never fetched


def test_each_row_joins_the_card_the_live_window_and_the_experiment_report(
    ab_service: RunningService, tiny_registry: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    before = {row["variant"]: row for row in settled_tradeoff(ab_service)["variants"]}
    served = send_labelled(ab_service, *mnist_test_digits, count=60)
    data = settled_tradeoff(ab_service)
    with ab_service.client() as client:
        report = client.get(f"/v1/experiments/{EXPERIMENT}").raise_for_status().json()

    cards = {
        path.name.removeprefix("mnist-"): read_card(path / "1") for path in tiny_registry.glob("mnist-*")
    }
    assert sorted(row["variant"] for row in data["variants"]) == sorted(cards)
    report_rows = {row["variant"]: row for row in report["variants"]}
    for row in data["variants"]:
        card = cards[row["variant"]]
        assert (row["bytes"], row["parameters"], row["offline_accuracy"]) == (
            card.metrics["bytes"], card.metrics["parameters"], card.metrics["accuracy"]
        )  # fmt: skip
        assert (row["format"], row["precision"], row["version"]) == (str(card.format), card.precision, 1)
        assert row["state"] == "READY" and row["ready"]
        assert row["default"] == (row["variant"] == "student-int8-x86")
        live = row["live"]
        assert live["requests"] - before[row["variant"]]["live"]["requests"] == served[row["variant"]]
        assert live["requests_per_second"] == live["requests"] / 900
        assert (live["latency_seconds"]["p99"] is None) == (live["requests"] == 0)
        assert row["experiment"] == report_rows.get(row["variant"]), "copied from the report, not recomputed"
    assert data["experiment"] == {key: value for key, value in report.items() if key != "variants"}
    assert data["default_variant"] == "student-int8-x86"
    assert sum(row["live"]["share"] for row in data["variants"]) == pytest.approx(1.0)
    assert sum(served.values()) == 60 and set(served) <= set(report_rows)


def test_kl_divergence_is_the_mean_the_shadow_histogram_saw(
    ab_service: RunningService, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    send_labelled(ab_service, *mnist_test_digits, count=30, start=500)
    data = settled_tradeoff(ab_service)
    compared = [
        row["experiment"]
        for row in data["variants"]
        if row["experiment"] and row["variant"] != "teacher-fp32"
    ]
    assert compared and all(row["compared_with_reference"] > 0 for row in compared)
    for row in compared:
        labels = {
            "experiment": EXPERIMENT,
            "model": "mnist",
            "variant": row["variant"],
            "shadow": "teacher-fp32",
        }
        count = ab_service.metrics.get_sample_value("slimserve_shadow_kl_divergence_nats_count", labels)
        total = ab_service.metrics.get_sample_value("slimserve_shadow_kl_divergence_nats_sum", labels)
        assert count == row["compared_with_reference"]
        assert count is not None and total is not None
        assert row["kl_divergence_mean_nats"] == pytest.approx(total / count, abs=1e-6)


def test_without_an_experiment_the_rows_have_cost_and_live_numbers_only(
    plain_service: RunningService, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    served = send_labelled(plain_service, *mnist_test_digits, count=12)
    with plain_service.client() as client:
        data = client.get("/v1/families/mnist/tradeoff").raise_for_status().json()
    assert served == {"student-int8-x86": 12}
    assert data["experiment"] is None and data["window_s"] == 300
    rows = {row["variant"]: row for row in data["variants"]}
    assert all(row["experiment"] is None for row in rows.values())
    assert (rows["student-int8-x86"]["live"]["requests"], rows["student-int8-x86"]["live"]["share"]) == (
        12,
        1.0,
    )
    assert rows["teacher-fp32"]["live"]["share"] == 0.0


def test_families_lists_each_family_with_its_variants(ab_service: RunningService) -> None:
    with ab_service.client() as client:
        families = client.get("/v1/families").raise_for_status().json()["families"]
    assert [(f["family"], f["default_variant"], f["experiment"]) for f in families] == [
        ("mnist", "student-int8-x86", EXPERIMENT)
    ]
    assert len(families[0]["variants"]) == len(MNIST_VARIANTS)


@pytest.mark.parametrize("query", ["window_s=0", "window_s=901", "window_s=abc", "window_s=1.5", "window_s="])
def test_a_bad_window_gets_a_400_naming_the_field(ab_service: RunningService, query: str) -> None:
    with ab_service.client() as client:
        answer = client.get(f"/v1/families/mnist/tradeoff?{query}")
    assert answer.status_code == 400
    assert "window_s" in answer.json()["error"]


def test_an_unknown_family_is_a_404_in_json_and_in_html(ab_service: RunningService) -> None:
    with ab_service.client() as client:
        api = client.get("/v1/families/nope/tradeoff")
        page = client.get("/ui/nope")
        hostile = client.get("/ui/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        missing_asset = client.get("/ui/static/secret.py")
    assert api.status_code == 404 and "unknown family 'nope'" in api.json()["error"]
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Family not found" in page.text and "no model family “nope”" in page.text
    assert 'href="/ui/mnist"' in page.text, "the 404 page offers the families there are"
    assert hostile.status_code == 404 and "<script>" not in hostile.text
    assert missing_asset.status_code == 404


def test_the_page_and_its_assets_load_nothing_from_elsewhere(ab_service: RunningService) -> None:
    with ab_service.client() as client:
        root = client.get("/")
        page = client.get("/ui")
        named = client.get("/ui/mnist")
        assets = {name: client.get(f"/ui/static/{name}") for name in ui.ASSETS}
    assert root.status_code == 200 and 'href="/ui"' in root.text
    assert page.status_code == 200 and 'data-family="mnist"' in page.text
    assert named.text == page.text
    assert page.headers["content-security-policy"] == ui.CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in ui.CONTENT_SECURITY_POLICY and "http" not in ui.CONTENT_SECURITY_POLICY
    for reference in re.findall(r'(?:src|href)="([^"]*)"', page.text + root.text):
        assert reference.startswith(("/", "data:")) and not reference.startswith("//"), reference
    for name, answer in assets.items():
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith(("text/javascript", "text/css"))
        assert "https:" not in answer.text and answer.text.count("http:") == answer.text.count(SVG_NAMESPACE)
        assert "@import" not in answer.text and "url(" not in answer.text
