"""Family spec files: one YAML file declares a family (signature, labels, data, teacher, student, compression).

Every mistake is a ``SpecError`` naming the YAML field path (``training.teacher_epocs: unknown field``) or the
file it points to, raised before anything is trained, so a bad spec publishes nothing. Paths in a spec are
relative to the spec file's folder. ``docs/families.md`` documents every field; the built-in families are
specs shipped in ``models/families/``.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contract.card import Datatype, Signature
from models.recipes import Recipe, RecipeError

BUILTIN_DIR = Path(__file__).parent / "families"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.]{0,63}$"  # no '-': it separates the family from the variant


class SpecError(RecipeError):
    """A family spec that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorField(_Strict):
    name: str = Field(min_length=1)
    datatype: Datatype = "FP32"
    shape: list[int] = Field(min_length=2, description="-1 for a variable dimension; the first is the batch.")


class SignatureSpec(_Strict):
    input: TensorField
    output: TensorField

    def signature(self) -> Signature:
        return Signature.model_validate(
            {"inputs": [self.input.model_dump()], "outputs": [self.output.model_dump()]}
        )


Statistic = float | list[float] | Literal["fit"]


class PreprocessingSpec(_Strict):
    """Inside every artifact: ``(x / divide_by - mean) / std``; ``fit`` takes per-feature values from train."""

    divide_by: float = Field(1.0, gt=0)
    mean: Statistic = 0.0
    std: Statistic = 1.0


SOURCE_KINDS = ("npz", "csv", "idx_images", "image_folder", "python")


class SourceSpec(_Strict):
    """Exactly one of: an ``.npz`` (``inputs``, ``labels``), a CSV, IDX files, a folder per class, or Python."""

    npz: Path | None = None
    csv: Path | None = None
    label_column: str | int = Field(-1, description="CSV: the label column, by header name or index.")
    idx_images: Path | None = None
    idx_labels: Path | None = None
    image_folder: Path | None = None
    python: str | None = Field(None, description="module:function returning (inputs, labels) or a Dataset.")

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSpec:
        given = [kind for kind in SOURCE_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(SOURCE_KINDS)} (given: {', '.join(given) or 'none'})"
            )
        if (self.idx_images is None) != (self.idx_labels is None):
            raise ValueError("idx_images and idx_labels go together")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in SOURCE_KINDS if getattr(self, kind) is not None)


class SplitSpec(_Strict):
    validation: float = Field(
        0.1, gt=0, lt=1, description="Share carved from train when no validation source."
    )
    test: float = Field(0.2, gt=0, lt=1, description="Share carved from train when no test source.")
    seed: int = 20240101


class DataSpec(_Strict):
    train: SourceSpec
    validation: SourceSpec | None = None
    test: SourceSpec | None = None
    split: SplitSpec = SplitSpec()


TEACHER_ARTIFACTS = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript"}


class TeacherSpec(_Strict):
    """Trained here from ``architecture``; or an existing one: ``factory`` plus its ``state_dict`` file, or a
    pre-built ``artifact`` (ONNX or TorchScript, raw inputs in, published as the teacher variant as it is)."""

    architecture: str | None = None
    factory: str | None = None
    state_dict: Path | None = None
    artifact: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:
        given = [name for name in ("architecture", "factory", "artifact") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give one of architecture (trained here), factory and state_dict, or artifact")
        if (self.factory is None) != (self.state_dict is None):
            raise ValueError("factory and state_dict go together")
        if self.artifact is not None and self.artifact.suffix.lower() not in TEACHER_ARTIFACTS:
            raise ValueError(
                f"artifact: {self.artifact.name} is neither ONNX nor TorchScript ({', '.join(TEACHER_ARTIFACTS)})"
            )
        return self

    @property
    def reference(self) -> str:
        """The recipe's teacher_architecture: an import path, or ``artifact:<file name>``."""
        if self.artifact is not None:
            return f"artifact:{self.artifact.name}"
        return self.architecture or self.factory or ""

    @property
    def artifact_format(self) -> str:
        """``onnx`` or ``torchscript`` for a pre-built teacher; empty when it is a network."""
        return TEACHER_ARTIFACTS[self.artifact.suffix.lower()] if self.artifact is not None else ""


class StudentSpec(_Strict):
    architecture: str


class TrainingSpec(_Strict):
    teacher_epochs: int = Field(25, ge=1)
    student_epochs: int = Field(60, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(15, ge=1)
    shift_pixels: int = Field(
        0, ge=0, description="Random translations of images; needs [N, C, H, W] inputs."
    )
    teacher_mixup_alpha: float = Field(0.0, ge=0)
    mixup_alpha: float = Field(0.0, ge=0)
    kd_temperature: float = Field(4.0, gt=0)
    kd_alpha: float = Field(0.5, ge=0, le=1)
    distillation: Literal["logit", "hints"] = Field(
        "logit", description="Hinton KD on logits, or FitNets hints: KD plus a teacher feature map."
    )
    hint_layer: str = Field("features", min_length=1, description="hints: a module name in both networks.")
    hint_beta: float = Field(1.0, ge=0, description="hints: weight of the feature-map term.")
    seed: int = 0


FormatName = Literal["torchscript", "onnx", "openvino"]
ALL_FORMATS: tuple[FormatName, ...] = ("torchscript", "onnx", "openvino")


class PruningSpec(_Strict):
    """Structured L1 filter pruning of the distilled student, then KD fine-tuning (models.prune)."""

    sparsity: float = Field(
        0.5, gt=0, lt=1, description="Share of each conv's filters and hidden units removed."
    )
    schedule: Literal["one-shot", "iterative"] = "iterative"
    steps: int = Field(3, ge=1, description="iterative: how many cuts, each followed by fine-tuning.")
    epochs: int = Field(15, ge=1, description="KD fine-tuning epochs over all steps.")


class QatSpec(_Strict):
    """Quantization-aware training of the distilled student for x86 int8 (models.qat)."""

    epochs: int = Field(3, ge=1)
    lr: float = Field(2e-4, gt=0)


class CompressionSpec(_Strict):
    methods: list[Literal["prune", "qat"]] = Field(
        default_factory=list, description="More compression of the distilled student, beyond int8 PTQ."
    )
    pruning: PruningSpec = PruningSpec()
    qat: QatSpec = QatSpec()
    static_int8_engines: list[Literal["x86", "qnnpack"]] = Field(default_factory=list)
    dynamic_int8: bool = False
    calibration_samples: int = Field(512, ge=1)
    formats: list[FormatName] = Field(default_factory=lambda: list(ALL_FORMATS))
    max_fp32_logit_delta: float = Field(1e-4, gt=0)
    min_int8_agreement: float = Field(0.995, ge=0, le=1)


class ServingSpec(_Strict):
    default_variant: str = Field(min_length=1, description="What the bare family name serves.")
    max_batch_size: int = Field(64, ge=1)


class FamilySpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    signature: SignatureSpec
    preprocessing: PreprocessingSpec = PreprocessingSpec()
    labels: list[str] = Field(min_length=2)
    data: DataSpec
    teacher: TeacherSpec
    student: StudentSpec
    training: TrainingSpec = TrainingSpec()
    compression: CompressionSpec = CompressionSpec()
    serving: ServingSpec

    @model_validator(mode="after")
    def _consistent(self) -> FamilySpec:
        width = self.signature.output.shape[-1]
        if len(self.signature.output.shape) != 2 or width < 2:
            raise ValueError(
                f"signature.output.shape must be [-1, classes], got {self.signature.output.shape}"
            )
        if width != len(self.labels):
            raise ValueError(f"labels: {len(self.labels)} labels, but signature.output.shape[-1] is {width}")
        artifact = self.teacher.artifact_format
        if artifact and artifact not in self.compression.formats:
            raise ValueError(
                f"teacher.artifact: a pre-built {artifact} teacher needs {artifact} in compression.formats"
            )
        if self.training.shift_pixels and len(self.signature.input.shape) != 4:
            raise ValueError("training.shift_pixels: needs image inputs shaped [-1, C, H, W]")
        for field in ("mean", "std"):
            value = getattr(self.preprocessing, field)
            features = self.signature.input.shape[1:]
            if isinstance(value, list) and (len(features) != 1 or len(value) != features[0]):
                raise ValueError(f"preprocessing.{field}: {len(value)} values for inputs shaped {features}")
        return self

    def recipe(self) -> Recipe:
        training, compression = self.training, self.compression
        return Recipe(
            family=self.name,
            teacher_architecture=self.teacher.reference,
            teacher_artifact=self.teacher.artifact_format,
            student_architecture=self.student.architecture,
            **training.model_dump(),
            calibration_samples=compression.calibration_samples,
            quantization_engines=tuple(compression.static_int8_engines),
            dynamic_int8=compression.dynamic_int8,
            max_batch_size=self.serving.max_batch_size,
            formats=tuple(dict.fromkeys(compression.formats)),
            max_fp32_logit_delta=compression.max_fp32_logit_delta,
            min_int8_agreement=compression.min_int8_agreement,
            methods=tuple(dict.fromkeys(compression.methods)),
            prune_sparsity=compression.pruning.sparsity,
            prune_schedule=compression.pruning.schedule,
            prune_steps=compression.pruning.steps if compression.pruning.schedule == "iterative" else 1,
            prune_epochs=compression.pruning.epochs,
            qat_epochs=compression.qat.epochs,
            qat_lr=compression.qat.lr,
        )

    def digest_fields(self) -> dict[str, Any]:
        """What the recipe does not hold but every artifact depends on (the data is digested apart)."""
        fields: dict[str, Any] = {
            "signature": self.signature.model_dump(),
            "labels": self.labels,
            "preprocessing": self.preprocessing.model_dump(),
        }
        for name in ("state_dict", "artifact"):
            path = getattr(self.teacher, name)
            if path is not None:
                fields[f"teacher_{name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
        return fields


def _message(error: Any, model: type[BaseModel]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        known = _known_fields(model, error["loc"][:-1])
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(known)})"
        return f"{where}: unknown field{hint}"
    if error["type"] == "missing":
        return f"{where}: required field is missing"
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"


def _known_fields(model: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in location:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return list(getattr(current, "model_fields", {}))


def parse_spec(text: str, source: str, base: Path) -> FamilySpec:
    """Validate a spec's YAML text; relative paths resolve against ``base``, and named files must exist."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(document, dict):
        raise SpecError(f"{source}: expected a mapping of fields, got {type(document).__name__}")
    try:
        spec = FamilySpec.model_validate(document)
    except ValidationError as exc:
        raise SpecError(f"{source}: {_message(exc.errors()[0], FamilySpec)}") from None
    return _with_paths_resolved(spec, source, base)


def _with_paths_resolved(spec: FamilySpec, source: str, base: Path) -> FamilySpec:
    def resolved(where: str, path: Path) -> Path:
        full = path if path.is_absolute() else base / path
        if not full.exists():
            raise SpecError(f"{source}: {where}: file not found: {path}")
        return full

    data = spec.data.model_copy(deep=True)
    for part in ("train", "validation", "test"):
        item: SourceSpec | None = getattr(data, part)
        if item is None:
            continue
        for kind in ("npz", "csv", "idx_images", "idx_labels", "image_folder"):
            value = getattr(item, kind)
            if value is not None:
                setattr(item, kind, resolved(f"data.{part}.{kind}", value))
    teacher = spec.teacher
    for name in ("state_dict", "artifact"):
        path = getattr(teacher, name)
        if path is not None:
            teacher = teacher.model_copy(update={name: resolved(f"teacher.{name}", path)})
    return spec.model_copy(update={"data": data, "teacher": teacher})


def load_spec(path: Path) -> FamilySpec:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_spec(text, str(path), path.parent)


def builtin_families() -> list[str]:
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml"))


def builtin_spec(name: str) -> FamilySpec:
    path = BUILTIN_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SpecError(
            f"unknown family {name!r} (built in: {', '.join(builtin_families())}; or --family-file)"
        )
    return load_spec(path)
