"""A variant's Triton model configuration, as Triton itself would report it.

The registry's config.pbtxt is parsed with Triton's own ModelConfig message (shipped in tritonclient);
a version without one gets a config derived from its card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from service.registry.artifacts import ArtifactError, ModelCard

CONFIG_FILE = "config.pbtxt"
ModelConfig = model_config_pb2.ModelConfig


def _derived(card: ModelCard) -> model_config_pb2.ModelConfig:
    def tensor(spec: Any, message: type) -> Any:
        return message(name=spec.name, data_type=f"TYPE_{spec.datatype}", dims=spec.shape[1:])

    config = model_config_pb2.ModelConfig(
        name=card.name,
        platform="pytorch_libtorch",
        max_batch_size=card.max_batch_size,
        input=[tensor(spec, model_config_pb2.ModelInput) for spec in card.signature.inputs],
        output=[tensor(spec, model_config_pb2.ModelOutput) for spec in card.signature.outputs],
    )
    config.dynamic_batching.SetInParent()
    return config


def load_config(model_dir: Path, card: ModelCard) -> model_config_pb2.ModelConfig:
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return _derived(card)
    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ArtifactError(f"{path}: not a valid Triton model config ({exc})") from None


def config_as_json(config: model_config_pb2.ModelConfig) -> dict[str, Any]:
    document: dict[str, Any] = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return document
