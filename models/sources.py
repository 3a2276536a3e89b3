"""A family's data from the sources its spec names: ``.npz``, CSV, IDX, a folder of images per class, Python.

Every array is checked against the family's signature and labels here, before anything trains, and every
error names the spec field (``data.train.npz: ...``). A source without its own validation or test part is
split stratified with the spec's shares and seed; the digests pin both the data and the split.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from contract.card import shape_fits
from models import architectures
from models.architectures import Normaliser
from models.data import Dataset, DatasetError, Split, read_idx, sha256_arrays, stratified_split
from models.spec import FamilySpec, SourceSpec, SpecError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff")


def read_npz(path: Path, where: str, *, labels_required: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``inputs`` and (optionally) ``labels`` of an ``.npz``; nothing is unpickled."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "inputs" not in archive:
                raise SpecError(
                    f"{where}: {path.name} has no 'inputs' array (arrays: {', '.join(archive.files)})"
                )
            inputs = archive["inputs"]
            labels = archive.get("labels", None)
    except SpecError:
        raise
    except (OSError, ValueError) as exc:
        raise SpecError(f"{where}: {path.name}: unreadable .npz ({exc})") from None
    if labels is None and labels_required:
        raise SpecError(f"{where}: {path.name} has no 'labels' array")
    return inputs, labels


def _read_csv(path: Path, label_column: str | int, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open(newline="") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{where}: {path.name}: unreadable CSV ({exc})") from None
    if not rows:
        raise SpecError(f"{where}: {path.name} is empty")
    header, body = (rows[0], rows[1:]) if isinstance(label_column, str) else (None, rows)
    if header is not None and label_column not in header:
        raise SpecError(f"{where}: {path.name} has no column '{label_column}' (columns: {', '.join(header)})")
    index = header.index(str(label_column)) if header is not None else int(label_column)
    try:
        table = np.asarray(body, dtype=np.float64)
    except ValueError as exc:
        raise SpecError(f"{where}: {path.name}: every cell must be a number ({exc})") from None
    if table.ndim != 2 or not -table.shape[1] <= index < table.shape[1]:
        raise SpecError(
            f"{where}: {path.name}: label_column {label_column} is outside its {table.shape} table"
        )
    labels = table[:, index]
    return np.delete(table, index % table.shape[1], axis=1), labels


def _read_image_folder(
    path: Path, labels: list[str], shape: list[int], where: str
) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    folders = sorted(p.name for p in path.iterdir() if p.is_dir())
    unknown = [name for name in folders if name not in labels]
    if unknown:
        raise SpecError(f"{where}: folders {unknown} are not among the labels {labels}")
    channels = shape[0] if len(shape) == 3 else 1
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise SpecError(f"{where}: images need inputs shaped [-1, 1|3, H, W], the signature says {shape}")
    images, targets = [], []
    for label in folders:
        for file in sorted((path / label).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as image:
                    pixels = np.asarray(image.convert(mode), dtype=np.float32)
            except (OSError, UnidentifiedImageError) as exc:
                raise SpecError(f"{where}: {file}: unreadable image ({exc})") from None
            images.append(pixels.reshape(pixels.shape[0], pixels.shape[1], -1).transpose(2, 0, 1))
            targets.append(labels.index(label))
    if not images:
        raise SpecError(f"{where}: {path} holds no images in folders named by the labels")
    if len({image.shape for image in images}) > 1:
        raise SpecError(f"{where}: images of different sizes {sorted({i.shape for i in images})}")
    return np.stack(images), np.asarray(targets)


def _call_python(reference: str, where: str) -> Any:
    try:
        function = architectures.resolve(reference)
    except architectures.ArchitectureError as exc:
        raise SpecError(f"{where}: {exc}".replace("architecture ", "")) from None
    try:
        return function()
    except Exception as exc:  # a user's loader may fail in any way; report it against the field
        raise SpecError(f"{where}: {reference} failed ({type(exc).__name__}: {exc})") from None


def read_source(source: SourceSpec, spec: FamilySpec, where: str) -> Dataset | tuple[np.ndarray, np.ndarray]:
    """Raw arrays of one source (unchecked), or a ready-split ``Dataset`` from a Python function."""
    kind = source.kind
    where = f"{where}.{kind}"
    if kind == "npz":
        assert source.npz is not None
        inputs, labels = read_npz(source.npz, where)
        assert labels is not None
        return inputs, labels
    if kind == "csv":
        assert source.csv is not None
        return _read_csv(source.csv, source.label_column, where)
    if kind == "idx_images":
        assert source.idx_images is not None and source.idx_labels is not None
        fixed = _fixed(spec)
        dims = tuple(fixed[1:] if len(fixed) == 3 and fixed[0] == 1 else fixed)  # one channel: IDX holds H, W
        try:
            inputs = read_idx(source.idx_images, expect_magic=0x800 | (len(dims) + 1), expect_dims=dims)
            labels = read_idx(source.idx_labels, expect_magic=0x801, expect_dims=())
        except DatasetError as exc:
            raise SpecError(f"{where}: {exc}") from None
        return inputs.reshape(len(inputs), *fixed), labels
    if kind == "image_folder":
        assert source.image_folder is not None
        return _read_image_folder(source.image_folder, spec.labels, _fixed(spec), where)
    assert source.python is not None
    result = _call_python(source.python, where)
    if isinstance(result, Dataset):
        return result
    if isinstance(result, dict) and {"inputs", "labels"} <= set(result):
        return np.asarray(result["inputs"]), np.asarray(result["labels"])
    if isinstance(result, tuple) and len(result) == 2:
        return np.asarray(result[0]), np.asarray(result[1])
    raise SpecError(f"{where}: {source.python} must return (inputs, labels), a dict of both, or a Dataset")


def _fixed(spec: FamilySpec) -> list[int]:
    return spec.signature.input.shape[1:]


def checked_split(inputs: np.ndarray, labels: np.ndarray, spec: FamilySpec, where: str) -> Split:
    """Inputs in the signature's shape (float32) and integer labels within the family's classes."""
    expected = _fixed(spec)
    got = list(inputs.shape[1:])
    if inputs.ndim != len(expected) + 1 or not shape_fits(expected, got):
        raise SpecError(
            f"{where}: inputs shaped {['N', *got]} do not match signature.input.shape {spec.signature.input.shape}"
        )
    if len(labels) != len(inputs) or labels.ndim != 1:
        raise SpecError(f"{where}: {len(labels)} labels for {len(inputs)} inputs")
    if not np.issubdtype(labels.dtype, np.number) or (labels.size and (labels != np.round(labels)).any()):
        raise SpecError(f"{where}: labels must be class indices (integers)")
    if labels.size and (labels.min() < 0 or labels.max() >= len(spec.labels)):
        raise SpecError(
            f"{where}: label {int(labels.max() if labels.max() >= len(spec.labels) else labels.min())} is outside "
            f"the {len(spec.labels)} classes of labels (0-{len(spec.labels) - 1})"
        )
    try:
        floats = np.ascontiguousarray(inputs, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{where}: inputs are not numbers ({exc})") from None
    if not np.isfinite(floats).all():
        raise SpecError(f"{where}: inputs hold NaN or infinite values")
    return Split(floats, labels.astype(np.int64))


def load_family_data(spec: FamilySpec, data_dir: Path | None = None) -> Dataset:
    """The family's train/validation/test splits; ``data_dir`` (MNIST IDX files) replaces the spec's data."""
    from models.data import load_idx_directory

    if data_dir is not None:
        data = load_idx_directory(data_dir)
        return _checked_dataset(data, spec, "--data-dir")
    parts = {}
    for part in ("train", "validation", "test"):
        source: SourceSpec | None = getattr(spec.data, part)
        if source is not None:
            parts[part] = read_source(source, spec, f"data.{part}")
    train = parts["train"]
    if isinstance(train, Dataset):
        return _checked_dataset(train, spec, f"data.train.{spec.data.train.kind}")
    splits = {part: checked_split(*arrays, spec, f"data.{part}") for part, arrays in parts.items()
              if not isinstance(arrays, Dataset)}  # fmt: skip
    return _assemble(spec, splits)


def _checked_dataset(data: Dataset, spec: FamilySpec, where: str) -> Dataset:
    for part in ("train", "validation", "test"):
        split: Split = getattr(data, part)
        checked_split(split.images, split.labels, spec, f"{where} ({part})")
    return data


def _assemble(spec: FamilySpec, given: dict[str, Split]) -> Dataset:
    """Carve the parts the spec gives no source for out of train (stratified), then digest it all."""
    digest = sha256_arrays([array for split in given.values() for array in (split.images, split.labels)])
    train = given["train"]
    missing = [part for part in ("validation", "test") if part not in given]
    indices: list[np.ndarray] = []
    if missing:
        sizes = [max(1, round(getattr(spec.data.split, part) * len(train))) for part in missing]
        if sum(sizes) >= len(train):
            raise SpecError(
                f"data.split: {len(train)} training rows cannot also give {dict(zip(missing, sizes, strict=True))}"
            )
        indices = stratified_split(train.labels, (len(train) - sum(sizes), *sizes), spec.data.split.seed)
        for part, index in zip(["train", *missing], indices, strict=True):
            given[part] = Split(train.images[index], train.labels[index])
    return Dataset(
        name=f"{spec.name}-{spec.data.train.kind}-{sum(len(split) for split in given.values())}",
        train=given["train"],
        validation=given["validation"],
        test=given["test"],
        digest=digest,
        split_digest=sha256_arrays(indices),
    )


def fitted_normaliser(spec: FamilySpec, train: Split) -> Normaliser:
    """The spec's preprocessing; ``fit`` takes each feature's mean or std from the training split."""
    settings = spec.preprocessing

    def statistic(value: float | list[float] | str, fit: np.ndarray) -> float | np.ndarray:
        if value == "fit":
            return fit
        return np.asarray(value, dtype=np.float64) if isinstance(value, list) else float(value)

    scaled = train.images.astype(np.float64) / settings.divide_by
    mean = statistic(settings.mean, scaled.mean(axis=0))
    std = statistic(settings.std, np.maximum(scaled.std(axis=0), 1e-6))
    return Normaliser.standardise(mean, std, settings.divide_by)
