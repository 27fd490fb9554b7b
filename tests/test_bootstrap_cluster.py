"""The cluster (patient) bootstrap of chexvision.bootstrap against a brute-force reference."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from chexvision import bootstrap as B
from chexvision.metrics import roc_auc_score


def _brute_force_auc(y, s, cluster, draw) -> float:
    """Build the resample explicitly (every image of every drawn cluster, once per draw) and score it."""
    idx = np.concatenate([np.flatnonzero(cluster == c) for c in draw])
    yy, ss = y[idx], s[idx]
    if yy.min() == yy.max():
        return np.nan
    return float(roc_auc_score(yy, ss))


def test_cluster_resample_aucs_equal_brute_force_on_every_draw_of_a_tiny_case():
    # 3 patients with 2, 3 and 2 images, tied scores across patients, both classes within a patient
    y = np.array([0, 1, 1, 0, 1, 0, 0])  # patient c has normal images only
    s = np.array([0.2, 0.7, 0.7, 0.4, 0.9, 0.2, 0.5])
    patients = np.array(["b", "b", "a", "a", "a", "c", "c"])  # ids numbered in sorted order: a=0, b=1, c=2
    _, cluster = np.unique(patients, return_inverse=True)
    _, group = np.unique(s, return_inverse=True)
    draws = np.array(list(itertools.product(range(3), repeat=3)))  # all 27 equally likely draws
    got = B._cluster_resample_aucs(y, group, int(group.max()) + 1, cluster, 3, draws)
    want = np.array([_brute_force_auc(y, s, cluster, d) for d in draws])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15, equal_nan=True)
    assert np.isnan(got).sum() == np.isnan(want).sum() > 0  # (c, c, c) has one class


def test_cluster_bootstrap_samples_follow_the_seeded_draws():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)
    y[:2] = (0, 1)
    s = rng.random(40).round(1)
    patients = rng.integers(0, 12, 40).astype(str)
    got = B.bootstrap_auc_samples(y, s, n_boot=60, seed=5, groups=patients)
    ids, cluster = np.unique(patients, return_inverse=True)
    draws = np.random.default_rng(5).integers(0, len(ids), size=(60, len(ids)))
    want = np.array([_brute_force_auc(y, s, cluster, d) for d in draws])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15, equal_nan=True)


def test_one_image_per_patient_gives_exactly_the_image_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s = rng.random(50)
    patients = np.array([f"p{i:03d}" for i in range(50)])  # sorted like the images
    np.testing.assert_array_equal(B.bootstrap_auc_samples(y, s, n_boot=80, seed=1, groups=patients),
                                  B.bootstrap_auc_samples(y, s, n_boot=80, seed=1))


def test_cluster_interval_is_wider_when_a_patients_images_agree():
    # 40 patients, 10 near-identical images each: 400 images but only 40 independent units
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 2, 40)
    base = lab * 0.6 + rng.normal(0, 0.5, 40)
    y = np.repeat(lab, 10)
    s = np.repeat(base, 10) + rng.normal(0, 0.01, 400)
    patients = np.repeat(np.arange(40), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lo_i, hi_i = B.bootstrap_auc_ci(y, s, n_boot=400, seed=0)
        lo_c, hi_c = B.bootstrap_auc_ci(y, s, n_boot=400, seed=0, groups=patients)
    assert hi_c - lo_c > 2 * (hi_i - lo_i)


def test_groups_must_match_the_scores():
    with pytest.raises(ValueError, match="one id per score"):
        B.bootstrap_auc_samples([0, 1, 1], [0.1, 0.2, 0.3], n_boot=5, groups=["a", "b"])
