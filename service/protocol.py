"""Open Inference Protocol (KServe v2) types.

Wire models (pydantic) validate what a client sends and document it in OpenAPI; the transport decodes
them into the plain value objects below, which carry numpy arrays and are all the DataPlane sees.

The value objects are treated as immutable but not declared frozen: a frozen dataclass sets each field
through ``object.__setattr__`` and took three times as long to build (0.64 against 0.19 µs), and a
one-digit request builds half a dozen of these and their kin (``InferOutcome``, ``BatchResult``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Parameters = dict[str, Any]


class WireInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    shape: list[int]
    datatype: str = Field(min_length=1, max_length=16)
    parameters: Parameters | None = None
    data: list[Any] | None = None


class WireOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    parameters: Parameters | None = None


class WireInferRequest(BaseModel):
    """The JSON body of POST /v2/models/{model}/infer."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=256)
    parameters: Parameters | None = None
    inputs: list[WireInput] = Field(min_length=1, max_length=64)
    outputs: list[WireOutput] | None = Field(None, max_length=64)


class WirePredictRequest(BaseModel):
    """The human-friendly body of POST /v1/models/{family}:predict."""

    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(min_length=1)


@dataclass(slots=True)
class Tensor:
    name: str
    datatype: str
    array: np.ndarray
    parameters: Parameters = field(default_factory=dict)

    @property
    def shape(self) -> list[int]:
        return list(self.array.shape)


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool = False
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    inputs: list[Tensor]
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
    # None: every output the model has, in binary when ``binary_outputs`` (tritonclient's default).
    outputs: list[RequestedOutput] | None = None
    binary_outputs: bool = False


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
