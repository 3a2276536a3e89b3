"""The experiments file: per family, weighted variants, sticky key, pin header, shadow and margin.

Invalid files are refused with a message naming the file and line. Run-time changes are written back
atomically (temporary file + rename) so a restart keeps them; comments in the file are not preserved.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ExperimentsFileError(Exception):
    """The experiments file cannot be used; the message names the file and the line."""


class WeightedVariant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    weight: int = Field(ge=0, le=100)


class Shadow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant: str = Field(pattern=NAME_PATTERN)
    percent: float = Field(100.0, ge=0, le=100)


class Cascade(BaseModel):
    """A routable arm answered by ``first`` unless its top softmax probability is below ``threshold``, when
    ``then`` answers instead (the whole request: the response names one variant)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("cascade", pattern=NAME_PATTERN, description="The arm's name in `variants`.")
    first: str = Field(pattern=NAME_PATTERN)
    then: str = Field(pattern=NAME_PATTERN)
    threshold: float | None = Field(
        None, gt=0, lt=1, description="Escalate below this confidence; none: the first stage's card's."
    )

    @model_validator(mode="after")
    def _two_stages(self) -> Cascade:
        if self.first == self.then:
            raise ValueError(f"cascade.then: must differ from cascade.first ('{self.first}')")
        if self.name in (self.first, self.then):
            raise ValueError(f"cascade.name: '{self.name}' is also one of its stages")
        return self


class Gates(BaseModel):
    """What must hold, on the traffic of the current step, before a rollout takes the next one."""

    model_config = ConfigDict(extra="forbid")

    min_samples: int = Field(100, ge=1, description="Labelled rows of the candidate and of the control.")
    non_inferiority: bool = Field(True, description="The candidate's verdict against the control.")
    max_p99_latency_s: float | None = Field(None, gt=0, description="Bound on the candidate's p99.")
    max_error_rate: float | None = Field(None, ge=0, lt=1, description="Bound on the candidate's errors.")
    max_samples: int | None = Field(
        None, ge=1, description="Labelled candidate rows within which a step must show non-inferiority."
    )

    @model_validator(mode="after")
    def _max_above_min(self) -> Gates:
        if self.max_samples is not None and self.max_samples < self.min_samples:
            raise ValueError(
                f"rollout.gates.max_samples: {self.max_samples} is below min_samples {self.min_samples}"
            )
        if self.max_samples is not None and not self.non_inferiority:
            raise ValueError("rollout.gates.max_samples: bounds the wait for non-inferiority, which is off")
        return self


class Rollout(BaseModel):
    """Move ``candidate`` through ``steps`` (percent of traffic) while the gates hold; back to 0 if not."""

    model_config = ConfigDict(extra="forbid")

    candidate: str = Field(pattern=NAME_PATTERN)
    control: str = Field(pattern=NAME_PATTERN)
    steps: list[int] = Field(min_length=1, description="Candidate's traffic share per step, increasing.")
    gates: Gates = Field(default_factory=Gates)

    @model_validator(mode="after")
    def _steps_increase(self) -> Rollout:
        if self.candidate == self.control:
            raise ValueError(f"rollout.control: must differ from rollout.candidate ('{self.candidate}')")
        if any(not 0 < step <= 100 for step in self.steps):
            raise ValueError(f"rollout.steps: each must be within (0, 100], got {self.steps}")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError(f"rollout.steps: must be strictly increasing, got {self.steps}")
        gates = self.gates
        if not gates.non_inferiority and gates.max_p99_latency_s is None and gates.max_error_rate is None:
            raise ValueError("rollout.gates: none to evaluate (non_inferiority, max_p99_latency_s or "
                             "max_error_rate)")  # fmt: skip
        return self

    def weights(self, percent: int) -> dict[str, int]:
        return {self.candidate: percent, self.control: 100 - percent}


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    family: str = Field(pattern=NAME_PATTERN)
    variants: list[WeightedVariant] = Field(min_length=1)
    salt: str | None = Field(None, description="Hash salt for sticky keys; defaults to the name.")
    sticky_key: str | None = Field(None, description="Request header whose value keeps a user on a variant.")
    pin_header: str | None = Field(None, description="Request header that forces a variant; none: off.")
    shadow: Shadow | None = None
    margin: float = Field(0.01, ge=0, lt=1, description="Non-inferiority margin, in accuracy.")
    reference: str = Field(
        "teacher-fp32", pattern=NAME_PATTERN, description="What variants are tested against."
    )
    min_samples: int = Field(100, ge=1, description="Labelled predictions per variant before a verdict.")
    cascade: Cascade | None = Field(None, description="An arm answered by a confidence cascade.")
    rollout: Rollout | None = Field(None, description="Metric-gated progressive rollout of a variant.")

    @model_validator(mode="after")
    def _weights_make_a_split(self) -> Experiment:
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variants are listed twice: {sorted({n for n in names if names.count(n) > 1})}")
        total = sum(variant.weight for variant in self.variants)
        if total != 100:
            raise ValueError(f"variant weights must sum to 100, they sum to {total}")
        if self.cascade and self.cascade.name not in names:
            raise ValueError(f"cascade.name: '{self.cascade.name}' is not one of the variants {names}")
        if self.rollout:
            for field in ("candidate", "control"):
                if getattr(self.rollout, field) not in names:
                    raise ValueError(f"rollout.{field}: '{getattr(self.rollout, field)}' is not one of the "
                                     f"variants {names}")  # fmt: skip
            others = [v.name for v in self.variants if v.name not in self.rollout.weights(0) and v.weight]
            if others:
                raise ValueError(
                    f"rollout: variants {others} must have weight 0 (the rollout owns the split)"
                )
        return self

    def stages(self, variant: str) -> list[str]:
        """The variants that may answer for ``variant``: a cascade's two stages, else itself."""
        if self.cascade and variant == self.cascade.name:
            return [self.cascade.first, self.cascade.then]
        return [variant]

    @property
    def hash_salt(self) -> str:
        return self.salt if self.salt is not None else self.name

    def weight_of(self, variant: str) -> int:
        return next((v.weight for v in self.variants if v.name == variant), 0)


class ExperimentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiments: list[Experiment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_per_family(self) -> ExperimentsFile:
        for key in ("name", "family"):
            values = [getattr(experiment, key) for experiment in self.experiments]
            twice = sorted({value for value in values if values.count(value) > 1})
            if twice:
                raise ValueError(f"more than one experiment with {key} {twice}")
        return self


def _line_of(node: yaml.Node | None, location: tuple[int | str, ...]) -> int:
    """The 1-based line of the deepest YAML node on ``location`` (a pydantic error location)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in location:
        if isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def parse_experiments(text: str, source: str) -> ExperimentsFile:
    try:
        data: Any = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ExperimentsFileError(
            f"{source}:{line}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    try:
        return ExperimentsFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        line = _line_of(root, first["loc"])
        raise ExperimentsFileError(f"{source}:{line}: {where}: {first['msg']}") from None


def load_experiments(path: Path) -> ExperimentsFile:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ExperimentsFileError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_experiments(text, str(path))


def save_experiments(path: Path, experiments: ExperimentsFile) -> None:
    """Write atomically: readers and a crash see the old file or the new one, never half of one."""
    text = yaml.safe_dump(experiments.model_dump(mode="json", exclude_none=True), sort_keys=False)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
