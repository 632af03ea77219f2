"""Datasets as in-memory uint8 tensors, a batch iterator and standard augmentation.

* Fashion-MNIST: IDX files (LeCun's format: big-endian magic 0x00000803 images /
  0x00000801 labels, then dims), plain or .gz; default folder
  ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
* CIFAR-10: the "python version" (``data_batch_1..5``, ``test_batch``: pickled dicts with
  ``b"data"`` (N, 3072) uint8 in CHW order and ``b"labels"``).
* synthetic: class-dependent random templates plus noise; learnable, for smoke tests.

Augmentation (training only): random crop with zero padding 4 and horizontal flip (p = 0.5).
"""
from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from xlayer.errors import InputError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("fashion-mnist", "cifar10", "synthetic")
# per-channel mean / std of the training set in [0, 1]
STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "synthetic": ((0.5,), (0.25,)),
}


@dataclass
class Dataset:
    """Images uint8 (N, C, H, W) and int64 labels (N,), for train and test."""
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 10

    @property
    def channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def image_size(self) -> int:
        return self.x_train.shape[-1]

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return STATS.get(self.name, ((0.5,) * self.channels, (0.25,) * self.channels))


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped): magic = 0x0000 | dtype(0x08 = uint8) | ndim."""
    with _open(Path(path)) as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise InputError("data.file", str(path), "valid: IDX file of uint8 (magic 0x0000080n)")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise InputError("data.file", str(path), f"valid: {int(np.prod(dims))} values after the header")
    return arr.reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise InputError("data", str(folder), f"valid: a folder holding {stem}[.gz]")


def load_fashion_mnist(folder: str | Path | None = None) -> Dataset:
    """Fashion-MNIST (or MNIST: same file names) from IDX files in ``folder``."""
    folder = Path(folder) if folder else FASHION_DIR
    if not folder.is_dir():
        raise InputError("data", str(folder), "valid: an existing folder with the IDX files "
                         "(apt-get install dataset-fashion-mnist, or --data DIR)")
    parts = []
    for split in ("train", "t10k"):
        x = read_idx(_find(folder, f"{split}-images-idx3-ubyte"))
        y = read_idx(_find(folder, f"{split}-labels-idx1-ubyte"))
        parts += [torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))]
    return Dataset("fashion-mnist", *parts)


def load_cifar10(folder: str | Path) -> Dataset:
    """CIFAR-10 python-pickle batches from ``folder`` (or its ``cifar-10-batches-py``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("data", str(folder), "valid: an existing folder with CIFAR-10 python batches")
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    train_files = sorted(folder.glob("data_batch_*"))
    if not train_files or not (folder / "test_batch").exists():
        raise InputError("data", str(folder), "valid: a folder with data_batch_1..5 and test_batch")

    def load(files):
        xs, ys = [], []
        for f in files:
            with open(f, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")
            xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d[b"labels"], dtype=np.int64))
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    return Dataset("cifar10", *load(train_files), *load([folder / "test_batch"]))


def synthetic(n_train: int = 512, n_test: int = 256, channels: int = 1, size: int = 28,
              num_classes: int = 10, seed: int = 0) -> Dataset:
    """Each class is a random smooth template; a sample is its template + Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(num_classes, channels, 7, 7, generator=g)
    templates = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)

    def make(n):
        y = torch.randint(0, num_classes, (n,), generator=g)
        x = templates[y] + 0.15 * torch.randn(n, channels, size, size, generator=g)
        return (x.clamp(0, 1) * 255).to(torch.uint8), y

    return Dataset("synthetic", *make(n_train), *make(n_test), num_classes)


def load(name: str, folder: str | Path | None = None, **kw) -> Dataset:
    """Dataset by name: ``fashion-mnist``, ``cifar10`` (needs ``folder``) or ``synthetic``."""
    if name == "fashion-mnist":
        return load_fashion_mnist(folder)
    if name == "cifar10":
        if folder is None:
            raise InputError("data", None, "valid: --data DIR holding CIFAR-10 python batches")
        return load_cifar10(folder)
    if name == "synthetic":
        return synthetic(**kw)
    raise InputError("dataset", name, f"valid: {', '.join(DATASETS)}")


def augment(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding ``pad``) + random horizontal flip, per sample, float input."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])            # (n, h)
    cols = (dx[:, None] + torch.arange(w)[None, :])            # (n, w)
    flip = torch.rand(n, generator=generator) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
            train_aug: bool = False, generator: torch.Generator | None = None,
            drop_last: bool = False, limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Float batches in [0, 1] (augmented when ``train_aug``); at most ``limit`` batches."""
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - (n % batch_size) if drop_last else n
    for i, start in enumerate(range(0, stop, batch_size)):
        if limit is not None and i >= limit:
            return
        idx = order[start:start + batch_size]
        xb = x[idx].float() / 255.0
        if train_aug:
            xb = augment(xb, generator=generator)
        yield xb, y[idx]


def n_batches(n: int, batch_size: int, drop_last: bool = False, limit: int | None = None) -> int:
    k = n // batch_size if drop_last else -(-n // batch_size)
    return min(k, limit) if limit is not None else k


def _stratified(y: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """Indices of a fixed class-balanced subset of size n (n // classes per class, the
    remainder to the lowest classes), drawn with its own seed, returned in file order."""
    if not 1 <= n <= len(y):
        raise InputError("subset", n, f"valid: 1..{len(y)}")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=g)
    picked = []
    for c in range(num_classes):
        want = n // num_classes + (1 if c < n % num_classes else 0)
        idx = order[y[order] == c][:want]
        if len(idx) < want:
            raise InputError("subset", n, f"valid: at most {num_classes} x the smallest class count")
        picked.append(idx)
    return torch.cat(picked).sort().values


def subset(ds: Dataset, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """The same dataset restricted to fixed stratified subsets (seed independent of the runs')."""
    xtr, ytr, xte, yte = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if n_train is not None:
        i = _stratified(ytr, n_train, ds.num_classes, seed)
        xtr, ytr = xtr[i], ytr[i]
    if n_test is not None:
        i = _stratified(yte, n_test, ds.num_classes, seed + 1)
        xte, yte = xte[i], yte[i]
    return Dataset(ds.name, xtr, ytr, xte, yte, ds.num_classes)
