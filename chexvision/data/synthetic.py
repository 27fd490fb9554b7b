"""Synthetic chest X-rays: deterministic per seed, made offline in well under a second.

What the quick start and the tests train on. Each image is a 64×64 (any size) caricature of a
frontal radiograph: dark background, a soft-tissue body, two dark lung fields crossed by ribs,
a bright mediastinum and heart, a spine and clavicles, a diaphragm. Anatomy varies per patient
(several images per patient share it, with small pose changes); exposure, gamma, blur and
quantum noise vary per image.

An abnormal image (label 1) carries one or two findings a model can learn but not read off a
single statistic: focal opacities (Gaussian blobs inside a lung), a pleural effusion (the base
of one lung whitened, meniscus-shaped) or cardiomegaly (a heart 25–45 % wider). Exposure
varies far more than a finding changes the mean brightness, so mean brightness alone scores a
ROC-AUC near 0.5, while an MLP reaches ≥ 0.9 within a few epochs on 2,000 images.

Patients have a propensity (some are mostly healthy, some mostly ill), so leaking a patient
across splits would flatter a model, as on real data.
"""

from __future__ import annotations

import numpy as np


def _ellipse(u, v, cx, cy, ax, ay, soft):
    """Soft indicator of an ellipse: 1 inside, 0 outside, a logistic edge of width ``soft``."""
    r = np.sqrt(((u - cx) / ax) ** 2 + ((v - cy) / ay) ** 2)
    # 0.5·(1 − tanh(z)) is the logistic 1/(1+e^{2z}) without overflow for large |z|.
    return 0.5 * (1.0 - np.tanh((r - 1.0) / soft))


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Separable Gaussian blur (reflect padding), sigma in pixels."""
    if sigma_px <= 0.05:
        return img
    half = max(1, int(np.ceil(3 * sigma_px)))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_px) ** 2).astype(np.float32)
    k /= k.sum()
    p = np.pad(img, half, mode="reflect")
    # rows then columns: (S+2h, S+2h) -> (S+2h, S) -> (S, S)
    p = sum(k[i] * p[:, i : i + img.shape[1]] for i in range(k.size))
    return sum(k[i] * p[i : i + img.shape[0], :] for i in range(k.size))


def _patient_anatomy(rng: np.random.Generator) -> dict:
    return {
        "body_ax": rng.uniform(0.78, 0.92), "body_ay": rng.uniform(1.05, 1.2),
        "lung_dx": rng.uniform(0.33, 0.42), "lung_cy": rng.uniform(-0.12, 0.0),
        "lung_ax": rng.uniform(0.22, 0.3), "lung_ay": rng.uniform(0.48, 0.6),
        "heart_cx": rng.uniform(0.05, 0.14), "heart_cy": rng.uniform(0.2, 0.32),
        "heart_ax": rng.uniform(0.18, 0.24), "heart_ay": rng.uniform(0.2, 0.26),
        "rib_freq": rng.uniform(4.0, 5.5), "rib_phase": rng.uniform(0, 2 * np.pi),
        "tissue": rng.uniform(0.42, 0.55),
        "risk": rng.choice([0.15, 0.5, 0.8], p=[0.4, 0.3, 0.3]),
    }


def _findings(rng: np.random.Generator) -> list[str]:
    kinds = ["opacity", "effusion", "cardiomegaly"]
    first = rng.choice(kinds, p=[0.6, 0.25, 0.15])
    if rng.random() < 0.25:
        return [first, rng.choice(kinds, p=[0.6, 0.25, 0.15])]
    return [first]


def _render(rng: np.random.Generator, a: dict, size: int, findings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One image in [0, 1] floats (before exposure and quantisation), and the intensity the
    findings added to it (zeros for a normal image)."""
    # pose jitter shared by every structure: shift, scale, small rotation
    ang = rng.normal(0, 0.04)
    sc = rng.normal(1.0, 0.03)
    t = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)  # pixel centres in [-1, 1]; float32 throughout
    v0, u0 = np.meshgrid(t, t, indexing="ij")  # (S, S) each; v down, u right
    u0, v0 = u0 - rng.normal(0, 0.03), v0 - rng.normal(0, 0.03)
    ca, sa = float(np.cos(ang)), float(np.sin(ang))  # Python floats keep the grids float32
    u = (ca * u0 + sa * v0) / sc
    v = (-sa * u0 + ca * v0) / sc

    body = _ellipse(u, v, 0, 0.1, a["body_ax"], a["body_ay"], 0.06)
    img = 0.05 + a["tissue"] * body
    lungs = []
    heart_scale = rng.uniform(1.35, 1.6) if "cardiomegaly" in findings else 1.0
    for side in (-1, 1):
        lung = _ellipse(u, v, side * a["lung_dx"], a["lung_cy"], a["lung_ax"], a["lung_ay"], 0.08)
        lungs.append(lung)
    lung_mask = np.maximum(*lungs)
    # ribs: bright bands inside the lungs, curving down towards the sides
    ribs = np.maximum(0, np.cos(2 * np.pi * (a["rib_freq"] * (v + 0.35 * u**2)) + a["rib_phase"])) ** 6
    img = img - 0.3 * lung_mask + 0.05 * ribs * lung_mask
    # mediastinum, spine and heart: bright, drawn over the inner lung edges
    spine = np.exp(-0.5 * (u / 0.06) ** 2) * (v > -0.9)
    heart = _ellipse(u, v, a["heart_cx"], a["heart_cy"], a["heart_ax"] * heart_scale, a["heart_ay"], 0.1)
    media = _ellipse(u, v, 0.0, -0.25, 0.1, 0.45, 0.1)
    img = img + 0.25 * np.maximum(heart, media) * lung_mask + 0.12 * spine * body
    img = img + 0.08 * np.maximum(heart, media) * (1 - lung_mask) * body
    lesion = np.zeros_like(img)
    if heart_scale != 1.0:  # cardiomegaly: what the wider heart added over the patient's own
        own = _ellipse(u, v, a["heart_cx"], a["heart_cy"], a["heart_ax"], a["heart_ay"], 0.1)
        extra = np.maximum(heart, media) - np.maximum(own, media)
        lesion = lesion + 0.25 * extra * lung_mask + 0.08 * extra * (1 - lung_mask) * body
    # clavicles
    for side in (-1, 1):
        d = (v + 0.62) - 0.35 * (side * u - 0.1) ** 2 * (side * u > 0)
        img = img + 0.1 * np.exp(-0.5 * (d / 0.03) ** 2) * (np.abs(u) < 0.6) * (side * u > 0.02)
    # diaphragm: tissue below the lungs
    img = img + 0.05 * body * (v > a["lung_cy"] + a["lung_ay"] * 0.85)

    for f in findings:
        side = int(rng.choice([0, 1]))
        cx, cy = (2 * side - 1) * a["lung_dx"], a["lung_cy"]
        if f == "opacity":
            # 2-4 blobs, mostly mid and lower zones; overlapping blobs merge (max), never stack
            blobs = np.zeros_like(u)
            for _ in range(rng.integers(2, 5)):
                bx = cx + rng.uniform(-0.6, 0.6) * a["lung_ax"]
                by = cy + rng.uniform(-0.3, 0.7) * a["lung_ay"]
                s = rng.uniform(0.09, 0.18)
                amp = rng.uniform(0.3, 0.45)
                blobs = np.maximum(blobs, amp * np.exp(-0.5 * ((u - bx) ** 2 + (v - by) ** 2) / s**2))
            img = img + blobs * lungs[side]
            lesion = lesion + blobs * lungs[side]
        elif f == "effusion":
            level = cy + a["lung_ay"] * rng.uniform(0.35, 0.75)
            # meniscus: the fluid line rises towards the chest wall
            line = level - 0.5 * (np.abs(u - cx) / a["lung_ax"]) ** 2 * 0.2
            fluid = 0.5 * (1 + np.tanh((v - line) / 0.04))
            added = rng.uniform(0.28, 0.4) * fluid * lungs[side]
            img = img + added
            lesion = lesion + added
    return img, lesion


FINDINGS = ("opacity", "effusion", "cardiomegaly")  # the planted findings, the labels of --task findings
LESION_MIN = 0.05  # a pixel belongs to the lesion mask where the findings added more than this


def make_synthetic(n: int = 2000, image_size: int = 64, seed: int = 0, return_masks: bool = False,
                   with_findings: bool = False):
    """Generate ``n`` synthetic chest X-rays.

    Returns:
        images: (n, S, S) uint8; labels: (n,) int64 (0 normal, 1 abnormal);
        patients: (n,) str ("syn00042"); paths: (n,) str ("synthetic/syn00042_001");
        with ``return_masks``, a fifth array: (n, S, S) bool, where the planted findings added more
        than ``LESION_MIN`` to the [0, 1] intensity before blur and exposure (all False for a normal
        image). Asking for masks changes no image.
        with ``with_findings``, then (n, 3) int64: 1 where the image carries the finding of
        ``FINDINGS`` (an abnormal image has one or two). Neither flag changes any image.

    Patient k's images depend only on (seed, k), so a larger ``n`` extends a smaller one.
    """
    if n < 1:
        raise ValueError(f"synthetic dataset size must be >= 1, got {n}")
    images = np.empty((n, image_size, image_size), np.uint8)
    masks = np.zeros((n, image_size, image_size), bool) if return_masks else None
    labels = np.empty(n, np.int64)
    findings = np.zeros((n, len(FINDINGS)), np.int64)
    patients, paths = [], []
    i, k = 0, 0
    while i < n:
        rng = np.random.default_rng([seed, k])
        a = _patient_anatomy(rng)
        for j in range(min(int(rng.integers(1, 7)), n - i)):
            y = int(rng.random() < a["risk"])
            planted = _findings(rng) if y else []
            img, lesion = _render(rng, a, image_size, planted)
            if return_masks:
                masks[i] = lesion > LESION_MIN
            img = _blur(img, rng.uniform(0.3, 0.9) * image_size / 64)
            # exposure: gain, offset and gamma per image; then quantum noise
            img = np.clip(img, 0, 1) ** rng.uniform(0.85, 1.2)
            img = img * float(np.exp(rng.normal(0, 0.12))) + rng.normal(0, 0.03)
            img = img + 0.025 * rng.standard_normal(img.shape, dtype=np.float32)
            images[i] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
            labels[i] = y
            findings[i, [FINDINGS.index(f) for f in planted]] = 1
            patients.append(f"syn{k:05d}")
            paths.append(f"synthetic/syn{k:05d}_{j:03d}")
            i += 1
        k += 1
    extra = ([masks] if return_masks else []) + ([findings] if with_findings else [])
    if extra:
        return (images, labels, np.array(patients), np.array(paths), *extra)
    return images, labels, np.array(patients), np.array(paths)
