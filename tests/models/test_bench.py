from __future__ import annotations

import math

from models.bench import gap_closed, report
from models.pipeline import BuildResult, VariantResult


def _result(
    teacher: float,
    scratch: float,
    kd: float,
    int8: float,
    qnnpack: float,
    methods: dict[str, float] | None = None,
) -> BuildResult:
    def metrics(accuracy: float, size: int, throughput: float, parameters: int = 120_000) -> dict[str, float]:
        return {
            "accuracy": accuracy,
            "parameters": parameters,
            "bytes": size,
            "latency_p50_batch1_seconds": 1 / throughput,
            "throughput_batch32_per_second": throughput,
        }

    rows = [
        ("teacher-fp32", metrics(teacher, 4_000_000, 1_000)),
        ("student-scratch-fp32", metrics(scratch, 500_000, 3_000)),
        ("student-fp32", metrics(kd, 500_000, 3_000)),
        ("student-int8-x86", metrics(int8, 150_000, 12_000)),
        ("student-int8-qnnpack", metrics(qnnpack, 150_000, 4_000)),
        ("student-int8-onnx", metrics(qnnpack, 150_000, 9_000)),
        ("student-int8-openvino", metrics(int8, 150_000, 19_000)),
    ]
    if methods:
        rows += [
            ("student-hints-fp32", metrics(methods["hints"], 500_000, 3_000)),
            ("student-pruned-fp32", metrics(methods["pruned"], 130_000, 6_000, 30_000)),
            ("student-pruned-int8-x86", metrics(methods["pruned"], 42_000, 30_000, 30_000)),
            ("student-qat-int8-onnx", metrics(methods["qat"], 160_000, 9_000)),
        ]
    return BuildResult("mnist", "d", False, [VariantResult(v, f"mnist-{v}", 1, m) for v, m in rows], 1.0)


def test_gap_closed() -> None:
    assert gap_closed(0.98, 0.96, 0.97) == 0.5
    assert math.isnan(gap_closed(0.97, 0.98, 0.99))


def test_report_states_each_target_with_its_margin() -> None:
    results = [_result(0.985, 0.975, 0.982, 0.981, 0.980), _result(0.979, 0.979, 0.978, 0.976, 0.977)]
    text = report("mnist", results, "python -m models bench mnist --seeds 2")
    assert "`python -m models bench mnist --seeds 2`" in text
    assert "| teacher-fp32 | 98.20 ± 0.42 |" in text
    assert "KD gap closed per seed: 70%, n/a (no gap)" in text
    lines = {line.split(":")[0]: line for line in text.splitlines() if line.startswith("- **")}
    assert lines["- **PASS** int8 student accuracy vs teacher − 1.0 pt"].endswith("margin +0.65 pt)")
    assert lines["- **PASS** KD closes the teacher–scratch gap (on mean accuracies)"]
    assert lines["- **PASS** int8 student size reduction vs teacher"]
    assert lines["- **PASS** int8 batch-32 throughput vs teacher"]
    assert lines["- **PASS** qnnpack accuracy within 0.3 pt of x86"]
    assert lines["- **PASS** student-int8-onnx accuracy within 0.3 pt of x86"]
    assert lines["- **PASS** OpenVINO int8 batch-32 throughput vs torch x86 int8"].endswith(
        "margin +0.0833×)"
    )
    assert "student-int8-onnx 0.75×" in text and "student-int8-openvino 1.58×" in text
    missing = report("mnist", [_result(0.985, 0.975, 0.976, 0.970, 0.980)], "cmd")
    assert "- **MISS** KD closes" in missing and "- **MISS** qnnpack" in missing
    assert "- **MISS** student-int8-onnx accuracy within 0.3 pt" in missing


def test_the_methods_targets_and_the_distillation_comparison() -> None:
    results = [
        _result(0.985, 0.975, 0.982, 0.981, 0.980, {"hints": 0.984, "pruned": 0.978, "qat": 0.982}),
        _result(0.979, 0.979, 0.978, 0.976, 0.977, {"hints": 0.977, "pruned": 0.975, "qat": 0.975}),
    ]
    text = report("mnist", results, "cmd")
    lines = {line.split(":")[0]: line for line in text.splitlines() if line.startswith("- **")}
    assert lines["- **PASS** pruned student"].endswith("(target ≥ 2×, margin +2×)")
    assert lines["- **PASS** pruned student accuracy vs teacher − 1.0 pt"].endswith("margin +0.45 pt)")
    assert "- **PASS** pruned int8 is the smallest variant" in text
    assert lines["- **PASS** QAT int8 (ONNX) accuracy vs post-training int8 (ONNX)"]
    assert lines["- **PASS** QAT int8 (ONNX) accuracy within 0.2 pt of its fp32 parent"].endswith(
        "margin +0.05 pt)"
    )
    assert "| 0 | 98.20 | 98.40 | +0.20 |" in text and "| 1 | 97.80 | 97.70 | -0.10 |" in text
    assert "Mean difference +0.05 ± 0.21 pt over 2 seeds: hints ahead (within one standard deviation" in text
