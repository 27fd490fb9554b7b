"""Decode one image file into the cache's format: 8-bit grayscale, S×S, antialiased.

``load_image`` is the one decoder: the preprocessing cache, ``predict`` and the tests all call
it, so an image reaches a model through the same pixels whichever way it came in.

Steps, in order:

1. **Open** the header only. A file that is missing, a folder, not a regular file (a FIFO or a
   device is never opened), empty, not an image, larger than ``MAX_PIXELS``, or larger than its
   pixel mode's limit in ``MODE_PIXEL_LIMITS`` (a decompression bomb: a tiny file that inflates
   to gigabytes) is refused before any pixel is decoded. The per-mode limits keep one decode
   under ``DECODE_BUDGET`` bytes (256 MiB), so ``--workers N`` processes hold at most N times that.
   DICOM files (``.dcm``, or a ``DICM`` preamble) go to ``chexvision.data.dicom`` with the same
   limits.
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

# Refuse images above this many pixels (8192 × 8192) whatever their mode. NIH images are 1024²,
# CheXpert's originals about 2,500 × 3,000; a header claiming more is almost surely a bomb.
MAX_PIXELS = 8192 * 8192

HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")

# Peak memory of one decode, in bytes per pixel of the decoded image, by Pillow mode (measured
# as the resident-set growth of a decode: the decoded image, its gray copy and, for high bit
# depths, the float32 working array and its Pillow image; see tests/test_data_limits.py), and
# the budget they must fit in. Limit = budget / bytes per pixel, at most MAX_PIXELS:
#   8-bit gray (L, P, 1): 67.1 Mpx (8192²);  LA, RGB(A), CMYK, ...: 53.7 Mpx (7,300²);
#   16-bit (I;16*) and 8-bit DICOM: 22.4 Mpx (4,730²: a 3,000 × 3,000 radiograph is 9 Mpx);
#   32-bit (I, F) and 9-16-bit DICOM: 16.8 Mpx (4,096²; a 4,280 × 3,520 detector is 15 Mpx).
DECODE_BUDGET = 256 * 2**20
BYTES_PER_PIXEL = {"1": 2, "L": 2, "P": 2, "I;16": 12, "I": 16, "F": 16}
RGB_LIKE_BYTES = 5  # 4 bytes a pixel as Pillow stores RGB/RGBA/CMYK/LA, +1 for the gray copy


def bytes_per_pixel(mode: str) -> int:
    if mode in BYTES_PER_PIXEL:
        return BYTES_PER_PIXEL[mode]
    if mode.startswith("I;16"):
        return BYTES_PER_PIXEL["I;16"]
    return RGB_LIKE_BYTES


def pixel_limit(mode: str, max_pixels: int = MAX_PIXELS) -> int:
    """The most pixels an image of Pillow ``mode`` may have: ``DECODE_BUDGET`` / its peak bytes
    per pixel, and never more than ``max_pixels``."""
    return int(min(max_pixels, DECODE_BUDGET // bytes_per_pixel(mode)))


def check_size(w: int, h: int, mode: str, max_pixels: int = MAX_PIXELS, frames: int = 1) -> None:
    """BadImage unless a ``w`` × ``h`` (× ``frames``) image of ``mode`` fits the limits."""
    if w < 1 or h < 1:
        raise BadImage(f"degenerate size {w}x{h}")
    n = w * h * frames
    if n > max_pixels:
        raise BadImage(f"decompression bomb: {w}x{h} pixels is over the limit of {max_pixels:,}")
    limit = pixel_limit(mode, max_pixels)
    if n > limit:
        raise BadImage(f"too large to decode: {w}x{h} {mode} pixels is over the limit of {limit:,} for that "
                       f"mode ({DECODE_BUDGET // 2**20} MiB a decode)")


def check_regular_file(path) -> int:
    """The file's size in bytes, or BadImage: missing, a folder, or not a regular file (a FIFO,
    a device, a socket: never opened, since reading one can block forever or never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BadImage("no such file") from None
    except NotADirectoryError:
        raise BadImage("no such file (a parent is not a folder)") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadImage("is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "special")
        raise BadImage(f"not a regular file ({kind})")
    if st.st_size == 0:
        raise BadImage("empty file (0 bytes)")
    return st.st_size


class BadImage(Exception):
    """A file that cannot become an image; ``str(e)`` is the reason (no path)."""


def _open(path: Path, max_pixels: int) -> Image.Image:
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
    try:
        check_size(w, h, "L", max_pixels)  # the mode's own limit is checked once the draft size is known
    except BadImage:
        im.close()
        raise
    return im


def _to_gray8_or_float(im: Image.Image) -> Image.Image:
    """Any mode -> ``L`` (8-bit) or, for high bit depths, ``F`` scaled onto [0, 255]."""
    mode = im.mode
    if mode == "L":
        return im
    if mode in HIGH_BIT_MODES:
        return Image.fromarray(stretch_to_float32(np.asarray(im)))  # (H, W); I;16B: asarray handles it
    if mode in ("LA", "La", "PA"):
        return im.convert("L") if mode != "PA" else im.convert("RGB").convert("L")
    try:
        return im.convert("L")  # 1, P, RGB, RGBA, RGBX, CMYK, YCbCr, HSV: luma, alpha dropped
    except ValueError:  # e.g. LAB: go through RGB
        return im.convert("RGB").convert("L")


def stretch_to_float32(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """(H, W) numbers -> float32 with [lo, hi] (default: the array's own min and max) mapped
    linearly onto [0, 255], never clipped at 255. Computed in float64 a block of rows at a time,
    so the working memory is the float32 result, not three float64 copies."""
    finite = np.issubdtype(a.dtype, np.integer) or bool(np.isfinite(a).all())
    if not finite:
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo = float(a.min()) if lo is None else lo
    hi = float(a.max()) if hi is None else hi
    out = np.zeros(a.shape, np.float32)
    if hi > lo:
        k = 255.0 / (hi - lo)
        for r in range(0, a.shape[0], 256):
            out[r:r + 256] = (a[r:r + 256].astype(np.float64) - lo) * k
    return out


def resize_gray(g: Image.Image, image_size: int) -> np.ndarray:
    """An ``L`` or ``F`` image -> (S, S) uint8: integer box reduction while each side stays
    >= 2 S (1024 -> 128 for S = 64), then Lanczos; ``F`` is rounded and clipped to 0..255."""
    fx, fy = max(1, g.width // (2 * image_size)), max(1, g.height // (2 * image_size))
    if fx > 1 or fy > 1:
        g = g.reduce((fx, fy))
    r = g.resize((image_size, image_size), Image.Resampling.LANCZOS)
    if r.mode == "F":
        return np.clip(np.rint(np.asarray(r, dtype=np.float32)), 0, 255).astype(np.uint8)
    return np.asarray(r, dtype=np.uint8)


def is_dicom(path: Path) -> bool:
    """``.dcm`` / ``.dicom``, or the ``DICM`` magic at byte 128 (a DICOM Part 10 file)."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _decode(path: Path, image_size: int, max_pixels: int) -> np.ndarray:
    check_regular_file(path)
    if is_dicom(path):
        from .dicom import decode_dicom

        return resize_gray(decode_dicom(path, max_pixels), image_size)
    im = _open(path, max_pixels)
    with im:
        if im.format == "JPEG":
            # DCT scaling in the decoder; the result stays >= 2× the target on each side.
            im.draft("L", (2 * image_size, 2 * image_size))
        check_size(im.width, im.height, im.mode, max_pixels)  # from the header (after draft), before decoding
        im.load()  # decode now: truncated or corrupt data fails here
        return resize_gray(_to_gray8_or_float(im), image_size)


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
        path: an image file Pillow can read (PNG, JPEG, TIFF, BMP, ...), any pixel mode, or a
            DICOM file (needs the ``dicom`` extra: ``pip install -e ".[dicom]"``).
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
