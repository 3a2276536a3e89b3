"""A pre-built teacher (``teacher.artifact`` in a spec): an ONNX or TorchScript file that takes raw inputs.

It teaches through the runner the service would serve it with, wrapped as a module that takes the students'
normalised batches (it undoes the normalisation, since the artifact carries its own preprocessing), and it
is published as the family's teacher variant exactly as given.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from contract.card import ArtifactFormat, Signature
from contract.publish import draft_version
from contract.runners import Runner, open_runner
from models.architectures import Normaliser
from models.importer import Declared, Family, read_signature
from models.signatures import ImportRefused, differences
from models.spec import SpecError


class ArtifactTeacher(nn.Module):
    """Normalised batch in (what the students see), the artifact's logits out; never trained."""

    def __init__(self, path: Path, fmt: ArtifactFormat, signature: Signature, normaliser: Normaliser) -> None:
        super().__init__()
        card = {"family": "teacher", "variant": "artifact", "name": "teacher-artifact", "version": 1,
                "format": str(fmt), "precision": "fp32", "signature": signature.model_dump(), "files": {}}  # fmt: skip
        with tempfile.TemporaryDirectory(
            prefix="slimserve-teacher-"
        ) as folder:  # both runtimes read it whole
            shutil.copyfile(path, Path(folder) / fmt.files[0])
            self._runner: Runner = open_runner(draft_version(Path(folder), card))
        self._output = signature.outputs[0].name
        self._scale = torch.as_tensor(normaliser.scale, dtype=torch.float32)
        self._offset = torch.as_tensor(normaliser.offset, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = ((x.detach() - self._offset) / self._scale).numpy().astype(np.float32, copy=False)
        return torch.from_numpy(np.ascontiguousarray(self._runner(raw)[self._output]))


def load_teacher_artifact(
    path: Path, fmt: str, signature: Signature, labels: list[str], normaliser: Normaliser
) -> tuple[ArtifactTeacher, int]:
    """The teacher and its parameter count (0 when the format does not say), after checking that its
    signature is the family's: a mismatch is a SpecError naming ``teacher.artifact``."""
    artifact_format = ArtifactFormat(fmt)
    family = Family(signature, labels, "", "the spec")
    try:
        found, parameters, _ = read_signature(path, artifact_format, Declared(), family)
    except ImportRefused as exc:
        raise SpecError(f"teacher.artifact: {exc}".replace("--file: ", "")) from None
    problems = differences(found, signature)
    if problems:
        raise SpecError(f"teacher.artifact: {path.name} differs from the spec's signature: {problems[0]}")
    return ArtifactTeacher(path, artifact_format, signature, normaliser), parameters or 0
