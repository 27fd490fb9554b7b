"""Padding of the last two axes with torch's modes, and the adjoint of each (its backward).

Twin: ``torch.nn.functional.pad`` on 4-D input with ``mode`` "constant" (zeros), "reflect",
"replicate" or "circular", as ``torch.nn.Conv2d`` uses it for its ``padding_mode``.

Shape letters: N batch, C channels, H×W input, (t, b, l, r) the padding on the top, bottom, left
and right; the output is (N, C, t + H + b, l + W + r).

The idea: every mode is an *index map*. Padded position p ∈ [−t, H + b) along H reads input row
``index[p]``:

    zeros      rows outside [0, H) read nothing (value 0)
    reflect    −1 → 1, −2 → 2, H → H − 2 (mirror about the edge, the edge itself not repeated)
    replicate  every row above 0 reads 0, every row below H − 1 reads H − 1
    circular   p → p mod H (the image tiled)

so the forward is a gather along H then along W. Its adjoint (the backward) scatters: each padded
gradient row is *added* onto the input row it was read from. The interior is a plain copy; only
the t + b border rows (then l + r columns) are added one by one, a loop over the padding width.
"""

from __future__ import annotations

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def pad_index(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """Input index of each padded position −before .. size + after − 1 (see the module docstring).

    Only for "reflect", "replicate" and "circular"; ``check_pad`` has ruled out padding the mode
    cannot express (reflect: padding < size; circular: padding <= size).
    """
    p = np.arange(-before, size + after)
    if mode == "reflect":
        p = np.abs(p)  # −k → k
        return np.where(p > size - 1, 2 * (size - 1) - p, p)  # size − 1 + k → size − 1 − k
    if mode == "replicate":
        return np.clip(p, 0, size - 1)
    if mode == "circular":
        return p % size
    raise ValueError(f"no index map for padding mode {mode!r}")


def check_pad(shape: tuple[int, ...], pads: tuple[int, int, int, int], mode: str) -> None:
    """torch's limits: reflect needs padding < size, circular padding <= size (one wrap at most)."""
    (t, b, l, r), (h, w) = pads, shape[-2:]
    if mode == "reflect":
        for (lo, hi), dim, size in (((l, r), len(shape) - 1, w), ((t, b), len(shape) - 2, h)):
            if lo >= size or hi >= size:
                raise ValueError(
                    "Padding size should be less than the corresponding input dimension, but got: "
                    f"padding ({lo}, {hi}) at dimension {dim} of input {list(shape)}"
                )
    elif mode == "circular":
        if max(t, b) > h or max(l, r) > w:
            raise ValueError("Padding value causes wrapping around more than once.")
    elif mode == "replicate" and (t or b or l or r) and (h == 0 or w == 0):
        raise ValueError(f"replicate padding needs a non-empty input plane, got input {list(shape)}")


def pad2d_mode(x: np.ndarray, pads: tuple[int, int, int, int], mode: str) -> np.ndarray:
    """Pad the last two axes of (N, C, H, W) by (top, bottom, left, right) with ``mode``.

    (N, C, H, W) -> (N, C, t + H + b, l + W + r). Always a fresh array.
    """
    t, b, l, r = pads
    n, c, h, w = x.shape
    if mode == "zeros":
        xp = np.zeros((n, c, t + h + b, l + w + r), dtype=x.dtype)
        xp[:, :, t : t + h, l : l + w] = x
        return xp
    check_pad(x.shape, pads, mode)
    xp = np.take(x, pad_index(h, t, b, mode), axis=2)  # gather rows:    (N, C, Hp, W)
    return np.take(xp, pad_index(w, l, r, mode), axis=3)  # gather columns: (N, C, Hp, Wp)


def _scatter_back(g: np.ndarray, axis: int, size: int, before: int, index: np.ndarray | None) -> np.ndarray:
    """Adjoint of a gather along ``axis``: out[index[p]] += g[p]; rows with no index (zeros) drop."""
    def at(k):  # index of position k along ``axis``
        return (slice(None),) * axis + (k,)

    out = np.array(g[(slice(None),) * axis + (slice(before, before + size),)])  # the interior: a copy
    if index is not None:
        for p in [*range(before), *range(before + size, g.shape[axis])]:  # the border, row by row
            out[at(index[p])] += g[at(p)]
    return out


def pad2d_mode_backward(dxp: np.ndarray, pads: tuple[int, int, int, int], mode: str, x_shape) -> np.ndarray:
    """The backward of ``pad2d_mode``: (N, C, t + H + b, l + W + r) -> (N, C, H, W).

    y = x[index] along W then H, so dx = scatter-add of dy through the same maps, W first
    (the gather's last step is undone first): every input pixel receives the gradient of each
    padded pixel that copied it, itself included.
    """
    t, b, l, r = pads
    h, w = x_shape[-2:]
    zeros = mode == "zeros"
    dx = _scatter_back(dxp, 3, w, l, None if zeros else pad_index(w, l, r, mode))  # (N, C, Hp, W)
    return _scatter_back(dx, 2, h, t, None if zeros else pad_index(h, t, b, mode))  # (N, C, H, W)
