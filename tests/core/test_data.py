"""Tests for bnviz.data: datasets, IDX/MNIST loading, probe batches and batch order."""

import gzip
import struct
import subprocess
import sys

import numpy as np
import pytest

from bnviz import data
from bnviz.data import (
    BATCH_ORDERS,
    DATASETS,
    MNIST_FILES,
    BatchSampler,
    Dataset,
    load_dataset,
    make_blobs,
    make_circles,
    make_moons,
    make_spirals,
    make_xor,
    read_idx,
)

MAKERS = {
    "moons": (make_moons, 2),
    "circles": (make_circles, 2),
    "spirals": (make_spirals, 3),
    "xor": (make_xor, 2),
    "blobs": (make_blobs, 4),
}


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- digits


def test_api_names():
    assert DATASETS == ("digits", "moons", "circles", "spirals", "xor", "blobs", "mnist")
    assert BATCH_ORDERS == ("shuffled", "fixed", "class_sorted")


def test_digits_shapes_and_labels():
    ds = load_dataset("digits")
    assert ds.name == "digits"
    assert ds.x_train.shape == (1437, 64)
    assert ds.x_test.shape == (360, 64)
    assert ds.y_train.shape == (1437,) and ds.y_test.shape == (360,)
    assert ds.x_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    assert ds.n_classes == 10 and ds.n_features == 64
    assert set(np.unique(np.concatenate([ds.y_train, ds.y_test]))) == set(range(10))
    assert ds.description.startswith("scikit-learn digits: 1,797 real 8x8")
    assert "64 features, 10 classes" in ds.description


def test_digits_standardized_with_train_stats():
    ds = load_dataset("digits")
    assert np.abs(ds.x_train.mean(axis=0)).max() < 1e-12
    std = ds.x_train.std(axis=0)
    constant = np.all(ds.x_train == ds.x_train[0], axis=0)
    assert constant.sum() >= 1  # digits has always-blank pixels
    assert np.all(ds.x_train[:, constant] == 0.0)
    np.testing.assert_allclose(std[~constant], 1.0, atol=1e-12)
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_test).all()
    # test rows use train statistics, so their mean is close to but not exactly 0
    assert 0.0 < np.abs(ds.x_test.mean(axis=0)).max() < 2.0


def test_digits_split_fraction():
    ds = load_dataset("digits", test_fraction=0.5)
    assert (len(ds.y_train), len(ds.y_test)) == (898, 899)


def test_digits_deterministic_and_seed_dependent():
    a = load_dataset("digits", seed=1)
    b = load_dataset("digits", seed=1)
    c = load_dataset("digits", seed=2)
    assert a is b  # cached
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, c.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_digits_arrays_read_only():
    ds = load_dataset("digits")
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        ds.x_train[0, 0] = 1.0


def test_astype_float32():
    ds = load_dataset("digits")
    ds32 = ds.astype(np.float32)
    assert ds32.x_train.dtype == np.float32 and ds32.x_test.dtype == np.float32
    assert ds32.y_train is ds.y_train
    assert not ds32.x_train.flags.writeable
    np.testing.assert_allclose(ds32.x_test, ds.x_test, rtol=1e-6, atol=1e-6)
    assert ds.x_train.dtype == np.float64  # original untouched


# ---------------------------------------------------------------- synthetic


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("n", [1000, 1001, 1003])
def test_make_shapes_and_balance(name, n):
    make, k = MAKERS[name]
    x, y = make(n, 0.1, rng())
    assert x.shape == (n, 2) and x.dtype == np.float64
    assert y.shape == (n,) and y.dtype == np.int64
    counts = np.bincount(y)
    assert len(counts) == k
    assert counts.max() - counts.min() <= 1
    assert counts.sum() == n


@pytest.mark.parametrize("name", list(MAKERS))
def test_make_deterministic(name):
    make, _ = MAKERS[name]
    x1, y1 = make(300, 0.2, rng(5))
    x2, y2 = make(300, 0.2, rng(5))
    x3, _ = make(300, 0.2, rng(6))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)


def test_make_circles_exact_geometry():
    x, y = make_circles(400, 0.0, rng())
    r = np.hypot(x[:, 0], x[:, 1])
    np.testing.assert_allclose(r[y == 0], 1.0, atol=1e-12)
    np.testing.assert_allclose(r[y == 1], 0.5, atol=1e-12)


def test_make_moons_exact_geometry():
    x, y = make_moons(400, 0.0, rng())
    up, lo = x[y == 0], x[y == 1]
    np.testing.assert_allclose(np.hypot(up[:, 0], up[:, 1]), 1.0, atol=1e-12)
    assert up[:, 1].min() >= -1e-12
    np.testing.assert_allclose(np.hypot(lo[:, 0] - 1.0, lo[:, 1] - 0.5), 1.0, atol=1e-12)
    assert lo[:, 1].max() <= 0.5 + 1e-12


def test_make_spirals_exact_geometry():
    x, y = make_spirals(300, 0.0, rng())
    r = np.hypot(x[:, 0], x[:, 1])
    assert r.min() == pytest.approx(0.1) and r.max() == pytest.approx(1.0)
    expected = 2 * np.pi * y / 3 + 2 * np.pi * r
    diff = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - expected)))
    np.testing.assert_allclose(diff, 0.0, atol=1e-9)


def test_make_xor_exact_geometry():
    x, y = make_xor(1000, 0.0, rng())
    assert np.abs(x).min() >= 0.1 and np.abs(x).max() <= 1.0
    np.testing.assert_array_equal(y, (x[:, 0] * x[:, 1] < 0).astype(np.int64))
    quadrant_counts = np.bincount((x[:, 0] > 0) * 2 + (x[:, 1] > 0))
    np.testing.assert_array_equal(quadrant_counts, [250, 250, 250, 250])


def test_make_blobs_exact_geometry_and_noise_scale():
    centres = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    x, y = make_blobs(400, 0.0, rng())
    np.testing.assert_allclose(x, centres[y], atol=1e-12)
    x, y = make_blobs(8000, 0.3, rng())
    assert (x - centres[y]).std() == pytest.approx(0.3, rel=0.03)


def test_make_circles_noise_is_absolute_std():
    x, y = make_circles(8000, 0.05, rng())
    r = np.hypot(x[:, 0], x[:, 1])
    resid = np.where(y == 0, r - 1.0, r - 0.5)
    assert resid.std() == pytest.approx(0.05, rel=0.05)


@pytest.mark.parametrize("name", list(MAKERS))
def test_load_synthetic(name):
    _, k = MAKERS[name]
    ds = load_dataset(name, n_samples=500, noise=0.2, seed=3, test_fraction=0.25)
    assert ds.x_train.shape == (375, 2) and ds.x_test.shape == (125, 2)
    assert ds.n_classes == k and ds.n_features == 2
    assert set(np.unique(ds.y_train)) == set(range(k))
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, atol=1e-12)
    assert "500" in ds.description and f"{k} classes" in ds.description
    again = load_dataset(name, n_samples=500, noise=0.2, seed=3, test_fraction=0.25)
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    other = load_dataset(name, n_samples=500, noise=0.2, seed=4, test_fraction=0.25)
    assert not np.array_equal(ds.x_train, other.x_train)


# ---------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"n_samples": 19}, "n_samples"),
        ({"n_samples": 100_001}, "n_samples"),
        ({"n_samples": 50.5}, "n_samples"),
        ({"noise": -0.01}, "noise"),
        ({"noise": 2.5}, "noise"),
        ({"test_fraction": 0.01}, "test_fraction"),
        ({"test_fraction": 0.6}, "test_fraction"),
    ],
)
def test_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        load_dataset("moons", **kwargs)


def test_unknown_dataset_lists_names():
    with pytest.raises(ValueError, match="digits, moons, circles, spirals, xor, blobs, mnist"):
        load_dataset("cifar10")


def test_mnist_without_folder():
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("mnist")


# ---------------------------------------------------------------- probe


def test_probe_deterministic_and_from_test_split():
    ds = load_dataset("digits")
    x1, y1 = ds.probe(64, seed=3)
    x2, y2 = ds.probe(64, seed=3)
    x3, _ = ds.probe(64, seed=4)
    assert x1.shape == (64, 64) and y1.shape == (64,)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    rows = {r.tobytes(): lab for r, lab in zip(ds.x_test, ds.y_test, strict=True)}
    assert all(rows[r.tobytes()] == lab for r, lab in zip(x1, y1, strict=True))
    assert len({r.tobytes() for r in x1}) == 64  # no repeated rows


def test_probe_size_capped():
    ds = load_dataset("digits")
    x, y = ds.probe(10_000)
    assert x.shape == (360, 64)
    np.testing.assert_array_equal(np.sort(y), np.sort(ds.y_test))


def test_probe_stratified_round_robin():
    ds = load_dataset("digits")
    _, y = ds.probe(50)
    np.testing.assert_array_equal(np.bincount(y), [5] * 10)
    _, y = ds.probe(23)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [3, 3, 3] + [2] * 7)
    np.testing.assert_array_equal(y[:10], np.arange(10))


def test_probe_uneven_classes():
    y_test = np.array([0] * 8 + [1] * 2, dtype=np.int64)
    x_test = np.arange(10, dtype=np.float64)[:, None]
    ds = Dataset("tiny", x_test, y_test, x_test, y_test, 2, "tiny")
    _, y = ds.probe(6)
    np.testing.assert_array_equal(np.bincount(y), [4, 2])
    with pytest.raises(ValueError, match="size"):
        ds.probe(0)


# ---------------------------------------------------------------- BatchSampler


def epochs_of(sampler, n_epochs):
    k = sampler.batches_per_epoch
    return sampler.take(n_epochs * k).reshape(n_epochs, k, sampler.batch_size)


def test_shuffled_covers_each_index_once_and_reshuffles():
    y = np.arange(103) % 3
    s = BatchSampler(y, 10, "shuffled", seed=1)
    assert s.batches_per_epoch == 10
    ep = epochs_of(s, 3)
    for e in ep:
        flat = e.ravel()
        assert len(flat) == 100 and len(np.unique(flat)) == 100
        assert flat.min() >= 0 and flat.max() <= 102
    assert not np.array_equal(ep[0], ep[1])
    assert not np.array_equal(ep[1], ep[2])
    assert s.epoch == 2 and s.step == 30


def test_every_batch_has_batch_size_and_int64():
    s = BatchSampler(np.zeros(37), 8, seed=0)
    for _ in range(20):
        b = s.next()
        assert b.shape == (8,) and b.dtype == np.int64
        assert not b.flags.writeable
    assert s.take(11).shape == (11, 8)
    assert s.take(0).shape == (0, 8)


def test_same_seed_same_stream_next_equals_take():
    y = np.arange(50) % 5
    for order in BATCH_ORDERS:
        a = BatchSampler(y, 4, order, seed=7)
        b = BatchSampler(y, 4, order, seed=7)
        via_next = np.stack([a.next() for _ in range(40)])
        via_take = np.concatenate([b.take(3), b.take(25), b.take(12)])
        np.testing.assert_array_equal(via_next, via_take)
    c = BatchSampler(y, 4, "shuffled", seed=8)
    assert not np.array_equal(c.take(40), via_next)


def test_fixed_repeats_every_epoch():
    s = BatchSampler(np.arange(64), 16, "fixed", seed=2)
    ep = epochs_of(s, 3)
    np.testing.assert_array_equal(ep[0], ep[1])
    np.testing.assert_array_equal(ep[0], ep[2])
    assert not np.array_equal(ep[0].ravel(), np.arange(64))  # permuted
    np.testing.assert_array_equal(np.sort(ep[0].ravel()), np.arange(64))


def test_class_sorted_single_class_batches_in_class_order():
    y = rng(0).permutation(np.repeat([0, 1, 2], [25, 12, 7]))
    s = BatchSampler(y, 5, "class_sorted", seed=0)
    assert s.batches_per_epoch == 5 + 2 + 1
    ep = epochs_of(s, 2)
    for e in ep:
        labels = y[e]
        assert np.all(labels == labels[:, :1])  # one class per batch
        np.testing.assert_array_equal(labels[:, 0], [0] * 5 + [1] * 2 + [2])
        assert len(np.unique(e)) == 40
    assert not np.array_equal(ep[0], ep[1])  # reshuffled within classes


def test_class_sorted_skips_small_classes_and_errors():
    y = np.repeat([0, 1, 2], [25, 12, 7])
    s = BatchSampler(y, 8, "class_sorted")
    np.testing.assert_array_equal(y[s.take(4)[:, 0]], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="class_sorted"):
        BatchSampler(y, 26, "class_sorted")


@pytest.mark.parametrize(
    ("args", "word"),
    [
        ((np.arange(10), 0), "batch_size"),
        ((np.arange(10), 11), "batch_size"),
        ((np.arange(10), 2, "random"), "shuffled, fixed, class_sorted"),
        ((np.zeros((3, 2)), 2), "1-D"),
    ],
)
def test_sampler_errors(args, word):
    with pytest.raises(ValueError, match=word):
        BatchSampler(*args)


# ---------------------------------------------------------------- IDX / MNIST


def idx_bytes(arr, code=0x08, big_endian_dtype=">u1"):
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.asarray(arr).astype(big_endian_dtype).tobytes()


def write_mnist(folder, gz):
    """12 train / 5 test images: train image i is all i, test image j all 10*j; pixel 0 blank."""
    train = np.repeat(np.arange(12, dtype=np.uint8), 784).reshape(12, 28, 28)
    test = np.repeat(np.arange(5, dtype=np.uint8) * 10, 784).reshape(5, 28, 28)
    train[:, 0, 0] = 0
    test[:, 0, 0] = 0
    arrays = [train, np.arange(12, dtype=np.uint8) % 10, test, np.array([3, 1, 4, 1, 5], np.uint8)]
    for stem, arr in zip(MNIST_FILES, arrays, strict=True):
        data = idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_idx(tmp_path, gz):
    write_mnist(tmp_path, gz)
    ds = load_dataset("mnist", data_dir=tmp_path, test_fraction=0.5)  # fraction ignored
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (5, 784)
    np.testing.assert_array_equal(ds.y_train, np.arange(12) % 10)
    np.testing.assert_array_equal(ds.y_test, [3, 1, 4, 1, 5])
    assert ds.n_classes == 10 and ds.n_features == 784
    assert "12 train / 5 test 28x28" in ds.description
    std = np.arange(12).std()  # 3.452...
    np.testing.assert_allclose(ds.x_train[:, 1], (np.arange(12) - 5.5) / std, atol=1e-12)
    np.testing.assert_allclose(ds.x_test[:, 500], (np.arange(5) * 10 - 5.5) / std, atol=1e-12)
    assert np.all(ds.x_train[:, 0] == 0.0) and np.all(ds.x_test[:, 0] == 0.0)


def test_load_mnist_mixed_plain_and_gz(tmp_path):
    write_mnist(tmp_path, gz=False)
    stem = MNIST_FILES[2]
    (tmp_path / f"{stem}.gz").write_bytes(gzip.compress((tmp_path / stem).read_bytes()))
    (tmp_path / stem).unlink()
    assert load_dataset("mnist", data_dir=tmp_path).x_test.shape == (5, 784)


def test_read_idx_other_types(tmp_path):
    floats = np.array([[1.5, -2.25, 3.0], [0.0, 1e-3, -7.0]])
    (tmp_path / "f").write_bytes(idx_bytes(floats, 0x0D, ">f4"))
    out = read_idx(tmp_path / "f")
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, floats.astype(np.float32))
    shorts = np.array([-300, 0, 300, 32767], dtype=np.int16)
    (tmp_path / "s.gz").write_bytes(gzip.compress(idx_bytes(shorts, 0x0B, ">i2")))
    np.testing.assert_array_equal(read_idx(tmp_path / "s.gz"), shorts)


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(b"\x01\x00" + idx_bytes(np.zeros((2, 2), np.uint8))[2:])
    with pytest.raises(ValueError, match="bad-idx.*not an IDX file"):
        read_idx(path)


def test_read_idx_unknown_type(tmp_path):
    path = tmp_path / "odd"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="type code 0x07"):
        read_idx(path)


def test_read_idx_truncated_and_oversized(tmp_path):
    data = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    (tmp_path / "short").write_bytes(data[:-5])
    with pytest.raises(ValueError, match="short.*truncated IDX file"):
        read_idx(tmp_path / "short")
    (tmp_path / "head").write_bytes(data[:9])
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(tmp_path / "head")
    (tmp_path / "long").write_bytes(data + b"\x00")
    with pytest.raises(ValueError, match="long.*size mismatch"):
        read_idx(tmp_path / "long")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(data)[:-6])
    with pytest.raises(ValueError, match="cut.gz.*gzip"):
        read_idx(tmp_path / "cut.gz")


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


def test_mnist_missing_file_and_folder(tmp_path):
    write_mnist(tmp_path, gz=True)
    (tmp_path / f"{MNIST_FILES[3]}.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="folder not found.*train-images-idx3-ubyte"):
        load_dataset("mnist", data_dir=tmp_path / "missing")


def test_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path, gz=False)
    (tmp_path / MNIST_FILES[1]).write_bytes(idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(ValueError, match="12 images but .* 11 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_cached_until_files_change(tmp_path):
    write_mnist(tmp_path, gz=False)
    a = load_dataset("mnist", data_dir=tmp_path)
    assert load_dataset("mnist", data_dir=str(tmp_path)) is a
    labels = np.array([2, 2, 2, 2, 2, 2, 2], np.uint8)
    (tmp_path / MNIST_FILES[2]).write_bytes(idx_bytes(np.zeros((7, 28, 28), np.uint8)))
    (tmp_path / MNIST_FILES[3]).write_bytes(idx_bytes(labels))
    b = load_dataset("mnist", data_dir=tmp_path)
    assert b is not a
    assert b.x_test.shape == (7, 784)
    np.testing.assert_array_equal(b.y_test, labels)


def test_digits_read_without_importing_sklearn_and_equal_to_load_digits():
    from sklearn.datasets import load_digits

    x, y = data._digits_raw()
    bunch = load_digits()
    np.testing.assert_array_equal(x, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)
    code = "import sys; from bnviz import data; data._digits_raw(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
