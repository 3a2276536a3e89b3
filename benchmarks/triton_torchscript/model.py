"""Triton python-backend model for the serving benchmark: runs the TorchScript ``model.pt`` beside it.

The issue's comparison is Triton serving *the same TorchScript file* as slimserve. The wheel's tritonserver has
no libtorch backend, so this is what a Triton user without one does: the python backend with torch (the
benchmark's Triton venv adds ``torch==2.13.0``). One torch thread; an int8 module is loaded under the quantized
engine its card names, as slimserve loads it. Every request of a batch Triton hands over runs in one call.
TorchScript is loaded by ``contract/torchscript.py``, copied beside this file (slimserve is not installed in
Triton's venv), so the deprecated API still has one user.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        card = json.loads((version_dir / "card.json").read_text())
        torch.set_num_threads(1)
        engine = card.get("engine")
        if engine:
            torch.backends.quantized.engine = engine
        spec = importlib.util.spec_from_file_location(
            "torchscript", Path(__file__).with_name("torchscript.py")
        )
        assert spec is not None and spec.loader is not None
        torchscript = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(torchscript)
        self.module = torchscript.load(version_dir / "model.pt")
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]

    def execute(self, requests: list[Any]) -> list[Any]:
        inputs = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        with torch.inference_mode():
            outputs = self.module(torch.from_numpy(np.concatenate(inputs))).numpy()
        responses, start = [], 0
        for rows in (len(x) for x in inputs):
            tensor = pb_utils.Tensor(self.output, np.ascontiguousarray(outputs[start : start + rows]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += rows
        return responses
