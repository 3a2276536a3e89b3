from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from models.data import DatasetError, load_builtin, load_idx_directory, stratified_split


def test_builtin_split_is_stratified_deterministic_and_disjoint() -> None:
    data = load_builtin()
    assert data.sizes == {"train": 3500, "validation": 500, "test": 1000}
    assert data.train.images.shape == (3500, 1, 28, 28) and data.train.images.dtype == np.float32
    assert data.train.images.max() == 255.0 and data.train.images.min() == 0.0
    assert np.bincount(data.test.labels).tolist() == [100] * 10
    assert np.bincount(data.validation.labels).tolist() == [50] * 10
    again = load_builtin()
    assert (data.digest, data.split_digest) == (again.digest, again.split_digest)
    assert np.array_equal(data.test.labels, again.test.labels)
    assert len(data.digest) == len(data.split_digest) == 64


def test_stratified_split_partitions_every_index_once() -> None:
    labels = np.repeat(np.arange(3), [7, 11, 13])
    parts = stratified_split(labels, (20, 5, 6), seed=1)
    assert [len(p) for p in parts] == [20, 5, 6]
    assert sorted(np.concatenate(parts).tolist()) == list(range(31))
    assert stratified_split(labels, (20, 5, 6), seed=1)[0].tolist() == parts[0].tolist()


def _idx_bytes(magic: int, dims: list[int], body: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + body


def _write(directory: Path, stem: str, content: bytes, compress: bool) -> None:
    if compress:
        with gzip.open(directory / f"{stem}.gz", "wb") as handle:
            handle.write(content)
    else:
        (directory / stem).write_bytes(content)


def write_mnist(directory: Path, n_train: int = 40, n_test: int = 20, *, compress: bool = False) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        _write(
            directory,
            f"{prefix}-images-idx3-ubyte",
            _idx_bytes(0x803, [n, 28, 28], images.tobytes()),
            compress,
        )
        _write(directory, f"{prefix}-labels-idx1-ubyte", _idx_bytes(0x801, [n], labels.tobytes()), compress)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_directory_loads_plain_and_gzip(tmp_path: Path, compress: bool) -> None:
    write_mnist(tmp_path, compress=compress)
    data = load_idx_directory(tmp_path)
    assert data.sizes == {"train": 36, "validation": 4, "test": 20}
    assert data.test.images.shape == (20, 1, 28, 28) and data.test.images.dtype == np.float32
    assert data.test.labels.tolist() == [i % 10 for i in range(20)]


def _corrupt(directory: Path, stem: str, content: bytes) -> None:
    (directory / stem).write_bytes(content)


IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"


@pytest.mark.parametrize(
    ("stem", "content", "message"),
    [
        (IMAGES, _idx_bytes(0x802, [40, 28, 28], bytes(40 * 784)), "bad magic"),
        (IMAGES, _idx_bytes(0x803, [40, 27, 28], bytes(40 * 27 * 28)), "bad dimensions"),
        (IMAGES, _idx_bytes(0x803, [40, 28, 28], bytes(39 * 784)), "truncated"),
        (IMAGES, b"\x00\x00", "truncated header"),
        (LABELS, _idx_bytes(0x801, [39], bytes(39)), "count mismatch"),
    ],
)
def test_malformed_idx_files_name_the_file_and_the_problem(
    tmp_path: Path, stem: str, content: bytes, message: str
) -> None:
    write_mnist(tmp_path)
    _corrupt(tmp_path, stem, content)
    with pytest.raises(DatasetError, match=message) as caught:
        load_idx_directory(tmp_path)
    assert stem in str(caught.value)


def test_missing_idx_file_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.*not found"):
        load_idx_directory(tmp_path)


def test_corrupt_gzip_is_a_dataset_error(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / IMAGES).unlink()
    (tmp_path / f"{IMAGES}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=IMAGES):
        load_idx_directory(tmp_path)
