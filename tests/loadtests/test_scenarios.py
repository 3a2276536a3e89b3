"""The cascade and rollout load-test scenarios: the commands' machinery on the tiny registry, in seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from loadtests.drive import Sample, batches
from loadtests.payloads import encode
from loadtests.rollout_run import Run, markdown, parse_args, plot_share

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def test_batches_carry_their_rows_and_labels() -> None:
    images = np.arange(3 * 784, dtype=np.float32).reshape(3, 1, 28, 28)
    (batch,) = batches(encode(images, np.array([4, 5, 6])), 2)
    header = json.loads(b"{" + batch.header + b"}")
    assert batch.labels == [4, 5] and header["inputs"][0]["shape"] == [2, 1, 28, 28]
    assert len(batch.tensor) == header["inputs"][0]["parameters"]["binary_data_size"] == 2 * 784 * 4


def test_the_cascade_command_compares_the_three_phases(tiny_registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "cascade.md"
    command = [sys.executable, "-m", "loadtests", "cascade", "--registry", str(tiny_registry), "--seconds", "1.5",
               "--concurrency", "2", "--rows", "4", "--out", str(out), "--json", str(tmp_path / "cascade.json")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's code, run from a scratch folder
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    figures = json.loads((tmp_path / "cascade.json").read_text())
    assert set(figures["phases"]) == {"cascade", "teacher-only", "student-only"}
    assert all(phase["requests"] > 0 and phase["failed"] == 0 for phase in figures["phases"].values())
    assert "the card of mnist-student-int8-x86:1" in figures["source"]  # the tiny registry's cards record one
    report = out.read_text()
    assert "## Acceptance" in report and "| cascade |" in report and "rows escalated" in report


def test_the_rollout_report_explains_every_transition_and_plots_the_share(tmp_path: Path) -> None:
    started = time.time()
    transitions = [
        {"at": started + 1, "kind": "start", "from_percent": 0, "to_percent": 10, "by": "gates", "reason": "rollout started"},
        {"at": started + 9, "kind": "rollback", "from_percent": 10, "to_percent": 0, "by": "gates",
         "reason": "not shown non-inferior"},
    ]  # fmt: skip
    run = Run("bad", "student-int8-x86", "student-scratch-fp32", started=started, seconds=10,
              polls=[(1.0, 10, "running"), (9.5, 0, "rolled_back")],
              final={"percent": 0, "status": "rolled_back", "transitions": transitions})  # fmt: skip
    run.samples = [Sample(t / 10, 0.01, 200, "student-scratch-fp32" if t % 10 == 0 else "student-int8-x86", None, 8, 8)
                   for t in range(100)]  # fmt: skip
    args = parse_args(["--scenario", "bad"])
    plot_share([run], tmp_path / "share.png")
    text = markdown(args, [run], tmp_path / "share.png")
    assert (tmp_path / "share.png").read_bytes().startswith(PNG)
    assert "**rolled_back** at 0 %" in text and "as required" in text and "NOT as required" not in text
    assert "| 9.0 | rollback | 10 % → 0 % | gates | not shown non-inferior |" in text
