"""Issue 16: DICOM read as viewers display it, and ``--dataset rsna``.

DICOM files are built with pydicom from the real NIH PNGs in ``../shared/data/nih-sample``
(MONOCHROME2, inverted MONOCHROME1, 12-bit with a rescale, with and without a window, a VOI LUT,
RGB, RLE-compressed): each decodes to the PNG path's 64x64 image within one grey level, and a
prediction on the DICOM equals the prediction on the PNG. Then the failures: multi-frame, a
compressed syntax no installed plugin reads, a header over the size limit, no pydicom.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chexvision.cli import main
from chexvision.data import load_image, open_dataset
from chexvision.data.images import resize_gray
from chexvision.errors import UserError

pydicom = pytest.importorskip("pydicom", reason="DICOM tests need the dicom extra (pip install -e '.[dicom]')")

from chexvision.data.fake import make_rsna, write_dicom  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nih-sample" / "images_001" / "images"
need_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason="the real NIH sample (../shared/data/nih-sample) "
                                 "is not in this checkout")


def _real_pngs(k: int = 3) -> list[Path]:
    """The first ``k`` grayscale PNGs of the real sample (a few of its images are RGBA)."""
    return [p for p in sorted(SAMPLE.glob("*.png")) if Image.open(p).mode == "L"][:k]


def _variants(v: np.ndarray) -> dict[str, dict]:
    """write_dicom arguments whose display equals the 8-bit picture ``v``."""
    s12 = np.rint(v * (4095 / 255)).astype(np.uint16)  # the same picture as 12-bit stored values
    return {
        "monochrome2": dict(pixels=v),
        "monochrome1": dict(pixels=255 - v, photometric="MONOCHROME1"),
        "12bit_rescale": dict(pixels=s12, bits_stored=12, rescale=(1, -1024)),
        "12bit_signed": dict(pixels=s12.astype(np.int16) - 2048, bits_stored=12, signed=True),
        "12bit_window": dict(pixels=s12, bits_stored=12, window=(2048, 4096)),
        "12bit_rescale_window": dict(pixels=s12, bits_stored=12, rescale=(2, -2048), window=(2047, 8191)),
        "12bit_monochrome1_window": dict(pixels=4095 - s12, bits_stored=12, window=(2048, 4096),
                                         photometric="MONOCHROME1"),
        "12bit_voi_lut": dict(pixels=s12, bits_stored=12, voi_lut=(4096, 0, np.rint(np.arange(4096) * 255 / 4095))),
        "12bit_voi_lut16": dict(pixels=s12, bits_stored=12, voi_lut=(4096, 0, np.arange(4096) * 16)),
        "rgb": dict(pixels=np.dstack([v] * 3), photometric="RGB"),
        "rle_compressed": dict(pixels=s12, bits_stored=12, compress_rle=True),
    }


@need_sample
@pytest.mark.parametrize("variant", list(_variants(np.zeros((2, 2), np.uint8))))
def test_dicom_from_a_real_png_decodes_as_the_png(tmp_path, variant):
    for png in _real_pngs():
        v = np.asarray(Image.open(png))
        dcm = write_dicom(tmp_path / f"{png.stem}.dcm", **_variants(v)[variant])
        got, want = load_image(dcm, 64).astype(int), load_image(png, 64).astype(int)
        assert np.abs(got - want).max() <= 1, (png.name, variant, np.abs(got - want).max())
        if variant in ("monochrome2", "monochrome1", "rgb"):  # 8-bit display values: the same bytes
            assert np.array_equal(got, want)


@need_sample
def test_palette_colour_and_jpeg_compressed_dicoms(tmp_path):
    """PALETTE COLOR goes through pydicom's apply_color_lut; a JPEG-baseline DICOM is decoded by
    the Pillow plugin pydicom ships with (a compressed syntax with a decoder installed)."""
    import io

    png = _real_pngs(1)[0]
    v = np.asarray(Image.open(png))
    ramp = (255 - np.arange(256)) * 257  # a reversed gray palette: index 255 - v shows v
    dcm = write_dicom(tmp_path / "pal.dcm", (255 - v).astype(np.uint8), palette=np.stack([ramp] * 3, axis=1))
    assert np.array_equal(load_image(dcm, 64), load_image(png, 64))
    buf = io.BytesIO()
    Image.fromarray(v).save(buf, "JPEG", quality=95)
    jpg = write_dicom(tmp_path / "jpg.dcm", v)
    ds = pydicom.dcmread(jpg)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
    ds.PixelData = pydicom.encaps.encapsulate([buf.getvalue()])
    ds.save_as(jpg, enforce_file_format=True)
    want = resize_gray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), 64).astype(int)
    assert np.abs(load_image(jpg, 64).astype(int) - want).max() <= 1


def test_folder_dataset_of_dicoms(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(24):
        sub = tmp_path / "data" / ("abnormal" if i % 2 else "normal")
        sub.mkdir(parents=True, exist_ok=True)
        write_dicom(sub / f"{i:02d}.dcm", rng.integers(0, 256, (32, 32), dtype=np.uint8))
    ds = open_dataset({"dataset": "folder", "data_dir": str(tmp_path / "data"), "cache": str(tmp_path / "c"),
                       "workers": 1, "image_size": 16}, progress=False, check_splits=False)
    assert len(ds) == 24 and all(p.endswith(".dcm") for p in ds.paths)
    assert np.array_equal(ds.images[3], load_image(tmp_path / "data" / ds.paths[3], 16))


@need_sample
def test_a_narrow_window_is_applied_as_a_viewer_would(tmp_path):
    """Window 100 +- 40 on 8-bit values: below is black, above white, linear between (DICOM
    PS3.3 C.11.2.1.2.1), then the same resize as every image."""
    png = _real_pngs(1)[0]
    v = np.asarray(Image.open(png)).astype(np.float64)
    c, w = 100.0, 81.0
    lin = ((v - (c - 0.5)) / (w - 1) + 0.5) * 255
    want = np.where(v <= c - 0.5 - (w - 1) / 2, 0, np.where(v > c - 0.5 + (w - 1) / 2, 255, lin))
    want = resize_gray(Image.fromarray(want.astype(np.float32)), 64).astype(int)
    dcm = write_dicom(tmp_path / "w.dcm", np.asarray(Image.open(png)), window=(c, w))
    assert np.abs(load_image(dcm, 64).astype(int) - want).max() <= 1


@pytest.fixture(scope="module")
def run64(tmp_path_factory):
    out = tmp_path_factory.mktemp("dcmrun") / "run"
    assert main(["train", "--dataset", "synthetic", "--synthetic-size", "300", "--image-size", "64", "--hidden", "8",
                 "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    return out


@need_sample
def test_prediction_on_the_dicom_equals_the_prediction_on_the_png(run64, tmp_path, capsys):
    pngs = _real_pngs(2)
    files = []
    for png in pngs:
        v = np.asarray(Image.open(png))
        files += [png, write_dicom(tmp_path / f"{png.stem}_m2.dcm", v),
                  write_dicom(tmp_path / f"{png.stem}_m1.dcm", 255 - v, photometric="MONOCHROME1")]
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run64), "--image", *map(str, files), "--json"]) == 0
    p = [r["p_abnormal"] for r in json.loads(capsys.readouterr().out)]
    assert p[0] == p[1] == p[2] and p[3] == p[4] == p[5] and p[0] != p[3]


def _one_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_dicom_failures_are_one_line(tmp_path, capsys, run64):
    v = np.full((32, 32), 100, np.uint8)
    multi = write_dicom(tmp_path / "multi.dcm", v, frames=3)
    with pytest.raises(UserError, match=r"multi.dcm: multi-frame DICOM \(3 frames\) is not supported"):
        load_image(multi)
    # a compressed syntax (JPEG-LS) no installed plugin decodes: one line naming what to install
    ls = write_dicom(tmp_path / "ls.dcm", v)
    ds = pydicom.dcmread(ls)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLSLossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8not really jpeg-ls\xff\xd9"])
    ds.save_as(ls, enforce_file_format=True)
    err = _one_line(capsys, ["predict", "--checkpoint", str(run64), "--image", str(ls)])
    assert "compressed DICOM (JPEG-LS Lossless Image Compression)" in err and "pip install pylibjpeg" in err
    # a header claiming 8192x8192 16-bit pixels: refused before any pixel data is read
    big = write_dicom(tmp_path / "big.dcm", np.zeros((8, 8), np.uint16), bits_stored=12)
    ds = pydicom.dcmread(big)
    ds.Rows = ds.Columns = 8192
    ds.save_as(big, enforce_file_format=True)
    with pytest.raises(UserError, match=r"too large to decode: 8192x8192 I pixels is over the limit of 16,777,216"):
        load_image(big)
    (tmp_path / "text.dcm").write_text("not a dicom at all")
    with pytest.raises(UserError, match="not a DICOM file"):
        load_image(tmp_path / "text.dcm")


def test_without_pydicom_a_dicom_is_one_line_naming_the_extra(tmp_path, monkeypatch, run64, capsys):
    dcm = write_dicom(tmp_path / "x.dcm", np.full((16, 16), 9, np.uint8))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now raises ImportError
    err = _one_line(capsys, ["predict", "--checkpoint", str(run64), "--image", str(dcm)])
    assert 'x.dcm: reading DICOM needs pydicom, the "dicom" extra: pip install -e ".[dicom]"' in err


def test_private_tags_are_not_read(tmp_path):
    v = np.arange(256, dtype=np.uint8).reshape(16, 16)
    dcm = write_dicom(tmp_path / "p.dcm", v)
    ds = pydicom.dcmread(dcm)
    ds.add_new(0x00091010, "OB", b"\x00" * 10_000)  # a private blob: never parsed
    ds.save_as(dcm, enforce_file_format=True)
    from chexvision.data.dicom import read_header

    assert 0x00091010 not in read_header(dcm) and np.array_equal(load_image(dcm, 16), load_image(
        write_dicom(tmp_path / "q.dcm", v), 16))


# -- --dataset rsna -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsna(tmp_path_factory):
    root = tmp_path_factory.mktemp("rsna") / "kaggle"
    info = make_rsna(root, n=40)
    return root, info


def test_rsna_listing_labels_and_patients(rsna, tmp_path):
    root, info = rsna
    ds = open_dataset({"dataset": "rsna", "data_dir": str(root), "cache": str(tmp_path / "c"), "workers": 1},
                      progress=False)
    assert len(ds) == 40 and sorted(ds.patients) == sorted(info["ids"])
    want = dict(zip(info["ids"], info["labels"]))
    assert all(want[p] == y for p, y in zip(ds.patients, ds.labels))
    assert all(path == f"stage_2_train_images/{p}.dcm" for path, p in zip(ds.paths, ds.patients))
    for i in (0, 7):
        assert np.array_equal(ds.images[i], load_image(root / ds.paths[i], 64))
    for split in ("train", "val", "test"):  # one image per patient: patient-disjoint by construction
        assert not set(ds.patients[ds.splits == split]) & set(ds.patients[ds.splits != split])
    assert "patient-level" in ds.describe()


def test_rsna_problems_are_reported_not_fatal(rsna, tmp_path):
    import shutil

    src, info = rsna
    root = tmp_path / "kaggle"
    shutil.copytree(src, root)
    (root / "stage_2_train_images" / f"{info['ids'][0]}.dcm").unlink()
    (root / "stage_2_train_images" / "stray.dcm").write_bytes(
        (root / "stage_2_train_images" / f"{info['ids'][1]}.dcm").read_bytes())
    with open(root / "stage_2_train_labels.csv", "a", newline="") as f:
        w = csv.writer(f)
        w.writerows([["../../../etc/passwd", "", "", "", "", 0], [info["ids"][2], 1, 2, 3, 4, 1 - info["labels"][2]],
                     [info["ids"][3], "", "", "", "", "x"]])
    cache = tmp_path / "c"
    ds = open_dataset({"dataset": "rsna", "data_dir": str(root), "cache": str(cache), "workers": 1}, progress=False,
                      check_splits=False)
    with open(cache / "bad_files.csv", newline="") as f:
        report = {r["path"]: r["reason"] for r in csv.DictReader(f)}
    assert report["../../../etc/passwd"] == "outside the data folder"
    assert "not found" in report[f"stage_2_train_images/{info['ids'][0]}.dcm"]
    assert "not listed" in report["stage_2_train_images/stray.dcm"]
    assert "Target 0 and 1" in report[f"stage_2_train_images/{info['ids'][2]}.dcm"]
    assert any("Target 'x' is not 0 or 1" in r for r in report.values())
    assert len(ds) == 38  # the missing file and the patient with conflicting rows left out


def test_rsna_train_evaluate_end_to_end(rsna, tmp_path):
    root, _ = rsna
    run = tmp_path / "run"
    assert main(["train", "--dataset", "rsna", "--data-dir", str(root), "--cache", str(tmp_path / "c"),
                 "--workers", "1", "--image-size", "16", "--hidden", "8", "--epochs", "1", "--val-fraction", "0.3",
                 "--out", str(run), "--no-progress"]) == 0
    cfg = json.loads((run / "best" / "config.json").read_text())
    assert cfg["data"]["dataset"] == "rsna"
    assert main(["evaluate", "--checkpoint", str(run), "--out", str(tmp_path / "ev"), "--n-boot", "10",
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["test"]["n"] > 0
    assert main(["preprocess", "--dataset", "rsna", "--data-dir", str(root), "--cache", str(tmp_path / "c"),
                 "--image-size", "16"]) == 0
