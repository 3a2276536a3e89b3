"""Real traffic for the trade-off tests: labelled requests to the family, and a read of the settled numbers."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np

from tests.harness import RunningService

TRADEOFF = "/v1/families/mnist/tradeoff?window_s=900"  # longer than any test: nothing leaves the window


def send_labelled(
    service: RunningService, images: np.ndarray, labels: np.ndarray, count: int, start: int = 0
) -> Counter[str]:
    """``count`` requests to the family, each with its own sticky key and then its label; who served each."""
    served: Counter[str] = Counter()
    with service.client() as client:
        for number in range(start, start + count):
            index = number % len(images)
            tensor = {"name": "INPUT__0", "shape": [1, 1, 28, 28], "datatype": "FP32",
                      "data": images[index].ravel().tolist()}  # fmt: skip
            answer = client.post("/v2/models/mnist/infer", json={"inputs": [tensor]},
                                 headers={"x-user-id": f"user-{number}"})  # fmt: skip
            answer.raise_for_status()
            served[answer.headers["slimserve-variant"]] += 1
            label = {"id": answer.json()["id"], "label": int(labels[index])}
            client.post("/v1/feedback", json=label).raise_for_status()
    return served


def settled_tradeoff(service: RunningService, timeout_s: float = 60) -> dict[str, Any]:
    """The trade-off once every shadow copy has been compared and two reads in a row agree."""
    deadline = time.monotonic() + timeout_s
    previous: dict[str, Any] | None = None
    with service.client() as client:
        while time.monotonic() < deadline:
            data: dict[str, Any] = client.get(TRADEOFF).raise_for_status().json()
            reference = data["experiment"]["reference"]
            rows = [row["experiment"] for row in data["variants"] if row["experiment"]]
            caught_up = all(
                row["compared_with_reference"] == row["requests"]
                for row in rows
                if row["variant"] != reference
            )
            if caught_up and data == previous:
                return data
            previous = data
            time.sleep(0.2)
    raise TimeoutError(f"the trade-off of {service.url} did not settle within {timeout_s} s")
