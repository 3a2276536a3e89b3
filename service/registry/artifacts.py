"""Reading the registry contract: a Triton model repository whose versions carry a model card.

    <registry>/<family>-<variant>/config.pbtxt
    <registry>/<family>-<variant>/<version>/model.pt    TorchScript
    <registry>/<family>-<variant>/<version>/card.json   the model card

Only this module knows the layout. Nothing here unpickles anything: cards are JSON, and the model file is
handed to ``torch.jit.load`` by the backend only after its sha256 matched the card.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CARD_FILE = "card.json"


class TensorSpec(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class Signature(BaseModel):
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)


class Quantization(BaseModel):
    model_config = ConfigDict(extra="allow")

    engine: str
    method: str


class ModelCard(BaseModel):
    """The fields of card.json the service relies on; the rest is kept and shown as-is."""

    model_config = ConfigDict(extra="allow")

    family: str
    variant: str
    name: str
    version: int = Field(ge=1)
    precision: str
    quantization: Quantization | None = None
    signature: Signature
    labels: list[str] = Field(default_factory=list)
    max_batch_size: int = Field(0, ge=0)
    files: dict[str, str]
    metrics: dict[str, Any] = Field(default_factory=dict)
    torch_version: str = ""


class ArtifactError(Exception):
    """A version on disk that cannot be served: missing file, bad card, checksum mismatch."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    directory: Path
    card: ModelCard

    def example_shape(self, rows: int) -> list[int]:
        return [rows, *self.card.signature.inputs[0].shape[1:]]


@dataclass(frozen=True, slots=True)
class BrokenVersion:
    name: str
    version: int
    reason: str


def is_version_name(text: str) -> bool:
    """A published version: positive ASCII decimal digits ('¹'.isdigit() is true, int('¹') fails)."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit() and not text.startswith("0")


def read_card(directory: Path) -> ModelCard:
    try:
        card = ModelCard.model_validate(json.loads((directory / CARD_FILE).read_text()))
    except FileNotFoundError:
        raise ArtifactError(f"{directory}: {CARD_FILE} is missing") from None
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ArtifactError(f"{directory / CARD_FILE}: not a valid model card ({exc})") from None
    if card.name != directory.parent.name or card.version != int(directory.name):
        raise ArtifactError(
            f"{directory / CARD_FILE}: card names {card.name} version {card.version}, "
            f"but it lies in {directory.parent.name}/{directory.name}"
        )
    return card


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(version: ModelVersion) -> None:
    """Refuse a version whose files do not match the checksums in its card, naming the file."""
    for filename, expected in version.card.files.items():
        path = version.directory / filename
        if path.resolve().parent != version.directory.resolve():
            raise ArtifactError(f"{version.card.name}: card lists a file outside its version: {filename}")
        try:
            actual = sha256_of(path)
        except FileNotFoundError:
            raise ArtifactError(f"{path}: missing") from None
        if actual != expected:
            raise ArtifactError(f"{path}: sha256 mismatch (card {expected[:12]}…, file {actual[:12]}…)")


def variants_on_disk(root: Path, family: str) -> set[str]:
    """Variant names of ``family`` in the registry folder, whether or not they load."""
    prefix = f"{family}-"
    if not root.is_dir():
        return set()
    return {
        path.name.removeprefix(prefix)
        for path in root.iterdir()
        if path.is_dir() and path.name.startswith(prefix) and MODEL_NAME.match(path.name)
    }


def scan(root: Path) -> tuple[dict[str, dict[int, ModelVersion]], list[BrokenVersion]]:
    """Every published version under ``root`` by model name, and the versions that cannot be read."""
    models: dict[str, dict[int, ModelVersion]] = {}
    broken: list[BrokenVersion] = []
    if not root.is_dir():
        raise ArtifactError(f"registry {root} does not exist or is not a folder")
    for model_dir in sorted(root.iterdir()):
        if not model_dir.is_dir() or not MODEL_NAME.match(model_dir.name):
            continue
        for version_dir in sorted(model_dir.iterdir()):
            if not version_dir.is_dir() or not is_version_name(version_dir.name):
                continue  # temporary (.tmp-*) and foreign folders are not versions
            try:
                card = read_card(version_dir)
            except ArtifactError as exc:
                log.error("skipping %s: %s", version_dir, exc)
                broken.append(BrokenVersion(model_dir.name, int(version_dir.name), str(exc)))
                continue
            models.setdefault(model_dir.name, {})[card.version] = ModelVersion(version_dir, card)
    return models, broken
