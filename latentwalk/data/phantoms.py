"""Procedural phantom datasets: the embedded default that lets latentwalk run offline with known ground truth.

Real tuberculosis and diabetic-retinopathy datasets cannot be shipped, so the tool carries two procedural stand-ins:

* ``cxr``: 1-channel chest-radiograph phantoms. A patient (identity) has a persistent anatomy: lung-field outlines
  with their own harmonics, rib spacing and curvature, heart silhouette, clavicle angles, spine curvature and a few
  patient-specific marks (ECG electrodes, surgical clips). Each image of that patient differs in acquisition only
  (exposure, gamma, a small shift/rotation/scale, noise). Label per patient: 0 normal, 1 TB (upper-lobe
  consolidations, cavities and nodule clusters, persistent for that patient).
* ``fundus``: 3-channel fundus phantoms. A patient has a pigmentation colour and choroidal texture, an optic-disc
  size and, per eye, a vessel tree branching from the disc; left and right eyes are mirror images of the layout with
  different trees. Images vary in illumination, field of view, rotation and noise. Label per eye: DR grade 0-4
  (microaneurysms, haemorrhages, hard exudates, cotton-wool spots, neovascularisation, increasing with the grade).

Everything is rendered analytically in the patient's own coordinate frame, then seen through the image's acquisition
transform, so the same patient looks the same up to acquisition changes. Randomness comes from
``numpy.random.SeedSequence([seed, kind, patient, image])``: the same configuration gives byte-identical files, and any
one image can be re-rendered alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentwalk.config import StageConfig
from latentwalk.data.splits import DEFAULT_FRACTIONS
from latentwalk.errors import ConfigError

__all__ = [
    "KINDS",
    "LABEL_NAMES",
    "PhantomConfig",
    "PhantomImage",
    "generate_phantoms",
    "render_phantom",
    "write_phantom_dataset",
]

KINDS = ("cxr", "fundus")
LABEL_NAMES = {
    "cxr": ("normal", "tb"),
    "fundus": ("no_dr", "mild", "moderate", "severe", "proliferative"),
}
CHANNELS = {"cxr": 1, "fundus": 3}
_KIND_CODE = {"cxr": 1, "fundus": 2}
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class PhantomConfig(StageConfig):
    """What phantom dataset to make.

    Attributes:
        kind: ``"cxr"`` (1-channel radiographs, TB vs normal) or ``"fundus"`` (RGB, DR grade 0-4).
        identities: number of synthetic patients, >= 2.
        per_identity: images per patient, >= 1 (1 = one image per patient, as in Shenzhen and Montgomery).
        resolution: square image side in pixels, 32-256.
        class_weights: relative frequency of each label over patients (cxr: 2 values, fundus: 5 values);
            ``None`` = balanced. Labels are assigned by exact proportion, not drawn independently.
        seed: base seed; the same configuration and seed give byte-identical files.
        split: train/val/test fractions of patients for the identity-disjoint, label-stratified split.
    """

    kind: str = "cxr"  # "cxr" | "fundus"
    identities: int = 100  # patients, >= 2
    per_identity: int = 4  # images per patient, >= 1
    resolution: int = 64  # pixels per side, 32-256
    class_weights: tuple[float, ...] | None = None  # relative label frequency over patients; None = balanced
    seed: int = 0  # base seed
    split: tuple[float, float, float] = DEFAULT_FRACTIONS  # train/val/test fractions of patients

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f'unknown phantom kind "{self.kind}"; expected one of {", ".join(KINDS)}')
        if self.identities < 2:
            raise ConfigError(f"identities must be >= 2, got {self.identities}")
        if self.per_identity < 1:
            raise ConfigError(f"per_identity must be >= 1, got {self.per_identity}")
        if not 32 <= self.resolution <= 256:
            raise ConfigError(f"resolution must be between 32 and 256 pixels, got {self.resolution}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        n_labels = len(LABEL_NAMES[self.kind])
        if self.class_weights is not None:
            w = tuple(float(x) for x in self.class_weights)
            if len(w) != n_labels or any(x < 0 or not math.isfinite(x) for x in w) or sum(w) <= 0:
                raise ConfigError(
                    f"class_weights for {self.kind} need {n_labels} non-negative numbers with a positive sum, "
                    f"got {self.class_weights}"
                )
            object.__setattr__(self, "class_weights", w)
        split = tuple(float(x) for x in self.split)
        if len(split) != 3 or any(x < 0 for x in split) or abs(sum(split) - 1.0) > 1e-6:
            raise ConfigError(f"split needs three non-negative fractions summing to 1, got {self.split}")
        object.__setattr__(self, "split", split)

    @property
    def label_names(self) -> tuple[str, ...]:
        return LABEL_NAMES[self.kind]

    @property
    def channels(self) -> int:
        return CHANNELS[self.kind]


@dataclass(frozen=True)
class PhantomImage:
    """One rendered phantom with its ground truth.

    Attributes:
        pixels: uint8 array ``[R, R]`` (cxr) or ``[R, R, 3]`` (fundus).
        identity: synthetic patient id, e.g. ``"p0007"``.
        label: class index into ``LABEL_NAMES[kind]``.
        name: file stem, unique in the dataset (``p0007_00`` or ``p0007_left_01``).
        params: the generating parameters of this image (acquisition, eye, lesions) as plain JSON data.
    """

    pixels: np.ndarray
    identity: str
    label: int
    name: str
    params: dict = field(repr=False)


# ----------------------------------------------------------------------------------------------------------------
# Shared geometry


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(keys)))


def _grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``[R, R]`` in [-1, 1]; x to the right, y downwards."""
    c = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution * 2.0 - 1.0
    return np.meshgrid(c, c, indexing="xy")


def _acquire(resolution: int, acq: dict) -> tuple[np.ndarray, np.ndarray]:
    """Patient-frame coordinates of every pixel under the image's rotation, scale and shift."""
    x, y = _grid(resolution)
    x = (x - acq["shift_x"]) / acq["scale"]
    y = (y - acq["shift_y"]) / acq["scale"]
    c, s = math.cos(acq["rotation"]), math.sin(acq["rotation"])
    return (c * x + s * y).astype(np.float32), (-s * x + c * y).astype(np.float32)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def _blob(u: np.ndarray, v: np.ndarray, cx: float, cy: float, sigma: float) -> np.ndarray:
    return np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2.0 * sigma * sigma))


def _exact_labels(n: int, weights: tuple[float, ...] | None, n_labels: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels in exact proportion to ``weights`` (largest remainder), shuffled."""
    w = np.ones(n_labels) if weights is None else np.asarray(weights, dtype=np.float64)
    share = w / w.sum() * n
    counts = np.floor(share).astype(int)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    labels = np.repeat(np.arange(n_labels), counts)
    rng.shuffle(labels)
    return labels


def _r(x: float) -> float:
    return round(float(x), 5)


# ----------------------------------------------------------------------------------------------------------------
# Chest radiographs


def _sample_cxr_patient(rng: np.random.Generator, label: int) -> dict:
    """Persistent anatomy (and TB lesions when ``label == 1``) of one patient, in patient coordinates."""
    lungs = []
    for side in (-1, 1):
        lungs.append(
            {
                "cx": _r(side * rng.uniform(0.30, 0.40)),
                "cy": _r(rng.uniform(-0.08, 0.04)),
                "rx": _r(rng.uniform(0.21, 0.29)),
                "ry": _r(rng.uniform(0.46, 0.60)),
                "harm": [[_r(rng.uniform(0.0, 0.07)), _r(rng.uniform(0, 2 * math.pi))] for _ in range(3)],
            }
        )
    marks = []  # metal on or in the patient (ECG electrodes, clips, wires): small, saturated, sharp-edged
    for _ in range(int(rng.integers(1, 4))):
        marks.append(
            {
                "x": _r(rng.uniform(-0.75, 0.75)),
                "y": _r(rng.uniform(-0.85, 0.75)),
                "size": _r(rng.uniform(0.018, 0.035)),
                "shape": str(rng.choice(["disc", "ring", "bar"])),
                "angle": _r(rng.uniform(0, math.pi)),
            }
        )
    lesions = []  # TB: soft, hazy, upper-zone opacities (unlike the sharp saturated marks)
    if label == 1:
        for _ in range(int(rng.integers(2, 5))):
            side = float(rng.choice([-1.0, 1.0]))
            lesions.append(
                {
                    "type": str(rng.choice(["consolidation", "cavity", "nodules"], p=[0.5, 0.2, 0.3])),
                    "x": _r(side * rng.uniform(0.22, 0.46)),
                    "y": _r(rng.uniform(-0.55, -0.10)),
                    "size": _r(rng.uniform(0.08, 0.15)),
                    "seed": int(rng.integers(0, 2**31)),
                }
            )
    return {
        "body_rx": _r(rng.uniform(0.80, 0.92)),
        "body_level": _r(rng.uniform(0.30, 0.40)),
        "lungs": lungs,
        "lung_level": _r(rng.uniform(0.22, 0.30)),
        "heart": {
            "cx": _r(rng.uniform(0.04, 0.14)),
            "cy": _r(rng.uniform(0.28, 0.42)),
            "rx": _r(rng.uniform(0.20, 0.29)),
            "ry": _r(rng.uniform(0.17, 0.25)),
        },
        "spine": {
            "width": _r(rng.uniform(0.10, 0.15)),
            "bend": _r(rng.uniform(-0.06, 0.06)),
            "freq": _r(rng.uniform(0.5, 1.5)),
        },
        "ribs": {
            "spacing": _r(rng.uniform(0.125, 0.175)),
            "slope": _r(rng.uniform(0.20, 0.45)),
            "curve": _r(rng.uniform(0.05, 0.40)),
            "phase": _r(rng.uniform(0.0, 1.0)),
            "sharp": _r(rng.uniform(3.0, 7.0)),
            "level": _r(rng.uniform(0.09, 0.15)),
        },
        "clavicle": {
            "y": _r(rng.uniform(-0.80, -0.66)),
            "slope": _r(rng.uniform(-0.30, 0.05)),
            "length": _r(rng.uniform(0.45, 0.62)),
        },
        "marks": marks,
        "lesions": lesions,
    }


def _sample_cxr_acquisition(rng: np.random.Generator) -> dict:
    return {
        "shift_x": _r(rng.uniform(-0.04, 0.04)),
        "shift_y": _r(rng.uniform(-0.04, 0.04)),
        "rotation": _r(rng.uniform(-0.06, 0.06)),
        "scale": _r(rng.uniform(0.95, 1.05)),
        "gain": _r(rng.uniform(0.85, 1.15)),
        "gamma": _r(rng.uniform(0.85, 1.20)),
        "noise": _r(rng.uniform(0.008, 0.03)),
        "noise_seed": int(rng.integers(0, 2**31)),
    }


def _lung_mask(u: np.ndarray, v: np.ndarray, lung: dict, edge: float) -> np.ndarray:
    du, dv = (u - lung["cx"]) / lung["rx"], (v - lung["cy"]) / lung["ry"]
    rho = np.sqrt(du * du + dv * dv)
    phi = np.arctan2(dv, du)
    radius = np.ones_like(rho)
    for k, (amp, phase) in enumerate(lung["harm"], start=2):
        radius = radius + amp * np.cos(k * phi + phase)
    # flatten the lower edge a little (diaphragm dome): points far below the centre see a smaller radius
    radius = radius - 0.12 * np.clip(dv, 0, None) ** 2
    return _sigmoid((radius - rho) / edge)


def _tb_lesion(u: np.ndarray, v: np.ndarray, lesion: dict, min_sigma: float) -> np.ndarray:
    size = lesion["size"]
    if lesion["type"] == "consolidation":
        sub = _rng(lesion["seed"])
        out = np.zeros_like(u)
        for _ in range(4):
            ox, oy = sub.normal(0, size * 0.5, size=2)
            out += 0.35 * _blob(u, v, lesion["x"] + ox, lesion["y"] + oy, max(size * sub.uniform(0.5, 0.9), min_sigma))
        return np.minimum(out, 0.45)
    if lesion["type"] == "cavity":
        rad = size * 0.55
        d = np.sqrt((u - lesion["x"]) ** 2 + (v - lesion["y"]) ** 2)
        width = max(size * 0.22, min_sigma)
        rim = np.exp(-((d - rad) ** 2) / (2 * width * width))
        return 0.38 * rim - 0.12 * _blob(u, v, lesion["x"], lesion["y"], max(rad * 0.6, min_sigma))
    sub = _rng(lesion["seed"])
    out = np.zeros_like(u)
    for _ in range(int(sub.integers(4, 9))):
        ox, oy = sub.normal(0, size * 0.7, size=2)
        out += 0.32 * _blob(u, v, lesion["x"] + ox, lesion["y"] + oy, max(size * 0.18, min_sigma))
    return out


def _mark(u: np.ndarray, v: np.ndarray, mark: dict, edge: float) -> np.ndarray:
    du, dv = u - mark["x"], v - mark["y"]
    if mark["shape"] == "bar":
        c, s = math.cos(mark["angle"]), math.sin(mark["angle"])
        a, b = c * du + s * dv, -s * du + c * dv
        return _sigmoid((mark["size"] * 1.6 - np.abs(a)) / edge) * _sigmoid((mark["size"] * 0.35 - np.abs(b)) / edge)
    d = np.sqrt(du * du + dv * dv)
    disc = _sigmoid((mark["size"] - d) / edge)
    if mark["shape"] == "ring":
        return disc * (1.0 - 0.75 * _sigmoid((mark["size"] * 0.55 - d) / edge))
    return disc


def _render_cxr(patient: dict, acq: dict, resolution: int) -> np.ndarray:
    """Render one radiograph ``[R, R]`` float32 in [0, 1] (bright = dense)."""
    u, v = _acquire(resolution, acq)
    px = 2.0 / resolution
    edge = max(0.012, 0.6 * px)
    body = _sigmoid((1.0 - np.sqrt((u / patient["body_rx"]) ** 2 + ((v - 0.05) / 1.08) ** 2)) / (3 * edge))
    density = 0.04 + patient["body_level"] * body
    # shoulders: soft tissue above the lungs is denser
    density += 0.10 * body * _sigmoid((-0.55 - v) / 0.08)
    lungs = np.maximum(*(_lung_mask(u, v, lung, 2 * edge / lung["rx"]) for lung in patient["lungs"]))
    # ribs: periodic bands whose phase falls laterally (posterior ribs run down and out)
    rb = patient["ribs"]
    au = np.abs(u)
    phase = (v + 0.62 - rb["slope"] * au - rb["curve"] * au * au) / rb["spacing"] + rb["phase"]
    bands = (0.5 + 0.5 * np.cos(2 * math.pi * phase)) ** rb["sharp"]
    rib_zone = _sigmoid((phase - 0.2) / 0.3) * _sigmoid((10.5 - phase) / 0.3) * _sigmoid((0.9 - au) / 0.05)
    ribs = rb["level"] * bands * rib_zone * body
    density = density - patient["lung_level"] * lungs + ribs
    # spine and mediastinum
    sp = patient["spine"]
    centre = sp["bend"] * np.sin(math.pi * sp["freq"] * v)
    spine = _sigmoid((sp["width"] - np.abs(u - centre)) / (2 * edge)) * body
    vertebrae = 0.5 + 0.5 * np.cos(2 * math.pi * (v + 1.0) / 0.11)
    density += spine * (0.14 + 0.05 * vertebrae) * (1 - 0.6 * lungs)
    hp = patient["heart"]
    heart = _sigmoid((1.0 - np.sqrt(((u - hp["cx"]) / hp["rx"]) ** 2 + ((v - hp["cy"]) / hp["ry"]) ** 2)) / 0.08)
    density += 0.26 * heart
    # clavicles
    cl = patient["clavicle"]
    for side in (-1, 1):
        t = side * u
        line = cl["y"] + cl["slope"] * t
        along = _sigmoid((t - 0.06) / edge) * _sigmoid((cl["length"] - t) / (2 * edge))
        density += 0.16 * np.exp(-((v - line) ** 2) / (2 * 0.028**2)) * along
    min_sigma = 0.7 * px
    for lesion in patient["lesions"]:
        density += _tb_lesion(u, v, lesion, min_sigma) * lungs
    for mark in patient["marks"]:
        density += 1.2 * _mark(u, v, mark, 0.5 * edge)
    img = np.clip(density * acq["gain"], 0.0, 1.0) ** acq["gamma"]
    noise = _rng(acq["noise_seed"]).standard_normal(img.shape).astype(np.float32)
    return np.clip(img + acq["noise"] * noise, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Fundus photographs


def _vessel_tree(rng: np.random.Generator, disc: tuple[float, float], side: float) -> list[list[float]]:
    """Segments ``[x0, y0, x1, y1, width, vein]`` of one eye's vessel tree, growing from the optic disc.

    ``side`` is +1 for a right eye (disc on the image's right, macula to its left) and -1 for a left eye.
    """
    segments: list[list[float]] = []
    # four arcades: superior/inferior temporal (long, curving round the macula) and nasal (short)
    roots = []
    for vertical in (-1.0, 1.0):
        temporal = math.pi if side > 0 else 0.0
        roots.append((temporal - side * vertical * rng.uniform(0.45, 0.75), vertical, 1.0, 0.028, 0.7))
        nasal = 0.0 if side > 0 else math.pi
        roots.append((nasal + side * vertical * rng.uniform(0.5, 1.0), vertical, -1.0, 0.02, 0.45))

    def grow(x: float, y: float, angle: float, bend: float, width: float, length: float, depth: int, vein: int):
        steps = max(3, int(length / 0.05))
        for _ in range(steps):
            angle += bend + rng.normal(0, 0.12)
            nx, ny = x + math.cos(angle) * length / steps, y + math.sin(angle) * length / steps
            segments.append([_r(x), _r(y), _r(nx), _r(ny), _r(width), vein])
            x, y = nx, ny
            if x * x + y * y > 1.1:
                return
            if depth < 3 and rng.random() < 0.22:
                child = angle + float(rng.choice([-1, 1])) * rng.uniform(0.5, 1.1)
                grow(x, y, child, rng.normal(0, 0.04), width * 0.65, length * rng.uniform(0.35, 0.6), depth + 1, vein)
                width *= 0.9
        return

    for angle, vertical, temporal, width, length in roots:
        for vein in (0, 1):
            a = angle + (0.12 if vein else -0.12) * vertical
            bend = 0.05 * vertical * side if temporal > 0 else 0.0  # temporal arcades curve round the macula
            grow(disc[0], disc[1], a, bend, width * (1.15 if vein else 0.9), length * rng.uniform(0.9, 1.2), 0, vein)
    return segments


def _dr_lesions(rng: np.random.Generator, grade: int, disc: tuple[float, float], macula: tuple[float, float]) -> dict:
    """Lesions of one eye for a DR ``grade`` (0-4), in patient coordinates."""

    def spots(n: int, spread: float, centre: tuple[float, float] | None = None) -> list[list[float]]:
        pts = []
        while len(pts) < n:
            if centre is None:
                x, y = rng.uniform(-0.8, 0.8, size=2)
            else:
                x, y = rng.normal(centre, spread)
            if x * x + y * y < 0.72 and (x - disc[0]) ** 2 + (y - disc[1]) ** 2 > 0.03:
                pts.append([_r(x), _r(y)])
        return pts

    counts = {
        "microaneurysms": [0, (4, 9), (8, 16), (14, 24), (18, 28)][grade],
        "haemorrhages": [0, 0, (2, 5), (6, 12), (9, 15)][grade],
        "exudates": [0, 0, (3, 9), (8, 18), (12, 22)][grade],
        "cotton_wool": [0, 0, 0, (2, 5), (4, 7)][grade],
    }
    out: dict = {}
    for name, c in counts.items():
        n = 0 if c == 0 else int(rng.integers(c[0], c[1] + 1))
        if name == "exudates" and n:
            out[name] = spots(n, 0.18, centre=macula)
        else:
            out[name] = spots(n, 0.0)
    out["neovascularisation"] = []
    if grade == 4:
        for _ in range(int(rng.integers(1, 3))):
            near_disc = rng.random() < 0.6
            cx, cy = (
                (disc[0] + rng.normal(0, 0.08), disc[1] + rng.normal(0, 0.08)) if near_disc else tuple(spots(1, 0.0)[0])
            )
            tuft = []
            for _ in range(int(rng.integers(8, 14))):
                a = rng.uniform(0, 2 * math.pi)
                ln = rng.uniform(0.03, 0.08)
                x0, y0 = cx + rng.normal(0, 0.03), cy + rng.normal(0, 0.03)
                tuft.append([_r(x0), _r(y0), _r(x0 + ln * math.cos(a)), _r(y0 + ln * math.sin(a))])
            out["neovascularisation"].append(tuft)
    return out


def _sample_fundus_patient(rng: np.random.Generator) -> dict:
    """Persistent traits of a patient shared by both eyes (pigment, texture, disc geometry)."""
    waves = [
        [_r(rng.normal(0, 4.0)), _r(rng.normal(0, 4.0)), _r(rng.uniform(0, 2 * math.pi)), _r(rng.uniform(0.02, 0.06))]
        for _ in range(5)
    ]
    return {
        "pigment": [_r(rng.uniform(0.72, 0.92)), _r(rng.uniform(0.28, 0.44)), _r(rng.uniform(0.08, 0.20))],
        "texture": waves,
        "disc_x": _r(rng.uniform(0.38, 0.50)),
        "disc_y": _r(rng.uniform(-0.10, 0.10)),
        "disc_r": _r(rng.uniform(0.10, 0.15)),
        "cup": _r(rng.uniform(0.3, 0.6)),
        "macula_dx": _r(rng.uniform(0.42, 0.55)),
    }


def _sample_fundus_eye(rng: np.random.Generator, patient: dict, eye: str, grade: int) -> dict:
    side = 1.0 if eye == "right" else -1.0
    disc = (side * patient["disc_x"], patient["disc_y"])
    macula = (disc[0] - side * patient["macula_dx"], disc[1] + 0.05)
    return {
        "eye": eye,
        "grade": grade,
        "disc": [_r(disc[0]), _r(disc[1])],
        "macula": [_r(macula[0]), _r(macula[1])],
        "vessels": _vessel_tree(rng, disc, side),
        "lesions": _dr_lesions(rng, grade, disc, macula),
    }


def _sample_fundus_acquisition(rng: np.random.Generator) -> dict:
    return {
        "shift_x": _r(rng.uniform(-0.04, 0.04)),
        "shift_y": _r(rng.uniform(-0.04, 0.04)),
        "rotation": _r(rng.uniform(-0.10, 0.10)),
        "scale": _r(rng.uniform(0.95, 1.06)),
        "fov": _r(rng.uniform(0.90, 0.98)),
        "gain": [_r(rng.uniform(0.85, 1.1)), _r(rng.uniform(0.85, 1.1)), _r(rng.uniform(0.85, 1.1))],
        "light_angle": _r(rng.uniform(0, 2 * math.pi)),
        "light_strength": _r(rng.uniform(0.0, 0.25)),
        "noise": _r(rng.uniform(0.005, 0.02)),
        "noise_seed": int(rng.integers(0, 2**31)),
    }


def _to_image_frame(points: np.ndarray, acq: dict) -> np.ndarray:
    """Map patient-frame points ``[..., 2]`` to image coordinates (the inverse of :func:`_acquire`)."""
    c, s = math.cos(acq["rotation"]), math.sin(acq["rotation"])
    u, v = points[..., 0], points[..., 1]
    x = (c * u - s * v) * acq["scale"] + acq["shift_x"]
    y = (s * u + c * v) * acq["scale"] + acq["shift_y"]
    return np.stack([x, y], axis=-1)


def _render_lines(seg: np.ndarray, half_width: np.ndarray, acq: dict, resolution: int, min_w: float) -> np.ndarray:
    """Soft coverage ``[R, R]`` in [0, 1] of patient-frame segments ``[S, 4]`` with half-widths ``[S]``.

    Each segment is drawn only inside its own bounding box in the image, so the cost grows with the drawn area,
    not with pixels x segments.
    """
    cover = np.zeros((resolution, resolution), dtype=np.float32)
    if len(seg) == 0:
        return cover
    ends = _to_image_frame(seg.reshape(-1, 2, 2), acq)  # [S, 2, 2] image coordinates
    widths = np.maximum(half_width * acq["scale"], min_w)
    px = 2.0 / resolution
    for (a, b), w in zip(ends, widths, strict=True):
        reach = 2.5 * w + px
        lo = np.floor((np.minimum(a, b) - reach + 1.0) / px).astype(int).clip(0, resolution)
        hi = np.ceil((np.maximum(a, b) + reach + 1.0) / px).astype(int).clip(0, resolution)
        if lo[0] >= hi[0] or lo[1] >= hi[1]:
            continue
        xs = (np.arange(lo[0], hi[0], dtype=np.float32) + 0.5) * px - 1.0
        ys = (np.arange(lo[1], hi[1], dtype=np.float32) + 0.5) * px - 1.0
        gx, gy = np.meshgrid(xs, ys, indexing="xy")
        ab = b - a
        t = np.clip(((gx - a[0]) * ab[0] + (gy - a[1]) * ab[1]) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        d2 = (gx - a[0] - t * ab[0]) ** 2 + (gy - a[1] - t * ab[1]) ** 2
        window = cover[lo[1] : hi[1], lo[0] : hi[0]]
        np.maximum(window, np.exp(-d2 / (w * w)), out=window)
    return cover


def _render_fundus(patient: dict, eye: dict, acq: dict, resolution: int) -> np.ndarray:
    """Render one fundus photograph ``[R, R, 3]`` float32 in [0, 1]."""
    u, v = _acquire(resolution, acq)
    x, y = _grid(resolution)
    px = 2.0 / resolution
    r2 = u * u + v * v
    base = np.asarray(patient["pigment"], dtype=np.float32)
    texture = np.zeros_like(u)
    for fx, fy, ph, amp in patient["texture"]:
        texture += amp * np.sin(fx * u + fy * v + ph)
    shade = (1.0 - 0.35 * r2 + texture)[..., None]
    img = base[None, None, :] * shade
    # macula: darker, slightly browner
    mx, my = eye["macula"]
    mac = _blob(u, v, mx, my, 0.13)
    img = img * (1.0 - 0.35 * mac[..., None])
    # vessels (veins darker and wider than arteries)
    seg = np.asarray(eye["vessels"], dtype=np.float32)
    for vein, colour in ((0, (0.62, 0.12, 0.08)), (1, (0.42, 0.05, 0.05))):
        sel = seg[seg[:, 5] == vein]
        cover = _render_lines(sel[:, :4], sel[:, 4] * 0.5, acq, resolution, 0.45 * px)
        img = img * (1 - cover[..., None]) + np.asarray(colour, np.float32) * cover[..., None] * shade
    # optic disc with a brighter cup
    dx, dy = eye["disc"]
    dd = np.sqrt((u - dx) ** 2 + (v - dy) ** 2)
    disc = _sigmoid((patient["disc_r"] - dd) / max(0.015, 0.6 * px))
    cup = _blob(u, v, dx, dy, patient["disc_r"] * patient["cup"] * 0.7)
    disc_colour = np.asarray([1.0, 0.85, 0.55], np.float32)
    img = img * (1 - 0.85 * disc[..., None]) + 0.85 * disc[..., None] * disc_colour * (0.8 + 0.25 * cup[..., None])
    # lesions
    les = eye["lesions"]
    min_sigma = 0.7 * px

    def paint(points: list, sigma: float, colour: tuple[float, float, float], alpha: float) -> None:
        nonlocal img
        if not points:
            return
        cover = np.zeros_like(u)
        for cx, cy in points:
            cover = np.maximum(cover, _blob(u, v, cx, cy, max(sigma, min_sigma)))
        a = alpha * cover[..., None]
        img = img * (1 - a) + a * np.asarray(colour, np.float32)

    paint(les["microaneurysms"], 0.010, (0.45, 0.02, 0.02), 0.95)
    paint(les["haemorrhages"], 0.030, (0.40, 0.03, 0.03), 0.9)
    paint(les["exudates"], 0.014, (1.0, 0.95, 0.45), 0.95)
    paint(les["cotton_wool"], 0.040, (0.95, 0.92, 0.82), 0.8)
    for tuft in les["neovascularisation"]:
        t = np.asarray(tuft, dtype=np.float32)
        cover = _render_lines(t, np.full(len(t), 0.006, np.float32), acq, resolution, 0.4 * px)
        img = img * (1 - 0.9 * cover[..., None]) + 0.9 * cover[..., None] * np.asarray((0.55, 0.05, 0.08), np.float32)
    # acquisition: colour gain, directional illumination, circular field of view, noise
    la = acq["light_angle"]
    light = 1.0 + acq["light_strength"] * (math.cos(la) * x + math.sin(la) * y)
    img = img * np.asarray(acq["gain"], np.float32)[None, None, :] * light[..., None]
    fov = _sigmoid((acq["fov"] - np.sqrt(x * x + y * y)) / max(0.01, 0.5 * px))
    noise = _rng(acq["noise_seed"]).standard_normal(img.shape).astype(np.float32)
    img = (np.clip(img, 0, 1) + acq["noise"] * noise) * fov[..., None]
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Datasets


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.round(img * 255.0).astype(np.uint8)


def _patient_labels(cfg: PhantomConfig) -> np.ndarray:
    return _exact_labels(cfg.identities, cfg.class_weights, len(cfg.label_names), _rng(cfg.seed, _KIND_CODE[cfg.kind]))


def render_phantom(cfg: PhantomConfig, patient_index: int, image_index: int) -> PhantomImage:
    """Render image ``image_index`` of patient ``patient_index`` under ``cfg`` (deterministic, independent of order).

    Returns:
        :class:`PhantomImage` with uint8 pixels ``[R, R]`` (cxr) or ``[R, R, 3]`` (fundus) and ground truth.
    """
    if not 0 <= patient_index < cfg.identities or not 0 <= image_index < cfg.per_identity:
        raise ConfigError(
            f"phantom ({patient_index}, {image_index}) is outside {cfg.identities} patients x {cfg.per_identity} images"
        )
    code = _KIND_CODE[cfg.kind]
    label = int(_patient_labels(cfg)[patient_index])
    identity = f"p{patient_index:04d}"
    patient_rng = _rng(cfg.seed, code, patient_index)
    image_rng = _rng(cfg.seed, code, patient_index, image_index + 1)
    if cfg.kind == "cxr":
        patient = _sample_cxr_patient(patient_rng, label)
        acq = _sample_cxr_acquisition(image_rng)
        pixels = _to_uint8(_render_cxr(patient, acq, cfg.resolution))
        return PhantomImage(pixels, identity, label, f"{identity}_{image_index:02d}", {"acquisition": acq})
    patient = _sample_fundus_patient(patient_rng)
    first = "right" if patient_rng.random() < 0.5 else "left"
    other = "left" if first == "right" else "right"
    # the fellow eye's grade equals the patient's grade in ~70% of patients and differs by one otherwise
    fellow = int(np.clip(label + patient_rng.choice([0, 0, 0, 0, 0, 0, 0, -1, 1, 1]), 0, 4))
    eye_name = first if image_index % 2 == 0 else other
    grade = label if eye_name == first else fellow
    eye = _sample_fundus_eye(
        _rng(cfg.seed, code, patient_index, 0, 0 if eye_name == "right" else 1), patient, eye_name, grade
    )
    acq = _sample_fundus_acquisition(image_rng)
    pixels = _to_uint8(_render_fundus(patient, eye, acq, cfg.resolution))
    params = {"acquisition": acq, "eye": eye_name, "lesions": eye["lesions"]}
    return PhantomImage(pixels, identity, grade, f"{identity}_{eye_name}_{image_index:02d}", params)


def _patient_ground_truth(cfg: PhantomConfig, patient_index: int) -> dict:
    code = _KIND_CODE[cfg.kind]
    rng = _rng(cfg.seed, code, patient_index)
    if cfg.kind == "cxr":
        return _sample_cxr_patient(rng, int(_patient_labels(cfg)[patient_index]))
    return _sample_fundus_patient(rng)


def generate_phantoms(cfg: PhantomConfig, *, progress: bool = False) -> Iterator[PhantomImage]:
    """Yield every phantom of ``cfg``, patient by patient."""
    from tqdm.auto import tqdm

    total = cfg.identities * cfg.per_identity
    with tqdm(total=total, desc=f"phantoms:{cfg.kind}", unit="img", disable=not progress) as bar:
        for p in range(cfg.identities):
            for j in range(cfg.per_identity):
                yield render_phantom(cfg, p, j)
                bar.update(1)


def write_phantom_dataset(cfg: PhantomConfig, out: str | Path, *, overwrite: bool = False, progress: bool = False):
    """Write a phantom dataset in latentwalk's own format and return its :class:`DatasetIndex`.

    Layout: ``images/<label>/<name>.png``, ``metadata.csv`` (file, identity, label, split), ``dataset.json`` (label
    names, channels, resolution, the configuration) and ``ground_truth.json`` (per-patient anatomy and per-image
    acquisition and lesions). The folder is built aside and moved into place at the end: an interrupted run leaves
    nothing behind.

    Raises:
        ConfigError: if ``out`` exists and is not empty (unless ``overwrite`` and latentwalk wrote it), or cannot be
            written (see :mod:`latentwalk.outputs`).
    """
    from PIL import Image

    from latentwalk import __version__
    from latentwalk.data.layouts import open_dataset
    from latentwalk.data.records import DatasetIndex, ImageRecord
    from latentwalk.data.splits import split_identities
    from latentwalk.io import write_csv, write_json
    from latentwalk.outputs import staged_dir

    out = Path(out)
    with staged_dir(out, "data phantoms", overwrite=overwrite) as stage:
        rows, images_gt = [], {}
        for ph in generate_phantoms(cfg, progress=progress):
            rel = f"images/{ph.label}/{ph.name}.png"
            (stage / "images" / str(ph.label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(ph.pixels).save(stage / rel, format="PNG", optimize=False)
            rows.append({"file": rel, "identity": ph.identity, "label": ph.label})
            images_gt[rel] = {"identity": ph.identity, "label": ph.label, **ph.params}
        draft = DatasetIndex(
            root=stage,
            layout="native",
            records=tuple(ImageRecord(stage / r["file"], r["identity"], r["label"]) for r in rows),
            label_names=cfg.label_names,
            channels=cfg.channels,
        )
        assignment = split_identities(draft, fractions=cfg.split, seed=cfg.seed)
        for r in rows:
            r["split"] = assignment[r["identity"]]
        rows.sort(key=lambda r: r["file"])
        write_csv(stage / "metadata.csv", ["file", "identity", "label", "split"], rows)
        write_json(
            stage / "dataset.json",
            {
                "name": f"phantom-{cfg.kind}",
                "label_names": list(cfg.label_names),
                "channels": cfg.channels,
                "resolution": cfg.resolution,
                "source": "latentwalk.data.phantoms",
                "format_version": _FORMAT_VERSION,
                "latentwalk_version": __version__,
                "config": cfg.to_dict(),
            },
        )
        patients = {f"p{p:04d}": _patient_ground_truth(cfg, p) for p in range(cfg.identities)}
        write_json(stage / "ground_truth.json", {"kind": cfg.kind, "patients": patients, "images": images_gt})
    return open_dataset(out, layout="native")
