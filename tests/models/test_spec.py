"""Family spec files: the built-in families, a family of one's own built from a spec, and every mistake a
spec can hold refused with one line naming its field or file, exit code 2 and nothing published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from contract import layout
from models.__main__ import main
from models.artifacts import variants
from models.recipes import FORMATS, Recipe
from models.spec import ALL_FORMATS, builtin_families, builtin_spec, load_spec


def test_builtin_mnist_spec_is_the_recipe_it_always_was() -> None:
    spec = builtin_spec("mnist")
    assert spec.recipe() == Recipe(family="mnist")
    assert len(variants(spec.recipe())) == 16 and spec.serving.default_variant == "student-int8-x86"
    assert builtin_families() == ["mnist", "wdbc"] and ALL_FORMATS == FORMATS


def test_builtin_wdbc_spec_is_tabular_with_dynamic_int8() -> None:
    spec = builtin_spec("wdbc")
    assert spec.signature.input.shape == [-1, 30] and spec.labels == ["malignant", "benign"]
    assert spec.serving.default_variant in variants(spec.recipe())
    assert "student-int8-dynamic" in variants(spec.recipe()) and spec.recipe().quantization_engines == ()


def tiny_spec(folder: Path, **changes: Any) -> dict[str, Any]:
    """A 6-feature, 3-class family from an .npz, trained for one epoch into ONNX only: seconds to build."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    inputs = (rng.normal(size=(120, 6)) + labels[:, None] * 3).astype(np.float32) * 10
    np.savez(folder / "data.npz", inputs=inputs, labels=labels)
    spec: dict[str, Any] = {
        "name": "blobs",
        "signature": {
            "input": {"name": "INPUT__0", "shape": [-1, 6]},
            "output": {"name": "OUTPUT__0", "shape": [-1, 3]},
        },
        "preprocessing": {"mean": "fit", "std": "fit"},
        "labels": ["a", "b", "c"],
        "data": {"train": {"npz": "data.npz"}, "split": {"validation": 0.25, "test": 0.25}},
        "teacher": {"architecture": "tests.models.test_spec:teacher"},
        "student": {"architecture": "tests.models.test_spec:student"},
        "training": {"teacher_epochs": 15, "student_epochs": 15, "batch_size": 16, "lr": 0.02},
        "compression": {"formats": ["onnx"], "min_int8_agreement": 0.5},
        "serving": {"default_variant": "student-int8-onnx"},
    }
    for path, value in changes.items():  # "training.lr" -> spec["training"]["lr"]; None deletes the field
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return spec


def teacher() -> torch.nn.Module:
    from models.architectures import MLP

    return MLP(6, (32,), 3)


def student() -> torch.nn.Module:
    from models.architectures import MLP

    return MLP(6, (4,), 3)


class SkipMLP(torch.nn.Module):
    """Its forward adds a skip connection around its first block: not a chain, so not prunable."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x + self.body(x))


def write(folder: Path, spec: dict[str, Any]) -> Path:
    path = folder / "family.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_family_of_ones_own_builds_from_its_spec_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry"
    argv = ["build", "--family-file", str(write(tmp_path, tiny_spec(tmp_path))), "--registry", str(registry)]
    assert main([*argv, "--no-progress"]) == 0
    assert "blobs: built in" in capsys.readouterr().out
    names = ["blobs-teacher-fp32-onnx", "blobs-student-fp32-onnx", "blobs-student-int8-onnx"]
    assert sorted(layout.list_models(registry)) == sorted(names)
    card = layout.latest(registry, "blobs-student-int8-onnx").card
    assert card.labels == ["a", "b", "c"] and card.signature.inputs[0].shape == [-1, 6]
    assert card.default_variant == "student-int8-onnx" and card.dataset["sizes"] == {
        "train": 60,
        "validation": 30,
        "test": 30,
    }
    assert card.metrics["accuracy"] > 0.6


def test_a_teacher_given_as_factory_and_state_dict_is_not_trained(tmp_path: Path) -> None:
    torch.save(teacher().state_dict(), tmp_path / "teacher.pt")
    spec = tiny_spec(
        tmp_path, teacher={"factory": "tests.models.test_spec:teacher", "state_dict": "teacher.pt"}
    )
    from models.pipeline import build

    result = build(load_spec(write(tmp_path, spec)), tmp_path / "registry", progress=False)
    assert result.variants[0].variant == "teacher-fp32-onnx"
    wrong = tiny_spec(
        tmp_path, teacher={"factory": "tests.models.test_spec:student", "state_dict": "teacher.pt"}
    )
    assert (
        main(["build", "--family-file", str(write(tmp_path, wrong)), "--registry", str(tmp_path / "r2")]) == 2
    )


def test_a_prebuilt_onnx_teacher_teaches_and_is_published_as_it_is(tmp_path: Path) -> None:
    from contract.card import Signature
    from contract.publish import sha256_of
    from models.architectures import Normaliser
    from models.export import export_onnx
    from models.pipeline import build

    signature = Signature.model_validate({
        "inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 6]}],
        "outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 3]}],
    })  # fmt: skip
    torch.manual_seed(0)
    export_onnx(teacher(), tmp_path / "teacher.onnx", torch.zeros(2, 6), signature, Normaliser(0.1, 0.0))
    spec = tiny_spec(tmp_path, teacher={"artifact": "teacher.onnx"})
    result = build(load_spec(write(tmp_path, spec)), tmp_path / "registry", progress=False)
    assert [v.variant for v in result.variants] == [
        "teacher-fp32-onnx",
        "student-fp32-onnx",
        "student-int8-onnx",
    ]
    published = layout.latest(tmp_path / "registry", "blobs-teacher-fp32-onnx")
    assert published.card.files["model.onnx"] == sha256_of(tmp_path / "teacher.onnx")
    assert published.card.architecture == "artifact:teacher.onnx"
    assert (
        layout.latest(tmp_path / "registry", "blobs-student-fp32-onnx").card.metrics["agreement_with_teacher"]
        >= 0
    )


def test_a_prebuilt_torchscript_teacher_is_published_as_it_is(tmp_path: Path) -> None:
    from contract import torchscript
    from contract.publish import sha256_of
    from models.pipeline import build

    torchscript.save_traced(teacher(), tmp_path / "teacher.pt", torch.zeros(2, 6))
    spec = tiny_spec(tmp_path, teacher={"artifact": "teacher.pt"}, compression={"formats": ["torchscript"]},
                     serving={"default_variant": "student-fp32"})  # fmt: skip
    result = build(load_spec(write(tmp_path, spec)), tmp_path / "registry", progress=False)
    assert [v.variant for v in result.variants] == ["teacher-fp32", "student-scratch-fp32", "student-fp32"]
    published = layout.latest(tmp_path / "registry", "blobs-teacher-fp32")
    assert published.card.files["model.pt"] == sha256_of(tmp_path / "teacher.pt")
    student = layout.latest(tmp_path / "registry", "blobs-student-fp32").card
    assert student.parent is not None and student.parent.name == "blobs-teacher-fp32"


def _wide_teacher(folder: Path) -> dict[str, Any]:
    from contract.card import Signature
    from models.architectures import MLP, Normaliser
    from models.export import export_onnx

    signature = Signature.model_validate({
        "inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 7]}],
        "outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 3]}],
    })  # fmt: skip
    export_onnx(MLP(7, (4,), 3), folder / "wide.onnx", torch.zeros(2, 7), signature, Normaliser())
    return {"teacher": {"artifact": "wide.onnx"}}


def _garbage(folder: Path) -> dict[str, Any]:
    (folder / "bad.npz").write_bytes(b"not a zip file at all")
    return {"data.train": {"npz": "bad.npz"}}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"student": None}, "family.yaml: student: required field is missing"),
        (
            {"training.teacher_epocs": 3},
            "training.teacher_epocs: unknown field; did you mean 'teacher_epochs'?",
        ),
        ({"trainig": {}}, "trainig: unknown field; did you mean 'training'?"),
        (
            {"signature.input.shape": [-1, 5]},
            "data.train: inputs shaped ['N', 6] do not match signature.input.shape [-1, 5]",
        ),
        ("garbage", "data.train.npz: bad.npz: unreadable .npz"),
        ({"data.train": {"npz": "absent.npz"}}, "data.train.npz: file not found: absent.npz"),
        ({"labels": ["a", "b"]}, "labels: 2 labels, but signature.output.shape[-1] is 3"),
        (
            {"teacher": {"factory": "x:y", "state_dict": "nope.pt"}},
            "teacher.state_dict: file not found: nope.pt",
        ),
        (
            {"serving.default_variant": "student-int8-x86"},
            "serving.default_variant: 'student-int8-x86' is not a variant",
        ),
        (
            {"data.train": {"python": "models.nope:load"}},
            "data.train.python: 'models.nope:load': cannot import models.nope",
        ),
        ({"preprocessing.std": [1.0, 2.0]}, "preprocessing.std: 2 values for inputs shaped [6]"),
        ({"teacher": {"artifact": "absent.onnx"}}, "teacher.artifact: file not found: absent.onnx"),
        (
            {"teacher": {"artifact": "data.npz"}},
            "teacher: artifact: data.npz is neither ONNX nor TorchScript",
        ),
        (
            {"teacher": {"artifact": "t.pt"}},
            "teacher.artifact: a pre-built torchscript teacher needs torchscript in",
        ),
        (
            {"compression.methods": ["prune", "sparsify"]},
            "compression.methods.1: Input should be 'prune' or 'qat'",
        ),
        (
            {"compression.methods": ["prune"], "compression.pruning": {"sparsity": 1.0}},
            "compression.pruning.sparsity: Input should be less than 1",
        ),
        (
            {"compression.methods": ["prune"], "compression.pruning": {"sparsity": 0}},
            "compression.pruning.sparsity: Input should be greater than 0",
        ),
        (
            {"compression.methods": ["prune"], "student.architecture": "tests.models.test_spec:SkipMLP"},
            "student.architecture: SkipMLP cannot be pruned: its forward is not the chain",
        ),
        (
            {"training.distillation": "hints", "training.hint_layer": "trunk"},
            "training.hint_layer: the student has no layer 'trunk'",
        ),
        (
            "wide-teacher",
            "teacher.artifact: wide.onnx differs from the spec's signature: signature.inputs[0].shape",
        ),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_field_exit_2_and_publishes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: Any, message: str
) -> None:
    if changes == "wide-teacher":
        changes = _wide_teacher(tmp_path)
    elif changes == "garbage":
        changes = _garbage(tmp_path)
    (tmp_path / "t.pt").write_bytes(b"")
    spec = tiny_spec(tmp_path, **changes)
    registry = tmp_path / "registry"
    assert main(["build", "--family-file", str(write(tmp_path, spec)), "--registry", str(registry)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not registry.exists() or layout.list_models(registry) == {}


def test_labels_outside_the_classes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tiny_spec(tmp_path)
    np.savez(tmp_path / "data.npz", inputs=np.zeros((40, 6), np.float32), labels=np.arange(40) % 4)
    assert (
        main(["build", "--family-file", str(write(tmp_path, spec)), "--registry", str(tmp_path / "r")]) == 2
    )
    assert "data.train: label 3 is outside the 3 classes of labels (0-2)" in capsys.readouterr().err


def test_build_needs_a_family_or_a_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--registry", str(tmp_path)]) == 2
    assert "name a built-in family or give --family-file" in capsys.readouterr().err
    assert main(["build", "cifar", "--registry", str(tmp_path)]) == 2
    assert "unknown family 'cifar' (built in: mnist, wdbc" in capsys.readouterr().err
