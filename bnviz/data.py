"""Datasets and mini-batch order for training the small MLPs.

Everything is deterministic given a seed, so that two engines (or two runs) fed the same
arguments see the same rows in the same batches. Returned arrays are read-only: loaded datasets
are cached and shared between callers.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("digits", "moons", "circles", "spirals", "xor", "blobs", "mnist")
BATCH_ORDERS = ("shuffled", "fixed", "class_sorted")
PAGE_DATASETS = DATASETS[:-1]  # what a page offers: MNIST needs a folder of IDX files
DATASET_TITLES = {
    "digits": "handwritten digits (8x8)",
    "moons": "two moons (2-D)",
    "circles": "circles (2-D)",
    "spirals": "spirals (2-D)",
    "xor": "XOR (2-D)",
    "blobs": "blobs (2-D)",
    "mnist": "MNIST (28x28)",
}

IMAGE_DATASETS = ("digits", "mnist")  # the rest are points in the plane


def examples_word(dataset: str) -> str:
    """What a dataset's examples are called on a page: "images" or "points"."""
    return "images" if dataset in IMAGE_DATASETS else "points"


N_SAMPLES_RANGE = (20, 100_000)
NOISE_RANGE = (0.0, 2.0)
TEST_FRACTION_RANGE = (0.05, 0.5)

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _readonly(arr: np.ndarray) -> np.ndarray:
    """Freeze an array in place, so a shared (cached) dataset cannot be changed by a caller."""
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class Dataset:
    """A standardized train/test split; test rows use the train split's statistics."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    description: str

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def probe(self, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A fixed probe batch from the TEST split (see ``probe_indices``)."""
        idx = self.probe_indices(size, seed)
        return self.x_test[idx], self.y_test[idx]

    def probe_indices(self, size: int, seed: int = 0) -> np.ndarray:
        """Test-split rows of the probe batch: same (size, seed) -> same rows.

        Activations are compared on one unchanging batch across training steps, so it must be
        reproducible and not depend on training batches. `size` is capped at the test size. Rows
        are class-stratified as evenly as possible: a seeded permutation of the test rows is
        walked round-robin over the classes (first row of each class, then the second, ...).
        """
        size = _check_int("size", size, 1, None)
        n_test = len(self.y_test)
        size = min(size, n_test)
        perm = np.random.default_rng(seed).permutation(n_test)
        labels = self.y_test[perm]
        by_class = np.argsort(labels, kind="stable")
        sorted_labels = labels[by_class]
        group_start = np.searchsorted(sorted_labels, sorted_labels, side="left")
        rank = np.empty(n_test, dtype=np.int64)
        rank[by_class] = np.arange(n_test) - group_start
        order = np.lexsort((labels, rank))[:size]
        return perm[order]

    def astype(self, dtype) -> Dataset:
        """Copy with the feature arrays cast (e.g. float32 for a faster engine); labels shared."""
        return dataclasses.replace(
            self,
            x_train=_readonly(self.x_train.astype(dtype)),
            x_test=_readonly(self.x_test.astype(dtype)),
        )


def _check_int(name: str, value, lo: int | None, hi: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else f"{lo:,}"
        hi_s = "inf" if hi is None else f"{hi:,}"
        raise ValueError(f"{name} must be in [{lo_s}, {hi_s}], got {value:,}")
    return value


def _check_float(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    value = float(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _class_counts(n: int, k: int) -> list[int]:
    """Balanced class sizes: they differ by at most one, earlier classes get the remainder."""
    return [n // k + (i < n % k) for i in range(k)]


def _finish_make(
    parts: list[np.ndarray], noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-class point sets, add the Gaussian noise and shuffle rows (class order hidden)."""
    x = np.concatenate(parts).astype(np.float64)
    y = np.concatenate([np.full(len(p), c, dtype=np.int64) for c, p in enumerate(parts)])
    if noise > 0:
        x += noise * rng.standard_normal(x.shape)
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


def _check_make(n_samples, noise) -> tuple[int, float]:
    return _check_int("n_samples", n_samples, 1, None), _check_float("noise", noise, 0.0, math.inf)


def make_moons(n_samples: int, noise: float, rng: np.random.Generator):
    """Two interleaving half circles of radius 1: class 0 the upper one centred at (0, 0),
    class 1 the lower one centred at (1, 0.5). Not linearly separable, but easy for an MLP."""
    n_samples, noise = _check_make(n_samples, noise)
    n0, n1 = _class_counts(n_samples, 2)
    t0 = np.linspace(0.0, np.pi, n0)
    t1 = np.linspace(0.0, np.pi, n1)
    upper = np.column_stack([np.cos(t0), np.sin(t0)])
    lower = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])
    return _finish_make([upper, lower], noise, rng)


def make_circles(n_samples: int, noise: float, rng: np.random.Generator):
    """Two concentric circles around the origin: class 0 radius 1, class 1 radius 0.5.
    A classic case a linear model cannot solve, but a radial feature can."""
    n_samples, noise = _check_make(n_samples, noise)
    parts = []
    for radius, m in zip((1.0, 0.5), _class_counts(n_samples, 2), strict=True):
        t = np.linspace(0.0, 2.0 * np.pi, m, endpoint=False)
        parts.append(radius * np.column_stack([np.cos(t), np.sin(t)]))
    return _finish_make(parts, noise, rng)


def make_spirals(n_samples: int, noise: float, rng: np.random.Generator):
    """Three spiral arms (3 classes) winding out from radius 0.1 to 1.

    Arm k at radius r sits at angle 2*pi*k/3 + 2*pi*r, so neighbouring arms are 1/3 apart along
    a ray: hard for shallow nets, which makes depth (and BN) matter.
    """
    n_samples, noise = _check_make(n_samples, noise)
    parts = []
    for k, m in enumerate(_class_counts(n_samples, 3)):
        r = np.linspace(0.1, 1.0, m)
        theta = 2.0 * np.pi * k / 3.0 + 2.0 * np.pi * r
        parts.append(r[:, None] * np.column_stack([np.cos(theta), np.sin(theta)]))
    return _finish_make(parts, noise, rng)


def make_xor(n_samples: int, noise: float, rng: np.random.Generator):
    """Four quadrant clusters labelled by the sign of x1*x2 (0 if positive, 1 if negative).

    Each cluster is uniform on [0.1, 1]^2 reflected into its quadrant, so the classes keep a
    0.2-wide gap around the axes before noise.
    """
    n_samples, noise = _check_make(n_samples, noise)
    signs = ((1.0, 1.0), (1.0, -1.0), (-1.0, -1.0), (-1.0, 1.0))
    quads = [
        rng.uniform(0.1, 1.0, size=(m, 2)) * np.array(s)
        for s, m in zip(signs, _class_counts(n_samples, 4), strict=True)
    ]
    parts = [np.concatenate([quads[0], quads[2]]), np.concatenate([quads[1], quads[3]])]
    return _finish_make(parts, noise, rng)


def make_blobs(n_samples: int, noise: float, rng: np.random.Generator):
    """Four Gaussian blobs (4 classes) with centres on the unit circle at angles k*pi/2.
    `noise` is the blobs' standard deviation; at 0 every point sits on its centre."""
    n_samples, noise = _check_make(n_samples, noise)
    parts = []
    for k, m in enumerate(_class_counts(n_samples, 4)):
        angle = k * np.pi / 2.0
        centre = np.array([np.cos(angle), np.sin(angle)])
        parts.append(np.tile(centre, (m, 1)))
    return _finish_make(parts, noise, rng)


_MAKERS = {
    "moons": (make_moons, "Two moons: {n:,} synthetic 2-D points on 2 interleaving half circles"),
    "circles": (make_circles, "Circles: {n:,} synthetic 2-D points on 2 concentric circles"),
    "spirals": (make_spirals, "Spirals: {n:,} synthetic 2-D points on 3 interleaved spiral arms"),
    "xor": (make_xor, "XOR: {n:,} synthetic 2-D points in 4 quadrants, labelled by sign(x1*x2)"),
    "blobs": (make_blobs, "Blobs: {n:,} synthetic 2-D points in 4 Gaussian blobs"),
}


def _standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature z-score with TRAIN statistics only (no test leakage), in place.

    A constant train feature gets mean = its value and std = 1, so it becomes exactly 0 instead
    of NaN (digits and MNIST have always-blank border pixels).
    """
    mean = x_train.mean(axis=0)
    constant = x_train.max(axis=0) == x_train.min(axis=0)
    mean[constant] = x_train[0, constant]
    x_train -= mean
    # two-pass variance without np.std's full-size temporary (seconds saved on MNIST)
    std = np.sqrt(np.einsum("ij,ij->j", x_train, x_train) / len(x_train))
    std[constant | (std == 0)] = 1.0
    x_train /= std
    x_test -= mean
    x_test /= std
    return x_train, x_test


def _split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random split; the test size is rounded up (as scikit-learn does): 360 of 1,797."""
    n = len(y)
    n_test = min(n - 1, max(1, math.ceil(test_fraction * n - 1e-9)))
    perm = rng.permutation(n)
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def _make_dataset(name, x_train, y_train, x_test, y_test, n_classes, description) -> Dataset:
    x_train, x_test = _standardize(
        np.array(x_train, dtype=np.float64), np.array(x_test, dtype=np.float64)
    )
    return Dataset(
        name=name,
        x_train=_readonly(x_train),
        y_train=_readonly(np.array(y_train, dtype=np.int64)),
        x_test=_readonly(x_test),
        y_test=_readonly(np.array(y_test, dtype=np.int64)),
        n_classes=int(n_classes),
        description=description,
    )


def _digits_file() -> Path | None:
    """scikit-learn's own copy of the digits (a gzipped CSV), found without importing sklearn."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """Raw digits arrays, read straight from scikit-learn's data file as ``load_digits`` reads
    it: importing sklearn takes 1-5 s, which a page's first chart would wait for."""
    path = _digits_file()
    if path is not None:
        table = np.loadtxt(path, delimiter=",")
        data, target = table[:, :-1], table[:, -1]
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        data, target = bunch.data, bunch.target
    return _readonly(data.astype(np.float64)), _readonly(target.astype(np.int64))


@functools.lru_cache(maxsize=32)
def _load_cached(name: str, n_samples: int, noise: float, seed: int, test_fraction: float):
    """Digits and synthetic sets are pure functions of their arguments, so they are cached."""
    rng = np.random.default_rng(seed)
    if name == "digits":
        x, y = _digits_raw()
        n_classes = 10
        description = (
            f"scikit-learn digits: {len(y):,} real 8x8 handwritten digits, "
            f"{x.shape[1]} features, {n_classes} classes"
        )
    else:
        make, template = _MAKERS[name]
        x, y = make(n_samples, noise, rng)
        n_classes = int(y.max()) + 1
        description = template.format(n=n_samples) + f", noise {noise:g}, {n_classes} classes"
    return _make_dataset(name, *_split(x, y, test_fraction, rng), n_classes, description)


def load_dataset(
    name: str,
    *,
    n_samples: int = 1000,
    noise: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.2,
    data_dir: str | Path | None = None,
) -> Dataset:
    """Load one of DATASETS, split and standardized with the train statistics.

    `n_samples` and `noise` only apply to the synthetic 2-D sets; `test_fraction` is ignored for
    MNIST, which keeps its official split; `data_dir` is only used by MNIST. Never downloads.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed names: {', '.join(DATASETS)}")
    n_samples = _check_int("n_samples", n_samples, *N_SAMPLES_RANGE)
    noise = _check_float("noise", noise, *NOISE_RANGE)
    test_fraction = _check_float("test_fraction", test_fraction, *TEST_FRACTION_RANGE)
    seed = _check_int("seed", seed, 0, None)
    if name == "mnist":
        if data_dir is None:
            raise ValueError(
                "MNIST is not bundled and is never downloaded: download the four IDX files "
                f"({', '.join(MNIST_FILES)}, optionally .gz) yourself and pass their folder "
                "as data_dir"
            )
        return load_mnist(data_dir)
    return _load_cached(name, n_samples, noise, seed, test_fraction)


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (the MNIST format), plain or gzip-compressed, with strict checks.

    Layout: two zero bytes, a type code, the number of dimensions, that many big-endian uint32
    sizes, then the big-endian data. Malformed files raise ValueError naming the file rather than
    silently yielding garbage images.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, header needs 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file (magic starts with {raw[:2].hex()}, expected 0000)"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ValueError(
            f"{path}: unknown IDX type code 0x{code:02X} "
            f"(expected one of {', '.join(f'0x{c:02X}' for c in _IDX_TYPES)})"
        )
    if ndim == 0:
        raise ValueError(f"{path}: IDX file declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, needs {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    actual = len(raw) - header
    if actual < expected:
        raise ValueError(
            f"{path}: truncated IDX file: shape {shape} needs {expected:,} data bytes, "
            f"found {actual:,}"
        )
    if actual > expected:
        raise ValueError(
            f"{path}: IDX size mismatch: shape {shape} needs {expected:,} data bytes, "
            f"found {actual:,}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header)
    return data.astype(dtype.newbyteorder("=")).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MNIST file {stem!r} (or {stem}.gz) missing in {folder}; expected the four files "
        f"{', '.join(MNIST_FILES)}, each optionally gzipped"
    )


def load_mnist(data_dir: str | Path) -> Dataset:
    """MNIST from a local folder of the four standard IDX files, with the official split.

    Images are flattened (28x28 -> 784) and standardized with the train statistics. Nothing is
    fetched from the network: the user downloads the files once and points here.
    """
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"MNIST folder not found: {folder}; expected a folder holding "
            f"{', '.join(MNIST_FILES)} (each optionally .gz)"
        )
    paths = [_find_idx(folder, stem).resolve() for stem in MNIST_FILES]
    stamps = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    return _load_mnist_cached(str(folder), tuple(paths), stamps)


@functools.lru_cache(maxsize=1)
def _load_mnist_cached(folder: str, paths: tuple[Path, ...], stamps: tuple) -> Dataset:
    """Parsing and standardizing 70k images takes about a second, so the last load is kept;
    `stamps` (size, mtime) in the key makes a replaced file load afresh."""
    x_tr, y_tr, x_te, y_te = (read_idx(p) for p in paths)
    for images, labels, p_img, p_lab in ((x_tr, y_tr, *paths[:2]), (x_te, y_te, *paths[2:])):
        if images.ndim < 2:
            raise ValueError(f"{p_img}: expected images with >= 2 dimensions, got {images.shape}")
        if labels.ndim != 1:
            raise ValueError(f"{p_lab}: expected a 1-D label vector, got shape {labels.shape}")
        if len(images) != len(labels):
            raise ValueError(
                f"{p_img} holds {len(images):,} images but {p_lab} holds {len(labels):,} labels"
            )
        if len(labels) == 0:
            raise ValueError(f"{p_lab}: no examples")
        if labels.dtype.kind == "f" or labels.min() < 0:
            raise ValueError(f"{p_lab}: labels must be non-negative integers")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(f"train images are {x_tr.shape[1:]} but test images are {x_te.shape[1:]}")
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    size = "x".join(str(d) for d in x_tr.shape[1:])
    n_features = math.prod(x_tr.shape[1:])
    description = (
        f"MNIST ({folder}): {len(y_tr):,} train / {len(y_te):,} test {size} images, "
        f"{n_features} features, {n_classes} classes"
    )
    return _make_dataset(
        "mnist",
        x_tr.reshape(len(x_tr), -1),
        y_tr,
        x_te.reshape(len(x_te), -1),
        y_te,
        n_classes,
        description,
    )


class BatchSampler:
    """Deterministic stream of mini-batch index arrays over a label vector.

    One epoch of batches is precomputed as a 2-D array and walked row by row, so `next()` costs
    about a microsecond. Every batch has exactly `batch_size` rows (incomplete batches are
    dropped): BN statistics depend on the batch size, and two engines must see identical batches.
    """

    def __init__(self, y, batch_size: int, order: str = "shuffled", seed: int = 0) -> None:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) == 0:
            raise ValueError(f"y must be a non-empty 1-D label vector, got shape {y.shape}")
        if order not in BATCH_ORDERS:
            raise ValueError(f"unknown order {order!r}; allowed orders: {', '.join(BATCH_ORDERS)}")
        self.batch_size = _check_int("batch_size", batch_size, 1, len(y))
        self.order = order
        self.seed = _check_int("seed", seed, 0, None)
        self.n = len(y)
        self._rng = np.random.default_rng(self.seed)
        if order == "class_sorted":
            classes = np.unique(y)
            self._class_idx = [np.flatnonzero(y == c).astype(np.int64) for c in classes]
            largest = max(len(idx) for idx in self._class_idx)
            if largest < self.batch_size:
                raise ValueError(
                    f"class_sorted needs a class with >= batch_size={self.batch_size} examples; "
                    f"the largest class has {largest}"
                )
        self._epoch_batches = self._make_epoch()
        self._pos = 0
        self.epoch = 0
        self.step = 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self._epoch_batches)

    def _make_epoch(self) -> np.ndarray:
        bs = self.batch_size
        if self.order == "class_sorted":
            chunks = []
            for idx in self._class_idx:
                k = len(idx) // bs
                if k:
                    chunks.append(self._rng.permutation(idx)[: k * bs].reshape(k, bs))
            batches = np.concatenate(chunks)
        else:
            k = self.n // bs
            batches = self._rng.permutation(self.n)[: k * bs].reshape(k, bs)
        return _readonly(batches)

    def _advance_epoch(self) -> None:
        if self.order != "fixed":
            self._epoch_batches = self._make_epoch()
        self._pos = 0
        self.epoch += 1

    def next(self) -> np.ndarray:
        """The next batch's row indices (int64, read-only, exactly batch_size of them)."""
        if self._pos == len(self._epoch_batches):
            self._advance_epoch()
        batch = self._epoch_batches[self._pos]
        self._pos += 1
        self.step += 1
        return batch

    def take(self, steps: int) -> np.ndarray:
        """The next `steps` batches as one (steps, batch_size) array; advances the stream."""
        steps = _check_int("steps", steps, 0, None)
        out = np.empty((steps, self.batch_size), dtype=np.int64)
        done = 0
        while done < steps:
            if self._pos == len(self._epoch_batches):
                self._advance_epoch()
            m = min(steps - done, len(self._epoch_batches) - self._pos)
            out[done : done + m] = self._epoch_batches[self._pos : self._pos + m]
            self._pos += m
            done += m
        self.step += steps
        return out
