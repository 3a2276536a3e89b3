"""Triton python-backend model: serves the TorchScript ``model.pt`` beside this file.

A stand-in for Triton's libtorch backend where only the python backend exists (the tritonserver shipped in
the nvidia-pytriton wheel): same tensors (FP32 ``INPUT__0`` [N,1,28,28] -> FP32 ``OUTPUT__0`` [N,10]), same
TorchScript. Every request of a batch Triton hands over is run in one forward pass and split back.
Each model instance is its own stub process, so the int8 quantized engine (process-global in torch) is set
from the card here without affecting other models. Optional model-config parameter ``torch_threads``
(default 1) sets torch's intra-op threads.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

INPUT = "INPUT__0"
OUTPUT = "OUTPUT__0"


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        if not (version_dir / "model.pt").is_file():
            version_dir = Path(__file__).resolve().parent
        model_file = version_dir / "model.pt"
        card_file = version_dir / "card.json"
        engine = None
        if card_file.is_file():  # verify what the card says before unpickling anything
            card = json.loads(card_file.read_text())
            expected = card.get("files", {}).get("model.pt")
            if expected is not None and _sha256(model_file) != expected:
                raise pb_utils.TritonModelException(f"{model_file}: sha256 does not match {card_file}")
            quantization = card.get("quantization")
            if isinstance(quantization, dict):
                engine = quantization.get("engine")
        threads = config.get("parameters", {}).get("torch_threads", {}).get("string_value", "1")
        torch.set_num_threads(max(1, int(threads)))
        if engine is not None:
            torch.backends.quantized.engine = engine
        if args.get("model_instance_kind") == "GPU":
            self.device = torch.device(f"cuda:{args.get('model_instance_device_id', 0)}")
        else:
            self.device = torch.device("cpu")
        self.model = torch.jit.load(str(model_file), map_location=self.device)
        self.model.eval()

    def execute(self, requests: list[Any]) -> list[Any]:
        inputs: list[np.ndarray] = []
        responses: list[Any] = [None] * len(requests)
        valid: list[int] = []
        for index, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, INPUT)
            if tensor is None:
                responses[index] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"missing input {INPUT}")
                )
                continue
            inputs.append(np.asarray(tensor.as_numpy(), dtype=np.float32))
            valid.append(index)
        if valid:
            try:
                batch = torch.from_numpy(np.concatenate(inputs)).to(self.device)
                with torch.inference_mode():
                    logits = self.model(batch).to("cpu").numpy().astype(np.float32, copy=False)
            except Exception as exc:  # one bad batch answers errors; the model stays up
                for index in valid:
                    responses[index] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"inference failed: {exc}")
                    )
                return responses
            start = 0
            for index, rows in zip(valid, (len(x) for x in inputs), strict=True):
                out = pb_utils.Tensor(OUTPUT, np.ascontiguousarray(logits[start : start + rows]))
                responses[index] = pb_utils.InferenceResponse(output_tensors=[out])
                start += rows
        return responses

    def finalize(self) -> None:
        del self.model
