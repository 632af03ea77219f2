import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from xlayer.errors import InputError
from xlayer.localtrain import data as D


def write_idx(path, arr: np.ndarray, gz=True):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    payload = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


def test_fashion_mnist_idx_loader(tmp_path):
    rng = np.random.default_rng(0)
    xs = {"train": rng.integers(0, 256, (6, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
    ys = {"train": np.arange(6) % 10, "t10k": np.array([9, 1, 2])}
    for split in ("train", "t10k"):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", xs[split])
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", ys[split], gz=False)   # plain works too
    ds = D.load("fashion-mnist", tmp_path)
    assert ds.x_train.shape == (6, 1, 28, 28) and ds.x_train.dtype == torch.uint8
    assert np.array_equal(ds.x_train[:, 0].numpy(), xs["train"])
    assert ds.y_test.tolist() == [9, 1, 2] and ds.y_test.dtype == torch.int64
    assert ds.channels == 1 and ds.image_size == 28


def test_cifar10_pickle_loader(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    expect = []
    for name, n in [("data_batch_1", 4), ("data_batch_2", 3), ("test_batch", 2)]:
        d = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"labels": list(range(n))}
        pickle.dump(d, open(folder / name, "wb"))
        expect.append(d)
    ds = D.load("cifar10", tmp_path)
    assert ds.x_train.shape == (7, 3, 32, 32) and ds.x_test.shape == (2, 3, 32, 32)
    # CHW order: the first 1024 bytes are the red plane
    assert np.array_equal(ds.x_train[0, 0].numpy().ravel(), expect[0][b"data"][0, :1024])
    assert ds.y_train.tolist() == [0, 1, 2, 3, 0, 1, 2]


def test_missing_folders_raise_input_error(tmp_path):
    with pytest.raises(InputError) as e:
        D.load("fashion-mnist", tmp_path / "nope")
    assert "data" in str(e.value)
    with pytest.raises(InputError):
        D.load("fashion-mnist", tmp_path)          # exists but no files
    with pytest.raises(InputError):
        D.load("cifar10", tmp_path)
    with pytest.raises(InputError):
        D.load("imagenet")


def test_augment_crop_and_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    y = D.augment(x, pad=0, generator=g)             # no padding: identity or mirror image
    for a, b in zip(x, y):
        assert torch.equal(a, b) or torch.equal(a.flip(-1), b)
    z = D.augment(x, pad=4, generator=g)
    assert z.shape == x.shape
    # every output pixel is an input pixel or zero padding
    assert set(z.unique().tolist()) <= set(x.unique().tolist()) | {0.0}


def test_synthetic_and_batches():
    ds = D.synthetic(n_train=10, n_test=5, channels=1, size=12)
    bs = list(D.batches(ds.x_train, ds.y_train, 4, shuffle=True, train_aug=True,
                        generator=torch.Generator().manual_seed(0)))
    assert [len(b[1]) for b in bs] == [4, 4, 2]
    assert 0.0 <= float(bs[0][0].min()) and float(bs[0][0].max()) <= 1.0
    assert D.n_batches(10, 4) == 3 and D.n_batches(10, 4, drop_last=True) == 2


@pytest.mark.skipif(not (D.FASHION_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    ds = D.load("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert abs(ds.x_train.float().mean().item() / 255 - 0.2860) < 1e-3
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10


def test_stratified_subset_is_fixed_and_balanced():
    ds = D.synthetic(n_train=400, n_test=200, channels=1, size=8)
    a = D.subset(ds, 50, 20)
    b = D.subset(ds, 50, 20)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    counts = torch.bincount(a.y_train, minlength=10).tolist()
    assert sum(counts) == 50 and counts == [5] * 10
    assert len(a.y_test) == 20 and torch.bincount(a.y_test, minlength=10).tolist() == [2] * 10
    with pytest.raises(InputError):
        D.subset(ds, 401)
