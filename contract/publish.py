"""Checksums and atomic publication of a version.

A version is assembled in ``<name>/.tmp-<uuid>/`` and renamed into place; renaming a folder onto an existing
non-empty one fails on POSIX, so concurrent publishers never overwrite each other: the loser retries with the
next number. The card is validated with the schema the service reads with before anything is renamed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contract.card import ModelCard
from contract.layout import CARD_FILE, CONFIG_FILE, ArtifactError, ChecksumMismatch, ModelVersion, versions
from contract.triton_config import config_text

MAX_PUBLISH_ATTEMPTS = 100


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify_files(version: ModelVersion) -> None:
    """Refuse a version whose files are missing or differ from its card's checksums, naming the file.

    The card must list every file its format needs, so a card cannot vouch for an artifact by omission.
    """
    card = version.card
    unlisted = [name for name in card.format.files if name not in card.files]
    if unlisted:
        raise ChecksumMismatch(f"{card.name}: the card lists no checksum for {', '.join(unlisted)}")
    for filename, expected in card.files.items():
        path = version.directory / filename
        if path.resolve().parent != version.directory.resolve():
            raise ChecksumMismatch(f"{card.name}: card lists a file outside its version: {filename}")
        try:
            actual = sha256_of(path)
        except FileNotFoundError:
            raise ChecksumMismatch(f"{path}: missing (listed in the card)") from None
        if actual != expected:
            raise ChecksumMismatch(f"{path}: sha256 mismatch (card {expected[:12]}…, file {actual[:12]}…)")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def validated_card(content: Mapping[str, Any]) -> ModelCard:
    try:
        return ModelCard.model_validate(content)
    except ValidationError as exc:
        raise ArtifactError(f"{content.get('name', '?')}: invalid model card ({exc})") from None


def draft_version(directory: Path, card: Mapping[str, Any]) -> ModelVersion:
    """A not-yet-published version in ``directory`` (which holds its format's files), checksummed and
    validated like a published one, so it can be opened and measured before it is published."""
    draft = validated_card({**card, "files": {}})
    checksums = {name: sha256_of(directory / name) for name in draft.format.files}
    return ModelVersion(directory, draft.model_copy(update={"files": checksums}))


def publish(registry: Path, card: Mapping[str, Any], files: Mapping[str, Path]) -> ModelVersion:
    """Publish ``files`` (registry file name -> source path) with ``card`` as the next version of its model.

    The card's ``files`` (sha256) and ``version`` are filled in here; the format's files must all be given.
    """
    draft = validated_card({**card, "version": 1, "files": {name: "" for name in files}})
    missing = [name for name in draft.format.files if name not in files]
    if missing:
        raise ArtifactError(f"{draft.name}: a {draft.format} artifact needs {', '.join(missing)}")
    model_dir = registry / draft.name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".tmp-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        for filename, source in files.items():
            shutil.copyfile(source, staging / filename)
        checksums = {filename: sha256_of(staging / filename) for filename in files}
        for _ in range(MAX_PUBLISH_ATTEMPTS):
            number = max(versions(registry, draft.name), default=0) + 1
            final = draft.model_copy(update={"version": number, "files": checksums})
            (staging / CARD_FILE).write_text(final.to_json())
            try:
                os.rename(staging, model_dir / str(number))
            except OSError:
                if (model_dir / str(number)).exists():
                    continue  # a concurrent publisher took this number: retry with the next one
                raise
            _write_atomically(model_dir / CONFIG_FILE, config_text(final))
            return ModelVersion(model_dir / str(number), final)
        raise ArtifactError(
            f"{draft.name}: gave up publishing after {MAX_PUBLISH_ATTEMPTS} version collisions"
        )
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
