"""The per-request budget sorts profiler samples into rows the way its table says it does."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.budget import Budget, classify, markdown_rows

LOOP = "Runner.run (asyncio/runners.py:118)"
ENDPOINT = "InferEndpoint.__call__ (service/api/http/front.py:40)"
DATAPLANE = "DataPlane.infer (service/dataplane.py:215)"
THREAD = [
    "Thread.run (threading.py:982)",
    "_worker (concurrent/futures/thread.py:83)",
    "TorchScriptRunner.__call__ (contract/runners.py:58)",
    "Module._call_impl (torch/nn/modules/module.py:1789)",
]


@pytest.mark.parametrize(
    ("stack", "row"),
    [
        (
            [LOOP, "HttpToolsProtocol.data_received (uvicorn/protocols/http/httptools_impl.py:173)"],
            "transport",
        ),
        ([LOOP, ENDPOINT, "parse_json (service/api/http/wire.py:79)"], "decode"),
        ([LOOP, ENDPOINT, DATAPLANE], "dataplane"),
        ([LOOP, ENDPOINT, DATAPLANE, "Histogram.observe (prometheus_client/metrics.py:667)"], "metrics"),
        ([LOOP, ENDPOINT, DATAPLANE, "prepare_input (service/signature.py:29)"], "validation"),
        ([LOOP, ENDPOINT, DATAPLANE, "ExperimentLoop.record (service/routing/loop.py:111)"], "routing"),
        ([LOOP, "DynamicBatcher._run (service/batching/batcher.py:179)"], "batcher"),
        (["InferenceThreads._serve (service/inference_threads.py:101)"], "batcher"),
        (THREAD, "model"),
        ([LOOP, ENDPOINT, "encode_infer_response (service/api/http/wire.py:140)"], "encode"),
    ],
)
def test_a_sample_is_charged_to_its_innermost_row(stack: list[str], row: str) -> None:
    assert classify(stack) == row


def test_rows_are_shares_of_the_core_time_per_request() -> None:
    budget = Budget(Counter({"model": 250, "transport": 750}), requests_per_s=5_000.0)
    assert budget.microseconds("model") == pytest.approx(50.0)
    assert budget.microseconds("transport") == pytest.approx(150.0)
    table = "\n".join(markdown_rows({"after": budget}))
    assert "| model | the backend's runtime on the batch | 50 µs |" in table
    assert "| **total** | core time per request (1 s / served req/s) | **200 µs** |" in table
    assert "| | served req/s while sampled | 5,000 |" in table
