"""Export chosen variants of a registry as a Triton model repository (``python -m models export-triton``).

The registry already is a Triton model repository; the export picks variants, copies the latest version of
each (its number kept, checksums verified before and after the copy) and adapts ``config.pbtxt``: the
platform follows the card's format (``onnxruntime_onnx`` for ONNX, ``pytorch_libtorch`` for TorchScript,
``openvino`` for OpenVINO IR), ``instance_group`` becomes KIND_GPU with ``gpu`` and KIND_CPU otherwise;
``max_batch_size``, ``dynamic_batching``, inputs and outputs are kept. Configs are parsed and written with
``google.protobuf.text_format`` and Triton's ``ModelConfig`` message, so an invalid field fails here and not
in Triton. By default the fp32 ONNX variants are exported: the portable artifact a GPU Triton serves.

With ``gpu``, TorchScript int8 (PyTorch's quantized kernels run on CPU only) and OpenVINO IR (Triton's
OpenVINO backend runs on CPU) are refused.

With ``python_backend`` (a test option) configs say ``backend: "python"`` and a small python-backend
``model.py`` (``models/triton_python_backend/model.py``, which runs ``model.onnx`` with ONNX Runtime) is
written beside each artifact: the stand-in for Triton builds that only have the python backend.

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

from contract import layout
from contract.card import ArtifactFormat, ModelCard
from contract.layout import ArtifactError, ModelVersion
from contract.publish import verify_files
from contract.triton_config import load_config

LOG = logging.getLogger(__name__)
PYTHON_BACKEND_MODEL = Path(__file__).parent / "triton_python_backend" / "model.py"


class TritonExportError(ArtifactError):
    """A variant that cannot be exported as asked (unknown, int8 on GPU, invalid config)."""


def adapt_config(
    config: model_config_pb2.ModelConfig, card: ModelCard, *, gpu: bool, python_backend: bool
) -> model_config_pb2.ModelConfig:
    """A copy of ``config`` for ``card``'s format, on KIND_GPU or KIND_CPU, or for the python backend."""
    adapted = model_config_pb2.ModelConfig()
    adapted.CopyFrom(config)
    adapted.name = card.name
    if python_backend:
        adapted.ClearField("platform")
        adapted.backend = "python"
    else:
        adapted.ClearField("backend")
        adapted.platform = card.format.triton_platform
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


def _choose(registry_path: Path, variants: list[str] | None) -> dict[str, ModelVersion]:
    """Model name -> latest version: the named variants, or every fp32 ONNX variant."""
    latest = {name: layout.latest(registry_path, name) for name in layout.list_models(registry_path)}
    if variants is None:
        chosen = [
            name
            for name, version in latest.items()
            if version.card.precision == "fp32" and version.card.format is ArtifactFormat.ONNX
        ]
        if not chosen:
            raise TritonExportError(
                f"{registry_path}: no fp32 ONNX variant to export (name them with --variants)"
            )
    else:
        chosen = []
        for wanted in variants:
            matches = [n for n, version in latest.items() if wanted in (n, version.card.variant)]
            if not matches:
                raise TritonExportError(
                    f"{wanted}: no such variant in {registry_path} (available: {', '.join(latest)})"
                )
            chosen.extend(m for m in matches if m not in chosen)
    return {name: latest[name] for name in chosen}


def _refuse_unservable(versions: dict[str, ModelVersion], *, gpu: bool, python_backend: bool) -> None:
    cards = [version.card for version in versions.values()]
    if python_backend:
        other = sorted(card.name for card in cards if card.format is not ArtifactFormat.ONNX)
        if other:
            raise TritonExportError(
                f"{', '.join(other)}: the python-backend stand-in serves ONNX variants only"
            )
    if gpu:
        cpu_only = sorted(
            card.name
            for card in cards
            if card.format is ArtifactFormat.OPENVINO
            or (card.format is ArtifactFormat.TORCHSCRIPT and card.quantization is not None)
        )
        if cpu_only:
            raise TritonExportError(
                f"{', '.join(cpu_only)}: cannot be exported with --gpu: PyTorch's quantized kernels (fbgemm/x86, "
                "qnnpack) and Triton's OpenVINO backend run on CPU only; export them without --gpu (KIND_CPU)"
            )


def export_triton(
    registry: Path, out: Path, variants: list[str] | None, gpu: bool, python_backend: bool = False
) -> list[str]:
    """Write a Triton model repository at ``out`` with the latest version of each chosen variant.

    ``variants`` are model names (``mnist-student-fp32``) or variant names (``student-fp32``); None exports
    every fp32 variant. Returns the exported model names. What ``out`` held before is replaced.
    """
    registry_path = registry
    chosen = _choose(registry_path, variants)
    for version in chosen.values():
        verify_files(version)
    _refuse_unservable(chosen, gpu=gpu, python_backend=python_backend)
    out = out.absolute()
    if out.exists() and not out.is_dir():
        raise TritonExportError(f"{out}: exists and is not a directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".export-{uuid.uuid4().hex}"
    staging.mkdir()
    published = False
    try:
        for name, version in chosen.items():
            _export_one(registry_path, version, staging, gpu=gpu, python_backend=python_backend)
            engine = version.card.engine
            if engine not in (None, "x86", "fbgemm"):
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
    registry_path: Path, version: ModelVersion, staging: Path, *, gpu: bool, python_backend: bool
) -> None:
    card = version.card
    config = adapt_config(
        load_config(registry_path / card.name, card), card, gpu=gpu, python_backend=python_backend
    )
    model_dir = staging / card.name
    target = model_dir / version.directory.name  # the version number is kept
    target.mkdir(parents=True)
    for filename in (*card.format.files, layout.CARD_FILE):
        shutil.copyfile(version.directory / filename, target / filename)
    verify_files(ModelVersion(target, card))  # the copy is what the card says
    if python_backend:
        shutil.copyfile(PYTHON_BACKEND_MODEL, target / "model.py")
    (model_dir / layout.CONFIG_FILE).write_text(text_format.MessageToString(config))


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
