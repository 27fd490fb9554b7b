"""Standardizer, Augmenter and BatchLoader: training statistics only, seeded, exact batches."""

from __future__ import annotations

import numpy as np
import pytest

from chexvision.data import Augmenter, BatchLoader, Standardizer, open_dataset
from chexvision.errors import UserError


@pytest.fixture(scope="module")
def ds():
    return open_dataset({"dataset": "synthetic", "synthetic_size": 300, "image_size": 16}, progress=False)


@pytest.fixture(scope="module")
def st(ds):
    return Standardizer.fit(ds.images, ds.indices("train"))


def test_standardizer_uses_only_the_given_rows(ds, st):
    tr = ds.images[ds.indices("train")].astype(np.float64)
    assert st.mean.dtype == np.float32 and st.mean.shape == (16, 16)
    np.testing.assert_allclose(st.mean, tr.mean(axis=0), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(st.std, np.maximum(tr.std(axis=0), 1.0), rtol=1e-5, atol=1e-4)
    other = Standardizer.fit(ds.images, ds.indices("test"))
    assert not np.allclose(other.mean, st.mean)  # test rows would give other statistics


def test_standardizer_blocks_and_floor():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 4, 4), dtype=np.uint8)
    x[:, 0, 0] = 7  # a constant pixel: std 0, floored
    a = Standardizer.fit(x, np.arange(50), block=7)
    b = Standardizer.fit(x, np.arange(50), block=4096)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-6)
    assert a.std[0, 0] == 1.0 and Standardizer.fit(x, np.arange(50), min_std=2.5).std[0, 0] == 2.5
    z = a.transform(x)
    assert z.dtype == np.float32 and z[:, 0, 0].max() == 0.0
    np.testing.assert_allclose(z[:, 1:, 1:].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, 1:, 1:].std(axis=0), 1, atol=1e-4)
    assert a.transform(x, dtype=np.float64).dtype == np.float64


def test_standardizer_round_trip(st):
    d = st.to_arrays()
    assert set(d) == {"mean", "std"} and all(v.dtype == np.float32 for v in d.values())
    back = Standardizer.from_arrays(d)
    assert np.array_equal(back.mean, st.mean) and np.array_equal(back.std, st.std)
    with pytest.raises(ValueError, match="lack 'std'"):
        Standardizer.from_arrays({"mean": d["mean"]})


def test_augmenter_is_seeded_and_changes_pixels():
    x = np.random.default_rng(0).uniform(30, 220, (8, 16, 16)).astype(np.float32)
    aug = Augmenter()
    a, b = aug.apply(x, np.random.default_rng(1)), aug.apply(x, np.random.default_rng(1))
    assert np.array_equal(a, b) and a.dtype == np.float32 and not np.array_equal(a, x)
    assert not np.array_equal(a, aug.apply(x, np.random.default_rng(2)))
    assert a.min() >= 0 and a.max() <= 255
    assert np.array_equal(x, np.random.default_rng(0).uniform(30, 220, (8, 16, 16)).astype(np.float32))  # input kept


def test_augmenter_flip_only_mirrors_half():
    x = np.random.default_rng(0).uniform(0, 255, (400, 4, 6)).astype(np.float32)
    out = Augmenter(flip=True, noise_std=0, brightness=0, contrast=0).apply(x, np.random.default_rng(0))
    same = np.all(out == x, axis=(1, 2))
    mirrored = np.all(out == x[:, :, ::-1], axis=(1, 2))
    assert np.all(same ^ mirrored) and 150 < mirrored.sum() < 250


def test_augmenter_off_is_identity():
    x = np.random.default_rng(0).uniform(0, 255, (4, 5, 5)).astype(np.float32)
    assert np.array_equal(Augmenter(False, 0, 0, 0).apply(x, np.random.default_rng(0)), x)


def test_loader_shapes_dtypes_and_coverage(ds, st):
    idx = ds.indices("train")
    for layout, shape in (("flat", (32, 256)), ("nchw", (32, 1, 16, 16))):
        for dtype in (np.float32, np.float64):
            bl = BatchLoader(ds, idx, 32, st, shuffle=True, layout=layout, dtype=dtype)
            batches = list(bl)
            assert len(batches) == len(bl) == -(-len(idx) // 32)
            x, y = batches[0]
            assert x.shape == shape and x.dtype == dtype and y.shape == (32,) and y.dtype == dtype
            ys = np.concatenate([b[1] for b in batches])
            assert sorted(ys) == sorted(ds.labels[idx].astype(dtype))


def test_loader_eval_order_and_values(ds, st):
    idx = ds.indices("val")
    bl = BatchLoader(ds, idx, 7, st, shuffle=False)
    x = np.concatenate([b[0] for b in bl])
    expect = (ds.images[idx].astype(np.float64) - st.mean) / st.std
    np.testing.assert_allclose(x, expect.reshape(len(idx), -1), rtol=1e-5, atol=1e-5)
    assert np.array_equal(np.concatenate([b[1] for b in bl]), ds.labels[idx])


def test_loader_reproducible_per_seed_and_epoch(ds, st):
    idx = ds.indices("train")

    def batches(seed, epoch):
        bl = BatchLoader(ds, idx, 50, st, shuffle=True, augmenter=Augmenter(), seed=seed)
        bl.set_epoch(epoch)
        return [x for x, _ in bl]

    a, b = batches(0, 3), batches(0, 3)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[0], batches(0, 4)[0]) and not np.array_equal(a[0], batches(1, 3)[0])


def test_loader_drop_last_and_bad_args(ds, st):
    idx = ds.indices("train")
    bl = BatchLoader(ds, idx, 64, st, shuffle=False, drop_last=True)
    assert len(bl) == len(idx) // 64 and all(x.shape[0] == 64 for x, _ in bl)
    with pytest.raises(ValueError, match="layout"):
        BatchLoader(ds, idx, 8, st, shuffle=False, layout="nhwc")


def test_indices_and_split_errors(ds):
    tr, va, te = (ds.indices(s) for s in ("train", "val", "test"))
    assert tr.dtype == np.int64 and len(tr) + len(va) + len(te) == len(ds)
    with pytest.raises(ValueError):
        ds.indices("training")
    empty = type(ds)(ds.images, ds.labels, ds.patients, np.full(len(ds), "train"), ds.paths, name="x")
    with pytest.raises(UserError, match="the val split of the x dataset is empty"):
        empty.indices("val")
