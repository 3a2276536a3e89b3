"""Where things live in a registry, and reading it: model names, version numbers, cards, a scan.

Readers ignore dot-prefixed folders (a version being published) and anything that is not a version.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from contract.card import ModelCard

log = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CARD_FILE = "card.json"
CONFIG_FILE = "config.pbtxt"


class ArtifactError(Exception):
    """A registry, model or version that cannot be used: missing, unreadable, or not what its card says."""


class ChecksumMismatch(ArtifactError):
    """A file's sha256 differs from the one its card records (or a listed file is missing)."""


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
    """A published version: positive ASCII decimal digits, no leading zero ('¹'.isdigit() is true too)."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit() and not text.startswith("0")


def parse_version(text: str) -> int:
    if not is_version_name(text):
        raise ArtifactError(f"version must be a positive integer without leading zeros, got '{text[:32]}'")
    return int(text)


def versions(registry: Path, name: str) -> list[int]:
    model_dir = registry / name
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and is_version_name(p.name))


def read_card(directory: Path) -> ModelCard:
    """The card of a version folder, validated, and consistent with where it lies."""
    try:
        card = ModelCard.model_validate(json.loads((directory / CARD_FILE).read_text()))
    except FileNotFoundError:
        raise ArtifactError(f"{directory}: {CARD_FILE} is missing") from None
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise ArtifactError(f"{directory / CARD_FILE}: not a valid model card ({exc})") from None
    if card.name != directory.parent.name or str(card.version) != directory.name:
        raise ArtifactError(
            f"{directory / CARD_FILE}: card names {card.name} version {card.version}, "
            f"but it lies in {directory.parent.name}/{directory.name}"
        )
    return card


def list_models(registry: Path) -> dict[str, list[int]]:
    """Model name -> published versions."""
    if not registry.is_dir():
        raise ArtifactError(f"registry {registry} does not exist or is not a folder")
    found = {
        p.name: versions(registry, p.name) for p in sorted(registry.iterdir()) if MODEL_NAME.match(p.name)
    }
    return {name: numbers for name, numbers in found.items() if numbers}


def version_dir(registry: Path, name: str, version: int | None = None) -> Path:
    """The folder of ``name`` at ``version`` (the latest when None)."""
    available = versions(registry, name)
    if not available:
        raise ArtifactError(f"{name}: no such model in {registry}")
    chosen = available[-1] if version is None else version
    if chosen not in available:
        raise ArtifactError(f"{name}: no version {chosen} (available: {', '.join(map(str, available))})")
    return registry / name / str(chosen)


def latest(registry: Path, name: str) -> ModelVersion:
    directory = version_dir(registry, name)
    return ModelVersion(directory, read_card(directory))


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
    for name, numbers in list_models(root).items():
        for number in numbers:
            directory = root / name / str(number)
            try:
                card = read_card(directory)
            except ArtifactError as exc:
                log.error("skipping %s: %s", directory, exc)
                broken.append(BrokenVersion(name, number, str(exc)))
                continue
            models.setdefault(name, {})[number] = ModelVersion(directory, card)
    return models, broken
