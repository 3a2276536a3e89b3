"""A variant's Triton ``config.pbtxt``, derived from its card and parsed with Triton's own ``ModelConfig``.

Built as a protobuf message, never as a string, so an invalid field fails here and not inside Triton.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from contract.card import ModelCard, TensorSpec
from contract.layout import CONFIG_FILE, ArtifactError

ModelConfig = model_config_pb2.ModelConfig
DEFAULT_QUEUE_DELAY_US = 1000


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    return spec.shape[1:] if batched else spec.shape


def derive_config(card: ModelCard) -> model_config_pb2.ModelConfig:
    """Platform from the card's format, dims from its signature, dynamic batching when it batches."""
    batched = card.max_batch_size > 0
    config = model_config_pb2.ModelConfig(
        name=card.name,
        platform=card.format.triton_platform,
        max_batch_size=card.max_batch_size,
        input=[
            model_config_pb2.ModelInput(name=s.name, data_type=f"TYPE_{s.datatype}", dims=_dims(s, batched))
            for s in card.signature.inputs
        ],
        output=[
            model_config_pb2.ModelOutput(name=s.name, data_type=f"TYPE_{s.datatype}", dims=_dims(s, batched))
            for s in card.signature.outputs
        ],
        instance_group=[
            model_config_pb2.ModelInstanceGroup(count=1, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
        ],
    )
    if batched:
        config.dynamic_batching.max_queue_delay_microseconds = DEFAULT_QUEUE_DELAY_US
    config.version_policy.latest.num_versions = 1
    return config


def config_text(card: ModelCard) -> str:
    return text_format.MessageToString(derive_config(card))


def parse_config(text: str, source: str) -> model_config_pb2.ModelConfig:
    """Parse ``config.pbtxt`` text; unknown fields and bad values are errors naming ``source``."""
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ArtifactError(f"{source}: not a valid Triton model config ({exc})") from None


def load_config(model_dir: Path, card: ModelCard) -> model_config_pb2.ModelConfig:
    """The model's ``config.pbtxt``, or the one its card implies when the folder has none."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return derive_config(card)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable ({exc})") from None
    return parse_config(text, str(path))


def config_as_json(config: model_config_pb2.ModelConfig) -> dict[str, Any]:
    document: dict[str, Any] = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return document
