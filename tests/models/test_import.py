"""``python -m models import``: signatures read from each format, metrics measured at import, and every bad
import refused with one line naming the flag, file or field, exit code 2 and nothing published."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from contract import layout, torchscript
from contract.card import Signature
from models.__main__ import main
from models.architectures import MLP, Normaliser
from models.export import export_onnx


def signature(features: int, classes: int) -> Signature:
    return Signature.model_validate({
        "inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, features]}],
        "outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, classes]}],
    })  # fmt: skip


def onnx_model(path: Path, features: int = 4, classes: int = 3) -> Path:
    torch.manual_seed(0)
    export_onnx(
        MLP(features, (8,), classes),
        path,
        torch.zeros(2, features),
        signature(features, classes),
        Normaliser(),
    )
    return path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts")
    onnx_model(folder / "model.onnx")
    onnx_model(folder / "wide.onnx", features=5)
    onnx_model(folder / "four-classes.onnx", classes=4)
    torch.manual_seed(1)
    torchscript.save_traced(MLP(4, (8,), 3), folder / "model.pt", torch.zeros(2, 4))
    rng = np.random.default_rng(0)
    np.savez(
        folder / "eval.npz", inputs=rng.normal(size=(40, 4)).astype(np.float32), labels=np.arange(40) % 3
    )
    np.savez(folder / "unlabelled.npz", inputs=rng.normal(size=(10, 4)).astype(np.float32))
    np.savez(folder / "wrong-shape.npz", inputs=np.zeros((10, 7), np.float32), labels=np.zeros(10, np.int64))
    np.savez(folder / "bad-labels.npz", inputs=np.zeros((10, 4), np.float32), labels=np.arange(10))
    return folder


def run(registry: Path, name: str, file: Path, *extra: str) -> int:
    return main(["import", name, "--file", str(file), "--registry", str(registry), *extra])


def test_onnx_then_torchscript_into_one_family(artifacts: Path, tmp_path: Path) -> None:
    assert run(tmp_path, "toy-big", artifacts / "model.onnx", "--eval-data", str(artifacts / "eval.npz")) == 0
    card = layout.latest(tmp_path, "toy-big").card
    assert card.signature == signature(4, 3) and card.format == "onnx" and card.precision == "fp32"
    assert card.metrics["parameters"] == 4 * 8 + 8 + 8 * 3 + 3 and 0 <= card.metrics["accuracy"] <= 1
    assert card.dataset["sizes"] == {"test": 40} and card.labels == ["0", "1", "2"]
    # TorchScript carries no signature: the family's applies, and one run checks its output width.
    assert (
        run(tmp_path, "toy-small", artifacts / "model.pt", "--eval-data", str(artifacts / "unlabelled.npz"))
        == 0
    )
    small = layout.latest(tmp_path, "toy-small").card
    assert (
        small.signature == card.signature and "accuracy" not in small.metrics and small.metrics["bytes"] > 0
    )
    assert run(tmp_path, "toy-big", artifacts / "model.onnx") == 0
    assert layout.list_models(tmp_path) == {"toy-big": [1, 2], "toy-small": [1]}


def test_openvino_ir_is_read_from_the_model(artifacts: Path, tmp_path: Path) -> None:
    import openvino

    openvino.save_model(openvino.convert_model(str(artifacts / "model.onnx")), str(tmp_path / "m.xml"))
    registry = tmp_path / "registry"
    assert run(registry, "toy-vino", tmp_path / "m.xml", "--eval-data", str(artifacts / "eval.npz")) == 0
    card = layout.latest(registry, "toy-vino").card
    assert card.format == "openvino" and card.signature == signature(4, 3) and "accuracy" in card.metrics


@pytest.mark.parametrize(
    ("name", "file", "extra", "message"),
    [
        ("toy-wide", "wide.onnx", [], "toy-wide: its signature differs from family 'toy'"),
        ("toy-wide", "wide.onnx", [], "signature.inputs[0].shape: [-1, 5] differs from [-1, 4]"),
        ("toy-four", "four-classes.onnx", [], "signature.outputs[0].shape: [-1, 4] differs from [-1, 3]"),
        (
            "toy-x",
            "model.onnx",
            ["--eval-data", "wrong-shape.npz"],
            "--eval-data: inputs shaped [10, 7] do not match",
        ),
        (
            "toy-x",
            "model.onnx",
            ["--eval-data", "bad-labels.npz"],
            "--eval-data: labels must be class indices 0-2",
        ),
        ("toy-x", "model.onnx", ["--eval-data", "absent.npz"], "--eval-data: file not found"),
        ("toy-x", "absent.onnx", [], "--file: file not found"),
        ("toy-x", "eval.npz", [], "--file: eval.npz: unknown kind of artifact"),
        ("toy-x", "eval.onnx", [], "--file: eval.onnx is not a readable ONNX model"),
        ("toy-x", "model.onnx", ["--labels", "a,b"], "--labels: 2 labels, but the output has 3 classes"),
        (
            "toy-x",
            "model.onnx",
            ["--input-shape", "6"],
            "does not match the declared signature: signature.inputs[0].shape",
        ),
        ("toy", "model.onnx", [], "toy: expected FAMILY-VARIANT"),
        ("wdbc-mine", "model.onnx", [], "differs from built-in family 'wdbc''s: signature.inputs[0].shape"),
    ],
)
def test_a_bad_import_is_one_line_exit_2_and_publishes_nothing(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, file: str, extra: list[str],
    message: str,
) -> None:  # fmt: skip
    shutil.copyfile(artifacts / "eval.npz", artifacts / "eval.onnx")
    assert run(tmp_path, "toy-big", artifacts / "model.onnx") == 0
    capsys.readouterr()
    extra = [str(artifacts / e) if e.endswith(".npz") else e for e in extra]
    assert run(tmp_path, name, artifacts / file, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert layout.list_models(tmp_path) == {"toy-big": [1]}


def test_torchscript_into_a_new_family_needs_its_input_shape(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "ts-only", artifacts / "model.pt") == 2
    assert "--input-shape: model.pt is TorchScript, which carries no signature" in capsys.readouterr().err
    assert run(tmp_path, "ts-only", artifacts / "model.pt", "--input-shape", "5") == 2
    assert "--input-shape: model.pt cannot run on inputs shaped [2, 5]" in capsys.readouterr().err
    assert run(tmp_path, "ts-only", artifacts / "model.pt", "--input-shape", "4", "--labels", "x,y,z") == 0
    card = layout.latest(tmp_path, "ts-only").card
    assert (
        card.signature == signature(4, 3)
        and card.labels == ["x", "y", "z"]
        and card.default_variant == "only"
    )
