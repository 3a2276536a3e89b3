"""docs/triton.md's "run a local Triton" recipe, run as written: its shell block starts Triton, its exports
point the service at it.

The shell block runs with bash in a scratch directory laid out like the repository root (``scripts``,
``.venv`` and ``.triton-venv`` linked, ``registry`` a copy of the tiny registry), so nothing is written into
the checkout. It binds the recipe's fixed ports (8100, 8101): if they are taken the test fails saying so.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http

from tests.harness import make_settings, run_service
from tests.service.conftest import assert_close, reference_logits
from tests.triton.traffic import body

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "docs" / "triton.md"
SECTION = "## 2b. Or run a local Triton"
READY_TIMEOUT_S = 180


def recipe_blocks() -> list[str]:
    """The bash blocks of the recipe's section, in order."""
    text = RECIPE.read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def recipe_triton(tiny_registry: Path, tmp_path: Path) -> Iterator[str]:
    """Run the recipe's first block; yield Triton's gRPC address once it is ready; stop it by its group."""
    start = recipe_blocks()[0]
    ports = [int(port) for port in re.findall(r"--(?:http|grpc)-port=(\d+)", start)]
    assert ports == [8100, 8101], ports
    taken = [port for port in ports if not port_is_free(port)]
    if taken:
        pytest.fail(f"the recipe's ports {taken} are in use on this machine", pytrace=False)
    for link in ("scripts", ".venv", ".triton-venv"):
        (tmp_path / link).symlink_to(ROOT / link)
    (tmp_path / "registry").symlink_to(tiny_registry)
    log = tmp_path / "recipe.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's models package, as from its root
    with log.open("wb") as output:
        process = subprocess.Popen(["bash", "-euc", start], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_until_serving("127.0.0.1:8100", process, log)
        yield "127.0.0.1:8101"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_serving(http_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, (
            f"the recipe exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        )
        with contextlib.suppress(Exception), triton_http.InferenceServerClient(http_url) as client:
            if client.is_server_ready() and client.is_model_ready("mnist-teacher-fp32-onnx"):
                return
        time.sleep(0.5)
    raise AssertionError(f"Triton not ready after {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def test_the_documented_recipe_serves_the_teacher_through_triton(
    recipe_triton: str,
    tiny_registry: Path,
    mnist_test_digits: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    point = recipe_blocks()[1]
    exports = dict(re.findall(r"^export (SLIMSERVE_[A-Z0-9_]+)=(\S+)$", point, flags=re.MULTILINE))
    assert exports["SLIMSERVE_BACKENDS__TEACHER_FP32_ONNX__URL"] == recipe_triton
    for key, value in exports.items():
        monkeypatch.setenv(key, value)
    rows = np.ascontiguousarray(mnist_test_digits[0][:2], dtype=np.float32)
    with run_service(make_settings(tiny_registry)) as running, httpx.Client(base_url=running.url) as client:
        answer = client.post("/v2/models/mnist-teacher-fp32-onnx/infer", json=body(rows))
        assert answer.status_code == 200, answer.text
        labels = {"model": "mnist", "variant": "teacher-fp32-onnx", "version": "1", "backend": "triton",
                  "protocol": "http", "status": "ok"}  # fmt: skip
        assert running.metrics.get_sample_value("slimserve_requests_total", labels) == 1
    served = np.asarray(answer.json()["outputs"][0]["data"], dtype=np.float32).reshape(2, 10)
    assert_close(served, reference_logits(tiny_registry / "mnist-teacher-fp32-onnx" / "1", rows))
