from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models.__main__ import main
from tests.conftest import MNIST_VARIANTS


@pytest.fixture
def registry_copy(tiny_registry: Path, tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    shutil.copytree(tiny_registry, root)
    return root


def test_list_shows_every_model(tiny_registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--registry", str(tiny_registry)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(MNIST_VARIANTS)
    assert any(line.startswith("mnist-student-int8-x86\tversions 1") for line in lines)
    assert any(
        line.startswith("mnist-student-int8-openvino\tversions 1\tlatest 1 openvino int8") for line in lines
    )


def test_show_prints_the_card(tiny_registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "mnist-student-int8-qnnpack:1", "--registry", str(tiny_registry)]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["quantization"]["engine"] == "qnnpack"
    assert main(["show", "mnist-teacher-fp32", "--registry", str(tiny_registry)]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "mnist-nope"], "no such model"),
        (["show", "mnist-teacher-fp32:9"], "no version 9"),
        (["show", "mnist-teacher-fp32:x"], "positive integer"),
        (["verify", "mnist-nope"], "no such model"),
        (["build", "mnist", "--formats", "onnx,tflite"], "unknown format tflite"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    tiny_registry: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    if argv[0] == "build":  # argparse refuses it: usage line, then the error
        with pytest.raises(SystemExit) as refused:
            main([*argv, "--registry", str(tiny_registry)])
        assert refused.value.code == 2 and message in capsys.readouterr().err
        return
    assert main([*argv, "--registry", str(tiny_registry)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("error: ")


def test_missing_registry_and_bad_data_dir_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--registry", str(tmp_path / "absent")]) == 2
    argv = ["build", "mnist", "--registry", str(tmp_path / "r"), "--data-dir", str(tmp_path), "--no-progress"]
    assert main(argv) == 2
    assert "train-images-idx3-ubyte" in capsys.readouterr().err


def test_verify_passes_then_fails_on_tampering(
    registry_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--registry", str(registry_copy)]) == 0
    assert capsys.readouterr().out.count("OK ") == len(MNIST_VARIANTS)
    model = registry_copy / "mnist-student-fp32" / "1" / "model.pt"
    content = bytearray(model.read_bytes())
    content[len(content) // 2] ^= 0xFF
    model.write_bytes(bytes(content))
    assert main(["verify", "--registry", str(registry_copy)]) == 1
    out = capsys.readouterr().out
    assert "FAIL mnist-student-fp32:1" in out and "model.pt: sha256 mismatch" in out
    assert main(["verify", "--registry", str(registry_copy), "mnist-teacher-fp32"]) == 0
    openvino = registry_copy / "mnist-student-int8-openvino" / "1" / "model.bin"
    openvino.write_bytes(openvino.read_bytes()[:-16])
    assert main(["verify", "--registry", str(registry_copy), "mnist-student-int8-openvino"]) == 1
    assert "model.bin: sha256 mismatch" in capsys.readouterr().out
    assert main(["verify", "--registry", str(registry_copy), "mnist"]) == 1  # a family: all its variants
    assert capsys.readouterr().out.count("OK ") == len(MNIST_VARIANTS) - 2  # the two tampered with fail


def test_python_m_models_runs_without_traceback(tiny_registry: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "models", "list", "--registry", str(tiny_registry)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "mnist-teacher-fp32" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "models", "show", "nope", "--registry", str(tiny_registry)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
