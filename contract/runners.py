"""Run a published artifact in-process, whatever its format: the one way both halves execute a version.

The pipeline measures a card's metrics with the runner the service will serve with, so the card describes
what is served. Every runner verifies the version's checksums before it opens a file, is safe to call from
several threads at once, and maps a float32 batch to its named outputs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from contract.card import ArtifactFormat
from contract.layout import ArtifactError, ModelVersion
from contract.publish import verify_files

OpenVINOHint = Literal["LATENCY", "THROUGHPUT"]


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    threads: int = 1  # intra-op threads of one call
    optimize_fp32: bool = False  # TorchScript fp32 only: fuse for this CPU's oneDNN at load
    openvino_hint: OpenVINOHint = "LATENCY"


class Runner(Protocol):
    runtime: str  # "torch", "onnxruntime", "openvino": the metrics' backend label

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


class TorchScriptRunner:
    runtime = "torch"

    def __init__(self, version: ModelVersion, options: RunnerOptions) -> None:
        import torch

        from contract import torchscript
        from contract.engines import use_engine

        self._torch = torch
        self._output = version.card.signature.outputs[0].name
        engine = version.card.engine
        # An int8 module is re-packed for the engine in effect when it is loaded and keeps those kernels
        # (models/quantize.py; tests/models/test_quantize.py), so only the load needs the engine's lock.
        with use_engine(engine):
            optimize = engine is None and options.optimize_fp32
            self._module = torchscript.load(version.directory / "model.pt", optimize=optimize)

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if not batch.flags.writeable:  # torch.from_numpy refuses to share read-only (binary) buffers
            batch = batch.copy()
        with self._torch.inference_mode():
            return {self._output: self._module(self._torch.from_numpy(batch)).numpy()}


class ONNXRuntimeRunner:
    runtime = "onnxruntime"

    def __init__(self, version: ModelVersion, options: RunnerOptions) -> None:
        import onnxruntime

        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = options.threads
        session_options.inter_op_num_threads = 1
        session_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = onnxruntime.InferenceSession(
                str(version.directory / "model.onnx"), session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
            raise ArtifactError(f"{version.card.name}: ONNX Runtime cannot load model.onnx ({exc})") from None
        self._input = self._session.get_inputs()[0].name
        self._outputs = [output.name for output in self._session.get_outputs()]

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        results = self._session.run(self._outputs, {self._input: batch})
        return dict(zip(self._outputs, results, strict=True))


class OpenVINORunner:
    """One compiled model; an infer request per calling thread (a request runs one inference at a time)."""

    runtime = "openvino"

    def __init__(self, version: ModelVersion, options: RunnerOptions) -> None:
        import openvino

        core = openvino.Core()
        # No CPU pinning: OpenVINO would pin its threads to cores that the event loop, the other runtimes'
        # threads and other processes also use; on a shared 2-core host a pinned thread waits behind them
        # (batch-32 int8 measured 3-4x slower pinned than unpinned while another process was busy).
        config = {
            "INFERENCE_NUM_THREADS": options.threads,
            "PERFORMANCE_HINT": options.openvino_hint,
            "ENABLE_CPU_PINNING": False,
        }
        try:
            model = core.read_model(
                str(version.directory / "model.xml"), str(version.directory / "model.bin")
            )
            self._compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable IR
            raise ArtifactError(f"{version.card.name}: OpenVINO cannot load model.xml/.bin ({exc})") from None
        self._outputs = [output.get_any_name() for output in self._compiled.outputs]
        self._local = threading.local()

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        request: Any = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        results = request.infer({0: batch})
        return {name: np.array(results[index]) for index, name in enumerate(self._outputs)}


_RUNNERS: dict[ArtifactFormat, type[TorchScriptRunner] | type[ONNXRuntimeRunner] | type[OpenVINORunner]] = {
    ArtifactFormat.TORCHSCRIPT: TorchScriptRunner,
    ArtifactFormat.ONNX: ONNXRuntimeRunner,
    ArtifactFormat.OPENVINO: OpenVINORunner,
}


def runtime_of(fmt: ArtifactFormat) -> str:
    return _RUNNERS[fmt].runtime


def open_runner(version: ModelVersion, options: RunnerOptions | None = None) -> Runner:
    """Verify the version's files against its card, then open it with its format's runtime."""
    verify_files(version)
    return _RUNNERS[version.card.format](version, options or RunnerOptions())
