"""load_image: every pixel mode to 8-bit gray, antialiased resize, and one clear error per bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chexvision.data import load_image
from chexvision.data.fake import write_bad_files
from chexvision.errors import UserError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_PNG = SHARED / "nih" / "00000001_000.png"


def _gray(size=128, seed=0) -> np.ndarray:
    """A smooth 8-bit test picture: gradient + blob, values 20..235."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = 20 + 150 * x + 65 * np.exp(-((x - 0.3) ** 2 + (y - 0.6) ** 2) / 0.02)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _box_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Independent reference for a k-fold downscale: the mean of each k×k block."""
    h, w = a.shape
    return a[: h // k * k, : w // k * k].reshape(h // k, k, w // k, k).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def ref_gray():
    return _gray()


@pytest.fixture(scope="module")
def ref_out(tmp_path_factory, ref_gray):
    p = tmp_path_factory.mktemp("ref") / "gray.png"
    Image.fromarray(ref_gray).save(p)
    return load_image(p, 32)


def test_output_is_uint8_square_and_close_to_block_average(tmp_path, ref_gray, ref_out):
    assert ref_out.dtype == np.uint8 and ref_out.shape == (32, 32)
    # a 4x downscale of a smooth image agrees with plain block averages to about a gray level
    assert np.abs(ref_out.astype(float) - _box_mean(ref_gray.astype(float), 4)).mean() < 1.5


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "1"], ids=lambda m: f"mode={m}")
def test_modes_convert_to_luma(tmp_path, ref_gray, ref_out, mode):
    base = Image.fromarray(ref_gray)
    if mode == "1":
        img = base.point(lambda v: 255 if v > 128 else 0).convert("1")
        expect = load_image(_save(tmp_path / "bw_ref.png", img.convert("L")), 32)
    else:
        img = base.convert(mode)
        if mode in ("RGBA", "LA"):
            img.putalpha(255)
        expect = ref_out
    got = load_image(_save(tmp_path / f"m_{mode}.png", img), 32)
    assert got.dtype == np.uint8 and got.shape == (32, 32)
    assert np.abs(got.astype(int) - expect.astype(int)).max() <= 1, mode


def test_rgb_uses_luma_weights(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200  # pure red: ITU-R 601-2 luma = 0.299 * 200 ≈ 60
    got = load_image(_save(tmp_path / "red.png", Image.fromarray(rgb)), 8)
    assert np.all(np.abs(got.astype(int) - 60) <= 1)


def test_rgba_alpha_is_dropped_not_composited(tmp_path, ref_gray, ref_out):
    rgba = np.dstack([ref_gray] * 3 + [np.full_like(ref_gray, 7)])  # nearly transparent alpha
    got = load_image(_save(tmp_path / "alpha.png", Image.fromarray(rgba, "RGBA")), 32)
    assert np.abs(got.astype(int) - ref_out.astype(int)).max() <= 1


def test_16bit_png_is_scaled_not_clipped(tmp_path, ref_gray, ref_out):
    full = ref_gray.astype(np.uint16) * 257  # the 8-bit picture stretched to 16 bits
    p = _save(tmp_path / "i16.png", Image.fromarray(full))
    assert Image.open(p).mode == "I;16"
    got = load_image(p, 32)
    assert (got == 255).mean() < 0.05  # clipping at 255 would saturate nearly every pixel
    # min-max scaling maps the picture's own range onto 0..255: compare with ref stretched alike
    lo, hi = ref_gray.min(), ref_gray.max()
    expect = (_box_mean(ref_gray.astype(float), 4) - lo) * 255 / (hi - lo)
    assert np.abs(got - expect).mean() < 2.0


def test_12bit_data_in_16bit_png_keeps_contrast(tmp_path, ref_gray):
    twelve = (ref_gray.astype(np.uint16) * 16)  # values up to ~3,800 of 65,535
    got = load_image(_save(tmp_path / "i12.png", Image.fromarray(twelve)), 32)
    assert got.min() <= 5 and got.max() >= 245  # full 8-bit range used, not a near-black image


@pytest.mark.parametrize("dtype,mode", [(np.int32, "I"), (np.float32, "F")], ids=["mode=I", "mode=F"])
def test_32bit_tiff_modes_are_scaled(tmp_path, ref_gray, dtype, mode):
    a = (ref_gray.astype(dtype) * 1000 - 50_000).astype(dtype)  # negative and > 65535 values
    im = Image.fromarray(a)
    assert im.mode == mode
    got = load_image(_save(tmp_path / f"{mode}.tif", im), 32)
    lo, hi = float(a.min()), float(a.max())
    expect = (_box_mean(a.astype(float), 4) - lo) * 255 / (hi - lo)
    assert np.abs(got - expect).mean() < 2.0


def test_constant_16bit_image_is_black_not_nan(tmp_path):
    got = load_image(_save(tmp_path / "c.png", Image.fromarray(np.full((20, 20), 1234, np.uint16))), 8)
    assert got.dtype == np.uint8 and np.all(got == 0)


def test_jpeg_draft_decode_matches_full_decode(tmp_path, ref_gray):
    big = np.asarray(Image.fromarray(ref_gray).resize((512, 512), Image.Resampling.BICUBIC))
    p = tmp_path / "x.jpg"
    Image.fromarray(big).convert("RGB").save(p, quality=95)
    got = load_image(p, 32)  # decoded at 1/4 scale in the DCT, then resized
    full = np.asarray(Image.open(p).convert("L"), np.float64)
    assert np.abs(got - _box_mean(full, 16)).mean() < 2.0


def test_non_square_is_resized_whole(tmp_path):
    a = np.zeros((60, 120), np.uint8)
    a[:, 60:] = 200  # right half bright
    got = load_image(_save(tmp_path / "wide.png", Image.fromarray(a)), 16)
    assert got.shape == (16, 16)
    assert got[:, :6].max() < 10 and got[:, 10:].min() > 190  # left dark, right bright, nothing cropped


@pytest.mark.skipif(not REAL_PNG.exists(), reason=f"real NIH sample not present at {REAL_PNG}")
def test_real_nih_png_against_block_average():
    src = np.asarray(Image.open(REAL_PNG), np.float64)
    assert src.shape == (512, 512)
    got = load_image(REAL_PNG, 64)
    assert np.abs(got - _box_mean(src, 8)).mean() < 2.0


@pytest.mark.parametrize("name", ["empty.png", "truncated.png", "not_an_image.png", "bomb_pillow.png", "bomb_ours.png"])
def test_bad_files_raise_one_line_user_error(tmp_path, name):
    reasons = write_bad_files(tmp_path)
    with pytest.raises(UserError) as e:
        load_image(tmp_path / name, 64)
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / name)) and reasons[name] in msg and "\n" not in msg


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_image(tmp_path / "nope.png", 64)
    with pytest.raises(UserError, match="is a folder"):
        load_image(tmp_path, 64)


def _save(path: Path, img: Image.Image) -> Path:
    img.save(path)
    return path
