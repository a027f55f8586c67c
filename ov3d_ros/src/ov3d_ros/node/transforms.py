"""Optional: bring clouds into ``target_frame`` with TF, at each cloud's own stamp.

tf2_ros comes with a system ROS 2, not with the registry's wheels. Without it (or without a
target frame) clouds stay in their input frame and the node says so once at start-up.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ov3d_ros.io.bags import quaternion_to_matrix
from ov3d_ros.io.scan import Scan


class TransformUnavailable(RuntimeError):
    """No transform for this cloud (TF timed out, frames not connected); the cloud is skipped."""


def rigid_transform(scan: Scan, rotation: np.ndarray, translation: np.ndarray, frame_id: str) -> Scan:
    """``scan`` with points (and normals) mapped by x -> R x + t, now in ``frame_id``."""
    rotation = np.asarray(rotation, dtype=np.float32).reshape(3, 3)
    translation = np.asarray(translation, dtype=np.float32).reshape(3)
    points = scan.points @ rotation.T + translation
    normals = None if scan.normals is None else scan.normals @ rotation.T
    return replace(scan, points=points, normals=normals, frame_id=frame_id, meta=dict(scan.meta))


def transform_from_msg(transform: Any) -> tuple[np.ndarray, np.ndarray]:
    """geometry_msgs/Transform -> (3x3 rotation, translation)."""
    q = transform.rotation
    t = transform.translation
    return quaternion_to_matrix(np.array([q.x, q.y, q.z, q.w])), np.array([t.x, t.y, t.z])


class CloudTransformer:
    """TF lookups for the node; ``available`` is False where tf2_ros is missing."""

    def __init__(self, node: Any, target_frame: str, timeout_s: float) -> None:
        self.target_frame = target_frame
        self.timeout_s = timeout_s
        self.available = False
        self.reason = ""
        try:
            from tf2_ros import Buffer, TransformListener
        except ImportError as exc:
            self.reason = f"tf2_ros is not installed ({exc}); it comes with a system ROS 2"
            return
        self._buffer = Buffer()
        self._listener = TransformListener(self._buffer, node, spin_thread=False)
        self.available = True

    def __call__(self, scan: Scan) -> Scan:
        if scan.frame_id == self.target_frame:
            return scan
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            stamped = self._buffer.lookup_transform(
                self.target_frame,
                scan.frame_id,
                Time(nanoseconds=scan.stamp_ns),
                timeout=Duration(nanoseconds=int(self.timeout_s * 1e9)),
            )
        except Exception as exc:  # tf2 raises LookupException, ExtrapolationException, ...
            raise TransformUnavailable(
                f"no transform {scan.frame_id} -> {self.target_frame} at t={scan.stamp_ns / 1e9:.3f} s "
                f"within {self.timeout_s:.2f} s ({type(exc).__name__}: {exc})"
            ) from exc
        rotation, translation = transform_from_msg(stamped.transform)
        return rigid_transform(scan, rotation, translation, self.target_frame)
