"""Patient-level splits and stratified subsets, seeded and deterministic.

The rule that makes test numbers honest: **no patient has images in two splits**. Every split
here moves whole patients. Within that constraint the carved part is stratified: patients are
grouped by the share of their images that are abnormal (0, ¼, ½, ¾, 1 after rounding), and each
group gives up the same fraction of its images, so the carved split's positive rate follows the
pool's.

``assign_splits`` is what datasets call:

* with an official test set (NIH ``test_list.txt``, CheXpert ``valid.csv``): test is exactly
  that set; validation is carved from the rest by patient (``val_fraction`` of its images);
* without one: test is carved from everything by patient (``test_fraction``), then validation
  from the rest (``val_fraction`` of what is left).
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def _patient_table(labels: np.ndarray, patients: np.ndarray, rows: np.ndarray):
    """Per patient among ``rows``: (unique ids, image counts, abnormal counts, inverse index)."""
    uniq, inv = np.unique(patients[rows], return_inverse=True)
    n_img = np.bincount(inv, minlength=len(uniq))
    n_pos = np.bincount(inv, weights=labels[rows], minlength=len(uniq)).astype(np.int64)
    return uniq, n_img, n_pos, inv


def carve_by_patient(
    rows: np.ndarray, labels: np.ndarray, patients: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into (kept, carved) by patient, ``fraction`` of the images carved.

    Patients are shuffled by ``rng`` within each stratum (rounded abnormal share), then taken in
    that order while taking one brings the carved image count closer to its target
    (``fraction`` × stratum images, plus what earlier strata fell short by). A patient too large for the remaining room is passed over
    and a later, smaller one may still fit, so sizes land close to the target.

    Returns:
        kept, carved: sorted int64 row indices; together they are ``rows``; no patient in both.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0 or fraction <= 0:
        return np.sort(rows), np.empty(0, np.int64)
    uniq, n_img, n_pos, inv = _patient_table(labels, patients, rows)
    stratum = np.rint(4 * n_pos / n_img).astype(np.int64)  # 0..4
    take = np.zeros(len(uniq), dtype=bool)
    carry = 0.0  # what earlier strata fell short of (or overshot) their target, so small pools round well
    for s in np.unique(stratum):
        members = np.flatnonzero(stratum == s)
        members = members[rng.permutation(len(members))]
        target = fraction * n_img[members].sum() + carry
        got = 0
        for p in members:
            if abs(got + n_img[p] - target) < abs(got - target):
                take[p] = True
                got += n_img[p]
        carry = target - got
    carved = take[inv]
    return np.sort(rows[~carved]), np.sort(rows[carved])


def assign_splits(
    labels: np.ndarray,
    patients: np.ndarray,
    test_mask: np.ndarray | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> np.ndarray:
    """Label every row "train", "val" or "test", moving whole patients.

    Args:
        labels: (N,) 0/1.
        patients: (N,) patient ids.
        test_mask: (N,) bool, the official test set, or None to carve one. Its patients must
            not also own non-test rows (the dataset loaders ensure this).
        val_fraction: share of the non-test images that go to validation.
        test_fraction: share of all images carved as test when there is no official test set.
        seed: the same seed gives the same split.

    Returns:
        (N,) array of str.
    """
    labels = np.asarray(labels, dtype=np.int64)
    patients = np.asarray(patients).astype(str)
    n = len(labels)
    splits = np.full(n, "train", dtype="<U5")
    everything = np.arange(n, dtype=np.int64)
    if test_mask is None:
        pool, test = carve_by_patient(everything, labels, patients, test_fraction, np.random.default_rng([seed, 1]))
    else:
        test_mask = np.asarray(test_mask, dtype=bool)
        pool, test = everything[~test_mask], everything[test_mask]
    train, val = carve_by_patient(pool, labels, patients, val_fraction, np.random.default_rng([seed, 2]))
    splits[test] = "test"
    splits[val] = "val"
    return splits


def stratified_subset(strata: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` row indices drawn without replacement, each stratum keeping its share.

    Shares are apportioned by largest remainder (so they sum to exactly ``k``); rows keep their
    original order in the result.

    Args:
        strata: (N,) hashable stratum key per row (e.g. "test/1").
        k: how many rows to keep (all of them if k >= N).
    """
    strata = np.asarray(strata)
    n = len(strata)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    keys, inv = np.unique(strata, return_inverse=True)
    sizes = np.bincount(inv, minlength=len(keys))
    exact = sizes * (k / n)
    quota = np.floor(exact).astype(np.int64)
    short = k - quota.sum()
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[:short]] += 1
    chosen = []
    for j in range(len(keys)):
        members = np.flatnonzero(inv == j)
        chosen.append(rng.choice(members, size=quota[j], replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)
