"""Per-variant cumulative statistics in Triton's shape (ModelStatistics), for both transports."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


def _duration(count: int, seconds: float) -> dict[str, int]:
    return {"count": count, "ns": int(seconds * 1e9)}


@dataclass(slots=True)
class VariantStatistics:
    success_count: int = 0
    success_s: float = 0.0
    fail_count: int = 0
    fail_s: float = 0.0
    queue_s: float = 0.0
    compute_s: float = 0.0
    inference_count: int = 0  # rows
    last_inference_ms: int = 0

    def record_success(self, seconds: float, queue_s: float, compute_s: float, rows: int) -> None:
        self.success_count += 1
        self.success_s += seconds
        self.queue_s += queue_s
        self.compute_s += compute_s
        self.inference_count += rows
        self.last_inference_ms = int(time.time() * 1000)

    def record_failure(self, seconds: float) -> None:
        self.fail_count += 1
        self.fail_s += seconds
        self.last_inference_ms = int(time.time() * 1000)

    def as_triton(self, name: str, version: int, executions: int) -> dict[str, Any]:
        return {
            "name": name,
            "version": str(version),
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": executions,
            "inference_stats": {
                "success": _duration(self.success_count, self.success_s),
                "fail": _duration(self.fail_count, self.fail_s),
                "queue": _duration(self.success_count, self.queue_s),
                "compute_input": _duration(0, 0.0),
                "compute_infer": _duration(self.success_count, self.compute_s),
                "compute_output": _duration(0, 0.0),
            },
            "batch_stats": [],
        }
