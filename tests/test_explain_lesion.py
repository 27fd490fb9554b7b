"""The synthetic generator's lesion masks, and the mass-inside-the-lesion measures built on them."""

from __future__ import annotations

import numpy as np
import pytest

from chexvision.data import synthetic
from chexvision.data.synthetic import make_synthetic
from chexvision.explain_measure import mass_inside, peak_inside


def test_asking_for_masks_changes_no_image():
    plain = make_synthetic(150, 32, seed=5)
    with_masks = make_synthetic(150, 32, seed=5, return_masks=True)
    assert len(plain) == 4 and len(with_masks) == 5
    for a, b in zip(plain, with_masks):
        np.testing.assert_array_equal(a, b)
    images, labels, _, _, masks = with_masks
    assert masks.shape == images.shape and masks.dtype == bool
    assert not masks[labels == 0].any()  # a normal image has no lesion
    assert masks[labels == 1].reshape(-1, 32 * 32).any(axis=1).all()  # every abnormal one has one


@pytest.mark.parametrize("finding", ["opacity", "effusion"])
def test_the_lesion_is_exactly_what_the_finding_added(finding):
    # Findings are drawn last, so the same generator state renders the same patient without them.
    a = synthetic._patient_anatomy(np.random.default_rng(3))
    with_it, lesion = synthetic._render(np.random.default_rng(11), a, 48, [finding])
    without, none = synthetic._render(np.random.default_rng(11), a, 48, [])
    assert not none.any()
    np.testing.assert_allclose(with_it - without, lesion, atol=1e-6)
    assert lesion.max() > 0.1


def test_cardiomegaly_lesion_is_the_wider_hearts_extra():
    a = synthetic._patient_anatomy(np.random.default_rng(3))
    _, lesion = synthetic._render(np.random.default_rng(11), a, 48, ["cardiomegaly"])
    assert lesion.min() >= -1e-7 and (lesion > synthetic.LESION_MIN).sum() > 10


def test_mass_inside_and_peak_inside_on_hand_made_maps():
    masks = np.zeros((3, 2, 2), bool)
    masks[:, 0, 0] = True
    maps = np.array([[[3.0, 1.0], [0.0, 0.0]],      # 3/4 inside, peak inside
                     [[-1.0, 2.0], [1.0, 0.0]],     # |m|: 1/4 inside, peak outside
                     [[0.0, 0.0], [0.0, 0.0]]])     # no mass: undefined, NaN
    share = mass_inside(maps, masks)
    np.testing.assert_allclose(share[:2], [0.75, 0.25])
    assert np.isnan(share[2])
    np.testing.assert_array_equal(peak_inside(maps[:2], masks[:2]), [True, False])
