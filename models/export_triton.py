"""Export chosen variants of a registry as a Triton model repository (``python -m models export-triton``).

The registry already is a Triton model repository; the export picks variants, copies the latest version of
each (its number kept, checksums verified before and after the copy) and adapts ``config.pbtxt``:
``instance_group`` becomes KIND_GPU with ``gpu`` and KIND_CPU otherwise; ``platform: "pytorch_libtorch"``,
``max_batch_size``, ``dynamic_batching``, inputs and outputs are kept. Configs are parsed and written with
``google.protobuf.text_format`` and Triton's ``ModelConfig`` message, so an invalid field fails here and not
in Triton.

int8 variants are refused with ``gpu``: PyTorch's quantized kernels (fbgemm/x86, qnnpack) run on CPU only.
Without ``gpu`` they may be exported (KIND_CPU); note that Triton's libtorch backend loads them under its
default quantized engine (x86 on x86 servers), so a qnnpack variant there is only right on ARM.

With ``python_backend`` (a test option) configs say ``backend: "python"`` and a small python-backend
``model.py`` (``models/triton_python_backend/model.py``) is written beside each ``model.pt``: the stand-in
for Triton builds that only have the python backend.

``out`` may already exist, and may be a mount point (an emptyDir in a pod whose root filesystem is
read-only), so it is never renamed or replaced itself: the models are assembled in a hidden staging
directory inside it (same filesystem, so renames work), then each takes its place with one rename, after
what ``out`` held before is moved aside. A model directory never appears half-written, and an export that
fails while staging leaves ``out`` as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from models import registry as reg

LOG = logging.getLogger(__name__)
PYTHON_BACKEND_MODEL = Path(__file__).parent / "triton_python_backend" / "model.py"
LIBTORCH_PLATFORM = "pytorch_libtorch"


class TritonExportError(reg.RegistryError):
    """A variant that cannot be exported as asked (unknown, int8 on GPU, invalid config)."""


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a ``config.pbtxt`` into Triton's ``ModelConfig`` (unknown fields are errors)."""
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except (OSError, text_format.ParseError) as exc:
        raise TritonExportError(f"{path}: not a valid Triton model config ({exc})") from None
    return config


def adapt_config(
    config: model_config_pb2.ModelConfig, name: str, *, gpu: bool, python_backend: bool
) -> model_config_pb2.ModelConfig:
    """A copy of ``config`` named ``name``, on KIND_GPU or KIND_CPU, for libtorch or the python backend."""
    adapted = model_config_pb2.ModelConfig()
    adapted.CopyFrom(config)
    adapted.name = name
    if python_backend:
        adapted.ClearField("platform")
        adapted.backend = "python"
    else:
        adapted.ClearField("backend")
        adapted.platform = LIBTORCH_PLATFORM
    kind = (
        model_config_pb2.ModelInstanceGroup.KIND_GPU if gpu else model_config_pb2.ModelInstanceGroup.KIND_CPU
    )
    groups = list(adapted.instance_group) or [model_config_pb2.ModelInstanceGroup(count=1)]
    del adapted.instance_group[:]
    for group in groups:
        group.kind = kind
        if not gpu:
            del group.gpus[:]
        adapted.instance_group.append(group)
    return adapted


def _choose(registry_path: Path, variants: list[str] | None) -> dict[str, Path]:
    """Model name -> latest version directory: the named variants, or every fp32 variant."""
    available = reg.list_models(registry_path)
    cards = {name: reg.read_card(reg.version_dir(registry_path, name)) for name in available}
    if variants is None:
        chosen = [name for name, card in cards.items() if card.get("precision") == "fp32"]
        if not chosen:
            raise TritonExportError(f"{registry_path}: no fp32 variant to export")
    else:
        chosen = []
        for wanted in variants:
            matches = [n for n, card in cards.items() if wanted in (n, card.get("variant"))]
            if not matches:
                raise TritonExportError(
                    f"{wanted}: no such variant in {registry_path} (available: {', '.join(available)})"
                )
            chosen.extend(m for m in matches if m not in chosen)
    return {name: reg.version_dir(registry_path, name) for name in chosen}


def export_triton(
    registry: Path, out: Path, variants: list[str] | None, gpu: bool, python_backend: bool = False
) -> list[str]:
    """Write a Triton model repository at ``out`` with the latest version of each chosen variant.

    ``variants`` are model names (``mnist-student-fp32``) or variant names (``student-fp32``); None exports
    every fp32 variant. Returns the exported model names. What ``out`` held before is replaced.
    """
    registry_path = registry
    chosen = _choose(registry_path, variants)
    cards = {name: reg.verify(directory) for name, directory in chosen.items()}
    if gpu:
        int8 = sorted(name for name, card in cards.items() if card.get("precision") != "fp32")
        if int8:
            raise TritonExportError(
                f"{', '.join(int8)}: int8 variants cannot be exported with --gpu: PyTorch's quantized "
                "kernels (fbgemm/x86, qnnpack) run on CPU only; export them without --gpu (KIND_CPU)"
            )
    out = out.absolute()
    if out.exists() and not out.is_dir():
        raise TritonExportError(f"{out}: exists and is not a directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".export-{uuid.uuid4().hex}"
    staging.mkdir()
    published = False
    try:
        for name, source in chosen.items():
            _export_one(registry_path, name, source, staging, gpu=gpu, python_backend=python_backend)
            engine = reg.card_engine(cards[name])
            if engine not in (None, "x86", "fbgemm") and not python_backend:
                LOG.warning(
                    "%s: int8 for the %s engine; Triton's libtorch backend uses its default engine "
                    "(x86 on x86 servers)",
                    name,
                    engine,
                )
        _publish(staging, out)
        published = True
    finally:
        shutil.rmtree(out if created and not published else staging, ignore_errors=True)
    return list(chosen)


def _export_one(
    registry_path: Path, name: str, source: Path, staging: Path, *, gpu: bool, python_backend: bool
) -> None:
    config = adapt_config(
        read_config(registry_path / name / reg.CONFIG_FILE),
        name,
        gpu=gpu,
        python_backend=python_backend,
    )
    model_dir = staging / name
    target = model_dir / source.name  # the version number is kept
    target.mkdir(parents=True)
    for filename in (reg.MODEL_FILE, reg.CARD_FILE):
        shutil.copyfile(source / filename, target / filename)
    reg.verify(target)  # the copy is what the card says
    if python_backend:
        shutil.copyfile(PYTHON_BACKEND_MODEL, target / "model.py")
    (model_dir / reg.CONFIG_FILE).write_text(text_format.MessageToString(config))


def _publish(staging: Path, out: Path) -> None:
    """Move what ``out`` holds aside (into ``staging``, removed with it), then each staged model into ``out``.

    Renames within one directory tree: they work on a mount point, where renaming ``out`` itself fails
    (EBUSY), and need nothing writable outside ``out``. If a rename fails, what ``out`` held is put back.
    """
    previous = staging / ".previous"
    previous.mkdir()
    models = [entry for entry in staging.iterdir() if entry != previous]
    moved_aside: list[str] = []
    published: list[str] = []
    try:
        for entry in out.iterdir():
            if entry != staging:
                os.rename(entry, previous / entry.name)
                moved_aside.append(entry.name)
        for model in models:
            os.rename(model, out / model.name)
            published.append(model.name)
    except OSError:
        for name in published:
            os.rename(out / name, staging / name)
        for name in moved_aside:
            os.rename(previous / name, out / name)
        raise
