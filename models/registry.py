"""The versioned model registry: a Triton model repository whose versions carry a model card.

    <registry>/<family>-<variant>/config.pbtxt          written atomically (tmp + os.replace)
    <registry>/<family>-<variant>/<version>/model.pt    TorchScript
    <registry>/<family>-<variant>/<version>/card.json   the model card

A version is assembled in ``<name>/.tmp-<uuid>/`` and renamed into place; renaming a directory onto an
existing non-empty one fails on POSIX, so concurrent publishers can never overwrite each other: the loser
retries with the next number. Readers ignore dot-prefixed directories. Nothing is unpickled except
TorchScript, and only after its sha256 matched the card.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from models.quantize import check_engine_supported, use_engine

CARD_FILE = "card.json"
CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.pt"
MAX_PUBLISH_ATTEMPTS = 100


class RegistryError(Exception):
    """A missing model or version, or an unreadable card."""


class ChecksumMismatch(RegistryError):
    """A file's sha256 differs from the one its card records."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def triton_config(name: str, max_batch_size: int) -> str:
    return (
        f'name: "{name}"\n'
        'platform: "pytorch_libtorch"\n'
        f"max_batch_size: {max_batch_size}\n"
        'input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] } ]\n'
        'output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 10 ] } ]\n'
        "dynamic_batching { max_queue_delay_microseconds: 1000 }\n"
        "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
    )


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_card(directory: Path, card: Mapping[str, Any]) -> None:
    (directory / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")


def versions(registry: Path, name: str) -> list[int]:
    model_dir = registry / name
    if not model_dir.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.is_dir() and p.name.isascii() and p.name.isdigit() and int(p.name) > 0
    )


def publish(registry: Path, card: Mapping[str, Any], files: Mapping[str, Path]) -> int:
    """Publish ``files`` (name -> source path) with ``card`` as the next version of ``card['name']``.

    The card's ``files`` (sha256) and ``version`` are filled in here. Returns the version number.
    """
    name = str(card["name"])
    model_dir = registry / name
    model_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(model_dir / CONFIG_FILE, triton_config(name, int(card["max_batch_size"])))
    staging = model_dir / f".tmp-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        for filename, source in files.items():
            shutil.copyfile(source, staging / filename)
        content = {**card, "files": {f: sha256_file(staging / f) for f in files}}
        for _ in range(MAX_PUBLISH_ATTEMPTS):
            version = max(versions(registry, name), default=0) + 1
            _write_card(staging, {**content, "version": version})
            try:
                os.rename(staging, model_dir / str(version))
            except OSError:
                if (model_dir / str(version)).exists():
                    continue  # a concurrent publisher took this number: retry with the next one
                raise
            return version
        raise RegistryError(f"{name}: gave up publishing after {MAX_PUBLISH_ATTEMPTS} version collisions")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def list_models(registry: Path) -> dict[str, list[int]]:
    """Model name -> published versions, ignoring dot-prefixed (in-progress) directories."""
    if not registry.is_dir():
        raise RegistryError(f"{registry}: registry directory not found")
    return {
        p.name: versions(registry, p.name)
        for p in sorted(registry.iterdir())
        if p.is_dir() and not p.name.startswith(".") and versions(registry, p.name)
    }


def version_dir(registry: Path, name: str, version: int | None = None) -> Path:
    """The directory of ``name`` at ``version`` (latest when None)."""
    available = versions(registry, name)
    if not available:
        raise RegistryError(f"{name}: no such model in {registry}")
    chosen = available[-1] if version is None else version
    if chosen not in available:
        raise RegistryError(f"{name}: no version {chosen} (available: {', '.join(map(str, available))})")
    return registry / name / str(chosen)


def read_card(directory: Path) -> dict[str, Any]:
    path = directory / CARD_FILE
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: unreadable card ({exc})") from None
    if not isinstance(card, dict) or not isinstance(card.get("files"), dict):
        raise RegistryError(f"{path}: not a model card (no 'files' mapping)")
    return card


def verify(directory: Path) -> dict[str, Any]:
    """Check the sha256 of every file the card lists; raise ``ChecksumMismatch`` naming the first bad file."""
    card = read_card(directory)
    for filename, expected in card["files"].items():
        path = directory / filename
        if path.resolve().parent != directory.resolve():
            raise ChecksumMismatch(f"{directory / CARD_FILE}: lists a file outside its version: {filename}")
        if not path.is_file():
            raise ChecksumMismatch(f"{path}: missing (listed in the card)")
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumMismatch(f"{path}: sha256 mismatch (card {expected[:12]}…, file {actual[:12]}…)")
    return card


def card_engine(card: Mapping[str, Any]) -> str | None:
    quantization = card.get("quantization")
    return str(quantization["engine"]) if isinstance(quantization, dict) else None


def load_torchscript(directory: Path) -> torch.jit.ScriptModule:
    """Verify checksums and the card's quantization engine, then ``torch.jit.load`` the version's model.pt.

    For int8 models the engine is set while loading; callers should also run the model under it.
    """
    card = verify(directory)
    engine = card_engine(card)
    if engine is not None:
        check_engine_supported(engine)
    with use_engine(engine):
        module: torch.jit.ScriptModule = torch.jit.load(str(directory / MODEL_FILE))
    return module
