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

    @model_validator(mode="after")
    def _weights_make_a_split(self) -> Experiment:
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variants are listed twice: {sorted({n for n in names if names.count(n) > 1})}")
        total = sum(variant.weight for variant in self.variants)
        if total != 100:
            raise ValueError(f"variant weights must sum to 100, they sum to {total}")
        return self

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
