"""Triton python-backend model: serves the ONNX ``model.onnx`` beside this file with ONNX Runtime.

A stand-in for Triton's onnxruntime backend where only the python backend exists (the tritonserver shipped
in the nvidia-pytriton wheel): same tensors (names and datatypes from the model config), same ONNX file, same
runtime. Every request of a batch Triton hands over is run in one call and split back. Optional model-config
parameter ``intra_op_threads`` (default 1) sets ONNX Runtime's intra-op threads.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils

MODEL_FILE = "model.onnx"


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        if not (version_dir / MODEL_FILE).is_file():
            version_dir = Path(__file__).resolve().parent
        model_file = version_dir / MODEL_FILE
        card_file = version_dir / "card.json"
        if card_file.is_file():  # verify what the card says before loading anything
            expected = json.loads(card_file.read_text()).get("files", {}).get(MODEL_FILE)
            if expected is not None and _sha256(model_file) != expected:
                raise pb_utils.TritonModelException(f"{model_file}: sha256 does not match {card_file}")
        threads = config.get("parameters", {}).get("intra_op_threads", {}).get("string_value", "1")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]

    def execute(self, requests: list[Any]) -> list[Any]:
        inputs: list[np.ndarray] = []
        responses: list[Any] = [None] * len(requests)
        valid: list[int] = []
        for index, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, self.input)
            if tensor is None:
                responses[index] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"missing input {self.input}")
                )
                continue
            inputs.append(np.asarray(tensor.as_numpy(), dtype=np.float32))
            valid.append(index)
        if valid:
            try:
                (outputs,) = self.session.run([self.output], {self.input: np.concatenate(inputs)})
            except Exception as exc:  # one bad batch answers errors; the model stays up
                for index in valid:
                    responses[index] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"inference failed: {exc}")
                    )
                return responses
            start = 0
            for index, rows in zip(valid, (len(x) for x in inputs), strict=True):
                out = pb_utils.Tensor(self.output, np.ascontiguousarray(outputs[start : start + rows]))
                responses[index] = pb_utils.InferenceResponse(output_tensors=[out])
                start += rows
        return responses

    def finalize(self) -> None:
        del self.session
