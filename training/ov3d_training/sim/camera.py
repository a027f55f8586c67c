"""Pinhole RGB-D camera on pybullet's TinyRenderer, and its conventions.

Poses are camera-to-world 4x4 matrices of the *optical* frame (ROS REP 103: x right, y down,
z forward). Pixel (u, v) (column, row, 0-based) holds the surface on the ray
``x = (u - cx) / fx * z``, ``y = (v - cy) / fy * z``. With a centred OpenGL projection, pybullet's
TinyRenderer samples column u at ``cx = W / 2`` and row v at ``cy = H / 2 - 1`` (measured against
planes at known distances: any other choice puts a rendered floor a few millimetres off z = 0),
so those are the intrinsics :meth:`Intrinsics.from_fov` reports and back-projection uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# OpenGL camera (x right, y up, z backwards) from the optical frame.
OPTICAL_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    near: float = 0.05
    far: float = 12.0

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float = 58.0, near: float = 0.05, far: float = 12.0):
        """Square pixels; 58 degrees is the horizontal field of view of a Kinect / Xtion."""
        fx = width / 2.0 / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(width, height, fx, fx, width / 2.0, height / 2.0 - 1.0, near, far)

    def to_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def projection_matrix(self) -> list[float]:
        """pybullet (column-major OpenGL) projection for these intrinsics."""
        w, h, n, f = self.width, self.height, self.near, self.far
        m = np.zeros((4, 4))
        m[0, 0] = 2 * self.fx / w
        m[1, 1] = 2 * self.fy / h
        # principal point offsets relative to TinyRenderer's sampling centre (0 for from_fov)
        m[0, 2] = 1 - 2 * self.cx / w
        m[1, 2] = 2 * (self.cy + 1.0) / h - 1
        m[2, 2] = -(f + n) / (f - n)
        m[2, 3] = -2 * f * n / (f - n)
        m[3, 2] = -1.0
        return m.T.ravel().tolist()

    def linear_depth(self, buffer: np.ndarray) -> np.ndarray:
        """OpenGL depth buffer in [0, 1] -> metric depth along the optical axis (NaN at the far plane)."""
        n, f = self.near, self.far
        d = np.asarray(buffer, dtype=np.float64)
        z = f * n / (f - (f - n) * d)
        return np.where(d >= 1.0 - 1e-7, np.nan, z)

    def rays(self) -> np.ndarray:
        """(H, W, 2) normalised image coordinates (x/z, y/z) of every pixel centre."""
        u = (np.arange(self.width) - self.cx) / self.fx
        v = (np.arange(self.height) - self.cy) / self.fy
        uu, vv = np.meshgrid(u, v)
        return np.stack([uu, vv], axis=-1)


def view_matrix(pose: np.ndarray) -> list[float]:
    """pybullet view matrix (world -> OpenGL camera, column-major) for an optical-frame pose."""
    gl = np.asarray(pose, dtype=np.float64) @ OPTICAL_TO_GL
    return np.linalg.inv(gl).T.ravel().tolist()


def look_at_pose(eye, yaw: float, pitch: float) -> np.ndarray:
    """Optical-frame pose at ``eye`` looking along heading ``yaw`` (radians, from +x towards +y),
    tilted down by ``-pitch`` (pitch < 0 looks down). The camera never rolls."""
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    return pose


@dataclass
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float64 metres along z, NaN = nothing
    body: np.ndarray  # (H, W) int32 pybullet body uid, -1 = background


def render(client: int, intrinsics: Intrinsics, pose: np.ndarray, light_direction=(0.4, -0.3, 1.0)) -> Frame:
    import pybullet as p

    w, h, rgba, depth, seg = p.getCameraImage(
        intrinsics.width,
        intrinsics.height,
        view_matrix(pose),
        intrinsics.projection_matrix(),
        renderer=p.ER_TINY_RENDERER,
        lightDirection=list(light_direction),
        shadow=0,
        physicsClientId=client,
    )
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[..., :3]
    seg = np.asarray(seg, dtype=np.int64).reshape(h, w)
    body = np.where(seg >= 0, seg & ((1 << 24) - 1), -1).astype(np.int32)
    return Frame(rgb.copy(), intrinsics.linear_depth(np.asarray(depth).reshape(h, w)), body)


def back_project(depth: np.ndarray, intrinsics: Intrinsics, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid pixels' world points: returns (points (N, 3), flat pixel indices (N,))."""
    valid = np.isfinite(depth)
    index = np.flatnonzero(valid)
    z = depth.ravel()[index]
    xy = intrinsics.rays().reshape(-1, 2)[index] * z[:, None]
    cam = np.concatenate([xy, z[:, None]], axis=1)
    world = cam @ pose[:3, :3].T + pose[:3, 3]
    return world, index


def project(points: np.ndarray, intrinsics: Intrinsics, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points -> (pixel coordinates (N, 2) as float u, v; depth z (N,))."""
    inv = np.linalg.inv(pose)
    cam = points @ inv[:3, :3].T + inv[:3, 3]
    z = cam[:, 2]
    u = cam[:, 0] / z * intrinsics.fx + intrinsics.cx
    v = cam[:, 1] / z * intrinsics.fy + intrinsics.cy
    return np.stack([u, v], axis=1), z


def depth_normals(depth: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Per-pixel surface normals in the camera frame from the depth image (NaN where unknown)."""
    rays = intrinsics.rays()
    pts = np.concatenate([rays * depth[..., None], depth[..., None]], axis=-1)
    dx = np.full_like(pts, np.nan)
    dy = np.full_like(pts, np.nan)
    dx[:, 1:-1] = pts[:, 2:] - pts[:, :-2]
    dy[1:-1, :] = pts[2:, :] - pts[:-2, :]
    n = np.cross(dx, dy)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return n / norm
