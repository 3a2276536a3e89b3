"""``python -m service`` as the README runs it: a separate process, announced address, the example curl."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from tests.service.conftest import reference_logits

EXAMPLE = Path(__file__).parents[2] / "examples" / "infer-digit-7.json"


def wait_for_line(process: subprocess.Popen[str], pattern: str, timeout_s: float = 120) -> re.Match[str]:
    assert process.stderr is not None
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r}; the service said:\n{''.join(seen)}")


def test_python_m_service_serves_the_example_curl(tiny_registry: Path) -> None:
    command = [sys.executable, "-m", "service", "--registry.path", str(tiny_registry),
               "--server.http_port", "0", "--server.grpc_port", "0"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        url = wait_for_line(process, r"slimserve listening on (http://127\.0\.0\.1:\d+)").group(1)
        curl = wait_for_line(
            process, r"curl -s (\S+/v2/models/mnist/infer) .*-d @examples/infer-digit-7\.json"
        )
        assert curl.group(1) == f"{url}/v2/models/mnist/infer"
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
        # curl -d sends application/x-www-form-urlencoded; the OIP endpoint reads the body as JSON anyway
        response = httpx.post(curl.group(1), content=EXAMPLE.read_bytes(),
                              headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert response.status_code == 200, response.text
        logits = np.asarray(response.json()["outputs"][0]["data"], dtype=np.float32)
        pixels = np.asarray(httpx.Response(200, content=EXAMPLE.read_bytes()).json()["inputs"][0]["data"])
        expected = reference_logits(tiny_registry / "mnist-student-int8-x86" / "1",
                                    pixels.astype(np.float32).reshape(1, 1, 28, 28))  # fmt: skip
        assert int(logits.argmax()) == int(expected.argmax())
        np.testing.assert_allclose(logits, expected[0], rtol=1e-5, atol=1e-5)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        process.stderr.close()
