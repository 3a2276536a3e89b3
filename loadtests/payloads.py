"""Real MNIST test digits as request bodies, encoded once so the load generator spends its time sending.

Each body is split into a prefix that carries the request id (unique per request, so feedback can name
it) and the encoded tensor, which is the same every time a digit is reused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUT = "INPUT__0"
OUTPUT = "OUTPUT__0"


def load_digits(path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Raw 0-255 float32 images [N,1,28,28] and int64 labels: from ``path`` (.npz) or the built-in test split."""
    if path is not None:
        with np.load(path) as data:
            return data["images"].astype(np.float32), data["labels"].astype(np.int64)
    from models.data import load_builtin

    test = load_builtin().test
    return test.images, test.labels


def save_digits(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """The runner saves the split once, so the locust process starts without loading the dataset."""
    np.savez(path, images=images, labels=labels)


@dataclass(frozen=True)
class Digit:
    label: int
    pixels: np.ndarray  # float32 [1, 1, 28, 28]
    json_tensors: bytes  # `"inputs":[...]` of an OIP JSON request, without the braces
    binary_header: bytes  # the same with binary_data_size and a binary output, to follow the id
    binary_tensor: bytes  # the raw FP32 bytes that follow the JSON header


def encode(images: np.ndarray, labels: np.ndarray) -> list[Digit]:
    digits = []
    for image, label in zip(images, labels, strict=True):
        pixels = np.ascontiguousarray(image.reshape(1, 1, 28, 28), dtype=np.float32)
        json_inputs = [{"name": INPUT, "shape": [1, 1, 28, 28], "datatype": "FP32",
                        "data": pixels.astype(np.int64).ravel().tolist()}]  # fmt: skip
        raw = pixels.tobytes()
        binary_inputs = [{"name": INPUT, "shape": [1, 1, 28, 28], "datatype": "FP32",
                          "parameters": {"binary_data_size": len(raw)}}]  # fmt: skip
        binary_outputs = [{"name": OUTPUT, "parameters": {"binary_data": True}}]
        digits.append(
            Digit(
                label=int(label),
                pixels=pixels,
                json_tensors=json.dumps({"inputs": json_inputs}, separators=(",", ":"))[1:-1].encode(),
                binary_header=json.dumps(
                    {"inputs": binary_inputs, "outputs": binary_outputs}, separators=(",", ":")
                )[1:-1].encode(),
                binary_tensor=raw,
            )
        )
    return digits


def with_id(request_id: str, tensors: bytes) -> bytes:
    """``{"id": ..., <tensors>}``: the id first, the pre-encoded tensors after."""
    return b'{"id":' + json.dumps(request_id).encode() + b"," + tensors + b"}"
