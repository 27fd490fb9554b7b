"""Small fake datasets written in the real on-disk layouts, for tests and demos.

The pixels are the synthetic X-rays (``synthetic.make_synthetic``), so a model trained on a fake
NIH or CheXpert folder has a real signal to find; the files, folders and CSVs follow the real
datasets exactly (file names, column names and quirks of each label-file variant).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from .synthetic import make_synthetic

NIH_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
               "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
NIH_VARIANTS = ("kaggle2017", "nihbox2017", "v2020")
_FINDINGS = ["Cardiomegaly", "Effusion", "Infiltration", "Mass|Nodule", "Atelectasis|Effusion", "Pneumothorax"]
CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum",
                    "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia",
                    "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices"]


def _images(n: int, size: int, seed: int):
    images, labels, patients, _ = make_synthetic(n, size, seed)
    return images, labels, patients


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def make_nih(
    root, n: int = 40, variant: str = "kaggle2017", layout: str = "kaggle", official_lists: bool = True,
    image_size: int = 64, seed: int = 0,
) -> dict:
    """Write a fake NIH ChestX-ray14 folder.

    Args:
        n: images (patients have 1–6 each).
        variant: the label file's flavour: "kaggle2017" (``Data_Entry_2017.csv``, trailing empty
            column, integer ages), "nihbox2017" (ages ``058Y``, zero-padded patient ids) or
            "v2020" (``Data_Entry_2017_v2020.csv``).
        layout: "kaggle" (``images_00k/images/``, 3 folders) or "flat" (``images/``).
        official_lists: write ``train_val_list.txt`` / ``test_list.txt`` (every 4th patient test).

    Returns:
        {"names", "labels", "patients" (as normalised ids), "views", "test" (set of names),
        "paths" (relative to root)}.
    """
    if variant not in NIH_VARIANTS:
        raise ValueError(f"variant must be one of {NIH_VARIANTS}")
    root = Path(root)
    images, labels, patients = _images(n, image_size, seed)
    rng = np.random.default_rng(seed)
    pid_num = {p: i + 1 for i, p in enumerate(dict.fromkeys(patients))}
    follow = {}
    names, views, paths, rows = [], [], [], []
    for i in range(n):
        pnum = pid_num[patients[i]]
        k = follow[pnum] = follow.get(pnum, -1) + 1
        name = f"{pnum:08d}_{k:03d}.png"
        view = "PA" if rng.random() < 0.6 else "AP"
        folder = f"images_{1 + i * 3 // n:03d}/images" if layout == "kaggle" else "images"
        rel = f"{folder}/{name}"
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(root / rel)
        finding = "No Finding" if labels[i] == 0 else _FINDINGS[int(rng.integers(len(_FINDINGS)))]
        age = int(rng.integers(20, 90))
        pid = f"{pnum:08d}" if variant == "nihbox2017" else str(pnum)
        age_s = f"{age:03d}Y" if variant == "nihbox2017" else str(age)
        row = [name, finding, k, pid, age_s, "M" if rng.random() < 0.5 else "F", view, 2500, 2048, 0.143, 0.143]
        rows.append(row + [""] if variant == "kaggle2017" else row)
        names.append(name)
        views.append(view)
        paths.append(rel)
    header = NIH_COLUMNS + [""] if variant == "kaggle2017" else NIH_COLUMNS
    label_file = "Data_Entry_2017_v2020.csv" if variant == "v2020" else "Data_Entry_2017.csv"
    _write_csv(root / label_file, header, rows)
    test = {nm for nm, p in zip(names, patients) if pid_num[p] % 4 == 0}
    if official_lists:
        (root / "test_list.txt").write_text("".join(f"{nm}\n" for nm in names if nm in test))
        (root / "train_val_list.txt").write_text("".join(f"{nm}\n" for nm in names if nm not in test))
    return {"names": names, "labels": labels, "patients": np.array([str(pid_num[p]) for p in patients]),
            "views": np.array(views), "test": test, "paths": paths, "label_file": root / label_file}


def make_chexpert(root, n_train: int = 40, n_valid: int = 16, image_size: int = 64, seed: int = 0,
                  prefix: str = "CheXpert-v1.0-small") -> dict:
    """Write a fake CheXpert-v1.0-small folder (``root/<prefix>/{train,valid}.csv`` + JPEGs).

    Every 5th training image is uncertain-only (a finding at -1.0, "No Finding" blank) and
    every 4th image of a study is a lateral with blank AP/PA. Returns per split the rows' paths
    and labels under each uncertainty policy (None: left out under "ignore").
    """
    root = Path(root)
    base = root / prefix
    out = {}
    for split, n, pat0, sd in (("train", n_train, 1, seed), ("valid", n_valid, 64541, seed + 1)):
        images, labels, patients = _images(n, image_size, sd)
        rng = np.random.default_rng(sd)
        pnum = {p: pat0 + i for i, p in enumerate(dict.fromkeys(patients))}
        views, rows, info = {}, [], {"paths": [], "label": [], "uncertain": [], "frontal": [], "view": []}
        for i in range(n):
            pat = f"patient{pnum[patients[i]]:05d}"
            k = views[pat] = views.get(pat, 0) + 1
            frontal = k % 4 != 0
            ap_pa = ("AP" if rng.random() < 0.7 else "PA") if frontal else ""
            rel = f"{split}/{pat}/study1/view{k}_{'frontal' if frontal else 'lateral'}.jpg"
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(base / rel, quality=95)
            cells = {c: "" for c in CHEXPERT_COLUMNS[5:]}
            uncertain = split == "train" and i % 5 == 4
            if uncertain:
                cells["Edema"] = "-1.0"
                cells["Cardiomegaly"] = "0.0"
            elif labels[i] == 1:
                finding = CHEXPERT_COLUMNS[6 + int(rng.integers(12))]
                cells[finding] = "1.0"
                if rng.random() < 0.3 and finding != "Pneumonia":  # a certain finding beside an uncertain one
                    cells["Pneumonia"] = "-1.0"
            else:
                cells["No Finding"] = "1.0"
                if rng.random() < 0.3:
                    cells["Support Devices"] = "1.0"
            rows.append([f"{prefix}/{rel}", "Female", int(rng.integers(20, 90)),
                         "Frontal" if frontal else "Lateral", ap_pa] + [cells[c] for c in CHEXPERT_COLUMNS[5:]])
            info["paths"].append(f"{prefix}/{rel}")
            info["label"].append(None if uncertain else int(labels[i]))
            info["uncertain"].append(uncertain)
            info["frontal"].append(frontal)
            info["view"].append(ap_pa)
        _write_csv(base / f"{split}.csv", CHEXPERT_COLUMNS, rows)
        out[split] = info
    return out


def make_folder(root, n: int = 30, mode: str = "subfolders", image_size: int = 64, seed: int = 0) -> dict:
    """Write a ``folder`` dataset: "subfolders" (normal/ + abnormal/, PNG) or "csv" (images/ +
    labels.csv with path,label,patient). Returns {"paths", "labels", "patients"}."""
    root = Path(root)
    images, labels, patients = _images(n, image_size, seed)
    paths = []
    for i in range(n):
        if mode == "subfolders":
            rel = f"{'abnormal' if labels[i] else 'normal'}/img_{i:04d}.png"
        else:
            rel = f"images/img_{i:04d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(root / rel)
        paths.append(rel)
    if mode == "csv":
        _write_csv(root / "labels.csv", ["path", "label", "patient"],
                   [[p, "abnormal" if y else "normal", pt] for p, y, pt in zip(paths, labels, patients)])
    return {"paths": paths, "labels": labels, "patients": patients}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` 8-bit gray pixels but holds one tiny
    IDAT: how a decompression bomb looks before it is decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


def write_bad_files(folder, good: np.ndarray | None = None) -> dict[str, str]:
    """Write one file of each kind the cache must skip; returns {file name: reason keyword}.

    Kinds: zero bytes, truncated PNG (first half of a good one), a text file named ``.png``,
    a header claiming 20000² pixels (over Pillow's own limit) and one claiming 9000×8000 (over
    ours, under Pillow's).
    """
    import io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if good is None:
        good = make_synthetic(1, 256, 5)[0][0]
    buf = io.BytesIO()
    Image.fromarray(good).save(buf, "PNG")
    data = buf.getvalue()
    files = {
        "empty.png": (b"", "empty"),
        "truncated.png": (data[: len(data) // 2], "truncated"),
        "not_an_image.png": (b"Image Index,Finding Labels\nthis is text, not a PNG\n", "not an image"),
        "bomb_pillow.png": (png_header_only(20000, 20000), "decompression bomb"),
        "bomb_ours.png": (png_header_only(9000, 8000), "decompression bomb"),
    }
    for name, (content, _) in files.items():
        (folder / name).write_bytes(content)
    return {name: reason for name, (_, reason) in files.items()}


def write_dicom(path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                rescale: tuple[float, float] | None = None, window: tuple[float, float] | None = None,
                voi_lut: tuple[int, int, np.ndarray] | None = None, frames: int = 1, signed: bool = False,
                patient_id: str = "anonymous", compress_rle: bool = False,
                palette: np.ndarray | None = None) -> Path:
    """Write ``pixels`` as a DICOM file (needs pydicom), a single-frame secondary capture.

    Args:
        pixels: (H, W) uint8/uint16/int16 stored values, or (H, W, 3) uint8 for RGB; with
            ``frames`` > 1 the same pixels are repeated as that many frames.
        photometric: MONOCHROME2, MONOCHROME1 or RGB.
        bits_stored: Bits Stored (default: 8 for uint8, else 16).
        rescale: (slope, intercept). window: (center, width).
        voi_lut: (entries, first mapped value, LUT data) for a VOI LUT Sequence.
        compress_rle: store with the RLE Lossless transfer syntax (pydicom's own encoder).
        palette: (256, 3) 16-bit RGB entries: a PALETTE COLOR image whose 8-bit pixels index it.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage, generate_uid

    path = Path(path)
    pixels = np.ascontiguousarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = patient_id, "CR"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    ds.PhotometricInterpretation = photometric
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if pixels.dtype.itemsize == 1 else 16
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:g}", f"{rescale[1]:g}"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
    if voi_lut is not None:
        entries, first, data = voi_lut
        item = Dataset()
        depth = 8 if int(np.max(data)) < 256 else 16
        item.LUTDescriptor = [int(entries), int(first), depth]
        item.LUTData = np.asarray(data, "<u2").tobytes()  # OW: one 16-bit word per entry
        ds.VOILUTSequence = Sequence([item])
    if palette is not None:
        ds.PhotometricInterpretation = "PALETTE COLOR"
        for i, c in enumerate(("Red", "Green", "Blue")):
            setattr(ds, f"{c}PaletteColorLookupTableDescriptor", [len(palette), 0, 16])
            setattr(ds, f"{c}PaletteColorLookupTableData", np.asarray(palette[:, i], "<u2").tobytes())
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.tobytes() * frames
    if compress_rle:
        ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_rsna(root, n: int = 40, image_size: int = 64, seed: int = 0, boxes_per_positive: int = 2) -> dict:
    """Write a fake RSNA Pneumonia Detection Challenge folder (Kaggle layout; needs pydicom).

    ``stage_2_train_labels.csv`` (patientId,x,y,width,height,Target: one row per box for a
    positive patient, one row with empty box for a negative) and one 8-bit MONOCHROME2 DICOM per
    patient in ``stage_2_train_images/<patientId>.dcm``.

    Returns:
        {"ids", "labels" (n,) 0/1}.
    """
    root = Path(root)
    images, labels, _ = _images(n, image_size, seed)
    rng = np.random.default_rng(seed)
    (root / "stage_2_train_images").mkdir(parents=True, exist_ok=True)
    ids, rows = [], []
    for i in range(n):
        pid = f"{int(rng.integers(16**8)):08x}-{i:04x}-4{int(rng.integers(16**3)):03x}-a000-{i:012x}"
        write_dicom(root / "stage_2_train_images" / f"{pid}.dcm", images[i], patient_id=pid)
        if labels[i]:
            for _ in range(boxes_per_positive):
                rows.append([pid, *(int(v) for v in rng.integers(10, 600, 4)), 1])
        else:
            rows.append([pid, "", "", "", "", 0])
        ids.append(pid)
    _write_csv(root / "stage_2_train_labels.csv", ["patientId", "x", "y", "width", "height", "Target"], rows)
    return {"ids": ids, "labels": np.asarray(labels, np.int64)}
