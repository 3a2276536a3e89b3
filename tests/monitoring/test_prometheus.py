"""The dashboard and alert rules against a real Prometheus scraping a real service.

Every PromQL expression in ``k8s/monitoring`` must parse and return series for the variants that got
traffic; ``promtool`` checks the rule file and lints a scrape.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.harness import RunningService, make_settings, run_service

MONITORING = Path(__file__).parents[2] / "k8s" / "monitoring"
VARIANTS = {
    "teacher-fp32",
    "student-scratch-fp32",
    "student-fp32",
    "student-int8-x86",
    "student-int8-qnnpack",
}
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "${datasource}": ""}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rule_groups() -> list[dict[str, object]]:
    groups: list[dict[str, object]] = yaml.safe_load((MONITORING / "prometheus-rule.yaml").read_text())[
        "spec"
    ]["groups"]
    return groups


def rules(kind: str) -> list[dict[str, str]]:
    return [rule for group in rule_groups() for rule in group["rules"] if kind in rule]  # type: ignore[attr-defined]


def with_bool(expression: str) -> str:
    """Make each top-level comparison return 0/1 for every series instead of filtering them."""
    depth, out, index = 0, [], 0
    while index < len(expression):
        char = expression[index]
        depth += (char == "(") - (char == ")")
        pair = expression[index : index + 2]
        if (
            depth <= 1
            and char in "<>"
            and expression[index - 1] != "="
            and "group_left" not in expression[max(0, index - 3) : index]
        ):
            operator = pair if pair in ("<=", ">=") else char
            out.append(f"{operator} bool")
            index += len(operator)
            continue
        out.append(char)
        index += 1
    return "".join(out)


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expression = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expression = expression.replace(variable, value)
            found.append((f"panel '{panel['title']}' {target['refId']}", expression))
    return found


@pytest.fixture(scope="module")
def experiments_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("monitoring") / "experiments.yaml"
    experiment = {"name": "mnist-ab", "family": "mnist", "margin": 0.02, "min_samples": 5,
                  "variants": [{"name": v, "weight": 20} for v in sorted(VARIANTS)],
                  "shadow": {"variant": "teacher-fp32", "percent": 100}}  # fmt: skip
    path.write_text(yaml.safe_dump({"experiments": [experiment]}))
    return path


@pytest.fixture(scope="module")
def service(tiny_registry: Path, experiments_file: Path) -> Iterator[RunningService]:
    settings = make_settings(tiny_registry, routing={"experiments_file": experiments_file})
    with run_service(settings) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(service: RunningService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: `make test` installs it (scripts/system-deps.sh)"
    folder = tmp_path_factory.mktemp("prometheus")
    (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(folder / "rules.yaml")],
        "scrape_configs": [
            {"job_name": "slimserve", "static_configs": [{"targets": [f"127.0.0.1:{service.port}"]}]}
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/-/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def send_traffic(service: RunningService, images: np.ndarray, labels: np.ndarray) -> None:
    async def burst(offset: int) -> None:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            calls = []
            for index in range(40):
                row = images[(offset + index) % len(images)]
                body = {"id": f"{offset}-{index}", "inputs": [{"name": "INPUT__0", "shape": [1, 1, 28, 28],
                        "datatype": "FP32", "data": row.ravel().tolist()}]}  # fmt: skip
                calls.append(client.post("/v2/models/mnist/infer", json=body))
                for variant in VARIANTS:
                    calls.append(client.post(f"/v2/models/mnist-{variant}/infer", json=body | {"id": None}))
            await asyncio.gather(*calls)
            await client.post(
                "/v2/models/mnist-teacher-fp32/infer", json={"inputs": []}
            )  # a 400, for the error panel
            await asyncio.sleep(1.5)  # let the shadow copies finish before the labels arrive
            feedback = [
                {"id": f"{offset}-{i}", "label": int(labels[(offset + i) % len(labels)])} for i in range(40)
            ]
            assert (await client.post("/v1/feedback", json=feedback)).json()["accepted"] == 40

    for offset in (0, 40, 80):  # three bursts, a few scrapes apart, so rates and increases have points
        asyncio.run(burst(offset))
        time.sleep(2)


@pytest.fixture(scope="module")
def loaded(service: RunningService, prometheus: str, mnist_test_digits: tuple[np.ndarray, np.ndarray]) -> str:
    images, labels = mnist_test_digits
    send_traffic(service, images, labels)
    time.sleep(3)  # last scrape and rule evaluation
    return prometheus


def query(prometheus: str, expression: str) -> list[dict[str, dict[str, str]]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}).json()
    assert answer["status"] == "success", f"{expression}: {answer.get('error')}"
    result: list[dict[str, dict[str, str]]] = answer["data"]["result"]
    return result


def expected_variants(expression: str) -> set[str]:
    if "shadow" in expression and "variant" in expression:
        return VARIANTS - {"teacher-fp32"}  # the teacher is the shadow, never compared with itself
    return VARIANTS


EXPRESSIONS = (
    dashboard_expressions()
    + [(f"record {rule['record']}", rule["expr"]) for rule in rules("record")]
    + [(f"alert {rule['alert']}", with_bool(rule["expr"])) for rule in rules("alert")]
)


@pytest.mark.parametrize(("where", "expression"), EXPRESSIONS, ids=[where for where, _ in EXPRESSIONS])
def test_every_expression_returns_series_for_the_variants(loaded: str, where: str, expression: str) -> None:
    series = query(loaded, expression)
    assert series, f"{where} returned nothing: {expression}"
    variants = {s["metric"]["variant"] for s in series if "variant" in s["metric"]}
    if "by (experiment" in expression and "variant" not in expression.split("by (experiment")[1][:40]:
        return  # grouped by experiment, not by variant
    if "status!=" in expression:
        assert variants, f"{where}: no variant failed any request"
        return
    if (
        "by (variant" in expression
        or "by (model, variant" in expression
        or "by (experiment, model, variant" in expression
    ):
        assert variants >= expected_variants(expression), f"{where}: {sorted(variants)}"


def test_promtool_checks_the_rules_and_lints_a_scrape(service: RunningService, tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule_groups()}))
    checked = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    scrape = httpx.get(f"{service.url}/metrics").text
    linted = subprocess.run(["promtool", "check", "metrics"], input=scrape, capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_dashboard_panels_each_answer_a_documented_question() -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    documented = (Path(__file__).parents[2] / "docs" / "monitoring.md").read_text()
    for panel in dashboard["panels"]:
        assert panel["description"].endswith("?"), panel["title"]
        assert panel["title"] in documented, f"docs/monitoring.md does not explain panel '{panel['title']}'"
    for rule in rules("alert"):
        assert rule["alert"] in documented, f"docs/monitoring.md does not explain alert {rule['alert']}"
