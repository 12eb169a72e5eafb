"""scikit-learn's bundled 8×8 handwritten digits: one fixed train/test split for every workload.

The split is stratified, 360 test images (20 %) and 1437 training images, drawn with
``seed`` (default 0), so the conv nets, the digits Transformer and the reports all evaluate
on the same images. Pixels are the dataset's integers 0..16.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

__all__ = ["DigitsSplit", "load_digits_split", "TEST_IMAGES"]

#: Number of test images in the split.
TEST_IMAGES = 360


@dataclass(frozen=True)
class DigitsSplit:
    """Images as ``int64`` arrays ``(N, 8, 8)`` in 0..16 and labels ``(N,)`` in 0..9."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def tensors(self, scale: float = 1.0 / 16.0):
        """``(x_train, y_train, x_test, y_test)`` as torch tensors; images float32
        ``(N, 1, 8, 8)`` multiplied by ``scale`` (default: pixels in [0, 1])."""
        def img(a):
            return torch.from_numpy(a.astype(np.float32) * scale).unsqueeze(1)
        # copies: the split's arrays are read-only (shared by the lru_cache)
        return (img(self.train_images), torch.tensor(self.train_labels),
                img(self.test_images), torch.tensor(self.test_labels))


@lru_cache(maxsize=4)
def load_digits_split(seed: int = 0) -> DigitsSplit:
    """The stratified digits split drawn with ``seed`` (cached)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    ds = load_digits()
    images = ds.images.astype(np.int64)
    labels = ds.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(images, labels, test_size=TEST_IMAGES,
                                          random_state=seed, stratify=labels)
    for a in (xtr, xte, ytr, yte):
        a.setflags(write=False)
    return DigitsSplit(xtr, ytr, xte, yte)
