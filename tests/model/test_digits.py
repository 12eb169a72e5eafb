import numpy as np
import pytest

from nmaccel.model.digits import TEST_IMAGES, load_digits_split


def test_split_is_fixed_stratified_and_disjoint():
    s = load_digits_split(0)
    assert s.test_images.shape == (TEST_IMAGES, 8, 8) and s.train_images.shape == (1437, 8, 8)
    assert s.test_images.min() >= 0 and s.test_images.max() <= 16
    assert set(np.bincount(s.test_labels)) <= {35, 36, 37}
    again = load_digits_split(0)
    assert np.array_equal(s.test_labels, again.test_labels)
    xtr, ytr, xte, yte = s.tensors()
    assert xte.shape == (TEST_IMAGES, 1, 8, 8) and float(xte.max()) <= 1.0


def test_bad_seed():
    with pytest.raises(ValueError, match="seed must be a non-negative integer, not -1"):
        load_digits_split(-1)
