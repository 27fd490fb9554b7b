"""DICOM (``.dcm``) radiographs, displayed as radiology viewers display them, through pydicom.

pydicom is an optional extra (``pip install -e ".[dicom]"``); without it a DICOM file is refused
with one line naming the extra. ``decode_dicom`` returns a Pillow ``L`` or ``F`` image on the
0..255 scale, which ``images.resize_gray`` then resizes exactly as a PNG's pixels.

Steps, in order:

1. **Header only.** ``dcmread`` parses the standard tags listed in ``TAGS`` and nothing else (no
   private tag is read, let alone trusted); the pixel data are deferred. Rows × Columns × Number of
   Frames is checked against the same per-mode pixel limits as a PNG (``images.check_size``)
   before a pixel is decoded; more than one frame is refused (a chest radiograph is one frame).
2. **Pixels.** ``ds.pixel_array``: uncompressed data, RLE (pydicom's own decoder) and the
   compressed transfer syntaxes that an installed plugin decodes (Pillow: JPEG baseline, and JPEG
   2000 where Pillow has OpenJPEG; pylibjpeg or GDCM for the rest). A compressed file no installed
   plugin can decode is one line naming the transfer syntax and what to install.
3. **Monochrome** (MONOCHROME1/2), a block of rows at a time (the working memory is one float32
   copy): the Modality LUT or Rescale Slope/Intercept (``apply_modality_lut``), then the VOI LUT
   or Window Center/Width when present (``apply_voi`` / ``apply_windowing``; the first view), and
   the output range of that stage (the window's output range, the VOI LUT's entries, else the
   **full stored range** that Bits Stored and Pixel Representation allow, after the modality
   stage) is mapped linearly onto 0..255, never clipped inside the range: 12 bits keep their
   contrast. MONOCHROME1 (bone dark) is inverted so that bone is bright, as in MONOCHROME2.
4. **Colour**: RGB and YBR (converted to RGB by pydicom) and PALETTE COLOR (``apply_color_lut``)
   become 8-bit RGB, then gray with the same ITU-R 601-2 luma as a colour PNG.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .images import BadImage, check_size, stretch_to_float32

EXTRA = 'reading DICOM needs pydicom, the "dicom" extra: pip install -e ".[dicom]" (or pip install pydicom)'
DECODERS = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or python-gdcm)"

# The only elements parsed: what the display pipeline needs (no private tags, no free text).
TAGS = [
    "SpecificCharacterSet", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
    "PlanarConfiguration", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "RescaleSlope", "RescaleIntercept", "ModalityLUTSequence", "VOILUTSequence", "WindowCenter", "WindowWidth",
    "VOILUTFunction", "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData", "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData", "SegmentedBluePaletteColorLookupTableData",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "PixelData",
]
ROWS_PER_BLOCK = 256


def _pydicom():
    try:
        import pydicom
        from pydicom.pixels import processing
    except ImportError:
        raise BadImage(EXTRA) from None
    return pydicom, processing


def _int(ds, name: str, default: int | None = None) -> int:
    v = ds.get(name, default)
    if v is None or v == "":
        if default is None:
            raise BadImage(f"DICOM without {name}")
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        raise BadImage(f"DICOM {name} is {v!r}, not a number") from None


def read_header(path: Path, max_pixels: int | None = None):
    """The dataset with only ``TAGS`` parsed and the pixel data deferred; sizes checked."""
    pydicom, _ = _pydicom()
    try:
        ds = pydicom.dcmread(path, defer_size="64 KB", specific_tags=TAGS)
    except pydicom.errors.InvalidDicomError:
        raise BadImage("not a DICOM file (no DICM header)") from None
    if "PixelData" not in ds:
        raise BadImage("DICOM without pixel data (not an image)")
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    frames = _int(ds, "NumberOfFrames", 1)
    samples = _int(ds, "SamplesPerPixel", 1)
    bits = _int(ds, "BitsAllocated")
    stored = _int(ds, "BitsStored", bits)
    if frames > 1:
        raise BadImage(f"multi-frame DICOM ({frames} frames) is not supported: export the one radiograph as a "
                       "single-frame file")
    if samples not in (1, 3):
        raise BadImage(f"DICOM with {samples} samples per pixel is not supported (1 or 3)")
    if not 1 <= stored <= 16 or bits not in (1, 8, 16):
        raise BadImage(f"DICOM with Bits Allocated {bits} / Bits Stored {stored} is not supported (up to 16 bits)")
    # Peak bytes per pixel as a PNG of that mode: 8-bit gray as 16-bit PNG (12: a float32 working
    # copy and its image); 16-bit as 32-bit (16: the raw bytes and the stored array come on top).
    mode = "RGB" if samples == 3 else "I;16" if bits <= 8 else "I"
    if max_pixels is None:
        check_size(cols, rows, mode, frames=max(1, frames))
    else:
        check_size(cols, rows, mode, max_pixels, frames=max(1, frames))
    return ds


def _stored_range(ds) -> tuple[int, int]:
    bits = _int(ds, "BitsStored", _int(ds, "BitsAllocated"))
    if _int(ds, "PixelRepresentation", 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _lut_range(item) -> tuple[float, float]:
    data = item.get("LUTData")
    if data is None:
        raise BadImage("DICOM LUT without LUTData")
    if isinstance(data, bytes):
        data = np.frombuffer(data, "<u2")
    data = np.asarray(data, dtype=np.float64)
    return float(data.min()), float(data.max())


def output_range(ds) -> tuple[str, float, float]:
    """Which VOI stage applies ("lut", "window" or "none") and the range it outputs, which is
    mapped onto 0..255."""
    voi = ds.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") is not None and voi[0].get("LUTData") is not None:
        return ("lut", *_lut_range(voi[0]))
    mod = ds.get("ModalityLUTSequence")
    if mod:
        m_lo, m_hi = _lut_range(mod[0])
        full = (0.0, float(2 ** int(mod[0].LUTDescriptor[2]) - 1))
    else:
        s_lo, s_hi = _stored_range(ds)
        slope, icpt = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        if slope is not None and icpt is not None:
            a, b = s_lo * float(slope) + float(icpt), s_hi * float(slope) + float(icpt)
        else:
            a, b = float(s_lo), float(s_hi)
        m_lo, m_hi = min(a, b), max(a, b)
        full = (a, b)  # pydicom's window output runs from the rescaled stored minimum to maximum
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return ("window", *full)
    return "none", m_lo, m_hi


def _apply_voi_lut(x: np.ndarray, ds, processing) -> np.ndarray:
    """The first VOI LUT of ``ds`` applied to ``x``: pydicom's ``apply_voi``, except for an 8-bit
    LUT of more than 256 entries, which pydicom 3.0 indexes through a uint8 array (entry 256
    wraps to entry 0); that one is looked up here by the same rule (below the first mapped value:
    the first entry; past the end: the last)."""
    item = ds.VOILUTSequence[0]
    entries, first, depth = (int(v) for v in item.LUTDescriptor)
    entries = entries or 2**16
    if depth > 8 or entries <= 256:
        return processing.apply_voi(x, ds)
    data = item.LUTData
    lut = np.frombuffer(data, "<u2") if isinstance(data, bytes) else np.asarray(data)
    idx = np.clip(x.astype(np.int64) - first, 0, min(entries, len(lut)) - 1)
    return lut[idx]


def _monochrome(arr: np.ndarray, ds, processing) -> Image.Image:
    stage, lo, hi = output_range(ds)
    inverted = str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"
    if stage == "none" and arr.dtype == np.uint8 and (lo, hi) == (0.0, 255.0):
        # 8-bit stored, no LUT: the pixels are the display values, an 8-bit image exactly as a PNG's
        return Image.fromarray(255 - arr if inverted else arr, "L")
    out = np.zeros(arr.shape, np.float32)
    if hi == lo:
        return Image.fromarray(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "VOI LUT on a float input": rescaled values are whole
        for r in range(0, arr.shape[0], ROWS_PER_BLOCK):
            x = processing.apply_modality_lut(arr[r:r + ROWS_PER_BLOCK], ds)
            if stage == "lut":
                x = _apply_voi_lut(np.rint(x).astype(np.int64) if x.dtype.kind == "f" else x, ds, processing)
            elif stage == "window":
                x = processing.apply_windowing(x, ds)
            out[r:r + ROWS_PER_BLOCK] = stretch_to_float32(np.asarray(x), lo, hi)
    np.clip(out, 0.0, 255.0, out=out)  # values a malformed file stores outside its own range
    if inverted:
        np.subtract(255.0, out, out=out)
    return Image.fromarray(out)


def _colour(arr: np.ndarray, ds, processing) -> Image.Image:
    if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
        arr = processing.apply_color_lut(arr, ds)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise BadImage(f"DICOM colour pixel data of shape {arr.shape} (expected rows x columns x 3)")
    if arr.dtype != np.uint8:
        if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
            desc = ds.get("RedPaletteColorLookupTableDescriptor")
            top = 2 ** int(desc[2]) - 1 if desc is not None else 65535  # the palette's entry depth
        else:
            top = 2 ** _int(ds, "BitsStored", 16) - 1
        arr = np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr), "RGB").convert("L")


def decode_dicom(path: Path, max_pixels: int | None = None) -> Image.Image:
    """A DICOM file -> ``L`` or ``F`` image on 0..255, or BadImage(reason). See the module doc."""
    _, processing = _pydicom()
    ds = read_header(path, max_pixels)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    samples = _int(ds, "SamplesPerPixel", 1)
    if samples == 1 and photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"):
        raise BadImage(f"DICOM Photometric Interpretation {photometric or 'missing'!r} is not supported")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError) as e:
        if ts is not None and ts.is_compressed:
            raise BadImage(f"compressed DICOM ({ts.name}) and no installed decoder reads it: {DECODERS}") from None
        raise BadImage(f"cannot decode the DICOM pixel data ({e})") from None
    del ds.PixelData  # the raw bytes are not needed any more
    if samples == 1 and photometric != "PALETTE COLOR":
        if arr.ndim != 2:
            raise BadImage(f"DICOM pixel data of shape {arr.shape} (expected rows x columns)")
        return _monochrome(arr, ds, processing)
    return _colour(arr, ds, processing)
