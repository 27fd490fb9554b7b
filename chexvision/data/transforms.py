"""Per-pixel standardisation (statistics from the training split only) and train-time augmentation.

Both tracks receive the same standardised float arrays from ``BatchLoader``, so neither track
has its own preprocessing to drift apart.
"""

from __future__ import annotations

import numpy as np


class Standardizer:
    """x' = (x − μ) / σ per pixel, μ and σ measured on the training images only.

    Using validation or test images for μ, σ would leak their statistics into training; ``fit``
    is therefore given the training indices explicitly.

    Args:
        mean: (H, W) float32, per-pixel mean in gray levels (0–255).
        std: (H, W) float32, per-pixel standard deviation, floored at ``min_std``.

    Shape: ``transform``: (N, H, W) uint8 or float -> (N, H, W) of ``dtype``.

    Example:
        >>> st = Standardizer.fit(ds.images, ds.indices("train"))
        >>> x = st.transform(ds.images[:8])          # (8, 64, 64) float32
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        mean = np.asarray(mean, dtype=np.float32)
        std = np.asarray(std, dtype=np.float32)
        if mean.ndim != 2 or mean.shape != std.shape:
            raise ValueError(f"mean and std must both be (H, W); got {mean.shape} and {std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(std > 0)):
            raise ValueError("standardisation statistics must be finite with std > 0")
        self.mean, self.std = mean, std
        self._inv_std = (1.0 / std).astype(np.float32)

    @classmethod
    def fit(cls, images: np.ndarray, idx: np.ndarray, min_std: float = 1.0, block: int = 4096) -> Standardizer:
        """Per-pixel mean and std over ``images[idx]`` (N, H, W), read in blocks (a memmap is
        never loaded whole).

        Sums of x and x² are kept in float64: with 8-bit pixels and N ≤ 10⁷ they are exact, so
        var = E[x²] − E[x]² loses nothing to cancellation that matters. ``min_std`` (one gray
        level by default) floors σ where the training images barely vary (e.g. a black corner),
        so those pixels are not blown up into noise.
        """
        idx = np.sort(np.asarray(idx, dtype=np.int64))  # sorted: sequential reads from a memmap
        if idx.size == 0:
            raise ValueError("cannot fit standardisation statistics on zero images")
        s1 = np.zeros(images.shape[1:], np.float64)
        s2 = np.zeros(images.shape[1:], np.float64)
        for a in range(0, idx.size, block):
            x = np.asarray(images[idx[a:a + block]], dtype=np.float64)  # (B, H, W)
            s1 += x.sum(axis=0)
            s2 += np.einsum("bhw,bhw->hw", x, x)
        mean = s1 / idx.size
        var = np.maximum(s2 / idx.size - mean**2, 0.0)
        return cls(mean.astype(np.float32), np.maximum(np.sqrt(var), min_std).astype(np.float32))

    def transform(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        """(N, H, W) uint8 or float pixels -> (N, H, W) standardised, a new array of ``dtype``."""
        dtype = np.dtype(dtype)
        if x.shape[-2:] != self.mean.shape:
            raise ValueError(f"images of size {x.shape[-2:]} but statistics of size {self.mean.shape}")
        mean, inv_std = self.mean.astype(dtype, copy=False), self._inv_std.astype(dtype, copy=False)
        out = np.empty(x.shape, dtype=dtype)
        # (x − μ) · (1/σ) in slabs of 32 images (512 KB of float32 at 64×64): the second pass then
        # reads what the first just wrote from cache instead of from memory.
        for s in range(0, len(x), 32):
            o = np.subtract(x[s : s + 32], mean, out=out[s : s + 32], dtype=dtype)
            o *= inv_std
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """{"mean", "std"}: (H, W) float32 each, for a checkpoint (``.npz``, no pickle)."""
        return {"mean": self.mean.copy(), "std": self.std.copy()}

    @classmethod
    def from_arrays(cls, d: dict) -> Standardizer:
        try:
            return cls(d["mean"], d["std"])
        except KeyError as e:
            raise ValueError(f"standardisation arrays lack {e.args[0]!r} (have {sorted(d)})") from None


class Augmenter:
    """Random, seeded changes to training images; never applied in evaluation.

    Works on pixel values (floats on the 0–255 scale, *before* standardisation), so a flip shows
    the model a mirrored chest standardised as usual. Per image, in this order:

    1. horizontal flip with probability 0.5 (if ``flip``);
    2. contrast: x ← m + c·(x − m), m the image's mean, c ~ U(1 − contrast, 1 + contrast);
    3. brightness: x ← x + 255·b, b ~ U(−brightness, brightness);
    4. Gaussian noise: x ← x + 255·noise_std·ε, ε ~ N(0, 1) per pixel;
    5. clip to [0, 255] (an 8-bit detector saturates).

    Amounts are fractions of the full 0–255 range. The draws come from the ``rng`` passed to
    ``apply``, so (seed, epoch, batch) fixes them (see ``BatchLoader``).

    Args:
        flip: mirror left-right half the images.
        noise_std: noise standard deviation (default 0.02 ≈ 5 gray levels).
        brightness: largest shift (default 0.1 ≈ 25 gray levels).
        contrast: largest relative contrast change (default 0.1).
    """

    def __init__(self, flip: bool = True, noise_std: float = 0.02, brightness: float = 0.1, contrast: float = 0.1):
        for name, v in (("noise_std", noise_std), ("brightness", brightness), ("contrast", contrast)):
            if not (0.0 <= v < 1.0):
                raise ValueError(f"Augmenter {name} must be in [0, 1), got {v}")
        self.flip, self.noise_std, self.brightness, self.contrast = bool(flip), noise_std, brightness, contrast

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, H, W) float pixels -> a new augmented (N, H, W) array of the same dtype."""
        x = np.array(x, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
        n = x.shape[0]
        if self.flip:
            flip = rng.random(n) < 0.5
            x[flip] = x[flip, :, ::-1]
        if self.contrast > 0:
            c = rng.uniform(1 - self.contrast, 1 + self.contrast, n).astype(x.dtype)[:, None, None]
            m = x.mean(axis=(1, 2), keepdims=True)
            x -= m
            x *= c
            x += m
        if self.brightness > 0:
            x += (255 * rng.uniform(-self.brightness, self.brightness, n)).astype(x.dtype)[:, None, None]
        if self.noise_std > 0:
            eps = rng.standard_normal(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64)
            eps *= 255 * self.noise_std
            x += eps
        np.clip(x, 0, 255, out=x)
        return x

    def __repr__(self) -> str:
        return (f"Augmenter(flip={self.flip}, noise_std={self.noise_std}, brightness={self.brightness}, "
                f"contrast={self.contrast})")
