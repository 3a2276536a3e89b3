"""The model card and I/O signature as typed models: written and read with the same schema.

``ModelCard.model_validate`` is what the service reads with and what ``contract.publish`` validates with
before anything reaches the registry, so a card that the service would refuse is never published.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ArtifactFormat(enum.StrEnum):
    """How a version's network is stored; each format names the files that make up its artifact."""

    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"
    OPENVINO = "openvino"

    @property
    def files(self) -> tuple[str, ...]:
        return _ARTIFACT_FILES[self]

    @property
    def triton_platform(self) -> str:
        return _TRITON_PLATFORMS[self]


_ARTIFACT_FILES = {
    ArtifactFormat.TORCHSCRIPT: ("model.pt",),
    ArtifactFormat.ONNX: ("model.onnx",),
    ArtifactFormat.OPENVINO: ("model.xml", "model.bin"),
}
_TRITON_PLATFORMS = {
    ArtifactFormat.TORCHSCRIPT: "pytorch_libtorch",
    ArtifactFormat.ONNX: "onnxruntime_onnx",
    ArtifactFormat.OPENVINO: "openvino",
}

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]  # fmt: skip


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    datatype: Datatype
    shape: list[int] = Field(min_length=1, description="-1 for a variable dimension; the first is the batch.")


def shape_fits(expected: Sequence[int], shape: Sequence[int]) -> bool:
    """``shape`` has ``expected``'s dimensions, -1 matching any size (a plain loop: it runs per request)."""
    if len(shape) != len(expected):
        return False
    for want, got in zip(expected, shape, strict=True):  # noqa: SIM110 (all() of a generator: twice as slow)
        if want != -1 and want != got:
            return False
    return True


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)


class Quantization(BaseModel):
    """How an int8 variant was made. ``engine`` is torch's quantized engine for TorchScript int8 (x86,
    qnnpack) and the runtime's name for the other formats (onnxruntime, openvino)."""

    model_config = ConfigDict(extra="allow")

    engine: str
    method: str


class Parent(BaseModel):
    name: str
    version: int = Field(ge=1)


class Compression(BaseModel):
    """The compression step that made this variant from its parent, with the settings it ran with."""

    model_config = ConfigDict(extra="allow")

    method: str  # distillation, hint-distillation, l1-filter-pruning, quantization-aware-training, ...
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class CascadeChoice(BaseModel):
    """The confidence threshold the pipeline picked for a cascade from this variant to ``then``: below it,
    a request is escalated. Picked on the validation split, so serving can use it without a test-set peek."""

    model_config = ConfigDict(extra="allow")

    then: str = Field(min_length=1, description="The variant escalated requests go to (the teacher).")
    threshold: float = Field(gt=0, lt=1, description="Lowest top softmax probability answered here.")
    expected_escalation: float = Field(ge=0, le=1, description="Share of validation rows escalated.")
    expected_accuracy: float = Field(ge=0, le=1, description="The cascade's validation accuracy.")
    margin: float = Field(ge=0, lt=1, description="Accuracy the cascade may lose against ``then``.")
    computed_on: str = Field("validation", description="The split the threshold was picked on.")


class ModelCard(BaseModel):
    """card.json. Unknown fields are kept (and shown) so older services read newer cards."""

    model_config = ConfigDict(extra="allow")

    family: str = Field(min_length=1)
    variant: str = Field(min_length=1)
    name: str = Field(min_length=1)
    version: int = Field(ge=1)
    format: ArtifactFormat = ArtifactFormat.TORCHSCRIPT  # cards written before formats existed
    precision: str
    quantization: Quantization | None = None
    architecture: str = ""
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    parent: Parent | None = None
    lineage: list[str] = Field(
        default_factory=list, description="The published ancestors' names, the root (the teacher) first."
    )
    compression: Compression | None = None
    dataset: dict[str, Any] = Field(default_factory=dict)
    recipe_digest: str = ""
    seed: int | None = None
    signature: Signature
    labels: list[str] = Field(default_factory=list)
    default_variant: str = Field(
        "", description="What the family's build declares its bare name should serve; empty: none declared."
    )
    max_batch_size: int = Field(0, ge=0)
    files: dict[str, str]
    metrics: dict[str, Any] = Field(default_factory=dict)
    cascade: CascadeChoice | None = None  # cards written before cascades have none
    libraries: dict[str, str] = Field(default_factory=dict)
    torch_version: str = ""
    created_at: str = ""

    @property
    def engine(self) -> str | None:
        """torch's quantized engine, which must be in effect when a TorchScript int8 variant is loaded."""
        if self.quantization is None or self.format is not ArtifactFormat.TORCHSCRIPT:
            return None
        return self.quantization.engine

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"
