"""Synthetic X-rays: deterministic, several images per patient, learnable but not from brightness."""

from __future__ import annotations

import numpy as np
import pytest

from chexvision.data import BatchLoader, Standardizer, open_dataset
from chexvision.data.synthetic import make_synthetic


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann–Whitney ROC-AUC with average ranks for ties (an independent 10-line reference)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@pytest.fixture(scope="module")
def ds():
    return open_dataset({"dataset": "synthetic"}, progress=False)  # the quick start's 2,000 images


def test_deterministic_and_prefix_stable():
    a = make_synthetic(120, 32, seed=3)
    b = make_synthetic(120, 32, seed=3)
    c = make_synthetic(60, 32, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.array_equal(a[0][:55], c[0][:55])  # a larger set extends a smaller one
    assert not np.array_equal(a[0], make_synthetic(120, 32, seed=4)[0])


def test_shape_labels_patients(ds):
    assert ds.images.shape == (2000, 64, 64) and ds.images.dtype == np.uint8
    assert 0.35 < ds.labels.mean() < 0.6
    _, per_patient = np.unique(ds.patients, return_counts=True)
    assert per_patient.max() > 1 and 2.5 < per_patient.mean() < 4.5
    assert ds.images.std() > 30  # real contrast, not a flat picture
    groups = [set(ds.patients[ds.splits == s]) for s in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


def test_not_separable_by_global_statistics(ds):
    x = ds.images.reshape(len(ds), -1).astype(np.float64)
    for name, stat in (("mean", x.mean(1)), ("std", x.std(1)), ("max", x.max(1))):
        a = auc(stat, ds.labels)
        assert 0.3 < a < 0.7, f"{name} brightness alone gives AUC {a:.3f}"


def test_linear_probe_learns_it(ds):
    """Ridge regression on standardised pixels (closed form, in the dual: n < pixels) finds the
    signal on the patient-disjoint test split, but does not score a trivial 1.0."""
    st = Standardizer.fit(ds.images, ds.indices("train"))
    tr, te = ds.indices("train"), ds.indices("test")
    x = st.transform(ds.images[tr], dtype=np.float64).reshape(len(tr), -1)  # (n, D)
    y = ds.labels[tr] - ds.labels[tr].mean()
    alpha = np.linalg.solve(x @ x.T + 1e3 * np.eye(len(tr)), y)  # (n,): w = Xᵀ (X Xᵀ + λI)⁻¹ y
    w = x.T @ alpha
    xt = st.transform(ds.images[te], dtype=np.float64).reshape(len(te), -1)
    a = auc(xt @ w, ds.labels[te])
    assert 0.9 < a < 0.995, a


@pytest.mark.slow
def test_numpy_mlp_reaches_auc_09(ds):
    """The quick start's claim: an MLP trained a few epochs on ~2,000 images reaches test AUC ≥ 0.9."""
    import numpy_nn
    from numpy_nn.models import MLP

    numpy_nn.manual_seed(0)
    st = Standardizer.fit(ds.images, ds.indices("train"))
    net = MLP(4096, (256, 64), 1, dropout=0.2)
    params = list(net.parameters())
    m = [np.zeros_like(p.data) for p in params]
    v = [np.zeros_like(p.data) for p in params]
    loader = BatchLoader(ds, ds.indices("train"), 64, st, shuffle=True)
    t = 0
    for epoch in range(6):
        loader.set_epoch(epoch)
        net.train()
        for x, y in loader:
            z = net(x)[:, 0]
            g = ((0.5 * (1 + np.tanh(z / 2)) - y) / len(y)).astype(np.float32)[:, None]  # d BCE / d logit
            net.zero_grad()
            net.backward(g)
            t += 1
            for p, mi, vi in zip(params, m, v):  # Adam, inline: the optimizers live elsewhere
                mi *= 0.9
                mi += 0.1 * p.grad
                vi *= 0.999
                vi += 0.001 * p.grad**2
                p.data -= 1e-3 * (mi / (1 - 0.9**t)) / (np.sqrt(vi / (1 - 0.999**t)) + 1e-8)
    net.eval()
    te = ds.indices("test")
    scores = np.concatenate([net(x)[:, 0] for x, _ in BatchLoader(ds, te, 256, st, shuffle=False)])
    assert auc(scores, ds.labels[te]) >= 0.9
