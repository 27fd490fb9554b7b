"""Mini-batches straight from the cache: gather uint8 rows, augment (train only), standardise.

Twin: ``torch.utils.data.DataLoader`` with a ``RandomSampler`` seeded per epoch. Both tracks
iterate the same ``BatchLoader``, so they see the same batches in the same order.
"""

from __future__ import annotations

import math

import numpy as np

from .transforms import Augmenter, Standardizer

LAYOUTS = ("flat", "nchw")


class BatchLoader:
    """Iterate ``(x, y)`` batches over the rows ``idx`` of a dataset.

    Order and augmentation are functions of (seed, epoch) alone: the permutation is drawn from
    ``default_rng([seed, epoch])`` and batch b's augmentation from
    ``default_rng([seed, epoch, b])``, so a run resumed at epoch e (``set_epoch(e)``) sees exactly
    the batches the uninterrupted run saw, and so does a run that skips the first b batches.

    Args:
        ds: anything with ``.images`` (N, H, W) uint8 (a memmap is fine) and ``.labels`` (N,);
            a ``.targets`` (N, K) with K > 1 (``--task findings``) is served instead of the labels.
        idx: the dataset rows to serve (e.g. ``ds.indices("train")``).
        batch_size: rows per batch.
        standardizer: a fitted ``Standardizer``.
        shuffle: a new permutation every epoch (training) or ``idx`` in order (evaluation).
        augmenter: an ``Augmenter`` for training; None (default) in evaluation.
        seed: seeds order and augmentation.
        layout: "flat" -> x (N, H·W) for an MLP; "nchw" -> x (N, 1, H, W) for a CNN.
        dtype: dtype of x and y (float32 for training, float64 for checks).
        drop_last: drop a last, smaller batch.

    Shape: x (B, H·W) or (B, 1, H, W); y (B,) with values 0/1, or (B, K) with 1 / 0 / -1 (masked)
    for K outputs; both of ``dtype``.
    """

    def __init__(
        self,
        ds,
        idx,
        batch_size: int,
        standardizer: Standardizer,
        shuffle: bool,
        augmenter: Augmenter | None = None,
        seed: int = 0,
        layout: str = "flat",
        dtype=np.float32,
        drop_last: bool = False,
    ):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        targets = getattr(ds, "targets", None)
        multi = targets is not None and np.ndim(targets) == 2 and np.shape(targets)[1] > 1
        self.images, self.labels = ds.images, np.asarray(targets if multi else ds.labels)
        self.idx = np.asarray(idx, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.standardizer, self.augmenter = standardizer, augmenter
        self.shuffle, self.seed, self.layout = bool(shuffle), int(seed), layout
        self.dtype = np.dtype(dtype)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation and augmentation draws of ``epoch`` (as DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.idx)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self) -> np.ndarray:
        """The rows of this epoch, in the order they are served."""
        if not self.shuffle:
            return self.idx
        return self.idx[np.random.default_rng([self.seed, self.epoch]).permutation(len(self.idx))]

    def __iter__(self):
        order = self.order()
        h, w = self.images.shape[1:]
        for b in range(len(self)):
            rows = order[b * self.batch_size:(b + 1) * self.batch_size]
            xb = np.take(self.images, rows, axis=0)  # (B, H, W) uint8, gathered from the memmap
            if self.augmenter is not None:
                rng = np.random.default_rng([self.seed, self.epoch, b])
                xb = self.augmenter.apply(xb.astype(np.float32), rng)
            x = self.standardizer.transform(xb, dtype=self.dtype)  # (B, H, W)
            x = x.reshape(len(rows), h * w) if self.layout == "flat" else x.reshape(len(rows), 1, h, w)
            yield x, self.labels[rows].astype(self.dtype)

    def __repr__(self) -> str:
        return (f"BatchLoader(n={len(self.idx)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"augment={self.augmenter is not None}, layout={self.layout!r}, dtype={self.dtype})")
