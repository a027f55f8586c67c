"""Depth sensor models applied to rendered (exact) depth.

``kinect`` -- a structured-light camera (Kinect v1 / Xtion class), after Nguyen, Izadi & Lovell,
"Modeling Kinect Sensor Noise for Improved 3D Reconstruction and Tracking" (3DIMPVT 2012):

* axial noise ``sigma_z(z, theta) = 0.0012 + 0.0019 (z - 0.4)^2 + 0.0001 / sqrt(z) * theta^2 / (pi/2 - theta)^2``
  metres (the last term only matters at grazing angles ``theta`` between ray and surface normal);
* disparity quantisation: the sensor measures disparity in 1/8 pixel steps with focal length 580 px
  and baseline 7.5 cm, so depth comes in steps of ``z^2 / (8 * 580 * 0.075)`` (3 mm at 1 m, 2.6 cm at 3 m);
* dropout: outside 0.4-4.5 m; at grazing angles (probability rising from 0 at 70 degrees to 1 at
  85 degrees); at depth discontinuities, where the projector's pattern is shadowed (pixels whose
  4-neighbourhood jumps by more than 5 % of the depth are lost with probability 0.6); and speckle
  (0.5 % of the remaining pixels).

``tof`` -- a time-of-flight camera (Azure Kinect / Kinect v2 class): ``sigma_z = 0.0015 + 0.0012 z``
with no quantisation, 0.25-5.0 m range, grazing-angle dropout as above and *flying pixels*: at
depth discontinuities, pixels take a depth mixed between foreground and background with
probability 0.5 (their label stays that of the rendered pixel, as on a real sensor's
annotation).

``ideal`` -- exact depth in 0.05-12 m (tests and debugging).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .camera import Intrinsics, depth_normals

KINECT_FOCAL_PX = 580.0
KINECT_BASELINE_M = 0.075
KINECT_SUBPIXEL = 8.0


@dataclass(frozen=True)
class SensorModel:
    name: str
    min_range: float
    max_range: float
    noise: bool = True
    grazing_dropout: bool = True
    edge_dropout: float = 0.0  # probability of losing a pixel at a depth discontinuity
    flying_pixels: float = 0.0  # probability of a mixed-depth pixel at a discontinuity
    speckle: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


SENSORS = {
    "kinect": SensorModel("kinect", 0.4, 4.5, edge_dropout=0.6, speckle=0.005),
    "tof": SensorModel("tof", 0.25, 5.0, flying_pixels=0.5, speckle=0.002),
    "ideal": SensorModel("ideal", 0.05, 12.0, noise=False, grazing_dropout=False),
}


def get_sensor(name: str) -> SensorModel:
    try:
        return SENSORS[name]
    except KeyError:
        raise ValueError(f"unknown sensor model {name!r}; choose one of {', '.join(SENSORS)}") from None


def kinect_sigma(z: np.ndarray, theta: np.ndarray) -> np.ndarray:
    theta = np.clip(theta, 0.0, np.radians(89.0))
    return 0.0012 + 0.0019 * (z - 0.4) ** 2 + 0.0001 / np.sqrt(z) * theta**2 / (np.pi / 2 - theta) ** 2


def _discontinuity(depth: np.ndarray) -> np.ndarray:
    """Pixels next to a depth jump of more than 5 % (or next to a missing pixel)."""
    d = np.where(np.isfinite(depth), depth, 0.0)
    jump = np.zeros(depth.shape, dtype=bool)
    for axis in (0, 1):
        diff = np.abs(np.diff(d, axis=axis))
        ref = np.maximum(np.take(d, range(d.shape[axis] - 1), axis=axis), 1e-3)
        edge = diff > 0.05 * ref
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        jump[tuple(lo)] |= edge
        jump[tuple(hi)] |= edge
    return jump & np.isfinite(depth)


def apply_sensor(depth: np.ndarray, intrinsics: Intrinsics, model: SensorModel, rng: np.random.Generator) -> np.ndarray:
    """Noisy depth (NaN = no return) from exact rendered depth (NaN = nothing hit)."""
    z = np.array(depth, dtype=np.float64)
    valid = np.isfinite(z) & (z >= model.min_range) & (z <= model.max_range)
    if model.grazing_dropout or model.noise:
        normals = depth_normals(z, intrinsics)
        rays = np.concatenate([intrinsics.rays(), np.ones((*z.shape, 1))], axis=-1)
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        cos = np.abs(np.sum(normals * rays, axis=-1))
        theta = np.arccos(np.clip(np.nan_to_num(cos, nan=1.0), 0.0, 1.0))
    else:
        theta = np.zeros(z.shape)
    if model.grazing_dropout:
        p_drop = np.clip((np.degrees(theta) - 70.0) / 15.0, 0.0, 1.0)
        valid &= rng.random(z.shape) >= p_drop
    edges = _discontinuity(depth) if (model.edge_dropout or model.flying_pixels) else None
    if model.edge_dropout:
        valid &= ~(edges & (rng.random(z.shape) < model.edge_dropout))
    if model.speckle:
        valid &= rng.random(z.shape) >= model.speckle
    if model.noise:
        if model.name == "kinect":
            sigma = kinect_sigma(np.where(valid, z, 1.0), theta)
        else:
            sigma = 0.0015 + 0.0012 * np.where(valid, z, 1.0)
        z = z + rng.normal(0.0, 1.0, z.shape) * sigma
    if model.flying_pixels:
        # mix with the farthest 4-neighbour: the pixel straddles foreground and background
        padded = np.pad(np.where(np.isfinite(depth), depth, np.nan), 1, mode="edge")
        neighbors = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        far = np.where(np.isfinite(neighbors), neighbors, -np.inf).max(axis=0)
        fly = edges & (rng.random(z.shape) < model.flying_pixels) & np.isfinite(far) & (far > z)
        mix = rng.random(z.shape)
        z = np.where(fly, z + mix * (far - z), z)
    if model.name == "kinect":
        k = KINECT_FOCAL_PX * KINECT_BASELINE_M * KINECT_SUBPIXEL
        disparity = np.round(k / np.where(valid, z, 1.0))
        z = np.where(valid, k / np.maximum(disparity, 1.0), z)
    return np.where(valid, z, np.nan)
