"""``python -m models import FAMILY-VARIANT --file ...``: publish a pre-built artifact as a new version.

Everything is checked and measured before anything is published: the signature (read from the artifact,
declared by flags, and compared with the family's), the evaluation data, and a real run of the artifact
through the runner the service serves it with, which also measures the card's metrics.
"""

from __future__ import annotations

import datetime
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract import layout
from contract.card import ArtifactFormat, ModelCard, Signature, TensorSpec, shape_fits
from contract.publish import draft_version, publish, sha256_of
from models.artifacts import library_versions
from models.data import sha256_arrays
from models.evaluate import artifact_bytes, logits_of, output_of, single_thread, speed
from models.signatures import (
    ImportRefused,
    check_servable,
    differences,
    onnx_signature,
    openvino_signature,
)
from models.sources import read_npz
from models.spec import NAME_PATTERN, SpecError, builtin_families, builtin_spec
from models.train import accuracy_and_nll

SUFFIXES = {".onnx": ArtifactFormat.ONNX, ".xml": ArtifactFormat.OPENVINO, ".pt": ArtifactFormat.TORCHSCRIPT,
            ".pth": ArtifactFormat.TORCHSCRIPT, ".ts": ArtifactFormat.TORCHSCRIPT}  # fmt: skip
RUNTIMES = {ArtifactFormat.ONNX: "onnxruntime", ArtifactFormat.OPENVINO: "openvino"}


@dataclass(frozen=True)
class Declared:
    """What the command line says about the artifact; None: read it from the artifact or the family."""

    input_name: str | None = None
    input_shape: list[int] | None = None
    output_name: str | None = None
    datatype: str = "FP32"
    labels: list[str] | None = None
    precision: str | None = None
    engine: str = "x86"  # TorchScript int8 only: the quantized engine it was packed for
    max_batch_size: int = 64
    default: bool = False  # make this the family's declared default variant


@dataclass(frozen=True)
class Family:
    """What the registry (or a built-in spec) already says about the family being imported into."""

    signature: Signature | None
    labels: list[str]
    default_variant: str
    source: str


def split_name(name: str) -> tuple[str, str]:
    family, sep, variant = name.partition("-")
    if not sep or not variant or not re.match(NAME_PATTERN, family) or not layout.MODEL_NAME.match(name):
        raise ImportRefused(
            f"{name}: expected FAMILY-VARIANT, like wine-teacher-onnx (the family has no '-')"
        )
    return family, variant


def existing_family(registry: Path, family: str) -> Family:
    cards: list[ModelCard] = []
    if registry.is_dir():
        for name in sorted(layout.variants_on_disk(registry, family)):
            try:
                card = layout.latest(registry, f"{family}-{name}").card
            except layout.ArtifactError:
                continue
            if card.family == family:
                cards.append(card)
    if cards:
        newest = max(cards, key=lambda card: card.created_at)
        declared = next((c.default_variant for c in sorted(cards, key=lambda c: c.created_at, reverse=True)
                         if c.default_variant), "")  # fmt: skip
        return Family(newest.signature, newest.labels, declared, f"family '{family}' in {registry}")
    if family in builtin_families():
        spec = builtin_spec(family)
        return Family(
            spec.signature.signature(),
            spec.labels,
            spec.serving.default_variant,
            f"built-in family '{family}'",
        )
    return Family(None, [], "", "")


def format_of(path: Path) -> ArtifactFormat:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ImportRefused(f"--file: {path.name}: unknown kind of artifact (known: {', '.join(SUFFIXES)})")
    if not path.is_file():
        raise ImportRefused(f"--file: file not found: {path}")
    if fmt is ArtifactFormat.OPENVINO and not path.with_suffix(".bin").is_file():
        raise ImportRefused(f"--file: {path.with_suffix('.bin').name} not found beside {path.name}")
    return fmt


def _declared_signature(declared: Declared, family: Family, width: int) -> Signature | None:
    """The signature the flags declare (names default to the family's), or None when they declare none."""
    if declared.input_shape is None:
        return None
    base = family.signature
    input_name = declared.input_name or (base.inputs[0].name if base else "INPUT__0")
    output_name = declared.output_name or (base.outputs[0].name if base else "OUTPUT__0")
    return Signature(
        inputs=[TensorSpec(name=input_name, datatype=declared.datatype, shape=[-1, *declared.input_shape])],
        outputs=[TensorSpec(name=output_name, datatype="FP32", shape=[-1, width])],
    )


def read_signature(
    path: Path, fmt: ArtifactFormat, declared: Declared, family: Family
) -> tuple[Signature, int | None, bool]:
    """(signature, parameters if knowable, quantized) of the artifact, checked against what is declared."""
    parameters: int | None = None
    quantized = False
    if fmt is ArtifactFormat.ONNX:
        found, parameters, quantized = onnx_signature(path)
    elif fmt is ArtifactFormat.OPENVINO:
        found, quantized = openvino_signature(path)
    else:
        found, parameters = _torchscript_signature(path, declared, family)
    wanted = _declared_signature(declared, family, found.outputs[0].shape[-1])
    if wanted is not None and fmt is not ArtifactFormat.TORCHSCRIPT:
        problems = differences(found, wanted)
        if problems:
            raise ImportRefused(f"--file: {path.name} does not match the declared signature: {problems[0]}")
    check_servable(found, fmt)
    return found, parameters, quantized


def _torchscript_signature(path: Path, declared: Declared, family: Family) -> tuple[Signature, int]:
    """TorchScript carries no signature: the declared or the family's input, the output width from one run."""
    from contract import torchscript

    base = family.signature
    if declared.input_shape is not None:
        shape = declared.input_shape
    elif base is not None:
        shape = base.inputs[0].shape[1:]
    else:
        raise ImportRefused(
            f"--input-shape: {path.name} is TorchScript, which carries no signature; give --input-shape "
            "(and --input-name, --output-name) or import into a family that has a signature"
        )
    try:
        module = torchscript.load(path)
    except Exception as exc:  # torch.jit raises RuntimeError and others for a file that is not TorchScript
        raise ImportRefused(f"--file: {path.name} is not a readable TorchScript module ({exc})") from None
    try:
        with torch.inference_mode():
            result = module(torch.zeros(2, *shape))
    except Exception as exc:  # the module's own code fails on the declared shape
        raise ImportRefused(
            f"--input-shape: {path.name} cannot run on inputs shaped {[2, *shape]} ({exc})"
        ) from None
    if not isinstance(result, torch.Tensor) or result.ndim != 2:
        raise ImportRefused(f"--file: {path.name} must return one [batch, classes] tensor")
    width = int(result.shape[1])
    signature = _declared_signature(declared, family, width)
    if signature is None:
        assert base is not None  # no declared shape: the family's signature was required above
        output = base.outputs[0].model_copy(update={"shape": [-1, width]})
        signature = Signature(inputs=[base.inputs[0]], outputs=[output])
    return signature, sum(p.numel() for p in module.parameters())


@dataclass(frozen=True)
class EvalData:
    inputs: np.ndarray
    labels: np.ndarray | None
    card: dict[str, Any]


def read_eval_data(path: Path | None, signature: Signature, classes: int) -> EvalData | None:
    if path is None:
        return None
    if not path.is_file():
        raise ImportRefused(f"--eval-data: file not found: {path}")
    try:
        inputs, labels = read_npz(path, "--eval-data", labels_required=False)
    except SpecError as exc:
        raise ImportRefused(str(exc)) from None
    expected = signature.inputs[0].shape
    if inputs.ndim != len(expected) or not shape_fits(expected[1:], inputs.shape[1:]):
        raise ImportRefused(
            f"--eval-data: inputs shaped {list(inputs.shape)} do not match the signature's input {expected}"
        )
    if len(inputs) == 0:
        raise ImportRefused("--eval-data: inputs hold no rows")
    if labels is not None:
        if labels.ndim != 1 or len(labels) != len(inputs):
            raise ImportRefused(f"--eval-data: {labels.shape} labels for {len(inputs)} inputs")
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= classes:
            raise ImportRefused(
                f"--eval-data: labels must be class indices 0-{classes - 1} (the output has {classes})"
            )
    floats = np.ascontiguousarray(inputs, dtype=np.float32)
    arrays: list[np.ndarray] = [floats] if labels is None else [floats, labels.astype(np.int64)]
    card = {"name": path.name, "digest": sha256_arrays(arrays), "sizes": {"test": len(inputs)}}
    return EvalData(floats, None if labels is None else labels.astype(np.int64), card)


def _labels(declared: Declared, family: Family, classes: int) -> list[str]:
    labels = declared.labels or family.labels or [str(i) for i in range(classes)]
    if len(labels) != classes:
        which = "--labels" if declared.labels else f"the labels of {family.source}"
        raise ImportRefused(f"{which}: {len(labels)} labels, but the output has {classes} classes")
    if declared.labels and family.labels and declared.labels != family.labels:
        raise ImportRefused(
            f"--labels: {declared.labels} differ from those of {family.source}: {family.labels}"
        )
    return labels


def _quantization(fmt: ArtifactFormat, precision: str, declared: Declared) -> dict[str, Any] | None:
    if precision != "int8":
        return None
    engine = declared.engine if fmt is ArtifactFormat.TORCHSCRIPT else RUNTIMES[fmt]
    return {"engine": engine, "method": "imported"}


def import_artifact(
    registry: Path, name: str, path: Path, declared: Declared, eval_data: Path | None
) -> layout.ModelVersion:
    """Check, measure and publish ``path`` as the next version of ``name`` (FAMILY-VARIANT)."""
    family_name, variant = split_name(name)
    fmt = format_of(path)
    family = existing_family(registry, family_name)
    signature, parameters, quantized = read_signature(path, fmt, declared, family)
    if family.signature is not None:
        problems = differences(signature, family.signature)
        if problems:
            raise ImportRefused(f"{name}: its signature differs from {family.source}'s: {problems[0]}")
    classes = signature.outputs[0].shape[-1]
    labels = _labels(declared, family, classes)
    data = read_eval_data(eval_data, signature, classes)
    precision = declared.precision or ("int8" if quantized else "fp32")
    default = variant if declared.default or not family.default_variant else family.default_variant
    card = {
        "family": family_name,
        "variant": variant,
        "name": name,
        "version": 1,  # set by publish
        "format": str(fmt),
        "precision": precision,
        "quantization": _quantization(fmt, precision, declared),
        "hyperparameters": {"imported_from": path.name, "sha256": sha256_of(path)},
        "dataset": {} if data is None else data.card,
        "signature": signature.model_dump(),
        "labels": labels,
        "default_variant": default,
        "max_batch_size": declared.max_batch_size,
        "files": {},
        "libraries": library_versions(fmt),
        "torch_version": torch.__version__,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    with tempfile.TemporaryDirectory(prefix="slimserve-import-") as work:
        folder = Path(work)
        copy_artifact(path, fmt, folder)
        version = draft_version(folder, card)
        card["metrics"] = measure(version, data, parameters)
        return publish(registry, card, {target: folder / target for target in fmt.files})


def copy_artifact(path: Path, fmt: ArtifactFormat, folder: Path) -> None:
    """The artifact's files under the registry's names; an ONNX model's external weights are folded into
    its one file (the registry holds exactly ``model.onnx``)."""
    if fmt is ArtifactFormat.ONNX:
        import onnx

        if any(
            tensor.data_location == onnx.TensorProto.EXTERNAL
            for tensor in onnx.load(str(path), load_external_data=False).graph.initializer
        ):
            onnx.save_model(onnx.load(str(path)), str(folder / "model.onnx"))
            return
    sources = [path, path.with_suffix(".bin")] if fmt is ArtifactFormat.OPENVINO else [path]
    for source, target in zip(sources, fmt.files, strict=True):
        shutil.copyfile(source, folder / target)


def measure(version: layout.ModelVersion, data: EvalData | None, parameters: int | None) -> dict[str, Any]:
    """The card's metrics through the runner the service serves with; a run that disagrees with the
    signature (output shape, datatype) is refused here, before anything is published."""
    spec = version.card.signature
    rows = data.inputs if data is not None else np.zeros([32, *spec.inputs[0].shape[1:]], dtype=np.float32)
    with single_thread():
        try:
            run = output_of(version)
            logits = logits_of(run, rows)
        except Exception as exc:  # the runtime refuses the artifact or the inputs
            raise ImportRefused(
                f"--file: {version.card.name} does not run on inputs shaped {[len(rows), *rows.shape[1:]]} ({exc})"
            ) from None
        expected = [len(rows), spec.outputs[0].shape[-1]]
        if list(logits.shape) != expected:
            raise ImportRefused(
                f"--file: {version.card.name} answers shape {list(logits.shape)}, its signature says {expected}"
            )
        metrics: dict[str, Any] = {"bytes": artifact_bytes(version), **speed(run, rows)}
    if parameters:
        metrics["parameters"] = parameters
    if data is not None and data.labels is not None:
        accuracy, nll = accuracy_and_nll(torch.from_numpy(logits.astype(np.float32)), data.labels)
        metrics.update(accuracy=accuracy, nll=nll)
    return metrics
