"""Colour names for captions, and named colours for randomising materials.

A colour is named by its nearest anchor in CIELAB (several anchors per name, e.g. light and dark
grey are both "grey"). Randomised materials are drawn *from* the anchors (with a small jitter that
keeps the name), so the name in a caption always matches the rendered material colour.
"""

from __future__ import annotations

import numpy as np

# name -> sRGB anchors (0-255)
ANCHORS: dict[str, list[tuple[int, int, int]]] = {
    "white": [(245, 245, 245), (228, 226, 220)],
    "black": [(20, 20, 20), (45, 45, 48)],
    "grey": [(90, 90, 92), (128, 128, 128), (172, 172, 170)],
    "red": [(190, 30, 30), (140, 22, 28), (215, 60, 50)],
    "orange": [(232, 120, 30), (200, 95, 35)],
    "yellow": [(232, 208, 50), (240, 225, 110)],
    "green": [(50, 130, 55), (115, 160, 60), (30, 80, 45)],
    "blue": [(40, 70, 165), (90, 140, 210), (25, 35, 95)],
    "purple": [(110, 50, 140), (150, 100, 180)],
    "pink": [(232, 140, 170), (215, 90, 140)],
    "brown": [(120, 72, 32), (88, 55, 35), (155, 105, 62)],
    "beige": [(225, 205, 165), (205, 185, 145)],
}
COLOR_NAMES: tuple[str, ...] = tuple(ANCHORS)

_NAMES = np.array([name for name, anchors in ANCHORS.items() for _ in anchors])
_ANCHOR_RGB = np.array([rgb for anchors in ANCHORS.values() for rgb in anchors], dtype=np.float64) / 255.0


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (..., 3) -> CIELAB (D65)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


_ANCHOR_LAB = srgb_to_lab(_ANCHOR_RGB)


def color_name(rgb) -> str:
    """Name of an sRGB colour in [0, 1]."""
    lab = srgb_to_lab(np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0))
    return str(_NAMES[int(np.argmin(np.linalg.norm(_ANCHOR_LAB - lab, axis=1)))])


def dominant_point_color(rgb: np.ndarray, min_share: float = 0.45) -> str | None:
    """The name most of a point set's sRGB colours (N, 3; uint8 or [0, 1]) carry, or None when no
    name covers ``min_share`` of the points: :func:`dominant_color` for measured points."""
    rgb = np.asarray(rgb)
    if len(rgb) == 0:
        return None
    unit = rgb / 255.0 if rgb.dtype == np.uint8 else np.clip(rgb.astype(np.float64), 0.0, 1.0)
    lab = srgb_to_lab(unit)
    nearest = np.argmin(((lab[:, None, :] - _ANCHOR_LAB[None, :, :]) ** 2).sum(axis=2), axis=1)
    names, counts = np.unique(_NAMES[nearest], return_counts=True)
    best = int(np.argmax(counts))
    return str(names[best]) if counts[best] >= min_share * len(rgb) else None


def sample_color(
    rng: np.random.Generator, names: tuple[str, ...] = COLOR_NAMES
) -> tuple[str, tuple[float, float, float]]:
    """A random named colour: (name, sRGB in [0, 1]) with ``color_name(rgb) == name``."""
    name = names[int(rng.integers(len(names)))]
    anchors = ANCHORS[name]
    base = np.asarray(anchors[int(rng.integers(len(anchors)))], dtype=np.float64) / 255.0
    rgb = np.clip(base + rng.normal(0.0, 0.03, 3), 0.0, 1.0)
    if color_name(rgb) != name:
        rgb = base
    return name, tuple(float(c) for c in rgb)


def dominant_color(colors: list[tuple[float, float, float]], areas: list[float], min_share: float = 0.45) -> str | None:
    """The name covering the largest surface share, or None when no name covers ``min_share``."""
    if not colors:
        return None
    share: dict[str, float] = {}
    total = float(sum(areas)) or 1.0
    for rgb, area in zip(colors, areas):
        name = color_name(rgb)
        share[name] = share.get(name, 0.0) + area / total
    name, best = max(sorted(share.items()), key=lambda kv: kv[1])
    return name if best >= min_share else None
