"""Render parts, boxes and the few geometric queries the scene generator needs (all vectorised).

Every placed entity is a list of :class:`RenderPart` in the entity's local frame (metres, Z up,
base centre at the origin, front facing -y). A part is either a cached catalogue OBJ in the unit box
(scaled by ``scale``), a box, or a procedural triangle mesh; all three give triangles for ray casts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np


@dataclass
class RenderPart:
    kind: str  # "mesh_file" | "box" | "mesh"
    rgb: tuple[float, float, float]
    area: float  # surface area in metres^2, for the dominant colour
    mesh_file: str | None = None
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)  # mesh_file: unit box -> metres
    half_extents: tuple[float, float, float] | None = None  # box
    vertices: np.ndarray | None = None  # mesh: (V, 3) metres
    indices: np.ndarray | None = None  # mesh: (F, 3)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # part origin in the entity frame
    texture: str | None = None  # PNG path
    mean_rgb: tuple[float, float, float] | None = None  # appearance (texture mean x colour)
    transparent: bool = False  # glass in the catalogue's material

    def appearance(self) -> tuple[float, float, float]:
        return self.mean_rgb if self.mean_rgb is not None else self.rgb

    def triangles(self) -> np.ndarray:
        """(F, 3, 3) triangles in the entity frame."""
        if self.kind == "mesh_file":
            verts, faces = load_unit_mesh(self.mesh_file)
            tri = verts[faces] * np.asarray(self.scale)
        elif self.kind == "box":
            tri = box_triangles(np.asarray(self.half_extents))
        else:
            tri = np.asarray(self.vertices)[np.asarray(self.indices)]
        return tri + np.asarray(self.offset)


@lru_cache(maxsize=512)
def load_unit_mesh(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of a cached part OBJ (our own simple format: v / vt / f lines)."""
    verts, faces = [], []
    for line in Path(path).read_text().splitlines():
        if line.startswith("v "):
            verts.append(line[2:].split())
        elif line.startswith("f "):
            faces.append([tok.split("/")[0] for tok in line[2:].split()])
    v = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3) - 1
    return v, f


def box_triangles(half: np.ndarray) -> np.ndarray:
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64) * half
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [(a, b, c) for a, b, c, d in quads] + [(a, c, d) for a, b, c, d in quads]
    return corners[np.asarray(tris)]


def box_area(half: tuple[float, float, float]) -> float:
    x, y, z = (2 * h for h in half)
    return 2 * (x * y + y * z + x * z)


def mesh_area(vertices: np.ndarray, indices: np.ndarray) -> float:
    t = vertices[indices]
    return float(0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum())


def rotation_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def quaternion_z(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, float(np.sin(yaw / 2)), float(np.cos(yaw / 2)))


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in the world frame."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    @staticmethod
    def from_pose(size: tuple[float, float, float], position: tuple[float, float, float], yaw: float) -> Box:
        """AABB of an entity of ``size`` (w, d, h) with base centre ``position`` rotated by ``yaw``."""
        w, d, h = size
        c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
        hx, hy = (w * c + d * s) / 2, (w * s + d * c) / 2
        x, y, z = position
        return Box((x - hx, y - hy, z), (x + hx, y + hy, z + h))

    @property
    def center(self) -> np.ndarray:
        return (np.asarray(self.lo) + np.asarray(self.hi)) / 2

    @property
    def size(self) -> np.ndarray:
        return np.asarray(self.hi) - np.asarray(self.lo)

    def intersects(self, other: Box, margin: float = 0.0) -> bool:
        return all(self.lo[i] < other.hi[i] + margin and other.lo[i] < self.hi[i] + margin for i in range(3))

    def expanded(self, dx: float, dy: float | None = None, dz: float = 0.0) -> Box:
        dy = dx if dy is None else dy
        return Box(
            (self.lo[0] - dx, self.lo[1] - dy, self.lo[2] - dz), (self.hi[0] + dx, self.hi[1] + dy, self.hi[2] + dz)
        )

    def to_json(self) -> dict:
        return {"min": [round(float(v), 4) for v in self.lo], "max": [round(float(v), 4) for v in self.hi]}


def horizontal_gap(a: Box, b: Box) -> float:
    """Distance between the footprints of two boxes (0 when they overlap in x-y)."""
    dx = max(a.lo[0] - b.hi[0], b.lo[0] - a.hi[0], 0.0)
    dy = max(a.lo[1] - b.hi[1], b.lo[1] - a.hi[1], 0.0)
    return float(np.hypot(dx, dy))


def raycast_down(triangles: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Height of the highest triangle under each (x, y); NaN where a vertical ray misses.

    triangles (F, 3, 3), xy (R, 2). Barycentric test in the x-y projection, vectorised over rays
    and triangles (chunked to bound memory).
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(xy), np.nan)
    if len(triangles) == 0 or len(xy) == 0:
        return out
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    v0, v1 = b[:, :2] - a[:, :2], c[:, :2] - a[:, :2]
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    ok = np.abs(den) > 1e-12
    a, v0, v1, den = a[ok], v0[ok], v1[ok], den[ok]
    za, zb, zc = a[:, 2], b[ok][:, 2], c[ok][:, 2]
    chunk = max(1, 2_000_000 // max(len(a), 1))
    for start in range(0, len(xy), chunk):
        p = xy[start : start + chunk]
        d = p[:, None, :] - a[None, :, :2]
        u = (d[..., 0] * v1[None, :, 1] - v1[None, :, 0] * d[..., 1]) / den
        v = (v0[None, :, 0] * d[..., 1] - d[..., 0] * v0[None, :, 1]) / den
        inside = (u >= -1e-9) & (v >= -1e-9) & (u + v <= 1 + 1e-9)
        z = za + u * (zb - za) + v * (zc - za)
        z = np.where(inside, z, -np.inf)
        best = z.max(axis=1)
        out[start : start + chunk] = np.where(np.isfinite(best), best, np.nan)
    return out


@dataclass
class Footprint:
    """A rotated rectangle on the floor plan (for sampling ray grids)."""

    center: tuple[float, float]
    size: tuple[float, float]
    yaw: float
    extra: dict = field(default_factory=dict)

    def grid(self, n: int = 5, inset: float = 0.0) -> np.ndarray:
        w, d = max(self.size[0] - 2 * inset, 1e-3), max(self.size[1] - 2 * inset, 1e-3)
        u = np.linspace(-w / 2, w / 2, n)
        v = np.linspace(-d / 2, d / 2, n)
        uu, vv = np.meshgrid(u, v)
        local = np.stack([uu.ravel(), vv.ravel()], axis=1)
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        rot = np.array([[c, -s], [s, c]])
        return local @ rot.T + np.asarray(self.center)
