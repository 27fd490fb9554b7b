"""Decode one image file into the cache's format: 8-bit grayscale, S×S, antialiased.

``load_image`` is the one decoder: the preprocessing cache, ``predict`` and the tests all call
it, so an image reaches a model through the same pixels whichever way it came in.

Steps, in order:

1. **Open** the header only. A file that is missing, a folder, empty, not an image, or larger
   than ``MAX_PIXELS`` (a decompression bomb: a tiny file that inflates to gigabytes) is refused
   before any pixel is decoded.
2. **Draft** (JPEG only): ask the decoder for a DCT-scaled grayscale image at least twice the
   target size. A 2,000-pixel JPEG then decodes at 1/4 or 1/8 of the cost.
3. **Convert to 8-bit grayscale** from any mode. ``L`` stays; ``1``, ``P``, ``RGB``, ``CMYK``,
   ``YCbCr`` use Pillow's ITU-R 601-2 luma; alpha (``LA``, ``RGBA``, ``PA``) is dropped, since an
   X-ray PNG saved with alpha carries an opaque one. High-bit-depth modes (``I;16*``, ``I``,
   ``F``) have no fixed display window, so the image's own range [min, max] is *scaled* linearly
   onto [0, 255] (never clipped at 255): a 12-bit radiograph keeps all its contrast.
4. **Resize** to S×S in two steps: ``Image.reduce`` by the largest integer factor that keeps
   each side ≥ 2S (a box average of k×k blocks: exact, antialiased and nearly free; 1024 -> 128
   for S = 64), then Pillow's Lanczos filter for the last ≤ 4× (antialiased too: its support
   widens with the downscale factor). Decoding a 1024² PNG costs over ten times more than both.
   The aspect ratio is not kept (NIH images are square; CheXpert's are close to it), so no
   part of the chest is cropped away.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError

# Refuse images above this many pixels (8192 × 8192). NIH images are 1024², CheXpert's
# originals about 2,500 × 3,000; a header claiming more is almost surely a decompression bomb.
MAX_PIXELS = 8192 * 8192

HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class BadImage(Exception):
    """A file that cannot become an image; ``str(e)`` is the reason (no path)."""


def _open(path: Path, max_pixels: int) -> Image.Image:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BadImage("no such file") from None
    except NotADirectoryError:
        raise BadImage("no such file (a parent is not a folder)") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadImage("is a folder, not an image file")
    if st.st_size == 0:
        raise BadImage("empty file (0 bytes)")
    with warnings.catch_warnings():
        # Pillow warns (above its own MAX_IMAGE_PIXELS) before it errors; make both errors.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadImage("decompression bomb: the header claims too many pixels") from None
        except Image.UnidentifiedImageError:
            raise BadImage("not an image Pillow can read") from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise BadImage(f"decompression bomb: {w}x{h} pixels is over the limit of {max_pixels:,}")
    if w < 1 or h < 1:
        im.close()
        raise BadImage(f"degenerate size {w}x{h}")
    return im


def _to_gray8_or_float(im: Image.Image) -> Image.Image:
    """Any mode -> ``L`` (8-bit) or, for high bit depths, ``F`` scaled onto [0, 255]."""
    mode = im.mode
    if mode == "L":
        return im
    if mode in HIGH_BIT_MODES:
        a = np.asarray(im, dtype=np.float64)  # (H, W); I;16B is big-endian, asarray handles it
        if not np.all(np.isfinite(a)):
            a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(a.min()), float(a.max())
        scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(scaled.astype(np.float32), mode="F")
    if mode in ("LA", "La", "PA"):
        return im.convert("L") if mode != "PA" else im.convert("RGB").convert("L")
    try:
        return im.convert("L")  # 1, P, RGB, RGBA, RGBX, CMYK, YCbCr, HSV: luma, alpha dropped
    except ValueError:  # e.g. LAB: go through RGB
        return im.convert("RGB").convert("L")


def _decode(path: Path, image_size: int, max_pixels: int) -> np.ndarray:
    im = _open(path, max_pixels)
    with im:
        if im.format == "JPEG":
            # DCT scaling in the decoder; the result stays >= 2× the target on each side.
            im.draft("L", (2 * image_size, 2 * image_size))
        im.load()  # decode now: truncated or corrupt data fails here
        g = _to_gray8_or_float(im)
        # Integer box reduction while each side stays >= 2 S (1024 -> 128 for S = 64), then Lanczos.
        fx, fy = max(1, g.width // (2 * image_size)), max(1, g.height // (2 * image_size))
        if fx > 1 or fy > 1:
            g = g.reduce((fx, fy))
        r = g.resize((image_size, image_size), Image.Resampling.LANCZOS)
    if r.mode == "F":
        return np.clip(np.rint(np.asarray(r, dtype=np.float32)), 0, 255).astype(np.uint8)
    return np.asarray(r, dtype=np.uint8)


def decode(path: str | os.PathLike, image_size: int = 64, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Like ``load_image`` but raises ``BadImage(reason)``: what the cache's workers call.

    Every exception Pillow or zlib can raise for a broken file (``OSError`` for truncated data,
    ``SyntaxError`` for a broken PNG chunk, ``ValueError``, ``EOFError``, ...) becomes a
    ``BadImage`` whose message is the reason, so one bad file never stops a long run.
    """
    try:
        return _decode(Path(path), image_size, max_pixels)
    except BadImage:
        raise
    except MemoryError:
        raise BadImage("out of memory while decoding") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure is a property of the file
        msg = str(e).strip() or type(e).__name__
        if "truncated" in msg:
            msg = f"truncated file ({msg})"
        raise BadImage(f"cannot decode: {msg}") from None


def load_image(path: str | os.PathLike, image_size: int = 64) -> np.ndarray:
    """Decode ``path`` exactly as the preprocessing cache does.

    Args:
        path: an image file Pillow can read (PNG, JPEG, TIFF, BMP, ...), any pixel mode.
        image_size: S, the side of the square output.

    Returns:
        (S, S) uint8 array, 8-bit grayscale.

    Raises:
        UserError: ``"{path}: <reason>"`` for a missing file, a folder, a zero-byte, truncated or
            corrupt file, a file that is not an image, or a decompression bomb.
    """
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise UserError(f"image size must be a positive integer, got {image_size!r}")
    try:
        return decode(path, int(image_size))
    except BadImage as e:
        raise UserError(f"{path}: {e}") from None
